"""What one transcription does: bar arithmetic, repeats, form, cadences, pitch range.

`analyse_tune(tokens)` reads a v2 token sequence (`M:.. K:.. body`, with or without
`<s>`/`</s>`) once, left to right, and returns a `TuneReport`. It never fails on
a badly formed tune (that is what it measures); tokens it cannot attach to a note
(a duration after a bar line, say) are counted as `stray`.

Token semantics are those of `folkrnn.tokens` (docs/tokens.md): durations in eighth
notes, a bare note lasts 1, `a > b` is 3/2 + 1/2 of the written lengths, `2>`
carries the preceding note's duration, `(p` squeezes the next p notes/rests/
chords by `tokens.tuplet_ratio`, a chord `[ C E G ] 2` lasts its first note's
length times the duration after `]`.

Rules (see docs/evaluate.md):
- a bar is the music between two bar tokens; empty spans (`:| |:`) are not bars;
- sections start after `|:` and `:|`, after a second ending (as many bars as the
  first), and between two short bars that add up to one bar (the complement and
  pickup around an ABC `||`, which v2 writes as `|`);
- the first bar of a section (hence of the tune) may be a pickup (shorter than the
  meter); the last bar of a section, or of each `|1`/`|2` ending, may be shorter
  than the meter when it is the complement of the section's own pickup, of the
  next section's pickup, or of the tune's first pickup;
- every other bar must last exactly the meter.

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
from functools import lru_cache

from folkrnn import tokens as T

# Durations are integers in TICKS per eighth note: 9! is divisible by every
# denominator v2 can produce (/8 tokens, broken rhythm halves, /3, tuplets up to
# 9), so bar sums stay exact without the cost of Fraction arithmetic. A rare
# nested product that is not a whole number of ticks falls back to a Fraction.
TICKS = 362880

# Token codes of the scanner's table.
_PITCH, _REST, _DUR, _BROKEN, _TUPLET, _CHORD_START, _CHORD_END, _BAR, _METER, _KEY, _SKIP = range(11)
# What the previous token was, for attaching durations and broken rhythms.
_P_NOTE, _P_CHORD_FIRST, _P_CHORD_OTHER, _P_CHORD_END, _P_DUR, _P_OTHER = range(6)

REPEAT_START, REPEAT_END, ENDING_1, ENDING_2 = "|:", ":|", "|1", "|2"


@lru_cache(maxsize=None)
def _entry(token: str) -> tuple:
    """The scanner's precomputed reading of one token."""
    k = T.kind(token)
    if k == "pitch":
        p = T.parse_pitch(token)
        by_acc = {acc: p.midi(acc) for acc in ("", "^", "^^", "=", "_", "__")}
        return (_PITCH, (p.letter, p.octave), p.accidental, p.midi(), by_acc, p.letter)
    if k == "rest":
        return (_REST,)
    if k == "duration":
        return (_DUR, _ticks(T.duration(token)))
    if k == "broken":
        digits = token[:-1]
        d = _ticks(T.duration(token)) if digits else None
        this, nxt = ((3, 2), (1, 2)) if T.broken_direction(token) == ">" else ((1, 2), (3, 2))
        return (_BROKEN, d, this, nxt)
    if k == "tuplet":
        return (_TUPLET, T.tuplet_size(token))
    if k == "chord_start":
        return (_CHORD_START,)
    if k == "chord_end":
        return (_CHORD_END,)
    if k == "bar":
        return (_BAR,)
    if k == "meter":
        return (_METER, _ticks(T.meter_length(token)))
    if k == "key":
        return (_KEY, T.KEY_SIGNATURES.get(token, {}))
    return (_SKIP,)


def _ticks(d: Fraction):
    v = d * TICKS
    return int(v) if v.denominator == 1 else v


def ticks_to_eighths(t) -> Fraction:
    """A tick count as a Fraction of an eighth note."""
    return Fraction(t) / TICKS


