"""Primes: `--meter 6/8 --mode dorian` shortcuts, wildcards, and their compiled masks.

A prime is a token sequence to continue (after `<s>`). Its `*` positions are sampled
(never `</s>`), `M:*` / `K:*` positions are sampled among meter / key tokens, the others
are forced: folkrnn.org's "fill in the blanks".

`abc_prime` reads a tune written in ABC into a prime, for both front ends: `folkrnn
generate --prime-abc` (a file, `FILE:X` or text) and the studio's Compose form (text only,
a missing `M:`/`K:` completed from its menus, `Menus`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from folkrnn.errors import FolkRNNError
from folkrnn.tokens import METERS, MODES
from folkrnn.vocab import BOS, Vocabulary

WILDCARD = "*"
METER_WILDCARD = "M:*"
KEY_WILDCARD = "K:*"

MODE_NAMES = {
    "major": "K:Cmaj", "maj": "K:Cmaj", "ionian": "K:Cmaj", "ion": "K:Cmaj",
    "minor": "K:Cmin", "min": "K:Cmin", "aeolian": "K:Cmin", "aeo": "K:Cmin", "m": "K:Cmin",
    "dorian": "K:Cdor", "dor": "K:Cdor",
    "mixolydian": "K:Cmix", "mix": "K:Cmix",
}



def parse_meter(text: str) -> str:
    """`6/8` or `M:6/8` -> `M:6/8` (one of the v2 meters).

    >>> parse_meter("6/8"), parse_meter("M:3/2")
    ('M:6/8', 'M:3/2')
    """
    tok = text.strip()
    if not tok.startswith("M:"):
        tok = "M:" + tok
    if tok not in METERS:
        raise FolkRNNError(f"unknown meter {text!r}: v2 knows {', '.join(m[2:] for m in METERS)}")
    return tok


def parse_mode(text: str) -> str:
    """`dorian`, `dor`, `minor`, `K:Cmix`... -> the v2 key token.

    >>> parse_mode("Dorian"), parse_mode("K:Cmin"), parse_mode("aeolian")
    ('K:Cdor', 'K:Cmin', 'K:Cmin')
    """
    t = text.strip()
    if t in MODES:
        return t
    tok = MODE_NAMES.get(t.lower())
    if tok is None:
        raise FolkRNNError(f"unknown mode {text!r}: use major, minor, dorian or mixolydian")
    return tok


def make_prime(tokens: Sequence[str] = (), meter: str | None = None, mode: str | None = None) -> tuple[str, ...]:
    """The prime for the sampler: `tokens` with the meter/mode shortcuts applied.

    A prime that starts with its own M:/K: token must agree with the shortcut.

    >>> make_prime(meter="6/8", mode="dorian")
    ('M:6/8', 'K:Cdor')
    >>> make_prime(mode="mix")
    ('M:*', 'K:Cmix')
    >>> make_prime("|: G".split(), meter="2/4")
    ('M:2/4', 'K:*', '|:', 'G')
    """
    toks = list(tokens)
    if toks and toks[0] == BOS:
        toks = toks[1:]
    if meter is None and mode is None:
        return tuple(toks)
    m_tok = parse_meter(meter) if meter is not None else None
    k_tok = parse_mode(mode) if mode is not None else None
    head_m = toks[0] if toks and (toks[0].startswith("M:") or toks[0] in (WILDCARD,)) else None
    rest = toks[1:] if head_m is not None else toks
    head_k = rest[0] if rest and (rest[0].startswith("K:") or (head_m is not None and rest[0] == WILDCARD)) else None
    body = rest[1:] if head_k is not None else rest
    if m_tok and head_m not in (None, WILDCARD, METER_WILDCARD, m_tok):
        raise FolkRNNError(f"conflicting options: --meter {meter} but the prime starts with {head_m}")
    if k_tok and head_k not in (None, WILDCARD, KEY_WILDCARD, k_tok):
        raise FolkRNNError(f"conflicting options: --mode {mode} but the prime has {head_k}")
    new_m = m_tok or (head_m if head_m not in (None, WILDCARD) else METER_WILDCARD)
    new_k = k_tok or (head_k if head_k not in (None, WILDCARD) else KEY_WILDCARD)
    return (new_m, new_k, *body)


@dataclass(frozen=True)
class _Prime:
    """A prime compiled against a vocabulary: per position a forced id or -1, and the
    allowed-token mask used where it is -1."""

    fixed: Tensor  # (P,) int64
    allowed: Tensor  # (P, V) bool
    lead: int  # leading forced positions (fed once, shared by all tunes)


def compile_prime(vocab: Vocabulary, prime: Sequence[str]) -> _Prime:
    """Check the prime's tokens (all unknown ones named in one error) and build masks."""
    toks = list(prime)
    if toks and toks[0] == BOS:
        toks = toks[1:]
    specials = (WILDCARD, METER_WILDCARD, KEY_WILDCARD)
    unknown = vocab.unknown(t for t in toks if t not in specials)
    if unknown:
        raise FolkRNNError(f"unknown token(s) in the prime: {' '.join(unknown)}")
    V = len(vocab)
    base = base_allowed(vocab)
    fixed = torch.full((len(toks),), -1, dtype=torch.long)
    allowed = torch.ones(len(toks), V, dtype=torch.bool)
    for p, t in enumerate(toks):
        if t == WILDCARD:
            allowed[p] = base
            allowed[p, vocab.eos] = False
        elif t in (METER_WILDCARD, KEY_WILDCARD):
            prefix = t[:2]
            # v2 writes `M:6/8`; other folk-rnn corpora (folkwiki) write inline fields, `[M:3/4]`
            ids = [i for i, tok in enumerate(vocab.tokens) if tok.startswith(prefix) or tok.startswith("[" + prefix)]
            if not ids:
                raise FolkRNNError(f"the model's vocabulary has no {prefix} tokens for {t}")
            allowed[p] = False
            allowed[p, ids] = True
        else:
            fixed[p] = vocab[t]
    lead = 0
    while lead < len(toks) and fixed[lead] >= 0:
        lead += 1
    return _Prime(fixed, allowed, lead)


