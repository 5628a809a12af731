"""The folk-rnn v2 network (docs/tokens.md): one-hot input, 3 LSTM layers x 512, softmax over 137.

One set of weights, two ways to run it:

* the fast path (`forward`, `step`): PyTorch's fused LSTM kernel, fed the single bias
  per gate as `bias_ih` and a zero `bias_hh`, so the arithmetic is exactly the v2 equations (docs/tokens.md);
* the hooked step (`run_explicit`, `run_with_cache`, hooked sampling): the equations
  written out once, in `folkrnn.hooks.hooked_step`, every value passing through a named
  hook point (`model.hook_names()`) that can be read or replaced, for analysis.

Parameters, per layer l: `layers.l.weight_ih` (4H x n_in), `layers.l.weight_hh` (4H x H),
`layers.l.bias` (4H), gates stacked in the order input, forget, cell (candidate),
output; `layers.l.c0`, `layers.l.h0` (H): the learned initial state, as the original
stores it. Then `out.weight` (V x H), `out.bias` (V). With V=137, H=512, L=3 there are
5,599,881 parameters besides the 3,072 initial-state numbers.

>>> m = FolkRNN(ModelConfig())
>>> m.num_parameters(), m.num_parameters(include_initial_states=True)
(5599881, 5602953)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from folkrnn.errors import FolkRNNError
from folkrnn.hooks import GATES, LAYER_POINTS, ActivationCache, HookPoint, run_hooked, run_with_cache, scoped_hooks

__all__ = ["GATES", "FolkRNN", "ModelConfig", "State", "sequence_nll"]

State = tuple[Tensor, Tensor]  # (h, c), each (num_layers, batch, hidden)


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the network; v2 is the default. `dropout` applies after each LSTM layer."""

    vocab_size: int = 137
    hidden_size: int = 512
    num_layers: int = 3
    dropout: float = 0.5

    def __post_init__(self) -> None:
        # The caps sit far above any folk-rnn model (v2: 137 x 512 x 3, 5.6 M parameters)
        # and far below what would exhaust memory: a config read from a file is checked
        # here before a single weight is allocated.
        import numbers

        caps = {"vocab_size": (3, 4096), "hidden_size": (1, 4096), "num_layers": (1, 16)}
        for name, (lo, hi) in caps.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise FolkRNNError(f"{name} must be a whole number, got {v!r}")
            if not lo <= v <= hi:
                raise FolkRNNError(f"{name} must be {lo}..{hi}, got {v}")
            object.__setattr__(self, name, int(v))  # a numpy integer from a pickle's shapes
        d = self.dropout
        if isinstance(d, bool) or not isinstance(d, numbers.Real) or not 0.0 <= d < 1.0:
            raise FolkRNNError(f"dropout must be a number in [0, 1), got {d!r}")
        object.__setattr__(self, "dropout", float(d))
        V, H, L = self.vocab_size, self.hidden_size, self.num_layers
        total = 4 * H * (V + H + 1) + (L - 1) * 4 * H * (2 * H + 1) + 2 * H * L + V * (H + 1)
        if total > 100_000_000:
            raise FolkRNNError(f"a model of {V} tokens x {H} units x {L} layers has {total:,} parameters; "
                               "folkrnn reads at most 100,000,000")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return config_from_dict(cls, d, "model config keys")


def config_from_dict(cls, d: dict, what: str):
    """Build a config dataclass from a dict; unknown keys are an error, not ignored."""
    if not isinstance(d, dict):
        raise FolkRNNError(f"{what.removesuffix(' keys')}: expected a JSON object, got {type(d).__name__}")
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise FolkRNNError(f"unknown {what}: {', '.join(sorted(unknown))}")
    return cls(**d)


