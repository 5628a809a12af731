"""Named hook points on the v2 network, the one written-out LSTM step, and the activation cache.

Every activation worth looking at passes through a `HookPoint`, an identity module
with a stable name (TransformerLens style). `FolkRNN.hook_names()` lists them in
this order:

    input                                  one-hot input token (batch, vocab)
    layers.{l}.hook_{i,f,g,o}_pre          gate pre-activations (batch, hidden)
    layers.{l}.hook_{i,f,g,o}              gates after sigmoid / tanh (g)
    layers.{l}.hook_c                      cell state
    layers.{l}.hook_tanh_c                 tanh of the cell state
    layers.{l}.hook_h                      hidden state (the layer's output)
    hook_logits, hook_probs                next-token logits and softmax (batch, vocab)

Layer numbers: `l` in a hook name is 0-based, the index of `layers.{l}.weight_ih` in
a checkpoint; everything a user reads (the CLI, reports, the `layer=` arguments of
`hook_name` and `ActivationCache`) counts layers 1 to 3, layer 1 reading the input.
`hook_name("h", layer=1) == "layers.0.hook_h"`.

A hook is `fn(value, ctx) -> Tensor | None`: it sees the whole batch at one time step
and a `HookContext` (the step, and per row its tune index and absolute position);
returning a tensor replaces the value downstream. Hooks run only inside
`with model.hooks([(name or predicate, fn), ...]):`, which always removes them.

Positions count tokens as the model reads them: position t is the step that reads the
t-th token of `<s> t0 t1 ...` (`<s>` is position 0) and predicts the tune's token t
(`Tune.tokens[t]` in the sampler), so "tune 3, position 40" names the same step in
teacher forcing, sampling and scoring.

`hooked_step` is the single written-out copy of the v2 equations (docs/tokens.md): the explicit
path (`FolkRNN.run_explicit`, also the trainer's Lasagne-style gradient clipping),
`run_with_cache`, hooked sampling, beam search and scoring all run it. It calls only
the hook points that have hooks, once per step on the whole batch tensor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from folkrnn.errors import FolkRNNError

log = logging.getLogger(__name__)

GATES = ("i", "f", "g", "o")  # input, forget, candidate cell, output: the stacking order
LAYER_POINTS = ("i_pre", "f_pre", "g_pre", "o_pre", "i", "f", "g", "o", "c", "tanh_c", "h")
TOP_POINTS = ("logits", "probs")

Hook = Callable[[Tensor, "HookContext"], "Tensor | None"]
HookKey = "str | Callable[[str], bool]"


@dataclass(frozen=True)
class HookContext:
    """Where a hook is called. `tune`, `position`, `token` (the input token id): (batch,)
    int64, per row of the value; `valid`: (batch,) bool, False on padding rows of a
    teacher-forced batch (None: all valid)."""

    name: str
    step: int
    tune: Tensor
    position: Tensor
    valid: Tensor | None = None
    token: Tensor | None = None

    def rows(self, tune: int | None = None, position: int | None = None) -> Tensor:
        """(batch,) bool: the rows holding `tune` at `position` (either may be None = any)."""
        m = torch.ones_like(self.tune, dtype=torch.bool)
        if tune is not None:
            m &= self.tune == tune
        if position is not None:
            m &= self.position == position
        if self.valid is not None:
            m &= self.valid
        return m


class HookPoint(nn.Module):
    """An identity on the forward path where hooks may read or replace a value."""

    def __init__(self) -> None:
        super().__init__()
        self.name = ""
        self.fns: list[Hook] = []

    def forward(self, x: Tensor, ctx: HookContext) -> Tensor:
        return self.run(x, ctx)

    def run(self, x: Tensor, ctx: HookContext) -> Tensor:
        c = replace(ctx, name=self.name)
        for fn in self.fns:
            y = fn(x, c)
            if y is not None:
                if y.shape != x.shape:
                    raise FolkRNNError(f"hook on {self.name} returned shape {tuple(y.shape)}, expected {tuple(x.shape)}")
                x = y
        return x

    def extra_repr(self) -> str:
        return f"{self.name!r}, {len(self.fns)} hook(s)"


def hook_name(point: str, layer: int | None = None) -> str:
    """The hook point's name; `layer` counts from 1 (as users read it) for layer points.

    >>> hook_name("h", layer=1), hook_name("g_pre", layer=3), hook_name("logits"), hook_name("input")
    ('layers.0.hook_h', 'layers.2.hook_g_pre', 'hook_logits', 'input')
    """
    if point == "input" and layer is None:
        return "input"
    if point in TOP_POINTS and layer is None:
        return f"hook_{point}"
    if point in LAYER_POINTS:
        if layer is None or layer < 1:
            raise FolkRNNError(f"hook point {point!r} needs a layer, counted from 1")
        return f"layers.{layer - 1}.hook_{point}"
    raise FolkRNNError(f"unknown hook point {point!r}: use input, {', '.join(LAYER_POINTS)}, logits or probs")


def parse_hook_name(name: str) -> tuple[str, int | None]:
    """A hook name -> (point, layer counted from 1, or None).

    >>> parse_hook_name("layers.2.hook_tanh_c"), parse_hook_name("hook_probs")
    (('tanh_c', 3), ('probs', None))
    """
    if name == "input":
        return "input", None
    parts = name.split(".")
    if len(parts) == 1 and name.startswith("hook_") and name[5:] in TOP_POINTS:
        return name[5:], None
    if len(parts) == 3 and parts[0] == "layers" and parts[1].isdigit() and parts[2].startswith("hook_") and parts[2][5:] in LAYER_POINTS:
        return parts[2][5:], int(parts[1]) + 1
    raise FolkRNNError(f"not a hook name: {name!r}")


def all_hook_names(num_layers: int) -> tuple[str, ...]:
    """Every hook point, in the stable order of `FolkRNN.hook_names()`."""
    return ("input", *(f"layers.{l}.hook_{p}" for l in range(num_layers) for p in LAYER_POINTS), *(f"hook_{p}" for p in TOP_POINTS))


# -- scoped hooks -------------------------------------------------------------------------
def resolve(model: nn.Module, key) -> list[HookPoint]:
    """The hook points a key names: an exact name or a predicate on names."""
    points: dict[str, HookPoint] = model.hook_points()
    if isinstance(key, str):
        if key not in points:
            near = [n for n in points if key.split(".")[-1] in n][:3]
            raise FolkRNNError(f"no hook point named {key!r}" + (f" (did you mean {', '.join(near)}?)" if near else ""))
        return [points[key]]
    if callable(key):
        found = [p for n, p in points.items() if key(n)]
        if not found:
            raise FolkRNNError("no hook point matches the predicate")
        return found
    raise FolkRNNError(f"a hook is keyed by a name or a predicate, not {type(key).__name__}")


@contextmanager
def scoped_hooks(model: nn.Module, pairs: Iterable[tuple]) -> Iterator[nn.Module]:
    """Add `(name or predicate, fn)` hooks for the block; they are removed on the way out,
    whatever happens inside."""
    added: list[tuple[HookPoint, Hook]] = []
    try:
        for key, fn in pairs:
            if not callable(fn):
                raise FolkRNNError(f"hook for {key!r} is not callable")
            for hp in resolve(model, key):
                hp.fns.append(fn)
                added.append((hp, fn))
        yield model
    finally:
        for hp, fn in reversed(added):
            for k in range(len(hp.fns) - 1, -1, -1):  # by identity: equal-comparing callables stay apart
                if hp.fns[k] is fn:
                    del hp.fns[k]
                    break


# -- the step --------------------------------------------------------------------------------
class _ClipGrad(torch.autograd.Function):
    """Identity forward; clamps the gradient elementwise (Lasagne's `grad_clipping`)."""

    @staticmethod
    def forward(ctx, x: Tensor, bound: float) -> Tensor:  # type: ignore[override]
        ctx.bound = bound
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        return g.clamp(-ctx.bound, ctx.bound), None


def hooked_step(model: nn.Module, ids: Tensor, state: tuple[Tensor, Tensor], ctx: HookContext,
                grad_clip: float | None = None, dropout: float = 0.0, want_logits: bool = True,
                ) -> tuple[Tensor | None, tuple[Tensor, Tensor]]:
    """One time step of the network, every value through its hook point.

    ids (batch,) int64, state (h, c) each (num_layers, batch, hidden) -> logits
    (batch, vocab) (None with `want_logits=False` and no logits/probs hook), new state.
    For layer l with input x (the one-hot token, or layer l-1's h):

        a = W_ih x + W_hh h + b;   a_i, a_f, a_g, a_o = a (gate blocks)
        i, f, o = sigmoid(a_i, a_f, a_o);   g = tanh(a_g)
        c' = f * c + i * g;   h' = o * tanh(c')

    `grad_clip` clamps the gradient of `a` (Lasagne); `dropout` applies between layers
    and after the last (training only, config5)."""
    h_prev, c_prev = state
    hp_in = model.input
    if hp_in.fns:
        x = hp_in.run(F.one_hot(ids, model.config.vocab_size).to(h_prev.dtype), ctx)
        x_proj = None
    else:
        x = None
        x_proj = model.layers[0].weight_ih.T[ids]  # the one-hot product, as a gather
    hs, cs = [], []
    for l, layer in enumerate(model.layers):
        if x_proj is not None:
            pre = torch.addmm(x_proj + layer.bias, h_prev[l], layer.weight_hh.T)
            x_proj = None
        else:
            pre = torch.addmm(torch.addmm(layer.bias, x, layer.weight_ih.T), h_prev[l], layer.weight_hh.T)
        if grad_clip is not None:
            pre = _ClipGrad.apply(pre, grad_clip)
        a_i, a_f, a_g, a_o = pre.chunk(4, dim=-1)
        a_i = _through(layer.hook_i_pre, a_i, ctx)
        a_f = _through(layer.hook_f_pre, a_f, ctx)
        a_g = _through(layer.hook_g_pre, a_g, ctx)
        a_o = _through(layer.hook_o_pre, a_o, ctx)
        i, f, g, o = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.tanh(a_g), torch.sigmoid(a_o)
        i = _through(layer.hook_i, i, ctx)
        f = _through(layer.hook_f, f, ctx)
        g = _through(layer.hook_g, g, ctx)
        o = _through(layer.hook_o, o, ctx)
        c = torch.addcmul(f * c_prev[l], i, g)
        c = _through(layer.hook_c, c, ctx)
        tc = torch.tanh(c)
        tc = _through(layer.hook_tanh_c, tc, ctx)
        h = o * tc
        h = _through(layer.hook_h, h, ctx)
        hs.append(h)
        cs.append(c)
        x = F.dropout(h, dropout, True) if dropout > 0 else h
    new_state = (torch.stack(hs), torch.stack(cs))
    hp_logits, hp_probs = model.hook_logits, model.hook_probs
    if not (want_logits or hp_logits.fns or hp_probs.fns):
        return None, new_state
    logits = model.out(x)
    logits = _through(hp_logits, logits, ctx)
    if hp_probs.fns:
        z = logits.float()
        probs = torch.softmax(z, -1)
        new = hp_probs.run(probs, ctx)
        if new is not probs:  # a replaced distribution goes on as logits: log p + logsumexp(z) is z when p is unchanged
            logits = (torch.log(new) + torch.logsumexp(z, -1, keepdim=True)).to(logits.dtype)
    return logits, new_state


def _through(hp: HookPoint, x: Tensor, ctx: HookContext) -> Tensor:
    """x through a hook point; a bare attribute test when it has no hooks (most points, most of the time)."""
    return hp.run(x, ctx) if hp.fns else x


def any_hooks(model: nn.Module) -> bool:
    return any(hp.fns for hp in model.hook_points().values())


def run_hooked(model: nn.Module, ids: Tensor, state: tuple[Tensor, Tensor] | None = None, tunes: Tensor | None = None,
               lengths: Tensor | None = None, grad_clip: float | None = None, want_logits: bool = True,
               ) -> tuple[Tensor | None, tuple[Tensor, Tensor]]:
    """Teacher forcing through `hooked_step`: ids (batch, time) -> logits (batch, time, vocab), final state.

    `tunes` (batch,): the tune index each row reports to hooks (default 0..batch-1);
    `lengths` (batch,): rows beyond a tune's length are padding, seen by hooks with
    `ctx.valid` False (their state keeps running but nobody should read it)."""
    if ids.dim() != 2:
        raise FolkRNNError(f"ids must be (batch, time), got shape {tuple(ids.shape)}")
    B, T = ids.shape
    dev = ids.device
    if state is None:
        state = model.initial_state(B)
    if tunes is None:
        tunes = torch.arange(B, device=dev)
    drop = model.config.dropout if model.training else 0.0
    out: list[Tensor] = []
    for t in range(T):
        pos = torch.full((B,), t, dtype=torch.long, device=dev)
        ctx = HookContext("", t, tunes, pos, None if lengths is None else t < lengths, ids[:, t])
        logits, state = hooked_step(model, ids[:, t], state, ctx, grad_clip, drop, want_logits)
        if logits is not None and want_logits:
            out.append(logits)
    if not want_logits:
        return None, state
    if not out:
        return model.out.weight.new_zeros(B, 0, model.config.vocab_size), state
    return torch.stack(out, 1), state


# -- the cache -------------------------------------------------------------------------------
class ActivationCache:
    """Activations of a teacher-forced run, one row per token read (padding never stored).

    `values[name]`: (N, width) in the requested dtype, N = the total tokens of all tunes;
    rows are ordered by tune, then position. `tune`, `position`, `token` (N,) int64 say
    for each row which tune, which position (`<s>` = 0) and which input token it holds;
    `offsets` (tunes + 1,): tune k's rows are `offsets[k]:offsets[k + 1]`.

    Slicing: `cache["layers.2.hook_h"]`, `cache.get("h", layer=3, unit=12)`,
    `cache.gates(layer=1)` -> (N, 4, hidden), `cache.tune_rows(3)`, `cache.where(position=40)`,
    `cache.select(mask)` -> a smaller cache. Layers count from 1 here.

    A compact cache (`run_with_cache(..., compact=True)`) stores fewer numbers and
    recomputes some points on each access (`derived`; see `run_with_cache`)."""

    def __init__(self, values: dict[str, Tensor], tune: Tensor, position: Tensor, token: Tensor, offsets: Tensor,
                 derived: dict[str, Callable[[], Tensor]] | None = None, order: Sequence[str] | None = None,
                 stored: dict[str, Tensor] | None = None):
        self.values = values
        self.derived = derived or {}
        self._order = tuple(order) if order is not None else (*values, *self.derived)
        self._stored = stored if stored is not None else values
        self.tune, self.position, self.token, self.offsets = tune, position, token, offsets

    def __repr__(self) -> str:
        return f"ActivationCache({len(self.names)} hook points, {len(self)} tokens of {len(self.offsets) - 1} tunes, {self.nbytes / 2**20:.1f} MiB)"

    def __len__(self) -> int:
        return int(self.tune.shape[0])

    def __contains__(self, name: str) -> bool:
        return name in self.values or name in self.derived

    def __getitem__(self, name: str) -> Tensor:
        if name in self.values:
            return self.values[name]
        if name in self.derived:
            return self.derived[name]()
        raise FolkRNNError(f"the cache holds no {name!r}: it was run with {', '.join(self.names) or 'no names'}")

    @property
    def names(self) -> tuple[str, ...]:
        return self._order

    @property
    def nbytes(self) -> int:
        """Bytes held: the stored values and the row labels (derived points cost nothing until read)."""
        meta = sum(t.numel() * t.element_size() for t in (self.tune, self.position, self.token, self.offsets))
        return meta + sum(v.numel() * v.element_size() for v in self._stored.values())

    def get(self, point: str, layer: int | None = None, unit: int | Sequence[int] | None = None) -> Tensor:
        """(N, width), or (N,) / (N, len(unit)) for `unit`; `layer` counts from 1."""
        v = self[hook_name(point, layer)]
        return v if unit is None else v[:, unit]

    def gates(self, layer: int, pre: bool = False) -> Tensor:
        """(N, 4, hidden): the gates i, f, g, o of a layer (pre-activations with `pre`)."""
        return torch.stack([self.get(f"{g}_pre" if pre else g, layer) for g in GATES], 1)

    def tune_rows(self, tune: int) -> slice:
        """The rows of tune `tune` (its positions 0, 1, ... in order)."""
        if not 0 <= tune < len(self.offsets) - 1:
            raise FolkRNNError(f"no tune {tune} in the cache (it holds {len(self.offsets) - 1})")
        return slice(int(self.offsets[tune]), int(self.offsets[tune + 1]))

    def where(self, tune: int | None = None, position: int | None = None, token: int | None = None) -> Tensor:
        """(N,) bool mask of the rows matching every given field."""
        m = torch.ones(len(self), dtype=torch.bool)
        for field, want in ((self.tune, tune), (self.position, position), (self.token, token)):
            if want is not None:
                m &= field == want
        return m

    def select(self, rows: Tensor | slice) -> ActivationCache:
        """A cache of the chosen rows (a mask, indices or a slice); tunes keep their indices."""
        if isinstance(rows, slice):
            rows = torch.arange(len(self))[rows]
        elif rows.dtype == torch.bool:
            rows = rows.nonzero().squeeze(1)
        tune = self.tune[rows]
        offsets = torch.zeros(len(self.offsets), dtype=torch.long)
        offsets[1:] = torch.bincount(tune, minlength=len(self.offsets) - 1).cumsum(0)
        order = torch.argsort(tune * (int(self.position.max()) + 1 if len(self) else 1) + self.position[rows], stable=True)
        rows = rows[order]
        return ActivationCache({k: self[k][rows] for k in self.names}, self.tune[rows], self.position[rows], self.token[rows], offsets)


class Recorder:
    """A hook that keeps what it sees, step by step, for sampling or beam search, where
    `run_with_cache` does not apply: `rec = Recorder(dtype=torch.float16)`, then
    `sample(..., hooks=rec.hooks(["layers.2.hook_h"]))`, then `rec.cache()`.

    Only valid rows are kept, moved to the CPU in `dtype` as they come (the step's
    tensors are not held); `cache()` orders the rows by tune, then position."""

    def __init__(self, dtype: torch.dtype = torch.float16):
        self.dtype = dtype
        self.values: dict[str, list[Tensor]] = {}
        self.rows: dict[str, list[tuple[Tensor, Tensor, Tensor]]] = {}

    def hooks(self, names: Iterable) -> list[tuple]:
        return [(n, self) for n in ([names] if isinstance(names, str) or callable(names) else names)]

    def __call__(self, value: Tensor, ctx: HookContext) -> None:
        v, tune, pos = value, ctx.tune, ctx.position
        tok = ctx.token if ctx.token is not None else torch.full_like(tune, -1)
        if ctx.valid is not None:
            v, tune, pos, tok = v[ctx.valid], tune[ctx.valid], pos[ctx.valid], tok[ctx.valid]
        self.values.setdefault(ctx.name, []).append(v.detach().to("cpu", self.dtype))
        self.rows.setdefault(ctx.name, []).append((tune.cpu(), pos.cpu(), tok.cpu()))

    def cache(self) -> ActivationCache:
        if not self.values:
            raise FolkRNNError("the recorder saw nothing: were its hooks active while the model ran?")
        first = next(iter(self.rows))
        tune, pos, tok = (torch.cat(parts) for parts in zip(*self.rows[first]))
        for name, rows in self.rows.items():  # every point sees the same rows at each step
            if not torch.equal(torch.cat([r[0] for r in rows]), tune) or not torch.equal(torch.cat([r[1] for r in rows]), pos):
                raise FolkRNNError(f"{name} was recorded on other rows than {first}: record points of one run only")
        span = int(pos.max()) + 1 if len(pos) else 1
        order = torch.argsort(tune * span + pos, stable=True)
        n_tunes = int(tune.max()) + 1 if len(tune) else 0
        offsets = torch.zeros(n_tunes + 1, dtype=torch.long)
        offsets[1:] = torch.bincount(tune, minlength=n_tunes).cumsum(0)
        values = {n: torch.cat(v)[order] for n, v in self.values.items()}
        return ActivationCache(values, tune[order], pos[order], tok[order], offsets)


def _as_sequences(ids, lengths) -> list[Tensor]:
    if isinstance(ids, Tensor):
        if ids.dim() == 1:
            ids = ids.unsqueeze(0)
        if ids.dim() != 2:
            raise FolkRNNError(f"ids must be (batch, time) or a list of sequences, got shape {tuple(ids.shape)}")
        if lengths is None:
            return list(ids.long())
        lengths = torch.as_tensor(lengths)
        if lengths.shape != (ids.shape[0],) or (lengths > ids.shape[1]).any() or (lengths < 0).any():
            raise FolkRNNError(f"lengths must be (batch,) in 0..{ids.shape[1]}")
        return [row[: int(n)].long() for row, n in zip(ids, lengths)]
    if lengths is not None:
        raise FolkRNNError("lengths go with a padded (batch, time) tensor, not with a list of sequences")
    return [torch.as_tensor(list(s), dtype=torch.long) for s in ids]


@torch.inference_mode()
def run_with_cache(model: nn.Module, ids, names: Iterable | None = None, dtype: torch.dtype = torch.float16,
                   lengths: Tensor | None = None, batch_size: int = 64, device: str | torch.device = "cpu",
                   compact: bool = False) -> ActivationCache:
    """Teacher-force tunes through the hooked step, keeping only the named activations.

    ids: a (batch, time) int64 tensor (with `lengths` (batch,) when rows are padded) or a
    list of 1-D id sequences of different lengths, each as the model reads it (starting
    with `<s>`). Padding rule: only the first `lengths[b]` steps of row b are tokens; the
    rest are never stored (tunes run `batch_size` at a time, sorted by length, and hooks
    see the padded rows with `ctx.valid` False). `names`: hook names or predicates (None:
    every hook point). Values are stored in `dtype` on `device`. Hooks added with
    `model.hooks()` apply; the cache holds the values they pass downstream.

    `compact`: for a layer with more than four points asked for, store only its four
    gate pre-activations and recompute the rest in float32 on each access (gates by
    their nonlinearity, c by its recurrence from the layer's c0, tanh c, h); `input`
    is the one-hot token; `hook_probs` the softmax of stored logits. All 36 points of
    a v2 model then take 6,281 numbers a token instead of 17,307; values differ from
    a stored copy by the rounding of `dtype` carried through the recurrence (see
    docs/hooks.md). Refused while hooks are active: they could change what is derived."""
    seqs = _as_sequences(ids, lengths)
    points = model.hook_points()
    if names is None:
        wanted = list(points)
    else:
        wanted = []
        for key in [names] if isinstance(names, str) or callable(names) else names:
            wanted += [hp.name for hp in resolve(model, key) if hp.name not in wanted]
        wanted = [n for n in points if n in wanted]  # the stable order
    requested = list(wanted)
    derive: list[str] = []
    if compact:
        if any_hooks(model):
            raise FolkRNNError("a compact cache recomputes values, which active hooks could have changed: use compact=False")
        wanted, derive = _compact_plan(requested, model.config.num_layers)
    n_tok = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    offsets = torch.zeros(len(seqs) + 1, dtype=torch.long)
    offsets[1:] = n_tok.cumsum(0)
    N = int(offsets[-1])
    V = model.config.vocab_size
    widths = {n: V if n in ("input", "hook_logits", "hook_probs") else model.config.hidden_size for n in wanted}
    store = {n: torch.empty(N, widths[n], dtype=dtype, device=device) for n in wanted}
    tune = torch.repeat_interleave(torch.arange(len(seqs)), n_tok)
    position = torch.arange(N) - offsets[:-1].repeat_interleave(n_tok)
    token = torch.cat(seqs) if seqs else torch.zeros(0, dtype=torch.long)
    if N and (token.min() < 0 or token.max() >= V):
        bad = int(tune[(token < 0) | (token >= V)][0])
        raise FolkRNNError(f"tune {bad}: token ids must be in 0..{V - 1}")
    log.debug("caching %d hook points for %d tokens of %d tunes: %.1f MiB",
              len(wanted), N, len(seqs), sum(N * w for w in widths.values()) * torch.empty(0, dtype=dtype).element_size() / 2**20)

    was_training = model.training
    model.eval()
    mdev = model.out.weight.device
    order = sorted(range(len(seqs)), key=lambda k: len(seqs[k]))
    batch_rows: dict[str, Tensor] = {}  # destination row per batch row for the current step (-1: padding)

    def keeper(value: Tensor, ctx: HookContext) -> None:
        rows = batch_rows["rows"]
        ok = batch_rows["ok"]
        dst = store[ctx.name]
        src = value if ok is None else value[ok]
        dst.index_copy_(0, rows.to(dst.device), src.to(dst.device, dtype))

    try:
        with model.hooks([(n, keeper) for n in wanted]):
            for s in range(0, len(order), batch_size):
                members = order[s : s + batch_size]
                lens = n_tok[members]
                T = int(lens.max()) if len(lens) else 0
                if T == 0:
                    continue
                x = torch.zeros(len(members), T, dtype=torch.long)
                for r, k in enumerate(members):
                    x[r, : len(seqs[k])] = seqs[k]
                x, lens_d, tunes_d = x.to(mdev), lens.to(mdev), torch.tensor(members, device=mdev)
                state = model.initial_state(len(members))
                starts = offsets[members]
                for t in range(T):
                    valid = lens > t
                    all_valid = bool(valid.all())
                    batch_rows["ok"] = None if all_valid else valid.to(mdev)
                    batch_rows["rows"] = (starts + t) if all_valid else (starts + t)[valid]
                    pos = torch.full((len(members),), t, dtype=torch.long, device=mdev)
                    ctx = HookContext("", t, tunes_d, pos, None if all_valid else lens_d > t, x[:, t])
                    _, state = hooked_step(model, x[:, t], state, ctx, want_logits=False)
    finally:
        model.train(was_training)
    if not compact:
        return ActivationCache(store, tune, position, token, offsets)
    values = {n: store[n] for n in requested if n in store}
    derived = {n: _deriver(model, n, store, token, position, dtype) for n in derive}
    return ActivationCache(values, tune, position, token, offsets, derived, requested, store)


def _compact_plan(requested: list[str], num_layers: int) -> tuple[list[str], list[str]]:
    """(names to store, names to derive) for a compact cache."""
    store: list[str] = []
    derive: list[str] = []
    for l in range(num_layers):
        mine = [n for n in requested if n.startswith(f"layers.{l}.")]
        if len(mine) > 4:
            store += [f"layers.{l}.hook_{g}_pre" for g in GATES]
            derive += [n for n in mine if not n.endswith("_pre")]
        else:
            store += mine
    if "input" in requested:
        derive.append("input")
    if "hook_logits" in requested or "hook_probs" in requested:
        store.append("hook_logits")
        if "hook_probs" in requested:
            derive.append("hook_probs")
    order = all_hook_names(num_layers)
    return [n for n in order if n in store], derive


def _deriver(model: nn.Module, name: str, store: dict[str, Tensor], token: Tensor, position: Tensor,
             dtype: torch.dtype) -> Callable[[], Tensor]:
    """A function recomputing a compact cache's point `name` from what it stored."""
    V = model.config.vocab_size
    if name == "input":
        return lambda: F.one_hot(token, V).to(dtype)
    if name == "hook_probs":
        return lambda: torch.softmax(store["hook_logits"].float(), -1).to(dtype)
    point, layer = parse_hook_name(name)
    prefix = f"layers.{layer - 1}.hook_"
    c0 = model.layers[layer - 1].c0.detach().float().to(store[prefix + "i_pre"].device)

    def gate(g: str, a: int, b: int) -> Tensor:
        pre = store[prefix + g + "_pre"][a:b].float()
        return torch.tanh(pre) if g == "g" else torch.sigmoid(pre)

    def cell(a: int, b: int) -> Tensor:
        """c for rows a:b, which start a tune: the recurrence runs across all tunes at once, one position at a time."""
        f = gate("f", a, b)
        ig = gate("i", a, b).mul_(gate("g", a, b))
        pos = position[a:b]
        by_pos = torch.argsort(pos, stable=True)
        c = torch.empty_like(f)
        start = 0
        for p, n in enumerate(torch.bincount(pos).tolist()):  # rows run by tune then position: row k-1 is the step before k
            rows = by_pos[start : start + n]
            start += n
            prev = c0.expand(n, -1) if p == 0 else c[rows - 1]
            c[rows] = torch.addcmul(ig[rows], f[rows], prev)
        return c

    def block(a: int, b: int) -> Tensor:
        if point in GATES:
            return gate(point, a, b)
        if point == "c":
            return cell(a, b)
        if point == "tanh_c":
            return torch.tanh(cell(a, b))
        return gate("o", a, b).mul_(torch.tanh(cell(a, b)))  # h

    def value() -> Tensor:
        # In blocks of whole tunes (about 16k rows): float32 temporaries stay small.
        N = len(position)
        out = torch.empty(N, model.config.hidden_size, dtype=dtype, device=store[prefix + "i_pre"].device)
        starts = (position == 0).nonzero().squeeze(1).tolist() + [N]
        a = 0
        while a < N:
            b = next((s for s in starts if s >= a + 16384), N)
            out[a:b] = block(a, b).to(dtype)
            a = b
        return out

    return value