@lru_cache(maxsize=64)
def _tuplet(p: int, meter: str) -> tuple[int, int]:
    r = T.tuplet_ratio(p, meter)
    return r.numerator, r.denominator


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
    """Everything `analyse_tune` finds out about one transcription."""

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
    extra: dict = field(default_factory=dict, compare=False)  # novelty etc., filled by the corpus pass

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
            "index": self.index,
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
        if self.title:
            out["title"] = self.title
        if self.source:
            out["source"] = self.source
        out.update(self.extra)
        return out


class _Scan:
    """The raw result of one left-to-right pass: events and bars."""

    __slots__ = ("ev_pitch", "ev_dur", "pitches", "bars", "seps", "stray")

    def __init__(self):
        self.ev_pitch: list[int] = []  # sounding MIDI of each note/chord (first note); -1 = rest
        self.ev_dur: list = []  # ticks
        self.pitches: list[int] = []  # every sounding pitch, chord notes included
        # (first_event, end_event, length_ticks, expected_ticks) per bar
        self.bars: list[tuple[int, int, object, object]] = []
        self.seps: list[list[str]] = [[]]  # seps[i]: bar tokens before bar i; len = bars + 1
        self.stray = 0


def _scaled(base, mul_n: int, mul_d: int):
    """base * mul_n / mul_d, kept an int when it divides (the common case, and fast)."""
    d = base * mul_n
    return Fraction(d, mul_d) if d % mul_d else d // mul_d


def _scan(tokens: list[str]) -> _Scan:
    s = _Scan()
    ev_pitch, ev_dur, pitches, bars, seps = s.ev_pitch, s.ev_dur, s.pitches, s.bars, s.seps
    meter = tokens[0]
    e = _entry(meter)
    expected = e[1] if e[0] == _METER else 8 * TICKS
    e = _entry(tokens[1])
    sig = e[1] if e[0] == _KEY else {}
    bar_acc: dict = {}
    stray = 0
    prev = _P_OTHER
    open_ev = False  # an event whose duration is not final yet
    base = mul_n = mul_d = 1
    pend = None  # broken-rhythm factor owed to the next event
    tup_left, tq, tp = 0, 1, 1
    in_chord = False
    chord_notes = 0
    bar_total = 0
    bar_first = 0
    entry = _entry
    for i in range(2, len(tokens)):
        e = entry(tokens[i])
        code = e[0]
        if code == _PITCH:
            if e[2]:
                bar_acc[e[1]] = e[2]
                midi = e[3]
            else:
                acc = bar_acc.get(e[1])
                midi = e[4][sig.get(e[5], "") if acc is None else acc]
            pitches.append(midi)
            if in_chord:
                chord_notes += 1
                if chord_notes == 1:
                    ev_pitch[-1] = midi
                    prev = _P_CHORD_FIRST
                else:
                    prev = _P_CHORD_OTHER
                continue
            code = _REST  # from here on a note starts an event like a rest
        else:
            midi = -1
        if code == _REST or code == _CHORD_START:
            if in_chord:  # `[` inside a chord, or a rest in one: nonsense, skip
                stray += 1
                continue
            if open_ev:
                d = _scaled(base, mul_n, mul_d)
                ev_dur.append(d)
                bar_total += d
            open_ev = True
            ev_pitch.append(midi)
            base = TICKS
            if tup_left:
                tup_left -= 1
                mul_n, mul_d = tq, tp
            else:
                mul_n = mul_d = 1
            if pend is not None:
                mul_n *= pend[0]
                mul_d *= pend[1]
                pend = None
            if code == _CHORD_START:
                in_chord = True
                chord_notes = 0
                prev = _P_OTHER
            else:
                prev = _P_NOTE
        elif code == _DUR:
            if prev == _P_NOTE or prev == _P_CHORD_FIRST:
                base = e[1]
                prev = _P_DUR
            elif prev == _P_CHORD_END:
                b = base * e[1]
                base = b // TICKS if not b % TICKS else Fraction(b, TICKS)
                prev = _P_DUR
            elif prev != _P_CHORD_OTHER:  # other chord notes' own lengths do not count
                stray += 1
                prev = _P_OTHER
        elif code == _BROKEN:
            if open_ev and not in_chord and prev in (_P_NOTE, _P_CHORD_END, _P_DUR):
                if e[1] is not None:
                    if prev == _P_CHORD_END:
                        b = base * e[1]
                        base = b // TICKS if not b % TICKS else Fraction(b, TICKS)
                    else:
                        base = e[1]
                mul_n *= e[2][0]
                mul_d *= e[2][1]
                pend = e[3]
            else:
                stray += 1
            prev = _P_OTHER
        elif code == _CHORD_END:
            if in_chord:
                in_chord = False
                prev = _P_CHORD_END
            else:
                stray += 1
                prev = _P_OTHER
        elif code == _TUPLET:
            tup_left = e[1]
            tq, tp = _tuplet(e[1], meter)
            prev = _P_OTHER
        elif code == _BAR:
            if open_ev:
                d = _scaled(base, mul_n, mul_d)
                ev_dur.append(d)
                bar_total += d
                open_ev = False
            in_chord = False
            pend = None
            n = len(ev_pitch)
            if n > bar_first:
                bars.append((bar_first, n, bar_total, expected))
                seps.append([tokens[i]])
            else:
                seps[-1].append(tokens[i])
            bar_first = n
            bar_total = 0
            bar_acc.clear()
            prev = _P_OTHER
        elif code == _METER:
            expected = e[1]
            meter = tokens[i]
            prev = _P_OTHER
        elif code == _KEY:
            sig = e[1]
            bar_acc.clear()
            prev = _P_OTHER
        else:
            prev = _P_OTHER
    if open_ev:
        d = _scaled(base, mul_n, mul_d)
        ev_dur.append(d)
        bar_total += d
    n = len(ev_pitch)
    if n > bar_first:
        bars.append((bar_first, n, bar_total, expected))
        seps.append([])
    s.stray = stray
    return s


