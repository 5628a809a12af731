// folkrnn studio: the page. Plain JS, no build step; talks to the server's /api only.
// Views: Compose (stream tokens, show tunes), Archive (search, star, export, delete),
// Inspect (the model's probability of every token; a heatmap of units under the tune,
// units ranked by a musical label; an intervention, the tune made again with and without).
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const KEYS = ["C", "G", "D", "A", "E", "B", "F", "Bb", "Eb", "Ab"];
const state = { info: null, abcjs: false, controller: null, inspected: null, token: takeToken() };

// A studio open to the network needs its token for every change: `folkrnn serve` prints the
// address with ?token=...; the page takes it from there once (and out of the address bar),
// keeps it for this tab and sends it in the X-Folkrnn-Token header.
function takeToken() {
  const KEY = "folkrnn-token";
  const url = new URL(location.href);
  const given = url.searchParams.get("token");
  let kept = null;
  try {
    if (given) sessionStorage.setItem(KEY, given);
    kept = sessionStorage.getItem(KEY);
  } catch (_) { /* storage refused: the token lives as long as the page */ }
  if (given) {
    url.searchParams.delete("token");
    history.replaceState(history.state, "", url.pathname + url.search + url.hash);
  }
  return given || kept;
}

// -- helpers ------------------------------------------------------------------------------
async function api(path, options = {}) {
  const opts = { ...options, headers: { "Content-Type": "application/json", ...(options.headers || {}) } };
  const method = (opts.method || "GET").toUpperCase();
  if (state.token && method !== "GET" && method !== "HEAD") opts.headers["X-Folkrnn-Token"] = state.token;
  if (opts.body && typeof opts.body !== "string") opts.body = JSON.stringify(opts.body);
  const res = await fetch(path, opts);
  if (!res.ok) {
    let msg = `${res.status} ${res.statusText}`;
    try { msg = (await res.json()).error || msg; } catch (_) { /* not JSON */ }
    throw new Error(msg);
  }
  return res;
}

function notice(text, kind = "warn") {
  const p = document.createElement("p");
  p.className = `notice ${kind}`;
  p.textContent = text;
  $("#notices").append(p);
}

function fillSelect(sel, values, labels) {
  for (const [i, v] of values.entries()) {
    const o = document.createElement("option");
    o.value = v;
    o.textContent = labels ? labels[i] : v;
    sel.append(o);
  }
}

function debounce(fn, ms) {
  let t = null;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}

function showView(name) {
  for (const b of $$("nav [role=tab]")) b.setAttribute("aria-selected", String(b.dataset.view === name));
  for (const s of $$("main > .view")) s.hidden = s.dataset.view !== name;
  if (name === "archive") searchArchive();
}

