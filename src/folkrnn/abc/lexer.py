"""The ABC music-line lexer: a table of token patterns compiled into one regex.

Each entry of `PATTERNS` is a token kind and its regular expression; the table is
joined into `BODY_RE` (alternatives tried in table order, so earlier entries win),
which the reader drives directly with `finditer` for speed. `lex` gives the same
scan as small `Token`s that keep their source text, for tests and debugging.

>>> [(t.kind, t.text) for t in lex('|:"Am"~A2>B {g}c3/2 (3def [CEG]2 z/ :|2')]  # doctest: +NORMALIZE_WHITESPACE
[('bar', '|:'), ('annotation', '"Am"'), ('decoration', '~'), ('note', 'A2'), ('broken', '>'),
 ('note', 'B'), ('space', ' '), ('grace', '{g}'), ('note', 'c3/2'), ('space', ' '),
 ('tuplet', '(3'), ('note', 'd'), ('note', 'e'), ('note', 'f'), ('space', ' '), ('chord_start', '['),
 ('note', 'C'), ('note', 'E'), ('note', 'G'), ('chord_end', ']2'), ('space', ' '), ('rest', 'z/'),
 ('space', ' '), ('bar', ':|2')]
>>> [t.text for t in lex("[K:G] [1 A,,3/- | [|  :: |] .|")]
['[K:G]', ' ', '[1', ' ', 'A,,3/', '-', ' ', '|', ' ', '[|', '  ', '::', ' ', '|]', ' ', '.|']
>>> [t.kind for t in lex("+E3A3+2 +trill+A +ff+")]
['plus_chord', 'space', 'decoration', 'note', 'space', 'decoration']
>>> [t.text for t in lex("[G+B][c+e]")]
['[', 'G', '+', 'B', ']', '[', 'c', '+', 'e', ']']
>>> note_parts(next(BODY_RE.finditer("^^f'//")))
('^^', 'f', "'", '//')
>>> length("3/2"), length("/"), length("//"), length(""), length("3//")
(Fraction(3, 2), Fraction(1, 2), Fraction(1, 4), Fraction(1, 1), Fraction(3, 4))
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple

_LEN = r"\d*(?:/\d*)*"

# (kind, pattern). Order matters: bars before decorations (`.|`), inline fields and
# endings before chords (`[K:`, `[1`, `[|` all start with `[`).
PATTERNS: tuple[tuple[str, str], ...] = (
    # `[|]` (invisible bar) right before a real bar only decorates it.
    ("space", r"[ \t`y$\\*]+|\[\|\](?=[ \t]*:*\|)"),
    ("comment", r"%.*"),
    ("annotation", r'"[^"]*"?'),  # chord symbols and text annotations
    ("field", r"\[[A-Za-z]:[^\]]*\]?"),  # inline field [K:G]
    # A bar: `|`, `||`, `|]`, `[|`, `.|`, with repeat colons either side, `::`, then
    # an optional ending number (`|1`, `:|2`, `| [2`, `|1,2`).
    ("bar", r"(?::*(?:\[\|\]|\[\||\|\]|\||\.\|)+:*|::+)(?:[ \t]*\[?\d[\d,\-]*)?"),
    ("ending", r"\[\d[\d,\-]*"),  # `[2` not attached to a bar
    ("note", r"(\^\^|\^|=|__|_)?([A-Ga-g])([,']*)(" + _LEN + ")"),
    ("rest", r"[zx](" + _LEN + ")"),
    ("measure_rest", r"[ZX](\d*)"),
    ("chord_start", r"\["),
    ("chord_end", r"\](" + _LEN + ")"),
    ("tuplet", r"\((\d+)(?::(\d*)(?::(\d*))?)?"),
    ("slur", r"[()]"),
    ("tie", r"-"),
    ("broken", r"[<>]+"),
    ("grace", r"\{[^}]*\}?"),
    # ABC 1.6 chords `+CEG+` (two or more notes; `+ff+` is the dynamic).
    ("plus_chord", r"\+(?![fF]+\+)((?:(?:\^\^|\^|=|__|_)?[A-Ga-g][,']*" + _LEN + r"){2,})\+(" + _LEN + ")"),
    # `+trill+` (ABC 2.0) never spans a chord bracket or bar: `[G+B][c+e]` holds two chords.
    ("decoration", r"![^!\s]*!|\+[^+\s\[\]|]*\+|[~.H-Wh-w!+]"),
    ("overlay", r"&"),
    ("other", r"."),
)

BODY_RE = re.compile("|".join(f"(?P<{k}>{p})" for k, p in PATTERNS))

# Group numbers of the sub-parts, for the reader's hot loop.
G = BODY_RE.groupindex
G_ACC, G_LETTER, G_OCT, G_LEN = G["note"] + 1, G["note"] + 2, G["note"] + 3, G["note"] + 4
G_REST_LEN = G["rest"] + 1
G_MREST = G["measure_rest"] + 1
G_CHORD_LEN = G["chord_end"] + 1
G_TUP_P, G_TUP_Q, G_TUP_R = G["tuplet"] + 1, G["tuplet"] + 2, G["tuplet"] + 3
G_PLUS_NOTES, G_PLUS_LEN = G["plus_chord"] + 1, G["plus_chord"] + 2

# A bar's own parts: the bar proper and its ending number.
BAR_PARTS = re.compile(r"([^\d\[ \t]*(?:\[\|[^\d \t]*)?)[ \t]*\[?(\d[\d,\-]*)?$")


class Token(NamedTuple):
    """One lexeme of a music line: its kind (a `PATTERNS` name), text and offset."""

    kind: str
    text: str
    start: int


def lex(line: str) -> list[Token]:
    """Split one music line into tokens (every character belongs to exactly one)."""
    return [Token(m.lastgroup or "other", m.group(), m.start()) for m in BODY_RE.finditer(line)]


def note_parts(m: re.Match) -> tuple[str, str, str, str]:
    """(accidental, letter, octave marks, length) of a `note` match."""
    return (m.group(G_ACC) or "", m.group(G_LETTER), m.group(G_OCT), m.group(G_LEN))


@lru_cache(maxsize=512)
def length(text: str) -> Fraction:
    """The length multiplier written after a note: `3/2`, `/` = 1/2, `//` = 1/4, `` = 1.

    Raises ValueError for a zero length (`A0`, `A/0`).
    """
    head, *divs = text.split("/")
    value = Fraction(int(head) if head else 1)
    for d in divs:
        value /= int(d) if d else 2
    if value <= 0:
        raise ValueError(f"zero length {text!r}")
    return value


def split_bar(text: str) -> tuple[str, str | None]:
    """A bar lexeme -> (bar proper, ending number or None).

    >>> split_bar(":|2"), split_bar("| [1"), split_bar("|:"), split_bar("[|")
    ((':|', '2'), ('|', '1'), ('|:', None), ('[|', None))
    """
    i = len(text)
    while i and (text[i - 1].isdigit() or text[i - 1] in ",-"):
        i -= 1
    if i == len(text):
        return text, None
    ending = text[i:]
    bar = text[:i].rstrip(" \t")
    if bar.endswith("[") and not bar.endswith("[|"):
        bar = bar[:-1].rstrip(" \t")
    return bar, ending
