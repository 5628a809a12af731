"""Where sections end: does the model count bars, or listen for the cadence?

At every bar line of a tune, k = the full bars of its section so far (`bar_numbers`: a
pickup not counted; a second ending counted from where the first began). The "hazard"
at k is the share of the bar lines after bar k that are `:|`:

- `empirical_values`: in real (or generated) tunes, whether each bar line is `:|`;
- `teacher_forced_values`: the model's P(`:|`) at those same bar lines, reading the
  real tune up to there, renormalised over the bar tokens (P(`:|`) / P(any bar token));
- `hazard`: either, pooled by k, with a bootstrap interval over tunes.

Then the edits (`edits`, `count_or_cadence`) tell counting from listening. In every tune
whose first section is 8 full bars closed by `:|` (the 8th bar holds the cadence), the
section is edited and P(`:|`) read at its bar lines: drop bar 4 (the cadence comes 7th),
play bar 4 twice (it comes 9th), swap the cadence bar with bar 5 (the count stays, the
content moves), and, as the controls, swap bars 3 and 6 or bars 2 and 6 (edits of the
same kind that leave the cadence in place; bars 2 and 6 are often the same bar, where
that swap changes nothing, so 3 and 6 is the control the tests use). A counter ends the section after 8 bars whatever they
hold; a listener after the cadence bar wherever it is.

All probabilities come from batched forward passes (`end_probs`): each sequence cut
just after the last position read, padded at the end (an LSTM never reads ahead, so the
padding changes nothing before it), one pass per batch.

The registered analysis `sections` (Q2) runs these on the explain corpus sample and on
the model's own tunes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from folkrnn import tokens as T
from folkrnn.interp import activity
from folkrnn.interp.registry import Context, Figure, Result, Table, register
from folkrnn.interp.stats import bootstrap_mean, sign_flip
from folkrnn.rhythm import label_tokens

log = logging.getLogger(__name__)

KMAX = 16  # bar lines after 16 or more bars are pooled at 16
END = ":|"
BarLine = tuple[int, int, str]  # (index in the tune's tokens, k = full bars of the section so far, the bar token)


def bar_numbers(tokens: Sequence[str]) -> list[BarLine]:
    """(index in `tokens`, k, token) for every bar line of a tune (tokens without `<s>`).

    k counts the full bars of the line's section up to and including the bar it closes;
    a pickup bar is not counted (its bar line has k = 0). A bar token right after
    another that closes the same bar again (`:| |:`, `:| |2`, a double bar written `| |`)
    is not a new bar line and is left out. The bars of a second ending are counted from where the first ending
    began, so both endings' bars share their k.

    >>> t = "M:4/4 K:Cmaj G 2 | C 8 | D 8 :| |: c 8 | d 8 |1 e 8 :| |2 g 8 |".split()
    >>> bar_numbers(t)
    [(4, 0, '|'), (7, 1, '|'), (10, 2, ':|'), (14, 1, '|'), (17, 2, '|1'), (20, 3, ':|'), (24, 3, '|')]
    >>> bar_numbers("M:6/8 K:Cmaj C 6 | D 6 | E 6 |".split())
    [(4, 1, '|'), (7, 2, '|'), (10, 3, '|')]
    """
    labels = label_tokens(list(tokens))
    out: list[BarLine] = []
    count, section, last_bar = 0, None, None
    before_ending = 0
    ending = 0
    for i, lab in enumerate(labels):
        if T.kind(lab.token) != "bar" or lab.bar < 0 or lab.bar == last_bar:
            continue
        last_bar = lab.bar
        if lab.section != section:
            section, count, ending = lab.section, 0, 0
        if lab.ending != ending:
            if lab.ending == 1:
                before_ending = count
            elif lab.ending == 2:
                count = before_ending
            ending = lab.ending
        if lab.bar_verdict != "pickup":
            count += 1
        out.append((i, count, lab.token))
    return out


# -- reading the model ------------------------------------------------------------------------
def _bar_ids(vocab) -> tuple[list[int], int]:
    bars = [t for t in vocab.tokens if T.kind(t) == "bar"]
    if END not in bars:
        raise ValueError(f"the vocabulary has no {END} token")
    return [vocab[t] for t in bars], bars.index(END)


@torch.inference_mode()
def end_probs(model, vocab, seqs: Sequence[Sequence[str]], reads: Sequence[Sequence[int]],
              batch_size: int = 64) -> list[np.ndarray]:
    """P(`:|`) / P(any bar token) at given token indices, batched.

    seqs: token lists (no `<s>`); reads[j]: indices into seqs[j] -> one (len(reads[j]),)
    float64 array per sequence: the model's probability that token `at` is `:|` given a
    bar token comes there, reading `<s>` + seqs[j][:at]. Sequences are run in batches of
    `batch_size`, sorted by the length needed, cut after their last read and padded
    after it: ids (batch, time) -> logits (batch, time, vocab), row `at` read."""
    bar_ids, end = _bar_ids(vocab)
    bar_t = torch.tensor(bar_ids)
    need = [max(r) + 1 if len(r) else 0 for r in reads]  # input length: <s> + seq[:max(r)]
    out: list[np.ndarray] = [np.zeros(0) for _ in seqs]
    order = sorted((j for j in range(len(seqs)) if need[j] > 0), key=lambda j: need[j])
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(order), batch_size):
            chunk = order[s:s + batch_size]
            width = max(need[j] for j in chunk)
            ids = torch.full((len(chunk), width), vocab.eos, dtype=torch.long)
            for row, j in enumerate(chunk):
                ids[row, :need[j]] = torch.tensor([vocab.bos] + vocab.encode(list(seqs[j][:need[j] - 1])))
            logits, _ = model(ids)
            lb = logits[..., bar_t].double()  # (batch, time, bar tokens)
            p = torch.exp(lb[..., end] - torch.logsumexp(lb, -1))  # (batch, time)
            for row, j in enumerate(chunk):
                out[j] = p[row, torch.tensor(list(reads[j]), dtype=torch.long)].numpy()
    finally:
        model.train(was_training)
    return out


def empirical_values(tunes: Sequence[Sequence[str]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per tune: (k (m,) int, is `:|` (m,) float) at its m bar lines."""
    out = []
    for toks in tunes:
        b = bar_numbers(toks)
        out.append((np.array([k for _, k, _ in b], np.int64), np.array([t == END for _, _, t in b], np.float64)))
    return out


