"""One network step for generation: the fast `Stepper`, the `HookedStepper`, and the CPU thread choice."""

from __future__ import annotations

import threading

import torch
from torch import Tensor

from folkrnn.errors import FolkRNNError
from folkrnn.hooks import HookContext, hooked_step
from folkrnn.model import FolkRNN
from folkrnn.sample.config import PRECISIONS

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

    def into(self, out: Tensor, x: Tensor, add: bool = False) -> None:
        """out = x @ w + b (or out += x @ w with `add`), written into `out` (batch, m): in
        fp32 straight from the BLAS call, nothing allocated."""
        if self.precision != "fp32":
            y = self(x)
            out.add_(y) if add else out.copy_(y)
        elif add:
            out.addmm_(x, self.w)
        elif self.b is not None:
            torch.addmm(self.b, x, self.w, out=out)
        else:
            torch.mm(x, self.w, out=out)


class _Scratch:
    """One thread's work buffers for one batch size, and views on them made once: a
    view costs a torch call, and at batch 1 torch's per-call overhead, not arithmetic,
    was most of a step (docs/generate.md, Speed). Per thread because the studio steps
    one `Stepper` from several."""

    def __init__(self, batch: int, hidden: int):
        H = hidden
        self.batch = batch
        self.pre = torch.empty(batch, 4 * H)  # gate pre-activations, blocks (i, f, o, g)
        self.ifo, self.g = self.pre[:, : 3 * H], self.pre[:, 3 * H :]
        self.i, self.f, self.o = self.ifo.chunk(3, 1)
        self.xh = torch.empty(batch, 2 * H)  # [input, h] of a layer >= 1
        self.tanh_c = torch.empty(batch, H)


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
        self._local = threading.local()

    def initial_state(self, batch: int) -> tuple[Tensor, Tensor]:
        return self.h0.expand(-1, batch, -1).clone(), self.c0.expand(-1, batch, -1).clone()

    def _scratch(self, batch: int) -> _Scratch:
        s = getattr(self._local, "scratch", None)
        if s is None or s.batch != batch:
            s = self._local.scratch = _Scratch(batch, self.hidden)
        return s

    def __call__(self, ids: Tensor, state: tuple[Tensor, Tensor], tune: Tensor | None = None,
                 position: Tensor | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """ids (batch,) int64 -> logits (batch, vocab), new state. (`tune`, `position`
        are for the hooked step's interface; no hook runs here.)

        The one written-out cell of the fast path, at every batch size: the gate
        pre-activations go into a scratch buffer (layer 0: its table rows, then += h @ W),
        the gate non-linearities run in place, c and h are written straight into the new
        state. The state passed in is not changed (beam search and forms keep it)."""
        h, c = state
        s = self._scratch(ids.shape[0])
        h_new, c_new = torch.empty_like(h), torch.empty_like(c)
        x = h[0]
        for l, lin in enumerate(self.layers):
            if l == 0:
                torch.index_select(self.table, 0, ids, out=s.pre)
                lin.into(s.pre, h[0], add=True)
            else:
                torch.cat([x, h[l]], 1, out=s.xh)
                lin.into(s.pre, s.xh)
            s.ifo.sigmoid_()
            s.g.tanh_()
            cl, x = c_new[l], h_new[l]
            torch.mul(s.f, c[l], out=cl)
            cl.addcmul_(s.i, s.g)
            torch.tanh(cl, out=s.tanh_c)
            torch.mul(s.o, s.tanh_c, out=x)
        return self.out(x), (h_new, c_new)


class HookedStepper:
    """The Stepper's interface on the hooked step (`folkrnn.hooks.hooked_step`): the model's
    own weights, on its device, every hook point live. Slower than `Stepper` (no fused
    gate layout, no gathered table), but hooks see and may replace every value.

    `tune`, `position` (batch,) int64: what each row holds, handed to hooks in the
    `HookContext` (default: the row index and the number of calls so far)."""

    def __init__(self, model: FolkRNN, precision: str = "fp32"):
        if precision != "fp32":
            raise FolkRNNError(f"hooks run the model in its own precision: precision {precision} takes the fast path only")
        self.model = model
        self.device = model.out.weight.device
        self.steps = 0

    def initial_state(self, batch: int) -> tuple[Tensor, Tensor]:
        h, c = self.model.initial_state(batch)
        return h.detach().clone(), c.detach().clone()

    def __call__(self, ids: Tensor, state: tuple[Tensor, Tensor], tune: Tensor | None = None,
                 position: Tensor | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """ids (batch,) int64 -> logits (batch, vocab) float32 on the CPU, new state."""
        B = ids.shape[0]
        dev = self.device
        tune = torch.arange(B, device=dev) if tune is None else tune.to(dev, copy=True)  # a copy: callers advance theirs in place
        position = torch.full((B,), self.steps, device=dev) if position is None else position.to(dev, copy=True)
        ids = ids.to(dev, copy=True)
        ctx = HookContext("", self.steps, tune, position, None, ids)
        self.steps += 1
        logits, state = hooked_step(self.model, ids, state, ctx)
        assert logits is not None
        return logits.float().cpu(), state
