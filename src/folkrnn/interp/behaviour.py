"""The activation analyses of `folkrnn explain` (Q1-Q4 from what the model does): probes,
unit rankings, ablations while sampling, nudges, and respellings, each with its control.

They read a corpus sample (`activity.corpus_data`: `--corpus FILE`, or the training file
the counts come from) and skip, saying why, without one. Sentences are f-strings over
the findings; the wording is chosen by the numbers against their control, and the
answers say when no structure was found. Layers are numbered 1-3, units 0-based.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from folkrnn import tokens as T
from folkrnn.interp import ablation, activity, probes
from folkrnn.interp.figures import CONTROL, png
from folkrnn.interp.registry import Context, Figure, Result, Table, register

# A probe "reads" a label when it beats the token baseline by SEL_CUT, the random network
# (the trained weights permuted) by RAND_CUT, and its own control task (Hewitt & Liang) by
# CTRL_CUT (accuracy, absolute), each difference's bootstrap interval over held-out tunes
# (at LEVEL) excluding 0.
SEL_CUT = 0.02
RAND_CUT = 0.03
CTRL_CUT = 0.02
LEVEL = 0.99
# An ablation "matters" when it moves a metric by more than ABL_CUT (absolute share) and
# by more than 2 pooled SDs beyond both random controls.
ABL_CUT = 0.05
P_CUT = 0.01
NO_CORPUS = activity.NO_CORPUS


def _rng(ctx: Context, salt: int) -> np.random.Generator:
    return np.random.default_rng([ctx.config.seed, salt])


def _layers(ctx: Context) -> range:
    return range(1, ctx.model.config.num_layers + 1)


def _pct(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


# -- shared: probe sets with the random-network control ---------------------------------------
def _random_states(ctx: Context, data: activity.CorpusData) -> dict[str, np.ndarray]:
    """h and c of the random-network control on the same tunes (`activity.random_network_states`:
    the trained weights permuted within each block)."""
    return ctx.shared.random_states()


RANDOM_NETWORK = "the trained weights permuted within each gate block (same values and scale, no arrangement)"


def _probe_set(ctx: Context, data, labels: dict[str, np.ndarray], salt: int, bar=None) -> dict:
    """{label: {"layers": [{layer, state, accuracy, shuffled, random_network, control_task,
    over_baseline, over_random, selectivity (each {difference, lo, hi})}...], baseline, chance}}.

    Each state's probe is compared, on the same held-out rows, with the token baseline,
    the same probe on the random network's state of the same layer, and the same probe on
    its control task (`probes.control_task_labels`: a label fixed by the current token)."""
    rng = _rng(ctx, salt)
    test = probes.split_by_tune(data.tune, rng)
    base_x = probes.token_features(data.token, data.prev, ctx.model.config.vocab_size)
    rand = _random_states(ctx, data)
    out = {}
    for name, y in labels.items():
        keep = y >= 0
        if (keep & test).sum() < 10 or (keep & ~test).sum() < 10 or len(np.unique(y[keep])) < 2:
            continue
        ctl = probes.control_task_labels(y, data.token, rng)
        cap = activity.sizes(ctx).probe_train_tokens
        b = probes.probe(base_x, y, test, rng, keep_correct=True, max_train=cap)
        groups = data.tune[keep & test]

        def interval(a, c):
            return probes.paired_interval(a, c, groups, rng, level=LEVEL)

        rows = []
        for l in _layers(ctx):
            for s in ("h", "c"):
                r = probes.probe(data.states[f"{s}{l}"].astype(np.float32), y, test, rng, keep_correct=True, max_train=cap,
                                 control=ctl)
                rr = probes.probe(rand[f"{s}{l}"].astype(np.float32), y, test, rng, keep_correct=True, max_train=cap,
                                  control=ctl)
                rows.append({"layer": l, "state": s, "accuracy": r["accuracy"], "shuffled": r["shuffled"],
                             "random_network": rr["accuracy"], "control_task": r["control_task"],
                             "random_network_control_task": rr["control_task"],
                             "over_baseline": interval(r["correct"], b["correct"]),
                             "over_random": interval(r["correct"], rr["correct"]),
                             "selectivity": interval(r["correct"], r["control_correct"]),
                             "random_network_selectivity": rr["selectivity"]})
                if bar is not None:
                    bar.update(1)
        out[name] = {"layers": rows, "baseline": b["accuracy"], "chance": b["chance"], "classes": b["classes"],
                     "control_chance": r["control_chance"], "test_tokens": b["test_tokens"],
                     "train_tokens": b["train_tokens"], "interval_level": LEVEL, "random_network_kind": RANDOM_NETWORK}
    return out


def _clears(r: dict) -> bool:
    """One probe row beats all three controls: the token baseline, the random network and
    its control task, each by its margin and with the interval of the difference above 0."""
    return all(r[k]["difference"] > cut and r[k]["lo"] > 0
               for k, cut in (("over_baseline", SEL_CUT), ("over_random", RAND_CUT), ("selectivity", CTRL_CUT)))


def _reads(p: dict) -> list[dict]:
    """The probe rows that read their label (`_clears`)."""
    return [r for r in p["layers"] if _clears(r)]


def _margin(r: dict) -> float:
    """The smallest of a row's three differences (how far it clears the hardest control)."""
    return min(r[k]["difference"] for k in ("over_baseline", "over_random", "selectivity"))


def _best(p: dict) -> dict:
    return max(p["layers"], key=lambda r: (_margin(r), r["accuracy"]))


def _iv(d: dict) -> str:
    """A difference of accuracies with its interval, in points: `+12.3 [+10.1, +14.0]`."""
    return f"{100 * d['difference']:+.1f} [{100 * d['lo']:+.1f}, {100 * d['hi']:+.1f}]"


def _probe_sentence(what: str, p: dict) -> str:
    best = _best(p)
    reads = _reads(p)
    lv = f"{p['interval_level']:.0%}"
    s = (f"{what}: held-out accuracy from layer {best['layer']} {best['state']} {_pct(best['accuracy'])}, against "
         f"{_pct(p['baseline'])} for a probe reading only the current and previous token, {_pct(best['random_network'])} "
         f"for the same probe on a random network ({p['random_network_kind']}), {_pct(best['control_task'])} for the same "
         f"probe on its control task (a label fixed by the current token, drawn from the real labels' distribution; "
         f"chance {_pct(p['control_chance'])}), and {_pct(best['shuffled'])} when trained on shuffled labels (chance, the "
         f"commonest class: {_pct(p['chance'])}; {p['classes']} classes, {p['test_tokens']:,} held-out tokens). "
         f"Differences in points with {lv} intervals over resampled held-out tunes: over the token baseline "
         f"{_iv(best['over_baseline'])}, over the random network {_iv(best['over_random'])}, selectivity (over the control "
         f"task) {_iv(best['selectivity'])}.")
    if reads:
        s += (f" {len(reads)} of {len(p['layers'])} layer states beat all three controls (the token baseline by "
              f"{SEL_CUT:.0%}, the random network by {RAND_CUT:.0%}, the control task by {CTRL_CUT:.0%}, each interval "
              f"above 0).")
    else:
        s += (" No layer state beats all three controls (the token baseline by "
              f"{SEL_CUT:.0%}, the random network by {RAND_CUT:.0%}, the control task by {CTRL_CUT:.0%}, each {lv} "
              f"interval above 0).")
    return s


