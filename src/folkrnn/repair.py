"""Sound repairs of collections encoded like the Essen folk song collection.

Two faults of the Essen ABC files (music21's ``essenFolksong``, converted from EsAC)
cost a v2 corpus most of its bar and key information:

- **bar lines left out at line breaks**: EsAC writes one phrase per line, and the
  conversion often drops the bar line that closes a phrase, so the last bar of one line
  and the first bar of the next read as one long bar. `restore_line_bars` puts the bar
  line back at a line break when, and only when, the bar that ends there is full by the
  meter (exactly one bar long, counted from the last bar line, real or restored).
- **the key signature instead of the key**: the ``K:`` field names the signature's major
  key (almost every tune says ``K:<tonic>`` major), so an A minor tune reads ``K:C``, and
  a G minor tune may read ``K:G`` with ``_B`` and ``=F`` written on every note.
  `read_mode` reads the mode from the notes (the final note, the pitch-class profile),
  and `rekey` re-spells the tune in that mode, when the signature plainly disagrees
  (`ModeConfig` says what "plainly" means).

What cannot be repaired soundly is rejected (see `repair_tune`): a tune whose bars still
do not add up after the bar repair (reason ``bars``), a tune whose notes plainly say a
mode v2 has no token for (reason ``mode``).

The bar repair works on the ABC text and the tune's v2 tokens together: the text is read
a second time with a candidate bar line at every line break that lacks one; the two
token sequences differ only by those candidates, which places every line break among the
tokens; the lengths of the notes (read the way `folkrnn evaluate` reads them) decide which
candidates close a full bar; the text is read a third time with only those bar lines.

>>> abc = "X:1\\nM:2/4\\nL:1/8\\nK:C\\nc2 d2 | e2 f2\\ng2 a2 | g4\\nc2 d2 | e2 f2 |\\n"
>>> fixed, restored = restore_line_bars_text(abc)
>>> restored  # in the tune that starts on line 1
{1: 2}
>>> print(fixed.splitlines()[4], "/", fixed.splitlines()[5])
c2 d2 | e2 f2 | / g2 a2 | g4 |
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from folkrnn import tokens as T
from folkrnn.abc.keys import LETTERS, Move, Note, Tonic, mode_signature, spell
from folkrnn.abc.reader import TuneResult, read_abc
from folkrnn.evaluate.tune import analyse_tune
from folkrnn.rhythm import TICKS
from folkrnn.rhythm import scan as _scan
from folkrnn.vocab import Vocabulary

log = logging.getLogger(__name__)

__all__ = [
    "ModeConfig",
    "ModeReading",
    "RepairConfig",
    "RepairedTune",
    "read_mode",
    "rekey",
    "repair_abc_text",
    "restore_line_bars_text",
]

_FIELD = re.compile(r"\s*([A-Za-z+]):(?!\|)")
# The end of a music line that already closes a bar (or asks to be continued): a bar
# line, an ending bracket, a line continuation; comments and spaces before the end do
# not count.
_ENDS_WITH_BAR = re.compile(r"(?:\|\]?|:|\[\d[\d,\-]*|\\)\s*$")
# A music line whose first lexeme would merge with, or be broken by, a bar line put
# before it: a bar, a repeat colon, an ending, a broken-rhythm mark.
_STARTS_WITH_BAR = re.compile(r"\s*(?:[|:<>]|\[\d|\[\|)")


@dataclass(frozen=True)
class ModeConfig:
    """When the notes may overrule the key signature (see `read_mode`).

    `consistent`: a degree's quality (major or minor third, sixth, seventh; the second,
    fourth and fifth for the modes v2 lacks) is read from the notes only when one of the
    two spellings carries at least this share of that degree's duration; otherwise (or
    when the degree is never sung) it is the signature's.
    `min_fit`: the new scale must hold at least this share of the tune's duration (and
    at least as much as the written scale holds).
    `min_degree`: a degree is read from the notes only when it carries at least this share
    of the tune's duration (a single passing note does not change a mode).
    `triad_margin`: when the final is not the written tonic, the final's triad must carry
    more than this many times the duration of the written tonic's triad.
    """

    consistent: float = 0.8
    min_fit: float = 0.9
    min_degree: float = 0.04
    triad_margin: float = 1.2


@dataclass(frozen=True)
class RepairConfig:
    """Which repairs `repair_abc_text` applies, and whether what stays wrong is rejected.

    `bars`: restore bar lines at line breaks where the bar is full;
    `mode`: re-key tunes whose notes plainly disagree with the signature;
    `reject_bars`: reject a tune that still has a bar that does not add up (by the rules
    of `folkrnn evaluate`: pickups and their complements are fine);
    `reject_mode`: reject a tune whose notes plainly say a mode v2 has no token for.
    """

    bars: bool = True
    mode: bool = True
    reject_bars: bool = True
    reject_mode: bool = True
    mode_config: ModeConfig = field(default_factory=ModeConfig)


# -- (a) bar lines at line breaks ---------------------------------------------------------


def _music_lines(lines: Sequence[str]) -> dict[int, list[int]]:
    """The music lines (after K:) of each tune of an ABC text, by the line a tune starts
    on (1-based, as `folkrnn.abc.read_abc` reports it): a tune runs from its X: line to
    a blank line; a text without X: lines is blank-line separated blocks with a K: field.
    """
    out: dict[int, list[int]] = {}
    has_x = any(line.lstrip().startswith("X:") for line in lines)
    cur: list[int] | None = None
    in_body = False
    has_k = False
    start = 0
    for i, line in enumerate(lines):
        s = line.strip()
        fm = _FIELD.match(line)
        if not s:
            if cur is not None and (has_x or has_k):
                out[start + 1] = cur
            cur = None
            continue
        if has_x and line.lstrip().startswith("X:"):
            if cur is not None:
                out[start + 1] = cur
            cur, start, in_body = [], i, False
            continue
        if cur is None:
            if has_x:
                continue  # outside a tune: the reader ignores it
            cur, start, in_body, has_k = [], i, False, False
        if fm:
            if fm.group(1) == "K" and not in_body:
                in_body = has_k = True
        elif not s.startswith("%") and in_body:
            cur.append(i)
    if cur is not None and (has_x or has_k):
        out[start + 1] = cur
    return out


def _candidate_lines(lines: Sequence[str]) -> dict[int, list[int]]:
    """Per tune (by start line): the music lines that end without a bar line, before
    another music line that does not start with one (where a bar line may be lost)."""
    out = {}
    for first, tune in _music_lines(lines).items():
        cands = []
        for a, b in zip(tune, tune[1:]):
            text = lines[a].split("%", 1)[0]
            if not text.strip() or _ENDS_WITH_BAR.search(text) or _STARTS_WITH_BAR.match(lines[b]):
                continue
            cands.append(a)
        out[first] = cands
    return out


def _with_bars(lines: Sequence[str], where: set[int]) -> str:
    """The text with ` |` put at the end of the music lines in `where` (before a comment)."""
    out = []
    for i, line in enumerate(lines):
        if i in where:
            body, sep, comment = line.partition("%")
            line = body.rstrip() + " |" + (" " + sep + comment if sep else "")
        out.append(line)
    return "\n".join(out)


def _candidate_positions(plain: Sequence[str], marked: Sequence[str]) -> list[int] | None:
    """Where the extra `|` tokens of `marked` sit in `plain` (indices into `plain`: the
    bar goes before that token), or None when `marked` is not `plain` plus bars."""
    out = []
    i = 0
    for tok in marked:
        if i < len(plain) and plain[i] == tok:
            i += 1
        elif tok == "|":
            out.append(i)
        else:
            return None
    return out if i == len(plain) else None


def _event_starts(tokens: Sequence[str]) -> list[int]:
    """For each token index, how many events (notes, rests, chords) start before it,
    counted as `folkrnn.rhythm` (hence `folkrnn evaluate`) counts them."""
    from bisect import bisect_left

    s = _scan(list(tokens))
    first: dict[int, int] = {}
    for i, e in enumerate(s.tok_ev):
        if e >= 0 and e not in first:
            first[e] = i
    starts = sorted(first.values())
    return [bisect_left(starts, i) for i in range(len(tokens) + 1)]


def choose_line_bars(tokens: Sequence[str], positions: Sequence[int]) -> list[int]:
    """The candidate bar positions (token indices, see `_candidate_positions`) that close
    a full bar: the music since the last bar line, real or restored, lasts exactly the
    meter. Lengths are read as `folkrnn evaluate` reads them.

    >>> t = "M:2/4 K:Cmaj c 2 d 2 | e 2 f 2 g 2 a 2 | g 4 c d".split()
    >>> choose_line_bars(t, [11, 13, 18])   # after f 2 (full), g 2 (short), g 4 (full)
    [11, 18]
    """
    scan = _scan(list(tokens))
    expected = T.meter_length(tokens[0]) * TICKS
    starts = _event_starts(tokens)
    # event index -> is a real bar boundary before it
    real = {b.first_event for b in scan.bars}
    durs = scan.ev_dur
    chosen = []
    pos = sorted(set(positions))
    running = 0
    ev = 0
    k = 0
    n_ev = len(durs)
    while k < len(pos):
        stop = starts[pos[k]]
        while ev < stop and ev < n_ev:
            if ev in real:
                running = 0
            running += durs[ev]
            ev += 1
        if stop in real and stop < n_ev:
            # a real bar line right there already: nothing to restore
            k += 1
            continue
        if running == expected:
            chosen.append(pos[k])
            running = 0
        k += 1
    return chosen


def restore_line_bars_text(text: str, source: str = "<string>") -> tuple[str, dict[int, int]]:
    """The ABC text with the lost bar lines restored, and how many were restored in
    each tune, by the line the tune starts on (as `TuneResult.line`).

    A bar line is put at the end of a music line that lacks one when the bar ending
    there is full by the meter; a tune the candidate reading cannot follow (rejected,
    or not a plain insertion of bars) is left as it was.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    per_tune = _candidate_lines(lines)
    all_cands = {i for c in per_tune.values() for i in c}
    counts: dict[int, int] = {}
    if not all_cands:
        return text, counts
    plain = {r.line: r for r in read_abc(text, source)}
    marked = {r.line: r for r in read_abc(_with_bars(lines, all_cands), source)}
    keep: set[int] = set()
    for first, cands in per_tune.items():
        a, b = plain.get(first), marked.get(first)
        if not cands or a is None or b is None or a.tokens is None or b.tokens is None:
            continue
        pos = _candidate_positions(a.tokens, b.tokens)
        if pos is None or len(pos) != len(cands):
            log.info("%s: line %d: candidate bars do not align; no bar repair", source, first)
            continue
        chosen = set(choose_line_bars(a.tokens, pos))
        for p, line in zip(pos, cands):
            if p in chosen:
                keep.add(line)
                counts[first] = counts.get(first, 0) + 1
    if not keep:
        return text, counts
    return _with_bars(lines, keep), counts


