"""ABC text -> folk-rnn v2 tokens (docs/tokens.md), one `TuneResult` per tune.

A tune runs from its `X:` line to the next blank line (files without any `X:` are
read as blank-line separated blocks that have a `K:` field). The header gives the
meter, unit length and key; the body is scanned with the lexer's pattern table.
What v2 cannot say is dropped on purpose (titles, ornaments, grace notes, chord
symbols, slurs, ties); what v2 cannot express at all (another meter or mode, a key
or meter change, several voices, a pitch or length outside the vocabulary) rejects
the tune with a short reason and a one-line detail: never a silently altered tune.

Normalisations (docs/codec.md): `M:C`, `M:C|` and `M:2/2` become `M:4/4` (same
bar length in eighths, durations unchanged); lengths are rescaled to L:1/8; `x`
rests become `z`; bar spellings map onto `| |: :| |1 |2`; the tune is moved
diatonically so its tonic is C, the octave chosen so every note is in the
vocabulary (the smaller move first).

>>> tune_to_tokens("X:1\\nT:t\\nM:C|\\nL:1/8\\nK:Ador\\n|:~A2 eA ^cAeA|[1 d2 fd =c3 B:|[2 d4 z4|]")
['M:4/4', 'K:Cdor', '|:', 'c', '2', 'g', 'c', '=e', 'c', 'g', 'c', '|1', 'f', '2', 'a', 'f', '_e', '3', 'd', ':|', '|2', 'f', '4', 'z', '4', '|']
>>> r = next(read_abc("X:7\\nT:Odd\\nM:5/4\\nK:D\\nABCDE|"))
>>> r.tokens, r.reason, r.detail
(None, 'meter', 'meter 5/4 is not a v2 meter')
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

from folkrnn.abc import lexer
from folkrnn.abc.keys import (
    ACC_VALUE,
    Key,
    KeyError_,
    Move,
    Note,
    Tonic,
    is_clef_only,
    mode_signature,
    moves,
    natural_midi,
    parse_key_field,
    spell,
)
from folkrnn.abc.writer import fold_chord_lengths
from folkrnn.errors import FolkRNNError
from folkrnn.tokens import duration
from folkrnn.tokens import kind as token_kind
from folkrnn.tokens import length_token as _length_token
from folkrnn.tokens import meter_length, tuplet_ratio
from folkrnn.vocab import Vocabulary

__all__ = ["AbcRejected", "TuneResult", "describe_changes", "read_abc", "read_abc_file", "tune_to_tokens",
           "normalise_meter", "MAX_LINE", "MAX_TOKENS"]

# Size limits, checked before (lines) and while (tokens) a tune is scanned, so that
# one huge line or tune is rejected at once and memory stays small.
MAX_LINE = 100_000  # characters in one line (after `\` continuations are joined)
MAX_TOKENS = 20_000  # v2 tokens in one tune (the open corpus's longest has 759)

_VOCAB = frozenset(Vocabulary.v2().tokens)
_C = Tonic("C", 0)

# Written meter -> v2 meter token (see the module docstring for C, C| and 2/2).
_METERS = {
    "2/4": "M:2/4", "3/4": "M:3/4", "4/4": "M:4/4", "6/8": "M:6/8", "9/8": "M:9/8",
    "12/8": "M:12/8", "3/2": "M:3/2", "C": "M:4/4", "C|": "M:4/4", "2/2": "M:4/4",
}
_FIELD = re.compile(r"\s*([A-Za-z+]):(?!\|)(.*)")
_X_LINE = re.compile(r"^[ \t]*X:", re.M)
_K_LINE = re.compile(r"^[ \t]*K:", re.M)
# Diatonic step of each note letter as written (C = C4 = 28, c = C5 = 35).
_STEP = {ch: 28 + i for i, ch in enumerate("CDEFGAB")} | {ch: 35 + i for i, ch in enumerate("cdefgab")}


_NATURALS = [natural_midi(step) for step in range(84)]
_BAR_CACHE: dict[str, tuple[tuple[str, ...], str | None]] = {}


def _bar_tokens(text: str) -> tuple[tuple[str, ...], str | None]:
    """A bar lexeme -> (its v2 tokens, ending number or None), e.g. `:|2` -> ((':|', '|2'), '2')."""
    hit = _BAR_CACHE.get(text)
    if hit is not None:
        return hit
    bar, ending = lexer.split_bar(text)
    lead = len(bar) - len(bar.lstrip(":"))
    trail = len(bar) - len(bar.rstrip(":"))
    if bar.strip(":") == "" or (lead and trail):
        toks = [":|", "|:"]
    elif lead:
        toks = [":|"]
    elif trail:
        toks = ["|:"]
    else:
        toks = ["|"]
    if ending is not None:
        if toks[-1] == "|":
            toks[-1] = "|" + ending
        else:
            toks.append("|" + ending)
    if len(_BAR_CACHE) < 4096:
        _BAR_CACHE[text] = (tuple(toks), ending)
    return tuple(toks), ending


class AbcRejected(FolkRNNError):
    """A tune v2 cannot express (or malformed ABC); `.reason` is a short category."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"rejected ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class TuneResult:
    """What became of one tune of an ABC text: its tokens, or why it was rejected."""

    source: str  # file name / label given by the caller
    x: str | None  # the X: field
    title: str | None  # first T: field
    line: int  # 1-based line where the tune starts
    tokens: tuple[str, ...] | None  # "M:.. K:.. body..." (no <s> </s>); None if rejected
    reason: str | None  # rejection category, e.g. "meter", "mode", "voices", "malformed"
    detail: str | None  # rejection, one human line
    meter: str | None  # meter as written in the header ("6/8", "C|")
    mode: str | None  # mode read from K: ("major", "minor", "dorian", ...)
    # What the reading dropped or changed (keys of `CHANGES`: "tie", "grace note",
    # "chord symbol", "P: field" ...) with counts; empty when the tokens say it all.
    # Filled for accepted tunes and for those `lossless` rejected; empty otherwise.
    changes: Counter[str] = field(default_factory=Counter, compare=False)
    # The tonic of the K: field as written ("D", "Bb", "F#"; the tokens are in C) and whether
    # its signature has flats (to name pitches the way the tune spells them); None if rejected.
    tonic: str | None = None
    flats: bool = False

    @property
    def accepted(self) -> bool:
        return self.tokens is not None

    def change_summary(self) -> str:
        """`4 ties made repeated notes, 2 grace notes dropped` ('' when nothing changed)."""
        return describe_changes(self.changes)

    def label(self) -> str:
        """`file: X:12 "Title"` for messages."""
        parts = [f"{self.source}:"]
        parts.append(f"X:{self.x}" if self.x is not None else f"line {self.line}")
        if self.title:
            parts.append(f'"{self.title}"')
        return " ".join(parts)


