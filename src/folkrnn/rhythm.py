"""One reading of v2 rhythm: events, bars, sections, and per-token musical labels.

Everything in folkrnn that asks "how long is this note, where in the bar is it, is
this bar right" asks here: `evaluate` (bar arithmetic, form), `midi` (note onsets and
lengths) and the interpretability tools (per-step labels). A bug fixed here is fixed
for all of them.

`scan(tokens)` reads a v2 token sequence (`M:.. K:.. body`, `<s>`/`</s>` ignored)
once, left to right, into events (a note, rest or chord with its sounding length)
and bars; it never fails on a badly formed tune. `layout(scan)` splits the bars into
sections and gives every bar its verdict. `label_tokens(tokens)` puts both together:
one `TokenLabel` per token.

Token semantics are those of `folkrnn.tokens` (docs/tokens.md): durations in eighth notes
(exact: integer ticks, `TICKS` per eighth, `Fraction`s at the public boundary); a
bare note lasts 1; a duration token after a note sets its length; `a > b` is 3/2 +
1/2 of the written lengths, and `2>` carries the preceding note's length; `(p`
squeezes the next p notes/rests/chords by `tokens.tuplet_ratio`; a chord `[ C E G ] 2`
lasts its first note's length times the duration after `]`; a bar line closes a
chord left open; a chord with no note in it is no event. Pitches are read under the
key signature with accidentals held to the bar line. Tokens that attach to nothing
(a duration after a bar line, a broken mark after a tuplet mark, a `]` outside a
chord...) are counted as `stray` and change nothing.

Bar rules (the ones `folkrnn evaluate` reports, docs/evaluate.md):
- a bar is the music between two bar tokens; empty spans (`:| |:`) are not bars;
- sections start after `|:` and `:|`, after a second ending (as many bars as the
  first), and between two short bars that add up to one bar (the complement and
  pickup around an ABC `||`, which v2 writes as `|`); a lone short bar before `|:`
  is the pickup of the section after it; an unrepeated section of 16, 24... bars is
  split into 8-bar phrases;
- the first bar of a section (hence of the tune) may be a pickup (shorter than the
  meter); the last bar of a section, or of each `|1`/`|2` ending, may be shorter
  than the meter when it is the complement of the section's own pickup, of the
  next section's pickup, or of the tune's first pickup;
- every other bar must last exactly the meter.

>>> [(str(n.length), n.pitches) for n in events("M:6/8 K:Cmin A > B (3 c d e [ C E ] 2 | B".split())]
[('3/2', (68,)), ('1/2', (70,)), ('2/3', (72,)), ('2/3', (74,)), ('2/3', (75,)), ('2', (60, 63)), ('1', (70,))]
>>> [b.verdict for b in layout(scan("M:6/8 K:Cmaj d | e c G c 2 d | e 3 c 2 :| f | g 3 a g f | e d c c 2 :|".split())).bars]
['pickup', 'full', 'complement', 'pickup', 'full', 'complement']
>>> [b.verdict for b in layout(scan("M:4/4 K:Cmaj C D E F G A B c | c B A G F E D | C 8 |".split())).bars]
['full', 'wrong', 'full']
>>> [(str(l.position), l.bar, l.next_is_bar) for l in label_tokens("M:2/4 K:Cmaj C 2 D > E | F".split())[2:]]
[('0', 0, False), ('0', 0, False), ('2', 0, False), ('2', 0, False), ('7/2', 0, True), ('4', 0, False), ('0', 1, False)]
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from folkrnn import tokens as T

# Durations are integers in TICKS per eighth note: 9! is divisible by every
# denominator v2 can produce (/8 tokens, broken rhythm halves, /3, tuplets up to
# 9), so bar sums stay exact without the cost of Fraction arithmetic. A rare
# nested product that is not a whole number of ticks falls back to a Fraction.
TICKS = 362880

REPEAT_START, REPEAT_END, ENDING_1, ENDING_2 = "|:", ":|", "|1", "|2"

# Token codes of the scanner's table: the first item of a `token_entry` (public because
# the sampler's bar guard reads tokens with the same table).
(ENTRY_PITCH, ENTRY_REST, ENTRY_DUR, ENTRY_BROKEN, ENTRY_TUPLET, ENTRY_CHORD_START, ENTRY_CHORD_END, ENTRY_BAR,
 ENTRY_METER, ENTRY_KEY, ENTRY_SKIP) = range(11)
# What the previous token was, for attaching durations and broken rhythms.
_P_NOTE, _P_CHORD_FIRST, _P_CHORD_OTHER, _P_CHORD_END, _P_DUR, _P_OTHER = range(6)


@lru_cache(maxsize=None)
def token_entry(token: str) -> tuple:
    """The scanner's precomputed reading of one token: `(ENTRY_* code, *what the scan needs)`,
    e.g. `(ENTRY_DUR, ticks)` or `(ENTRY_METER, ticks a bar)`."""
    k = T.kind(token)
    if k == "pitch":
        p = T.parse_pitch(token)
        by_acc = {acc: p.midi(acc) for acc in ("", "^", "^^", "=", "_", "__")}
        return (ENTRY_PITCH, (p.letter, p.octave), p.accidental, p.midi(), by_acc, p.letter)
    if k == "rest":
        return (ENTRY_REST,)
    if k == "duration":
        return (ENTRY_DUR, _ticks(T.duration(token)))
    if k == "broken":
        digits = token[:-1]
        d = _ticks(T.duration(token)) if digits else None
        this, nxt = ((3, 2), (1, 2)) if T.broken_direction(token) == ">" else ((1, 2), (3, 2))
        return (ENTRY_BROKEN, d, this, nxt)
    if k == "tuplet":
        return (ENTRY_TUPLET, T.tuplet_size(token))
    if k == "chord_start":
        return (ENTRY_CHORD_START,)
    if k == "chord_end":
        return (ENTRY_CHORD_END,)
    if k == "bar":
        return (ENTRY_BAR,)
    if k == "meter":
        return (ENTRY_METER, _ticks(T.meter_length(token)))
    if k == "key":
        return (ENTRY_KEY, T.KEY_SIGNATURES.get(token, {}))
    return (ENTRY_SKIP,)


def _ticks(d: Fraction):
    v = d * TICKS
    return int(v) if v.denominator == 1 else v


def ticks_to_eighths(t) -> Fraction:
    """A tick count as a Fraction of an eighth note.

    >>> ticks_to_eighths(TICKS * 3 // 2)
    Fraction(3, 2)
    """
    return Fraction(t) / TICKS


@lru_cache(maxsize=64)
def tuplet_ints(p: int, meter: str) -> tuple[int, int]:
    """`tokens.tuplet_ratio(p, meter)` as (numerator, denominator), cached for the scan's inner loop."""
    r = T.tuplet_ratio(p, meter)
    return r.numerator, r.denominator


def scale_ticks(base, mul_n: int, mul_d: int):
    """base * mul_n / mul_d, kept an int when it divides (the common case, and fast)."""
    d = base * mul_n
    return Fraction(d, mul_d) if d % mul_d else d // mul_d


# -- the scan ------------------------------------------------------------------------------
@dataclass(frozen=True)
class BarSpan:
    """One bar as scanned: events [first_event, end_event), length and meter length in ticks."""

    first_event: int
    end_event: int
    length: int | Fraction
    expected: int | Fraction


class Scan:
    """The raw result of one left-to-right pass over `M:.. K:.. body`.

    Per event (note, rest or chord): `ev_pitch` (MIDI of the note, of a chord's first
    note, -1 for a rest), `ev_dur` (ticks), `ev_at` (onset in its bar, ticks). Per
    sounding note (chord notes included): `pitches` (MIDI) and `pitch_ev` (its event).
    `bars[b]`: a `BarSpan`; `seps[b]`: the bar tokens before bar b (`len(bars) + 1`
    lists, the last one after the last bar). Per token (aligned to the tokens
    scanned): `tok_ev` (the event it belongs to, -1 if none), `tok_bar` (the bar it is
    in, or closes if it is a bar token; -1 for the M:/K: header), `tok_last` (the last
    event started at or before it, -1 if none). `stray`: tokens that attach to nothing.
    """

    __slots__ = ("tokens", "header", "ev_pitch", "ev_dur", "ev_at", "pitches", "pitch_ev", "bars", "seps",
                 "stray", "tok_ev", "tok_bar", "tok_last", "meter", "key")

    def __init__(self, tokens: list[str]):
        self.tokens = tokens
        self.header = 0
        self.ev_pitch: list[int] = []
        self.ev_dur: list = []
        self.ev_at: list = []
        self.pitches: list[int] = []
        self.pitch_ev: list[int] = []
        self.bars: list[BarSpan] = []
        self.seps: list[list[str]] = [[]]
        self.stray = 0
        self.tok_ev: list[int] = []
        self.tok_bar: list[int] = []
        self.tok_last: list[int] = []
        self.meter = ""
        self.key = ""

    def event_bar(self) -> list[int]:
        """The bar of each event (-1 for events after the last bar line that form no bar: none)."""
        out = [0] * len(self.ev_dur)
        for b, span in enumerate(self.bars):
            for e in range(span.first_event, span.end_event):
                out[e] = b
        return out


def _strip(tokens) -> list[str]:
    toks = list(tokens)
    if toks and toks[0] == "<s>":
        toks = toks[1:]
    if toks and toks[-1] == "</s>":
        toks = toks[:-1]
    return toks


def _event_multiplier(tup_left: int, tq: int, tp: int, pend: tuple[int, int] | None) -> tuple[int, int, int]:
    """(tuplet notes left after this event, numerator, denominator) of the next event's
    length: the tuplet's q/p while notes of it remain, times a pending broken-rhythm factor.

    >>> _event_multiplier(2, 2, 3, None), _event_multiplier(0, 2, 3, (1, 2))
    ((1, 2, 3), (0, 1, 2))
    """
    n, d = (tq, tp) if tup_left else (1, 1)
    if pend is not None:
        n, d = n * pend[0], d * pend[1]
    return max(0, tup_left - 1), n, d


def scan(tokens) -> Scan:
    """Read a tune (`M:.. K:.. body`; `<s>`/`</s>` around it are dropped) into events and bars.

    The header is the leading M: and K: tokens (either may be missing: 4/4, C major).

    >>> s = scan("M:4/4 K:Cmaj [ C E G | c 2 d 6".split())
    >>> [(str(ticks_to_eighths(b.length)), b.first_event, b.end_event) for b in s.bars], s.pitches
    ([('1', 0, 1), ('8', 1, 3)], [60, 64, 67, 72, 74])
    >>> s = scan("M:4/4 K:Cmaj [ ] 2 C [ | D".split())   # empty chords are no events
    >>> len(s.ev_dur), s.stray
    (2, 4)
    """
    tokens = _strip(tokens)
    s = Scan(tokens)
    ev_pitch, ev_dur, ev_at, pitches, pitch_ev = s.ev_pitch, s.ev_dur, s.ev_at, s.pitches, s.pitch_ev
    bars, seps, tok_ev, tok_bar, tok_last = s.bars, s.seps, s.tok_ev, s.tok_bar, s.tok_last
    meter = "M:4/4"
    expected = 8 * TICKS
    sig: dict = {}
    head = 0
    while head < len(tokens) and head < 2:
        e = token_entry(tokens[head])
        if e[0] == ENTRY_METER and not s.meter:
            meter = s.meter = tokens[head]
            expected = e[1]
        elif e[0] == ENTRY_KEY and not s.key:
            s.key = tokens[head]
            sig = e[1]
        else:
            break
        head += 1
    s.header = head
    tok_ev.extend([-1] * head)
    tok_bar.extend([-1] * head)
    tok_last.extend([-1] * head)
    bar_acc: dict = {}
    stray = 0
    prev = _P_OTHER
    open_ev = False  # an event whose duration is not final yet
    base = mul_n = mul_d = 1
    pend = None  # broken-rhythm factor owed to the next event
    tup_left, tq, tp = 0, 1, 1
    in_chord = False
    chord_open_ev = False  # the chord has a note, hence an event
    chord_start = -1  # token index of the `[`
    chord_mul = (1, 1)
    chord_undo = (0, None)
    bar_total = 0
    bar_first = 0
    entry = token_entry
    for i in range(head, len(tokens)):
        e = entry(tokens[i])
        code = e[0]
        ev_here = -1
        if code == ENTRY_PITCH:
            if e[2]:
                bar_acc[e[1]] = e[2]
                midi = e[3]
            else:
                acc = bar_acc.get(e[1])
                midi = e[4][sig.get(e[5], "") if acc is None else acc]
            if in_chord:
                pitches.append(midi)
                if not chord_open_ev:
                    # The chord's first note: the chord becomes an event now.
                    # (its tuplet and broken-rhythm factors were taken at the `[`).
                    chord_open_ev = True
                    open_ev = True
                    ev_at.append(bar_total)
                    ev_pitch.append(midi)
                    base = TICKS
                    mul_n, mul_d = chord_mul
                    tok_ev[chord_start] = len(ev_pitch) - 1
                    prev = _P_CHORD_FIRST
                else:
                    prev = _P_CHORD_OTHER
                pitch_ev.append(len(ev_pitch) - 1)
                ev_here = len(ev_pitch) - 1
                tok_ev.append(ev_here)
                tok_bar.append(len(bars))
                tok_last.append(ev_here)
                continue
            pitches.append(midi)
            pitch_ev.append(len(ev_pitch))
            code = ENTRY_REST  # from here on a note starts an event like a rest
        else:
            midi = -1
        if code == ENTRY_REST:
            if in_chord:  # a rest in a chord: nonsense, skip
                stray += 1
            else:
                if open_ev:
                    d = scale_ticks(base, mul_n, mul_d)
                    ev_dur.append(d)
                    bar_total += d
                open_ev = True
                ev_at.append(bar_total)
                ev_pitch.append(midi)
                base = TICKS
                tup_left, mul_n, mul_d = _event_multiplier(tup_left, tq, tp, pend)
                pend = None
                prev = _P_NOTE
                ev_here = len(ev_pitch) - 1
        elif code == ENTRY_CHORD_START:
            if in_chord:  # `[` inside a chord: skip
                stray += 1
            else:
                if open_ev:
                    d = scale_ticks(base, mul_n, mul_d)
                    ev_dur.append(d)
                    bar_total += d
                    open_ev = False
                in_chord = True
                chord_open_ev = False
                chord_start = i
                chord_undo = (tup_left, pend)  # given back if the chord holds no note
                tup_left, cn, cd = _event_multiplier(tup_left, tq, tp, pend)
                pend = None
                chord_mul = (cn, cd)
                prev = _P_OTHER
        elif code == ENTRY_DUR:
            if prev == _P_NOTE or prev == _P_CHORD_FIRST:
                base = e[1]
                prev = _P_DUR
                ev_here = len(ev_pitch) - 1
            elif prev == _P_CHORD_END:
                b = base * e[1]
                base = b // TICKS if not b % TICKS else Fraction(b, TICKS)
                prev = _P_DUR
                ev_here = len(ev_pitch) - 1
            elif prev == _P_CHORD_OTHER:  # other chord notes' own lengths do not count
                ev_here = len(ev_pitch) - 1
            else:
                stray += 1
                prev = _P_OTHER
        elif code == ENTRY_BROKEN:
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
                ev_here = len(ev_pitch) - 1
            else:
                stray += 1
            prev = _P_OTHER
        elif code == ENTRY_CHORD_END:
            if in_chord and chord_open_ev:
                in_chord = False
                prev = _P_CHORD_END
                ev_here = len(ev_pitch) - 1
            else:
                if in_chord:  # `[ ]`: no note, no event
                    in_chord = False
                    tup_left, pend = chord_undo
                    stray += 1
                stray += 1
                prev = _P_OTHER
        elif code == ENTRY_TUPLET:
            tup_left = e[1]
            tq, tp = tuplet_ints(e[1], meter)
            prev = _P_OTHER
        elif code == ENTRY_BAR:
            if open_ev:
                d = scale_ticks(base, mul_n, mul_d)
                ev_dur.append(d)
                bar_total += d
                open_ev = False
            if in_chord and not chord_open_ev:  # `[` then a bar line: nothing
                tup_left = chord_undo[0]
                stray += 1
            in_chord = False
            pend = None
            n = len(ev_pitch)
            if n > bar_first:
                bars.append(BarSpan(bar_first, n, bar_total, expected))
                seps.append([tokens[i]])
                tok_bar.append(len(bars) - 1)
            else:
                seps[-1].append(tokens[i])
                tok_bar.append(max(len(bars) - 1, 0))
            tok_ev.append(-1)
            tok_last.append(n - 1)
            bar_first = n
            bar_total = 0
            bar_acc.clear()
            prev = _P_OTHER
            continue
        elif code == ENTRY_METER:
            expected = e[1]
            meter = tokens[i]
            prev = _P_OTHER
        elif code == ENTRY_KEY:
            sig = e[1]
            bar_acc.clear()
            prev = _P_OTHER
        else:
            prev = _P_OTHER
        tok_ev.append(ev_here)
        tok_bar.append(len(bars))
        tok_last.append(len(ev_pitch) - 1)
    if in_chord and not chord_open_ev:
        stray += 1
    if open_ev:
        d = scale_ticks(base, mul_n, mul_d)
        ev_dur.append(d)
        bar_total += d
    n = len(ev_pitch)
    if n > bar_first:
        bars.append(BarSpan(bar_first, n, bar_total, expected))
        seps.append([])
    s.stray = stray
    return s


# -- sections and bar verdicts ---------------------------------------------------------------
class Part:
    """A section's bars (indices into `Scan.bars`): body, first ending, second ending."""

    __slots__ = ("body", "e1", "e2", "repeated")

    def __init__(self):
        self.body: list[int] = []
        self.e1: list[int] = []
        self.e2: list[int] = []
        self.repeated = False

    def bars(self) -> list[int]:
        return self.body + self.e1 + self.e2


def _parts(seps: list[list[str]], nbars: int, splits: frozenset[int] = frozenset()) -> list[Part]:
    """Split the bars into sections at repeat marks, the end of second endings and `splits`
    (bars that start a section although no mark says so)."""
    parts: list[Part] = []
    cur = Part()
    state = "body"
    e2_left = 0

    def close():
        nonlocal cur, state
        if cur.bars():
            parts.append(cur)
        cur = Part()
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


def _split_bars(bars: list[BarSpan], seps) -> frozenset[int]:
    """Bars that start an unmarked section: a short bar right after a short bar, the two
    adding up to one bar (complement + pickup around an ABC `||`, which v2 writes `|`),
    between full bars (so that a run of half-length bars is not read as many sections)."""
    out = set()
    n = len(bars)
    for b in range(1, n - 1):
        l1, e1 = bars[b].length, bars[b].expected
        l2, e2 = bars[b + 1].length, bars[b + 1].expected
        if not (0 < l1 < e1 and 0 < l2 < e2 and e1 == e2 and l1 + l2 == e1 and seps[b + 1] == ["|"]):
            continue
        if bars[b - 1].length != bars[b - 1].expected or (b + 2 < n and bars[b + 2].length != bars[b + 2].expected):
            continue
        out.add(b + 1)
    return frozenset(out)


def _is_lone_pickup(p: Part, bars: list[BarSpan]) -> bool:
    return len(p.body) == 1 and not p.e1 and not p.e2 and bars[p.body[0]].length < bars[p.body[0]].expected


@dataclass(frozen=True)
class BarInfo:
    """A bar's place and verdict. `verdict`: 'full' (lasts the meter), 'pickup' (a short
    first bar of a section), 'complement' (a short closing bar that completes a pickup)
    or 'wrong'. `section`: index into `Layout.parts`; `in_section`: its index among the
    section's bars (0 = the first, the pickup if there is one); `ending`: 0, 1 or 2."""

    length: Fraction
    expected: Fraction
    verdict: str
    section: int
    in_section: int
    ending: int
    first: bool  # the first bar of its section
    closing: bool  # the last bar of its section or of one of its endings

    @property
    def right(self) -> bool:
        return self.verdict != "wrong"


@dataclass(frozen=True)
class Layout:
    """Sections and bar verdicts of a scanned tune (see the module docstring for the rules).

    `parts[k]`: the bars of section k; `pickups[k]`: its pickup in ticks (None if its
    first bar is not short); `splits`: bars that start an unmarked section."""

    parts: tuple[Part, ...]
    pickups: tuple
    bars: tuple[BarInfo, ...]
    splits: frozenset[int]

    @property
    def tune_pickup(self):
        return self.pickups[0] if self.pickups else None


def layout(s: Scan, phrase_bars: int = 8) -> Layout:
    """Sections, pickups and every bar's verdict (`BarInfo`) of a scanned tune.

    `phrase_bars`: unrepeated sections of 2+ times this many bars (a written-out
    tune) are split into phrases of this many bars (0: never).
    """
    bars = s.bars
    nb = len(bars)
    splits = _split_bars(bars, s.seps)
    parts = _parts(s.seps, nb, splits)

    # A lone short bar before a `|:` is the next section's pickup, not a section.
    merged: list[Part] = []
    for p in parts:
        if merged and _is_lone_pickup(merged[-1], bars) and not merged[-1].repeated:
            lone = merged.pop()
            p.body = lone.body + p.body
        merged.append(p)
    parts = merged

    # Written-out tunes: split long unrepeated sections into phrases.
    pb = phrase_bars
    split: list[Part] = []
    for p in parts:
        if p.repeated or p.e1 or p.e2 or pb <= 0:
            split.append(p)
            continue
        lead = 1 if p.body and bars[p.body[0]].length < bars[p.body[0]].expected else 0
        n = len(p.body) - lead
        if n >= 2 * pb and n % pb == 0:
            for k in range(n // pb):
                q = Part()
                q.body = p.body[(lead if k else 0) + k * pb : lead + (k + 1) * pb]
                split.append(q)
        else:
            split.append(p)
    parts = split

    # Pickups: a short first bar of a section.
    pickups: list = []
    for p in parts:
        span = bars[p.bars()[0]]
        pickups.append(span.length if 0 < span.length < span.expected else None)
    tune_pickup = pickups[0] if pickups else None

    verdict = ["wrong"] * nb
    closing = [False] * nb
    first = [False] * nb
    where = [(0, 0, 0)] * nb
    for k, p in enumerate(parts):
        for j, b in enumerate(p.bars()):
            where[b] = (k, j, 1 if b in p.e1 else 2 if b in p.e2 else 0)
        cands = {x for x in (pickups[k], pickups[k + 1] if k + 1 < len(parts) else None, tune_pickup) if x is not None}
        b0 = p.bars()[0]
        first[b0] = True
        if pickups[k] is not None:
            verdict[b0] = "pickup"
        ends = [lst[-1] for lst in (p.e1, p.e2) if lst] or [p.bars()[-1]]
        for b in ends:
            closing[b] = True
            length, exp = bars[b].length, bars[b].expected
            if length < exp and (exp - length) in cands and b != b0:
                verdict[b] = "complement"
    infos = []
    for b, span in enumerate(bars):
        v = "full" if span.length == span.expected else verdict[b]
        k, j, ending = where[b]
        infos.append(BarInfo(ticks_to_eighths(span.length), ticks_to_eighths(span.expected), v, k, j, ending,
                             first[b], closing[b]))
    return Layout(tuple(parts), tuple(pickups), tuple(infos), splits)


def repeat_errors(seps: list[list[str]]) -> list[str]:
    """Check that repeat marks and endings nest as ABC requires (`Scan.seps`).

    `:|` without an earlier `|:` is fine (it repeats from the start or from the
    previous section end); an open `|:` must be closed; `|1` must be closed by
    `:|` and followed by `|2`; `|2` must follow a first ending's `:|`.

    >>> repeat_errors([["|:"], ["|"], [":|", "|2"], []])
    ['|2 before bar 3 without a first ending |1 ... :| before it']
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


# -- events and per-token labels ---------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    """A sounding event in reading order: onset from the start of the tune and length, in
    eighth notes; MIDI pitches (() = rest); `bar` it is in; `first_in_bar`."""

    start: Fraction
    length: Fraction
    pitches: tuple[int, ...]
    bar: int
    first_in_bar: bool


def events(tokens, s: Scan | None = None) -> list[Event]:
    """The events of a tune in reading order (repeats as written, not played out)."""
    if s is None:
        s = scan(tokens)
    notes: list[list[int]] = [[] for _ in s.ev_dur]
    for p, e in zip(s.pitches, s.pitch_ev):
        if e < len(notes):
            notes[e].append(p)
    ev_bar = s.event_bar()
    out: list[Event] = []
    t = Fraction(0)
    for e, d in enumerate(s.ev_dur):
        length = ticks_to_eighths(d)
        b = ev_bar[e]
        out.append(Event(t, length, tuple(sorted(set(notes[e]))), b, e == s.bars[b].first_event if s.bars else True))
        t += length
    return out


@dataclass(frozen=True)
class TokenLabel:
    """What one token of a tune is, musically (`label_tokens`).

    `bar`: the bar it is in (a bar token: the bar it closes; -1 for `<s>` and the M:/K:
    header). `position`: where in the bar, in eighth notes: a note's (and its duration
    or broken-rhythm token's) onset; for a bar token, the bar's length; for other
    tokens, the time of the events before it in the bar. `bar_length`/`bar_right`/
    `bar_verdict`: of that bar (`BarInfo.verdict`; None outside bars). `section`,
    `bar_in_section`, `ending` (0, 1, 2): see `BarInfo`. `next_is_bar`: the next token
    is a bar token. `pitch`: a note's sounding pitch in semitones from the tonic's
    middle-octave C (MIDI - 60; v2 tunes are in C), None for other tokens.
    `duration`: the sounding length of the event the token belongs to (eighths; a
    chord's for every token of it), None for tokens outside events."""

    token: str
    bar: int
    position: Fraction
    bar_length: Fraction | None
    bar_verdict: str | None
    section: int
    bar_in_section: int
    ending: int
    next_is_bar: bool
    pitch: int | None
    duration: Fraction | None

    @property
    def bar_right(self) -> bool | None:
        return None if self.bar_verdict is None else self.bar_verdict != "wrong"


def label_tokens(tokens, phrase_bars: int = 8) -> list[TokenLabel]:
    """One `TokenLabel` per token of `tokens` (`<s>`, `</s>` included if given).

    `</s>` is labelled like a bar token closing the last bar.
    """
    toks = list(tokens)
    lead = 1 if toks and toks[0] == "<s>" else 0
    trail = 1 if len(toks) > lead and toks[-1] == "</s>" else 0
    s = scan(toks)
    lay = layout(s, phrase_bars)
    ev_bar = s.event_bar()
    infos = lay.bars
    pitch_at: dict[int, int] = {}
    # The k-th pitch token in reading order is s.pitches[k].
    k = 0
    for i, t in enumerate(s.tokens):
        if T.kind(t) == "pitch" and i >= s.header:
            pitch_at[i] = s.pitches[k] - 60
            k += 1
    nb = len(s.bars)
    out: list[TokenLabel] = []
    if lead:
        out.append(TokenLabel(toks[0], -1, Fraction(0), None, None, -1, -1, 0, False, None, None))
    body = s.tokens
    for i, t in enumerate(body):
        b = s.tok_bar[i]
        e = s.tok_ev[i]
        nxt = body[i + 1] if i + 1 < len(body) else None
        nxt_bar = nxt is not None and T.kind(nxt) == "bar"
        if b < 0:
            out.append(TokenLabel(t, -1, Fraction(0), None, None, -1, -1, 0, nxt_bar, None, None))
            continue
        if e >= 0:
            pos = ticks_to_eighths(s.ev_at[e])
            dur = ticks_to_eighths(s.ev_dur[e])
        else:
            dur = None
            last = s.tok_last[i]
            if T.kind(t) == "bar" and b < nb:
                pos = infos[b].length
            elif last >= 0 and ev_bar[last] == b and b < nb and last >= s.bars[b].first_event:
                pos = ticks_to_eighths(s.ev_at[last] + s.ev_dur[last])
            else:
                pos = Fraction(0)
        if b < nb:
            info = infos[b]
            out.append(TokenLabel(t, b, pos, info.length, info.verdict, info.section, info.in_section, info.ending,
                                  nxt_bar, pitch_at.get(i), dur))
        else:  # tokens after the last bar that hold no event (strays, a trailing tuplet mark)
            out.append(TokenLabel(t, b, pos, None, None, -1, -1, 0, nxt_bar, pitch_at.get(i), dur))
    if trail:
        if nb:
            info = infos[-1]
            out.append(TokenLabel(toks[-1], nb - 1, info.length, info.length, info.verdict, info.section,
                                  info.in_section, info.ending, False, None, None))
        else:
            out.append(TokenLabel(toks[-1], 0, Fraction(0), None, None, -1, -1, 0, False, None, None))
    return out
