"""The studio's HTTP server: a FastAPI app over `engine` and `archive`.

Routes (JSON unless said):
  GET  /                          the page (static/index.html)
  GET  /static/NAME               the page's own files; /vendor/abcjs.js (npm's abcjs)
  GET  /api/info                  models, meters, modes, limits, what is missing (abcjs, audio)
  POST /api/prime                 check a prime as typed -> its tokens, or the unknown ones named
  POST /api/generate              Compose -> server-sent events: `start`, `token`, `tune`, `error`, `done`
  GET  /api/tunes                 archive search (meter, mode, model, starred, q, limit, offset)
  GET|PATCH|DELETE /api/tunes/ID  one tune; PATCH title / starred / note
  GET  /api/tunes/ID/abc|midi|wav the tune as a file (?key= ?tempo=), `settings` in the ABC
  POST /api/export                {ids} -> one ABC file
  POST /api/delete                {ids} -> how many were deleted
  POST /api/inspect               {tokens | abc | id} -> p(token) and alternatives at every step
  POST /api/inspect/units         {tune, layer, quantity, units | top + label} -> a heatmap and a ranking by the label
  POST /api/intervene             {id | settings, units, quantity, ablation} -> the tune made again without and with it

Limits (`Limits`): tunes per request, tokens per tune, generations at once (a request
waits up to `queue_timeout_s` for a slot, then 503; more than `max_waiting` waiting
-> 429), time per request, body size (413), concurrent audio renders (503). Generation
runs in a thread pool, never on the event loop; when the client goes away the stream's
generator is closed and its worker stops at the next token. The server reads only its
static folder, abcjs's file and the archive.

Who may use it (`guard.Guard`): on loopback, loopback Host names only; opened to the
network, its allowed hosts only and a token for every state-changing request; on both,
no state-changing request from a page of another origin. Every error is `{"error": ...}`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from folkrnn.checkpoint import Checkpoint
from folkrnn.errors import FolkRNNError
from folkrnn.sample import Stepper, Tune
from folkrnn.sample.types import TYPE_NAMES, tune_type
from folkrnn.tokens import METERS, MODES
from folkrnn.vocab import EOS, Vocabulary
from folkrnn.web.archive import Archive, NewTune, Query
from folkrnn.web.engine import (
    Batcher,
    Cancelled,
    Compose,
    Job,
    alternatives_in_key,
    audio_missing,
    command_line,
    compose_config,
    compose_shape,
    form_tunes,
    token_probabilities,
    tokens_in_key,
    tune_abc,
    tune_midi,
    tune_wav,
)
from folkrnn.web.guard import Guard

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
ABCJS_REL = Path("node_modules") / "abcjs" / "dist" / "abcjs-basic-min.js"


def find_abcjs() -> Path | None:
    """npm's abcjs for the page: the repository's node_modules (`npm ci`), looked for
    from this file upwards (a source checkout), then from the working directory."""
    here = Path(__file__).resolve()
    for base in (*here.parents, Path.cwd()):
        p = base / ABCJS_REL
        if p.is_file():
            return p
    return None


@dataclass(frozen=True)
class Limits:
    max_tunes: int = 10  # per request
    max_tokens: int = 1000  # per tune (the original sampler's cap)
    max_prime_chars: int = 4000
    max_concurrent: int = 16  # generation requests running at once (their tunes are stepped as one batch)
    max_waiting: int = 64  # requests waiting for a slot; one more -> 429
    queue_timeout_s: float = 15.0  # waited longer for a slot -> 503
    request_timeout_s: float = 120.0  # a generation request runs at most this long
    max_body_bytes: int = 64 * 1024
    max_renders: int = 2  # fluidsynth renders at once; one more -> 503
    max_export: int = 1000
    max_units: int = 64  # units in a heatmap or an intervention
    max_rank_tunes: int = 20  # archive tunes a ranking may read besides the one shown
    max_offset: int = 10**9  # archive search: rows skipped
    max_search_chars: int = 500  # archive search: the text looked for


MAX_ID = 2**63 - 1  # SQLite's largest integer: tune ids are 1..MAX_ID
MAX_NAME_CHARS = 100  # a model, meter, mode or key named in a request


def check_id(value: int, where: str = "tune id") -> int:
    """A tune id from a request: an integer in 1..MAX_ID (FolkRNNError, 400, otherwise)."""
    if not 1 <= value <= MAX_ID:
        raise FolkRNNError(f"{where} must be a whole number from 1 to {MAX_ID}, got {value}")
    return value


def brief(message: str, limit: int = 500) -> str:
    """An error message for a client: whole, or cut short when it quotes a long input."""
    return message if len(message) <= limit else f"{message[:limit - 40]}... ({len(message)} characters in all)"


def check_finite(value: float, where: str) -> float:
    if not math.isfinite(value):
        raise FolkRNNError(f"{where} must be a finite number, got {value}")
    return value


@dataclass
class ModelEntry:
    """A model the server was started with: its id in requests, label for the
    command line, checkpoint, and the fast step built once."""

    id: str
    label: str
    ckpt: Checkpoint
    step: Stepper = field(repr=False)


class Busy(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Slots:
    """Generation slots (asyncio; used on the event loop only)."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.sem = asyncio.Semaphore(limits.max_concurrent)
        self.waiting = 0

    async def acquire(self) -> None:
        if self.sem.locked() and self.waiting >= self.limits.max_waiting:
            raise Busy(429, f"too many requests: {self.waiting} are already waiting for a generation slot; try again shortly")
        self.waiting += 1
        try:
            await asyncio.wait_for(self.sem.acquire(), self.limits.queue_timeout_s)
        except asyncio.TimeoutError:
            raise Busy(503, f"the studio is busy: no generation slot came free in {self.limits.queue_timeout_s:g} s") from None
        finally:
            self.waiting -= 1

    def release(self) -> None:
        self.sem.release()


