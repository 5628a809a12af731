"""Generation and scoring: batched step-wise sampling, primes with wildcards, beam search.

Modules: `config` (SampleConfig, Tune), `prime`, `randomness`, `row` (RowDraw: one tune's
token decision), `step` (Stepper, HookedStepper), `generate` (sample), `form`, `strict` (the
`--bars strict` guard), `types`, `beam`, `score`; every public name of those is importable from
`folkrnn.sample`. `output` writes sampled tunes out for people (annotated ABC, JSON).

Sampling (docs/generate.md) carries (h, c) and feeds one token per step, so a tune costs O(n).
Tunes are generated in a pool of `batch_size` rows; when a tune ends (`</s>` or the
length cap) it is handed out and its row starts the next tune, so the pool stays full
and results stream out tune by tune (30,000 tunes never sit in memory).

Randomness: the uniform number behind tune i's draw at position t is a hash of
(seed, i, t) (splitmix64), not a shared generator's next value, so tune i is the same
whatever the batch size or the number of tunes asked for: `-n 3` gives the first three
tunes of `-n 10`. The draw is an inverse-CDF lookup in float64.

A prime is a token sequence to continue (after `<s>`). Its `*` positions are sampled
(never `</s>`), `M:*` / `K:*` positions are sampled among meter / key tokens, the others
are forced: folkrnn.org's "fill in the blanks". `make_prime` turns `--meter 6/8 --mode
dorian` into `M:6/8 K:Cdor`.

`beam_search` keeps the `width` most probable sequences (sum of log-probabilities).
`score_tunes` gives every token's log-probability given the previous ones.

>>> from folkrnn.model import FolkRNN, ModelConfig
>>> from folkrnn.vocab import Vocabulary
>>> v = Vocabulary.v2()
>>> m = FolkRNN(ModelConfig(hidden_size=8, num_layers=1)).eval()
>>> tunes = list(sample(m, v, SampleConfig(num_tunes=2, seed=1, max_length=20, prime=("M:6/8", "*"))))
>>> [t.tokens[0] for t in tunes], all(len(t.tokens) <= 20 for t in tunes)
(['M:6/8', 'M:6/8'], True)
"""

from __future__ import annotations

from folkrnn.sample.beam import beam_search
from folkrnn.sample.config import MAX_LENGTH, PRECISIONS, SampleConfig, Tune
from folkrnn.sample.form import Form
from folkrnn.sample.generate import sample
from folkrnn.sample.prime import (
    KEY_WILDCARD, METER_WILDCARD, MODE_NAMES, WILDCARD, AbcPrime, Menus, abc_prime, base_allowed, compile_prime,
    make_prime, parse_meter, parse_mode,
)
from folkrnn.sample.randomness import draw, filter_logits, softmax, uniforms
from folkrnn.sample.row import RowDraw
from folkrnn.sample.score import Scored, score_tunes
from folkrnn.sample.step import HookedStepper, Stepper, auto_threads

__all__ = [
    "KEY_WILDCARD", "MAX_LENGTH", "METER_WILDCARD", "MODE_NAMES", "PRECISIONS", "WILDCARD", "Form", "HookedStepper", "RowDraw", "SampleConfig",
    "AbcPrime", "Menus", "Scored", "Stepper", "Tune", "abc_prime", "auto_threads", "base_allowed", "beam_search", "compile_prime", "draw",
    "filter_logits", "make_prime", "parse_meter", "parse_mode", "sample", "score_tunes", "softmax", "uniforms",
]