def teacher_forced_values(model, vocab, tunes: Sequence[Sequence[str]],
                          batch_size: int = 64) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per tune: (k (m,) int, the model's P(`:|` | a bar line) (m,)) at its m bar lines,
    reading the real tune up to each (one forward pass per batch of tunes)."""
    bars = [bar_numbers(t) for t in tunes]
    probs = end_probs(model, vocab, tunes, [[i for i, _, _ in b] for b in bars], batch_size)
    return [(np.array([k for _, k, _ in b], np.int64), p) for b, p in zip(bars, probs)]


def hazard(per_tune: Sequence[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator, draws: int = 1000,
           kmax: int = KMAX) -> dict:
    """The hazard by k = 1..kmax (k >= kmax pooled): the mean value over the bar lines
    after bar k, with a 95% bootstrap interval resampling whole tunes.

    per_tune: (k (m,), value (m,)) per tune -> {"k", "rate", "lo", "hi", "bar_lines"}
    (lists of kmax; rate None where no bar line) and "tunes"."""
    n = len(per_tune)
    S = np.zeros((n, kmax + 1))
    C = np.zeros((n, kmax + 1))
    for t, (ks, v) in enumerate(per_tune):
        kk = np.minimum(np.asarray(ks, np.int64), kmax)
        np.add.at(S[t], kk, v)
        np.add.at(C[t], kk, 1.0)
    tot_s, tot_c = S.sum(0), C.sum(0)
    rate = [float(tot_s[k] / tot_c[k]) if tot_c[k] else None for k in range(1, kmax + 1)]
    lo: list[float | None] = [None] * kmax
    hi: list[float | None] = [None] * kmax
    if n:
        W = rng.multinomial(n, np.full(n, 1.0 / n), size=draws).astype(np.float64)  # (draws, tunes)
        bs, bc = W @ S, W @ C
        with np.errstate(invalid="ignore", divide="ignore"):
            r = bs / bc
        for k in range(1, kmax + 1):
            if tot_c[k]:
                col = r[:, k][np.isfinite(r[:, k])]
                lo[k - 1], hi[k - 1] = float(np.quantile(col, 0.025)), float(np.quantile(col, 0.975))
    return {"k": list(range(1, kmax + 1)), "rate": rate, "lo": lo, "hi": hi,
            "bar_lines": [int(c) for c in tot_c[1:]], "tunes": n}


def section_lengths(per_tune: Sequence[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator, length: int = 8,
                    draws: int = 1000) -> dict:
    """Of the sections closed by `:|` (from `empirical_values`), the share that are
    `length` bars long, with a 95% bootstrap interval over tunes: {share, lo, hi, sections}."""
    hit = np.array([float(((v > 0) & (k == length)).sum()) for k, v in per_tune])
    ends = np.array([float((v > 0).sum()) for k, v in per_tune])
    if ends.sum() == 0:
        return {"share": None, "lo": None, "hi": None, "sections": 0}
    W = rng.multinomial(len(ends), np.full(len(ends), 1.0 / len(ends)), size=draws).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (W @ hit) / (W @ ends)
    r = r[np.isfinite(r)]
    return {"share": float(hit.sum() / ends.sum()), "lo": float(np.quantile(r, 0.025)),
            "hi": float(np.quantile(r, 0.975)), "sections": int(ends.sum())}


# -- the edits ----------------------------------------------------------------------------------
CONDITIONS: dict[str, tuple[str, ...]] = {  # condition -> the bar lines read in it
    "original": ("bar 5", "bar 7", "bar 8 (cadence)"),
    "drop bar 4": ("bar 7 (cadence)",),
    "duplicate bar 4": ("bar 8", "bar 9 (cadence)"),
    "swap 5 and 8": ("bar 5 (cadence)", "bar 8 (old bar 5)"),
    "swap 2 and 6 (control)": ("bar 8 (cadence)",),
    "swap 3 and 6 (control)": ("bar 8 (cadence)",),
}
# the controls: swaps that leave the cadence bar in place (bars 2 and 6 are often the same
# bar, the start of both phrases, so that swap often changes nothing: 3 and 6 rarely are)
CONTROLS = ("swap 2 and 6 (control)", "swap 3 and 6 (control)")
MAIN_CONTROL = "swap 3 and 6 (control)"

# paired comparisons: name -> (condition a, reading a, condition b, reading b); the test is a - b
TESTS: dict[str, tuple[str, str, str, str]] = {
    "original: cadence bar 8 vs bar 7": ("original", "bar 8 (cadence)", "original", "bar 7"),
    "drop: cadence 7th vs original bar 7": ("drop bar 4", "bar 7 (cadence)", "original", "bar 7"),
    "duplicate: cadence 9th vs bar 8": ("duplicate bar 4", "bar 9 (cadence)", "duplicate bar 4", "bar 8"),
    "swap: cadence 5th vs bar 8": ("swap 5 and 8", "bar 5 (cadence)", "swap 5 and 8", "bar 8 (old bar 5)"),
    "swap vs control 3-6, after bar 8": ("swap 5 and 8", "bar 8 (old bar 5)", MAIN_CONTROL, "bar 8 (cadence)"),
    "control 3-6 vs original, after bar 8": (MAIN_CONTROL, "bar 8 (cadence)", "original", "bar 8 (cadence)"),
    "control 2-6 vs original, after bar 8": ("swap 2 and 6 (control)", "bar 8 (cadence)", "original", "bar 8 (cadence)"),
}


@dataclass(frozen=True)
class Edit:
    """One edited tune: its tokens and, per reading in `CONDITIONS`, the index of the bar
    token read; `same`: the edit left the tokens as they were (two identical bars swapped)."""

    condition: str
    tokens: tuple[str, ...]
    reads: dict[str, int]
    same: bool = False


def eight_bar_lines(tokens: Sequence[str]) -> tuple[dict[int, int], dict[int, int]] | None:
    """(lines, starts) when the tune's first section is 8 full bars (a pickup before them
    allowed) closed by `:|`, with only `|` bar tokens between them; else None.

    lines[k]: index of the bar line closing bar k (k = 1..8); starts[k] (k = 2..8): index
    of bar k's first token, after every bar token that follows bar k-1 (a written double
    bar `| |` stays with the bar line before it).

    >>> lines, starts = eight_bar_lines("M:2/4 K:Cmaj C 4 | D 4 | | E 4 | F 4 | G 4 | A 4 | B 4 | c 4 :|".split())
    >>> lines[2], starts[3], lines[8]
    (7, 9, 26)
    """
    toks = list(tokens)
    first = [(i, k, t) for i, k, t in bar_numbers(toks) if k >= 1]
    ends = [j for j, (_, _, t) in enumerate(first) if t == END]
    if not ends or first[ends[0]][1] != 8:
        return None
    sec = first[: ends[0] + 1]
    if [k for _, k, _ in sec] != list(range(1, 9)):
        return None
    lines = {k: i for i, k, _ in sec}
    starts = {}
    for k in range(2, 9):
        j = lines[k - 1]
        while T.kind(toks[j]) == "bar":
            j += 1
        if any(t != "|" for t in toks[lines[k - 1]:j]):
            return None
        starts[k] = j
    return lines, starts


def edits(tokens: Sequence[str]) -> list[Edit] | None:
    """The conditions of `CONDITIONS` for one tune (None if its first section is not
    8 full bars closed by `:|`: `eight_bar_lines`). A bar's content is its tokens between
    its bar lines; the cadence bar is bar 8. Dropping or playing twice bar 4 removes or
    repeats its content with the bar line(s) after it; a swap exchanges two bars'
    contents and leaves every bar line where it was.

    >>> t = "M:4/4 K:Cmaj " + " | ".join(f"{p} 8" for p in "CDEFGABc") + " :| d 8 |"
    >>> e = {x.condition: x for x in edits(t.split())}
    >>> s = e["swap 5 and 8"]; s.tokens[s.reads["bar 5 (cadence)"] - 2], s.tokens[s.reads["bar 5 (cadence)"]]
    ('c', '|')
    >>> d = e["duplicate bar 4"]; len(d.tokens) - len(t.split()), d.tokens[d.reads["bar 9 (cadence)"]]
    (3, ':|')
    """
    toks = list(tokens)
    found = eight_bar_lines(toks)
    if found is None:
        return None
    line, start = found
    a, b = start[4], start[5]  # bar 4's content with the bar line(s) after it
    w = b - a
    out = [Edit("original", tuple(toks), {"bar 5": line[5], "bar 7": line[7], "bar 8 (cadence)": line[8]})]
    out.append(Edit("drop bar 4", tuple(toks[:a] + toks[b:]), {"bar 7 (cadence)": line[8] - w}))
    out.append(Edit("duplicate bar 4", tuple(toks[:b] + toks[a:b] + toks[b:]),
                    {"bar 8": line[7] + w, "bar 9 (cadence)": line[8] + w}))

    def swap(x: int, y: int) -> list[str]:  # contents of bars x < y exchanged
        cx, cy = toks[start[x]:line[x]], toks[start[y]:line[y]]
        return toks[:start[x]] + cy + toks[line[x]:start[y]] + cx + toks[line[y]:]

    swapped = swap(5, 8)
    at5 = start[5] + (line[8] - start[8])
    out.append(Edit("swap 5 and 8", tuple(swapped), {"bar 5 (cadence)": at5, "bar 8 (old bar 5)": line[8]}))
    for x, y in ((2, 6), (3, 6)):
        ctrl = swap(x, y)
        assert ctrl[line[8]] == END and len(ctrl) == len(toks)
        out.append(Edit(f"swap {x} and {y} (control)", tuple(ctrl), {"bar 8 (cadence)": line[8]}, ctrl == toks))
    assert swapped[at5] == "|" and swapped[line[8]] == END
    return out


def count_or_cadence(model, vocab, tunes: Sequence[Sequence[str]], rng: np.random.Generator,
                     permutations: int = 2000, draws: int = 2000, batch_size: int = 64) -> dict:
    """Run every edit of every qualifying tune (one padded batched pass) and summarise.

    Returns {"tunes": qualifying, "candidates": len(tunes), "conditions": {condition:
    {reading: {mean, lo, hi, n}}} (mean P(`:|` | a bar line) over tunes, 95% bootstrap
    interval), "tests": {name: {difference, lo, hi, p, n}} (the paired comparisons of
    `TESTS`, sign-flip p-values), "unchanged": {control: tunes whose two swapped bars are
    the same}, "values": {condition: {reading: [per tune]}}}."""
    jobs: list[Edit] = []
    for toks in tunes:
        e = edits(toks)
        if e is not None:
            jobs.extend(e)
    labels = [list(e.reads) for e in jobs]
    probs = end_probs(model, vocab, [e.tokens for e in jobs], [[e.reads[r] for r in lab] for e, lab in zip(jobs, labels)],
                      batch_size)
    values: dict[str, dict[str, list[float]]] = {c: {r: [] for r in rs} for c, rs in CONDITIONS.items()}
    for e, lab, p in zip(jobs, labels, probs):
        for r, v in zip(lab, p):
            values[e.condition][r].append(float(v))
    unchanged = {c: sum(e.same for e in jobs if e.condition == c) for c in CONTROLS}
    return summarise_edits(values, len(tunes), unchanged, rng, permutations, draws)


def summarise_edits(values: dict[str, dict[str, list[float]]], candidates: int, unchanged: dict[str, int],
                    rng: np.random.Generator, permutations: int = 2000, draws: int = 2000) -> dict:
    """`count_or_cadence`'s summary of per-tune probabilities `values` {condition:
    {reading: [one per qualifying tune, in the same tune order]}}."""
    n = len(values["original"]["bar 8 (cadence)"])
    conds = {c: {r: bootstrap_mean(np.array(v), rng, draws) for r, v in rs.items()} for c, rs in values.items()}
    tests = {}
    for name, (ca, ra, cb, rb) in TESTS.items():
        d = np.array(values[ca][ra]) - np.array(values[cb][rb])
        m = bootstrap_mean(d, rng, draws)
        tests[name] = {"difference": m["mean"], "lo": m["lo"], "hi": m["hi"], "p": sign_flip(d, rng, permutations),
                       "n": int(len(d))}
    return {"tunes": n, "candidates": candidates, "conditions": conds, "tests": tests, "unchanged": dict(unchanged),
            "values": values}


# -- reading the numbers ------------------------------------------------------------------------
MIN_TUNES = 20  # qualifying tunes for a verdict on the edits
MIN_LINES = 20  # bar lines at a k for it to count as a hazard peak
P_CUT = 0.01
EFFECT = 0.1  # a paired difference of P(:|) must also be at least this large to count


def _fmt(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def _tunes(n: int) -> str:
    return f"{n} tune" if n == 1 else f"{n} tunes"


def _ci(d: dict) -> str:
    return f"{_fmt(d['mean'])} [{_fmt(d['lo'])}, {_fmt(d['hi'])}]"


def peak(h: dict, min_lines: int = MIN_LINES) -> int | None:
    """The k (1..KMAX-1: the pooled last one excluded) with the highest hazard among those
    with at least `min_lines` bar lines; None if none has."""
    ok = [(r, k) for k, r, c in zip(h["k"][:-1], h["rate"][:-1], h["bar_lines"][:-1]) if r is not None and c >= min_lines]
    return max(ok)[1] if ok else None


def _side(t: dict) -> int:
    """+1 / -1 when a paired test's difference is positive / negative at p < P_CUT and at
    least EFFECT in size, else 0."""
    if not (t["p"] < P_CUT and abs(t["difference"]) >= EFFECT):
        return 0
    return 1 if t["difference"] > 0 else -1


def verdict(cc: dict) -> str:
    """'cadence', 'count', 'mixed', 'unmarked' or 'too few' from `count_or_cadence`'s
    paired tests. 'unmarked': in the unedited tunes P(:|) after the cadence bar is not
    above that after bar 7 (p < P_CUT, by EFFECT), so the edits cannot tell anything.
    Otherwise the swap (cadence 5th vs the 8th bar line) and the duplication (cadence
    9th vs the 8th bar line) must both favour one side for 'cadence' or 'count'."""
    if cc["tunes"] < MIN_TUNES:
        return "too few"
    if _side(cc["tests"]["original: cadence bar 8 vs bar 7"]) <= 0:
        return "unmarked"
    a, b = (_side(cc["tests"][n]) for n in ("swap: cadence 5th vs bar 8", "duplicate: cadence 9th vs bar 8"))
    if a == b == 1:
        return "cadence"
    if a == b == -1:
        return "count"
    return "mixed"


def edit_sentences(cc: dict) -> list[str]:
    """Sentences about the edits, built from `count_or_cadence`'s findings only."""
    n, c, t = cc["tunes"], cc["conditions"], cc["tests"]
    if n < MIN_TUNES:
        return [f"Only {n} of {cc['candidates']} corpus tunes {'has' if n == 1 else 'have'} a first section of "
                f"exactly 8 full bars closed by :| (at least {MIN_TUNES} are needed): too few tunes to tell whether "
                f"the model counts bars or listens for the cadence."]
    sw, dup = t["swap: cadence 5th vs bar 8"], t["duplicate: cadence 9th vs bar 8"]
    s = [f"In {n} of {cc['candidates']} corpus tunes the first section is 8 full bars closed by :|. Reading them as "
         f"written, the model gives P(:| | a bar line) {_ci(c['original']['bar 8 (cadence)'])} after the cadence bar "
         f"(bar 8) and {_ci(c['original']['bar 7'])} after bar 7 (mean over tunes, 95% bootstrap interval). With bar 4 "
         f"dropped (the cadence comes 7th): {_ci(c['drop bar 4']['bar 7 (cadence)'])} after it. With bar 4 played twice: "
         f"{_ci(c['duplicate bar 4']['bar 8'])} after bar 8 and {_ci(c['duplicate bar 4']['bar 9 (cadence)'])} after the "
         f"cadence, now 9th (paired difference {dup['difference']:+.2f}, sign-flip p = {dup['p']:.2g}). With the cadence "
         f"bar swapped into bar 5: {_ci(c['swap 5 and 8']['bar 5 (cadence)'])} after bar 5 and "
         f"{_ci(c['swap 5 and 8']['bar 8 (old bar 5)'])} after bar 8 (paired difference {sw['difference']:+.2f}, "
         f"p = {sw['p']:.2g})."]
    ctrl, sc = t["control 3-6 vs original, after bar 8"], t["swap vs control 3-6, after bar 8"]
    c26 = t["control 2-6 vs original, after bar 8"]
    un = cc["unchanged"]
    s.append(f"Controls, swaps that leave the cadence in place: bars 3 and 6 swapped give "
             f"{_ci(c[MAIN_CONTROL]['bar 8 (cadence)'])} after bar 8 (against the original "
             f"{_fmt(c['original']['bar 8 (cadence)']['mean'])}: {ctrl['difference']:+.2f}, p = {ctrl['p']:.2g}; the two "
             f"bars are the same in {_tunes(un[MAIN_CONTROL])}); bars 2 and 6 swapped "
             f"{_ci(c['swap 2 and 6 (control)']['bar 8 (cadence)'])} ({c26['difference']:+.2f}, p = {c26['p']:.2g}; but "
             f"bars 2 and 6 are the same bar in {un['swap 2 and 6 (control)']} of the {n} tunes, where that swap changes "
             f"nothing). Moving the cadence out of bar 8 lowers P(:|) there by {-sc['difference']:.2f} more than the "
             f"3-6 swap does (p = {sc['p']:.2g}).")
    v = verdict(cc)
    if v == "cadence":
        s.append("The model ends a section where the melody cadences, not by counting bars: the :| follows the cadence "
                 "bar when it comes 5th or 9th, and the 8th bar line loses it.")
    elif v == "count":
        s.append("The model counts bars: the :| stays after the 8th bar whatever it holds, and does not follow the "
                 "cadence bar when it comes 5th or 9th.")
    elif v == "unmarked":
        s.append(f"The model does not mark the end of these sections in the first place (P(:|) after the cadence bar "
                 f"is not above that after bar 7 by {EFFECT} at p < {P_CUT}), so the edits cannot tell counting from "
                 f"listening.")
    else:
        s.append(f"The swap and the duplication do not both move P(:|) the same way (by {EFFECT} or more, p < "
                 f"{P_CUT}): neither counting nor listening for the cadence alone explains where the model ends a "
                 f"section.")
    weak = abs(ctrl["difference"]) >= 0.5 * abs(sc["difference"] + ctrl["difference"]) and ctrl["p"] < P_CUT
    if weak:
        s.append("Caution: the control swap alone moves P(:|) after bar 8 by at least half as much as moving the "
                 "cadence does, so part of the effect is that of editing the tune at all.")
    return s