# -- request bodies (pydantic: unknown fields are errors; no coercion, so `true` is no
# number and "1" no integer; floats finite) ---------------------------------------------------
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ComposeBody(Strict):
    model: str = Field("default", max_length=MAX_NAME_CHARS)
    meter: str | None = Field(None, max_length=MAX_NAME_CHARS)
    mode: str | None = Field(None, max_length=MAX_NAME_CHARS)
    key: str = Field("C", max_length=3)
    prime: str = ""
    prime_format: Literal["tokens", "abc"] = "tokens"
    temperature: float = Field(0.9, gt=0, le=10)
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, ge=0, lt=2**64)
    num_tunes: int = Field(1, ge=1)
    max_tokens: int | None = Field(None, ge=1)  # None: the server's limit
    bars: Literal["free", "strict"] = "free"
    tune_type: str = Field("", max_length=MAX_NAME_CHARS)  # "" or a type (engine.compose_config checks it)
    form: str | None = Field(None, max_length=MAX_NAME_CHARS)  # None: the type's; "" or "none": no plan
    form_bars: int = Field(8, ge=1, le=1000)  # the library's rules (2 .. 64) give the message
    endings: int = Field(0, ge=0, le=2)


class PrimeBody(ComposeBody):
    """The Compose form, its prime checked by generation's own rules and limits (the meter
    of a type, the Key menu, the length cap): a prime that passes makes a tune."""


class TunePatch(Strict):
    title: str | None = None
    starred: bool | None = None
    note: str | None = None


class Ids(Strict):
    ids: Annotated[list[int], Field(min_length=1)]


class InspectBody(Strict):
    model: str = Field("default", max_length=MAX_NAME_CHARS)
    id: int | None = None
    tokens: str | None = None
    abc: str | None = None
    k: int = Field(5, ge=1, le=20)
    key: str | None = Field(None, max_length=3)  # the tonic to show the tokens in; None: the tune's own


Quantity = Literal["h", "c", "i", "f", "g", "o"]
Label = Literal["bar_next", "position", "section", "bar_in_section"]


class UnitsBody(Strict):
    model: str = Field("default", max_length=MAX_NAME_CHARS)
    id: int | None = None
    tokens: str | None = None
    abc: str | None = None
    layer: int = Field(1, ge=1)
    quantity: Quantity = "h"
    units: str | None = Field(None, max_length=2000)  # a list (`12, 301 5-9`); None: the top N by the label
    top: int | None = Field(None, ge=1)  # None: 16 (or the server's unit limit, if lower)
    label: Label = "bar_next"
    archive_tunes: int = Field(0, ge=0)  # rank over this many recent archive tunes too


class InterveneBody(Strict):
    id: int | None = None  # an archive tune: its settings, seed and index
    settings: ComposeBody | None = None  # or a Compose form (a pasted tune has no settings of its own)
    index: int = Field(0, ge=0)  # with settings: which tune of the request
    units: str = Field(..., max_length=2000)  # `3:12,301 2:77=0.9`
    quantity: Quantity = "h"
    ablation: Literal["zero", "mean"] = "zero"


