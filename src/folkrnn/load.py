"""What `-m MODEL` means everywhere: a `.safetensors` checkpoint, a folk-rnn Lasagne
`.pkl` (see `folkrnn.legacy`), or `default`, the model shipped in the package.

This module sits above `folkrnn.checkpoint` and `folkrnn.legacy` (which builds a
`Checkpoint`), so neither imports the other's loader.
"""

from __future__ import annotations

from pathlib import Path

import torch

from folkrnn.checkpoint import Checkpoint, load_checkpoint
from folkrnn.errors import FolkRNNError
from folkrnn.legacy import load_lasagne_pickle

DEFAULT_NAME = "default"
DEFAULT_FILE = "folkrnn_v2_default.safetensors"
NO_DEFAULT = "the default model file is missing from this installation; reinstall folkrnn or pass -m FILE"


def default_model_path() -> Path | None:
    """The model shipped in the package (`folkrnn/data/folkrnn_v2_default.safetensors`), if any."""
    from importlib import resources

    ref = resources.files("folkrnn.data").joinpath(DEFAULT_FILE)
    try:
        # A wheel installed as files (the normal case) gives a real path.
        path = Path(str(ref))
    except TypeError:
        return None
    return path if path.is_file() else None


def resolve_model_path(spec: str | Path) -> Path:
    """`default` or a file name -> an existing file (FolkRNNError otherwise)."""
    if str(spec) == DEFAULT_NAME:
        path = default_model_path()
        if path is None:
            raise FolkRNNError(NO_DEFAULT)
        return path
    path = Path(spec)
    if not path.exists():
        raise FolkRNNError(f"{path}: no such model file (pass a .safetensors checkpoint, a folk-rnn .pkl, or `default`)")
    if path.is_dir():
        raise FolkRNNError(f"{path}: is a directory, not a model file")
    return path


def is_pickle(path: Path) -> bool:
    """A Lasagne pickle by name, or by its first byte (the PROTO opcode, 0x80)."""
    if path.suffix.lower() in (".pkl", ".pickle"):
        return True
    if path.suffix.lower() == ".safetensors":
        return False
    try:
        with open(path, "rb") as f:
            return f.read(1) == b"\x80"
    except OSError:
        return False


def load_model(spec: str | Path = DEFAULT_NAME, device: str | torch.device = "cpu") -> Checkpoint:
    """What `-m MODEL` names: `default`, a `.safetensors` checkpoint or a folk-rnn `.pkl`.

    The model comes back in eval mode on `device`."""
    path = resolve_model_path(spec)
    if is_pickle(path):
        ckpt = load_lasagne_pickle(path)
        ckpt.model.to(device).eval()
        return ckpt
    ckpt = load_checkpoint(path, device)
    ckpt.metadata.setdefault("file", str(path))
    return ckpt