# What the reader drops or changes, one line per kind: (one, several with {n}).
CHANGES: dict[str, tuple[str, str]] = {
    "tie": ("1 tie made a repeated note", "{n} ties made repeated notes"),
    "stray tie": ("1 tie after no note dropped", "{n} ties after no note dropped"),
    "grace note": ("1 grace note dropped", "{n} grace notes dropped"),
    "chord symbol": ("1 chord symbol dropped", "{n} chord symbols dropped"),
    "annotation": ("1 annotation dropped", "{n} annotations dropped"),
    "decoration": ("1 decoration dropped", "{n} decorations dropped"),
    "slur": ("1 slur dropped", "{n} slurs dropped"),
    "lyrics": ("1 line of lyrics dropped", "{n} lines of lyrics dropped"),
    "invisible rest": ("1 invisible rest made a rest", "{n} invisible rests made rests"),
    "cut time": ("cut time written as M:4/4", "cut time written as M:4/4"),
    "part order": ("the part order (P: in the header) not applied", "the part order (P: in the header) not applied"),
}


def describe_changes(changes: Counter[str]) -> str:
    """One line for a `TuneResult.changes`, in `CHANGES` order, then other fields.

    >>> describe_changes(Counter({"grace note": 2, "tie": 4, "P: field": 1}))
    '4 ties made repeated notes, 2 grace notes dropped, 1 P: field dropped'
    """
    parts = []
    for key, (one, many) in CHANGES.items():
        n = changes.get(key, 0)
        if n:
            parts.append(one if n == 1 else many.format(n=n))
    for key in sorted(k for k in changes if k not in CHANGES and changes[k]):
        n = changes[key]
        parts.append(f"{n} {key}{'' if n == 1 else 's'} dropped")
    return ", ".join(parts)


def normalise_meter(text: str) -> str | None:
    """The v2 meter token for a written meter, None if v2 has none.

    >>> normalise_meter("C|"), normalise_meter(" 6/8 "), normalise_meter("3/8")
    ('M:4/4', 'M:6/8', None)
    """
    return _METERS.get(text.replace(" ", ""))


def _default_unit(meter: str) -> Fraction:
    """ABC 2.1: L: defaults to 1/16 below a 3/4 meter, else 1/8."""
    m = re.fullmatch(r"(\d+)/(\d+)", meter.replace(" ", ""))
    if m and int(m.group(2)) and Fraction(int(m.group(1)), int(m.group(2))) < Fraction(3, 4):
        return Fraction(1, 16)
    return Fraction(1, 8)


def _parse_unit(text: str) -> Fraction:
    m = re.fullmatch(r"\s*(\d+)\s*(?:/\s*(\d+))?\s*", text)
    if not m or int(m.group(1)) == 0 or (m.group(2) is not None and int(m.group(2)) == 0):
        raise AbcRejected("malformed", f"bad unit length L:{text.strip()}")
    return Fraction(int(m.group(1)), int(m.group(2) or 1))


def _strip_comment(value: str) -> str:
    return value.split("%", 1)[0].strip()