def hazard_sentences(tables: dict[str, dict], lengths: dict[str, dict], generated: int, seed: int) -> list[str]:
    """Sentences about the hazard tables (keys 'corpus', 'teacher-forced', 'generated')."""
    co, tf, ge = tables["corpus"], tables["teacher-forced"], tables["generated"]
    kc = peak(co)
    if kc is None or co["tunes"] < MIN_TUNES:
        return [f"The corpus sample ({co['tunes']} tunes) has too few bar lines at any bar count (fewer than "
                f"{MIN_LINES}) to place the end of a section."]

    def at(h, k):
        return {"mean": h["rate"][k - 1], "lo": h["lo"][k - 1], "hi": h["hi"][k - 1]}

    kt = peak(tf)
    s = [f"Over {co['tunes']} corpus tunes, the share of bar lines that are :| peaks after k = {kc} full bars of a "
         f"section: {_ci(at(co, kc))} (95% interval over tunes). The model reading the same tunes gives :| "
         f"{_ci(at(tf, kc))} of its bar-line probability there"
         + (f", and its peak is at the same k." if kt == kc else f"; its own peak is at k = {kt}.")]
    early = [k for k in range(max(1, kc - 3), kc) if tf["rate"][k - 1] is not None]
    if early:
        s[-1] += (f" At k = {early[0]}-{early[-1]} it gives "
                  + ", ".join(_fmt(tf["rate"][k - 1]) for k in early) + ".")
    kg = peak(ge)
    if kg is None or ge["tunes"] < MIN_TUNES:
        s.append(f"Too few of the model's own tunes ({ge['tunes']}) to measure where it ends sections.")
        return s
    lc, lg = lengths["corpus"], lengths["generated"]
    spread = ge["rate"][kg - 1] < 0.5 * co["rate"][kc - 1]
    near = [k for k in range(1, KMAX) if ge["rate"][k - 1] is not None and ge["bar_lines"][k - 1] >= MIN_LINES
            and ge["rate"][k - 1] >= 0.5 * ge["rate"][kg - 1]]
    s.append(f"In {ge['tunes']} tunes of its own (temperature 1, seed {seed}) the hazard peaks at k = {kg} with "
             f"{_ci(at(ge, kg))}, against {_fmt(co['rate'][kc - 1])} at k = {kc} in the corpus"
             + (f": it is spread over k = {near[0]}-{near[-1]} (where it is at least half its peak)." if spread
                else ": its sections end about as sharply as the corpus's.")
             + f" {_fmt(lg['share'])} of its :|-closed sections are 8 bars long ({lg['sections']} sections), against "
             f"{_fmt(lc['share'])} in the corpus sample ({lc['sections']}).")
    return s


