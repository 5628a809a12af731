"""What one transcription does: bar arithmetic, repeats, form, cadences, pitch range.

`analyse_tune(tokens)` reads a v2 token sequence (`M:.. K:.. body`, with or without
`<s>`/`</s>`) once, left to right, and returns a `TuneReport`. It never fails on
a badly formed tune (that is what it measures); tokens it cannot attach to a note
(a duration after a bar line, say) are counted as `stray`.

Rhythm (event lengths, bars, sections, pickups, bar verdicts) is read by
`folkrnn.rhythm`, the one reading of v2 rhythm that `midi` shares; its module
docstring states the rules. This module adds what a listener judges on top:
repeats, form labels by similarity, cadences, pitch range.

>>> r = analyse_tune("M:6/8 K:Cmaj d | e c G c 2 d | e 3 c 2 :| f | g 3 a g f | e d c c 2 :|".split())
>>> r.bars, r.bars_right, r.pattern, r.final_cadence
(6, 6, 'AABB', 0)
>>> r = analyse_tune("M:4/4 K:Cmaj C D E F G A B c | c B A G F E D |".split())
>>> [(e.bar, str(e.found), str(e.expected)) for e in r.bar_errors]
[(1, '7', '8')]
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction

from folkrnn.rhythm import (  # noqa: F401  (TICKS: re-exported)
    TICKS, Scan, layout, repeat_errors, ticks_to_eighths,
)
from folkrnn.rhythm import scan as scan_tokens


@dataclass(frozen=True)
class BarError:
    """A bar whose length is not what its place in the tune requires (eighth notes)."""

    bar: int
    found: Fraction
    expected: Fraction

    def to_json(self) -> dict:
        return {"bar": self.bar, "found": str(self.found), "expected": str(self.expected)}


@dataclass(frozen=True)
class Section:
    """A part of the tune: the bars between section boundaries (repeat marks, endings).

    `bars` is the part's length as a musician counts it: its bars without the
    pickup, through the first ending. `endings` are the bar counts of the first
    and second ending (None if the part has none).
    """

    first_bar: int
    last_bar: int
    bars: int
    repeated: bool
    pickup: Fraction | None
    endings: tuple[int, int] | None
    ending_similarity: float | None
    label: str
    cadence: int | None  # pitch class of the part's last sounding note; 0 = tonic (C)

    def to_json(self) -> dict:
        return {
            "first_bar": self.first_bar,
            "last_bar": self.last_bar,
            "bars": self.bars,
            "repeated": self.repeated,
            "pickup": None if self.pickup is None else str(self.pickup),
            "endings": None if self.endings is None else list(self.endings),
            "ending_similarity": self.ending_similarity,
            "label": self.label,
            "cadence": self.cadence,
        }


@dataclass(frozen=True)
class TuneReport:
    """Everything `analyse_tune` finds out about one transcription.

    `index` is the tune's place among the tunes analysed (0-based); `position` its place
    in the input file counted from 1, rejected ABC tunes included (None: index + 1), and
    `x` its ABC `X:` field when the input is ABC. JSON and `evaluate --tunes` show
    `number` (= position), the numbering `folkrnn score` uses too.
    """

    index: int
    meter: str
    mode: str
    tokens: int  # length in tokens, M: and K: included, <s>/</s> not
    bars: int
    bars_right: int
    interior_bars: int  # bars that are neither the first nor a closing bar of a section
    interior_right: int
    pickup: Fraction | None
    bar_errors: tuple[BarError, ...]
    repeat_errors: tuple[str, ...]
    sections: tuple[Section, ...]
    pattern: str  # e.g. "AABB": section labels in playing order, a repeated section twice
    part_similarity: tuple[float, ...]  # similarity of each later section to the first one of its label
    final_cadence: int | None  # pitch class of the tune's last sounding note
    pitch_low: int | None  # MIDI
    pitch_high: int | None
    stray: int  # tokens that attach to nothing (a duration after a bar line...)
    unmarked_boundaries: int = 0  # sections started by a complement + pickup pair with no mark
    title: str = ""
    source: str = ""
    position: int | None = None
    x: str | None = None
    extra: dict = field(default_factory=dict, compare=False)  # novelty etc., filled by the corpus pass

    @property
    def number(self) -> int:
        """The tune's place in its input, counted from 1."""
        return self.index + 1 if self.position is None else self.position

    @property
    def all_bars_right(self) -> bool:
        return self.bars > 0 and self.bars_right == self.bars

    @property
    def repeats_ok(self) -> bool:
        return not self.repeat_errors

    @property
    def pitch_range(self) -> int | None:
        return None if self.pitch_low is None else self.pitch_high - self.pitch_low

    def to_json(self) -> dict:
        out = {
            "index": self.number,
            "meter": self.meter,
            "mode": self.mode,
            "tokens": self.tokens,
            "bars": self.bars,
            "bars_right": self.bars_right,
            "all_bars_right": self.all_bars_right,
            "pickup": None if self.pickup is None else str(self.pickup),
            "bar_errors": [e.to_json() for e in self.bar_errors],
            "repeats_ok": self.repeats_ok,
            "repeat_errors": list(self.repeat_errors),
            "pattern": self.pattern,
            "sections": [s.to_json() for s in self.sections],
            "part_similarity": list(self.part_similarity),
            "final_cadence": self.final_cadence,
            "pitch_low": self.pitch_low,
            "pitch_high": self.pitch_high,
            "pitch_range": self.pitch_range,
            "stray_tokens": self.stray,
            "unmarked_boundaries": self.unmarked_boundaries,
        }
        if self.x is not None:
            out["x"] = self.x
        if self.title:
            out["title"] = self.title
        if self.source:
            out["source"] = self.source
        out.update(self.extra)
        return out