// -- a tune card ------------------------------------------------------------------------------
function renderTune(tune, container, { replace = false } = {}) {
  const card = $("#tune-card").content.firstElementChild.cloneNode(true);
  card.dataset.id = tune.id;
  const star = $(".star", card);
  const setStar = (on) => { star.textContent = on ? "★" : "☆"; star.setAttribute("aria-pressed", String(on)); };
  setStar(tune.starred);
  star.addEventListener("click", async () => {
    const on = star.getAttribute("aria-pressed") !== "true";
    try {
      await api(`/api/tunes/${tune.id}`, { method: "PATCH", body: { starred: on } });
      setStar(on); tune.starred = on;
      const row = $(`#archive-table tr[data-id="${tune.id}"] .star`);  // the archive's list says the same
      if (row) { row.textContent = on ? "★" : "☆"; row.setAttribute("aria-pressed", String(on)); }
    }
    catch (e) { notice(e.message, "error"); }
  });
  const title = $(".title", card);
  title.value = tune.display_title;  // the score's title: the tune's own, or "folkrnn tune ID"
  title.placeholder = `folkrnn tune ${tune.id}`;
  title.addEventListener("change", async () => {
    try {
      const fresh = await (await api(`/api/tunes/${tune.id}`, { method: "PATCH", body: { title: title.value.trim() } })).json();
      tune.title = fresh.title;
      tune.display_title = fresh.display_title;
      if (document.activeElement !== title) title.value = fresh.display_title;
      tune.abc = fresh.abc;
      $(".abc", card).textContent = fresh.abc || $(".abc", card).textContent;
      if (state.abcjs && tune.abc) drawStaff();  // the score's heading is the title
    } catch (e) { notice(e.message, "error"); }
  });
  const note = $(".note", card);
  note.value = tune.note;
  note.addEventListener("change", () => api(`/api/tunes/${tune.id}`, { method: "PATCH", body: { note: note.value } })
    .catch((e) => notice(e.message, "error")));
  const s = tune.settings;
  const bits = [`#${tune.id}`, tune.meter ? tune.meter.slice(2) : "?", tune.mode_name ? `${tune.key} ${tune.mode_name}` : "?",
    `${tune.tokens.length} tokens`, `seed ${tune.seed}`, `tune ${tune.index + 1}`, `T ${s.temperature}`];
  if (s.tune_type) bits.push(s.tune_type);
  if (s.bars === "strict") bits.push("bars strict");
  if (tune.truncated) bits.push("stopped at the length cap");
  $(".meta", card).textContent = bits.join(" · ");
  $(".abc", card).textContent = tune.abc || `not a well-formed transcription: ${tune.abc_error}\n${tune.tokens.join(" ")}`;
  $(".command", card).textContent = tune.command;

  const staff = $(".staff", card);
  const score = { visual: null };  // abcjs's drawing, redrawn when the title changes
  const drawStaff = () => {
    score.visual = window.ABCJS.renderAbc(staff, tune.abc, { responsive: "resize", add_classes: true, paddingtop: 0, paddingbottom: 4 })[0];
    score.timingsTempo = null;
  };
  if (tune.abc && state.abcjs) {
    drawStaff();
  } else {
    staff.classList.add("empty");
    staff.textContent = tune.abc ? "Staff notation unavailable: abcjs is not installed (run `npm ci` in the folkrnn checkout)."
      : "This tune cannot be written as ABC (see below).";
    $(".abc-text", card).open = true;
  }

  const key = encodeURIComponent(tune.key);
  const tempoInput = $(".tempo input", card);
  const tempoOut = $(".tempo output", card);
  const links = () => {
    const t = tempoInput.value;
    $(".dl-abc", card).href = `/api/tunes/${tune.id}/abc?key=${key}`;
    $(".dl-midi", card).href = `/api/tunes/${tune.id}/midi?key=${key}&tempo=${t}`;
    $(".dl-wav", card).href = `/api/tunes/${tune.id}/wav?key=${key}&tempo=${t}&download=true`;
  };
  links();
  setupPlayer(card, tune, score, tempoInput, tempoOut, links);
  $(".inspect-btn", card).addEventListener("click", () => { $("#i-id").value = tune.id; $("#i-text").value = ""; showView("inspect"); runInspect(); });
  $(".reuse", card).addEventListener("click", () => reuseSettings(tune));
  if (replace) container.replaceChildren(card); else container.append(card);
  return card;
}

function setupPlayer(card, tune, score, tempoInput, tempoOut, links) {
  const audio = $("audio", card);
  const play = $(".play", card);
  const note = $(".audio-note", card);
  const missing = state.info.missing.audio;
  if (missing || !tune.abc) {
    play.disabled = true;
    $(".dl-wav", card).classList.add("disabled");
    $(".dl-wav", card).removeAttribute("href");
    note.textContent = missing ? `No audio: ${missing}. Download the MIDI file to listen.` : "";
    return;
  }
  let timings = null, lit = [], frame = null, cursor = null;
  const svg = () => $(".staff svg", card);
  const clear = () => { for (const el of lit) el.classList.remove("playing"); lit = []; };
  const moveCursor = (ev) => {
    const s = svg();
    if (!s) return;
    if (!cursor || !s.contains(cursor)) {
      cursor = document.createElementNS("http://www.w3.org/2000/svg", "line");
      cursor.setAttribute("class", "cursor");
      s.append(cursor);
    }
    cursor.setAttribute("x1", ev.left - 2); cursor.setAttribute("x2", ev.left - 2);
    cursor.setAttribute("y1", ev.top); cursor.setAttribute("y2", ev.top + ev.height);
  };
  const tick = () => {
    if (score.visual && timings) {
      const ms = audio.currentTime * 1000;
      let i = -1;
      for (let j = 0; j < timings.length && timings[j].milliseconds <= ms; j++) if (timings[j].type === "event") i = j;
      if (i >= 0) {
        clear();
        for (const group of timings[i].elements || []) for (const el of group) { el.classList.add("playing"); lit.push(el); }
        moveCursor(timings[i]);
      }
    }
    if (!audio.paused) frame = requestAnimationFrame(tick);
  };
  const src = () => `/api/tunes/${tune.id}/wav?key=${encodeURIComponent(tune.key)}&tempo=${tempoInput.value}`;
  audio.addEventListener("play", () => {
    play.textContent = "❚❚ Pause";
    card.classList.add("is-playing");
    if (score.visual && score.timingsTempo !== tempoInput.value) {
      timings = score.visual.setTiming(Number(tempoInput.value), 0);
      score.timingsTempo = tempoInput.value;
      cursor = null;  // a redrawn score has a new svg
    }
    frame = requestAnimationFrame(tick);
  });
  const stopped = () => { play.textContent = "▶ Play"; card.classList.remove("is-playing"); cancelAnimationFrame(frame); };
  audio.addEventListener("pause", stopped);
  audio.addEventListener("ended", () => { stopped(); clear(); if (cursor) { cursor.remove(); cursor = null; } });
  audio.addEventListener("error", () => { stopped(); note.textContent = "The audio could not be rendered; download the MIDI file."; });
  audio.addEventListener("waiting", () => { note.textContent = "rendering…"; });
  audio.addEventListener("playing", () => { note.textContent = ""; });
  play.addEventListener("click", () => {
    if (!audio.paused) { audio.pause(); return; }
    const u = src();
    if (audio.dataset.src !== u) { audio.src = u; audio.dataset.src = u; }
    audio.play().catch((e) => { note.textContent = `cannot play: ${e.message}`; });
  });
  tempoInput.addEventListener("input", () => { tempoOut.textContent = tempoInput.value; });
  tempoInput.addEventListener("change", () => {
    links();
    if (!audio.paused) { audio.pause(); const u = src(); audio.src = u; audio.dataset.src = u; audio.play().catch(() => {}); }
  });
}