def base_allowed(vocab: Vocabulary) -> Tensor:
    """Tokens the sampler may draw anywhere: all but `<s>` (it only opens a tune)."""
    a = torch.ones(len(vocab), dtype=torch.bool)
    a[vocab.bos] = False
    return a



# -- a prime written in ABC ---------------------------------------------------------------------
_FIELD_LINE = re.compile(r"[ \t]*([A-Za-z+]):(?!\|)")  # an ABC field line (the reader's rule)
_LINE_NO = re.compile(r"\bline (\d+)")


@dataclass(frozen=True)
class Menus:
    """The header a prime without `M:` or `K:` is read in (the studio's Meter, Mode and Key
    menus): `meter`/`mode` None = the model chooses (read in 4/4 or major, the token stays
    a wildcard); `key` the tonic the music is written in."""

    meter: str | None = None
    mode: str | None = None
    key: str = "C"


@dataclass(frozen=True)
class AbcPrime:
    """A prime read from ABC: its v2 tokens (in C, as the model reads them) and the tonic
    it is written in (`D`, `Bb`: its `K:`, or the Key menu's)."""

    tokens: tuple[str, ...]
    tonic: str | None


def abc_prime(text: str, *, where: str = "prime", files: bool = False, menus: Menus | None = None) -> AbcPrime:
    """ABC -> the prime: the one tune of `text`, in v2 tokens, and its tonic.

    `files`: a one-line `text` with no `X:`/`K:` field is a file name, or `FILE:X` (the
    tune numbered X of the file), and a literal `\\n` in one-line text is a line break (a
    shell argument); otherwise `text` is only ever ABC. `menus`: complete a missing header
    (see `Menus`; errors then name the lines as typed, the added ones as "the header from
    the menus"). A text of several tunes is refused unless one is named (the message lists
    their X: numbers). FolkRNNError messages start with `where`.

    >>> abc_prime("X:1\\nM:6/8\\nK:D\\nA", files=True)
    AbcPrime(tokens=('M:6/8', 'K:Cmaj', 'G'), tonic='D')
    >>> abc_prime("|: GAB c2", menus=Menus(mode="dorian", key="G")).tokens
    ('M:*', 'K:Cdor', '|:', 'c', 'd', 'e', 'f', '2')
    >>> abc_prime("K:G", menus=Menus(meter="6/8")).tokens  # a header alone is a prime
    ('M:6/8', 'K:Cmaj')
    >>> abc_prime("H9 ??", menus=Menus())
    Traceback (most recent call last):
    folkrnn.errors.FolkRNNError: prime: rejected (malformed): line 1: unexpected character '9'
    """
    from folkrnn.abc import read_abc

    want, named = None, None
    if files:
        text, want, named = _file_or_text(text, where)
        where = f"{where} {named}" if named is not None else where
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    origin: list[int | None] = list(range(1, len(lines) + 1))
    header_only, given = False, {"M", "K"}
    if menus is not None:
        lines, origin, header_only, given = _with_header(lines, menus)
    tunes = list(read_abc("\n".join(lines), strict=False))
    tune = tunes[_pick(tunes, want, where, named)]
    if tune.tokens is None:
        def theirs(m: re.Match) -> str:
            n = int(m.group(1))
            mine = origin[n - 1] if 1 <= n <= len(origin) else None
            return f"line {mine}" if mine is not None else "the header from the menus"

        raise FolkRNNError(f"{where}: rejected ({tune.reason}): {_LINE_NO.sub(theirs, tune.detail or '')}")
    toks = list(tune.tokens[:2] if header_only else tune.tokens)
    if "M" not in given and not (menus and menus.meter):
        toks[0] = METER_WILDCARD
    if "K" not in given and not (menus and menus.mode):
        toks[1] = KEY_WILDCARD
    return AbcPrime(tuple(toks), tune.tonic)


