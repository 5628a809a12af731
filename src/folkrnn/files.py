"""Writing files safely, hashing them, showing progress: the one copy of each.

`atomic_write` writes under a temporary name in the destination's folder and renames
it into place, so a reader never sees half a file and a crash leaves the old one. The
new file gets the mode an ordinary `open(path, "w")` would give it (0666 less the
umask), or the mode of the file it replaces: `mkstemp`'s private 0600 never leaks out.

`StreamedFile` is for output produced tune by tune over minutes or hours (`folkrnn
generate -o`): see its docstring for what an interrupt keeps.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from folkrnn.errors import FolkRNNError


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode(path: str | Path) -> int:
    """The permission bits a file written to `path` should get: those of the file it
    replaces, else 0666 less the process umask (what `open(path, "w")` gives)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _temp_beside(path: Path) -> tuple[int, str]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise FolkRNNError(f"{path}: cannot write: {e.strerror or e}") from None


def make_dir(path: str | Path, what: str = "folder") -> Path:
    """Create the output folder `path` (and its parents) or raise a one-line error saying
    why (`what` names it in the message). Returns it as a Path."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise FolkRNNError(f"{out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FolkRNNError(f"{out}: cannot create the {what}: {e.strerror or e}") from None
    return out


def atomic_write(path: str | Path, write: Callable[[str], object]) -> None:
    """Call `write(tmp_path)`, then give the file its mode (see `new_file_mode`) and
    rename it over `path`. On any failure, Ctrl-C included, the temporary file goes
    and `path` keeps what it had."""
    path = Path(path)
    if path.is_dir():
        raise FolkRNNError(f"{path}: is a folder, expected a file name")
    fd, tmp = _temp_beside(path)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, new_file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """`data` to `path` atomically (see `atomic_write`), flushed to disk before the rename."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    try:
        atomic_write(path, write)
    except OSError as e:
        raise FolkRNNError(f"{path}: cannot write: {e.strerror or e}") from None


class StreamedFile:
    """A text file written in records (one tune each) that may be cut short.

    Records go to a temporary file beside `path`; `commit()` marks the end of a whole
    record (the bytes are flushed and counted). `finish()` renames the file into place
    (mode as in `atomic_write`). `interrupt()`, for Ctrl-C, keeps what was committed:

    - nothing committed: the temporary file goes, `path` is left as it was;
    - `path` did not exist: the committed records are kept under `path`;
    - `path` existed: it is never replaced by a shorter run's output; the committed
      records are kept beside it as `PATH.partial` (replacing an earlier `.partial`).

    Bytes written after the last commit (half a tune) are cut off in every case.
    `interrupt()` returns where the records went (None when nowhere). `abort()` (any
    other failure) removes the temporary file and leaves `path` alone.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            raise FolkRNNError(f"{self.path}: is a folder (give a file name)")
        self.existed = self.path.exists()
        self.mode = new_file_mode(self.path)
        fd, self.tmp = _temp_beside(self.path)
        self.file = os.fdopen(fd, "w", encoding="utf-8")
        self.committed_bytes = 0
        self.records = 0
        self._pending = 0

    def write(self, text: str) -> None:
        self.file.write(text)
        self._pending += len(text.encode("utf-8"))

    def commit(self) -> None:
        """The record written since the last commit is whole: make it durable."""
        self.file.flush()
        size = self.committed_bytes + self._pending
        self.committed_bytes, self._pending = size, 0
        self.records += 1

    def _close_and_place(self, dest: Path) -> None:
        os.chmod(self.tmp, self.mode)
        os.replace(self.tmp, dest)

    def finish(self) -> None:
        self.file.close()
        self._close_and_place(self.path)

    def interrupt(self) -> Path | None:
        try:
            self.file.close()  # may flush part of an unfinished record: cut below
        except OSError:
            pass
        if self.records == 0:
            self.abort()
            return None
        os.truncate(self.tmp, self.committed_bytes)
        dest = self.path if not self.existed else self.path.with_name(self.path.name + ".partial")
        self._close_and_place(dest)
        return dest

    def abort(self) -> None:
        try:
            self.file.close()
        except OSError:
            pass
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


# -- hashing ------------------------------------------------------------------------------
def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        raise FolkRNNError(f"{path}: cannot read: {e.strerror or e}") from None
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of `data`.

    >>> sha256_bytes(b"")[:16]
    'e3b0c44298fc1c14'
    """
    return hashlib.sha256(data).hexdigest()


# -- progress -----------------------------------------------------------------------------
def progress(iterable: Iterable | None = None, total: int | None = None, desc: str | None = None,
             unit: str = "it", enabled: bool | None = True, **kw):
    """A tqdm bar on stderr that cleans up after itself and appears only after a second.

    `enabled`: True shows it, False hides it, None shows it only when stderr is a
    terminal. Extra keywords go to tqdm (e.g. `initial`)."""
    from tqdm import tqdm

    opts = {"leave": False, "delay": 1.0, "dynamic_ncols": True, "mininterval": 0.5}
    opts.update(kw)
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr,
                disable=None if enabled is None else not enabled, **opts)