function reuseSettings(tune) {
  const s = tune.settings;
  const f = $("#compose-form");
  f.model.value = state.info.models.some((m) => m.id === tune.model) ? tune.model : state.info.default_model;
  f.meter.value = s.meter || "";
  f.mode.value = s.mode || "";
  f.key.value = s.key || "C";
  f.prime.value = s.prime || "";
  for (const r of $$("input[name=prime_format]", f)) r.checked = r.value === (s.prime_format || "tokens");
  f.temperature.value = s.temperature;
  f.top_k.value = s.top_k ?? "";
  f.top_p.value = s.top_p ?? "";
  f.tune_type.value = s.tune_type || "";
  f.bars.value = s.bars || "free";
  f.form.value = s.form == null ? "auto" : (s.form === "" ? "none" : s.form.toUpperCase());
  if (!f.form.value) f.form.value = "auto";  // a form this menu does not list
  f.form_bars.value = s.form_bars ?? 8;
  f.endings.value = String(s.endings ?? 0);
  f.seed.value = tune.seed;
  $("#f-lock").checked = true;
  f.num_tunes.value = s.num_tunes;
  showView("compose");
  checkPrime();
}

// -- Compose ------------------------------------------------------------------------------------
function composeBody() {
  const f = $("#compose-form");
  const num = (v) => (v === "" ? null : Number(v));
  const body = {
    model: f.model.value, meter: f.meter.value || null, mode: f.mode.value || null, key: f.key.value,
    prime: f.prime.value, prime_format: $("input[name=prime_format]:checked", f).value,
    temperature: Number(f.temperature.value || 0.9), top_k: num(f.top_k.value), top_p: num(f.top_p.value),
    // a seed typed since the last tune is used once; "lock" keeps it for the tunes after
    seed: $("#f-lock").checked || f.seed.dataset.typed ? num(f.seed.value) : null,
    num_tunes: Number(f.num_tunes.value || 1),
    bars: f.bars.value, tune_type: f.tune_type.value, form: f.form.value === "auto" ? null : f.form.value,
    form_bars: Number(f.form_bars.value || 8), endings: Number(f.endings.value || 0),
  };
  return body;
}

const checkPrime = debounce(async () => {
  const f = $("#compose-form");
  const out = $("#prime-check");
  const prime = f.prime.value;
  if (!prime.trim()) { out.textContent = ""; out.className = "check"; return; }
  try {
    // the whole form: the server checks the prime as /api/generate will (key, type, length cap)
    const res = await api("/api/prime", { method: "POST", body: { ...composeBody(), seed: null } });
    const { tokens } = await res.json();
    out.textContent = `✓ ${tokens.join(" ")}`;
    out.className = "check ok";
  } catch (e) {
    out.textContent = e.message;
    out.className = "check bad";
  }
}, 250);

function parseEvents(buffer, onEvent) {
  let idx;
  while ((idx = buffer.indexOf("\n\n")) >= 0) {
    const block = buffer.slice(0, idx);
    buffer = buffer.slice(idx + 2);
    let event = "message", data = "";
    for (const line of block.split("\n")) {
      if (line.startsWith("event: ")) event = line.slice(7);
      else if (line.startsWith("data: ")) data += line.slice(6);
    }
    onEvent(event, data ? JSON.parse(data) : null);
  }
  return buffer;
}

