"""Keys, modes and transposition for the ABC codec.

A key is a tonic (letter + alteration), a mode and a key signature (one alteration
per letter C..B). v2 only knows four modes on C (`K:Cmaj K:Cmin K:Cdor K:Cmix`), so
every tune is moved diatonically: the tonic's letter goes to C and each note keeps
its letter distance from the tonic, while the sounding pitch moves by the matching
number of semitones. The spelling in the target key follows the ABC convention that
a written accidental holds for the same letter and octave until the next bar line.

>>> parse_key("F#"), parse_key("Bb").semitone
(Tonic(letter='F', alter=1), 10)
>>> k = parse_key_field("A dorian")
>>> k.mode, k.v2_token, k.signature_text()
('dorian', 'K:Cdor', '^f')
>>> parse_key_field("D exp ^f ^c").mode
'major'
>>> [str(m) for m in moves(parse_key("D"), parse_key("C"))]
['-2', '+10', '-14']
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from folkrnn.errors import FolkRNNError
from folkrnn.tokens import LETTERS, NATURAL

# Interval pattern (semitones above the tonic) of each degree of each mode.
MODE_PATTERNS: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "locrian": (0, 1, 3, 5, 6, 8, 10),
}
# The modes v2 can express, with their key token.
V2_MODES = {"major": "K:Cmaj", "minor": "K:Cmin", "dorian": "K:Cdor", "mixolydian": "K:Cmix"}
V2_KEY_MODES = {v: k for k, v in V2_MODES.items()}
# ABC 2.1: only the first three letters of a mode name count, case-insensitively.
_MODE_WORDS = {
    "maj": "major", "ion": "major", "min": "minor", "aeo": "minor", "m": "minor",
    "dor": "dorian", "phr": "phrygian", "lyd": "lydian", "mix": "mixolydian", "loc": "locrian",
}

ACC_TEXT = {-2: "__", -1: "_", 0: "=", 1: "^", 2: "^^"}
ACC_VALUE = {"__": -2, "_": -1, "=": 0, "^": 1, "^^": 2}
# ABC 2.1 section 4.6: a clef name, optionally its staff line and an octave mark
# (`treble`, `bass3`, `alto4`, `treble-8`, `bass^8`, `tenor_8`), alone or as `clef=...`.
_CLEF_WORD = re.compile(r"(?:treble|bass|alto|tenor|baritone|mezzo(?:soprano)?|soprano|perc|none)[1-5]?(?:[-+^_]8)?",
                        re.I)

_TONIC = re.compile(r"\s*([A-Ga-g])(#|b|♯|♭)?")
_EXPLICIT = re.compile(r"(\^\^|\^|=|__|_)([A-Ga-g])$")
_ACCS = re.compile(r"(?:(?:\^\^|\^|=|__|_)[A-Ga-g])+")


class KeyError_(FolkRNNError):
    """A K: field that v2 cannot express; `.reason` is a short category."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Tonic:
    """A tonic: letter (upper case) and alteration in semitones (-1 flat, +1 sharp)."""

    letter: str
    alter: int = 0

    @property
    def semitone(self) -> int:
        """Pitch class, 0 = C."""
        return (NATURAL[self.letter] + self.alter) % 12

    @property
    def name(self) -> str:
        return self.letter + {-1: "b", 0: "", 1: "#"}[self.alter]

    def __str__(self) -> str:
        return self.name


def parse_key(name: str) -> Tonic:
    """A user's tonic: "D", "F#", "Bb" (also "f#", "B♭"); FolkRNNError if it is not one.

    >>> parse_key("eb")
    Tonic(letter='E', alter=-1)
    """
    m = re.fullmatch(r"\s*([A-Ga-g])(#|b|♯|♭)?\s*", name or "")
    if not m:
        raise FolkRNNError(f"bad key {name!r}: give a tonic such as C, D, F#, Bb")
    return Tonic(m.group(1).upper(), {None: 0, "#": 1, "♯": 1, "b": -1, "♭": -1}[m.group(2)])


def mode_signature(tonic: Tonic, mode: str) -> tuple[int, ...]:
    """Alterations of C..B in `mode` on `tonic` (e.g. D major -> F and C sharp)."""
    sig = [0] * 7
    start = LETTERS.index(tonic.letter)
    for degree, interval in enumerate(MODE_PATTERNS[mode]):
        li = (start + degree) % 7
        want = (tonic.semitone + interval) % 12
        alt = (want - NATURAL[LETTERS[li]]) % 12
        sig[li] = alt - 12 if alt > 6 else alt
    return tuple(sig)


def detect_mode(tonic: Tonic, sig: tuple[int, ...]) -> str | None:
    """The mode whose scale on `tonic` is exactly the key signature `sig`, or None."""
    start = LETTERS.index(tonic.letter)
    pattern = tuple(
        (NATURAL[LETTERS[(start + d) % 7]] + sig[(start + d) % 7] - tonic.semitone) % 12 for d in range(7)
    )
    for mode, pat in MODE_PATTERNS.items():
        if pat == pattern:
            return mode
    return None