# -- the analysis --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SectionSizes:
    """How many of its own tunes the analysis generates, and how long they may be."""

    generated: int = 300
    max_length: int = 1000
    draws: int = 1000  # bootstrap resamples

    @classmethod
    def make(cls, quick: bool) -> SectionSizes:
        return cls(generated=12, max_length=120, draws=200) if quick else cls()


def _figure(tables: dict[str, dict], gen_label: str) -> bytes:
    from folkrnn.interp.figures import CONTROL, png

    colours = {"corpus": "#333333", "teacher-forced": "#3b73b9", "generated": "#d62728"}
    labels = {"corpus": "corpus tunes (share that are :|)", "teacher-forced": "model reading them (P(:|) at the bar line)",
              "generated": gen_label}

    def draw(fig):
        ax = fig.subplots()
        for name, h in tables.items():
            ks = [k for k, r in zip(h["k"], h["rate"]) if r is not None]
            r = [h["rate"][k - 1] for k in ks]
            ax.plot(ks, r, marker="o", ms=3, color=colours.get(name, CONTROL), label=labels.get(name, name))
            ax.fill_between(ks, [h["lo"][k - 1] for k in ks], [h["hi"][k - 1] for k in ks],
                            color=colours.get(name, CONTROL), alpha=0.15, lw=0)
        ax.set_xlabel(f"full bars of the section so far (pickup not counted; {KMAX} = {KMAX}+)")
        ax.set_ylabel("share of bar lines that are :|")
        ax.set_xticks(range(1, KMAX + 1))
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)

    return png(draw, (7.0, 3.6))