class LSTMLayer(nn.Module):
    """Weights of one single-bias LSTM layer and its hook points (no computation here)."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        h = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * h, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * h, h))
        self.bias = nn.Parameter(torch.zeros(4 * h))
        self.c0 = nn.Parameter(torch.zeros(h))
        self.h0 = nn.Parameter(torch.zeros(h))
        for p in LAYER_POINTS:  # hook_i_pre ... hook_h, in the order of the step
            self.add_module(f"hook_{p}", HookPoint())

    def gate(self, name: str, which: str) -> Tensor:
        """One gate's slice: `which` in 'ih', 'hh', 'bias'."""
        k = GATES.index(name)
        h = self.weight_hh.shape[1]
        t = {"ih": self.weight_ih, "hh": self.weight_hh, "bias": self.bias}[which]
        return t[k * h : (k + 1) * h]


class FolkRNN(nn.Module):
    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config or ModelConfig()
        c = self.config
        self.input = HookPoint()
        self.layers = nn.ModuleList(
            LSTMLayer(c.vocab_size if l == 0 else c.hidden_size, c.hidden_size) for l in range(c.num_layers)
        )
        self.out = nn.Linear(c.hidden_size, c.vocab_size)
        self.hook_logits = HookPoint()
        self.hook_probs = HookPoint()
        self._hook_points = {name: m for name, m in self.named_modules() if isinstance(m, HookPoint)}
        for name, m in self._hook_points.items():
            m.name = name
        # The fused kernel wants two biases per gate; the second is always zero.
        self.register_buffer("_zero_bias", torch.zeros(4 * c.hidden_size), persistent=False)
        self.reset_parameters()

    # -- set-up ---------------------------------------------------------------------
    def reset_parameters(self, generator: torch.Generator | None = None, forget_bias: float = 5.0) -> None:
        """config5 initialisation: Glorot-uniform input weights and softmax, orthogonal
        recurrent weights (each gate's block separately, as Lasagne's per-gate
        matrices), zero biases but the forget gate's (5), zero initial states."""
        with torch.no_grad():
            for layer in self.layers:
                h = layer.weight_hh.shape[1]
                for k in range(4):
                    _glorot_(layer.weight_ih[k * h : (k + 1) * h], generator)
                    _orthogonal_(layer.weight_hh[k * h : (k + 1) * h], generator)
                layer.bias.zero_()
                layer.bias[h : 2 * h] = forget_bias
                layer.c0.zero_()
                layer.h0.zero_()
            _glorot_(self.out.weight, generator)
            self.out.bias.zero_()

    def num_parameters(self, include_initial_states: bool = False) -> int:
        n = 0
        for name, p in self.named_parameters():
            if not include_initial_states and name.rsplit(".", 1)[-1] in ("c0", "h0"):
                continue
            n += p.numel()
        return n

    def initial_state(self, batch_size: int) -> State:
        """The learned (h0, c0), each (num_layers, batch, hidden)."""
        h = torch.stack([l.h0 for l in self.layers]).unsqueeze(1).expand(-1, batch_size, -1).contiguous()
        c = torch.stack([l.c0 for l in self.layers]).unsqueeze(1).expand(-1, batch_size, -1).contiguous()
        return h, c

    def one_hot(self, ids: Tensor) -> Tensor:
        return F.one_hot(ids, self.config.vocab_size).to(self.out.weight.dtype)

    def _flat_weights(self) -> list[Tensor]:
        w: list[Tensor] = []
        for layer in self.layers:
            w += [layer.weight_ih, layer.weight_hh, layer.bias, self._zero_bias.to(layer.bias.dtype)]
        return w

    # -- fast path ------------------------------------------------------------------
    def hidden(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """ids: (batch, time) int64 -> top-layer h: (batch, time, hidden), final state."""
        if ids.dim() != 2:
            raise ValueError(f"ids must be (batch, time), got shape {tuple(ids.shape)}")
        if state is None:
            state = self.initial_state(ids.shape[0])
        c = self.config
        y, h, cc = torch._VF.lstm(  # the kernel behind nn.LSTM, with our own flat weights
            self.one_hot(ids), state, self._flat_weights(), True, c.num_layers,
            c.dropout if self.training else 0.0, self.training, False, True,
        )
        if self.training and c.dropout > 0:
            y = F.dropout(y, c.dropout, True)  # config5 also drops out the last layer's output
        return y, (h, cc)

    def forward(self, ids: Tensor, targets: Tensor | None = None, state: State | None = None):
        """ids: (batch, time) int64 -> (logits (batch, time, vocab), loss or None).

        `targets` (batch, time) int64, -100 where padded: loss is the NLL summed over
        each tune and averaged over the batch (config5)."""
        y, _ = self.hidden(ids, state)
        logits = self.out(y)
        if targets is None:
            return logits, None
        return logits, sequence_nll(logits, targets)

    @torch.no_grad()
    def step(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One token per tune: ids (batch,) -> logits (batch, vocab), new state."""
        y, state = self.hidden(ids.unsqueeze(1), state)
        return self.out(y[:, 0]), state

    # -- hooked step -------------------------------------------------------------------
    def hook_names(self) -> tuple[str, ...]:
        """Every hook point in a stable order: `input`, then per layer (0-based in the
        name, layer 1 first) `layers.{l}.hook_{i,f,g,o}_pre`, `hook_{i,f,g,o}`, `hook_c`,
        `hook_tanh_c`, `hook_h`, then `hook_logits`, `hook_probs` (see `folkrnn.hooks`)."""
        return tuple(self._hook_points)

    def hook_points(self) -> dict[str, HookPoint]:
        return dict(self._hook_points)

    def hooks(self, pairs: Iterable[tuple]) -> AbstractContextManager[FolkRNN]:
        """`with model.hooks([(name or predicate, fn), ...]):` hooks active in the block only.

        `fn(value, ctx)` gets the batch's value at one step and a `HookContext`
        (step, per row tune and position); a returned tensor replaces the value."""
        return scoped_hooks(self, pairs)

    def run_explicit(self, ids: Tensor, state: State | None = None, grad_clip: float | None = None,
                     tunes: Tensor | None = None, lengths: Tensor | None = None) -> tuple[Tensor, State]:
        """The v2 equations (docs/tokens.md) one step at a time (`folkrnn.hooks.hooked_step`), every
        value through its hook point: ids (batch, time) -> logits (batch, time, vocab), final state.

        `grad_clip` clamps the gradient of the gate pre-activations as Lasagne's
        `grad_clipping` did (the trainer's `--clip-mode lasagne`). `tunes`, `lengths`
        (batch,): the tune index hooks see per row, and where padding starts."""
        logits, state = run_hooked(self, ids, state, tunes=tunes, lengths=lengths, grad_clip=grad_clip)
        assert logits is not None
        return logits, state

    def run_with_cache(self, ids, names=None, dtype: torch.dtype = torch.float16, **kw) -> ActivationCache:
        """Teacher-forced run keeping the named activations: see `folkrnn.hooks.run_with_cache`."""
        return run_with_cache(self, ids, names, dtype, **kw)


def sequence_nll(logits: Tensor, targets: Tensor) -> Tensor:
    """Masked NLL summed over time, averaged over the batch.

    logits (batch, time, vocab), targets (batch, time) with -100 = ignore."""
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum")
    return nll / targets.shape[0]


def _glorot_(w: Tensor, generator: torch.Generator | None) -> None:
    fan_out, fan_in = w.shape
    a = math.sqrt(6.0 / (fan_in + fan_out))
    w.uniform_(-a, a, generator=generator)


def _orthogonal_(w: Tensor, generator: torch.Generator | None) -> None:
    rows, cols = w.shape
    flat = torch.randn(max(rows, cols), min(rows, cols), generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(flat)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # a uniform draw, not a biased one
    if rows < cols:
        q = q.T
    w.copy_(q[:rows, :cols].to(w.dtype))