# -- (b) the mode from the notes ----------------------------------------------------------

# Semitones above the tonic of each degree's two spellings (minor/lowered, major/raised).
_DEGREES = {2: (1, 2), 3: (3, 4), 4: (5, 6), 5: (6, 7), 6: (8, 9), 7: (10, 11)}
_V2_MODE = {"major": "K:Cmaj", "minor": "K:Cmin", "dorian": "K:Cdor", "mixolydian": "K:Cmix"}
_VOCAB = frozenset(Vocabulary.v2().tokens)
_AEOLIAN = (0, 2, 3, 5, 7, 8, 10)
_IONIAN = (0, 2, 4, 5, 7, 9, 11)
_WRITTEN_SCALE = {
    "K:Cmaj": frozenset({0, 2, 4, 5, 7, 9, 11}),
    "K:Cmin": frozenset({0, 2, 3, 5, 7, 8, 10}),
    "K:Cdor": frozenset({0, 2, 3, 5, 7, 9, 10}),
    "K:Cmix": frozenset({0, 2, 4, 5, 7, 9, 10}),
}


@dataclass(frozen=True)
class ModeReading:
    """What the notes of a v2 transcription say about its key.

    `tonic`: pitch class of the final note, relative to the written tonic (C);
    `mode`: major, minor, dorian, mixolydian, or another church mode (phrygian,
    lydian, locrian) or None when the degrees fit none;
    `fit`, `written_fit`: share of the duration in the read and the written scale;
    `plain`: whether the reading plainly overrules the written key (see `read_mode`).
    """

    tonic: int
    mode: str | None
    fit: float
    written_fit: float
    plain: bool
    why: str

    @property
    def v2_token(self) -> str | None:
        return _V2_MODE.get(self.mode or "")