def _is_cut_time(meter: str) -> bool:
    return meter.replace(" ", "") in ("C|", "2/2")


# The body fields the reader uses are K: M: L: V:. Lyrics (`w:`, `W:`) and the
# other fields are reported as dropped, but for these, which are not music:
# remarks, instructions, symbol definitions (their uses are reported), continuations.
_USED_FIELDS = frozenset("KMLV")
_SILENT_FIELDS = frozenset("rIU+")



class _Header(NamedTuple):
    x: str | None
    title: str | None
    meter: str | None
    unit: Fraction | None
    key_text: str | None
    voices: frozenset[str]
    body_start: int  # index of the first body line


def _read_header(lines: list[str]) -> _Header:
    x = title = meter = key_text = None
    unit = None
    voices: set[str] = set()
    for i, line in enumerate(lines):
        fm = _FIELD.match(line)
        if fm is None:
            s = line.strip()
            if not s or s.startswith("%"):
                continue
            return _Header(x, title, meter, unit, None, frozenset(voices), i)
        f, value = fm.group(1), fm.group(2)
        if f == "X" and x is None:
            x = value.strip()
        elif f == "T" and title is None:
            title = value.strip()
        elif f == "M":
            meter = _strip_comment(value)
        elif f == "L":
            unit = _parse_unit(_strip_comment(value))
        elif f == "V":
            vid = _strip_comment(value).split(maxsplit=1)
            if vid:
                voices.add(vid[0])
        elif f == "K":
            # Some files put M:/L: right after K:, before the music: still header.
            for later in lines[i + 1:]:
                lm = _FIELD.match(later)
                if lm is None:
                    if later.strip() and not later.lstrip().startswith("%"):
                        break
                    continue
                if lm.group(1) == "M":  # the last meter before the music counts
                    meter = _strip_comment(lm.group(2))
                elif lm.group(1) == "L" and unit is None:
                    unit = _parse_unit(_strip_comment(lm.group(2)))
            return _Header(x, title, meter, unit, _strip_comment(value), frozenset(voices), i + 1)
    return _Header(x, title, meter, unit, None, frozenset(voices), len(lines))


def _reject_for(token: str) -> AbcRejected:
    k = token_kind(token)
    if k in ("duration", "broken"):
        return AbcRejected("duration", f"length {token!r} is not in the v2 vocabulary")
    if k == "tuplet":
        return AbcRejected("tuplet", f"tuplet {token!r} is not in the v2 vocabulary")
    return AbcRejected("malformed", f"token {token!r} is not in the v2 vocabulary")