def _probe_table(title: str, pset: dict) -> Table:
    rows = []
    for name, p in pset.items():
        for r in p["layers"]:
            rows.append((name, r["layer"], r["state"], _pct(r["accuracy"]), _pct(p["baseline"]), _pct(r["random_network"]),
                         _pct(r["control_task"]), _pct(r["shuffled"]), _pct(p["chance"]), _iv(r["over_baseline"]),
                         _iv(r["over_random"]), _iv(r["selectivity"]), "yes" if _clears(r) else "no"))
    lv = f"{next(iter(pset.values()))['interval_level']:.0%}" if pset else ""
    return Table(title, ("label", "layer", "state", "accuracy", "token baseline", "random network", "control task",
                         "shuffled labels", "chance", "- baseline", "- random network", "selectivity", "reads"), tuple(rows),
                 "Ridge probes fitted on 75% of the tunes, scored on the other 25%. Token baseline: the one-hot of the "
                 f"current and previous token. Random network: {RANDOM_NETWORK}, run on the same tunes. Control task "
                 "(Hewitt & Liang): the same probe on the same state, on a label that depends only on the current token. "
                 "Shuffled labels: the probe trained on permuted labels (it must sit at chance). Differences in points, "
                 f"with {lv} bootstrap intervals over held-out tunes; selectivity = accuracy - control task. 'reads': all "
                 f"three differences above their margins ({SEL_CUT:.0%}, {RAND_CUT:.0%}, {CTRL_CUT:.0%}) with intervals "
                 "above 0.")


def _probe_figure(title: str, pset: dict) -> bytes:
    def draw(fig):
        axes = fig.subplots(1, len(pset), squeeze=False)[0]
        for ax, (name, p) in zip(axes, pset.items()):
            rows = p["layers"]
            x = np.arange(len(rows))
            ax.bar(x - 0.27, [r["accuracy"] for r in rows], 0.27, label="model", color="#3b73b9")
            ax.bar(x, [r["random_network"] for r in rows], 0.27, label="random network", color=CONTROL)
            ax.bar(x + 0.27, [r["control_task"] for r in rows], 0.27, label="control task", color="#e0b040")
            ax.axhline(p["baseline"], color="#d62728", lw=1, label="token baseline")
            ax.axhline(p["chance"], color="k", lw=1, ls=":", label="chance")
            ax.set_xticks(x, [f"{r['layer']}{r['state']}" for r in rows])
            ax.set_title(name, fontsize=9)
            ax.set_ylim(0, 1)
        axes[0].set_ylabel("held-out accuracy")
        axes[-1].legend(fontsize=7, loc="lower right")

    return png(draw, (3.2 * max(1, len(pset)), 3.2))


# -- Q1: bars -----------------------------------------------------------------------------------
def _bar_labels(data) -> dict[str, np.ndarray]:
    return activity.bar_labels(data)


def bar_rankings(ctx: Context, data=None) -> dict[int, probes.Ranking]:
    """Per layer, h units ranked by position in bar (made once per explain run: `ctx.shared`)."""
    return ctx.shared.bar_rankings()


def _ablation_conditions(ctx: Context, data, rankings: dict[int, probes.Ranking], ks, salt: int,
                         means: bool = True) -> list[ablation.Condition]:
    return activity.ablation_conditions(ctx.model.config.hidden_size, data, rankings, ks, _rng(ctx, salt), means)


def _count_conditions(ctx, ks, means=True) -> int:
    return activity.count_conditions(ctx.model.config.hidden_size, ctx.model.config.num_layers, ks, means)


def bar_ablation(ctx: Context, data=None, bar=None) -> list[dict]:
    """The bar-unit ablation (made once per explain run: `ctx.shared`)."""
    return ctx.shared.bar_ablation(bar)


def _effect(rows: list[dict], metric: str, layer: int, k: int, replace: str) -> dict | None:
    """Top vs both controls for one (layer, k, replace): the drop and whether it matters."""
    by = {r["units"]: r for r in rows if r["layer"] == layer and r["k"] == k and r["replace"] == replace}
    base = next(r for r in rows if r["units"] == "none")["metrics"][metric]
    if "top" not in by:
        return None
    t = by["top"]["metrics"][metric]
    ctrls = [by[c]["metrics"][metric] for c in ("random", "variance_matched") if c in by]
    if not ctrls or math.isnan(t["mean"]):
        return None
    worst = min(c["mean"] for c in ctrls) if metric != "bars_mean" else None
    ok = all(abs(t["mean"] - c["mean"]) > ABL_CUT and abs(t["mean"] - c["mean"]) > 2 * math.hypot(t["sd"], c["sd"])
             for c in ctrls)
    return {"top": t["mean"], "top_sd": t["sd"], "controls": [c["mean"] for c in ctrls], "baseline": base["mean"],
            "worst_control": worst, "matters": ok and t["mean"] < min(c["mean"] for c in ctrls)}


