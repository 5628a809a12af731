"""Which reduced precision this machine and PyTorch build can actually run, found by trying.

A CPU flag list says what the instruction set offers, not whether PyTorch's kernels for
it exist in this build: on an AVX2-only CPU the fused LSTM under bf16 autocast fails
inside oneDNN ("could not create a primitive descriptor for the LSTM forward
propagation primitive"), while on a CPU with AVX-512 BF16 or AMX it runs. So the answer
comes from one forward and backward step of a tiny v2-shaped network under autocast, the
very call the trainer makes, run once per process and device and cached.

>>> bf16_problem("cpu") is None or isinstance(bf16_problem("cpu"), str)
True
"""

from __future__ import annotations

import functools
import logging

import torch

from folkrnn.errors import FolkRNNError

__all__ = ["bf16_problem", "check_bf16", "fast_bf16", "resolve_precision"]

log = logging.getLogger(__name__)


@functools.cache
def bf16_problem(device: str = "cpu") -> str | None:
    """None when a bf16-autocast training step of the network runs on `device`, else why not (one line)."""
    from folkrnn.model import FolkRNN, ModelConfig

    kind = device.split(":")[0]
    if kind == "cuda" and not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
        return "this GPU has no bf16"
    try:
        gen = torch.Generator().manual_seed(0)
        m = FolkRNN(ModelConfig(vocab_size=5, hidden_size=8, num_layers=2, dropout=0.0)).to(device)
        ids = torch.randint(0, 5, (2, 4), generator=gen).to(device)
        with torch.autocast(device_type=kind, dtype=torch.bfloat16):
            logits, _ = m(ids)
        loss = logits.float().logsumexp(-1).mean()
        loss.backward()
        ok = bool(torch.isfinite(loss)) and all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in m.parameters()
                                                 if p.requires_grad and p.grad is not None)
        if not ok:
            return "a bf16 training step gave non-finite values"
    except Exception as e:  # noqa: BLE001 - any failure means bf16 does not run here; the reason is reported
        first = (str(e).splitlines() or [type(e).__name__])[0]
        log.debug("bf16 probe failed on %s: %s", device, first)
        return f"PyTorch {torch.__version__} cannot run the fused LSTM in bf16 on this {kind.upper()} ({first})"
    return None


def fast_bf16(device: str) -> bool:
    """Whether bf16 both runs on `device` and is faster than fp32 there: a GPU with bf16, or a CPU with AMX.

    A CPU that runs bf16 only by emulation (AVX-512 BF16 without AMX is about as fast as fp32 for
    this network, AVX2 not at all) gets False: fp32 is then the better choice."""
    if bf16_problem(device) is not None:
        return False
    if device.startswith("cuda"):
        return True
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(amx and amx())


def check_bf16(device: str) -> None:
    """Raise a one-line FolkRNNError naming why bf16 cannot run on `device`, suggesting fp32."""
    why = bf16_problem(device)
    if why is not None:
        raise FolkRNNError(f"--precision bf16: {why}; use --precision fp32 (or auto, which picks fp32 here)")


def resolve_precision(precision: str, device: str) -> str:
    """`auto` -> bf16 where it runs and is fast, else fp32; bf16 only where it runs (else FolkRNNError); fp32 as given."""
    if precision == "auto":
        return "bf16" if fast_bf16(device) else "fp32"
    if precision == "bf16":
        check_bf16(device)
    return precision