class Mailbox:
    """Events from a worker thread to the event loop, handed over in batches.

    Tokens come ~1 ms apart; waking the loop for each would make the two threads
    trade the GIL a thousand times a second. The worker appends under a lock and
    wakes the loop at most every `interval` seconds for tokens (at once for other
    events), and only once the loop has taken the previous batch."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float = 0.02):
        self.loop = loop
        self.lock = threading.Lock()
        self.items: list[tuple[str, dict]] = []
        self.closed = False
        self.ready = asyncio.Event()
        self.woken = False
        self.last_wake = 0.0
        self.interval = interval

    def _wake(self) -> None:  # under self.lock
        if not self.woken:
            self.woken = True
            self.last_wake = time.monotonic()
            self.loop.call_soon_threadsafe(self.ready.set)

    def put(self, event: str, data: dict, urgent: bool = False) -> None:
        """Queue an event; the loop is woken for an urgent one, or when the last
        wake-up is `interval` s old (tokens then arrive a few dozen at a time)."""
        with self.lock:
            self.items.append((event, data))
            if urgent or event != "token" or time.monotonic() - self.last_wake >= self.interval:
                self._wake()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self._wake()

    async def take(self) -> tuple[list[tuple[str, dict]], bool]:
        await self.ready.wait()
        with self.lock:
            items, self.items = self.items, []
            self.ready.clear()
            self.woken = False
            return items, self.closed


class BodyLimit:
    """ASGI middleware: a request body must declare its length (411 otherwise) and
    keep under `limit` bytes (413). A plain ASGI layer, so that streamed responses
    pass through untouched."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] in ("POST", "PATCH", "PUT"):
            from fastapi.responses import JSONResponse

            headers = dict(scope["headers"])
            n = headers.get(b"content-length")
            refusal = None
            if n is None:
                if b"transfer-encoding" in headers:
                    refusal = JSONResponse({"error": "send a Content-Length (chunked bodies are not accepted)"}, 411)
            elif not n.isdigit() or int(n) > self.limit:
                refusal = JSONResponse({"error": f"request body of {n.decode(errors='replace')[:40]} bytes is over the "
                                                 f"limit of {self.limit}"}, 413)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def display_title(rec) -> str:
    """The tune's title wherever it is shown (card, archive, score, files): its own, or
    `folkrnn tune ID`."""
    return rec.title or f"folkrnn tune {rec.id}"


def _sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _mode_name(tok: str | None) -> str | None:
    return {"K:Cmaj": "major", "K:Cmin": "minor", "K:Cdor": "dorian", "K:Cmix": "mixolydian"}.get(tok or "")