@register("bars", "Q1: counting bars (probes, units, ablation)", "bars", section="questions", order=10)
def bars(ctx: Context, bar) -> Result:
    sz = activity.sizes(ctx)
    n_cond = _count_conditions(ctx, sz.ablation_ks)
    bar.total = 1 + 4 * len(_layers(ctx)) + n_cond * sz.ablation_tunes * len(sz.ablation_seeds)
    data = activity.corpus_data(ctx, bar)
    if data is None:
        return Result(skipped=NO_CORPUS)
    bar.update(1)
    pset = _probe_set(ctx, data, _bar_labels(data), 100, bar)
    if not pset:
        return Result(skipped="too few labelled tokens in the corpus sample for the bar probes")
    ranks = bar_rankings(ctx, data)
    top_units = {}
    for l, r in ranks.items():
        idx = r.top(10)
        top_units[str(l)] = [{"unit": u, "eta_resid": float(r.eta_resid[u]), "eta": float(r.eta[u]),
                              "bar_power": float(r.bar_power[u]) if r.bar_power is not None else None} for u in idx]
    abl = bar_ablation(ctx, data, bar)
    base = abl[0]["metrics"]["bars_right"]
    findings_abl = [{"layer": r["layer"], "k": r["k"], "units": r["units"], "replace": r["replace"],
                     "bars_right": r["metrics"]["bars_right"]["mean"], "sd": r["metrics"]["bars_right"]["sd"],
                     "pattern_AABB": r["metrics"]["pattern_AABB"]["mean"], "final_tonic": r["metrics"]["final_tonic"]["mean"],
                     "truncated": r["truncated"], "unit_ids": r["units_ablated"], "tunes": r["tunes"], "seeds": r["seeds"]}
                    for r in abl[1:]]
    probes_out = {name: p for name, p in pset.items()}
    # per layer 1-3 with baselines, as issue 10 asks
    per_layer = {str(l): {name: {"h": next(r["accuracy"] for r in p["layers"] if r["layer"] == l and r["state"] == "h"),
                                 "c": next(r["accuracy"] for r in p["layers"] if r["layer"] == l and r["state"] == "c"),
                                 "token_baseline": p["baseline"], "chance": p["chance"],
                                 "random_network_h": next(r["random_network"] for r in p["layers"]
                                                          if r["layer"] == l and r["state"] == "h"),
                                 "control_task_h": next(r["control_task"] for r in p["layers"]
                                                        if r["layer"] == l and r["state"] == "h"),
                                 "reads": [r["state"] for r in p["layers"] if r["layer"] == l and _clears(r)],
                                 "shuffled_h": next(r["shuffled"] for r in p["layers"] if r["layer"] == l and r["state"] == "h")}
                          for name, p in pset.items()} for l in _layers(ctx)}
    sent = [_probe_sentence(f"Position in bar ({pset['position in bar']['classes']} commonest positions, tokens of right bars)",
                            pset["position in bar"])] if "position in bar" in pset else []
    if "next is bar line" in pset:
        sent.append(_probe_sentence("Next token is a bar line", pset["next is bar line"]))
    flat = 2.0 / (np.mean(np.diff(data.offsets)))
    for l, r in ranks.items():
        u = r.top(1)[0]
        n_beyond = int((r.eta_resid > r.chance_resid_99).sum())
        sent.append(f"Layer {l}: {n_beyond} of {len(r.eta)} units carry more of position in bar, beyond what the current "
                    f"token explains, than the 99th percentile of the same units with positions shuffled "
                    f"({r.chance_resid_99:.3f}); the top unit {u} has {r.eta_resid[u]:.2f} (raw {r.eta[u]:.2f})"
                    + (f" and {r.bar_power[u]:.3f} of its power at the bar period (a flat spectrum gives about {flat:.3f})."
                       if r.bar_power is not None else "."))
    sent.append(f"Sampling {abl[0]['tunes']} tunes x {len(abl[0]['seeds'])} seeds per condition (length cap "
                f"{sz.ablation_max_length} tokens), the unablated model writes {_pct(base['mean'])} ± {_pct(base['sd'])} "
                f"of bars right.")
    effects = []
    for l in _layers(ctx):
        for k in sz.ablation_ks:
            for rep in ("zero", "mean"):
                e = _effect(abl, "bars_right", l, k, rep)
                if e is None:
                    continue
                effects.append({"layer": l, "k": k, "replace": rep, **e})
    matters = [e for e in effects if e["matters"]]
    for e in effects:
        if e["replace"] == "zero" and e["k"] == max(k for k in sz.ablation_ks if k < ctx.model.config.hidden_size):
            sent.append(f"Zeroing the top {e['k']} position units of layer {e['layer']}: {_pct(e['top'])} ± "
                        f"{_pct(e['top_sd'])} bars right; {e['k']} random units: {_pct(e['controls'][0])}"
                        + (f", {e['k']} variance-matched random units: {_pct(e['controls'][1])}" if len(e["controls"]) > 1 else "")
                        + ".")
    sent.append(f"{len(matters)} of {len(effects)} top-unit ablations lower bars right by more than {ABL_CUT:.0%} and 2 SDs "
                f"below both random controls.")
    findings = {"probes": per_layer, "probe_detail": probes_out, "top_units": top_units, "ablation": findings_abl,
                "baseline_bars_right": base["mean"], "baseline_bars_right_sd": base["sd"],
                "ablation_effects": effects, "ablation_baseline": abl[0]["metrics"]}
    ctx.extra["q1_parts"] = {"probes": pset, "matters": matters, "effects": effects, "base": base}
    figs = [Figure("Probes for bar position and bar lines", _probe_figure("bars", pset),
                   "Blue: probe on the model's state; grey: the same probe on the random network (the trained weights "
                   "permuted within each gate block); yellow: the same probe on its control task (a label fixed by the "
                   "current token); red line: a probe reading only the current and previous token; dotted: chance."),
            Figure("Bars right under ablation", _ablation_figure(abl, "bars_right", "bars right"),
                   "Top units (ranked by position-in-bar variance beyond the current token) against random and "
                   "variance-matched random units of the same count; error bars: SD over seeds; line: unablated.")]
    rows = tuple((r["layer"], r["k"], r["units"], r["replace"], _pct(r["bars_right"]), _pct(r["sd"]),
                  _pct(r["pattern_AABB"]), _pct(r["final_tonic"]), _pct(r["truncated"])) for r in findings_abl)
    tables = [_probe_table("Bar probes per layer and state", pset),
              Table("Ablations while sampling", ("layer", "k", "units", "replace", "bars right", "sd", "AABB",
                                                 "ends on tonic", "hit length cap"), rows,
                    f"Unablated: {_pct(base['mean'])} ± {_pct(base['sd'])} bars right.")]
    answer, found = _q1_answer(ctx)
    return Result(findings=findings, sentences=sent, figures=figs, tables=tables, answers={"q1": answer},
                  verdicts={"q1": "yes" if found else "no"})


def _q1_answer(ctx: Context) -> tuple[str, bool]:
    """The Q1 answer and whether it is positive: a probe row clears all three controls
    (`_clears`) or a top-unit ablation matters."""
    q = ctx.extra["q1_parts"]
    p = q["probes"]
    parts = []
    found = False
    for name in ("position in bar", "next is bar line"):
        if name not in p:
            continue
        reads = _reads(p[name])
        if reads:
            found = True
            b = max(reads, key=_margin)
            parts.append(f"{name} can be read from layer {b['layer']} {b['state']} with {_pct(b['accuracy'])} accuracy on "
                         f"held-out tunes, above a probe on the current and previous token ({_pct(p[name]['baseline'])}), "
                         f"the same probe on a random network with the trained weights permuted "
                         f"({_pct(b['random_network'])}) and on its control task ({_pct(b['control_task'])}; selectivity "
                         f"{_iv(b['selectivity'])} points, {p[name]['interval_level']:.0%} interval over tunes)")
    if q["matters"]:
        # an ablation counts only beside a readable position: its statistics (a few seeds,
        # 2 pooled SDs) let one of many conditions pass by chance in a random network
        e = max(q["matters"], key=lambda e: min(e["controls"]) - e["top"])
        how = "zeroing" if e["replace"] == "zero" else "replacing by their mean"
        parts.append(f"{how} the top {e['k']} {'such ' if found else 'position '}units of layer {e['layer']} lowers bars "
                     f"right from {_pct(e['baseline'])} to {_pct(e['top'])}, while as many random units leave "
                     f"{' and '.join(_pct(c) for c in e['controls'])}"
                     + ("" if found else f" (1 of {len(q['effects'])} conditions over {len(q['base']['values'])} seeds: "
                        "not evidence on its own)"))
    elif q["effects"]:
        parts.append(f"no ablation of top units lowered bars right (unablated {_pct(q['base']['mean'])}) by more than "
                     f"{ABL_CUT:.0%} beyond random units")
    if not found:
        return ("The report finds no structure for counting bars: no layer state tells position in bar or an upcoming bar "
                "line better than all of the current and previous token, a random network of the trained weights "
                "permuted, and the probe's control task, and "
                + (parts[-1] if parts else "no ablation ran") + "."), False
    return "Bar counting: " + "; ".join(parts) + ".", True


def _ablation_figure(rows: list[dict], metric: str, label: str) -> bytes:
    base = rows[0]["metrics"][metric]

    def draw(fig):
        layers = sorted({r["layer"] for r in rows[1:]})
        axes = fig.subplots(1, len(layers), squeeze=False, sharey=True)[0]
        colours = {"top": "#d62728", "random": CONTROL, "variance_matched": "#555555"}
        for ax, l in zip(axes, layers):
            ks = sorted({r["k"] for r in rows[1:] if r["layer"] == l})
            for j, kind in enumerate(("top", "random", "variance_matched")):
                for rep, mk in (("zero", "o"), ("mean", "s")):
                    pts = [r for r in rows[1:] if r["layer"] == l and r["units"] == kind and r["replace"] == rep]
                    if not pts:
                        continue
                    xs = [ks.index(r["k"]) + 0.12 * (j - 1) + (0.04 if rep == "mean" else 0) for r in pts]
                    ax.errorbar(xs, [r["metrics"][metric]["mean"] for r in pts], [r["metrics"][metric]["sd"] for r in pts],
                                fmt=mk, color=colours[kind], ms=4, lw=1,
                                label=f"{kind} {rep}" if l == layers[0] else None, mfc="none" if rep == "mean" else None)
            ax.axhline(base["mean"], color="k", lw=0.8)
            ax.set_xticks(range(len(ks)), [str(k) for k in ks])
            ax.set_xlabel(f"layer {l}: units knocked out")
        axes[0].set_ylabel(label)
        axes[0].legend(fontsize=6)

    return png(draw, (9, 3.2))