async function compose(ev) {
  ev.preventDefault();
  const err = $("#compose-error");
  err.textContent = "";
  const go = $("#compose-go"), stop = $("#compose-stop");
  const stream = $("#stream"), text = $("#stream-text");
  const tunes = $("#compose-tunes");
  const controller = new AbortController();
  state.controller = controller;
  go.disabled = true; stop.hidden = false;
  text.textContent = "";
  delete stream.dataset.firstTokenMs;
  stream.hidden = false;
  const lines = new Map();  // tune index -> its line in the stream box (a request's tunes grow together)
  const t0 = performance.now();
  try {
    const res = await api("/api/generate", { method: "POST", body: composeBody(), signal: controller.signal });
    tunes.replaceChildren();
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer = parseEvents(buffer + decoder.decode(value, { stream: true }), (event, data) => {
        if (event === "start") {
          if (!$("#f-lock").checked) $("#f-seed").value = data.seed;
          delete $("#f-seed").dataset.typed;
        } else if (event === "tune_start") {
          const line = document.createElement("div");
          line.className = "stream-line";
          line.dataset.index = data.index + 1;
          if (data.planning) {  // a form's tokens come when its closings are chosen
            const note = document.createElement("span");
            note.className = "planning";
            note.textContent = "planning the form…";
            line.append(note);
          }
          text.append(line);
          lines.set(data.index, line);
        } else if (event === "token") {
          const line = lines.get(data.index);
          const note = line.querySelector(".planning");
          if (note) note.remove();
          if (!stream.dataset.firstTokenMs) stream.dataset.firstTokenMs = Math.round(performance.now() - t0);
          line.append(document.createTextNode((line.firstChild ? " " : "") + data.token));
          text.scrollTop = text.scrollHeight;
        } else if (event === "tune") {
          lines.get(data.index).classList.add("finished");
          renderTune(data, tunes);
        } else if (event === "error") {
          err.textContent = data.error;
        }
      });
    }
  } catch (e) {
    if (e.name !== "AbortError") err.textContent = e.message;
    else err.textContent = "stopped";
  } finally {
    go.disabled = false; stop.hidden = true;
    state.controller = null;
  }
}

// -- Archive ---------------------------------------------------------------------------------
async function searchArchive(ev) {
  if (ev) ev.preventDefault();
  const f = $("#archive-form");
  const params = new URLSearchParams();
  for (const k of ["q", "meter", "mode", "model"]) if (f[k].value) params.set(k, f[k].value);
  if (f.starred.checked) params.set("starred", "true");
  params.set("limit", "200");
  try {
    const data = await (await api(`/api/tunes?${params}`)).json();
    const sel = $("#a-model");
    const current = sel.value;
    sel.replaceChildren(sel.options[0]);
    fillSelect(sel, data.models);
    sel.value = current;
    $("#archive-count").textContent = `${data.total} tune${data.total === 1 ? "" : "s"}` + (data.total > data.tunes.length ? ` (newest ${data.tunes.length} shown)` : "");
    const body = $("#archive-table tbody");
    body.replaceChildren();
    for (const t of data.tunes) {
      const tr = document.createElement("tr");
      tr.dataset.id = t.id;
      // columns (classes as in index.html's head; narrow screens hide the .wide ones)
      const cells = [["pick", null], ["star-col", null], ["id", t.id], ["title", t.display_title],
        ["meter", t.meter ? t.meter.slice(2) : ""], ["key", t.mode_name ? `${t.key} ${t.mode_name}` : (t.key || "")],
        ["model wide", t.model], ["seed wide", t.seed], ["tokens wide", t.tokens.length],
        ["made wide", t.created.replace("T", " ").slice(0, 16)]];
      for (const [cls, c] of cells) {
        const td = document.createElement("td");
        td.className = cls;
        if (cls === "pick") {
          const cb = document.createElement("input");
          cb.type = "checkbox"; cb.className = "pick"; cb.value = t.id;
          cb.setAttribute("aria-label", `select tune ${t.id}`);
          cb.addEventListener("click", (e) => { e.stopPropagation(); updateBulk(); });
          td.append(cb);
        } else if (cls === "star-col") {
          td.append(starButton(t));
        } else td.textContent = c;
        tr.append(td);
      }
      tr.addEventListener("click", () => {
        for (const r of $$("tr.open", body)) r.classList.remove("open");
        tr.classList.add("open");
        renderTune(t, $("#archive-tune"), { replace: true });
      });
      body.append(tr);
    }
    updateBulk();
  } catch (e) { notice(e.message, "error"); }
}

// A star that toggles (in the archive's list; the card has its own).
function starButton(t) {
  const b = document.createElement("button");
  b.type = "button"; b.className = "star";
  const set = (on) => {
    b.textContent = on ? "★" : "☆"; b.setAttribute("aria-pressed", String(on));
    b.setAttribute("aria-label", on ? `unstar tune ${t.id}` : `star tune ${t.id}`);
  };
  set(t.starred);
  b.addEventListener("click", async (e) => {
    e.stopPropagation();  // not a click on the row (which opens the tune)
    const on = b.getAttribute("aria-pressed") !== "true";
    try {
      await api(`/api/tunes/${t.id}`, { method: "PATCH", body: { starred: on } });
      t.starred = on; set(on);
      const open = $(`#archive-tune .tune[data-id="${t.id}"] .star`);
      if (open) { open.textContent = on ? "★" : "☆"; open.setAttribute("aria-pressed", String(on)); }
    } catch (err) { notice(err.message, "error"); }
  });
  return b;
}