def _quality(w: list, degree: int, written: frozenset[int], tonic: int, share: float, least) -> int | None:
    """The semitones of a degree above the tonic: the spelling the notes hold to (at
    least `share` of its duration, which is at least `least`), else the written
    scale's, else None."""
    lo, hi = _DEGREES[degree]
    a, b = w[(tonic + lo) % 12], w[(tonic + hi) % 12]
    if a + b > 0 and a + b >= least:  # (least = 0: any note counts)
        if a >= share * (a + b):
            return lo
        if b >= share * (a + b):
            return hi
    in_lo, in_hi = (tonic + lo) % 12 in written, (tonic + hi) % 12 in written
    if in_lo != in_hi:
        return lo if in_lo else hi
    return None


def _mode_of(q: dict[int, int | None]) -> str | None:
    """Church mode from the degrees' semitones (None where a degree is unknown)."""
    third, sixth, seventh = q[3], q[6], q[7]
    second, fourth, fifth = q[2], q[4], q[5]
    if None in (third, seventh) or second is None or fourth is None or fifth is None:
        return None
    if fifth == 6:
        return "locrian"
    if second == 1:
        return "phrygian" if third == 3 else None
    if fourth == 6:
        return "lydian" if third == 4 else None
    if third == 4:
        if sixth == 8:
            return None  # harmonic major: no v2 mode
        return "major" if seventh == 11 else "mixolydian"
    if sixth is None:
        return None
    # Minor third: a raised seventh is the leading note of minor (harmonic or melodic).
    if sixth == 8 or seventh == 11:
        return "minor"
    return "dorian"