class Studio:
    """Everything the routes share: models, archive, limits, worker pool, counters."""

    def __init__(self, models: list[ModelEntry], archive: Archive, limits: Limits = Limits(),
                 abcjs: Path | None = None):
        if not models:
            raise FolkRNNError("the studio needs at least one model")
        self.models = {m.id: m for m in models}
        self.default_model = models[0].id
        self.archive = archive
        self.limits = limits
        self.abcjs = abcjs
        self.audio_missing = audio_missing()
        # The workers hand tunes to the model's Batcher and wait; they also check the
        # settings and write the archive. OpenMP's thread count is per thread: one each.
        self.pool = ThreadPoolExecutor(max_workers=limits.max_concurrent, thread_name_prefix="folkrnn-gen",
                                       initializer=torch.set_num_threads, initargs=(1,))
        self.renders = threading.BoundedSemaphore(limits.max_renders)
        self.batchers = {m.id: Batcher(m.step, m.ckpt.vocab, f"folkrnn-batch-{m.id}") for m in models}
        self.hook_locks = {m.id: threading.Lock() for m in models}
        self.slots: Slots | None = None  # made on the event loop (lifespan)
        self._lock = threading.Lock()
        self.active = 0  # generation workers running now
        self.tokens_generated = 0
        self.cancelled = 0

    def model(self, model_id: str) -> ModelEntry:
        mid = self.default_model if model_id == "default" and "default" not in self.models else model_id
        try:
            return self.models[mid]
        except KeyError:
            raise FolkRNNError(f"unknown model {model_id!r}: this server has {', '.join(self.models)}") from None

    @contextmanager
    def hooked(self, entry: ModelEntry):
        """Inspect's hooks live on the shared model (the batcher's fast step never reads
        them): one hooked request at a time per model, waiting up to `queue_timeout_s`."""
        lock = self.hook_locks[entry.id]
        if not lock.acquire(timeout=self.limits.queue_timeout_s):
            raise Busy(503, "the studio is busy with another Inspect request on this model; try again shortly")
        try:
            yield entry.ckpt.model
        finally:
            lock.release()

    def check_form(self, body) -> tuple[Compose, ModelEntry]:
        lim = self.limits
        if body.max_tokens is None:
            body = body.model_copy(update={"max_tokens": lim.max_tokens})
        if body.num_tunes > lim.max_tunes:
            raise FolkRNNError(f"num_tunes: at most {lim.max_tunes} tunes per request, got {body.num_tunes}")
        if body.max_tokens > lim.max_tokens:
            raise FolkRNNError(f"max_tokens: at most {lim.max_tokens} tokens per tune, got {body.max_tokens}")
        if len(body.prime) > lim.max_prime_chars:
            raise FolkRNNError(f"prime: at most {lim.max_prime_chars} characters, got {len(body.prime)}")
        entry = self.model(body.model)
        form = Compose(**{**body.model_dump(), "model": entry.id})
        return form, entry

    # -- the generation worker (runs in the pool) ------------------------------------------
    def generate(self, form: Compose, entry: ModelEntry, seed: int, emit, cancel: threading.Event, deadline: float) -> None:
        """Generate form.num_tunes tunes, calling emit(event, data) for every token and
        tune; each finished tune is stored before its `tune` event."""
        with self._lock:
            self.active += 1
        try:
            cfg = compose_config(form, entry.ckpt.vocab, seed)
            settings = {**form.to_dict(), "seed": seed}
            for i, tune in enumerate(self._tunes(cfg, entry, emit, cancel, deadline)):
                with self._lock:
                    self.tokens_generated += len(tune.tokens)
                tid = self.archive.add(NewTune(entry.id, seed, i, settings, tune.tokens,
                                               next((t for t in tune.tokens[:1] if t.startswith("M:")), None),
                                               next((t for t in tune.tokens[1:2] if t.startswith("K:")), None),
                                               tune.truncated, tune.logprob))
                emit("tune", self.tune_view(self.archive.get(tid)))
            emit("done", {"seed": seed, "num_tunes": form.num_tunes})
        except Cancelled as e:
            cancel.set()  # the request's other tunes stop too
            with self._lock:
                self.cancelled += 1
            emit("error", {"error": f"stopped: {e}" if cancel.is_set() else
                           f"the request ran past {self.limits.request_timeout_s:g} s: {e}"})
        except FolkRNNError as e:
            cancel.set()
            emit("error", {"error": brief(str(e))})
        except Exception:  # a bug: log it, tell the client, keep serving
            cancel.set()
            log.exception("generation failed")
            emit("error", {"error": "internal error while generating (see the server's log)"})
        finally:
            with self._lock:
                self.active -= 1

    def _tunes(self, cfg, entry: ModelEntry, emit, cancel: threading.Event, deadline: float) -> Iterator[Tune]:
        """The request's tunes in order, their tokens emitted as they come. Without a form all
        of them join the model's Batcher at once; a form's tunes are made here, in this worker
        thread (`form_tunes`: a part's closing is chosen among particles, so a tune's tokens
        are sent when it is done; the page says "planning the form...")."""
        if cfg.form is not None:
            for i in range(cfg.num_tunes):
                emit("tune_start", {"index": i, "planning": True})
            for tune in form_tunes(entry.ckpt.model, entry.step, entry.ckpt.vocab,
                                   replace(cfg, batch_size=cfg.num_tunes), cancel, deadline):
                for p, tok in enumerate(tune.tokens):
                    emit("token", {"index": tune.index, "pos": p, "token": tok})
                yield tune
            return
        batcher = self.batchers[entry.id]
        jobs = []
        for i in range(cfg.num_tunes):  # all the request's tunes join the batch at once
            emit("tune_start", {"index": i})
            pos = iter(range(cfg.max_length))

            def on_token(tok: str, i: int = i, pos=pos) -> None:
                emit("token", {"index": i, "pos": next(pos), "token": tok})

            jobs.append(batcher.submit(Job(cfg, i, on_token, cancel, deadline)))
        for job in jobs:
            job.done.wait()
            if job.error is not None:
                raise job.error
            yield job.result

    def tune_view(self, rec, key: str | None = None) -> dict:
        """A tune as the page shows it: the record plus ABC text and the command line."""
        d = rec.to_dict()
        key = key or rec.settings.get("key") or "C"
        form = Compose(**{k: v for k, v in rec.settings.items() if k in Compose.__dataclass_fields__})
        entry = self.models.get(rec.model)
        label, vocab = (entry.label, entry.ckpt.vocab) if entry else (rec.model, Vocabulary.v2())
        try:
            cmd = command_line(compose_config(form, vocab, rec.seed), key, label, compose_shape(form).flags)
        except FolkRNNError as e:  # settings this server no longer accepts
            cmd = f"(cannot be made again here: {e})"
        d["command"] = f"{cmd}   # tune {rec.index + 1} of {form.num_tunes}"
        if rec.settings.get("intervention"):
            d["command"] += f", then the intervention {rec.settings['intervention']} (Inspect; folkrnn generate has none)"
        title = display_title(rec)
        comments = [f"folkrnn studio: model {rec.model}, seed {rec.seed}, tune {rec.index + 1}, "
                    f"temperature {form.temperature}" + (f", top-k {form.top_k}" if form.top_k else "")
                    + (f", top-p {form.top_p}" if form.top_p else ""),
                    f"made again by: {d['command']}"]
        if rec.truncated:
            comments.append("stopped at the length cap")
        try:
            d["abc"], d["repairs"] = tune_abc(rec.tokens, key=key, x=rec.id, title=title, comments=comments)
            d["abc_error"] = None
        except FolkRNNError as e:
            d["abc"], d["repairs"], d["abc_error"] = None, [], str(e)
        d["mode_name"] = _mode_name(rec.mode)
        d["key"] = key
        d["display_title"] = title  # the score's T:, the card's and the archive's title
        return d