def _mode_word(low: str) -> str | None:
    if low == "m":
        return "minor"
    if low.startswith("exp"):
        return "exp"
    return _MODE_WORDS.get(low[:3]) if len(low) >= 3 else None


_OPTIONS = ("clef", "middle", "transpose", "stafflines", "staffscale", "cue", "t", "m")


def is_clef_only(value: str) -> bool:
    """True for a K: field that only sets the clef or staff options (`K:bass`,
    `[K:clef=alto]`), which leaves the key as it is."""
    words = value.split("%", 1)[0].split()
    return bool(words) and all(_CLEF_WORD.fullmatch(w) or w.split("=", 1)[0].lower() in _OPTIONS and "=" in w
                               for w in words)


@dataclass(frozen=True)
class Key:
    """A parsed K: field."""

    tonic: Tonic
    mode: str
    signature: tuple[int, ...]  # alteration of C, D, E, F, G, A, B
    octave: int = 0  # `octave=` clause: shift of the written notes

    @property
    def v2_token(self) -> str | None:
        """`K:Cdor` etc. after transposition to C, None if v2 has no such mode."""
        return V2_MODES.get(self.mode)

    def signature_text(self) -> str:
        """The signature as ABC accidentals, in circle-of-fifths order."""
        order = "FCGDAEB" if sum(self.signature) >= 0 else "BEADGCF"
        return " ".join(ACC_TEXT[self.signature[LETTERS.index(c)]] + c.lower()
                        for c in order if self.signature[LETTERS.index(c)])


def parse_key_field(value: str) -> Key:
    """Parse the value of a K: field (ABC 2.1), raising KeyError_ with a reason.

    Accepts `G`, `Gm`, `F#m`, `Bb`, `Ador`, `A dorian`, `Edorian`, `G Mixolydian`,
    `D exp ^f ^c`, `Dm ^c` (explicit accidentals), `Amin clef=treble`, `Gmaj octave=-1`.
    Mode names are case-insensitive and only their first three letters count (`m`
    alone is minor); the tonic may be written in lower case (`K:e minor`). `K:none`,
    `K:HP`/`K:Hp` (highland pipes) and a clef alone name no tonic and are rejected.

    >>> parse_key_field("Edorian").signature_text(), parse_key_field("F#m").signature_text()
    ('^f ^c', '^f ^c ^g')
    >>> parse_key_field("Bb").signature, parse_key_field("D =c").mode
    ((0, 0, -1, 0, 0, 0, -1), 'mixolydian')
    >>> parse_key_field("Glyd").v2_token is None
    True
    >>> parse_key_field("e dorian").tonic, parse_key_field("D exp ^f").mode
    (Tonic(letter='E', alter=0), 'mixolydian')
    """
    text = value.split("%", 1)[0].strip()
    head = text.split(maxsplit=1)[0].lower() if text else ""
    why = "v2 needs a tonic to move the tune to C"
    if not text or head == "none":
        raise KeyError_("key", f"K:{text} has no key signature and names no tonic; {why}")
    if head == "hp":
        raise KeyError_("key", f"K:{text} is highland bagpipe notation, which names no tonic; {why}")
    if head == "exp":
        raise KeyError_("key", f"K:{text} gives explicit accidentals but no tonic; {why}")
    if is_clef_only(text):
        raise KeyError_("key", f"K:{text} sets only the clef and names no tonic; {why}")
    m = _TONIC.match(text)
    if not m:
        raise KeyError_("key", f"K:{text} is not a key")
    tonic = Tonic(m.group(1).upper(), {None: 0, "#": 1, "♯": 1, "b": -1, "♭": -1}[m.group(2)])
    rest = text[m.end():]
    words = rest.split()
    mode = "major"
    explicit: dict[int, int] = {}
    exp = False
    octave = 0
    first = True
    for w in words:
        low = w.lower()
        em = _EXPLICIT.match(w)
        if em:
            explicit[LETTERS.index(em.group(2).upper())] = ACC_VALUE[em.group(1)]
        elif first and _mode_word(re.split(r"[_^=]", low, maxsplit=1)[0]) not in (None, "exp") and _ACCS.fullmatch(w[len(re.split(r"[_^=]", w, maxsplit=1)[0]):]):
            # A mode with accidentals glued on: `Dmix=c`.
            head = re.split(r"[_^=]", w, maxsplit=1)[0]
            mode = _mode_word(head.lower())  # type: ignore[assignment]
            for acc, letter in re.findall(r"(\^\^|\^|=|__|_)([A-Ga-g])", w[len(head):]):
                explicit[LETTERS.index(letter.upper())] = ACC_VALUE[acc]
        elif "=" in w:
            opt, _, val = w.partition("=")
            opt = opt.lower()
            if opt == "octave":
                try:
                    octave = int(val)
                except ValueError:
                    raise KeyError_("key", f"K:{text}: bad octave={val}") from None
            elif opt not in _OPTIONS:
                raise KeyError_("key", f"K:{text}: unknown clause {w}")
        elif first and w.isalpha() and _mode_word(low) is not None:
            if low.startswith("exp"):
                exp = True
            else:
                mode = _mode_word(low)  # type: ignore[assignment]
        elif _CLEF_WORD.fullmatch(w):
            pass
        elif low == "exp":
            exp = True
        else:
            raise KeyError_("key", f"K:{text}: cannot read {w!r}")
        first = False
    sig = [0] * 7 if exp else list(mode_signature(tonic, mode))
    for li, alt in explicit.items():
        sig[li] = alt
    sig_t = tuple(sig)
    if exp or explicit:
        found = detect_mode(tonic, sig_t)
        if found is None:
            names = " ".join(ACC_TEXT[a] + LETTERS[i].lower() for i, a in sorted(explicit.items()))
            raise KeyError_("mode", f"K:{text}: the scale on {tonic} with {names or 'no accidentals'} is not a church "
                                    "mode, so none of v2's keys (major, minor, dorian, mixolydian on C) can hold it")
        mode = found
    return Key(tonic, mode, sig_t, octave)


