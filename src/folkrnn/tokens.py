"""What a v2 token means: its class, its duration, its pitch.

Shared by the ABC writer, the evaluator and the interpretability tools, so that
there is one reading of the token language (docs/tokens.md).

Durations are `Fraction`s of an eighth note (L:1/8). Pitches are MIDI numbers with
`C` = 60 (middle C) and `c` = 72, read as ABC does: under the key signature of the
K: token, a written accidental holding for later notes of the same letter and octave
until the next bar line.

>>> kind("^f"), kind("3/2"), kind("2>"), kind("(3"), kind(":|"), kind("M:6/8")
('pitch', 'duration', 'broken', 'tuplet', 'bar', 'meter')
>>> duration("3/2"), duration("/2"), duration("12")
(Fraction(3, 2), Fraction(1, 2), Fraction(12, 1))
>>> parse_pitch("_B,")
Pitch(accidental='_', letter='B', octave=3)
>>> sounding_pitches(["K:Cmin", "B", "=B", "B", "|", "B"])
[70, 71, 71, 70]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

METERS = ("M:2/4", "M:3/4", "M:4/4", "M:6/8", "M:9/8", "M:12/8", "M:3/2")
MODES = ("K:Cmaj", "K:Cmin", "K:Cdor", "K:Cmix")
BARS = ("|", "|:", ":|", "|1", "|2")

LETTERS = "CDEFGAB"
# Semitones above C of each natural letter.
NATURAL = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
ACCIDENTAL_SHIFT = {"^^": 2, "^": 1, "=": 0, "_": -1, "__": -2}

# Key signature of each v2 mode on C: letter -> written-accidental equivalent.
KEY_SIGNATURES: dict[str, dict[str, str]] = {
    "K:Cmaj": {},
    "K:Cmix": {"B": "_"},
    "K:Cdor": {"B": "_", "E": "_"},
    "K:Cmin": {"B": "_", "E": "_", "A": "_"},
}

_PITCH = re.compile(r"^(\^\^|\^|=|__|_)?([A-Ga-g])([,']*)$")
_DURATION = re.compile(r"^(\d+)?(?:/(\d+))?$")
_BROKEN = re.compile(r"^(\d*(?:/\d+)?)(<|>)$")
_TUPLET = re.compile(r"^\((\d)$")


@dataclass(frozen=True)
class Pitch:
    """A written pitch: accidental ('' if none), letter (upper case), octave (4 = C..B)."""

    accidental: str
    letter: str
    octave: int

    @property
    def step(self) -> int:
        """Diatonic step number (C4 = 28): letters up from C0."""
        return self.octave * 7 + LETTERS.index(self.letter)

    def midi(self, accidental: str | None = None) -> int:
        acc = self.accidental if accidental is None else accidental
        return 12 * (self.octave + 1) + NATURAL[self.letter] + ACCIDENTAL_SHIFT.get(acc, 0)

    def token(self) -> str:
        if self.octave >= 5:
            name = self.letter.lower() + "'" * (self.octave - 5)
        else:
            name = self.letter + "," * (4 - self.octave)
        return self.accidental + name


@lru_cache(maxsize=4096)
def kind(token: str) -> str:
    """The class of a token: meter, key, pitch, rest, duration, broken, tuplet,
    chord_start, chord_end, bar, bos, eos or unknown."""
    if token == "<s>":
        return "bos"
    if token == "</s>":
        return "eos"
    if token.startswith("M:"):
        return "meter"
    if token.startswith("K:"):
        return "key"
    if token in BARS:
        return "bar"
    if token == "z":
        return "rest"
    if token == "[":
        return "chord_start"
    if token == "]":
        return "chord_end"
    if _PITCH.match(token):
        return "pitch"
    if _TUPLET.match(token):
        return "tuplet"
    if _BROKEN.match(token):
        return "broken"
    if token and _DURATION.match(token) and token != "/":
        return "duration"
    return "unknown"


@lru_cache(maxsize=1024)
def duration(token: str) -> Fraction:
    """Length multiplier of a duration token (also the duration part of `2>`)."""
    m = _BROKEN.match(token)
    if m:
        token = m.group(1)
        if not token:
            return Fraction(1)
    m = _DURATION.match(token)
    if not m or not token:
        raise ValueError(f"not a duration token: {token!r}")
    num = int(m.group(1)) if m.group(1) else 1
    den = int(m.group(2)) if m.group(2) else (2 if token.startswith("/") or token.endswith("/") else 1)
    return Fraction(num, den)


def length_token(value: Fraction) -> str | None:
    """The v2 duration token for a length in eighths, the inverse of `duration` (None for 1,
    which v2 leaves unwritten; the token may lie outside the vocabulary).

    >>> [length_token(Fraction(n, d)) for n, d in ((1, 1), (2, 1), (1, 2), (3, 2))]
    [None, '2', '/2', '3/2']
    """
    if value == 1:
        return None
    if value.denominator == 1:
        return str(value.numerator)
    if value.numerator == 1:
        return f"/{value.denominator}"
    return f"{value.numerator}/{value.denominator}"


def broken_direction(token: str) -> str:
    """'>' or '<' for a broken-rhythm token."""
    return token[-1]


def tuplet_size(token: str) -> int:
    return int(token[1:])


def tuplet_ratio(p: int, meter: str | None = None) -> Fraction:
    """Time factor of a `(p` tuplet: p notes in the time of q (ABC 2.1 defaults)."""
    compound = meter in ("M:6/8", "M:9/8", "M:12/8")
    q = {2: 3, 3: 2, 4: 3, 6: 2, 8: 3}.get(p, 3 if compound else 2)
    return Fraction(q, p)


def meter_length(meter: str) -> Fraction:
    """Bar length of a meter token in eighth notes: `M:6/8` -> 6, `M:3/2` -> 12."""
    num, den = meter[2:].split("/")
    return Fraction(int(num) * 8, int(den))


@lru_cache(maxsize=1024)
def parse_pitch(token: str) -> Pitch:
    m = _PITCH.match(token)
    if not m:
        raise ValueError(f"not a pitch token: {token!r}")
    acc, letter, marks = m.group(1) or "", m.group(2), m.group(3)
    octave = 5 if letter.islower() else 4
    octave += marks.count("'") - marks.count(",")
    return Pitch(acc, letter.upper(), octave)


def sounding_pitches(tokens: list[str] | tuple[str, ...], key: str | None = None) -> list[int]:
    """MIDI numbers of the pitch tokens, in order, applying key signature and bar accidentals.

    `key` defaults to the first K: token in `tokens` (else C major).
    """
    out: list[int] = []
    for _, midi in iter_sounding(tokens, key):
        out.append(midi)
    return out


def iter_sounding(tokens, key: str | None = None):
    """Yield (index, midi) for every pitch token (see `sounding_pitches`)."""
    sig = KEY_SIGNATURES.get(key or "", {})
    bar_acc: dict[tuple[str, int], str] = {}
    for i, tok in enumerate(tokens):
        k = kind(tok)
        if k == "key" and key is None:
            sig = KEY_SIGNATURES.get(tok, {})
            bar_acc.clear()
        elif k == "bar":
            bar_acc.clear()
        elif k == "pitch":
            p = parse_pitch(tok)
            if p.accidental:
                bar_acc[(p.letter, p.octave)] = p.accidental
                acc = p.accidental
            else:
                acc = bar_acc.get((p.letter, p.octave), sig.get(p.letter, ""))
            yield i, p.midi(acc)
