"""One network step for generation: the fast `Stepper`, the `HookedStepper`, and the CPU thread choice."""

from __future__ import annotations

import threading

import numpy as np
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

    fp32: exact. At batch 1 the product is a matrix-vector product done by numpy's BLAS
    (OpenBLAS) on a row-major (m, n) copy of w made on first use: a batch-1 step streams
    all 22 MB of weights, more than this machine's share of L3 holds, and PyTorch's MKL
    sgemv streamed them at ~17 GB/s on the 2-core EPYC, OpenBLAS's at ~70 GB/s with two
    threads (docs/generate.md, Speed). Bigger batches stay with PyTorch's matmul.
    bf16: weights and inputs rounded to bfloat16, float32 accumulation (AMX on recent
    Xeons). int8: per-output-channel int8 weights, inputs quantised per call (dynamic);
    its input scale is shared by the batch, so a tune depends slightly on its batch-mates."""

    def __init__(self, w: Tensor, b: Tensor | None, precision: str):
        self.precision = precision
        self.b = b
        self.m = w.shape[1]
        self._rows: np.ndarray | None = None  # fp32 (m, n) for batch 1, made when first needed
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
            y = torch.empty(x.shape[0], self.m)
            self.into(y, x)
            return y
        if self.precision == "bf16":
            y = (x.to(torch.bfloat16) @ self.w).float()
            return y + self.b if self.b is not None else y
        return torch.ops.quantized.linear_dynamic(x, self.w)

    def into(self, out: Tensor, x: Tensor, add: bool = False) -> None:
        """out = x @ w + b (or out += x @ w with `add`), written into `out` (batch, m)."""
        if self.precision != "fp32":
            y = self(x)
            out.add_(y) if add else out.copy_(y)
        elif x.shape[0] == 1:
            self.mv(out[0].numpy(), x[0].numpy(), add)
        elif add:
            out.addmm_(x, self.w)
        elif self.b is not None:
            torch.addmm(self.b, x, self.w, out=out)
        else:
            torch.mm(x, self.w, out=out)

    def mv(self, out: np.ndarray, x: np.ndarray, add: bool = False) -> None:
        """fp32, batch 1: out = w.T @ x + b (or out += w.T @ x), out (m,) and x (n,) numpy."""
        if self._rows is None:  # two threads may both make it: equal arrays, harmless
            self._rows = self.w.T.contiguous().numpy()
            self._b = None if self.b is None else self.b.numpy()
        if add:
            out += np.dot(self._rows, x)
        else:
            np.dot(self._rows, x, out=out)
            if self._b is not None:
                out += self._b


class _Gates:
    """Views of a (batch, 4H) pre-activation buffer, gate blocks (i, f, o, g), and a
    (batch, H) temporary: torch tensors or numpy arrays of the same memory."""

    def __init__(self, pre, tmp, H: int):
        self.ifo, self.g, self.tmp = pre[:, : 3 * H], pre[:, 3 * H :], tmp
        self.i, self.f, self.o = pre[:, :H], pre[:, H : 2 * H], pre[:, 2 * H : 3 * H]


class _Scratch:
    """One thread's work buffers for one batch size, with their views made once (a view
    costs a call). Per thread because the studio steps one `Stepper` from several."""

    def __init__(self, batch: int, hidden: int):
        H = hidden
        self.batch = batch
        self.pre = torch.empty(batch, 4 * H)  # gate pre-activations, blocks (i, f, o, g)
        self.xh = torch.empty(batch, 2 * H)  # [input, h] of a layer >= 1
        tmp = torch.empty(batch, H)
        self.t, self.np = _Gates(self.pre, tmp, H), _Gates(self.pre.numpy(), tmp.numpy(), H)
        self.pre1, self.xh1 = self.pre.numpy()[0], self.xh.numpy()[0]  # batch 1: vectors for `_Linear.mv`
        self.x1, self.h1 = self.xh1[:H], self.xh1[H:]


def _np_sigmoid_(a: np.ndarray) -> None:
    np.negative(a, out=a)
    np.exp(a, out=a)  # inf below -88, then 1/inf = 0: the step silences the warning
    np.add(a, 1.0, out=a)
    np.reciprocal(a, out=a)


class _NumpyOps:
    """Batch 1: at ~2,000 numbers a torch call costs ~2 us against numpy's ~1 us, and a
    torch op that enters PyTorch's OpenMP pool leaves a thread spinning on the core that
    numpy's BLAS threads need for the next matrix-vector product (measured: 30 ms a step)."""

    sigmoid_ = staticmethod(_np_sigmoid_)
    tanh, mul, add = staticmethod(np.tanh), staticmethod(np.multiply), staticmethod(np.add)