class _Body:
    """Scan the music lines of one tune into items: v2 token strings and `Note`s.

    Notes carry their sounding pitch under the source key (ABC convention: an
    accidental holds for the same letter and octave to the end of the bar; a note
    tied over a bar line keeps its pitch), so that `spell` can move them.
    """

    def __init__(self, key: Key, meter_token: str, unit: Fraction, voices: frozenset[str], strict: bool = True):
        self.key = key
        self.strict = strict
        self.meter_token = meter_token
        self.unit = unit * 8  # eighths per written unit
        self.voices = set(voices)
        self.items: list[str | Note] = []
        self.notes = 0
        self._len_cache: dict[tuple[str, bool], str | None] = {}
        self._note_cache: dict[tuple[str, bool], tuple[int, int | None, str | None]] = {}
        # Scan state carried from one line to the next.
        self.held: dict[int, int] = {}  # diatonic step -> alteration written earlier in the bar
        self.tie: tuple[int, int] | None = None  # (step, alteration) of a note tied to the next
        self.last_note: tuple[int, int] | None = None
        self.last = "start"  # what came last: start, note, dur, bar, broken, chord, tuplet
        self.in_chord = False
        self.chord_notes = 0
        self.bar_no = 1  # the bar being read, counted from 1 at the tune's start
        # The open tuplet: notes (or rests, chords) it still needs, its text, size and where.
        self.tuplet_left = 0
        self.tuplet: tuple[str, int, str] = ("", 0, "")
        # What the reading drops or changes (see `CHANGES`; slurs as "(" and ")").
        self.changes: Counter[str] = Counter()
        self.cut_time = False  # the meter in force is written M:C| or M:2/2

    def _length(self, text: str, where: str, in_chord: bool = False) -> str | None:
        """The v2 length token of a written length. Inside a chord the notes keep their
        plain multipliers: the unit length is applied once, to the chord's own length
        (ABC: chord length = first note's multiplier x chord multiplier x L)."""
        key = (text, in_chord)
        try:
            return self._len_cache[key]
        except KeyError:
            pass
        try:
            tok = _length_token(lexer.length(text) * (1 if in_chord else self.unit))
        except (ValueError, ZeroDivisionError):
            raise AbcRejected("malformed", f"{where}: bad length {text!r}") from None
        self._len_cache[key] = tok
        return tok

    def field(self, f: str, value: str, where: str) -> None:
        """A field inside the body (own line or inline)."""
        value = _strip_comment(value)
        if f not in _USED_FIELDS:
            if f == "w" or f == "W":
                self.changes["lyrics"] += 1
            elif f not in _SILENT_FIELDS:
                self.changes[f"{f}: field"] += 1
            return
        if f == "K":
            if is_clef_only(value) or not value:
                return
            try:
                new = parse_key_field(value)
            except KeyError_ as e:
                raise AbcRejected("key change", f"{where}: {e.detail}") from None
            if (new.tonic, new.signature, new.octave) != (self.key.tonic, self.key.signature, self.key.octave):
                raise AbcRejected("key change", f"{where}: key changes to K:{value}")
        elif f == "M":
            if normalise_meter(value) == self.meter_token:
                self.cut_time = self.cut_time or _is_cut_time(value)
                return
            if self.before_music():
                # The last meter before the first note counts (`M:4/4`, `K:G`, `[M:6/8]` ...).
                token = normalise_meter(value)
                if token is None:
                    raise AbcRejected("meter", f"{where}: meter {value} is not a v2 meter")
                self.meter_token = token
                self.cut_time = _is_cut_time(value)
                return
            raise AbcRejected("meter change", f"{where}: meter changes to M:{value}")
        elif f == "L":
            self.unit = _parse_unit(value) * 8
            self._len_cache = {}
            self._note_cache = {}
        elif f == "V":
            vid = value.split(maxsplit=1)
            if vid:
                self.voices.add(vid[0])
                if len(self.voices) > 1:
                    raise AbcRejected("voices", f"{where}: several voices ({', '.join(sorted(self.voices))})")

    def before_music(self) -> bool:
        """No note or rest read yet (bar lines only)."""
        return all(it.__class__ is str and token_kind(it) == "bar" for it in self.items)

    def _note(self, m: re.Match, in_chord: bool, where: str) -> tuple[int, int | None, str | None]:
        """(step, written alteration or None, length token) of a note lexeme."""
        acc, letter, marks, ln = m.group(lexer.G_ACC, lexer.G_LETTER, lexer.G_OCT, lexer.G_LEN)
        step = _STEP[letter] + 7 * self.key.octave
        if marks:
            step += 7 * (marks.count("'") - marks.count(","))
        if not 0 <= step < 84:
            raise AbcRejected("pitch range", f"{where}: note {m.group()!r} is out of range")
        return step, ACC_VALUE[acc] if acc else None, self._length(ln, where, in_chord)

    def line(self, text: str, where: str) -> None:  # noqa: C901 - one flat dispatch is the fast path
        items = self.items
        append = items.append
        sig = self.key.signature
        held = self.held
        note_cache = self._note_cache
        naturals = _NATURALS
        # Scan state lives in locals in this loop (much faster than attributes);
        # it is written back at the end and around the one recursive call.
        last, tie, last_note, in_chord = self.last, self.tie, self.last_note, self.in_chord
        chord_notes = self.chord_notes
        tuplet_left, bar_no = self.tuplet_left, self.bar_no
        changes = self.changes
        notes = 0
        for m in lexer.BODY_RE.finditer(text):
            kind = m.lastgroup
            if kind == "note":
                key = (m.group(), in_chord)
                info = note_cache.get(key)
                if info is None:
                    info = note_cache[key] = self._note(m, in_chord, where)
                step, alt, tok = info
                if alt is not None:
                    held[step] = alt
                    explicit = True
                else:
                    explicit = False
                    if tie is not None and tie[0] == step:
                        alt = tie[1]
                    else:
                        alt = held.get(step)
                        if alt is None:
                            alt = sig[step % 7]
                tie = None
                last_note = (step, alt)
                append((step, naturals[step] + alt, explicit))
                notes += 1
                if in_chord:
                    chord_notes += 1
                elif tuplet_left:
                    tuplet_left -= 1
                if tok:
                    append(tok)
                    last = "dur"
                else:
                    last = "note"
            elif kind == "space" or kind == "comment":
                continue
            elif kind == "bar":
                if in_chord and self.strict:
                    raise AbcRejected("malformed", f"{where}: bar line inside a chord")
                toks, ending = _bar_tokens(m.group())
                if tuplet_left and self.strict and toks != _PLAIN_BAR:
                    # Across a plain bar line is fine (abc2midi, abcm2ps, abcjs and music21
                    # read it; the writer writes it); across a repeat or an ending it is not.
                    raise self._unfinished(tuplet_left, f"{where}, bar {bar_no}", f"before the bar {m.group()!r}",
                                           "a tuplet may cross a plain bar line, not a repeat or an ending")
                bar_no += 1
                if ending is not None:
                    self._ending(ending, where)
                items.extend(toks)
                held.clear()
                last = "bar"
            elif kind == "slur":
                changes[m.group()] += 1  # `(` and `)`, counted as slurs at the end
            elif kind == "decoration":
                if m.group() not in ("!", "+"):  # a lone `!` (old line break) or `+` decorates nothing
                    changes["decoration"] += 1
            elif kind == "annotation":
                changes["annotation" if m.group()[1:2] in _ANNOTATION_MARKS else "chord symbol"] += 1
            elif kind == "grace":
                changes["grace note"] += len(_GRACE_NOTE.findall(m.group()))
            elif kind == "rest":
                append("z")
                if not in_chord and tuplet_left:
                    tuplet_left -= 1
                if m.group()[0] == "x":
                    changes["invisible rest"] += 1
                ln = m.group(lexer.G_REST_LEN)
                tok = self._length(ln, where, in_chord)
                if tok:
                    append(tok)
                    last = "dur"
                else:
                    last = "note"
            elif kind == "tie":
                # After a note (or its length, or the `>` after it): v2 repeats the note.
                changes["tie" if last == "note" or last == "dur" or last == "broken" else "stray tie"] += 1
                if last_note is not None:
                    tie = last_note
            elif kind == "broken":
                mark = m.group()
                if len(mark) > 1:
                    raise AbcRejected("duration", f"{where}: broken rhythm {mark!r} is not in the v2 vocabulary")
                if last == "dur":
                    items[-1] += mark
                elif last == "note":
                    append(mark)
                else:
                    raise AbcRejected("malformed", f"{where}: broken rhythm {mark!r} does not follow a note")
                last = "broken"
            elif kind == "chord_start":
                if in_chord and self.strict:
                    raise AbcRejected("malformed", f"{where}: chord inside a chord")
                if tuplet_left and not in_chord:
                    tuplet_left -= 1
                in_chord = True
                chord_notes = 0
                append("[")
                last = "chord"
            elif kind == "chord_end":
                if self.strict:
                    if not in_chord:
                        raise AbcRejected("malformed", f"{where}: ']' without '['")
                    if not chord_notes:
                        raise AbcRejected("malformed", f"{where}: empty chord")
                was_open = in_chord
                in_chord = False
                ln = m.group(lexer.G_CHORD_LEN)
                tok = self._length(ln, where)
                if tok and was_open and _fold_chord(items, tok):
                    tok = None
                append("]")
                if tok:
                    append(tok)
                    last = "dur"
                else:
                    last = "note"
            elif kind == "tuplet":
                p = int(m.group(lexer.G_TUP_P))
                q, r = m.group(lexer.G_TUP_Q), m.group(lexer.G_TUP_R)
                if not 2 <= p <= 9:
                    raise AbcRejected("tuplet", f"{where}: tuplet ({p} is not in the v2 vocabulary")
                if q and Fraction(int(q), p) != tuplet_ratio(p, self.meter_token):
                    raise AbcRejected("tuplet", f"{where}: tuplet {m.group()!r} is not a plain ({p}")
                if r and int(r) != p:
                    raise AbcRejected("tuplet", f"{where}: tuplet {m.group()!r} spans {r} notes, v2 ({p} spans {p}")
                if tuplet_left and self.strict:
                    # ABC 2.1 defines no nested tuplets: the r notes after `(p:q:r` are notes.
                    raise self._unfinished(tuplet_left, f"{where}, bar {bar_no}", f"when another tuplet {m.group()!r} starts")
                tuplet_left = p
                self.tuplet = (m.group(), p, f"{where}, bar {bar_no}")
                append(f"({p}")
                last = "tuplet"
            elif kind == "field":
                body = m.group()[1:].rstrip("]")
                self.field(body[0], body[2:], where)
                note_cache = self._note_cache  # a new L: makes a new cache
            elif kind == "ending":
                if tuplet_left and self.strict:
                    raise self._unfinished(tuplet_left, f"{where}, bar {bar_no}", "before the ending")
                ending = m.group()[1:]
                self._ending(ending, where)
                if items and items[-1] == "|":
                    items[-1] = "|" + ending
                else:
                    append("|" + ending)
                held.clear()
                last = "bar"
            elif kind == "measure_rest":
                bars = int(m.group(lexer.G_MREST) or 1)
                if not 1 <= bars <= 64:
                    raise AbcRejected("malformed", f"{where}: multi-measure rest {m.group()!r}")
                if tuplet_left and self.strict:
                    raise self._unfinished(tuplet_left, f"{where}, bar {bar_no}", f"before the rest {m.group()!r}")
                if m.group()[0] == "X":
                    changes["invisible rest"] += bars
                if len(items) + 3 * bars > MAX_TOKENS:
                    raise _too_many_tokens(where)
                bar_no += bars - 1
                length = _length_token(meter_length(self.meter_token))
                for i in range(bars):
                    if i:
                        append("|")
                    append("z")
                    if length:
                        append(length)
                held.clear()
                last = "dur"
            elif kind == "plus_chord":
                # Old chord syntax: read it as the `[...]` chord it is.
                self.last, self.tie, self.last_note, self.in_chord = last, tie, last_note, in_chord
                self.notes += notes
                self.chord_notes = chord_notes
                self.tuplet_left, self.bar_no = tuplet_left, bar_no
                notes = 0
                self.line(f"[{m.group(lexer.G_PLUS_NOTES)}]{m.group(lexer.G_PLUS_LEN)}", where)
                last, tie, last_note, in_chord = self.last, self.tie, self.last_note, self.in_chord
                chord_notes = self.chord_notes
                tuplet_left, bar_no = self.tuplet_left, self.bar_no
            elif kind == "overlay":
                raise AbcRejected("voices", f"{where}: voice overlay '&'")
            elif m.group() == ":" and last == "bar" and items[-1] in ("|", ":|", "|:"):
                # `|` at the end of one line, `:` at the start of the next: a `|:`.
                if tuplet_left and self.strict:
                    raise self._unfinished(tuplet_left, f"{where}, bar {bar_no}", "before the repeat ':'")
                if items[-1] == "|":
                    items[-1] = "|:"
                elif items[-1] == ":|":
                    append("|:")
            else:
                raise AbcRejected("malformed", f"{where}: unexpected character {m.group()!r}")
        self.last, self.tie, self.last_note, self.in_chord = last, tie, last_note, in_chord
        self.notes += notes
        self.chord_notes = chord_notes
        self.tuplet_left, self.bar_no = tuplet_left, bar_no

    def _ending(self, ending: str, where: str) -> None:
        if ending not in ("1", "2"):
            raise AbcRejected("ending", f"{where}: ending [{ending} is not |1 or |2")

    def _unfinished(self, left: int, where: str, when: str, why: str = "") -> AbcRejected:
        """The rejection of the open tuplet, which still needs `left` notes `when` (...)."""
        text, p, started = self.tuplet
        origin = "" if started == where else f" (from {started})"
        why = why or f"ABC 2.1: a ({p} takes the {p} notes, rests or chords after it"
        return AbcRejected("malformed", f"{where}: tuplet {text!r}{origin} has {p - left} of its {p} notes {when} "
                                        f"({why})")

    def finish_changes(self) -> Counter[str]:
        """The changes of the whole tune, once the body is read."""
        slurs = max(self.changes.pop("(", 0), self.changes.pop(")", 0))
        if slurs:
            self.changes["slur"] = slurs
        if self.cut_time:
            self.changes["cut time"] = 1
        return +self.changes