# -- Q1: recovery after a nudge -------------------------------------------------------------------
def _forced_rows(model, vocab, prefixes: list[list[str]], free: int, seed: int, on_tune=None) -> list[list[str]]:
    """Sample one continuation per prefix in one batched run: row i is forced through
    prefixes[i] (a per-row prime through the logits hook), then samples `free` tokens."""
    from folkrnn.sample import SampleConfig, sample

    L = max(len(p) for p in prefixes)
    forced = torch.full((len(prefixes), L + 1), -1, dtype=torch.long)
    for i, p in enumerate(prefixes):
        forced[i, :len(p)] = torch.tensor(vocab.encode(p))

    def force(logits, ctx):
        pos = ctx.position.clamp(max=L)
        f = forced[ctx.tune, pos]
        rows = f >= 0
        if not bool(rows.any()):
            return None
        out = logits.clone()
        out[rows] = -1e4
        out[rows, f[rows]] = 0.0
        return out

    cfg = SampleConfig(num_tunes=len(prefixes), seed=seed, max_length=L + free, batch_size=256)
    out: list[list[str]] = [[] for _ in prefixes]
    for t in sample(model, vocab, cfg, hooks=[("hook_logits", force)]):
        out[t.index] = t.tokens
        if on_tune is not None:
            on_tune()
    return out


def _bar_rightness(tokens: list[str], start: int) -> list[bool]:
    """Rightness (length == meter) of each complete bar that starts at or after token `start`."""
    from folkrnn.rhythm import scan

    s = scan(tokens)
    out = []
    tok_bar = s.tok_bar
    first_bar = tok_bar[start] + 1 if start < len(tok_bar) else len(s.bars)
    closed = sum(1 for t in s.tokens if T.kind(t) == "bar")
    for b in range(max(first_bar, 0), min(len(s.bars), closed)):
        sp = s.bars[b]
        if sp.end_event > sp.first_event:
            out.append(sp.length == sp.expected)
    return out


def _nudges(tune: list[str], vocab) -> dict[str, tuple[list[str], int]] | None:
    """(nudged prefix, index of the nudge) per kind, from a tune cut in the middle of its 3rd bar."""
    from folkrnn.rhythm import label_tokens

    labels = label_tokens(tune)
    cut = next((i for i, lb in enumerate(labels) if lb.bar == 2 and lb.position > 0 and T.kind(lb.token) == "pitch"), None)
    if cut is None:
        return None
    prefix = tune[:cut]
    out = {"none": (prefix, cut)}
    out["inserted bar line"] = (prefix + ["|"], cut)
    d = next((i for i in range(cut - 1, 1, -1) if T.kind(tune[i]) == "duration" and labels[i].bar >= 1), None)
    if d is not None:
        out["dropped duration"] = (prefix[:d] + prefix[d + 1:], d)
    m = tune[0]
    if m in T.METERS:
        length = T.meter_length(m)
        wrong = next((x for x in ("M:4/4", "M:6/8", "M:3/4") if x in vocab and T.meter_length(x) != length), None)
        if wrong is not None:
            out["wrong meter token"] = ([wrong] + prefix[1:], 0)
    return out


@register("recovery", "Q1: recovery after a nudge", "bars", section="questions", order=11)
def recovery(ctx: Context, bar) -> Result:
    data = activity.corpus_data(ctx)
    if data is None:
        return Result(skipped=NO_CORPUS)
    from folkrnn.evaluate.tune import analyse_tune

    sz = activity.sizes(ctx)
    good = [t for t in data.tunes if t[0] in T.METERS and (r := analyse_tune(t)).all_bars_right and r.bars >= 6]
    rng = _rng(ctx, 400)
    chosen = [good[i] for i in sorted(rng.choice(len(good), min(sz.recovery_prefixes, len(good)), replace=False))] if good else []
    jobs = []  # (kind, original meter, nudged prefix)
    for t in chosen:
        nd = _nudges(t, ctx.vocab)
        if nd is None:
            continue
        for kind, (p, _) in nd.items():
            for _ in range(sz.recovery_samples):
                jobs.append((kind, t[0], p))
    if len(jobs) < 4:
        return Result(skipped="too few corpus tunes with 6+ right bars to nudge")
    bar.total = len(jobs)
    conts = _forced_rows(ctx.model, ctx.vocab, [j[2] for j in jobs], sz.recovery_tokens, 11, lambda: bar.update(1))
    per: dict[str, dict] = {}
    for (kind, meter, p), seq in zip(jobs, conts):
        gen = seq[len(p):]
        if kind == "wrong meter token":
            music = [meter] + seq[1:]
            right = _bar_rightness(music, len(p))
            written = _bar_rightness(seq, len(p))
        else:
            right = _bar_rightness(seq, len(p) - 1)
            written = right
        d = per.setdefault(kind, {"runs": 0, "recovered": 0, "bars_to_recover": [], "first_right": 0, "right_share": [],
                                  "written_share": [], "bars": 0})
        d["runs"] += 1
        if right:
            d["bars"] += len(right)
            d["first_right"] += right[0]
            d["right_share"].append(float(np.mean(right)))
            d["written_share"].append(float(np.mean(written)) if written else float("nan"))
            if any(right):
                d["recovered"] += 1
                d["bars_to_recover"].append(right.index(True))
        del gen
    rows = {}
    for kind, d in per.items():
        rows[kind] = {"runs": d["runs"], "recovered": d["recovered"] / d["runs"],
                      "bars_to_recover_mean": float(np.mean(d["bars_to_recover"])) if d["bars_to_recover"] else None,
                      "first_bar_right": d["first_right"] / d["runs"],
                      "bars_right_after": float(np.mean(d["right_share"])) if d["right_share"] else None,
                      "fits_written_meter": float(np.nanmean(d["written_share"])) if d["written_share"] else None,
                      "bars_measured": d["bars"]}
    c = rows.get("none")
    sent = [f"{len(chosen)} corpus tunes with every bar right were cut in the middle of their third bar, nudged, and "
            f"continued for {sz.recovery_tokens} tokens ({sz.recovery_samples} sample(s) each). Control: the same cut "
            f"with no nudge."]
    for kind, r in rows.items():
        sent.append(f"{'No nudge' if kind == 'none' else kind.capitalize()}: the first complete bar after the cut is right "
                    f"in {_pct(r['first_bar_right'])} of {r['runs']} runs, {_pct(r['bars_right_after'])} of the bars after it "
                    f"are right, counting is right again within the continuation in {_pct(r['recovered'])}"
                    + (f", after {r['bars_to_recover_mean']:.1f} wrong bars on average" if r["bars_to_recover_mean"] is not None
                       else "") + "."
                    + (f" {_pct(r['fits_written_meter'])} of those bars last the written (wrong) meter instead."
                       if kind == "wrong meter token" and r["fits_written_meter"] is not None else ""))
    table = Table("Recovery after a nudge", ("nudge", "runs", "first bar right", "bars right after", "recovered",
                                             "wrong bars before recovery", "bars measured"),
                  tuple((k, r["runs"], _pct(r["first_bar_right"]), _pct(r["bars_right_after"]), _pct(r["recovered"]),
                         "" if r["bars_to_recover_mean"] is None else f"{r['bars_to_recover_mean']:.2f}", r["bars_measured"])
                        for k, r in rows.items()),
                  "A bar is right when it lasts exactly the meter of the music before the cut. Control: no nudge.")
    answer = {}
    if c is not None and c["bars_right_after"] is not None:
        worst = [(k, r) for k, r in rows.items() if k != "none" and r["bars_right_after"] is not None]
        if worst and c["bars_right_after"] > 0.5:
            k, r = min(worst, key=lambda kr: kr[1]["bars_right_after"])
            answer["q1"] = (f"After a nudge it counts from what it was shown: with no nudge {_pct(c['bars_right_after'])} of "
                            f"the continued bars are right; the worst nudge, a {k}, leaves {_pct(r['bars_right_after'])} "
                            f"right, and counting is right again in {_pct(r['recovered'])} of runs"
                            + (f" after {r['bars_to_recover_mean']:.1f} wrong bars on average." if r["bars_to_recover_mean"]
                               is not None else "."))
        else:
            answer["q1"] = (f"Even without a nudge only {_pct(c['bars_right_after'])} of its continued bars are right, so "
                            f"recovery from nudges cannot be measured.")
    return Result(findings={"recovery": rows}, sentences=sent, tables=[table], answers=answer)