def read_mode(tokens: Sequence[str], config: ModeConfig = ModeConfig()) -> ModeReading:
    """Read the key of a v2 transcription (``M:.. K:.. body``, tonic C) from its notes.

    The tonic is the final note. Each degree above it (second to seventh) takes the
    spelling the notes hold to (`config.consistent` of its duration), else the written
    signature's; the degrees give the church mode. The reading *plainly* overrules the
    written key when all of these hold:

    1. it differs from the written key (tonic or mode);
    2. the new scale holds at least `config.min_fit` of the duration, and at least as
       much as the written scale;
    3. the final's triad (tonic, third, fifth) carries more duration than the written
       tonic's triad (the final alone does not make a tonic: a major tune can end on
       its fifth).

    >>> t = "M:4/4 K:Cmaj A 2 B c d 2 c B | A 2 E 2 A 4 | c B A G A 4 |".split()
    >>> r = read_mode(t); r.tonic, r.mode, r.plain
    (9, 'minor', True)
    >>> t = "M:4/4 K:Cmaj C 2 E G c 2 G E | D 2 F A G 4 | E D C D C 4 |".split()
    >>> read_mode(t).plain
    False
    """
    scan = _scan(list(tokens))
    w = [0] * 12
    for p, d in zip(scan.ev_pitch, scan.ev_dur):
        if p >= 0:
            w[p % 12] += d
    written = _WRITTEN_SCALE.get(tokens[1], _WRITTEN_SCALE["K:Cmaj"])
    final = next((p for p in reversed(scan.ev_pitch) if p >= 0), None)
    total = sum(w)
    if final is None or not total:
        return ModeReading(0, None, 0.0, 0.0, False, "no notes")
    f = final % 12
    least = config.min_degree * total
    q = {3: _quality(w, 3, written, f, config.consistent, least)}
    sig_third = 3 if (f + 3) % 12 in written else 4 if (f + 4) % 12 in written else None
    if q[3] is not None and sig_third is not None and q[3] != sig_third:
        # The notes overrule the signature's third (a minor tune under the major
        # signature of its tonic, as Essen writes them): the signature says nothing
        # about the other degrees either, so any note of theirs counts, and a degree
        # never sung is that of the plain (aeolian or major) scale of the third.
        rest_scale = frozenset((f + s) % 12 for s in (_AEOLIAN if q[3] == 3 else _IONIAN))
        rest_least = 0
    else:
        rest_scale, rest_least = written, least
    for d in _DEGREES:
        if d != 3:
            q[d] = _quality(w, d, rest_scale, f, config.consistent, rest_least)
    mode = _mode_of(q)
    scale = {f} | {(f + s) % 12 for s in q.values() if s is not None}
    fit = float(sum(w[p] for p in scale) / total)
    written_fit = float(sum(w[p] for p in written) / total)
    written_mode = {v: k for k, v in _V2_MODE.items()}.get(tokens[1], "major")
    if mode is None:
        return ModeReading(f, None, fit, written_fit, False, "the degrees above the final fit no church mode")
    if f == 0 and mode == written_mode:
        return ModeReading(f, mode, fit, written_fit, False, "the notes agree with the signature")
    if fit < config.min_fit or fit < written_fit:
        return ModeReading(f, mode, fit, written_fit, False,
                           f"the read scale holds {fit:.0%} of the notes (written {written_fit:.0%})")
    triad = w[f] + (w[(f + q[3]) % 12] if q[3] is not None else 0) + w[(f + 7) % 12]
    w3 = 3 if 3 in written else 4
    written_triad = w[0] + w[w3] + w[7]
    if f != 0 and triad <= config.triad_margin * written_triad:
        return ModeReading(f, mode, fit, written_fit, False, "the final's triad is not the strongest")
    return ModeReading(f, mode, fit, written_fit, True, "the notes plainly disagree with the signature")


