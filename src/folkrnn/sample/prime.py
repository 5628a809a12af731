"""Primes: `--meter 6/8 --mode dorian` shortcuts, wildcards, and their compiled masks.

A prime is a token sequence to continue (after `<s>`). Its `*` positions are sampled
(never `</s>`), `M:*` / `K:*` positions are sampled among meter / key tokens, the others
are forced: folkrnn.org's "fill in the blanks".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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