# -- Q2: structure ------------------------------------------------------------------------------
def _target_logp(data) -> np.ndarray:
    return data.logp[np.arange(len(data.target)), data.target]


def _bigram_logp(data, vocab_size: int) -> np.ndarray:
    """Each row's target log-probability under a bigram of the other sampled tunes
    (leave-one-tune-out, add-0.5): the control for what token statistics alone give."""
    V = vocab_size
    total = np.zeros((V, V))
    np.add.at(total, (data.token, data.target), 1.0)
    out = np.empty(len(data.token))
    for k in range(len(data.tunes)):
        a, b = data.offsets[k], data.offsets[k + 1]
        own = np.zeros((V, V))
        np.add.at(own, (data.token[a:b], data.target[a:b]), 1.0)
        c = total - own + 0.5
        probs = c / c.sum(1, keepdims=True)
        out[a:b] = np.log(probs[data.token[a:b], data.target[a:b]])
    return out


def _repeat_flags(data) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the target is in a bar that repeats an earlier bar of the tune exactly (1),
    in a bar that is new (0), or neither (-1); and the same for whole parts (a section whose
    form label appeared before: the A part written out again)."""
    from folkrnn.evaluate.tune import analyse_tune

    bar_flag = np.full(len(data.target), -1, np.int64)
    part_flag = np.full(len(data.target), -1, np.int64)
    for k, tune in enumerate(data.tunes):
        a, b = data.offsets[k], data.offsets[k + 1]
        labels = data.labels[a:b]
        content: dict[int, list[str]] = {}
        for lb in labels:
            if lb.bar >= 0 and T.kind(lb.token) != "bar":
                content.setdefault(lb.bar, []).append(lb.token)
        seen: set = set()
        rep = {}
        for bi in sorted(content):
            c = tuple(content[bi])
            rep[bi] = len(c) >= 2 and c in seen
            seen.add(c)
        sections = analyse_tune(tune).sections
        labels_seen: set = set()
        part_of = {}
        for s in sections:
            again = s.label in labels_seen
            labels_seen.add(s.label)
            for bi in range(s.first_bar, s.last_bar + 1):
                part_of[bi] = again
        for j in range(b - a - 1):  # row a+j predicts the token read at a+j+1
            lb = labels[j + 1]
            if lb.bar >= 0 and T.kind(lb.token) != "bar" and lb.bar in rep:
                bar_flag[a + j] = int(rep[lb.bar])
                if lb.bar in part_of:
                    part_flag[a + j] = int(part_of[lb.bar])
    return bar_flag, part_flag


def _gap_test(data, lp: np.ndarray, ctrl: np.ndarray, flag: np.ndarray, rng: np.random.Generator, draws: int) -> dict | None:
    """Per tune with both kinds of rows: mean log p (repeated) - mean log p (new), for the
    model and the bigram; a sign-flip permutation test of the paired difference."""
    gm, gc = [], []
    rep_m, new_m, rep_c, new_c = [], [], [], []
    for k in range(len(data.tunes)):
        a, b = data.offsets[k], data.offsets[k + 1]
        f = flag[a:b]
        if (f == 1).sum() < 2 or (f == 0).sum() < 2:
            continue
        m, c = lp[a:b], ctrl[a:b]
        rep_m.append(m[f == 1].mean())
        new_m.append(m[f == 0].mean())
        rep_c.append(c[f == 1].mean())
        new_c.append(c[f == 0].mean())
        gm.append(rep_m[-1] - new_m[-1])
        gc.append(rep_c[-1] - new_c[-1])
    if len(gm) < 3:
        return None
    d = np.array(gm) - np.array(gc)
    signs = rng.choice([-1.0, 1.0], size=(draws, len(d)))
    null = np.abs((signs * d).mean(1))
    p = float((1 + (null >= abs(d.mean())).sum()) / (draws + 1))
    return {"tunes": len(gm), "model_repeated_p": float(np.exp(np.mean(rep_m))), "model_new_p": float(np.exp(np.mean(new_m))),
            "bigram_repeated_p": float(np.exp(np.mean(rep_c))), "bigram_new_p": float(np.exp(np.mean(new_c))),
            "model_gap_nats": float(np.mean(gm)), "bigram_gap_nats": float(np.mean(gc)), "difference_nats": float(d.mean()),
            "p": p, "draws": draws}


def _cycle_beats(c: dict) -> bool:
    """A layer has 8-bar-cycle units: more than twice the 1% chance count of units above both
    controls' 99th percentiles, and its top unit above every value of both controls."""
    return len(c["above_controls"]) > 0.02 * c["units"] and bool(c["above_control_max"])


def _cycle_sentence(fourier: dict) -> str:
    """One sentence from `structure.cycle_units_fourier` (per layer: `probes.cycle_power`)."""
    if not fourier:
        return "No tune in the corpus sample has 16 bars, so no unit could be tested for 8-bar cycles."
    parts = []
    for l, c in fourier.items():
        t = c["top"][0]
        parts.append(f"layer {l}: {len(c['above_controls'])} of {c['units']} units beat both controls (about "
                     f"{0.01 * c['units']:.1f} would by chance; "
                     f"top unit {t['unit']} with {t['power']:.3f} of its power at that period against 99th percentiles of "
                     f"{c['shuffled_bars_99']:.3f} with the bars shuffled and {c['random_network_99']:.3f} on a random "
                     f"network)")
    c0 = next(iter(fourier.values()))
    head = (f"Units tracking 8-bar cycles (share of a unit's bar-averaged power at one cycle per 8 bars, over "
            f"{c0['tunes']} tunes of 16 bars or more; a flat spectrum gives about {c0['flat_share']:.3f}): ")
    beats = any(_cycle_beats(c) for c in fourier.values())
    lone = [f"layer {l} unit {u}" for l, c in fourier.items() for u in c["above_control_max"]]
    tail = ("." if beats else ". No layer has both more than twice the chance count of such units and a top unit above "
            "every control value: no unit tracks 8-bar cycles beyond the controls"
            + (f" (single units above every control value, worth a listen: {', '.join(lone)})." if lone else "."))
    return head + "; ".join(parts) + tail