def _too_many_tokens(where: str) -> AbcRejected:
    return AbcRejected("too long", f"{where}: the tune is over the limit of {MAX_TOKENS:,} tokens per tune")


# An annotation's placement mark (ABC 2.1 section 4.19); other quoted text is a chord symbol.
_ANNOTATION_MARKS = frozenset("^_<>@")
_PLAIN_BAR = ("|",)
_GRACE_NOTE = re.compile(r"[A-Ga-g]")


def _fold_chord(items: list, outer: str) -> bool:
    """Move a chord's length inside when its notes have lengths too: `[C2E2]2` is
    `[ C 4 E 4 ]`, the portable form the writer uses (see `fold_chord_lengths`).
    `items` ends with the open chord; True if it was rewritten."""
    start = len(items) - 1
    while items[start] != "[":
        start -= 1
    notes: list = []
    inner: list[Fraction | None] = []
    for it in items[start + 1:]:
        if it.__class__ is str:
            if not inner or token_kind(it) != "duration":  # a rest or bar in a chord (non-strict)
                return False
            inner[-1] = duration(it)
        else:
            notes.append(it)
            inner.append(None)
    folded = fold_chord_lengths(inner, duration(outer))
    if folded is None:
        return False
    del items[start + 1:]
    for note, ln in zip(notes, folded):
        items.append(note)
        if ln is not None:
            items.append(ln)
    return True