function picked() { return $$("#archive-table .pick:checked").map((c) => Number(c.value)); }
function updateBulk() {
  const n = picked().length;
  $("#a-export").disabled = $("#a-delete").disabled = n === 0;
  $("#a-export").textContent = n ? `Export ${n} as ABC` : "Export ABC";
}

async function exportPicked() {
  try {
    const res = await api("/api/export", { method: "POST", body: { ids: picked() } });
    const url = URL.createObjectURL(await res.blob());
    const a = document.createElement("a");
    a.href = url; a.download = "folkrnn-tunes.abc";
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  } catch (e) { notice(e.message, "error"); }
}

async function deletePicked() {
  const ids = picked();
  if (!confirm(`Delete ${ids.length} tune${ids.length === 1 ? "" : "s"} from the archive?`)) return;
  try {
    await api("/api/delete", { method: "POST", body: { ids } });
    $("#archive-tune").replaceChildren();
    searchArchive();
  } catch (e) { notice(e.message, "error"); }
}

// -- Inspect ------------------------------------------------------------------------------------
function probColour(p) {
  // -log10 p: 0 (certain) -> pale, 3+ (one in a thousand) -> deep red
  const s = Math.min(1, -Math.log10(Math.max(p, 1e-12)) / 3);
  return `hsl(${Math.round(45 - 45 * s)}, ${Math.round(60 + 30 * s)}%, ${Math.round(94 - 50 * s)}%)`;
}

async function runInspect(ev) {
  if (ev) ev.preventDefault();
  const err = $("#inspect-error");
  err.textContent = "";
  const id = $("#i-id").value, text = $("#i-text").value.trim();
  const body = { model: $("#i-model").value, k: Number($("#i-k").value || 5) };
  if (text) {
    if (/^\s*(X:|K:|M:\d)/m.test(text) && /^\s*K:\s*[A-G]/m.test(text)) body.abc = text; else body.tokens = text;
  } else if (id) body.id = Number(id);
  else { err.textContent = "give a tune number from the archive, or paste ABC or tokens"; return; }
  const out = $("#inspect-out");
  try {
    const data = await (await api("/api/inspect", { method: "POST", body })).json();
    state.inspected = { source: { model: body.model, id: body.id, tokens: body.tokens, abc: body.abc }, data };
    out.replaceChildren();
    const head = document.createElement("p");
    head.className = "summary";
    head.textContent = `${data.steps.length} steps under ${data.model}: mean negative log-likelihood ${data.mean_nll.toFixed(3)} nats per token; `
      + `${data.steps.filter((s) => s.rank === 1).length} tokens were the model's first choice.`;
    const keyNote = document.createElement("p");
    keyNote.className = "summary key-note";
    keyNote.textContent = data.key === "C" ? "Tokens in C, as the model reads them."
      : `Tokens written in ${data.key}, as the score is; the model reads them in C (hover a token, or see the alternatives).`;
    out.append(head, keyNote);
    const strip = document.createElement("div");
    strip.className = "probs";
    const detail = document.createElement("div");
    detail.className = "alts";
    data.steps.forEach((s, t) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "tok";
      b.textContent = s.shown;
      b.dataset.token = s.token;  // the model's token (in C)
      b.style.background = probColour(s.p);
      b.title = `step ${t + 1}: ${s.shown}` + (s.shown !== s.token ? ` (the model's token, in C: ${s.token})` : "")
        + `, p = ${s.p.toFixed(4)}, rank ${s.rank}`;
      b.addEventListener("click", () => {
        for (const x of $$(".tok.sel", strip)) x.classList.remove("sel");
        b.classList.add("sel");
        showAlternatives(detail, data, t);
      });
      strip.append(b);
    });
    const legend = document.createElement("p");
    legend.className = "legend";
    for (const [p, label] of [[0.9, "p ≈ 1"], [0.1, "0.1"], [0.01, "0.01"], [0.001, "≤ 0.001"]]) {
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = probColour(p);
      sw.textContent = label;
      legend.append(sw);
    }
    const lane = document.createElement("div");
    lane.className = "lane";
    lane.id = "inspect-lane";
    strip.style.paddingLeft = `${HEAT_LABEL_W}px`;  // the heatmap's unit labels sit under this gap
    lane.append(strip);
    out.append(legend, lane, detail);
    showAlternatives(detail, data, 0);
    strip.firstChild.classList.add("sel");
    setupUnitsPanel(data);
  } catch (e) { err.textContent = e.message; }
}

