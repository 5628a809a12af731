"""What to generate (`SampleConfig`) and what comes out (`Tune`), shared by generate and beam."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from folkrnn.errors import FolkRNNError
from folkrnn.vocab import BOS, EOS

MAX_LENGTH = 1000  # the original sampler's cap
PRECISIONS = ("fp32", "bf16", "int8")
BARS_MODES = ("free", "strict")


@dataclass(frozen=True)
class SampleConfig:
    """What to generate. `prime` holds tokens after `<s>` (wildcards allowed).

    `beam_width` > 0 switches from sampling to beam search (then `temperature`,
    `top_k`, `top_p` and `alternatives` must keep their defaults). `alternatives` = K
    records the K most probable tokens (under softmax(logits / temperature)) at every
    position. `precision` bf16 / int8 trades exactness for speed (see `Stepper`).
    `bars="strict"` draws only tokens that keep every bar right (`folkrnn.sample.strict`); `form`
    (a `folkrnn.sample.form.Form`) also plans where sections end, on top of it.
    `logit_bias` (one number per vocabulary token, e.g. `TuneType.bias_vector`) is added to
    the tempered logits before top-k/p; `Tune.logprob` stays the model's own."""

    num_tunes: int = 1
    temperature: float = 1.0
    seed: int = 0
    top_k: int | None = None
    top_p: float | None = None
    prime: tuple[str, ...] = ()
    max_length: int = MAX_LENGTH
    batch_size: int = 256
    beam_width: int = 0
    alternatives: int = 0
    precision: str = "fp32"
    bars: str = "free"
    form: object | None = None  # a folkrnn.sample.form.Form: plan the sections (implies bars="strict")
    first: int = 0  # tunes first .. first + num_tunes - 1 (a shard of a bigger run; tune i is the same)
    logit_bias: tuple[float, ...] | None = None  # (V,) added to logits / temperature: a tune type's feel

    def __post_init__(self) -> None:
        if self.form is not None:
            from folkrnn.sample.form import Form

            if not isinstance(self.form, Form):
                raise FolkRNNError(f"form must be a folkrnn.sample.form.Form, got {type(self.form).__name__}")
            if self.beam_width:
                raise FolkRNNError("conflicting options: --form samples; beam search cannot follow a form")
            if self.alternatives:
                raise FolkRNNError("conflicting options: --form does not record --alternatives")
            object.__setattr__(self, "bars", "strict")  # the plan narrows --bars strict's tokens
        if self.logit_bias is not None:
            b = tuple(float(x) for x in self.logit_bias)
            if not all(math.isfinite(x) for x in b):
                raise FolkRNNError("logit_bias must be finite numbers")
            object.__setattr__(self, "logit_bias", b)
        if self.bars not in BARS_MODES:
            raise FolkRNNError(f"bars must be one of {', '.join(BARS_MODES)}, got {self.bars!r}")
        if self.precision not in PRECISIONS:
            raise FolkRNNError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not isinstance(self.num_tunes, int) or self.num_tunes <= 0:
            raise FolkRNNError(f"the number of tunes must be >= 1, got {self.num_tunes}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise FolkRNNError(f"temperature must be > 0, got {self.temperature}")
        if not 0 <= self.seed < 2**64:
            raise FolkRNNError(f"seed must be in 0 .. 2**64-1, got {self.seed}")
        if self.top_k is not None and self.top_k < 1:
            raise FolkRNNError(f"top-k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise FolkRNNError(f"top-p must be in (0, 1], got {self.top_p}")
        if not 1 <= self.max_length <= 100_000:
            raise FolkRNNError(f"the length cap must be in 1 .. 100000, got {self.max_length}")
        if not isinstance(self.first, int) or not 0 <= self.first < 2**62:
            raise FolkRNNError(f"the first tune index must be in 0 .. 2**62, got {self.first}")
        if self.batch_size < 1:
            raise FolkRNNError(f"batch size must be >= 1, got {self.batch_size}")
        if self.alternatives < 0:
            raise FolkRNNError(f"alternatives must be >= 0, got {self.alternatives}")
        if self.beam_width < 0:
            raise FolkRNNError(f"beam width must be >= 0, got {self.beam_width}")
        if self.beam_width:
            if self.num_tunes > self.beam_width:
                raise FolkRNNError(f"beam search returns at most its width: ask for -n <= {self.beam_width} or widen the beam")
            bad = [name for name, v, d in (("temperature", self.temperature, 1.0), ("top-k", self.top_k, None),
                                            ("top-p", self.top_p, None), ("alternatives", self.alternatives, 0),
                                            ("--bars strict", self.bars, "free"),
                                            ("--type's feel", self.logit_bias, None),
                                            ("a first tune index", self.first, 0)) if v != d]
            if bad:
                raise FolkRNNError(f"beam search takes the most probable tokens: it conflicts with {', '.join(bad)}")
        if EOS in self.prime or BOS in self.prime[1:]:
            raise FolkRNNError("a prime may not contain </s> (nor <s> but at its start)")
        if len(self.prime) >= self.max_length:
            raise FolkRNNError(f"the prime has {len(self.prime)} tokens, not fewer than the length cap {self.max_length}")


    def bias_array(self, vocab_size: int):
        """`logit_bias` as a (V,) float64 array checked against the vocabulary's size, or None."""
        if self.logit_bias is None:
            return None
        import numpy as np

        if len(self.logit_bias) != vocab_size:
            raise FolkRNNError(f"logit_bias has {len(self.logit_bias)} numbers for a vocabulary of {vocab_size} tokens")
        return np.asarray(self.logit_bias, dtype=np.float64)


# -- results ------------------------------------------------------------------------------
@dataclass
class Tune:
    """One generated tune. `tokens` exclude `<s>` and `</s>`; `logprob` is the natural-log
    probability under the model (temperature 1) of the tokens and of `</s>` when it
    ended; `truncated` = it hit the length cap. `alternatives[t]` = [(token, p), ...]
    at position t (`</s>` included), when asked for."""

    index: int
    tokens: list[str]
    logprob: float
    truncated: bool
    alternatives: list[list[tuple[str, float]]] | None = field(default=None, repr=False)

    @property
    def length(self) -> int:
        return len(self.tokens) + (0 if self.truncated else 1)


def progress_bar(total: int, enabled: bool, unit: str):
    from folkrnn.files import progress

    return progress(total=total, enabled=enabled, unit=unit)
