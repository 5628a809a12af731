"""What the model commands share: `-m MODEL`, `--threads`, and output that survives Ctrl-C."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from folkrnn.errors import FolkRNNError

SMALL_BATCH = 16
MODEL_HELP = "model: a .safetensors checkpoint, a folk-rnn Lasagne .pkl, or `default` (the one shipped with folkrnn)"


def threads(n: int, rows: int | None = None) -> None:
    """Apply --threads; 0 = auto (see folkrnn.sample.auto_threads)."""
    import torch

    from folkrnn.sample import auto_threads

    if n < 0:
        raise FolkRNNError("--threads must be >= 0")
    n = n or auto_threads(rows, SMALL_BATCH) or 0
    if n:
        torch.set_num_threads(n)


def load(spec: str):
    from folkrnn.load import load_model

    return load_model(spec)


def model_name(spec: str) -> str:
    return "default" if spec == "default" else Path(spec).name


class _Stdout:
    """stdout with the StreamedFile interface: each record is flushed as it is done."""

    def __init__(self) -> None:
        self.records = 0

    def write(self, text: str) -> None:
        sys.stdout.write(text)

    def commit(self) -> None:
        sys.stdout.flush()
        self.records += 1


@contextlib.contextmanager
def streamed_output(path: str | None, command: str, what: str = "tune") -> Iterator:
    """stdout, or a `folkrnn.files.StreamedFile`: write a record, then `commit()`.

    On Ctrl-C the finished records are kept (see StreamedFile for where), one line on
    stderr says how many and where, and KeyboardInterrupt goes on up (exit 130)."""
    from folkrnn.files import StreamedFile

    if path is None or path == "-":
        out = _Stdout()
        try:
            yield out
        except KeyboardInterrupt:
            print(f"folkrnn {command}: interrupted after {out.records} finished {what}(s)", file=sys.stderr)
            raise
        return
    out = StreamedFile(path)
    try:
        yield out
    except KeyboardInterrupt:
        dest = out.interrupt()
        if dest is None:
            print(f"folkrnn {command}: interrupted before the first {what} was finished; {path} not written", file=sys.stderr)
        else:
            kept = f"kept {out.records} finished {what}(s) in {dest}"
            if dest != out.path:
                kept += f" ({out.path} had been there before and is left as it was)"
            print(f"folkrnn {command}: interrupted; {kept}", file=sys.stderr)
        raise
    except BaseException:
        out.abort()
        raise
    out.finish()