function showAlternatives(box, data, t) {
  const s = data.steps[t];
  const inC = data.key === "C";
  const before = data.shown.slice(Math.max(0, t - 8), t).join(" ");
  box.replaceChildren();
  const h = document.createElement("h3");
  h.textContent = `Step ${t + 1}: after “… ${before}” the tune has ${s.shown}` + (s.shown !== s.token ? ` (in C: ${s.token})` : "")
    + ` (p = ${s.p.toFixed(4)}, rank ${s.rank})`;
  const table = document.createElement("table");
  if (!inC) {  // both spellings, labelled
    const head = document.createElement("tr");
    head.className = "head";
    for (const label of [`in ${data.key}`, "model's token (C)", "p", ""]) {
      const th = document.createElement("th"); th.textContent = label; head.append(th);
    }
    table.append(head);
  }
  const top = Math.max(...s.alternatives.map(([, p]) => p), 1e-9);
  s.alternatives.forEach(([tok, p], j) => {
    const tr = document.createElement("tr");
    if (tok === s.token) tr.className = "chosen";
    const cells = inC ? [tok] : [s.alternatives_shown[j], tok];
    for (const text of cells) { const td = document.createElement("td"); td.textContent = text; tr.append(td); }
    const b = document.createElement("td"); b.textContent = p.toFixed(4);
    const c = document.createElement("td");
    const bar = document.createElement("span"); bar.className = "bar"; bar.style.width = `${Math.max(1, Math.round((p / top) * 240))}px`;
    c.append(bar);
    tr.append(b, c);
    table.append(tr);
  });
  box.append(h, table);
}

// -- Inspect: units -----------------------------------------------------------------------------
const HEAT_LABEL_W = 64, HEAT_ROW_H = 14;

function setupUnitsPanel(data) {
  const panel = $("#units-panel");
  panel.hidden = false;
  $("#units-out").replaceChildren();
  $("#intervene-out").replaceChildren();
  const model = state.info.models.find((m) => m.id === data.model) || state.info.models[0];
  const sel = $("#u-layer");
  const keep = sel.value;
  sel.replaceChildren();
  fillSelect(sel, Array.from({ length: model.num_layers }, (_, k) => String(k + 1)));
  if (keep && Number(keep) <= model.num_layers) sel.value = keep; else sel.value = String(model.num_layers);
  $("#u-top").max = state.info.limits.max_units;
  $("#u-archive").max = state.info.limits.max_rank_tunes;
}

function heatColour(v, lo, hi, gate) {
  // gates (i, f, o) live in [0, 1]: white -> blue; the rest diverge around 0: blue - white - red
  if (gate) {
    const s = Math.max(0, Math.min(1, v));
    return `rgb(${Math.round(255 - 215 * s)}, ${Math.round(255 - 170 * s)}, ${Math.round(255 - 90 * s)})`;
  }
  const m = Math.max(Math.abs(lo), Math.abs(hi), 1e-9);
  const s = Math.max(-1, Math.min(1, v / m));
  if (s >= 0) return `rgb(255, ${Math.round(255 - 190 * s)}, ${Math.round(255 - 200 * s)})`;
  return `rgb(${Math.round(255 + 215 * s)}, ${Math.round(255 + 170 * s)}, 255)`;
}

// the heatmap's tokens as the strip shows them (in the tune's key)
function shownTokens(res) {
  const d = state.inspected && state.inspected.data;
  return d && d.shown && d.shown.length === res.tokens.length ? d.shown : res.tokens;
}

