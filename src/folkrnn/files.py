"""Writing files safely, hashing them, showing progress: the one copy of each.

`atomic_write` writes under a temporary name in the destination's folder, syncs it to
disk and renames it into place, so a reader never sees half a file and a crash (or a
power cut) leaves the old one. The new file gets the mode an ordinary `open(path, "w")`
would give it (0666 less the umask), or the mode of the file it replaces: `mkstemp`'s
private 0600 never leaks out.

Where the destination is not a regular file the rename would destroy it, so it is not
done: a device, FIFO or socket (`-o /dev/null`, `-o >(gzip > x.gz)`) is opened and
written in place, and a symlink is followed, the same rule applying to what it points
to, so the link itself stays a link (see `destination`).

Any OSError while writing (a full disk, EIO) becomes a one-line FolkRNNError
"PATH: cannot write: REASON", the old file intact and no temporary file left; only
BrokenPipeError goes on up, so that a reader closing a FIFO early ends the run quietly,
as `| head` does on stdout.

`StreamedFile` is for output produced tune by tune over minutes or hours (`folkrnn
generate -o`): see its docstring for what an interrupt keeps.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import tempfile
import time
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


def _temp_beside(path: Path, shown: Path | None = None) -> tuple[int, str]:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise _write_error(shown or path, e) from None


def _write_error(path: str | Path, e: OSError) -> FolkRNNError:
    return FolkRNNError(f"{path}: cannot write: {e.strerror or e}")


def destination(path: str | Path) -> tuple[Path, bool]:
    """Where output meant for `path` goes: (file to write, write in place).

    A regular file or a new name: its real path (symlinks resolved), to be replaced by
    renaming a temporary file beside it, so a link keeps pointing at the new file. A
    device, FIFO or socket (through links or not): `path` itself, written in place, since
    a rename would put a regular file where /dev/null or the pipe was. A folder: error."""
    path = Path(path)
    try:
        st = os.stat(path)  # follows symlinks: the kind of thing the output really lands in
    except FileNotFoundError:  # a new file, or a link to one yet to be made
        return Path(os.path.realpath(path)), False
    except OSError as e:  # ELOOP, EACCES on a parent...
        raise _write_error(path, e) from None
    if stat.S_ISDIR(st.st_mode):
        raise FolkRNNError(f"{path}: is a folder, expected a file name")
    if stat.S_ISREG(st.st_mode):
        return Path(os.path.realpath(path)), False
    # Opened through `path`, not its resolved name: /proc/self/fd/1 resolves to a name
    # like "pipe:[123]" that cannot be opened, while the link itself can.
    return path, True


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` survive a power cut. Best effort: the file is already in
    place, and some filesystems (and every OS but POSIX ones) refuse to sync a folder."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
    """Call `write(tmp_path)`, sync the file to disk, give it its mode (see
    `new_file_mode`) and rename it over `path` (over the file a symlink points to, when
    `path` is one). On any failure, Ctrl-C included, the temporary file goes and `path`
    keeps what it had; an OSError becomes a one-line FolkRNNError.

    A device or FIFO (see `destination`) gets `write(path)` instead: no temporary file,
    no rename."""
    path = Path(path)
    target, in_place = destination(path)
    if in_place:
        try:
            write(str(path))
        except BrokenPipeError:
            raise
        except OSError as e:
            raise _write_error(path, e) from None
        return
    fd, tmp = _temp_beside(target, path)
    os.close(fd)
    try:
        write(tmp)
        _fsync_file(tmp)
        os.chmod(tmp, new_file_mode(target))
        os.replace(tmp, target)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, BrokenPipeError):
            raise _write_error(path, e) from None
        raise
    _fsync_dir(target.parent)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """`data` to `path` atomically (see `atomic_write`, which syncs it before the rename)."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write)


class StreamedFile:
    """A text file written in records (one tune each) that may be cut short.

    `write()` collects a record in memory; `commit()` marks its end: the record's bytes
    go to a temporary file beside `path` (the OS has them: a crash of folkrnn keeps
    them), and synced to disk by the first commit `SYNC_INTERVAL` seconds or more after
    the last sync: a power cut loses about that much of the run at most, and a fast run
    does not wait on the disk for every tune.
    `finish()` syncs the file, renames it into place (mode as in `atomic_write`) and syncs
    the folder. `interrupt()`, for Ctrl-C, keeps what was committed:

    - nothing committed: the temporary file goes, `path` is left as it was;
    - `path` did not exist: the committed records are kept under `path`;
    - `path` existed: it is never replaced by a shorter run's output; the committed
      records are kept beside it as `PATH.partial` (replacing an earlier `.partial`).

    A record not committed (half a tune) is never written, in every case. `interrupt()`
    returns where the records went (None when nowhere). `abort()` (any other failure)
    removes the temporary file and leaves `path` alone.

    A device or FIFO (see `destination`) is written in place, each record as it is
    committed; what reached it stays there. A symlink is followed: the file it points
    to is replaced, the link stays. An OSError while writing (a full disk) aborts and
    raises a one-line FolkRNNError naming `path`.
    """

    SYNC_INTERVAL = 1.0

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.target, self.in_place = destination(self.path)
        self.committed_bytes = 0
        self.records = 0
        self._record: list[str] = []
        self._synced = time.monotonic()
        self.tmp: str | None = None
        if self.in_place:
            self.existed = True
            try:
                # Blocks until a FIFO has a reader, as a shell's `> fifo` does.
                self.fd = os.open(self.path, os.O_WRONLY)
            except OSError as e:
                raise _write_error(self.path, e) from None
            return
        self.existed = self.target.exists()
        self.mode = new_file_mode(self.target)
        self.fd, self.tmp = _temp_beside(self.target, self.path)

    def write(self, text: str) -> None:
        self._record.append(text)

    def commit(self) -> None:
        """The record written since the last commit is whole: write it out."""
        data = "".join(self._record).encode("utf-8")
        self._record.clear()
        self._guarded(self._write_all, data)
        self.committed_bytes += len(data)
        self.records += 1
        if not self.in_place and time.monotonic() - self._synced >= self.SYNC_INTERVAL:
            self._guarded(os.fsync, self.fd)
            self._synced = time.monotonic()

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]

    def _guarded(self, op: Callable, *args) -> None:
        try:
            op(*args)
        except BrokenPipeError:  # the FIFO's reader went away: stop, as on stdout
            self.abort()
            raise
        except OSError as e:
            self.abort()
            raise _write_error(self.path, e) from None

    def _close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    def _place(self, dest: Path) -> None:
        assert self.tmp is not None
        os.chmod(self.tmp, self.mode)
        os.replace(self.tmp, dest)
        self.tmp = None
        _fsync_dir(dest.parent)

    def finish(self) -> None:
        if self.in_place:
            self._guarded(self._close)
            return
        self._guarded(os.fsync, self.fd)
        self._guarded(self._close)
        self._guarded(self._place, self.target)

    def interrupt(self) -> Path | None:
        self._record.clear()  # the unfinished record is never written
        if self.records == 0:
            self.abort()
            return None
        if self.in_place:
            self.abort()
            return self.path
        try:
            os.fsync(self.fd)
        except OSError:
            pass  # the records are with the OS: a rename keeps them unless the power fails
        self._close()
        dest = self.target if not self.existed else self.target.with_name(self.target.name + ".partial")
        self._place(dest)
        return self.path if dest == self.target else dest

    def abort(self) -> None:
        try:
            self._close()
        except OSError:
            pass
        if self.tmp is not None and os.path.exists(self.tmp):
            os.unlink(self.tmp)
        self.tmp = None


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