@register("sections", "Q2: counting bars or listening for the cadence?", "sections", section="questions", order=25)
def sections(ctx: Context, bar) -> Result:
    from folkrnn.sample import SampleConfig, sample

    sz = SectionSizes.make(ctx.config.quick)
    bar.total = 3 + sz.generated
    data = activity.corpus_data(ctx, bar)
    if data is None:
        return Result(skipped=activity.NO_CORPUS)
    rng = np.random.default_rng([ctx.config.seed, 900])
    real = data.tunes
    emp = empirical_values(real)
    tables = {"corpus": hazard(emp, rng, sz.draws)}
    tables["teacher-forced"] = hazard(teacher_forced_values(ctx.model, ctx.vocab, real), rng, sz.draws)
    bar.update(1)
    cc = count_or_cadence(ctx.model, ctx.vocab, real, rng, ctx.config.permutations, sz.draws)
    bar.update(1)
    seed = 7 + ctx.config.seed
    own = []
    for t in sample(ctx.model, ctx.vocab, SampleConfig(num_tunes=sz.generated, seed=seed, max_length=sz.max_length)):
        own.append(t.tokens)
        bar.update(1)
    gen = empirical_values(own)
    tables["generated"] = hazard(gen, rng, sz.draws)
    lengths = {"corpus": section_lengths(emp, rng, draws=sz.draws), "generated": section_lengths(gen, rng, draws=sz.draws)}
    sent = hazard_sentences(tables, lengths, len(own), seed) + edit_sentences(cc)
    v = verdict(cc)
    findings = {"hazard": tables, "section_8_bars": lengths, "generated": {"tunes": len(own), "seed": seed,
                                                                          "temperature": 1.0, "max_length": sz.max_length},
                "count_or_cadence": {k: cc[k] for k in ("tunes", "candidates", "conditions", "tests", "unchanged")},
                "verdict": v, "min_tunes": MIN_TUNES, "p_cut": P_CUT}
    gen_label = f"its own tunes ({len(own)}, T=1, seed {seed})"
    fig = Figure("Where sections end, by bars of the section so far", _figure(tables, gen_label),
                 f"Share of bar lines after k full bars of their section that are :| in {tables['corpus']['tunes']} corpus "
                 "tunes (the reference); the model's P(:|) renormalised over bar tokens at those same bar lines while "
                 f"reading them (teacher-forced); and the share in {len(own)} of its own tunes. Bands: 95% bootstrap "
                 "intervals over tunes. The corpus tunes are training tunes. The edit test's controls (tables) are swaps "
                 "of bars 3 and 6 and of bars 2 and 6, which leave the cadence bar in place.")
    rows = []
    for cond, reads in cc["conditions"].items():
        for r, m in reads.items():
            rows.append((cond, r, _fmt(m["mean"]), f"[{_fmt(m['lo'])}, {_fmt(m['hi'])}]", m["n"]))
    tests = tuple((name, f"{x['difference']:+.3f}", f"[{_fmt(x['lo'])}, {_fmt(x['hi'])}]", f"{x['p']:.2g}", x["n"])
                  for name, x in cc["tests"].items() if x["n"])
    tabs = [Table("Counting or cadence: P(:| | a bar line) after edits of 8-bar first sections",
                  ("condition", "bar line", "mean", "95% interval", "tunes"), tuple(rows),
                  "Tunes whose first section is 8 full bars closed by :| (bar 8 holds the cadence). Drop bar 4: the "
                  "cadence comes 7th; duplicate bar 4: 9th; swap 5 and 8: the cadence bar is 5th and old bar 5 closes the "
                  "count of 8; controls: bars 3 and 6, or 2 and 6, swapped, the cadence untouched (bars 2 and 6 are the "
                  f"same bar in {cc['unchanged']['swap 2 and 6 (control)']} tunes, where that swap changes nothing). "
                  "Intervals: bootstrap over tunes."),
            Table("Paired tests of the edits", ("comparison", "difference", "95% interval", "p (sign flip)", "tunes"),
                  tests, f"Difference of the per-tune probabilities; p from {ctx.config.permutations} random sign flips.")]
    answer = _answer(tables, lengths, cc, v)
    bar.update(1)
    return Result(findings=findings, sentences=sent, figures=[fig], tables=tabs, answers={"q2": answer},
                  verdicts={"q2": "yes" if v in ("cadence", "count") else "no" if v == "mixed" else "not shown"})