@register("structure", "Q2: repeats and form", "structure", section="questions", order=20)
def structure(ctx: Context, bar) -> Result:
    sz = activity.sizes(ctx)
    data = activity.corpus_data(ctx, bar)
    if data is None:
        return Result(skipped=NO_CORPUS)
    pending = 0 if ctx.shared.made("bar_ablation") else _count_conditions(ctx, sz.ablation_ks) * sz.ablation_tunes * len(sz.ablation_seeds)
    bar.total = 3 + 5 * len(_layers(ctx)) + pending
    lp = _target_logp(data)
    ctrl = _bigram_logp(data, ctx.model.config.vocab_size)
    bar_flag, part_flag = _repeat_flags(data)
    bar.update(1)
    rng = _rng(ctx, 500)
    bars_t = _gap_test(data, lp, ctrl, bar_flag, rng, ctx.config.permutations)
    parts_t = _gap_test(data, lp, ctrl, part_flag, rng, ctx.config.permutations)
    bar.update(1)
    sec = np.array([min(lb.section, 3) if lb.section >= 0 and lb.bar >= 0 else -1 for lb in data.labels], np.int64)
    bis = np.array([lb.bar_in_section if 0 <= lb.bar_in_section < 8 and lb.bar >= 0 else -1 for lb in data.labels], np.int64)
    pset = _probe_set(ctx, data, {"section (1-4+)": sec, "bar in section (1-8)": bis}, 510, bar)
    ranks = {l: probes.rank_units(data.states[f"h{l}"], bis, data.token, _rng(ctx, 520 + l)) for l in _layers(ctx)}
    cycle_units = {str(l): [{"unit": u, "eta_resid": float(r.eta_resid[u]), "eta": float(r.eta[u])} for u in r.top(5)]
                   for l, r in ranks.items()}
    # units whose bar-averaged activity cycles every 8 bars (the phrase), against a random
    # network's units and the same units with each tune's bars shuffled
    bar_of_row = np.array([lb.bar for lb in data.labels], np.int64)
    rand = _random_states(ctx, data)
    fourier = {}
    for l in _layers(ctx):
        c = probes.cycle_power(data.states[f"h{l}"], rand[f"h{l}"], data.offsets, bar_of_row, _rng(ctx, 530 + l),
                               bars_per_cycle=8)
        if c is not None:
            fourier[str(l)] = c
        bar.update(1)
    abl = bar_ablation(ctx, data, bar)
    # the AABB rate under the bar-unit ablations
    kmax = max(k for k in sz.ablation_ks if k < ctx.model.config.hidden_size)
    aabb = [{"layer": r["layer"], "k": r["k"], "units": r["units"], "replace": r["replace"],
             "pattern_AABB": r["metrics"]["pattern_AABB"]["mean"], "sd": r["metrics"]["pattern_AABB"]["sd"]}
            for r in abl[1:]]
    base_aabb = abl[0]["metrics"]["pattern_AABB"]
    sent = []
    found = []
    for what, t in (("bars that repeat an earlier bar of the tune exactly", bars_t),
                    ("parts whose material returns (a section with an earlier section's form label)", parts_t)):
        if t is None:
            sent.append(f"Too few tunes have both {what} and new ones to compare.")
            continue
        more = t["difference_nats"] > 0 and t["p"] < P_CUT
        sent.append(f"Over {t['tunes']} tunes, the model gives tokens in {what} a geometric-mean probability of "
                    f"{t['model_repeated_p']:.2f} against {t['model_new_p']:.2f} in new ones; a bigram of the other tunes "
                    f"(the control: what token statistics alone give) {t['bigram_repeated_p']:.2f} against "
                    f"{t['bigram_new_p']:.2f}. The model's advantage on repeats exceeds the bigram's by "
                    f"{t['difference_nats']:+.2f} nats a token (sign-flip test over tunes, p = {t['p']:.2g})"
                    + (": it predicts material it has already heard in the tune." if more else
                       ": no advantage beyond token statistics at the bar set (p < 0.01)."))
        if more:
            found.append((what, t))
    for name, p in pset.items():
        sent.append(_probe_sentence(name.capitalize(), p))
    for l, r in ranks.items():
        u = r.top(1)[0]
        sent.append(f"Layer {l}: {int((r.eta_resid > r.chance_resid_99).sum())} units carry the bar's place in its section "
                    f"(1-8) beyond the current token above the shuffled 99th percentile ({r.chance_resid_99:.3f}); top unit "
                    f"{u} ({r.eta_resid[u]:.3f}).")
    sent.append(_cycle_sentence(fourier))
    top_rows = [a for a in aabb if a["k"] == kmax and a["replace"] == "zero"]
    sent.append(f"AABB rate unablated: {_pct(base_aabb['mean'])} ± {_pct(base_aabb['sd'])}; with the top {kmax} position "
                f"units of each layer zeroed: "
                + ", ".join(f"layer {a['layer']} {a['units']} {_pct(a['pattern_AABB'])}" for a in top_rows) + ".")
    figs = [Figure("Probes for section and bar within section", _probe_figure("structure", pset),
                   "As for the bar probes: grey, the random network (trained weights permuted); yellow, the control "
                   "task; red line, the token baseline.")]
    g_tune = next((k for k, t in enumerate(data.tunes) if data.n_bars()[k] >= 16), 0)
    from folkrnn.interp import gramian

    a, b = data.offsets[g_tune], data.offsets[g_tune + 1]
    L = ctx.model.config.num_layers
    g = gramian.gramian(data.states[f"h{L}"][a:b].astype(np.float32), center=True)
    figs.append(Figure(f"Gramian of layer-{L} states over corpus tune {g_tune}", gramian.plot(g, ["<s>"] + data.tunes[g_tune]),
                       "Cosine similarity of the (tune-centred) hidden states at every pair of steps; thin lines: bar lines. "
                       "Repeated bars show as off-diagonal stripes."))
    bar.update(1)
    findings = {"repeated_bars": bars_t, "repeated_parts": parts_t, "probes": pset, "cycle_units": cycle_units,
                "cycle_units_fourier": fourier,
                "aabb_ablation": aabb, "baseline_AABB": base_aabb["mean"], "baseline_AABB_sd": base_aabb["sd"],
                "gramian_tune": g_tune}
    reads = {n: _reads(p) for n, p in pset.items()}
    cycling = [(l, c) for l, c in fourier.items() if _cycle_beats(c)]
    if found or any(reads.values()) or cycling:
        bits = []
        for what, t in found:
            bits.append(f"tokens in {what.split(' (')[0]} get probability {t['model_repeated_p']:.2f} against "
                        f"{t['model_new_p']:.2f} for new material, {t['difference_nats']:+.2f} nats a token more than a "
                        f"bigram's advantage (p = {t['p']:.2g})")
        for n, rs in reads.items():
            if rs:
                bst = max(rs, key=_margin)
                bits.append(f"{n} is read from layer {bst['layer']} {bst['state']} with {_pct(bst['accuracy'])} accuracy "
                            f"(token baseline {_pct(pset[n]['baseline'])}, random network {_pct(bst['random_network'])}, "
                            f"control task {_pct(bst['control_task'])}; selectivity {_iv(bst['selectivity'])} points)")
        for l, c in cycling:
            bits.append(f"{len(c['above_controls'])} units of layer {l} follow an 8-bar cycle (top unit {c['top'][0]['unit']}: "
                        f"{c['top'][0]['power']:.3f} of its bar-averaged power at that period, above every value of a random "
                        f"network's units and of shuffled bar order)")
        answer = "Repetition and form: " + "; ".join(bits) + f". It writes AABB in {_pct(base_aabb['mean'])} of sampled tunes."
    else:
        answer = ("The report finds no structure for repetition: tokens of repeated material are no better predicted than "
                  "token statistics predict them, no layer state tells the section or the bar within it better than "
                  "the current and previous token, a random network and the probe's control task do, and no unit "
                  "follows an 8-bar cycle beyond a random network and shuffled bar order.")
    positive = bool(found or any(reads.values()) or cycling)
    return Result(findings=findings, sentences=sent, figures=figs, tables=[_probe_table("Form probes", pset)],
                  answers={"q2": answer}, verdicts={"q2": "yes" if positive else "no"})


# -- Q3: cadences ----------------------------------------------------------------------------------
def _pitch_sets(vocab) -> tuple[list[int], list[int]]:
    """Ids of the pitch tokens sounding C (tonic) and G (dominant) in every C mode."""
    tonic, dom = [], []
    for t in vocab.tokens:
        if T.kind(t) != "pitch":
            continue
        p = T.parse_pitch(t)
        if p.accidental not in ("", "="):
            continue
        pc = p.midi() % 12
        if pc == 0:
            tonic.append(vocab[t])
        elif pc == 7:
            dom.append(vocab[t])
    return tonic, dom