function drawHeatmap(res) {
  const lane = $("#inspect-lane");
  const strip = $(".probs", lane);
  for (const old of $$("canvas.heatmap", lane)) old.remove();
  const toks = $$(".tok", strip);
  const gate = ["i", "f", "o"].includes(res.quantity);
  const canvas = document.createElement("canvas");
  canvas.className = "heatmap";
  const width = strip.scrollWidth, height = res.units.length * HEAT_ROW_H;
  const dpr = window.devicePixelRatio || 1;
  canvas.width = width * dpr; canvas.height = height * dpr;
  canvas.style.width = `${width}px`; canvas.style.height = `${height}px`;
  canvas.dataset.units = res.units.join(",");
  const ctx = canvas.getContext("2d");
  ctx.scale(dpr, dpr);
  ctx.font = "11px ui-monospace, monospace";
  ctx.textBaseline = "middle";
  const base = strip.offsetLeft;
  const cols = res.values[0].length;  // one per token; the strip's last cell (</s>) has none
  res.units.forEach((u, r) => {
    const y = r * HEAT_ROW_H;
    ctx.fillStyle = "#555";
    ctx.fillText(`${res.layer}:${u}`, 2, y + HEAT_ROW_H / 2);
    for (let t = 0; t < cols; t++) {
      const b = toks[t];
      ctx.fillStyle = heatColour(res.values[r][t], res.low, res.high, gate);
      ctx.fillRect(b.offsetLeft - base, y + 1, b.offsetWidth, HEAT_ROW_H - 2);
    }
  });
  canvas.addEventListener("mousemove", (ev) => {
    const x = ev.offsetX, r = Math.floor(ev.offsetY / HEAT_ROW_H);
    const t = toks.findIndex((b, k) => k < cols && x >= b.offsetLeft - base && x < b.offsetLeft - base + b.offsetWidth);
    canvas.title = t >= 0 && r >= 0 && r < res.units.length
      ? `unit ${res.layer}:${res.units[r]}, after ${shownTokens(res)[t]} (token ${t + 1}): ${res.quantity} = ${res.values[r][t].toFixed(3)}` : "";
  });
  lane.append(canvas);
}

async function showUnits(ev) {
  if (ev) ev.preventDefault();
  const err = $("#units-error");
  err.textContent = "";
  if (!state.inspected) { err.textContent = "inspect a tune first"; return; }
  const units = $("#u-units").value.trim();
  const body = { ...dropEmpty(state.inspected.source), layer: Number($("#u-layer").value), quantity: $("#u-quantity").value,
    label: $("#u-label").value, top: Number($("#u-top").value || 12), archive_tunes: Number($("#u-archive").value || 0) };
  if (units) body.units = units;
  try {
    const res = await (await api("/api/inspect/units", { method: "POST", body })).json();
    drawHeatmap(res);
    const out = $("#units-out");
    out.replaceChildren();
    const p = document.createElement("p");
    p.className = "summary";
    const how = res.chosen_by === "label" ? `the ${res.units.length} units of layer ${res.layer} whose ${res.quantity} the label explains best`
      : `units ${res.units.join(", ")} of layer ${res.layer}`;
    p.textContent = `Under the tune: ${how}. Column t is the value after the model has read token t. `
      + `Range ${res.low.toFixed(3)} to ${res.high.toFixed(3)}` + (["i", "f", "o"].includes(res.quantity) ? " (white 0, blue 1)." : " (blue below 0, red above).");
    out.append(p);
    if (res.ranking) {
      const r = res.ranking;
      const h = document.createElement("p");
      h.className = "summary";
      h.textContent = `Ranked by “${res.label_name}”: the share of each unit's variance the label explains (η²), over ${r.tokens} labelled tokens `
        + `of ${r.tunes} tune${r.tunes === 1 ? "" : "s"}, ${r.groups} label values. Click a unit to add it to the intervention.`;
      const table = document.createElement("table");
      table.className = "ranking";
      const top = Math.max(...r.scores, 1e-9);
      r.units.forEach((u, k) => {
        const tr = document.createElement("tr");
        if (res.units.includes(u)) tr.className = "shown";
        const a = document.createElement("td"); a.textContent = `${res.layer}:${u}`;
        const b = document.createElement("td"); b.textContent = r.scores[k].toFixed(3);
        const c = document.createElement("td");
        const bar = document.createElement("span"); bar.className = "bar"; bar.style.width = `${Math.max(1, Math.round((r.scores[k] / top) * 160))}px`;
        c.append(bar);
        tr.append(a, b, c);
        tr.addEventListener("click", () => addUnit(`${res.layer}:${u}`));
        table.append(tr);
      });
      out.append(h, table);
    } else if (res.ranking_error) {
      const h = document.createElement("p"); h.className = "summary"; h.textContent = `No ranking: ${res.ranking_error}`; out.append(h);
    }
  } catch (e) { err.textContent = e.message; }
}

function dropEmpty(o) { return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== null)); }

function addUnit(spec) {
  const f = $("#v-units");
  const have = f.value.split(/[\s,;]+/).filter(Boolean);
  if (!have.includes(spec)) f.value = [...have, spec].join(",");
  $("#v-quantity").value = $("#u-quantity").value;
}

function verdictLine(v) {
  const p = document.createElement("p");
  p.className = "verdict";
  const bars = document.createElement("span");
  bars.className = v.all_bars_right ? "good" : "bad";
  bars.textContent = `bars right ${v.bars_right}/${v.bars}`;
  const rep = document.createElement("span");
  rep.className = v.repeats_ok ? "good" : "bad";
  rep.textContent = v.repeats_ok ? "repeats ok" : "repeats broken";
  p.append(bars, document.createTextNode(" · "), rep, document.createTextNode(` · form ${v.pattern || "?"} · ${v.tokens} tokens`));
  return p;
}