def rekey(tokens: Sequence[str], tonic: int, mode: str) -> list[str]:
    """The transcription moved so that pitch class `tonic` (relative to C) becomes C,
    spelled under the v2 signature of `mode`; sounding pitches move, durations and bars
    stay. Accidentals are written only where the new signature (and the accidentals
    earlier in the bar) would otherwise make a note sound wrong. The octave is the one
    nearest the original that keeps every note in the v2 range (ValueError if none).

    >>> rekey("M:4/4 K:Cmaj A 2 B c ^G A |".split(), 9, "minor")
    ['M:4/4', 'K:Cmin', 'c', '2', 'd', 'e', '=B', 'c', '|']
    """
    letter = _tonic_letter(tokens, tonic)
    src = Tonic(letter[0], {"": 0, "#": 1, "b": -1}[letter[1:]])
    sig = mode_signature(Tonic("C"), mode)
    key = _V2_MODE[mode]
    vocab = _VOCAB
    items: list[str | Note] = []
    body = list(tokens[2:])
    midis = iter(T.sounding_pitches(list(tokens)))
    for tok in body:
        if T.kind(tok) == "pitch":
            p = T.parse_pitch(tok)
            items.append(Note(p.step, next(midis), False))
        else:
            items.append(tok)
    dl = (LETTERS.index("C") - LETTERS.index(src.letter))
    ds = -src.semitone
    cands = sorted({Move(dl + 7 * k, ds + 12 * k) for k in (-2, -1, 0, 1)}, key=lambda m: (abs(m.semitones), m.semitones))
    for move in cands:
        try:
            out = list(spell(items, move, sig))
        except ValueError:
            continue
        if all(t in vocab for t in out):
            return [tokens[0], key, *out]
    raise ValueError(f"no octave keeps the notes in the v2 range after moving {letter} to C")