def _repeat_errors(seps: list[list[str]]) -> list[str]:
    """Check that repeat marks and endings nest as ABC requires.

    `:|` without an earlier `|:` is fine (it repeats from the start or from the
    previous section end); an open `|:` must be closed; `|1` must be closed by
    `:|` and followed by `|2`; `|2` must follow a first ending's `:|`.
    """
    errors: list[str] = []
    open_at = None  # bar index of an open |:
    state = "body"  # body | e1 (inside first ending) | after_e1 (awaiting |2)
    first_at = None
    last = len(seps) - 1
    for i, sep in enumerate(seps):
        where = f"before bar {i + 1}" if i < last else "at the end"
        for t in sep:
            if t == REPEAT_START:
                if state == "after_e1":
                    errors.append(f"first ending (bar {first_at + 1}) has no second ending |2")
                    state = "body"
                elif state == "e1":
                    errors.append(f"|: {where} inside the first ending (bar {first_at + 1})")
                    state = "body"
                if open_at is not None:
                    errors.append(f"|: {where} while the |: before bar {open_at + 1} is still open")
                open_at = i
            elif t == REPEAT_END:
                if state == "e1":
                    state = "after_e1"
                elif state == "after_e1":
                    errors.append(f":| {where} right after the first ending's :|")
                    state = "body"
                open_at = None
            elif t == ENDING_1:
                if state != "body":
                    errors.append(f"|1 {where} inside another ending")
                if i == last:
                    errors.append("|1 at the end of the tune")
                state, first_at = "e1", i
            elif t == ENDING_2:
                if state != "after_e1":
                    errors.append(f"|2 {where} without a first ending |1 ... :| before it")
                state = "body"
    if open_at is not None:
        errors.append(f"|: before bar {open_at + 1} is never closed by :|")
    if state == "e1":
        errors.append(f"first ending |1 (bar {first_at + 1}) is never closed by :|")
    elif state == "after_e1":
        errors.append(f"first ending (bar {first_at + 1}) has no second ending |2")
    return errors