@dataclass(frozen=True)
class Move:
    """A diatonic transposition: `steps` letters and `semitones` semitones."""

    steps: int
    semitones: int

    def __str__(self) -> str:
        return f"{self.semitones:+d}"


def moves(src: Tonic, dst: Tonic) -> list[Move]:
    """The transpositions taking tonic `src` to `dst`, smallest first (ties: down first).

    Four candidates: the nearest below and above and one octave further each way.
    """
    dl = LETTERS.index(dst.letter) - LETTERS.index(src.letter)
    ds = (NATURAL[dst.letter] + dst.alter) - (NATURAL[src.letter] + src.alter)
    # Put the move in the same octave as the letter move.
    base = Move(dl, ds)
    cands = {Move(base.steps + 7 * k, base.semitones + 12 * k) for k in (-2, -1, 0, 1, 2)}
    ordered = sorted(cands, key=lambda m: (abs(m.semitones), m.semitones))
    return ordered[:3]


class Note(NamedTuple):
    """A written note before spelling: diatonic step (C4 = 28), sounding MIDI pitch,
    and whether the source wrote an accidental on it. (A NamedTuple: the reader makes
    one per note, and it is cheaper than a dataclass.)"""

    step: int
    midi: int
    explicit: bool


_NATURAL_OF_STEP = [12 * (s // 7 + 1) + NATURAL[LETTERS[s % 7]] for s in range(7 * 12)]
_NAME_OF_STEP: list[str] = []
for _s in range(7 * 12):
    _oct, _li = divmod(_s, 7)
    if _oct >= 5:
        _NAME_OF_STEP.append(LETTERS[_li].lower() + "'" * (_oct - 5))
    else:
        _NAME_OF_STEP.append(LETTERS[_li] + "," * (4 - _oct))
del _s, _oct, _li

BAR_TOKENS = frozenset(("|", "|:", ":|", "|1", "|2"))


def natural_midi(step: int) -> int:
    return _NATURAL_OF_STEP[step]


def step_name(step: int) -> str:
    """ABC name of the natural note at diatonic `step` (28 = C, 35 = c)."""
    return _NAME_OF_STEP[step]


def spell(items: Iterable[str | Note], move: Move, signature: tuple[int, ...]) -> Iterator[str]:
    """Spell notes moved by `move` under `signature` (ABC convention), other items as is.

    A note the source wrote with an accidental keeps one; a note without gets one
    only when the target key signature or an earlier accidental in the bar would
    otherwise make it sound wrong. Bar tokens (v2 spelling) reset the bar state.
    Raises ValueError for a note that would need a triple accidental or falls out of
    the 12 octaves the tables cover.

    >>> list(spell([Note(28, 60, False), Note(29, 61, False), "|", Note(29, 61, True)], Move(0, 0), (0, 0, 0, 0, 0, 0, 0)))
    ['C', '_D', '|', '_D']
    """
    held: dict[int, int] = {}
    dstep, dsemi = move.steps, move.semitones
    for it in items:
        if it.__class__ is str:
            if it in BAR_TOKENS:
                held.clear()
            yield it  # type: ignore[misc]
            continue
        # Plain (step, midi, explicit) tuples are accepted too: the reader makes them.
        step = it[0] + dstep
        if not 0 <= step < 84:
            raise ValueError("pitch out of range")
        alt = it[1] + dsemi - _NATURAL_OF_STEP[step]
        if not -2 <= alt <= 2:
            raise ValueError(f"needs alteration {alt}")
        if it[2]:
            held[step] = alt
            yield ACC_TEXT[alt] + _NAME_OF_STEP[step]
        else:
            cur = held.get(step)
            if cur is None:
                cur = signature[step % 7]
            if cur == alt:
                yield _NAME_OF_STEP[step]
            else:
                held[step] = alt
                yield ACC_TEXT[alt] + _NAME_OF_STEP[step]