class _TorchOps:
    """Batch > 1: PyTorch's vectorised, multi-threaded element-wise kernels."""

    sigmoid_ = staticmethod(torch.Tensor.sigmoid_)
    tanh, mul, add = staticmethod(torch.tanh), staticmethod(torch.mul), staticmethod(torch.add)


def _cell(ops, g: _Gates, c, c_out, h_out) -> None:
    """The LSTM cell, written once: from the gate pre-activations in `g`, c_out = f*c + i*g,
    h_out = o*tanh(c_out), each (batch, H) float32, in place; `ops` `_NumpyOps` or `_TorchOps`."""
    ops.sigmoid_(g.ifo)
    ops.tanh(g.g, out=g.g)
    ops.mul(g.f, c, out=c_out)
    ops.mul(g.i, g.g, out=g.tmp)
    ops.add(c_out, g.tmp, out=c_out)
    ops.tanh(c_out, out=g.tmp)
    ops.mul(g.o, g.tmp, out=h_out)


class Stepper:
    """One step of the network for a batch, on weights laid out for it.

    Same arithmetic as `FolkRNN.step` (agrees to ~1e-6 in fp32), but layer 0 gathers
    its input columns instead of multiplying a one-hot vector, layers >= 1 do one
    matmul on [input, h], the gate blocks are stored as (i, f, o, g) so that one
    sigmoid and one tanh cover them, and there is no oneDNN LSTM set-up per call,
    which dominates at batch 1 (see bench/sample.py). `precision` bf16 or int8 stores
    the recurrent, layer >= 1 and softmax matrices so (see `_Linear`); the state and
    gates stay float32. Runs on the CPU. Batch 1 in fp32 runs in numpy (its BLAS for the
    matrix-vector products, `_cell` with `_NumpyOps`), bigger batches in torch: the same
    cell, equal to the fused kernel within 1e-5 (tests/test_step_fast.py).

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
                    self.table_np = self.table.numpy()
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
        B = ids.shape[0]
        s = self._scratch(B)
        h_new, c_new = torch.empty_like(state[0]), torch.empty_like(state[1])
        if B == 1 and self.precision == "fp32":  # numpy's BLAS, matrix-vector (see `_Linear`)
            h, c, hn, cn = state[0].numpy(), state[1].numpy(), h_new.numpy(), c_new.numpy()
            with np.errstate(over="ignore"):
                for l, lin in enumerate(self.layers):
                    if l == 0:
                        np.copyto(s.pre1, self.table_np[int(ids[0])])
                        lin.mv(s.pre1, h[0, 0], add=True)
                    else:
                        s.x1[:] = hn[l - 1, 0]
                        s.h1[:] = h[l, 0]
                        lin.mv(s.pre1, s.xh1)
                    _cell(_NumpyOps, s.np, c[l], cn[l], hn[l])
        else:
            h, c, hn, cn = state[0].unbind(), state[1].unbind(), h_new.unbind(), c_new.unbind()
            for l, lin in enumerate(self.layers):
                if l == 0:
                    torch.index_select(self.table, 0, ids, out=s.pre)
                    lin.into(s.pre, h[0], add=True)
                else:
                    torch.cat([hn[l - 1], h[l]], 1, out=s.xh)
                    lin.into(s.pre, s.xh)
                _cell(_TorchOps, s.t, c[l], cn[l], hn[l])
        return self.out(h_new[-1]), (h_new, c_new)


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