def _events_key(s: Scan, bar_ids: list[int]) -> list[tuple]:
    ev_pitch, ev_dur, bars = s.ev_pitch, s.ev_dur, s.bars
    out = []
    for b in bar_ids:
        first, end = bars[b].first_event, bars[b].end_event
        out.extend(zip(ev_pitch[first:end], ev_dur[first:end]))
    return out


def similarity(a: list, b: list, n: int = 3) -> float:
    """Dice overlap of the n-gram multisets of two event sequences (1.0 = same n-grams).

    Sequences shorter than `n` are compared by their unigrams.

    >>> similarity(list("abcdefgh"), list("abcdefgx"))
    0.8333333333333334
    >>> similarity(list("abcd"), list("dcba"))
    0.0
    """
    if len(a) < n or len(b) < n:
        if not a and not b:
            return 1.0
        ca, cb = Counter(a), Counter(b)
    else:
        ca = Counter(zip(*(a[i:] for i in range(n))))
        cb = Counter(zip(*(b[i:] for i in range(n))))
    total = sum(ca.values()) + sum(cb.values())
    return 2 * sum((ca & cb).values()) / total if total else 1.0


def _last_pitch(s: Scan, bar_ids: list[int]) -> int | None:
    for b in reversed(bar_ids):
        first, end = s.bars[b].first_event, s.bars[b].end_event
        for p in reversed(s.ev_pitch[first:end]):
            if p >= 0:
                return p
    return None


@dataclass(frozen=True)
class FormConfig:
    """Knobs of the form analysis."""

    same_part: float = 0.5  # similarity from which two sections get the same label
    phrase_bars: int = 8  # unrepeated sections of 2+ times this many bars are split into phrases


DEFAULT_FORM = FormConfig()


def analyse_tune(tokens, index: int = 0, form: FormConfig = DEFAULT_FORM, scan: Scan | None = None) -> TuneReport:
    """Analyse one transcription: tokens `M:.. K:.. body` (a list of strings).

    `<s>`/`</s>` around it are ignored. The tokens are trusted to be v2 tokens
    (the loaders check them against the vocabulary). `scan`: `rhythm.scan(tokens)`,
    if the caller has it already.
    """
    tokens = list(tokens)
    if tokens and tokens[0] == "<s>":
        tokens = tokens[1:]
    if tokens and tokens[-1] == "</s>":
        tokens = tokens[:-1]
    s = scan_tokens(tokens) if scan is None else scan
    lay = layout(s, form.phrase_bars)
    parts, pickups, infos = lay.parts, lay.pickups, lay.bars
    nb = len(infos)
    tune_pickup = lay.tune_pickup
    errors = [BarError(b, i.length, i.expected) for b, i in enumerate(infos) if not i.right]
    interior = [b for b, i in enumerate(infos) if not i.closing and not i.first]

    # Labels by similarity of first-time-through content.
    reps: list[tuple[str, list]] = []
    labels: list[str] = []
    part_sim: list[float] = []
    contents = [_events_key(s, p.body + p.e1) for p in parts]
    for c in contents:
        best, best_sim = None, -1.0
        for lab, rc in reps:
            sim = similarity(c, rc)
            if sim > best_sim:
                best, best_sim = lab, sim
        if best is not None and best_sim >= form.same_part:
            labels.append(best)
            part_sim.append(round(best_sim, 4))
        else:
            lab = _label(len(reps))
            reps.append((lab, c))
            labels.append(lab)

    sections = []
    for k, p in enumerate(parts):
        all_bars = p.bars()
        count = len(p.body) + len(p.e1) - (1 if pickups[k] is not None else 0)
        end_sim = None
        if p.e1 and p.e2:
            end_sim = round(similarity(_events_key(s, p.e1), _events_key(s, p.e2)), 4)
        cad = _last_pitch(s, p.e2 or p.e1 or p.body)
        sections.append(
            Section(
                first_bar=all_bars[0],
                last_bar=all_bars[-1],
                bars=count,
                repeated=p.repeated,
                pickup=None if pickups[k] is None else ticks_to_eighths(pickups[k]),
                endings=(len(p.e1), len(p.e2)) if (p.e1 or p.e2) else None,
                ending_similarity=end_sim,
                label=labels[k],
                cadence=None if cad is None else cad % 12,
            )
        )
    pattern = "".join(lab * (2 if p.repeated else 1) for lab, p in zip(labels, parts))
    final = next((p for p in reversed(s.ev_pitch) if p >= 0), None)
    pitches = s.pitches
    return TuneReport(
        index=index,
        meter=tokens[0] if tokens else "",
        mode=tokens[1] if len(tokens) > 1 else "",
        tokens=len(tokens),
        bars=nb,
        bars_right=nb - len(errors),
        interior_bars=len(interior),
        interior_right=sum(1 for b in interior if infos[b].right),
        pickup=None if tune_pickup is None else ticks_to_eighths(tune_pickup),
        bar_errors=tuple(errors),
        repeat_errors=tuple(repeat_errors(s.seps)),
        sections=tuple(sections),
        pattern=pattern,
        part_similarity=tuple(part_sim),
        final_cadence=None if final is None else final % 12,
        pitch_low=min(pitches) if pitches else None,
        pitch_high=max(pitches) if pitches else None,
        stray=s.stray,
        unmarked_boundaries=len(lay.splits),
    )


def _label(k: int) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return letters[k] if k < 26 else "?"