def _tokens(header: _Header, lines: list[str], line0: int,
            strict: bool = True) -> tuple[list[str], str | None, Counter[str]]:
    """Header + body lines -> v2 tokens (raises AbcRejected). Returns (tokens, mode, changes)."""
    if header.key_text is None:
        raise AbcRejected("malformed", "no K: field before the music")
    try:
        key = parse_key_field(header.key_text)
    except KeyError_ as e:
        raise AbcRejected(e.reason, e.detail) from None
    if header.meter is None:
        raise AbcRejected("meter", "no M: field (free meter)")
    meter_token = normalise_meter(header.meter)
    if meter_token is None:
        raise AbcRejected("meter", f"meter {header.meter} is not a v2 meter")
    key_token = key.v2_token
    if key_token is None:
        raise AbcRejected("mode", f"mode {key.mode} (K:{header.key_text}) is not a v2 mode")
    if len(header.voices) > 1:
        raise AbcRejected("voices", f"several voices ({', '.join(sorted(header.voices))})")
    unit = header.unit if header.unit is not None else _default_unit(header.meter)
    body = _Body(key, meter_token, unit, header.voices, strict)
    body.cut_time = _is_cut_time(header.meter)
    for i in range(header.body_start):
        fm = _FIELD.match(lines[i])
        if fm is not None and fm.group(1) in "wW":
            body.changes["lyrics"] += 1
        elif fm is not None and fm.group(1) == "P" and len(_PART_ORDER.sub("", _strip_comment(fm.group(2)))) > 1:
            body.changes["part order"] = 1
    for i in range(header.body_start, len(lines)):
        text = lines[i]
        where = f"line {line0 + i}"
        fm = _FIELD.match(text)
        if fm is not None:
            body.field(fm.group(1), fm.group(2), where)
        elif text.lstrip().startswith("%"):
            continue
        else:
            body.line(text, where)
            if len(body.items) > MAX_TOKENS - 2:
                raise _too_many_tokens(where)
    if body.in_chord and strict:
        raise AbcRejected("malformed", "unclosed chord '['")
    if body.tuplet_left and strict:
        raise body._unfinished(body.tuplet_left, body.tuplet[2], "when the tune ends")
    if not body.notes:
        raise AbcRejected("no notes", "the tune has no notes")
    items = body.items
    for it in items:
        if it.__class__ is str and it not in _VOCAB:
            raise _reject_for(it)  # type: ignore[arg-type]
    return [body.meter_token, key_token, *_transpose(items, key)], key.mode, body.finish_changes()