def _tonic_letter(tokens: Sequence[str], tonic: int) -> str:
    """How the final note spells pitch class `tonic` ("A", "F#", "Bb"): the letter the
    re-keyed tune is moved from."""
    midis = T.sounding_pitches(list(tokens))
    pitch_toks = [t for t in tokens[2:] if T.kind(t) == "pitch"]
    for tok, m in zip(reversed(pitch_toks), reversed(midis)):
        if m % 12 == tonic:
            p = T.parse_pitch(tok)
            alt = (m - T.NATURAL[p.letter]) % 12
            alt = alt - 12 if alt > 6 else alt
            if alt in (-1, 0, 1):
                return p.letter + {-1: "b", 0: "", 1: "#"}[alt]
    # no such note: the plain spelling
    return {0: "C", 1: "C#", 2: "D", 3: "Eb", 4: "E", 5: "F", 6: "F#", 7: "G", 8: "Ab", 9: "A", 10: "Bb", 11: "B"}[tonic]


# -- (c) the whole repair of one text ----------------------------------------------------


@dataclass(frozen=True)
class RepairedTune:
    """One tune after `repair_abc_text`: the codec's result (tokens or rejection) with
    the repairs applied, and what was done.

    `bars_restored`: bar lines put back at line breaks; `rekeyed`: ``(from, to)`` v2 key
    tokens with the final's pitch class, e.g. ``("K:Cmaj", "K:Cmin", 9)``, or None.
    """

    result: TuneResult  # the codec's, with tokens/reason/detail replaced
    bars_restored: int = 0
    rekeyed: tuple[str, str, int] | None = None


def _first_bar_error(tokens: Sequence[str]) -> str | None:
    r = analyse_tune(tokens)
    if r.all_bars_right:
        return None
    e = r.bar_errors[0]
    n = len(r.bar_errors)
    return (f"{n} bar(s) do not add up to the meter, first bar {e.bar + 1}: "
            f"{_eighths(e.found)} eighths, expected {_eighths(e.expected)}")


def _eighths(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def repair_abc_text(text: str, source: str = "<string>", config: RepairConfig = RepairConfig()) -> list[RepairedTune]:
    """Every tune of an ABC text, read with the repairs of `config` (see the module doc).

    A tune the codec rejects stays rejected with the codec's reason. Repairs only ever
    add bar lines and change the key token (with the notes re-spelled to it); anything
    else that is wrong rejects the tune with reason ``bars`` or ``mode``.
    """
    import dataclasses

    counts: dict[int, int] = {}
    if config.bars:
        text, counts = restore_line_bars_text(text, source)
    out = []
    for r in read_abc(text, source):
        restored = counts.get(r.line, 0)
        if r.tokens is None:
            out.append(RepairedTune(r, restored))
            continue
        tokens = list(r.tokens)
        rekeyed = None
        if config.mode or config.reject_mode:
            reading = read_mode(tokens, config.mode_config)
            if reading.plain and reading.v2_token is None and config.reject_mode:
                out.append(RepairedTune(dataclasses.replace(
                    r, tokens=None, reason="mode",
                    detail=f"the notes say {reading.mode} on the final ({_pc_name(reading.tonic)} with the tune "
                           f"moved to {tokens[1]}; {reading.fit:.0%} of the notes in that scale), not a v2 mode"),
                    restored))
                continue
            if reading.plain and reading.v2_token is not None and config.mode:
                try:
                    tokens = rekey(tokens, reading.tonic, reading.mode)  # type: ignore[arg-type]
                    rekeyed = (r.tokens[1], tokens[1], reading.tonic)
                except ValueError as e:
                    out.append(RepairedTune(dataclasses.replace(r, tokens=None, reason="pitch range",
                                                                detail=f"re-keying to the final: {e}"), restored))
                    continue
        if config.reject_bars:
            problem = _first_bar_error(tokens)
            if problem is not None:
                out.append(RepairedTune(dataclasses.replace(r, tokens=None, reason="bars", detail=problem),
                                        restored, rekeyed))
                continue
        out.append(RepairedTune(dataclasses.replace(r, tokens=tuple(tokens)), restored, rekeyed))
    return out


def _pc_name(pc: int) -> str:
    """A pitch class relative to the written tonic, as a note name in C."""
    return ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"][pc % 12]