def _answer(tables: dict, lengths: dict, cc: dict, v: str) -> str:
    co, ge = tables["corpus"], tables["generated"]
    kc, kg = peak(co), peak(ge)
    head = "Section ends:"
    if v == "too few":
        return (f"{head} too few tunes with an 8-bar first section ({cc['tunes']}) to tell whether it counts bars or "
                f"listens for the cadence.")
    sw = cc["tests"]["swap: cadence 5th vs bar 8"]
    c = cc["conditions"]["swap 5 and 8"]
    what = {"cadence": "it ends a section where the melody cadences, not by counting bars",
            "count": "it counts bars to end a section, whatever the 8th bar holds",
            "mixed": "neither counting bars nor following the cadence alone explains where it ends a section",
            "unmarked": "it does not mark the end of real 8-bar sections, so whether it counts or listens is open"}[v]
    s = (f"{head} {what}: with the cadence bar swapped into bar 5 of {cc['tunes']} tunes, P(:|) is "
         f"{_fmt(c['bar 5 (cadence)']['mean'])} after bar 5 and {_fmt(c['bar 8 (old bar 5)']['mean'])} after bar 8 "
         f"(p = {sw['p']:.2g}).")
    if kc is not None and kg is not None and lengths["generated"]["share"] is not None:
        s += (f" In its own tunes the :| hazard peaks at {_fmt(ge['rate'][kg - 1])} (k = {kg}; corpus "
              f"{_fmt(co['rate'][kc - 1])} at k = {kc}), and {_fmt(lengths['generated']['share'])} of its sections are 8 "
              f"bars long (corpus {_fmt(lengths['corpus']['share'])}).")
    return s