_PART_ORDER = re.compile(r"[^A-Za-z]")  # what is left of a P: field: its part letters


def _transpose(items: list, key: Key) -> list[str]:
    """Move the items from `key` to the same mode on C, the octave that fits the vocabulary."""
    target = mode_signature(_C, key.mode)
    first_error: AbcRejected | None = None
    for move in moves(key.tonic, _C):
        try:
            out = list(spell(items, move, target))
        except ValueError as e:
            first_error = first_error or AbcRejected("accidental", f"a note needs {e} after transposition")
            continue
        bad = [t for t in out if t not in _VOCAB]
        if not bad:
            return out
        if first_error is None:
            first_error = _pitch_rejection(bad[0], items, move)
    assert first_error is not None
    raise first_error


def _pitch_rejection(token: str, items: list, move: Move) -> AbcRejected:
    natural = token.lstrip("^_=")
    if natural in _VOCAB:
        return AbcRejected("accidental", f"{token} (in C) is not in the v2 vocabulary")
    steps = [it[0] + move.steps for it in items if it.__class__ is not str]
    from folkrnn.abc.keys import step_name

    return AbcRejected("pitch range", f"notes span {step_name(min(steps))} to {step_name(max(steps))} in C, "
                       f"wider than the v2 range C, to b'")


_MUSIC_LINE = re.compile(r"[^%]*[A-Ga-g][^%]*\|")


def _split_tunes(lines: list[str], has_x: bool) -> Iterator[tuple[int, list[str], int | None]]:
    """(index of first line, lines, index of stray music or None) of each tune.

    A blank line ends a tune; music right after it (before the next X:) would be
    lost, so its line is reported and the tune rejected rather than cut short.
    """
    cur: list[str] | None = None
    start = 0
    if has_x:
        ended: tuple[int, list[str]] | None = None
        for i, line in enumerate(lines):
            if line.lstrip().startswith("X:"):
                if cur:
                    yield start, cur, None
                if ended:
                    yield ended[0], ended[1], None
                    ended = None
                cur, start = [line], i
            elif cur is not None:
                if line.strip():
                    cur.append(line)
                else:
                    ended, cur = (start, cur), None
            elif ended is not None and line.strip():
                if not _FIELD.match(line) and not line.lstrip().startswith("%") and _MUSIC_LINE.match(line):
                    yield ended[0], ended[1], i
                    ended = None
        if cur:
            yield start, cur, None
        if ended:
            yield ended[0], ended[1], None
        return
    for i, line in enumerate(lines + [""]):
        if line.strip():
            if cur is None:
                cur, start = [], i
            cur.append(line)
        elif cur is not None:
            if any(_FIELD.match(s) and _FIELD.match(s).group(1) == "K" for s in cur):  # type: ignore[union-attr]
                yield start, cur, None
            cur = None


