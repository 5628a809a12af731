"""Model checkpoints: one safetensors file, weights plus self-describing JSON metadata.

The metadata (in the safetensors header, key `folkrnn`) carries the format version,
the model config, the vocabulary, a sha256 of the tensors (`tensors_sha256`, checked
on load: damage that leaves the header readable is caught; files written before it
existed load without the check), and whatever history/provenance the writer adds
(`training` from the trainer, `source` from the Lasagne importer).

`parameter_table` describes every weight matrix for `folkrnn info`. What `-m MODEL`
means (this format, a Lasagne pickle or the shipped default) is `folkrnn.load`, above
this module and `folkrnn.legacy`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from folkrnn.errors import FolkRNNError
from folkrnn.files import atomic_write
from folkrnn.model import GATES, FolkRNN, ModelConfig
from folkrnn.vocab import Vocabulary

FORMAT = "folkrnn-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    model: FolkRNN
    vocab: Vocabulary
    metadata: dict = field(default_factory=dict)


def save_checkpoint(path: str | Path, model: FolkRNN, vocab: Vocabulary, metadata: dict | None = None,
                    dtype: torch.dtype = torch.float32) -> None:
    """Write weights (fp32 or fp16) and metadata atomically."""
    if len(vocab) != model.config.vocab_size:
        raise FolkRNNError(f"vocabulary has {len(vocab)} tokens but the model expects {model.config.vocab_size}")
    meta = dict(metadata or {})
    meta.update(format=FORMAT, format_version=FORMAT_VERSION, config=model.config.to_dict(), vocabulary=list(vocab.tokens))
    if dtype not in (torch.float32, torch.float16):
        raise FolkRNNError(f"checkpoint weights are stored as float32 or float16, not {dtype}")
    tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    meta["tensors_sha256"] = tensors_sha256(tensors)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"folkrnn": json.dumps(meta)}))


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order.

    >>> a = {"w": torch.ones(2, 3)}
    >>> tensors_sha256(a) == tensors_sha256({"w": torch.ones(2, 3)}) != tensors_sha256({"w": torch.ones(3, 2)})
    True
    """
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{str(t.dtype).removeprefix('torch.')}|{list(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def header_metadata(path: str | Path) -> dict[str, str]:
    """The string map in a safetensors header, read without touching the tensors (so a
    file with a sound header but a truncated body still tells what it is).

    Raises OSError / ValueError / KeyError / TypeError as the file warrants; callers word the error."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if not 2 <= n <= 100_000_000:
            raise ValueError("bad header size")
        return json.loads(f.read(n)).get("__metadata__") or {}


def read_metadata(path: str | Path) -> dict:
    """The JSON metadata of a checkpoint, without loading the weights."""
    path = Path(path)
    try:
        header = header_metadata(path)
        if "folkrnn" not in header and "state" in header:
            raise FolkRNNError(f"{path}: a training state file (what `folkrnn train --resume` reads), not a model; "
                               f"use best.safetensors or last.safetensors from the same run folder")
        meta = json.loads(header["folkrnn"])
    except FileNotFoundError:
        raise FolkRNNError(f"{path}: no such checkpoint") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise FolkRNNError(f"{path}: not a folkrnn checkpoint (unreadable safetensors header or metadata)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FolkRNNError(f"{path}: not a folkrnn checkpoint (format field missing)")
    if not isinstance(meta.get("format_version", 0), int):
        raise FolkRNNError(f"{path}: not a folkrnn checkpoint (format_version is not a number)")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise FolkRNNError(f"{path}: checkpoint format version {meta['format_version']} is newer than this folkrnn reads ({FORMAT_VERSION})")
    return meta


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model from a checkpoint, validating names, shapes and vocabulary."""
    meta = read_metadata(path)
    try:
        config = ModelConfig.from_dict(meta["config"])
        vocab = Vocabulary(meta["vocabulary"])
    except KeyError as e:
        raise FolkRNNError(f"{path}: checkpoint metadata lacks {e}") from None
    except (TypeError, AttributeError, ValueError) as e:
        raise FolkRNNError(f"{path}: malformed checkpoint metadata ({_one_line(e)})") from None
    except FolkRNNError as e:  # bad config values or vocabulary: name the file
        raise FolkRNNError(f"{path}: {e}") from None
    if len(vocab) != config.vocab_size:
        raise FolkRNNError(f"{path}: vocabulary has {len(vocab)} tokens but the config says {config.vocab_size}")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise FolkRNNError(f"{path}: corrupt or truncated checkpoint ({_one_line(e)})") from None
    model = FolkRNN(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise FolkRNNError(f"{path}: tensor names do not match the model (missing {missing[:3]}, unexpected {extra[:3]})")
    for k, v in tensors.items():
        if v.shape != expected[k].shape:
            raise FolkRNNError(f"{path}: tensor {k} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}")
        if v.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise FolkRNNError(f"{path}: tensor {k} has dtype {v.dtype}, expected a float type")
        if not torch.isfinite(v).all():
            raise FolkRNNError(f"{path}: tensor {k} holds NaN or infinite values")
    recorded = meta.get("tensors_sha256")
    if recorded is not None and tensors_sha256(tensors) != recorded:
        raise FolkRNNError(f"{path}: the weights do not match the checksum in the file's header (a damaged file?)")
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    model.to(device).eval()
    return Checkpoint(model, vocab, meta)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


# -- description (`folkrnn info`) -----------------------------------------------------
@dataclass(frozen=True)
class MatrixInfo:
    """One row of the parameter table: a tensor, or one gate's slice of it."""

    name: str
    shape: tuple[int, ...]
    count: int
    norm: float  # Frobenius norm (L2 for vectors)
    trainable: bool  # False for the learned initial states, which the 5,599,881 leave out


def parameter_table(model: FolkRNN, per_gate: bool = True) -> list[MatrixInfo]:
    """Every parameter tensor, with each LSTM tensor also split into its four gates.

    Gate rows are named `layers.l.weight_ih[i]` etc. (i input, f forget, g cell, o
    output) and are not counted again in totals (their `count` is informative)."""
    rows: list[MatrixInfo] = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            initial = name.rsplit(".", 1)[-1] in ("c0", "h0")
            t = p.detach().float()
            rows.append(MatrixInfo(name, tuple(t.shape), t.numel(), float(t.norm()), not initial))
            # Only the LSTM tensors stack four gates; the output layer's bias is one per token.
            if per_gate and name.startswith("layers.") and name.rsplit(".", 1)[-1] in ("weight_ih", "weight_hh", "bias"):
                for k, chunk in enumerate(t.chunk(4, dim=0)):
                    rows.append(MatrixInfo(f"{name}[{GATES[k]}]", tuple(chunk.shape), chunk.numel(), float(chunk.norm()), not initial))
    return rows


_MOVED_TO_LOAD = ("DEFAULT_NAME", "DEFAULT_FILE", "NO_DEFAULT", "default_model_path", "resolve_model_path", "is_pickle", "load_model")


def __getattr__(name: str):
    """Old import paths (`from folkrnn.checkpoint import load_model`) keep working; the
    names live in `folkrnn.load` (imported on first use, so no import cycle)."""
    if name in _MOVED_TO_LOAD:
        import folkrnn.load

        return getattr(folkrnn.load, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