def _file_or_text(text: str, where: str) -> tuple[str, str | None, str | None]:
    """`--prime-abc`'s argument -> (ABC text, X wanted or None, the file as named or None)."""
    one_line = "\n" not in text and "\\n" not in text
    if not one_line or re.search(r"(^|\\n|\n)[ \t]*[XK]:", text) is not None:
        return text.replace("\\n", "\n"), None, None
    # a file name (ABC text needs at least a K: field), maybe with :X
    p, want = Path(text), None
    m = re.fullmatch(r"(.+):([^:/]+)", text)
    if m and not p.exists():
        p, want = Path(m.group(1)), m.group(2).strip()
    try:
        return p.read_text("utf-8"), want, text
    except FileNotFoundError:
        raise FolkRNNError(f"{where} {p}: no such file (give a file, FILE:X, or ABC text with a K: field)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise FolkRNNError(f"{where} {p}: cannot read: {e}") from None


def _with_header(lines: list[str], menus: Menus) -> tuple[list[str], list[int | None], bool, set[str]]:
    """The prime's lines with a missing M: (and L:1/8) and K: added from the menus and X:1
    opening the tune (music after a blank line then reads as in a file); per line its
    number as typed (None: added); whether the prime is a header alone (a note is added
    to read it, and only M: and K: are kept); the fields the prime gave."""
    from folkrnn.abc import parse_key

    head = 0  # the leading field (and comment) lines: the prime's own header
    while head < len(lines) and (_FIELD_LINE.match(lines[head]) or lines[head].lstrip().startswith("%")):
        head += 1
    fields = [f.group(1) for f in map(_FIELD_LINE.match, lines[:head]) if f]
    m_tok = parse_meter(menus.meter) if menus.meter else "M:4/4"
    k_tok = parse_mode(menus.mode) if menus.mode else "K:Cmaj"
    added: list[str] = []
    if "M" not in fields:
        added += [f"M:{m_tok[2:]}"] + ([] if "L" in fields else ["L:1/8"])
    if "K" not in fields:
        added.append(f"K:{parse_key(menus.key).name}{k_tok[3:]}")
    # the added fields go before the K: (or where it would be)
    at = next((i for i, f in enumerate(map(_FIELD_LINE.match, lines[:head])) if f and f.group(1) == "K"), head)
    x = [] if "X" in fields else ["X:1"]
    wrapped = x + lines[:at] + added + lines[at:]
    origin = [None] * len(x) + [*range(1, at + 1), *[None] * len(added), *range(at + 1, len(lines) + 1)]
    header_only = not any(s.strip() and not s.lstrip().startswith("%") for s in lines[head:])
    if header_only:
        wrapped.append("C")
        origin.append(None)
    return wrapped, origin, header_only, set(fields)


def _pick(tunes: list, want: str | None, where: str, named: str | None) -> int:
    """The index of the tune to read: the one named X:`want`, or the only one (`named`:
    the file the tunes came from, as given, None for text)."""
    if not tunes:
        raise FolkRNNError(f"{where}: no tune found (an X: or K: field is needed)")
    xs = [(t.x or "").strip() for t in tunes]
    numbers = ", ".join(x for x in xs[:20] if x) + (" ..." if len(tunes) > 20 else "")
    if want is not None:
        pick = next((k for k, x in enumerate(xs) if x == want or (x.isdigit() and want.isdigit() and int(x) == int(want))),
                    None)
        if pick is None:
            raise FolkRNNError(f"{where}: no tune with X:{want} (the X: numbers are {numbers or 'missing'})")
        return pick
    if len(tunes) == 1:
        return 0
    if named is None:
        raise FolkRNNError(f"{where}: the ABC text holds {len(tunes)} tunes; give one (or a file and FILE:X)")
    if not any(xs):
        raise FolkRNNError(f"{where}: {len(tunes)} tunes and no X: fields to choose one by; give a file of one tune")
    raise FolkRNNError(f"{where}: {len(tunes)} tunes (X: {numbers}); name the one to start from as FILE:X, "
                       f"e.g. {named}:{next(x for x in xs if x)}")