class _Part:
    __slots__ = ("body", "e1", "e2", "repeated")

    def __init__(self):
        self.body: list[int] = []
        self.e1: list[int] = []
        self.e2: list[int] = []
        self.repeated = False

    def bars(self) -> list[int]:
        return self.body + self.e1 + self.e2


def _parts(seps: list[list[str]], nbars: int, splits: frozenset[int] = frozenset()) -> list[_Part]:
    """Split the bars into sections at repeat marks, the end of second endings and `splits`
    (bars that start a section although no mark says so)."""
    parts: list[_Part] = []
    cur = _Part()
    state = "body"
    e2_left = 0

    def close():
        nonlocal cur, state
        if cur.bars():
            parts.append(cur)
        cur = _Part()
        state = "body"

    for i in range(nbars + 1):  # seps[nbars] holds the marks after the last bar
        if state == "e2" and e2_left <= 0 or (i in splits and state == "body"):
            close()
        for t in seps[i]:
            if t == REPEAT_END:
                if state == "e1":
                    cur.repeated = True
                    state = "after_e1"
                else:
                    if state == "body":
                        cur.repeated = True
                    close()
            elif t == REPEAT_START:
                close()
            elif t == ENDING_1:
                if state != "body":
                    close()
                state = "e1" if cur.body else "body"
            elif t == ENDING_2:
                if state == "after_e1":
                    state = "e2"
                    e2_left = len(cur.e1)
        if state == "after_e1":  # no |2 came: the first ending closed the part
            close()
        if i == nbars:
            break
        if state == "e1":
            cur.e1.append(i)
        elif state == "e2":
            cur.e2.append(i)
            e2_left -= 1
        else:
            cur.body.append(i)
    close()
    return parts


def _events_key(scan: _Scan, bar_ids: list[int]) -> list[tuple]:
    ev_pitch, ev_dur, bars = scan.ev_pitch, scan.ev_dur, scan.bars
    out = []
    for b in bar_ids:
        first, end = bars[b][0], bars[b][1]
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


def _last_pitch(scan: _Scan, bar_ids: list[int]) -> int | None:
    for b in reversed(bar_ids):
        first, end = scan.bars[b][0], scan.bars[b][1]
        for p in reversed(scan.ev_pitch[first:end]):
            if p >= 0:
                return p
    return None


@dataclass(frozen=True)
class FormConfig:
    """Knobs of the form analysis."""

    same_part: float = 0.5  # similarity from which two sections get the same label
    phrase_bars: int = 8  # unrepeated sections of 2+ times this many bars are split into phrases


DEFAULT_FORM = FormConfig()