def _cadence_rows(data) -> np.ndarray:
    """Per row: 1 if its target is the last note of a section-final bar, 0 if another
    pitch token, -1 otherwise."""
    from folkrnn.rhythm import layout, scan

    out = np.full(len(data.target), -1, np.int64)
    for k, tune in enumerate(data.tunes):
        a, b = data.offsets[k], data.offsets[k + 1]
        closing = {i for i, bi in enumerate(layout(scan(tune)).bars) if bi.closing}
        labels = data.labels[a:b]
        last: dict[int, int] = {}
        for j in range(1, b - a):
            lb = labels[j]
            if T.kind(lb.token) == "pitch" and lb.bar >= 0:
                out[a + j - 1] = 0
                if lb.bar in closing:
                    last[lb.bar] = j
        for j in last.values():
            out[a + j - 1] = 1
    return out


@register("cadences", "Q3: cadences", "cadences", section="questions", order=30)
def cadences(ctx: Context, bar) -> Result:
    sz = activity.sizes(ctx)
    data = activity.corpus_data(ctx, bar)
    if data is None:
        return Result(skipped=NO_CORPUS)
    tonic, dom = _pitch_sets(ctx.vocab)
    if not tonic:
        return Result(skipped="the vocabulary has no tonic pitch token")
    k = sz.ablation_ks[min(1, len(sz.ablation_ks) - 1)]
    n_cond = 1 + 3 * len(_layers(ctx))
    bar.total = 2 + n_cond * sz.ablation_tunes * len(sz.ablation_seeds)
    cad = _cadence_rows(data)
    p = np.exp(data.logp.astype(np.float64))
    pt, pd = p[:, tonic].sum(1), p[:, dom].sum(1)
    tgt_pc = np.array([(data.labels[i + 1].pitch % 12) if i + 1 < len(data.labels) and data.labels[i + 1].pitch is not None
                       and data.tune[i + 1] == data.tune[i] else -1 for i in range(len(data.target))])
    at, el = cad == 1, cad == 0
    if at.sum() < 3 or el.sum() < 3:
        return Result(skipped="too few section-final notes in the corpus sample")
    rates = {"cadence_notes": int(at.sum()), "other_notes": int(el.sum()),
             "model_p_tonic_at_cadence": float(pt[at].mean()), "model_p_tonic_elsewhere": float(pt[el].mean()),
             "model_p_dominant_at_cadence": float(pd[at].mean()), "model_p_dominant_elsewhere": float(pd[el].mean()),
             "corpus_tonic_at_cadence": float((tgt_pc[at] == 0).mean()), "corpus_tonic_elsewhere": float((tgt_pc[el] == 0).mean()),
             "corpus_dominant_at_cadence": float((tgt_pc[at] == 7).mean()),
             "corpus_dominant_elsewhere": float((tgt_pc[el] == 7).mean())}
    # permutation control: is the model's tonic lift at cadences beyond relabelling rows at random?
    rng = _rng(ctx, 600)
    sel = np.nonzero(cad >= 0)[0]
    lab = cad[sel]
    diff = pt[sel][lab == 1].mean() - pt[sel][lab == 0].mean()
    null = []
    for _ in range(ctx.config.permutations):
        q = rng.permutation(lab)
        null.append(pt[sel][q == 1].mean() - pt[sel][q == 0].mean())
    rates["tonic_lift_p"] = float((1 + (np.abs(null) >= abs(diff)).sum()) / (len(null) + 1))
    bar.update(1)
    ranks = {l: probes.rank_units(data.states[f"h{l}"], cad, data.token, _rng(ctx, 610 + l)) for l in _layers(ctx)}
    units = {str(l): [{"unit": u, "eta_resid": float(r.eta_resid[u]), "eta": float(r.eta[u])} for u in r.top(5)]
             for l, r in ranks.items()}
    bar.update(1)
    conds = _ablation_conditions(ctx, data, ranks, (k,), 620, means=False) if k < ctx.model.config.hidden_size else []
    abl = ablation.run(ctx.model, ctx.vocab, conds, sz.ablation_tunes, sz.ablation_seeds, sz.ablation_max_length,
                       on_tune=lambda: bar.update(1)) if conds else []
    abl_rows = [{"layer": r["layer"], "k": r["k"], "units": r["units"], "replace": r["replace"],
                 "final_tonic": r["metrics"]["final_tonic"]["mean"], "sd": r["metrics"]["final_tonic"]["sd"],
                 "section_ends_tonic": r["metrics"]["section_ends_tonic"]["mean"], "tunes": r["tunes"], "seeds": r["seeds"]}
                for r in abl]
    lift = rates["model_p_tonic_at_cadence"] - rates["model_p_tonic_elsewhere"]
    sent = [f"At the last note of a section-final bar ({rates['cadence_notes']:,} in the corpus sample) the model puts "
            f"{_pct(rates['model_p_tonic_at_cadence'])} of its probability on the tonic and "
            f"{_pct(rates['model_p_dominant_at_cadence'])} on the dominant; at the other {rates['other_notes']:,} notes "
            f"{_pct(rates['model_p_tonic_elsewhere'])} and {_pct(rates['model_p_dominant_elsewhere'])} (rows relabelled at "
            f"random: p = {rates['tonic_lift_p']:.2g} for the tonic difference). The corpus itself has the tonic there "
            f"{_pct(rates['corpus_tonic_at_cadence'])} of the time ({_pct(rates['corpus_tonic_elsewhere'])} elsewhere) and the "
            f"dominant {_pct(rates['corpus_dominant_at_cadence'])} ({_pct(rates['corpus_dominant_elsewhere'])})."]
    for l, r in ranks.items():
        u = r.top(1)[0]
        sent.append(f"Layer {l}: {int((r.eta_resid > r.chance_resid_99).sum())} units tell the step before a cadence note "
                    f"from the step before any other note beyond the current token, above the shuffled 99th percentile "
                    f"({r.chance_resid_99:.4f}); top unit {u} ({r.eta_resid[u]:.4f}).")
    matters = []
    if abl:
        base = abl[0]["metrics"]["final_tonic"]
        sent.append(f"Ends on the tonic, unablated: {_pct(base['mean'])} ± {_pct(base['sd'])} of sampled tunes.")
        for l in _layers(ctx):
            e = _effect(abl, "final_tonic", l, k, "zero")
            if e is None:
                continue
            sent.append(f"Zeroing the top {k} pre-cadence units of layer {l}: {_pct(e['top'])} ± {_pct(e['top_sd'])} end on "
                        f"the tonic; random units {_pct(e['controls'][0])}, variance-matched "
                        f"{_pct(e['controls'][-1])}.")
            if e["matters"]:
                matters.append({"layer": l, **e})
    findings = {**rates, "units": units, "ablation": abl_rows, "ablation_matters": matters}
    found_lift = lift > 0 and rates["tonic_lift_p"] < P_CUT
    if found_lift or matters:
        answer = (f"Cadences: at the last note of a part's final bar it gives the tonic {_pct(rates['model_p_tonic_at_cadence'])} "
                  f"against {_pct(rates['model_p_tonic_elsewhere'])} at other notes (the corpus: "
                  f"{_pct(rates['corpus_tonic_at_cadence'])} and {_pct(rates['corpus_tonic_elsewhere'])}), so it knows where "
                  f"a part ends.")
        if matters:
            m = matters[0]
            answer += (f" Knocking out the top {k} pre-cadence units of layer {m['layer']} lowers tunes ending on the tonic "
                       f"from {_pct(m['baseline'])} to {_pct(m['top'])} (random units: "
                       f"{' and '.join(_pct(c) for c in m['controls'])}).")
        elif abl:
            answer += (f" No set of {k} pre-cadence units changed how often tunes end on the tonic beyond random units "
                       f"(unablated {_pct(abl[0]['metrics']['final_tonic']['mean'])}).")
    else:
        answer = (f"The report finds no structure for cadences: the model's tonic probability at the ends of parts "
                  f"({_pct(rates['model_p_tonic_at_cadence'])}) is not above that at other notes "
                  f"({_pct(rates['model_p_tonic_elsewhere'])}) beyond chance (p = {rates['tonic_lift_p']:.2g}), and no "
                  f"unit ablation changed the ending beyond random units.")
    table = Table("Pre-cadence unit ablations", ("layer", "k", "units", "ends on tonic", "sd", "sections end on tonic"),
                  tuple((r["layer"], r["k"], r["units"], _pct(r["final_tonic"]), _pct(r["sd"]), _pct(r["section_ends_tonic"]))
                        for r in abl_rows), "Zero replacement; random and variance-matched random units as controls.")
    return Result(findings=findings, sentences=sent, tables=[table], answers={"q3": answer},
                  verdicts={"q3": "yes" if found_lift or matters else "no"})