def create_app(studio: Studio, allowed_hosts: list[str] | None = None, token: str | None = None):
    """The FastAPI application serving `studio`. `allowed_hosts`: the Host header
    values accepted (None: any); a studio on loopback accepts only loopback names
    (`guard.LOOPBACK_NAMES`), so a web page elsewhere cannot reach it through DNS rebinding.
    `token`: the value every state-changing request must carry in `X-Folkrnn-Token`
    (None: none needed; `folkrnn serve` sets one off loopback). A state-changing
    request from a page of another origin is always refused (`guard.Guard`)."""
    from http import HTTPStatus

    from fastapi import FastAPI, HTTPException
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @asynccontextmanager
    async def lifespan(app):
        studio.slots = Slots(studio.limits)
        yield
        for b in studio.batchers.values():
            b.close()
        studio.pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="folkrnn studio", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    limits = studio.limits

    # -- errors and limits --------------------------------------------------------------------
    @app.exception_handler(FolkRNNError)
    async def _user_error(request, exc):
        return JSONResponse({"error": brief(str(exc))}, status_code=400)

    @app.exception_handler(Busy)
    async def _busy(request, exc):
        return JSONResponse({"error": str(exc)}, status_code=exc.status, headers={"Retry-After": "2"})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc):
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
            msg = err.get("msg", "invalid")
            if err.get("type") == "finite_number":
                msg = "must be a finite number (not NaN or infinity)"
            elif err.get("type", "").endswith("_type") and isinstance(err.get("input"), (bool, int, float, str)):
                msg += f", got {json.dumps(err['input'])[:40]}"  # `true` for a number: say so
            parts.append(f"{loc}: {msg}" if loc else msg)
        return JSONResponse({"error": brief("; ".join(parts) or "invalid request")}, status_code=422)

    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)
    app.add_middleware(Guard, allowed_hosts=allowed_hosts, token=token)  # outermost: before the body is read

    def _tune(tune_id: int, where: str = "tune id"):
        check_id(tune_id, where)
        try:
            return studio.archive.get(tune_id)
        except KeyError:
            raise HTTPException(404, f"no tune {tune_id} in the archive") from None

    @app.exception_handler(StarletteHTTPException)  # FastAPI's and the router's (404, 405)
    async def _http(request, exc):
        detail = exc.detail
        where = f"{request.method} {request.url.path[:200]}"
        if exc.status_code in (404, 405) and detail == HTTPStatus(exc.status_code).phrase:  # the router's
            if exc.status_code == 404:
                detail = f"no such page or API route: {where}"
            elif exc.status_code == 405:
                allow = (exc.headers or {}).get("Allow", "")
                detail = f"method not allowed: {where}" + (f" (it answers {allow})" if allow else "")
        return JSONResponse({"error": brief(str(detail))}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _bug(request, exc):  # logged by the server; the client gets the app's shape
        return JSONResponse({"error": "internal error (see the server's log)"}, status_code=500)

    # -- the page -------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    static_files = {p.name: p for p in STATIC.iterdir() if p.is_file()}  # a fixed list, read once

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        path = static_files.get(name)
        if path is None:
            raise HTTPException(404, f"no static file {name[:100]!r}")
        return FileResponse(path)

    @app.get("/vendor/abcjs.js", include_in_schema=False)
    async def abcjs():
        if studio.abcjs is None:
            raise HTTPException(404, "abcjs is not installed (run `npm ci` in the folkrnn checkout)")
        return FileResponse(studio.abcjs, media_type="text/javascript")

    # -- api --------------------------------------------------------------------------------------
    @app.get("/api/info")
    async def info():
        return {
            "models": [{"id": m.id, "label": m.label, "hidden_size": m.ckpt.model.config.hidden_size,
                        "num_layers": m.ckpt.model.config.num_layers} for m in studio.models.values()],
            "default_model": studio.default_model,
            "meters": [m[2:] for m in METERS],
            "modes": ["major", "minor", "dorian", "mixolydian"],
            "tune_types": [{"name": t.name, "meter": t.meter.removeprefix("M:"), "form": t.form, "bars": t.bars}
                           for t in map(tune_type, TYPE_NAMES)],
            "limits": {k: getattr(limits, k) for k in limits.__dataclass_fields__},
            "missing": {"abcjs": None if studio.abcjs else "staff notation needs abcjs: run `npm ci` in the folkrnn checkout",
                        "audio": studio.audio_missing},
            "active": studio.active,
            "tokens_generated": studio.tokens_generated,
            "cancelled": studio.cancelled,
            "token_required": token is not None,  # the page sends it in X-Folkrnn-Token with every change
            "archive": {"path": studio.archive.path, "tunes": await asyncio.to_thread(studio.archive.count)},
        }

    @app.post("/api/prime")
    def check_prime(body: PrimeBody):
        form, entry = studio.check_form(body)
        cfg = compose_config(form, entry.ckpt.vocab, 0)  # what /api/generate checks, length cap included
        return {"tokens": list(cfg.prime)}

    @app.post("/api/generate")
    async def generate(body: ComposeBody):
        form, entry = studio.check_form(body)
        seed = form.seed if form.seed is not None else secrets.randbelow(2**32)
        await asyncio.to_thread(compose_config, form, entry.ckpt.vocab, seed)  # bad settings -> 400 before streaming
        await studio.slots.acquire()
        loop = asyncio.get_running_loop()
        mailbox = Mailbox(loop)
        cancel = threading.Event()
        deadline = time.monotonic() + limits.request_timeout_s

        def work() -> None:
            try:
                studio.generate(form, entry, seed, mailbox.put, cancel, deadline)
            finally:
                mailbox.close()

        try:
            future = loop.run_in_executor(studio.pool, work)
        except BaseException:
            studio.slots.release()
            raise
        future.add_done_callback(lambda _f: studio.slots.release())

        async def events():
            try:
                yield _sse("start", {"seed": seed, "model": entry.id, "num_tunes": form.num_tunes,
                                     "settings": {**form.to_dict(), "seed": seed}})
                while True:
                    batch, closed = await mailbox.take()
                    if batch:
                        yield b"".join(_sse(e, d) for e, d in batch)
                    if closed:
                        break
            finally:
                cancel.set()  # the client went away (or we are done): stop the worker

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/api/tunes")
    def tunes(meter: str | None = None, mode: str | None = None, model: str | None = None,
              starred: bool | None = None, q: str | None = None, limit: int = 50, offset: int = 0):
        if not 1 <= limit <= 500:
            raise FolkRNNError(f"limit must be in 1..500, got {limit}")
        if not 0 <= offset <= limits.max_offset:
            raise FolkRNNError(f"offset must be in 0..{limits.max_offset}, got {offset}")
        if q is not None and len(q) > limits.max_search_chars:
            raise FolkRNNError(f"q: the search text has at most {limits.max_search_chars} characters, got {len(q)}")
        for name, v in (("meter", meter), ("mode", mode), ("model", model)):
            _short(name, v)
        from folkrnn.sample import parse_meter, parse_mode

        query = Query(meter=parse_meter(meter) if meter else None, mode=parse_mode(mode) if mode else None,
                      model=model or None, starred=starred, text=(q or None), limit=limit, offset=offset)
        recs = studio.archive.search(query)
        return {"total": studio.archive.count(query), "tunes": [studio.tune_view(r) for r in recs],
                "models": studio.archive.models()}

    @app.get("/api/tunes/{tune_id}")
    def get_tune(tune_id: int, key: str | None = None):
        rec = _tune(tune_id)
        return studio.tune_view(rec, _check_key(key, rec) if key is not None else None)

    @app.patch("/api/tunes/{tune_id}")
    def patch_tune(tune_id: int, body: TunePatch):
        check_id(tune_id)
        try:
            rec = studio.archive.update(tune_id, title=body.title, starred=body.starred, note=body.note)
        except KeyError:
            raise HTTPException(404, f"no tune {tune_id} in the archive") from None
        return studio.tune_view(rec)

    @app.delete("/api/tunes/{tune_id}")
    def delete_tune(tune_id: int):
        check_id(tune_id)
        if studio.archive.delete([tune_id]) == 0:
            raise HTTPException(404, f"no tune {tune_id} in the archive")
        return {"deleted": 1}

    @app.post("/api/delete")
    def delete_many(body: Ids):
        return {"deleted": studio.archive.delete(_ids(body.ids))}

    def _ids(ids: list[int]) -> list[int]:
        for i in ids:
            check_id(i, "ids: each tune id")
        return ids

    def _short(name: str, value: str | None) -> str | None:
        if value is not None and len(value) > MAX_NAME_CHARS:
            raise FolkRNNError(f"{name}: at most {MAX_NAME_CHARS} characters, got {len(value)}")
        return value

    def _check_key(key: str | None, rec) -> str:
        from folkrnn.abc import parse_key

        key = _short("key", key) or rec.settings.get("key") or "C"
        parse_key(key)
        return key

    def _check_tempo(tempo: float) -> float:
        check_finite(tempo, "tempo")
        if not 20 <= tempo <= 400:
            raise FolkRNNError(f"tempo must be in 20..400 beats per minute, got {tempo:g}")
        return tempo

    def _filename(rec, ext: str) -> str:
        import re

        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", display_title(rec)).strip("-")[:60] or f"folkrnn-{rec.id}"
        return f"{stem}.{ext}"

    @app.get("/api/tunes/{tune_id}/abc")
    def tune_abc_file(tune_id: int, key: str | None = None):
        rec = _tune(tune_id)
        view = studio.tune_view(rec, _check_key(key, rec))
        if view["abc"] is None:
            raise FolkRNNError(f"tune {tune_id}: {view['abc_error']}")
        return Response(view["abc"], media_type="text/vnd.abc; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{_filename(rec, "abc")}"'})

    @app.get("/api/tunes/{tune_id}/midi")
    def tune_midi_file(tune_id: int, key: str | None = None, tempo: float = 100):
        rec = _tune(tune_id)
        data = tune_midi(rec.tokens, _check_key(key, rec), _check_tempo(tempo), title=display_title(rec))
        return Response(data, media_type="audio/midi",
                        headers={"Content-Disposition": f'attachment; filename="{_filename(rec, "mid")}"'})

    @app.get("/api/tunes/{tune_id}/wav")
    def tune_wav_file(tune_id: int, key: str | None = None, tempo: float = 100, download: bool = False):
        rec = _tune(tune_id)
        key, tempo = _check_key(key, rec), _check_tempo(tempo)
        if studio.audio_missing:
            raise HTTPException(501, f"audio is unavailable: {studio.audio_missing}; download the MIDI file instead")
        if not studio.renders.acquire(blocking=False):
            raise Busy(503, "the studio is busy rendering audio; try again shortly")
        try:
            data = tune_wav(rec.tokens, key, tempo)
        finally:
            studio.renders.release()
        headers = {"Cache-Control": "max-age=3600"}
        if download:
            headers["Content-Disposition"] = f'attachment; filename="{_filename(rec, "wav")}"'
        return Response(data, media_type="audio/wav", headers=headers)

    @app.post("/api/export")
    def export(body: Ids):
        if len(body.ids) > limits.max_export:
            raise FolkRNNError(f"export at most {limits.max_export} tunes at once, got {len(body.ids)}")
        recs = studio.archive.search(Query(ids=tuple(_ids(body.ids)), limit=len(body.ids)))
        if not recs:
            raise HTTPException(404, "none of those tunes is in the archive")
        texts = []
        for rec in sorted(recs, key=lambda r: r.id):
            view = studio.tune_view(rec)
            texts.append(view["abc"] or f"% tune {rec.id} is not a well-formed transcription ({view['abc_error']})\n")
        return Response("\n".join(texts), media_type="text/vnd.abc; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="folkrnn-tunes.abc"'})

    def _inspect_tokens(body, entry) -> list[str]:
        """The tune a request names: an archive id, tokens or ABC (exactly one)."""
        given = [x for x in (body.id, body.tokens, body.abc) if x is not None]
        if len(given) != 1:
            raise FolkRNNError("inspect one tune: give exactly one of id, tokens or abc")
        if body.id is not None:
            toks = _tune(body.id, "id").tokens
        elif body.tokens is not None:
            toks = body.tokens.split()
        else:
            from folkrnn.abc import tune_to_tokens

            toks = tune_to_tokens(body.abc, strict=False)
        if not toks:
            raise FolkRNNError("the tune has no tokens")
        if len(toks) > limits.max_tokens:
            raise FolkRNNError(f"the tune has {len(toks)} tokens, over the limit of {limits.max_tokens}")
        entry.ckpt.vocab.encode(toks, where="the tune")  # names an unknown token
        return toks

    def _inspect_key(body) -> str:
        """The tonic the tune is shown in: the request's, else the archive tune's key, the
        pasted ABC's K:, C for tokens (which are in C)."""
        from folkrnn.abc import parse_key, read_abc

        if body.key is not None:
            return parse_key(body.key).name
        if body.id is not None:
            return _tune(body.id, "id").settings.get("key") or "C"
        if body.abc is not None:
            return next((r.tonic for r in read_abc(body.abc, strict=False)), None) or "C"
        return "C"

    @app.post("/api/inspect")
    def inspect_tune(body: InspectBody):
        entry = studio.model(body.model)
        toks = _inspect_tokens(body, entry)
        key = _inspect_key(body)
        steps = token_probabilities(entry.ckpt.model, entry.ckpt.vocab, toks, body.k)
        nll = -sum(__import__("math").log(max(s.p, 1e-300)) for s in steps)
        # the tokens as the score writes them in the tune's key (the model reads them in C)
        shown = tokens_in_key([*toks, EOS], key)
        if shown is None:
            key, shown = "C", [*toks, EOS]
        out = []
        for t, s in enumerate(steps):
            alts = [a for a, _ in s.alternatives]
            out.append({"token": s.token, "p": s.p, "rank": s.rank, "alternatives": s.alternatives,
                        "shown": shown[t], "alternatives_shown": alternatives_in_key(toks, t, alts, key) or alts})
        return {"model": entry.id, "tokens": toks, "key": key, "shown": shown[:-1], "mean_nll": nll / len(steps),
                "steps": out}

    @app.post("/api/inspect/units")
    def inspect_units(body: UnitsBody):
        from folkrnn.web.units import LABEL_NAMES, check_layer, parse_unit_list, rank_units, unit_values

        entry = studio.model(body.model)
        model, vocab = entry.ckpt.model, entry.ckpt.vocab
        cfg = model.config
        check_layer(body.layer, cfg.num_layers)
        top = body.top if body.top is not None else min(16, limits.max_units)
        if body.units is None and top > limits.max_units:
            raise FolkRNNError(f"top: at most {limits.max_units} units, got {top}")
        if body.archive_tunes > limits.max_rank_tunes:
            raise FolkRNNError(f"archive_tunes: at most {limits.max_rank_tunes}, got {body.archive_tunes}")
        toks = _inspect_tokens(body, entry)
        chosen = parse_unit_list(body.units, cfg.hidden_size, limits.max_units) if body.units is not None else None
        tunes = [toks]
        if body.archive_tunes:
            others = studio.archive.search(Query(model=entry.id, limit=body.archive_tunes + 1))
            tunes += [r.tokens for r in others if r.id != body.id][: body.archive_tunes]
        with studio.hooked(entry):
            per_tune = unit_values(model, vocab, tunes, body.layer, body.quantity)
            values = per_tune[0]  # (T, hidden)
            try:
                ranking = rank_units(model, vocab, tunes, body.layer, body.quantity, body.label, max(top, 20), per_tune)
                rank_error = None
            except FolkRNNError as e:
                if chosen is None:
                    raise
                ranking, rank_error = None, str(e)
        units = chosen if chosen is not None else ranking.units[:top]
        v = values[:, units].T  # (units, T)
        return {
            "model": entry.id, "tokens": toks, "layer": body.layer, "quantity": body.quantity,
            "label": body.label, "label_name": LABEL_NAMES[body.label], "chosen_by": "list" if chosen is not None else "label",
            "units": units, "values": [[round(float(x), 5) for x in row] for row in v],
            "low": round(float(v.min()), 5), "high": round(float(v.max()), 5),
            "scores": None if ranking is None else [ranking.all_scores[u] for u in units],
            "ranking": None if ranking is None else {"units": ranking.units, "scores": ranking.scores,
                                                     "tokens": ranking.tokens, "tunes": ranking.tunes,
                                                     "groups": ranking.groups},
            "ranking_error": rank_error,
        }

    @app.post("/api/intervene")
    def intervene(body: InterveneBody):
        from folkrnn.web.units import Intervention, first_difference, parse_units, regenerate, unit_means, verdict

        if (body.id is None) == (body.settings is None):
            raise FolkRNNError("intervene on one tune: give either id (an archive tune) or settings (a Compose form)")
        rec = None
        if body.id is not None:
            rec = _tune(body.id, "id")
            if rec.model not in studio.models:
                raise FolkRNNError(f"tune {rec.id} was made by model {rec.model!r}, which this server was not started with")
            entry = studio.models[rec.model]
            form = Compose(**{k: v for k, v in rec.settings.items() if k in Compose.__dataclass_fields__ and k != "model"},
                           model=entry.id)
            seed, index = rec.seed, rec.index
        else:
            form, entry = studio.check_form(body.settings)
            seed = form.seed if form.seed is not None else secrets.randbelow(2**32)
            index = body.index
            if index >= form.num_tunes:
                raise FolkRNNError(f"index: the settings make {form.num_tunes} tune(s), so index must be below that, got {index}")
        model, vocab = entry.ckpt.model, entry.ckpt.vocab
        cfg = compose_config(form, vocab, seed)
        if cfg.max_length > limits.max_tokens:
            cfg = replace(cfg, max_length=limits.max_tokens)
        iv = Intervention(body.quantity, body.ablation,
                          parse_units(body.units, model.config.num_layers, model.config.hidden_size, limits.max_units))
        deadline = time.monotonic() + limits.request_timeout_s
        try:
            with studio.hooked(entry):
                base = regenerate(model, vocab, cfg, index, deadline=deadline)
                means = unit_means(model, vocab, base.tokens, iv) if iv.ablation == "mean" else None
                changed = regenerate(model, vocab, cfg, index, iv.hooks(means), deadline=deadline)
        except Cancelled:
            raise Busy(503, f"the intervention ran past {limits.request_timeout_s:g} s; try a shorter tune") from None
        settings = {**form.to_dict(), "seed": seed}

        def keep(tune, extra: dict, title: str | None):
            tid = studio.archive.add(NewTune(entry.id, seed, index, {**settings, **extra}, tune.tokens,
                                             next((t for t in tune.tokens[:1] if t.startswith("M:")), None),
                                             next((t for t in tune.tokens[1:2] if t.startswith("K:")), None),
                                             tune.truncated, tune.logprob))
            if title:
                studio.archive.update(tid, title=title)
            return studio.archive.get(tid)

        same = None if rec is None else list(base.tokens) == list(rec.tokens)
        base_rec = rec if same else keep(base, {}, None)
        name = f"tune {rec.id}" if rec is not None else f"seed {seed}, tune {index + 1}"
        iv_rec = keep(changed, {"intervention": str(iv)}, f"{name} with {iv}")
        return {
            "intervention": str(iv), "seed": seed, "index": index, "same_as_original": same,
            "changed": list(base.tokens) != list(changed.tokens),
            "first_difference": first_difference(base.tokens, changed.tokens),
            "baseline": {**studio.tune_view(base_rec), "verdict": verdict(base.tokens)},
            "intervened": {**studio.tune_view(iv_rec), "verdict": verdict(changed.tokens)},
        }

    return app


def load_studio(model_specs: list[str], db: str | Path, limits: Limits = Limits()) -> Studio:
    """Load the models (`default`, checkpoints, pickles) and open the archive."""
    from folkrnn.checkpoint import load_model

    entries: list[ModelEntry] = []
    for spec in model_specs:
        ckpt = load_model(spec)
        ident = spec if spec == "default" else Path(spec).stem
        base, n = ident, 2
        while ident in {e.id for e in entries}:
            ident, n = f"{base}-{n}", n + 1
        entries.append(ModelEntry(ident, spec, ckpt, Stepper(ckpt.model)))
    return Studio(entries, Archive(db), limits, find_abcjs())