def analyse_tune(tokens, index: int = 0, form: FormConfig = DEFAULT_FORM, scan: _Scan | None = None) -> TuneReport:
    """Analyse one transcription: tokens `M:.. K:.. body` (a list of strings).

    `<s>`/`</s>` around it are ignored. The tokens are trusted to be v2 tokens
    (the loaders check them against the vocabulary).
    """
    tokens = list(tokens)
    if tokens and tokens[0] == "<s>":
        tokens = tokens[1:]
    if tokens and tokens[-1] == "</s>":
        tokens = tokens[:-1]
    if scan is None:
        scan = _scan(tokens)
    bars = scan.bars
    nb = len(bars)
    splits = _split_bars(bars, scan.seps)
    parts = _parts(scan.seps, nb, splits)

    # A lone short bar before a `|:` is the next section's pickup, not a section.
    merged: list[_Part] = []
    for k, p in enumerate(parts):
        if merged and merged[-1] is not None and _is_lone_pickup(merged[-1], bars) and not merged[-1].repeated:
            lone = merged.pop()
            p.body = lone.body + p.body
        merged.append(p)
    parts = merged

    # Written-out tunes: split long unrepeated sections into phrases.
    pb = form.phrase_bars
    split: list[_Part] = []
    for p in parts:
        if p.repeated or p.e1 or p.e2 or pb <= 0:
            split.append(p)
            continue
        lead = 1 if p.body and bars[p.body[0]][2] < bars[p.body[0]][3] else 0
        n = len(p.body) - lead
        if n >= 2 * pb and n % pb == 0:
            for k in range(n // pb):
                q = _Part()
                q.body = p.body[(lead if k else 0) + k * pb : lead + (k + 1) * pb]
                split.append(q)
        else:
            split.append(p)
    parts = split

    # Pickups: a short first bar of a section.
    pickups: list = []
    for p in parts:
        b0 = p.bars()[0]
        length, exp = bars[b0][2], bars[b0][3]
        pickups.append(length if 0 < length < exp else None)
    tune_pickup = pickups[0] if pickups else None

    right = [False] * nb
    closing = set()
    firsts = set()
    for k, p in enumerate(parts):
        cands = {x for x in (pickups[k], pickups[k + 1] if k + 1 < len(parts) else None, tune_pickup) if x is not None}
        b0 = p.bars()[0]
        firsts.add(b0)
        if pickups[k] is not None:
            right[b0] = True
        ends = [lst[-1] for lst in (p.e1, p.e2) if lst]
        if not ends:
            ends = [p.bars()[-1]]
        for b in ends:
            closing.add(b)
            length, exp = bars[b][2], bars[b][3]
            if length < exp and (exp - length) in cands and b != b0:
                right[b] = True
    errors = []
    for b, (_, _, length, exp) in enumerate(bars):
        if length == exp:
            right[b] = True
        elif not right[b]:
            errors.append(BarError(b, ticks_to_eighths(length), ticks_to_eighths(exp)))
    interior = [b for b in range(nb) if b not in closing and b not in firsts]

    # Labels by similarity of first-time-through content.
    reps: list[tuple[str, list]] = []
    labels: list[str] = []
    part_sim: list[float] = []
    contents = [_events_key(scan, p.body + p.e1) for p in parts]
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
            end_sim = round(similarity(_events_key(scan, p.e1), _events_key(scan, p.e2)), 4)
        cad = _last_pitch(scan, p.e2 or p.e1 or p.body)
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
    final = next((p for p in reversed(scan.ev_pitch) if p >= 0), None)
    pitches = scan.pitches
    return TuneReport(
        index=index,
        meter=tokens[0] if tokens else "",
        mode=tokens[1] if len(tokens) > 1 else "",
        tokens=len(tokens),
        bars=nb,
        bars_right=sum(right),
        interior_bars=len(interior),
        interior_right=sum(1 for b in interior if right[b]),
        pickup=None if tune_pickup is None else ticks_to_eighths(tune_pickup),
        bar_errors=tuple(errors),
        repeat_errors=tuple(_repeat_errors(scan.seps)),
        sections=tuple(sections),
        pattern=pattern,
        part_similarity=tuple(part_sim),
        final_cadence=None if final is None else final % 12,
        pitch_low=min(pitches) if pitches else None,
        pitch_high=max(pitches) if pitches else None,
        stray=scan.stray,
        unmarked_boundaries=len(splits),
    )


def _split_bars(bars, seps) -> frozenset[int]:
    """Bars that start an unmarked section: a short bar right after a short bar, the two
    adding up to one bar (complement + pickup around an ABC `||`, which v2 writes `|`),
    between full bars (so that a run of half-length bars is not read as many sections)."""
    out = set()
    n = len(bars)
    for b in range(1, n - 1):
        l1, e1 = bars[b][2], bars[b][3]
        l2, e2 = bars[b + 1][2], bars[b + 1][3]
        if not (0 < l1 < e1 and 0 < l2 < e2 and e1 == e2 and l1 + l2 == e1 and seps[b + 1] == ["|"]):
            continue
        if bars[b - 1][2] != bars[b - 1][3] or (b + 2 < n and bars[b + 2][2] != bars[b + 2][3]):
            continue
        out.add(b + 1)
    return frozenset(out)


def _is_lone_pickup(p: _Part, bars) -> bool:
    return len(p.body) == 1 and not p.e1 and not p.e2 and bars[p.body[0]][2] < bars[p.body[0]][3]


def _label(k: int) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return letters[k] if k < 26 else "?"
