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
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from folkrnn.errors import FolkRNNError
from folkrnn.files import atomic_write
from folkrnn.model import GATES, FolkRNN, ModelConfig
from folkrnn.vocab import Vocabulary

FORMAT = "folkrnn-checkpoint"
FORMAT_VERSION = 1
# A v2 checkpoint's header is a few kB; the caps keep a hostile one from costing memory
# or blowing the stack (deeply nested JSON) before it is found wanting.
MAX_HEADER_BYTES = 100_000_000
MAX_JSON_DEPTH = 64


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


class JSONTooDeep(ValueError):
    pass


def parse_json(text: str | bytes, what: str = "JSON") -> Any:
    """`json.loads`, nesting capped at MAX_JSON_DEPTH: JSONTooDeep (a ValueError), never RecursionError."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise JSONTooDeep(f"{what} is nested too deeply") from None
    stack = [(value, 1)]
    while stack:  # a loop, not recursion: the point is not to trust the depth
        v, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise JSONTooDeep(f"{what} is nested more than {MAX_JSON_DEPTH} deep")
        if isinstance(v, dict):
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)
    return value


def read_header(path: str | Path) -> dict:
    """A safetensors file's whole JSON header (tensor entries and `__metadata__`), read
    without touching the tensors (so a file with a sound header but a truncated body
    still tells what it is).

    Raises OSError / ValueError / KeyError / TypeError as the file warrants; callers word the error."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if not 2 <= n <= MAX_HEADER_BYTES:
            raise ValueError("bad header size")
        raw = f.read(n)
    if len(raw) != n:
        raise ValueError("truncated header")
    header = parse_json(raw, "header")
    if not isinstance(header, dict):
        raise TypeError("header is not a JSON object")
    return header


def header_metadata(path: str | Path) -> dict[str, str]:
    """The string map in a safetensors header (see `read_header`)."""
    meta = read_header(path).get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise TypeError("__metadata__ is not a JSON object")
    return meta


def expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a checkpoint of `config` holds, with its shape (the state dict of
    `FolkRNN(config)`, worked out without building it)."""
    V, H = config.vocab_size, config.hidden_size
    shapes: dict[str, tuple[int, ...]] = {}
    for l in range(config.num_layers):
        shapes[f"layers.{l}.weight_ih"] = (4 * H, V if l == 0 else H)
        shapes[f"layers.{l}.weight_hh"] = (4 * H, H)
        shapes[f"layers.{l}.bias"] = (4 * H,)
        shapes[f"layers.{l}.c0"] = (H,)
        shapes[f"layers.{l}.h0"] = (H,)
    shapes["out.weight"] = (V, H)
    shapes["out.bias"] = (V,)
    return shapes


def _header_shapes(header: dict) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape, as the header declares them."""
    shapes = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
            raise ValueError(f"tensor {name} has no valid shape in the header")
        shapes[name] = tuple(shape)
    return shapes


def read_metadata(path: str | Path) -> dict:
    """The JSON metadata of a checkpoint, without loading the weights."""
    return _header_and_metadata(Path(path))[1]


def _header_and_metadata(path: Path) -> tuple[dict, dict]:
    try:
        header = read_header(path)
        strings = header.get("__metadata__") or {}
        if not isinstance(strings, dict):
            raise TypeError("__metadata__ is not a JSON object")
        if "folkrnn" not in strings and "state" in strings:
            raise FolkRNNError(f"{path}: a training state file (what `folkrnn train --resume` reads), not a model; "
                               f"use best.safetensors or last.safetensors from the same run folder")
        meta = parse_json(strings["folkrnn"], "metadata")
    except FileNotFoundError:
        raise FolkRNNError(f"{path}: no such checkpoint") from None
    except JSONTooDeep as e:
        raise FolkRNNError(f"{path}: not a folkrnn checkpoint ({e})") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise FolkRNNError(f"{path}: not a folkrnn checkpoint (unreadable safetensors header or metadata)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FolkRNNError(f"{path}: not a folkrnn checkpoint (format field missing)")
    if not isinstance(meta.get("format_version", 0), int):
        raise FolkRNNError(f"{path}: not a folkrnn checkpoint (format_version is not a number)")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise FolkRNNError(f"{path}: checkpoint format version {meta['format_version']} is newer than this folkrnn reads ({FORMAT_VERSION})")
    return header, meta


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model from a checkpoint, validating names, shapes and vocabulary.

    The config (types and size caps, see ModelConfig) and the tensor shapes the header
    declares are checked before the model is built or a tensor read: a file's word for
    its size costs nothing until it is known to be consistent."""
    header, meta = _header_and_metadata(Path(path))
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
        declared = _header_shapes(header)
    except ValueError as e:
        raise FolkRNNError(f"{path}: corrupt checkpoint header ({e})") from None
    _check_names_and_shapes(path, declared, expected_shapes(config))
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise FolkRNNError(f"{path}: corrupt or truncated checkpoint ({_one_line(e)})") from None
    for k, v in tensors.items():
        if v.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise FolkRNNError(f"{path}: tensor {k} has dtype {v.dtype}, expected a float type")
        if not torch.isfinite(v).all():
            raise FolkRNNError(f"{path}: tensor {k} holds NaN or infinite values")
    recorded = meta.get("tensors_sha256")
    if recorded is not None and tensors_sha256(tensors) != recorded:
        raise FolkRNNError(f"{path}: the weights do not match the checksum in the file's header (a damaged file?)")
    model = FolkRNN(config)
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    model.to(device).eval()
    return Checkpoint(model, vocab, meta)


def _check_names_and_shapes(path, got: dict[str, tuple[int, ...]], want: dict[str, tuple[int, ...]]) -> None:
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    if missing or extra:
        raise FolkRNNError(f"{path}: tensor names do not match the model (missing {missing[:3]}, unexpected {extra[:3]})")
    for k, shape in want.items():  # in the model's order: the first wrong tensor named is the first in it
        if got[k] != shape:
            raise FolkRNNError(f"{path}: tensor {k} has shape {got[k]}, expected {shape}")


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
