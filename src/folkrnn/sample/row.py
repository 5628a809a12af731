"""One tune's token decision (`RowDraw`): what the sampler does with the logits of one row.

Given the model's logits for the next position of tune `index`, `RowDraw` applies, in this
order: the temperature, `cfg.logit_bias` (a tune type's feel), the prime's masks (a
wildcard position draws among what it allows; after the prime, never `<s>`), the
`--bars strict` guard (`folkrnn.sample.strict.BarGuard`; near the length cap, `WRAP_UP`, it ends
the tune as soon as the bars allow), top-k/top-p, the counter-based draw
`uniforms(seed, index, pos)`, the prime's forced tokens, and the running log-probability
(the model's own, temperature 1).

It is the decision of `folkrnn.sample.sample`, one row at a time: the studio (`TuneStream`,
`Batcher`) steps tunes row by row with it. `sample`'s own loop (`generate._sample`) keeps
a vectorised copy of these steps over the whole batch, built from the same helpers
(`prime_masks`, `tempered`, `GuardBatch`, `filter_logits`, `draw`, `uniforms`), because
calling a Python object per row would cost it most of its speed at batch 256;
`tests/test_row.py` holds the two together, token
for token, with bars free and strict and with a bias. A form (`cfg.form`) is not a row's
decision (its closings are drawn by particles): `folkrnn.sample.form.sample_form` makes it.

>>> from folkrnn.vocab import Vocabulary
>>> v = Vocabulary.v2()
>>> d = RowDraw(v, SampleConfig(seed=3, prime=("M:6/8", "K:Cmaj", "*")), 0)
>>> z = np.zeros((1, len(v)))
>>> [v.tokens[d(z)] for _ in range(2)], d.pos, d.done
(['M:6/8', 'K:Cmaj'], 2, False)
"""

from __future__ import annotations

import numpy as np

from folkrnn.errors import FolkRNNError
from folkrnn.sample.config import SampleConfig, Tune
from folkrnn.sample.prime import base_allowed, compile_prime
from folkrnn.sample.randomness import draw, filter_logits, log_softmax_at, uniforms
from folkrnn.vocab import Vocabulary

WRAP_UP = 150  # --bars strict: in a tune's last tokens before the cap, end as soon as the bars allow


def wrap_up_from(max_length: int) -> int:
    """The first position at which `--bars strict` wraps the tune up (see `WRAP_UP`)."""
    return max_length - min(WRAP_UP, max_length // 4)


def prime_masks(vocab: Vocabulary, p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A compiled prime (`compile_prime`) -> (fixed (P,) ids or -1, mask_prime (P, V),
    mask_base (V,)): its forced tokens, and additive masks, 0 where a token may be drawn
    and -inf where not."""
    return (p.fixed.numpy(), np.where(p.allowed.numpy(), 0.0, -np.inf),
            np.where(base_allowed(vocab).numpy(), 0.0, -np.inf))


def tempered(z: np.ndarray, temperature: float, bias: np.ndarray | None) -> np.ndarray:
    """z / temperature + bias, a new (B, V) float64 array (z is left alone)."""
    zt = z * (1.0 / temperature) if temperature != 1.0 else z.copy()
    if bias is not None:
        zt += bias
    return zt


class RowDraw:
    """The decision for tune `index` of `cfg`, fed the logits of each step in turn.

    Call it with z (1, V) float64 logits for position `pos` -> the token id taken, or None
    for `</s>`. `done` is True once `</s>` was drawn or the length cap reached; then
    `tune()` is the `Tune` (the same as `sample(model, vocab, cfg)`'s tune `index`).
    FolkRNNError for a bad prime, a prime that breaks `--bars strict`, or a form."""

    def __init__(self, vocab: Vocabulary, cfg: SampleConfig, index: int):
        if cfg.form is not None:
            raise FolkRNNError("a tune in a form is drawn by particles (folkrnn.sample.form), not row by row")
        if cfg.beam_width:
            raise FolkRNNError("beam search has no per-row draw")
        self.vocab, self.cfg, self.index = vocab, cfg, index
        self.fixed, self.mask_prime, self.mask_base = prime_masks(vocab, compile_prime(vocab, cfg.prime))
        self.bias = cfg.bias_array(len(vocab))
        self.guards = None
        if cfg.bars == "strict":
            from folkrnn.sample.strict import GuardBatch

            self.guards = GuardBatch(vocab, 1)
        self.wrap_from = wrap_up_from(cfg.max_length)
        self._idx = np.array([index], dtype=np.int64)
        self.pos = 0
        self.ids: list[int] = []
        self.lp = 0.0
        self.ended = False

    @property
    def done(self) -> bool:
        return self.ended or self.pos >= self.cfg.max_length

    def __call__(self, z: np.ndarray) -> int | None:
        cfg, pos = self.cfg, self.pos
        assert not self.done, "the tune is over"
        z = np.asarray(z, dtype=np.float64).reshape(1, -1)
        zt = tempered(z, cfg.temperature, self.bias)
        in_prime = pos < len(self.fixed)
        fixed = self.fixed[pos : pos + 1] if in_prime else None
        zt += self.mask_prime[pos] if in_prime else self.mask_base
        at = np.array([pos], dtype=np.int64)
        if self.guards is not None:
            zt = self.guards.restrict(zt, fixed, self._idx, at, np.array([pos >= self.wrap_from]))
        zt = filter_logits(zt, cfg.top_k, cfg.top_p)
        tok = draw(zt, uniforms(cfg.seed, self._idx, at))
        if fixed is not None and fixed[0] >= 0:
            tok = fixed.copy()
        if self.guards is not None:
            self.guards.advance(tok)
        self.lp += float(log_softmax_at(z, tok)[0])
        self.pos += 1
        t = int(tok[0])
        if t == self.vocab.eos:
            self.ended = True
            return None
        self.ids.append(t)
        return t

    def tune(self) -> Tune:
        return Tune(self.index, self.vocab.decode(self.ids), self.lp, not self.ended)


__all__ = ["WRAP_UP", "RowDraw", "prime_masks", "tempered", "wrap_up_from"]
