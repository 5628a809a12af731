"""Corpus-level figures: distributions of a set of tunes, their divergence, the summary.

A `Distributions` tallies, over many tunes, the token unigrams, meters, modes,
note durations (eighth notes, after broken rhythm and tuplets), sounding pitches
and pitch classes, pitch ranges, lengths, section lengths, form patterns and
cadence notes. `jsd` compares two tallies; `summarise` turns a list of
`TuneReport`s into the aggregate figures the CLI prints.

>>> round(jsd({"a": 10, "b": 10}, {"a": 10, "b": 10}), 6)
0.0
>>> round(jsd({"a": 100}, {"b": 100}, alpha=0), 6)
1.0
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction

from folkrnn.evaluate.tune import TuneReport, ticks_to_eighths
from folkrnn.tokens import METERS, MODES

# The distributions compared against a reference corpus (name -> description).
COMPARED = {
    "token": "token unigrams",
    "meter": "meters",
    "mode": "modes",
    "duration": "note durations (eighths)",
    "pitch_class": "pitch classes (0 = C, the tonic)",
    "pitch_range": "pitch range per tune (semitones)",
}


class Distributions:
    """Counts accumulated over tunes (see module docstring)."""

    NAMES = (
        "token",
        "meter",
        "mode",
        "duration",
        "pitch",
        "pitch_class",
        "pitch_range",
        "tune_bars",
        "tune_tokens",
        "section_bars",
        "pattern",
        "final_cadence",
        "section_cadence",
    )

    def __init__(self):
        for name in self.NAMES:
            setattr(self, name, Counter())
        self._dur_ticks: Counter = Counter()

    def add(self, tokens: Sequence[str], report: TuneReport, durations: Iterable, pitches: Iterable[int]) -> None:
        """Add one tune: its tokens, its report, its event durations (ticks) and sounding pitches."""
        self.token.update(tokens)
        self.meter[report.meter] += 1
        self.mode[report.mode] += 1
        self._dur_ticks.update(durations)
        self.pitch.update(pitches)
        if report.pitch_range is not None:
            self.pitch_range[report.pitch_range] += 1
        self.tune_bars[report.bars] += 1
        self.tune_tokens[report.tokens] += 1
        for s in report.sections:
            self.section_bars[s.bars] += 1
            if s.cadence is not None:
                self.section_cadence[s.cadence] += 1
        self.pattern[report.pattern] += 1
        if report.final_cadence is not None:
            self.final_cadence[report.final_cadence] += 1

    def finish(self) -> Distributions:
        """Fold the raw tallies into their reported keys (call once, after the last `add`)."""
        for t, c in self._dur_ticks.items():
            self.duration[_fmt_fraction(ticks_to_eighths(t))] += c
        self._dur_ticks.clear()
        for p, c in self.pitch.items():
            self.pitch_class[p % 12] += c
        return self

    def get(self, name: str) -> Counter:
        return getattr(self, name)

    def to_json(self) -> dict:
        return {name: {str(k): v for k, v in sorted_items(name, self.get(name))} for name in self.NAMES}


def _fmt_fraction(f: Fraction) -> str:
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


def _sort_key(name: str, key):
    if name == "meter":
        return (METERS.index(key) if key in METERS else 99, str(key))
    if name == "mode":
        return (MODES.index(key) if key in MODES else 99, str(key))
    if name == "duration":
        return (Fraction(key), "")
    if isinstance(key, (int, float)):
        return (key, "")
    return (0, str(key))


def sorted_items(name: str, counts: Mapping) -> list:
    """The items of a distribution in a natural order (meters as in the vocabulary, numbers ascending)."""
    if name in ("pattern", "token"):
        return sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
    return sorted(counts.items(), key=lambda kv: _sort_key(name, kv[0]))


def jsd(p: Mapping, q: Mapping, support: Iterable | None = None, alpha: float = 0.5) -> float:
    """Jensen-Shannon divergence in bits (0 = same, 1 = disjoint) of two count tables.

    Counts are smoothed by adding `alpha` to every key of `support` (default: the
    union of both tables' keys), so a key one table lacks does not dominate.
    """
    keys = list(dict.fromkeys(list(support) if support is not None else [*p.keys(), *q.keys()]))
    if not keys:
        return 0.0
    pa = [p.get(k, 0) + alpha for k in keys]
    qa = [q.get(k, 0) + alpha for k in keys]
    sp, sq = sum(pa), sum(qa)
    if sp <= 0 or sq <= 0:
        return float("nan")
    out = 0.0
    for a, b in zip(pa, qa):
        a, b = a / sp, b / sq
        m = (a + b) / 2
        if a > 0:
            out += 0.5 * a * math.log2(a / m)
        if b > 0:
            out += 0.5 * b * math.log2(b / m)
    return max(0.0, out)


def divergences(ours: Distributions, ref: Distributions, vocab_tokens: Sequence[str] | None = None) -> dict[str, float]:
    """JSD (bits) of each compared distribution against the reference's."""
    out = {}
    for name in COMPARED:
        support = None
        if name == "token" and vocab_tokens is not None:
            support = vocab_tokens
        elif name == "meter":
            support = list(dict.fromkeys([*METERS, *ours.meter, *ref.meter]))
        elif name == "mode":
            support = list(dict.fromkeys([*MODES, *ours.mode, *ref.mode]))
        out[name] = round(jsd(ours.get(name), ref.get(name), support), 6)
    return out


def _share(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def summarise(reports: Sequence[TuneReport], copy_run: int | None = None) -> dict:
    """The aggregate figures of a list of tune reports (shares are in [0, 1]; None when undefined)."""
    n = len(reports)
    bars = sum(r.bars for r in reports)
    sections = [s for r in reports for s in r.sections]
    finals = [r.final_cadence for r in reports if r.final_cadence is not None]
    sec_cad = [s.cadence for s in sections if s.cadence is not None]
    ranges = [r.pitch_range for r in reports if r.pitch_range is not None]
    ending_sims = [s.ending_similarity for s in sections if s.ending_similarity is not None]
    out = {
        "tunes": n,
        "tokens_mean": _mean(r.tokens for r in reports),
        "bars_mean": _mean(r.bars for r in reports),
        "bars": bars,
        "bars_right": _share(sum(r.bars_right for r in reports), bars),
        "interior_bars_right": _share(sum(r.interior_right for r in reports), sum(r.interior_bars for r in reports)),
        "tunes_all_bars_right": _share(sum(r.all_bars_right for r in reports), n),
        "tunes_with_pickup": _share(sum(r.pickup is not None for r in reports), n),
        "repeats_ok": _share(sum(r.repeats_ok for r in reports), n),
        "sections_mean": _mean(len(r.sections) for r in reports),
        "sections_8_bars": _share(sum(s.bars == 8 for s in sections), len(sections)),
        "tunes_all_sections_8_bars": _share(sum(bool(r.sections) and all(s.bars == 8 for s in r.sections) for r in reports), n),
        "pattern_AABB": _share(sum(r.pattern == "AABB" for r in reports), n),
        "ending_similarity_mean": _mean(ending_sims),
        "final_tonic": _share(sum(c == 0 for c in finals), n),
        "final_fifth": _share(sum(c == 7 for c in finals), n),
        "final_third": _share(sum(c in (3, 4) for c in finals), n),
        "section_ends_tonic": _share(sum(c == 0 for c in sec_cad), len(sections)),
        "pitch_range_mean": _mean(ranges),
        "stray_tokens_per_tune": _mean(r.stray for r in reports),
    }
    nov = [r.extra for r in reports if "nearest" in r.extra]
    if nov:
        out["nearest_similarity_mean"] = _mean(x["nearest_similarity"] for x in nov)
        out["longest_run_mean"] = _mean(x["longest_run"] for x in nov)
        if copy_run is not None:
            out["copy_run"] = copy_run
            out["tunes_copying"] = _share(sum(x["longest_run"] >= copy_run for x in nov), len(nov))
    return out


def _mean(xs: Iterable) -> float | None:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else None
