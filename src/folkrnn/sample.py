"""Generation and scoring: batched step-wise sampling, primes with wildcards, beam search.

Sampling (SPEC §5) carries (h, c) and feeds one token per step, so a tune costs O(n).
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

import logging
import math
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from folkrnn.errors import FolkRNNError
from folkrnn.model import FolkRNN
from folkrnn.tokens import METERS, MODES, kind
from folkrnn.vocab import BOS, EOS, Vocabulary

log = logging.getLogger(__name__)

WILDCARD = "*"
METER_WILDCARD = "M:*"
KEY_WILDCARD = "K:*"
MAX_LENGTH = 1000  # the original sampler's cap
PRECISIONS = ("fp32", "bf16", "int8")

MODE_NAMES = {
    "major": "K:Cmaj", "maj": "K:Cmaj", "ionian": "K:Cmaj", "ion": "K:Cmaj",
    "minor": "K:Cmin", "min": "K:Cmin", "aeolian": "K:Cmin", "aeo": "K:Cmin", "m": "K:Cmin",
    "dorian": "K:Cdor", "dor": "K:Cdor",
    "mixolydian": "K:Cmix", "mix": "K:Cmix",
}


# -- configuration ----------------------------------------------------------------------
@dataclass(frozen=True)
class SampleConfig:
    """What to generate. `prime` holds tokens after `<s>` (wildcards allowed).

    `beam_width` > 0 switches from sampling to beam search (then `temperature`,
    `top_k`, `top_p` and `alternatives` must keep their defaults). `alternatives` = K
    records the K most probable tokens (under softmax(logits / temperature)) at every
    position. `precision` bf16 / int8 trades exactness for speed (see `Stepper`)."""

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

    def __post_init__(self) -> None:
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
                                            ("top-p", self.top_p, None), ("alternatives", self.alternatives, 0)) if v != d]
            if bad:
                raise FolkRNNError(f"beam search takes the most probable tokens: it conflicts with {', '.join(bad)}")
        if EOS in self.prime or BOS in self.prime[1:]:
            raise FolkRNNError("a prime may not contain </s> (nor <s> but at its start)")
        if len(self.prime) >= self.max_length:
            raise FolkRNNError(f"the prime has {len(self.prime)} tokens, not fewer than the length cap {self.max_length}")


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


def auto_threads(rows: int | None = None, small: int = 16) -> int | None:
    """A CPU thread count for generation: 1 for `small` rows or fewer, or when the
    machine is busy (1-minute load >= half its cores, at least 1); else None (keep
    PyTorch's default).

    A few rows are matrix-vector products, where a second thread buys nothing; when
    other processes hold the cores, PyTorch's threads wait for each other: measured
    up to 10x slower than one thread next to a training job (bench/sample.py)."""
    import os

    try:
        busy = os.getloadavg()[0] >= max(1.0, (os.cpu_count() or 1) / 2)
    except OSError:
        busy = False
    return 1 if busy or (rows is not None and rows <= small) else None


# -- the step function ------------------------------------------------------------------
class _Linear:
    """x (batch, n) float32 -> x @ w + b (batch, m) float32, with w stored in a precision.

    fp32: exact. bf16: weights and inputs rounded to bfloat16, float32 accumulation (AMX
    on recent Xeons). int8: per-output-channel int8 weights, inputs quantised per call
    (dynamic); its input scale is shared by the batch, so a tune depends slightly on
    its batch-mates."""

    def __init__(self, w: Tensor, b: Tensor | None, precision: str):
        self.precision = precision
        self.b = b
        if precision == "fp32":
            self.w = w.contiguous()
        elif precision == "bf16":
            self.w = w.to(torch.bfloat16).contiguous()
        else:
            import warnings

            with warnings.catch_warnings():  # PyTorch marks its quantised tensors deprecated
                warnings.simplefilter("ignore")
                wt = w.T.contiguous()  # (m, n)
                scale = (wt.abs().amax(1) / 127).clamp_min(1e-12).double()
                q = torch.quantize_per_channel(wt, scale, torch.zeros(wt.shape[0], dtype=torch.long), 0, torch.qint8)
                self.w = torch.ops.quantized.linear_prepack(q, b)

    def __call__(self, x: Tensor) -> Tensor:
        if self.precision == "fp32":
            return torch.addmm(self.b, x, self.w) if self.b is not None else x @ self.w
        if self.precision == "bf16":
            y = (x.to(torch.bfloat16) @ self.w).float()
            return y + self.b if self.b is not None else y
        return torch.ops.quantized.linear_dynamic(x, self.w)


class Stepper:
    """One step of the network for a batch, on weights laid out for it.

    Same arithmetic as `FolkRNN.step` (agrees to ~1e-6 in fp32), but layer 0 gathers
    its input columns instead of multiplying a one-hot vector, layers >= 1 do one
    matmul on [input, h], the gate blocks are stored as (i, f, o, g) so that one
    sigmoid and one tanh cover them, and there is no oneDNN LSTM set-up per call,
    which dominates at batch 1 (see bench/sample.py). `precision` bf16 or int8 stores
    the recurrent, layer >= 1 and softmax matrices so (see `_Linear`); the state and
    gates stay float32. Runs on the CPU.

    state: (h, c), each (num_layers, batch, hidden)."""

    def __init__(self, model: FolkRNN, precision: str = "fp32"):
        if precision not in PRECISIONS:
            raise FolkRNNError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.precision = precision
        with torch.no_grad():
            H = model.config.hidden_size
            i, f, g, o = (torch.arange(k * H, (k + 1) * H) for k in range(4))
            order = torch.cat([i, f, o, g])
            self.hidden = H
            self.layers: list[_Linear] = []
            for l, layer in enumerate(model.layers):
                w_ih, w_hh, b = (t.detach().float().cpu()[order] for t in (layer.weight_ih, layer.weight_hh, layer.bias))
                if l == 0:  # (V, 4H) rows with the bias folded in, kept in float32: a lookup, not a matmul
                    self.table = (w_ih.T + b).contiguous()
                    self.layers.append(_Linear(w_hh.T, None, precision))
                else:  # (n_in + H, 4H)
                    self.layers.append(_Linear(torch.cat([w_ih, w_hh], 1).T, b.contiguous(), precision))
            self.out = _Linear(model.out.weight.detach().float().cpu().T, model.out.bias.detach().float().cpu().clone(), precision)
            h0, c0 = model.initial_state(1)
            self.h0, self.c0 = h0.detach().float().cpu(), c0.detach().float().cpu()

    def initial_state(self, batch: int) -> tuple[Tensor, Tensor]:
        return self.h0.expand(-1, batch, -1).clone(), self.c0.expand(-1, batch, -1).clone()

    def __call__(self, ids: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """ids (batch,) int64 -> logits (batch, vocab), new state."""
        h, c = state
        H3 = 3 * self.hidden
        h_new, c_new = torch.empty_like(h), torch.empty_like(c)
        x = h[0]
        for l, lin in enumerate(self.layers):
            if l == 0:
                if self.precision == "fp32":
                    pre = torch.addmm(self.table[ids], h[0], lin.w)
                else:
                    pre = self.table[ids] + lin(h[0])
            else:
                pre = lin(torch.cat([x, h[l]], 1))
            ifo = torch.sigmoid(pre[:, :H3])
            g = torch.tanh(pre[:, H3:])
            i, f, o = ifo.chunk(3, 1)
            cl = torch.addcmul(f * c[l], i, g, out=c_new[l])
            x = torch.mul(o, torch.tanh(cl), out=h_new[l])
        return self.out(x), (h_new, c_new)


# -- counter-based randomness -------------------------------------------------------------
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_POS_MUL = np.uint64(0xD1B54A32D192ED03)


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 arrays (wrap-around arithmetic is intended)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniforms(seed: int, tune: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """A uniform in [0, 1) for each (tune, position), a pure function of (seed, tune, pos).

    >>> u = uniforms(7, np.array([0, 1, 0]), np.array([5, 5, 5]))
    >>> bool(u[0] == u[2]) and bool(u[0] != u[1]) and bool(((0 <= u) & (u < 1)).all())
    True
    """
    with np.errstate(over="ignore"):
        s = _mix64(np.array([seed], dtype=np.uint64) + _GOLDEN)
        k = _mix64(s + np.asarray(tune, dtype=np.uint64) * _GOLDEN)
        z = _mix64(k ^ (np.asarray(pos, dtype=np.uint64) * _POS_MUL))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def filter_logits(z: np.ndarray, top_k: int | None, top_p: float | None) -> np.ndarray:
    """Set to -inf what top-k / top-p (nucleus) filtering removes; z (batch, vocab) float64.

    >>> z = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    >>> np.isfinite(filter_logits(z, None, 0.8)).tolist(), np.isfinite(filter_logits(z, 1, None)).tolist()
    ([[True, True, False, False]], [[True, False, False, False]])
    """
    V = z.shape[-1]
    if top_k is not None and top_k < V:
        kth = np.partition(z, V - top_k, axis=-1)[:, V - top_k : V - top_k + 1]
        z = np.where(z < kth, -np.inf, z)
    if top_p is not None and top_p < 1:
        order = np.argsort(-z, axis=-1, kind="stable")
        zs = np.take_along_axis(z, order, -1)
        p = np.exp(zs - zs[:, :1])
        p /= p.sum(-1, keepdims=True)
        before = np.cumsum(p, -1) - p  # mass of the strictly more probable tokens
        drop = np.zeros(z.shape, dtype=bool)
        np.put_along_axis(drop, order, before >= top_p - 1e-12, -1)
        z = np.where(drop, -np.inf, z)
    return z


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (rows of -inf but one finite value are fine)."""
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def draw(z: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw from softmax(z) per row with the given uniforms in [0, 1).

    z (batch, vocab) float64 -> token ids (batch,). Tokens of probability 0 are never drawn."""
    cdf = np.cumsum(softmax(z), -1)
    target = u * cdf[:, -1]
    idx = (cdf <= target[:, None]).sum(-1)  # = searchsorted(cdf, target, side="right") per row
    return np.minimum(idx, z.shape[-1] - 1)


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


def _progress(total: int, enabled: bool, unit: str):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, file=sys.stderr, unit=unit, dynamic_ncols=True, leave=False, delay=1.0)


def _log_softmax_at(z: np.ndarray, tok: np.ndarray) -> np.ndarray:
    """log softmax(z)[row, tok[row]] in float64."""
    m = z.max(-1)
    lse = m + np.log(np.exp(z - m[:, None]).sum(-1))
    return z[np.arange(len(tok)), tok] - lse


# -- sampling ------------------------------------------------------------------------------
@torch.inference_mode()
def sample(model: FolkRNN, vocab: Vocabulary, cfg: SampleConfig, progress: bool = False) -> Iterator[Tune]:
    """Yield `cfg.num_tunes` tunes in order (index 0, 1, ...), streaming.

    With `cfg.beam_width`, the best sequences of a beam search instead.

    The network step runs in torch; the per-row bookkeeping and the draw run in numpy,
    whose small-array operations cost a fraction of torch's per-call overhead (it is
    most of the time per token at batch 1)."""
    if len(vocab) != model.config.vocab_size:
        raise FolkRNNError(f"vocabulary has {len(vocab)} tokens but the model expects {model.config.vocab_size}")
    if cfg.beam_width:
        yield from beam_search(model, vocab, cfg)
        return
    model.eval()
    prime = compile_prime(vocab, cfg.prime)
    step = Stepper(model, cfg.precision)
    n, L, V = cfg.num_tunes, cfg.max_length, len(vocab)
    P = len(prime.fixed)
    eos = vocab.eos
    K = min(cfg.alternatives, V)
    inv_t = 1.0 / cfg.temperature
    fixed_np = prime.fixed.numpy()
    # 0 where a token may be drawn, -inf where not: per prime position, and after the prime.
    mask_prime = np.where(prime.allowed.numpy(), 0.0, -np.inf)
    mask_base = np.where(base_allowed(vocab).numpy(), 0.0, -np.inf)

    # The forced opening of the prime is the same for every tune: run it once.
    lead = prime.lead
    start_state = step.initial_state(1)
    start_inp = vocab.bos
    start_lp = 0.0
    start_alts: list[list[tuple[str, float]]] = []
    for p in range(lead - 1 if lead else 0):
        logits, start_state = step(torch.tensor([start_inp]), start_state)
        z = logits.numpy().astype(np.float64)
        tok = int(fixed_np[p])
        start_lp += float(_log_softmax_at(z, np.array([tok]))[0])
        if K:
            start_alts.append(_top_alternatives(vocab, z * inv_t, K)[0])
        start_inp = tok
    start_pos = max(lead - 1, 0)  # position of the token chosen after feeding start_inp
    prefix = fixed_np[:start_pos]

    B = min(cfg.batch_size, n)
    log.debug("sampling %d tunes, %d at a time, %s, prime of %d tokens", n, B, cfg.precision, P)
    h, c = (t.expand(-1, B, -1).contiguous() for t in start_state)
    inp = np.full(B, start_inp, dtype=np.int64)
    pos = np.full(B, start_pos, dtype=np.int64)
    buf = np.zeros((B, L), dtype=np.int64)
    buf[:, :start_pos] = prefix
    lp = np.full(B, start_lp)
    tune_idx = np.arange(B, dtype=np.int64)
    alts: list[list] | None = [list(start_alts) for _ in range(B)] if K else None
    next_tune = B
    pending: dict[int, Tune] = {}
    emitted = 0
    pbar = _progress(n, progress, "tune")
    try:
        while len(inp):
            logits, (h, c) = step(torch.from_numpy(inp), (h, c))
            z = logits.numpy().astype(np.float64)
            zt = z * inv_t if cfg.temperature != 1.0 else z.copy()
            fixed = None
            if P and pos.min() < P:
                in_prime = pos < P
                pc = np.minimum(pos, P - 1)
                fixed = np.where(in_prime, fixed_np[pc], -1)
                zt += np.where(in_prime[:, None], mask_prime[pc], mask_base)
            else:
                zt += mask_base
            if alts is not None:
                for r, row_alts in enumerate(_top_alternatives(vocab, zt, K)):
                    alts[r].append(row_alts)
            zt = filter_logits(zt, cfg.top_k, cfg.top_p)
            tok = draw(zt, uniforms(cfg.seed, tune_idx, pos))
            if fixed is not None:
                tok = np.where(fixed >= 0, fixed, tok)
            rows = np.arange(len(tok))
            lp += _log_softmax_at(z, tok)
            buf[rows, pos] = tok
            pos += 1
            inp = tok
            done = (tok == eos) | (pos >= L)
            if not done.any():
                continue
            done_rows = np.flatnonzero(done).tolist()
            for r in done_rows:
                ids = buf[r, : pos[r]].tolist()
                ended = ids[-1] == eos
                pending[int(tune_idx[r])] = Tune(
                    int(tune_idx[r]), vocab.decode(ids[:-1] if ended else ids), float(lp[r]), not ended,
                    alts[r] if alts is not None else None,
                )
            while emitted in pending:
                yield pending.pop(emitted)
                emitted += 1
                pbar.update(1)
            refill = done_rows[: max(0, n - next_tune)]
            if refill:
                R = torch.tensor(refill)
                h[:, R] = start_state[0]
                c[:, R] = start_state[1]
                inp[refill] = start_inp
                pos[refill] = start_pos
                buf[refill, :start_pos] = prefix
                lp[refill] = start_lp
                tune_idx[refill] = np.arange(next_tune, next_tune + len(refill))
                next_tune += len(refill)
                if alts is not None:
                    for r in refill:
                        alts[r] = list(start_alts)
            drop = done_rows[len(refill):]
            if drop:
                keep = np.ones(len(inp), dtype=bool)
                keep[drop] = False
                kt = torch.from_numpy(keep)
                h, c = h[:, kt].contiguous(), c[:, kt].contiguous()
                inp, pos, buf, lp, tune_idx = inp[keep], pos[keep], buf[keep], lp[keep], tune_idx[keep]
                if alts is not None:
                    alts = [a for a, k in zip(alts, keep.tolist()) if k]
        assert not pending and emitted == n, (emitted, n, sorted(pending)[:5])
    finally:
        pbar.close()


def _top_alternatives(vocab: Vocabulary, z: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
    """The k most probable tokens of softmax(z) per row, with their probabilities."""
    p = softmax(z)
    idx = np.argsort(-p, axis=-1, kind="stable")[:, :k]
    vals = np.take_along_axis(p, idx, -1)
    return [[(vocab.tokens[i], round(q, 6)) for i, q in zip(ri, rv)] for ri, rv in zip(idx.tolist(), vals.tolist())]


def drop_unwritable(tokens: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split a sampled tune into the tokens ABC can place and the ones it cannot.

    A model can emit a length or broken rhythm after a bar line, or a meter or key token
    mid-tune; those have no ABC spelling, so they are dropped (and reported) to write
    the rest as playable ABC. The first two tokens (meter, key) are kept as they are.

    >>> drop_unwritable("M:4/4 K:Cmaj | 2 A > B K:Cmin c".split())
    (['M:4/4', 'K:Cmaj', '|', 'A', '>', 'B', 'c'], ['2', 'K:Cmin'])
    """
    toks = [t for t in tokens if t not in (BOS, EOS)]
    kept, dropped = toks[:2], []
    prev = "start"
    for tok in toks[2:]:
        k = kind(tok)
        if k in ("unknown", "meter", "key", "bos", "eos") or (k in ("duration", "broken") and prev not in ("pitch", "rest", "chord_end")):
            dropped.append(tok)
            continue
        kept.append(tok)
        prev = k
    return kept, dropped


# -- beam search ---------------------------------------------------------------------------
@torch.inference_mode()
def beam_search(model: FolkRNN, vocab: Vocabulary, cfg: SampleConfig) -> list[Tune]:
    """The `cfg.num_tunes` most probable sequences found by a beam of `cfg.beam_width`.

    Each step extends every live sequence by every allowed token and keeps the `width`
    best by total log-probability; a sequence that draws `</s>` is set aside as
    finished. The search stops when the n-th best finished sequence beats every live
    one (log-probabilities only fall), or at the length cap (live sequences are then
    returned as truncated, if needed to make up n)."""
    model.eval()
    W, n, L = cfg.beam_width, cfg.num_tunes, cfg.max_length
    prime = compile_prime(vocab, cfg.prime)
    P = len(prime.fixed)
    base = base_allowed(vocab)
    step = Stepper(model, cfg.precision)
    eos = vocab.eos
    state = step.initial_state(1)
    inp = torch.tensor([vocab.bos])
    seqs = torch.zeros(1, 0, dtype=torch.long)
    scores = torch.zeros(1, dtype=torch.float64)
    finished: list[tuple[float, list[int], bool]] = []
    for p in range(L):
        logits, state = step(inp, state)
        logp = torch.log_softmax(logits.double(), -1)
        if p < P and prime.fixed[p] >= 0:
            mask = torch.zeros(len(vocab), dtype=torch.bool)
            mask[prime.fixed[p]] = True
        else:
            mask = prime.allowed[p] if p < P else base
        total = (scores.unsqueeze(1) + logp).masked_fill(~mask, -math.inf)
        k = min(2 * W, total.numel())
        vals, flat = torch.topk(total.flatten(), k)
        parents, toks, new_scores = [], [], []
        for v, f in zip(vals.tolist(), flat.tolist()):
            if v == -math.inf:
                break
            parent, tok = divmod(f, len(vocab))
            if tok == eos:
                finished.append((v, seqs[parent].tolist(), False))
            elif len(parents) < W:
                parents.append(parent)
                toks.append(tok)
                new_scores.append(v)
        if not parents:
            break
        pi = torch.tensor(parents)
        seqs = torch.cat([seqs[pi], torch.tensor(toks).unsqueeze(1)], 1)
        scores = torch.tensor(new_scores, dtype=torch.float64)
        state = (state[0][:, pi], state[1][:, pi])
        inp = torch.tensor(toks)
        if len(finished) >= n:
            nth = sorted((f[0] for f in finished), reverse=True)[n - 1]
            if float(scores.max()) <= nth:
                break
    else:
        finished += [(float(s), q.tolist(), True) for s, q in zip(scores, seqs)]
    best = sorted(finished, key=lambda f: (f[2], -f[0]))[:n]  # ended sequences before truncated ones
    return [Tune(i, vocab.decode(ids), score, trunc) for i, (score, ids, trunc) in enumerate(best)]


# -- scoring -------------------------------------------------------------------------------
@dataclass
class Scored:
    """Per-token log-probabilities of one tune: `tokens` end with `</s>`;
    `logprobs[t]` = log p(tokens[t] | <s>, tokens[:t])."""

    index: int
    tokens: list[str]
    logprobs: list[float]

    @property
    def total_nll(self) -> float:
        return -sum(self.logprobs)

    @property
    def mean_nll(self) -> float:
        return self.total_nll / len(self.logprobs)


@torch.inference_mode()
def score_tunes(model: FolkRNN, vocab: Vocabulary, tunes: Iterable[Sequence[str]], batch_size: int = 32,
                chunk: int = 2048, progress: bool = False, where: str = "") -> Iterator[Scored]:
    """Score each tune (tokens without `<s>`/`</s>`), in input order.

    Tunes are read `chunk` at a time, sorted by length within the chunk and run in
    batches of similar length through the fused path."""
    if batch_size < 1:
        raise FolkRNNError(f"batch size must be >= 1, got {batch_size}")
    model.eval()
    prefix = f"{where}: " if where else ""
    pbar = _progress(0, progress, "tune")
    it = iter(enumerate(tunes))
    try:
        while True:
            group: list[tuple[int, list[int]]] = []
            for i, tune in it:
                toks = [t for t in tune if t not in (BOS, EOS)]
                group.append((i, vocab.encode(toks, where=f"{prefix}tune {i + 1}")))
                if len(group) >= chunk:
                    break
            if not group:
                return
            out: dict[int, Scored] = {}
            order = sorted(range(len(group)), key=lambda j: len(group[j][1]))
            for s in range(0, len(order), batch_size):
                members = [group[j] for j in order[s : s + batch_size]]
                T = max(len(ids) for _, ids in members) + 1
                x = torch.full((len(members), T), vocab.bos, dtype=torch.long)
                y = torch.full((len(members), T), vocab.eos, dtype=torch.long)  # padding beyond </s> is cut below
                for r, (_, ids) in enumerate(members):
                    x[r, 1 : len(ids) + 1] = torch.tensor(ids)
                    y[r, : len(ids)] = torch.tensor(ids)
                logits, _ = model(x.to(model.out.weight.device))
                lp = torch.log_softmax(logits.float(), -1).gather(-1, y.to(logits.device).unsqueeze(-1)).squeeze(-1).cpu()
                for r, (i, ids) in enumerate(members):
                    n_tok = len(ids) + 1
                    out[i] = Scored(i, vocab.decode(ids) + [EOS], lp[r, :n_tok].double().tolist())
                pbar.update(len(members))
            for i, _ in group:
                yield out.pop(i)
    finally:
        pbar.close()