async function intervene(ev) {
  if (ev) ev.preventDefault();
  const err = $("#intervene-error");
  err.textContent = "";
  if (!state.inspected) { err.textContent = "inspect a tune first"; return; }
  const src = state.inspected.source;
  const body = { units: $("#v-units").value, quantity: $("#v-quantity").value, ablation: $("#v-ablation").value };
  if (src.id !== undefined) body.id = src.id;
  else body.settings = { ...composeBody(), model: src.model, num_tunes: 1 };
  const out = $("#intervene-out");
  const go = $("#v-go");
  go.disabled = true;
  out.replaceChildren();
  const wait = document.createElement("p"); wait.className = "summary"; wait.textContent = "making the tune again, twice…";
  out.append(wait);
  try {
    const res = await (await api("/api/intervene", { method: "POST", body })).json();
    out.replaceChildren();
    const p = document.createElement("p");
    p.className = "summary";
    p.textContent = `Intervention ${res.intervention}, seed ${res.seed}, tune ${res.index + 1}: `
      + (res.changed ? `the tune changes from token ${res.first_difference + 1} on.` : "the tune does not change.")
      + (res.same_as_original === false ? " (Made again without it, the tune differs from the archived one.)" : "");
    const grid = document.createElement("div");
    grid.className = "side-by-side";
    for (const [key, title] of [["baseline", "without the intervention"], ["intervened", `with ${res.intervention}`]]) {
      const col = document.createElement("div");
      col.className = `side ${key}`;
      const h = document.createElement("h3");
      h.textContent = title;
      col.append(h, verdictLine(res[key].verdict));
      renderTune(res[key], col);
      grid.append(col);
    }
    out.append(p, grid);
  } catch (e) { out.replaceChildren(); err.textContent = e.message; }
  finally { go.disabled = false; }
}

// -- start ---------------------------------------------------------------------------------------
async function start() {
  state.abcjs = !!window.ABCJS && !window.ABCJS_MISSING;
  try {
    state.info = await (await api("/api/info")).json();
  } catch (e) {
    notice(`The studio's server did not answer: ${e.message}`, "error");
    return;
  }
  const info = state.info;
  if (!state.abcjs) notice(info.missing.abcjs || "Staff notation is unavailable: abcjs did not load.");
  if (info.missing.audio) notice(`No audio playback: ${info.missing.audio}. MIDI downloads still work.`);
  if (info.token_required && !state.token) {
    notice("This studio is open to the network and needs its token to make or change tunes: open the address "
      + "`folkrnn serve` printed (it ends in ?token=…).", "error");
  }
  const ids = info.models.map((m) => m.id);
  const labels = info.models.map((m) => `${m.id} (${m.num_layers}×${m.hidden_size})`);
  fillSelect($("#f-model"), ids, labels);
  fillSelect($("#i-model"), ids, labels);
  fillSelect($("#f-meter"), info.meters);
  fillSelect($("#a-meter"), info.meters);
  fillSelect($("#f-mode"), info.modes);
  fillSelect($("#a-mode"), info.modes);
  fillSelect($("#f-key"), KEYS);
  for (const t of info.tune_types) $("#f-tune_type").append(new Option(t.name, t.name));
  $("#f-num_tunes").max = info.limits.max_tunes;
  for (const b of $$("nav [role=tab]")) b.addEventListener("click", () => showView(b.dataset.view));
  const f = $("#compose-form");
  f.addEventListener("submit", compose);
  f.seed.addEventListener("input", () => { f.seed.dataset.typed = "1"; });
  f.tune_type.addEventListener("change", () => {  // a type has its meter
    const t = info.tune_types.find((x) => x.name === f.tune_type.value);
    if (t) { f.meter.value = t.meter; checkPrime(); }
  });
  for (const kind of ["input", "change"]) f.addEventListener(kind, (ev) => { if (ev.target !== f.seed) checkPrime(); });
  $("#compose-stop").addEventListener("click", () => state.controller && state.controller.abort());
  $("#archive-form").addEventListener("submit", searchArchive);
  for (const el of $$("#archive-form select, #archive-form input[type=checkbox]")) el.addEventListener("change", () => searchArchive());
  $("#a-all").addEventListener("click", () => {
    const boxes = $$("#archive-table .pick");
    const on = boxes.some((b) => !b.checked);
    for (const b of boxes) b.checked = on;
    updateBulk();
  });
  $("#a-export").addEventListener("click", exportPicked);
  $("#a-delete").addEventListener("click", deletePicked);
  $("#inspect-form").addEventListener("submit", runInspect);
  $("#units-form").addEventListener("submit", showUnits);
  $("#intervene-form").addEventListener("submit", intervene);
  document.body.dataset.ready = "true";
}

start();