# -- Q4: behaviour ---------------------------------------------------------------------------------
def _respell_jobs(data, vocab, counts, limit: int, rng: np.random.Generator) -> list[tuple[int, int, str, str, str]]:
    """(tune, token index, original, respelled, control) for up to `limit` tunes: the first
    note with a seen equivalent spelling in the tune's mode, no other accidental of its letter
    before it in the bar; the control note sounds 1-2 semitones away, with the training count
    nearest the respelling's."""
    from folkrnn.interp.equivalence import equivalent_pairs, sounding

    pairs = equivalent_pairs(vocab)
    seen = (lambda t: counts[t] > 0) if counts is not None else (lambda t: True)
    partners: dict[tuple[str, str], list[str]] = {}
    for p in pairs:
        if seen(p["a"]) and seen(p["b"]):
            for m in p["modes"]:
                partners.setdefault((p["a"], m), []).append(p["b"])
                partners.setdefault((p["b"], m), []).append(p["a"])
    pitch = [t for t in vocab.tokens if T.kind(t) == "pitch" and seen(t)]
    jobs = []
    order = rng.permutation(len(data.tunes))
    for k in order:
        tune = data.tunes[k]
        if len(tune) < 4 or tune[1] not in T.MODES:
            continue
        mode = tune[1]
        letters_in_bar: set = set()
        for i in range(2, len(tune) - 2):
            t = tune[i]
            if T.kind(t) == "bar":
                letters_in_bar = set()
                continue
            if T.kind(t) != "pitch":
                continue
            letter = T.parse_pitch(t).letter.upper()
            if letter not in letters_in_bar and (t, mode) in partners:
                b = partners[(t, mode)][int(rng.integers(len(partners[(t, mode)])))]
                s = sounding(t, mode)
                near = [c for c in pitch if 1 <= abs(sounding(c, mode) - s) <= 2]
                if near:
                    cb = counts[b] if counts is not None else 0
                    ctrl = min(near, key=lambda c: (abs(math.log1p(counts[c] if counts is not None else 0) - math.log1p(cb)), c))
                    jobs.append((int(k), i, t, b, ctrl))
                    break
            letters_in_bar.add(letter)
        if len(jobs) >= limit:
            break
    return jobs


def _kl_after(model, vocab, seqs: list[list[str]], at: int, steps: int) -> torch.Tensor:
    """Log-probs (3, steps, V) of the rows reading tokens at..at+steps-1 of each of 3 sequences."""
    ids = torch.tensor([[vocab.bos] + vocab.encode(s) for s in seqs])
    with torch.no_grad():
        logits, _ = model(ids)
    return torch.log_softmax(logits[:, at + 1: at + 1 + steps].double(), -1)


@register("enharmonic_behaviour", "Q4: respelling a note while the model plays", "enharmonics", section="questions", order=41)
def enharmonic_behaviour(ctx: Context, bar) -> Result:
    sz = activity.sizes(ctx)
    data = activity.corpus_data(ctx, bar)
    if data is None:
        return Result(skipped=NO_CORPUS)
    jobs = _respell_jobs(data, ctx.vocab, ctx.counts, sz.kl_tunes, _rng(ctx, 700))
    if len(jobs) < 3:
        return Result(skipped="fewer than 3 corpus tunes hold a note with a seen equivalent spelling")
    from folkrnn.interp.interventions import swap

    bar.total = len(jobs)
    kl_r, kl_c, ex = [], [], []
    for k, i, orig, resp, ctrl in jobs:
        tune = data.tunes[k]
        steps = min(sz.kl_steps, len(tune) - i)
        lp = _kl_after(ctx.model, ctx.vocab, [tune, swap(tune, i, resp), swap(tune, i, ctrl)], i, steps)
        p0 = lp[0].exp()
        kr = float((p0 * (lp[0] - lp[1])).sum(-1).mean())
        kc = float((p0 * (lp[0] - lp[2])).sum(-1).mean())
        kl_r.append(kr)
        kl_c.append(kc)
        ex.append({"tune": k, "index": i, "note": orig, "respelled": resp, "control": ctrl, "kl_respelled": kr,
                   "kl_control": kc})
        bar.update(1)
    r, c = np.array(kl_r), np.array(kl_c)
    d = np.log(r + 1e-12) - np.log(c + 1e-12)
    rng = _rng(ctx, 710)
    signs = rng.choice([-1.0, 1.0], size=(ctx.config.permutations, len(d)))
    p = float((1 + (np.abs((signs * d).mean(1)) >= abs(d.mean())).sum()) / (ctx.config.permutations + 1))
    beh = {"tunes": len(jobs), "steps": sz.kl_steps, "kl_respelled_median": float(np.median(r)),
           "kl_control_median": float(np.median(c)), "kl_respelled_mean": float(r.mean()), "kl_control_mean": float(c.mean()),
           "respelled_smaller": int((r < c).sum()), "log_ratio_mean": float(d.mean()), "p": p, "examples": ex[:20]}
    sent = [f"In {len(jobs)} corpus tunes one note was respelled as its equivalent in the tune's mode (both spellings seen "
            f"in training), and, as the control, changed instead to a note 1-2 semitones away with a similar training "
            f"count. The KL divergence of the next-token predictions over the following {sz.kl_steps} steps has median "
            f"{beh['kl_respelled_median']:.3f} nats for the respelling and {beh['kl_control_median']:.3f} for the changed "
            f"note; the respelling moves the predictions less in {beh['respelled_smaller']} of {len(jobs)} tunes "
            f"(sign-flip test of the log ratio, p = {p:.2g})."]
    table = Table("Respellings (first 20)", ("tune", "note", "respelled", "KL", "control note", "KL control"),
                  tuple((e["tune"], e["note"], e["respelled"], f"{e['kl_respelled']:.3f}", e["control"],
                         f"{e['kl_control']:.3f}") for e in ex[:20]),
                  "KL(original || nudged) of the next-token distributions, averaged over the steps after the note.")
    if p < P_CUT and d.mean() < 0:
        answer = (f"In behaviour, respelling a note moves the next predictions by a median KL of {beh['kl_respelled_median']:.3f} "
                  f"nats against {beh['kl_control_median']:.3f} for changing the note (p = {p:.2g} over {len(jobs)} tunes): "
                  f"it treats the spellings as closer than different notes"
                  + (", though not as the same" if beh["kl_respelled_median"] > 0.1 * beh["kl_control_median"] else "") + ".")
    elif p < P_CUT:
        answer = (f"In behaviour, respelling a note moves the next predictions more than changing the note does (median "
                  f"KL {beh['kl_respelled_median']:.3f} against {beh['kl_control_median']:.3f} nats, p = {p:.2g} over "
                  f"{len(jobs)} tunes): no sign that it treats the spellings as equivalent.")
    else:
        answer = (f"In behaviour, respelling a note moves its predictions as much as changing the note does (median KL "
                  f"{beh['kl_respelled_median']:.3f} against {beh['kl_control_median']:.3f} nats, p = {p:.2g}): no sign that "
                  f"it treats the spellings as equivalent.")
    return Result(findings={"behaviour": beh}, sentences=sent, tables=[table], answers={"q4": answer},
                  verdicts={"q4": "yes" if p < P_CUT and d.mean() < 0 else "no"})