def read_abc(text: str, source: str = "<string>", *, strict: bool = True,
             lossless: bool = False) -> Iterator[TuneResult]:
    """Every tune of an ABC text, accepted or rejected; never raises for a tune's problems.

    `strict=False` accepts unbalanced or nested chord brackets, bar lines inside
    a chord and unfinished or nested tuplets, keeping them as written: sampled v2
    sequences contain such brackets, and their ABC (see `tokens_to_abc`) must read
    back to the same tokens. Corpus building should keep the default, which rejects
    them as malformed.

    Each accepted tune's `changes` say what the reading dropped or changed (ties,
    grace notes, chord symbols...); `lossless=True` rejects a tune with any change
    instead (reason `changed`, the detail naming them).
    A line over `MAX_LINE` characters or a tune over `MAX_TOKENS` tokens rejects the
    tune (`too long`) before it is scanned further.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    has_x = _X_LINE.search(text) is not None
    for start, tune_lines, stray in _split_tunes(lines, has_x):
        yield _read_tune(tune_lines, source, start + 1, strict, None if stray is None else stray + 1, lossless)


def _join_continued(lines: list[str], line0: int = 1) -> list[str]:
    """Join lines ending in a backslash with the next (unless that is a field line).

    The joined line takes the place of the first one; empty strings keep the line
    numbering of the others. The pieces are joined once (a long run of continued
    lines costs linear time); AbcRejected (`too long`) when a joined line would
    exceed `MAX_LINE` characters (`line0`: number of the first line, for it)."""
    out = list(lines)
    n = len(out)
    i = 0
    while i < n - 1:
        if not out[i].rstrip().endswith("\\") or _FIELD.match(out[i + 1]):
            i += 1
            continue
        # The line is "".join(parts) + tail; `tail` is the piece joined last.
        parts: list[str] = []
        size = 0
        tail = out[i]
        j = i + 1
        while True:
            end = tail.rstrip()
            if not end and parts:  # a blank piece: its line ends in an earlier one
                tail = "".join(parts) + tail
                parts, size = [], 0
                continue
            if not end.endswith("\\"):
                break
            while j < n and out[j] == "":
                j += 1
            if j == n:
                break
            parts.append(end[:-1])
            size += len(end) - 1
            tail, out[j] = out[j], ""
            if size + len(tail) > MAX_LINE:
                raise AbcRejected("too long", f"line {line0 + i}: the lines joined by '\\' are over the limit of "
                                              f"{MAX_LINE:,} characters per line")
        out[i] = "".join(parts) + tail
        if j == n:
            break
        i += 1
    return out


def _check_lines(lines: list[str], line0: int) -> None:
    for i, line in enumerate(lines):
        if len(line) > MAX_LINE:
            raise AbcRejected("too long", f"line {line0 + i} has {len(line):,} characters, over the limit of "
                                          f"{MAX_LINE:,} per line")


def _short(text: str | None) -> str | None:
    return text if text is None or len(text) <= 200 else text[:200] + "..."


def _read_tune(lines: list[str], source: str, line0: int, strict: bool = True, stray: int | None = None,
               lossless: bool = False) -> TuneResult:
    header = None
    mode = None
    changes: Counter[str] = Counter()
    try:
        _check_lines(lines, line0)  # before anything else reads them
        lines = _join_continued(lines, line0)
        header = _read_header(lines)
        tokens, mode, changes = _tokens(header, lines, line0, strict)
        if stray is not None:
            raise AbcRejected("malformed", f"music continues after a blank line, at line {stray} "
                                           "(a blank line ends an ABC tune)")
        if lossless and changes:
            raise AbcRejected("changed", describe_changes(changes))
    except AbcRejected as e:
        if header is None:
            # The header itself was bad (e.g. L:1/0, a huge line): still name the tune.
            x = next((s.split(":", 1)[1].strip() for s in lines if s.lstrip().startswith("X:")), None)
            title = next((s.split(":", 1)[1].strip() for s in lines if s.lstrip().startswith("T:")), None)
            return TuneResult(source, _short(x), _short(title), line0, None, e.reason, e.detail, None, None)
        if mode is None and header.key_text is not None:
            try:
                mode = parse_key_field(header.key_text).mode
            except KeyError_:
                mode = None
        return TuneResult(source, header.x, header.title, line0, None, e.reason, e.detail, header.meter, mode,
                          changes if e.reason == "changed" else Counter())
    key = parse_key_field(header.key_text)  # read once already by _tokens: cannot fail here
    return TuneResult(source, header.x, header.title, line0, tuple(tokens), None, None, header.meter, mode, changes,
                      key.tonic.name, "_" in key.signature_text())


def read_abc_file(path: str | Path, *, lossless: bool = False) -> Iterator[TuneResult]:
    """Every tune of an ABC file (UTF-8, or Latin-1 when it is not valid UTF-8).

    Raises FolkRNNError if the file cannot be read. `lossless`: see `read_abc`.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise FolkRNNError(f"{path}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return read_abc(text, str(path), lossless=lossless)


def tune_to_tokens(abc: str, *, strict: bool = True, lossless: bool = False) -> list[str]:
    """The v2 tokens (without <s> </s>) of the first tune of `abc`; AbcRejected if v2
    cannot express it, or if there is no tune (a bare body needs at least a K: line).
    `strict`, `lossless`: see `read_abc`."""
    for result in read_abc(abc, strict=strict, lossless=lossless):
        if result.tokens is None:
            raise AbcRejected(result.reason or "malformed", result.detail or "cannot read the tune")
        return list(result.tokens)
    raise AbcRejected("malformed", "no tune found (an X: or K: field is needed)")
