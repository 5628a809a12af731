"""folk-rnn v2 tokens -> standard ABC (X, T, M, L:1/8, K), in C or any other tonic.

v2 tokens are already ABC under L:1/8 with the ABC accidental convention, so in C
they are written as they are; for another tonic every note is moved diatonically
(the nearer octave; up on a tie) and respelled for the new key signature with the
same rule the reader uses, so reading the result back gives the tokens again.

What a model samples is not always ABC: an unclosed `[`, a stray `]`, a length
after a bar line, a trailing `(3`, a `|2` with no `|1`. `make_writable`
mends or drops each such thing and says what it did; `tokens_to_abc` calls it
and writes its notes as `%` lines, so that abc2midi, abcm2ps, abcjs, music21 and
our own reader all accept the result (bench/abc_acceptance.py measures this on
generated tunes). With `mend=False` the writer refuses, naming the token.

Notes are grouped by beat, as musicians write them, so that renderers beam by
beat: 6/8, 9/8 and 12/8 in dotted quarters (3 eighths); 4/4 in half bars (4
eighths, the reel convention); 2/4, 3/4 and 3/2 by the quarter. A space never
falls inside a tuplet, a chord or a broken-rhythm pair, and a line never breaks
inside a tuplet.

A chord with lengths inside and after it (`[C2E2]2`) is written with the lengths
inside only, multiplied (`[C4E4]`): abc2midi reads the first form as 2 eighths,
the other programs as 4; the reader gives the same canonical tokens back.

>>> print(tokens_to_abc("<s> M:6/8 K:Cdor |: G c c B c d |1 e 3/2 z /2 g 3 :| |2 f 3 e 3 | </s>".split(), key="D", title="Jig"))
X:1
T:Jig
M:6/8
L:1/8
K:Ddor
|: Add cde |1 f3/2z/2a3 :| |2 g3 f3 |
<BLANKLINE>
>>> print(tokens_to_abc("M:4/4 K:Cmaj | [ C E c | (3 d e".split(), title="Sampled"))
X:1
T:Sampled
% repaired for ABC: closed a chord left open
% repaired for ABC: dropped an unfinished tuplet
M:4/4
L:1/8
K:Cmaj
| [CEc] | de
<BLANKLINE>
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

from folkrnn.abc.keys import V2_KEY_MODES, Note, Tonic, mode_signature, moves, parse_key, spell
from folkrnn.errors import FolkRNNError
from folkrnn.tokens import BARS, METERS, duration, iter_sounding, kind, meter_length, parse_pitch, tuplet_ratio
from folkrnn.tokens import length_token as _length_token
from folkrnn.vocab import BOS, EOS, Vocabulary

__all__ = ["beat_length", "drawable", "fold_chord_lengths", "make_writable", "tokens_to_abc"]

_MODE_SUFFIX = {"K:Cmaj": "maj", "K:Cmin": "min", "K:Cdor": "dor", "K:Cmix": "mix"}
BARS_PER_LINE = 4
# A line's width in rough note widths (an eighth = 1, longer notes wider, accidentals
# extra): past BAR_WIDTH a line ends at the next bar line, past SOFT_WIDTH at the next
# beat, past HARD_WIDTH at the next note (abcm2ps refuses a line it must shrink too much).
BAR_WIDTH, SOFT_WIDTH, HARD_WIDTH = 30.0, 34.0, 38.0
MAX_CHORD = 8  # notes: abcm2ps says "Too many notes in chord" beyond
_VOCAB = frozenset(Vocabulary.v2().tokens)
_NOTE_START = ("pitch", "rest", "chord_start")
_SECTION = "||"  # internal: a `|` token written `||` (see `_bars`)


def beat_length(meter: str) -> Fraction:
    """Eighths per written beat group (see the module docstring for the convention).

    >>> [int(beat_length(m)) for m in ("M:2/4", "M:3/4", "M:4/4", "M:6/8", "M:9/8", "M:12/8", "M:3/2")]
    [2, 2, 4, 3, 3, 3, 2]
    """
    if meter in ("M:6/8", "M:9/8", "M:12/8"):
        return Fraction(3)
    if meter == "M:4/4":
        return Fraction(4)
    return Fraction(2)



def drawable(length: Fraction) -> bool:
    """Whether one note of `length` eighths has a glyph: plain, dotted or double dotted,
    a 1/64 to four wholes (abcm2ps: "Note too much dotted"; abcjs: "Duration not
    representable"; abc2midi refuses a divisor that is not a power of 2).

    >>> [drawable(Fraction(x)) for x in ("3", "7/2", "6", "32", "5", "9", "5/2", "1/3", "9/4", "1/16")]
    [True, True, True, True, False, False, False, False, False, False]
    """
    if not Fraction(1, 8) <= length <= 32:
        return False
    d = length.denominator
    if d & (d - 1):  # not a power of 2
        return False
    n = length.numerator
    while n % 2 == 0:
        n //= 2
    return n in (1, 3, 7)


def fold_chord_lengths(inner: Sequence[Fraction | None], outer: Fraction) -> list[str | None] | None:
    """The portable inner length tokens of a chord written with lengths inside and after.

    `inner` holds each note's own length (None where it has none); when at least one
    is given and the chord has a length after it, every note gets inner x outer
    (None = no token). None when nothing is to fold or a product is not a v2 length.

    >>> fold_chord_lengths([Fraction(2), Fraction(2)], Fraction(2)), fold_chord_lengths([Fraction(2), None], Fraction(1, 2))
    (['4', '4'], [None, '/2'])
    >>> fold_chord_lengths([None, None], Fraction(2)), fold_chord_lengths([Fraction(3, 2)], Fraction(3, 2))
    (None, None)
    """
    if outer == 1 or all(v is None for v in inner):
        return None
    lengths = [(v if v is not None else Fraction(1)) * outer for v in inner]
    out = [_length_token(v) for v in lengths]
    if any(t is not None and t not in _VOCAB or not drawable(v) for t, v in zip(out, lengths)):
        return None
    return out


# -- mending -----------------------------------------------------------------------
class _Fixes:
    """Collects what mending did; in strict mode the first problem raises instead."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.done: Counter[tuple[str, str]] = Counter()

    def __call__(self, action: str, problem: str, where: str = "") -> None:
        """`problem` is what was found ("a length that follows no note"), `action` what
        mending did about it ("dropped")."""
        if self.strict:
            raise FolkRNNError(f"{where + ': ' if where else ''}{problem}")
        self.done[action, problem] += 1

    def notes(self) -> list[str]:
        """One line per kind of fix: 'repaired for ABC: dropped a ... (x3)'."""
        return [f"repaired for ABC: {action} {problem}{f' (x{n})' if n > 1 else ''}"
                for (action, problem), n in self.done.items()]


def _where(i: int, tok: str) -> str:
    return f"token {i} {tok!r}"


def _header(toks: list[str], fix: _Fixes) -> tuple[str, str, list[tuple[int, str]]]:
    """Meter, key (the last of each before the music) and the numbered body tokens."""
    meter = key = None
    i = 0
    while i < len(toks) and kind(toks[i]) in ("meter", "key"):
        if toks[i] in METERS:
            if meter is not None:
                fix("kept the last of", "several meter tokens before the music", _where(i + 1, toks[i]))
            meter = toks[i]
        elif toks[i] in _MODE_SUFFIX:
            if key is not None:
                fix("kept the last of", "several key tokens before the music", _where(i + 1, toks[i]))
            key = toks[i]
        else:
            fix("dropped", f"{toks[i]}, not a v2 meter or mode", _where(i + 1, toks[i]))
        i += 1
    if meter is None or key is None or (fix.strict and i != 2):
        # Not a transcription: which meter and key it has is the sampler's to decide.
        raise FolkRNNError(f"a transcription starts with a v2 meter and key token, got {' '.join(toks[:2])!r}")
    body = []
    for j in range(i, len(toks)):
        tok = toks[j]
        k = kind(tok)
        if k in ("meter", "key"):
            fix("dropped", "a meter or key token inside the music (v2 has no changes)", _where(j + 1, tok))
        elif k in ("unknown", "bos", "eos") or tok not in _VOCAB:
            fix("dropped", "a token outside the v2 vocabulary", _where(j + 1, tok))
        else:
            body.append((j + 1, tok))
    return meter, key, body


def _chords(body: list[tuple[int, str]], fix: _Fixes) -> list[tuple[int, str]]:
    """Chords are `[`, notes (each with an optional length), `]`: close what is left
    open before anything else, drop stray `]` and empty `[ ]`."""
    out: list[tuple[int, str]] = []
    start = None  # index in out of the open `[`
    pitches = 0

    def trim() -> None:
        """abcm2ps draws at most MAX_CHORD notes in a chord: keep the first ones."""
        assert start is not None
        if pitches <= MAX_CHORD:
            return
        fix("dropped the notes beyond the first 8 of", f"a chord of more than {MAX_CHORD} notes (abcm2ps draws no more)", _where(*out[start]))
        seen = 0
        for n in range(start + 1, len(out)):
            if kind(out[n][1]) == "pitch":
                seen += 1
                if seen > MAX_CHORD:
                    del out[n:]
                    return

    def close(i: int, tok: str) -> None:
        nonlocal start
        assert start is not None
        trim()
        if pitches:
            fix("closed", "a chord left open", _where(i, tok))
            out.append((i, "]"))
        else:
            fix("dropped", "a '[' with no notes", _where(i, tok))
            del out[start]
        start = None

    for i, tok in body:
        k = kind(tok)
        if start is not None:
            if k == "pitch":
                out.append((i, tok))
                pitches += 1
                continue
            if k == "duration":
                if kind(out[-1][1]) == "pitch":
                    out.append((i, tok))
                else:
                    fix("dropped", "a length that follows no note", _where(i, tok))
                continue
            if k == "chord_end":
                if pitches:
                    trim()
                    out.append((i, tok))
                else:
                    fix("dropped", "an empty chord '[]'", _where(i, tok))
                    del out[start]
                start = None
                continue
            close(i, tok)
        if k == "chord_start":
            start, pitches = len(out), 0
            out.append((i, tok))
        elif k == "chord_end":
            fix("dropped", "a ']' with no '['", _where(i, tok))
        else:
            out.append((i, tok))
    if start is not None:
        close(len(body) + 2, "</s>")
    return out


def _event_end(out: list[tuple[int, str]], start: int) -> int:
    """Index just past the event (note, rest or chord, with its length) at out[start]."""
    m = start
    if out[m][1] == "[":
        while out[m][1] != "]":
            m += 1
    m += 1
    if m < len(out) and kind(out[m][1]) == "duration":
        m += 1
    return m


def _event_start(out: list[tuple[int, str]], end: int) -> int:
    """Index of the first token of the event whose tokens end just before out[end]."""
    j = end - 1
    if kind(out[j][1]) == "duration":
        j -= 1
    if out[j][1] == "]":
        while out[j][1] != "[":
            j -= 1
    return j


def _core_and_length(ev: list[tuple[int, str]]) -> tuple[list[tuple[int, str]], Fraction | None]:
    """An event's tokens without its own length token, and its length (None for a chord
    with lengths inside, whose length is ambiguous between programs)."""
    if kind(ev[-1][1]) == "duration" and (len(ev) == 2 or ev[-2][1] == "]"):
        core, length = ev[:-1], duration(ev[-1][1])
    else:
        core, length = ev, Fraction(1)
    if any(kind(t) == "duration" for _, t in core):
        return core, None
    return core, length


def _lengths(body: list[tuple[int, str]], fix: _Fixes) -> list[tuple[int, str]]:
    """A length or broken rhythm follows a note, rest or chord (one of each at most);
    a broken rhythm is followed by a note, rest or chord."""
    out: list[tuple[int, str]] = []
    prev = "start"  # kind of the last token kept
    for n, (i, tok) in enumerate(body):
        k = kind(tok)
        nxt = kind(body[n + 1][1]) if n + 1 < len(body) else "end"
        if k == "duration" and prev not in ("pitch", "rest", "chord_end"):
            fix("dropped", "a length that follows no note", _where(i, tok))
            continue
        if k == "broken":
            if prev == "duration" and tok in (">", "<") and out[-1][1] + tok in _VOCAB:
                # `C 2 >` would read back as `C 2>`: write the one token it means.
                fix("joined", "a length and a broken rhythm written as two tokens", _where(i, tok))
                tok = out.pop()[1] + tok
                prev = kind(out[-1][1])
            if prev not in ("pitch", "rest", "chord_end"):
                fix("dropped", "a broken rhythm that follows no note", _where(i, tok))
                continue
            if nxt not in ("pitch", "rest", "chord_start"):
                fix("dropped", "a broken rhythm with no note after it", _where(i, tok))
                if tok[:-1]:
                    out.append((i, tok[:-1]))
                    prev = "duration"
                continue
        out.append((i, tok))
        prev = kind(tok)
    return _even_broken(out, fix)


def _tuplet_of(body: list[tuple[int, str]]) -> list[int]:
    """For each token, the size p of the tuplet `(p` whose event it belongs to (0 if none)."""
    out = []
    left = p = cur = 0
    in_chord = False
    for _, tok in body:
        k = kind(tok)
        if k == "tuplet":
            left = p = int(tok[1:])
            out.append(0)
            continue
        if k in _NOTE_START and not in_chord:
            cur = p if left else 0
            left = max(left - 1, 0)
            in_chord = k == "chord_start"
        elif k == "chord_end":
            in_chord = False
        out.append(cur)
    return out


def _drop_broken(out: list[tuple[int, str]], n: int) -> None:
    """Remove the broken rhythm out[n], keeping the length written with it (`2>` -> `2`),
    multiplied into the note's own length token if it has one (left by a rewrite)."""
    i, tok = out[n]
    if not tok[:-1]:
        del out[n]
    elif kind(out[n - 1][1]) != "duration":
        out[n] = (i, tok[:-1])
    else:
        length = duration(out[n - 1][1]) * duration(tok)
        new = _length_token(length)
        if new is None:
            del out[n - 1:n + 1]
        elif new in _VOCAB and drawable(length):
            out[n - 1:n + 1] = [(i, new)]
        else:
            del out[n]


def _even_broken(body: list[tuple[int, str]], fix: _Fixes) -> list[tuple[int, str]]:
    """A broken rhythm joins two events of the same length (abc2midi refuses others) whose
    dotted and halved lengths can be drawn, and is not chained to another (`A > B > C`).
    Others are written as the plain lengths they mean (`A 2> B` -> `A 3 B /2`) when
    those can be written, else dropped."""
    out = list(body)
    # `A > B > C`: B would be halved and dotted at once (abcm2ps: "Note too much dotted").
    n = len(out) - 1
    while n > 0:
        if kind(out[n][1]) == "broken":
            a0 = _event_start(out, n)
            if a0 and kind(out[a0 - 1][1]) == "broken":
                fix("dropped", "a broken rhythm chained to another (A > B > C)", _where(*out[n]))
                _drop_broken(out, n)
        n -= 1
    # Events keep their first token (and its number) through the rewrites below.
    tuplet = {j: p for (j, _), p in zip(out, _tuplet_of(out))}
    n = 0
    while n < len(out):
        i, tok = out[n]
        if kind(tok) != "broken":
            n += 1
            continue
        where = _where(i, tok)
        a0 = _event_start(out, n)
        first, first_len = _core_and_length(out[a0:n])
        if first_len is not None:
            first_len *= duration(tok)  # `2>`: the length written with the mark
        b1 = _event_end(out, n + 1)
        second, second_len = _core_and_length(out[n + 1:b1])
        dotted, halved = (Fraction(3, 2), Fraction(1, 2)) if tok[-1] == ">" else (Fraction(1, 2), Fraction(3, 2))
        new = None
        if first_len is not None and second_len is not None:
            new = first_len * dotted, second_len * halved
            if not (drawable(new[0]) and drawable(new[1])):
                new = None
        if new is not None and first_len == second_len and tuplet[out[a0][0]] == tuplet[out[n + 1][0]]:
            n += 1
            continue
        if new is not None:
            toks = _length_token(new[0]), _length_token(new[1])
            if any(t is not None and t not in _VOCAB for t in toks):
                new = None
        if new is None:
            fix("dropped", "a broken rhythm whose lengths cannot be written", where)
            _drop_broken(out, n)
            continue
        fix("wrote as plain lengths", "a broken rhythm between notes of different lengths (abc2midi refuses it)",
            where)
        repl = first + ([(i, toks[0])] if toks[0] else []) + second + ([(i, toks[1])] if toks[1] else [])
        out[a0:b1] = repl
        n = a0 + len(repl)
    return out


def _drawable(body: list[tuple[int, str]], fix: _Fixes) -> list[tuple[int, str]]:
    """Drop the lengths no score can draw as one note (`5`, `9`, `5/2`, `/3`): v2 has
    no ties to write them with."""
    out = []
    for i, tok in body:
        if kind(tok) == "duration" and not drawable(duration(tok)):
            fix("dropped", "a length no score can draw as one note (5, 9, 5/2, /3)", _where(i, tok))
            continue
        out.append((i, tok))
    return out


def _tuplets(body: list[tuple[int, str]], fix: _Fixes) -> list[tuple[int, str]]:
    """A `(p` is followed by p notes, rests or chords before the next tuplet, any bar
    but `|`, or the end; otherwise the marker is dropped (its notes stay)."""
    out: list[tuple[int, str]] = []
    open_at = None  # index in out of the unfinished tuplet marker
    left = 0
    in_chord = False
    for i, tok in body:
        k = kind(tok)
        if open_at is not None and (k == "tuplet" or (k == "bar" and tok != "|")):
            fix("dropped", "an unfinished tuplet", _where(out[open_at][0], out[open_at][1]))
            del out[open_at]
            open_at = None
        if k == "tuplet":
            open_at, left = len(out), int(tok[1:])
        elif k in ("pitch", "rest", "chord_start") and not in_chord and open_at is not None:
            left -= 1
            if left == 0:
                open_at = None
        if k == "chord_start":
            in_chord = True
        elif k == "chord_end":
            in_chord = False
        out.append((i, tok))
    if open_at is not None:
        fix("dropped", "an unfinished tuplet", _where(out[open_at][0], out[open_at][1]))
        del out[open_at]
    return out


def _even_tuplets(body: list[tuple[int, str]], fix: _Fixes) -> list[tuple[int, str]]:
    """A tuplet of 4 or more notes of different written lengths loses its marker:
    abc2midi 4.84 aborts on some runs of them (a model's; 1 tune of the 4,199 in the corpus)."""
    out = list(body)
    n = 0
    while n < len(out):
        i, tok = out[n]
        if kind(tok) != "tuplet" or int(tok[1:]) < 4:
            n += 1
            continue
        lengths = []
        m = n + 1
        while m < len(out) and len(lengths) < int(tok[1:]):
            if kind(out[m][1]) in _NOTE_START:
                end = _event_end(out, m)
                _, length = _core_and_length(out[m:end])
                lengths.append(length)
                m = end
            else:
                m += 1
        if len(set(lengths)) > 1:
            fix("dropped the marker of", "a tuplet of 4 or more notes of different lengths (abc2midi aborts)",
                _where(i, tok))
            del out[n]
            continue
        n += 1
    return out


def _bars(body: list[tuple[int, str]], fix: _Fixes) -> list[tuple[int, str]]:
    """Repeats and endings as abc2midi accepts them: no `|:` inside an open repeat, a
    `|1` closed by `:|`, a `|2` only after a closed `|1`. A `|1` while a `|2` ending
    is still open gets the first bar line of that ending written `||` (`_SECTION`),
    which closes it for abc2midi and reads back as `|`; with no bar line to use, the
    `|1` is written `|`. Kept as written: empty bars (`| |`, which every program
    accepts), a `|:` never closed and a `|1` after `:|` with no `|:` (abc2midi warns,
    "Missing :|" / "found [1 ... before |:", and plays exactly what the tune means:
    its MIDI is the same byte for byte as with the repeat written out)."""
    out: list[tuple[int, str]] = []
    repeat_open = False
    ending = 0  # the ending being played: 0, 1 or 2
    ending_at = None  # index in out of the open `|1` or `|2`
    after_first = False  # a `|1 ... :|` was closed and no `|2` came yet

    def plain(n: int, what: str) -> None:
        fix("wrote as '|'", what, _where(*out[n]))
        out[n] = (out[n][0], "|")

    for i, tok in body:
        if tok not in BARS:
            out.append((i, tok))
            continue
        if tok == "|:":
            if ending == 1:
                plain(ending_at, "an ending '|1' never closed by ':|'")
            ending, after_first = 0, False
            if repeat_open:
                fix("wrote as '|'", "a '|:' inside an open repeat", _where(i, tok))
                tok = "|"
            else:
                repeat_open = True
        elif tok == ":|":
            if ending == 1:
                after_first = True
            ending, repeat_open = 0, False
        elif tok == "|1":
            if ending == 1:
                plain(ending_at, "an ending '|1' never closed by ':|'")
            if ending == 2:
                assert ending_at is not None
                closer = next((n for n in range(ending_at + 1, len(out)) if out[n][1] == "|"), None)
                if closer is None:
                    fix("wrote as '|'", "an ending '|1' inside another ending", _where(i, tok))
                    tok = "|"
                else:
                    out[closer] = (out[closer][0], _SECTION)  # same tokens, read back as `|`
            if tok == "|1":
                ending, ending_at, after_first = 1, len(out), False
        elif tok == "|2":
            if after_first and ending == 0:
                ending, ending_at, after_first = 2, len(out), False
            else:
                fix("wrote as '|'", "an ending '|2' with no '|1 ... :|' before it", _where(i, tok))
                tok = "|"
        out.append((i, tok))
    if ending == 1:
        plain(ending_at, "an ending '|1' never closed by ':|'")
    return out


def _make_writable(tokens: Sequence[str], strict: bool) -> tuple[list[str], list[str]]:
    fix = _Fixes(strict)
    toks = list(tokens)
    if toks and toks[0] == BOS:
        toks = toks[1:]
    if toks and toks[-1] == EOS:
        toks = toks[:-1]
    meter, key, body = _header(toks, fix)
    for step in (_chords, _drawable, _tuplets, _lengths, _even_tuplets, _bars, _fold_chords):
        body = step(body, fix)
    notes = fix.notes()
    if not any(kind(t) == "pitch" for _, t in body):
        # Still written (the sampler's tune is shown), but no reader will take it as a tune.
        notes.append("this tune has no notes")
    return [meter, key, *(t for _, t in body)], notes


def _tokens_of(written: list[str]) -> list[str]:
    """The v2 tokens of a mended sequence (its `||` spellings are `|`)."""
    return ["|" if t == _SECTION else t for t in written]


def _fold_chords(body: list[tuple[int, str]], fix: _Fixes) -> list[tuple[int, str]]:
    """`[ C 2 E 2 ] 2` -> `[ C 4 E 4 ]` (see `fold_chord_lengths`); a silent normalisation."""
    out: list[tuple[int, str]] = []
    n = 0
    while n < len(body):
        i, tok = body[n]
        if tok != "]" or n + 1 >= len(body) or kind(body[n + 1][1]) != "duration":
            out.append((i, tok))
            n += 1
            continue
        start = len(out) - 1
        while out[start][1] != "[":
            start -= 1
        notes: list[tuple[int, str]] = []
        inner: list[Fraction | None] = []
        for j, t in out[start + 1:]:
            if kind(t) == "pitch":
                notes.append((j, t))
                inner.append(None)
            else:
                inner[-1] = duration(t)
        folded = fold_chord_lengths(inner, duration(body[n + 1][1]))
        if folded is None and any(v is not None for v in inner):
            # No portable form (e.g. `[C/8 E7]3`): the chord keeps its own length only.
            fix("dropped the lengths inside", "a chord whose lengths cannot be written inside it", _where(i, tok))
            folded = [None] * len(notes)
            n -= 1  # keep the length after the chord
        if folded is None:
            out.append((i, tok))
            n += 1
            continue
        del out[start + 1:]
        for (j, t), ln in zip(notes, folded):
            out.append((j, t))
            if ln is not None:
                out.append((j, ln))
        out.append((i, tok))
        n += 2
    return out


def make_writable(tokens: Sequence[str]) -> tuple[list[str], list[str]]:
    """Any token sequence (a model's, `<s>`/`</s>` allowed) -> (tokens ABC can say, notes).

    The tokens start with one meter and one key token (the last of each before the
    music; FolkRNNError when there is none: not a transcription) and hold only what abc2midi, abcm2ps,
    abcjs, music21 and `read_abc` all accept; `notes` says, one line, what was
    changed (empty when nothing was). A well-formed tune comes back unchanged, but
    for chord lengths written the portable way (`fold_chord_lengths`). A tune with no
    note left is still returned (notes say so); no ABC reader takes it as a tune.

    >>> toks, notes = make_writable("M:4/4 K:Cmaj | 2 A > B K:Cmin c ] |".split())
    >>> toks
    ['M:4/4', 'K:Cmaj', '|', 'A', '>', 'B', 'c', '|']
    >>> print(*notes, sep="\\n")
    repaired for ABC: dropped a meter or key token inside the music (v2 has no changes)
    repaired for ABC: dropped a ']' with no '['
    repaired for ABC: dropped a length that follows no note
    >>> make_writable("M:6/8 K:Cmaj A 2> B | c (3 d e".split())[0]
    ['M:6/8', 'K:Cmaj', 'A', '3', 'B', '/2', '|', 'c', 'd', 'e']
    >>> make_writable("M:2/4 K:Cdor |1 A B :| |2 c d | |2 e f |".split())[0]
    ['M:2/4', 'K:Cdor', '|1', 'A', 'B', ':|', '|2', 'c', 'd', '|', '|', 'e', 'f', '|']
    """
    toks, notes = _make_writable(tokens, strict=False)
    return _tokens_of(toks), notes


# -- writing -----------------------------------------------------------------------
def _strip_specials(tokens: Sequence[str]) -> list[str]:
    toks = list(tokens)
    if toks and toks[0] == BOS:
        toks = toks[1:]
    if toks and toks[-1] == EOS:
        toks = toks[:-1]
    if BOS in toks or EOS in toks:
        raise FolkRNNError("<s> may only open and </s> only close a transcription")
    return toks


def tokens_to_abc(
    tokens: Sequence[str],
    key: str = "C",
    x: int = 1,
    title: str | None = None,
    comments: Sequence[str] = (),
    mend: bool = True,
) -> str:
    """One tune of standard ABC from v2 tokens (`<s>`/`</s>` allowed).

    `key` is the tonic to write in ("C", "D", "F#", "Bb"...): `K:Cdor` with key="D"
    becomes `K:Ddor` with every note moved up a tone. `comments` become `%` lines.
    `mend`: mend what ABC cannot say (`make_writable`) and add its notes to
    the comments; with False, FolkRNNError names the first such token instead.
    The text ends with a newline.
    """
    if mend:
        toks, notes = _make_writable(tokens, strict=False)
    else:
        toks, notes = _make_writable(_strip_specials(tokens), strict=True)
    written = toks[2:]
    body = _tokens_of(written)
    tonic = parse_key(key)
    mode = V2_KEY_MODES[toks[1]]
    if tonic.semitone == 0 and tonic.letter == "C":
        spelled = body
    else:
        items: list[str | Note] = list(body)
        for i, midi in iter_sounding(body, toks[1]):
            items[i] = Note(parse_pitch(body[i]).step, midi, body[i][0] in "^_=")
        # The nearer octave; on a tie (a tritone) up, so that the reader's
        # down-first tie rule brings it back.
        cands = moves(_tonic_c(), tonic)
        best = min(cands, key=lambda m: (abs(m.semitones), -m.semitones))
        try:
            spelled = list(spell(items, best, mode_signature(tonic, mode)))
        except ValueError as e:
            raise FolkRNNError(f"cannot write this tune in {tonic}: {e}") from None
    spelled = [w if w == _SECTION else t for w, t in zip(written, spelled)]
    lines = [f"X:{x}", f"T:{title if title is not None else 'folkrnn tune'}"]
    lines += [f"% {c}" if c else "%" for c in [*comments, *notes]]
    lines += [toks[0], "L:1/8", f"K:{tonic.name}{_MODE_SUFFIX[toks[1]]}"]
    lines += _layout(spelled, body, toks[0])
    return "\n".join(lines) + "\n"


def _tonic_c() -> Tonic:
    return Tonic("C", 0)


def _event_onsets(body: Sequence[str], meter: str) -> list[Fraction | None]:
    """The onset in eighths from the tune's start of each token that starts an event (a
    note or rest outside a chord, a `[`, a tuplet marker) or is a bar; None elsewhere.
    The body is well-formed (mended); a chord lasts as long as its first note."""
    onsets: list[Fraction | None] = [None] * len(body)
    t = Fraction(0)
    length = Fraction(0)  # of the current event, so far
    pending = Fraction(1)  # broken-rhythm factor owed to the next event
    tuplet_left, tuplet_factor = 0, Fraction(1)
    in_chord = False
    for i, tok in enumerate(body):
        k = kind(tok)
        if k == "tuplet":
            onsets[i] = t + length
            p = int(tok[1:])
            tuplet_left, tuplet_factor = p, tuplet_ratio(p, meter)
        elif k in _NOTE_START and not in_chord:
            t += length
            onsets[i] = t
            length = pending
            pending = Fraction(1)
            if tuplet_left:
                length *= tuplet_factor
                tuplet_left -= 1
            in_chord = k == "chord_start"
        elif k == "duration":
            if not in_chord or body[i - 2] == "[":  # a chord's first note sets its length
                length *= duration(tok)
        elif k == "chord_end":
            in_chord = False
        elif k == "broken":
            length *= duration(tok)
            first, second = (Fraction(3, 2), Fraction(1, 2)) if tok[-1] == ">" else (Fraction(1, 2), Fraction(3, 2))
            length *= first
            pending = second
        elif k == "bar":
            t += length
            length = Fraction(0)
            onsets[i] = t
    return onsets


def _widths(body: Sequence[str], onsets: Sequence[Fraction | None]) -> list[float]:
    """A rough printed width of each token: (written length in eighths) ** 0.65 for an
    event (at least 1; a tuplet's notes are drawn at their written length), 0.8 more
    per accidental, 0 for the rest."""
    out = [0.0] * len(body)
    in_chord = False
    last = None  # index of the current event's first token
    for i, t in enumerate(body):
        k = kind(t)
        if (k in ("pitch", "rest") and not in_chord) or k == "chord_start":
            last = i
            out[i] = 1.0
            in_chord = k == "chord_start"
        elif k == "chord_end":
            in_chord = False
        elif k == "duration" and last is not None and (not in_chord or body[i - 2] == "["):
            out[last] = max(1.0, out[last] * float(duration(t)) ** 0.65)
        if k == "pitch" and t[0] in "^_=":
            out[i] += 0.8
    del onsets
    return out


def _tuplet_width(body: Sequence[str], weights: Sequence[float], at: int) -> float:
    """Width of the tuplet whose marker is body[at], its p events with their tokens."""
    left = int(body[at][1:])
    total = 0.0
    in_chord = False
    for j in range(at + 1, len(body)):
        k = kind(body[j])
        if (k in ("pitch", "rest") and not in_chord) or k == "chord_start":
            if left == 0:
                break
            left -= 1
        in_chord = (in_chord or k == "chord_start") and k != "chord_end"
        total += weights[j]
    return total


def _layout(spelled: Sequence[str], body: Sequence[str], meter: str) -> list[str]:
    """Body tokens -> ABC lines: a space between beat groups (see the module docstring),
    spaces around bars, a line break every few bars (or inside a very long bar) but
    never inside a tuplet, chord or broken-rhythm pair.
    `body` is the tune in C (for rhythm), `spelled` the same tokens as written."""
    onsets = _event_onsets(body, meter)
    beat = beat_length(meter)
    bar_len = meter_length(meter)
    # A pickup bar is counted back from the first bar line.
    first_bar = next((i for i, tok in enumerate(body) if tok in BARS), None)
    offset = Fraction(0)
    if first_bar is not None:
        pickup = onsets[first_bar]
        assert pickup is not None
        if 0 < pickup < bar_len:
            offset = bar_len - pickup
    weights = _widths(body, onsets)
    lines: list[str] = []
    out: list[str] = []
    bars = 0
    width = 0.0
    bar_start = -offset
    tuplet_left = 0
    in_chord = False
    after_broken = False
    for i, tok in enumerate(spelled):
        k = kind(body[i])
        if k == "bar":
            if out and out[-1] != " ":
                out.append(" ")
            out.append(tok)
            out.append(" ")
            bar_start = onsets[i]
            bars += 1
            nxt = body[i + 1] if i + 1 < len(body) else ""
            if (bars >= BARS_PER_LINE or width > BAR_WIDTH) and not tuplet_left and tok not in ("|1", "|2") \
                    and nxt not in ("|1", "|2"):
                lines.append("".join(out).strip())
                out = []
                bars = 0
                width = 0.0
            continue
        onset = onsets[i]
        if onset is not None and not after_broken and not tuplet_left and out and out[-1] != " ":
            pos = onset - bar_start
            on_beat = pos > 0 and pos % beat == 0
            ahead = _tuplet_width(body, weights, i) if k == "tuplet" else weights[i]
            # Long bars (a model's) are broken at a beat, or anywhere when no beat comes:
            # abcm2ps refuses a line it must shrink too much. A tuplet goes whole.
            if (on_beat and width > SOFT_WIDTH) or width + ahead > HARD_WIDTH:
                lines.append("".join(out).strip())
                out = []
                bars = 0
                width = 0.0
            elif on_beat:
                out.append(" ")
        if k == "tuplet":
            tuplet_left = int(tok[1:]) + 1  # counted down by the marker itself too
        if (k in ("pitch", "rest") and not in_chord) or k == "chord_start" or k == "tuplet":
            tuplet_left = max(tuplet_left - 1, 0)
        if k == "chord_start":
            in_chord = True
        elif k == "chord_end":
            in_chord = False
        after_broken = k == "broken"
        width += weights[i]
        out.append(tok)
    if out:
        rest = "".join(out).strip()
        if rest:
            lines.append(rest)
    return lines
