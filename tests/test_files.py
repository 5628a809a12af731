"""Output files: devices, FIFOs and symlinks written through (never replaced by a
regular file), write errors as one line with the old file intact, fsync where promised."""

from __future__ import annotations

import errno
import os
import re
import stat
import threading
from pathlib import Path

import pytest

import folkrnn.files as files
from folkrnn.errors import FolkRNNError
from folkrnn.files import StreamedFile, atomic_write, write_bytes_atomic


def _fifo_reader(path: Path) -> tuple[threading.Thread, list[bytes]]:
    """Read `path` to EOF in a thread (a FIFO's writer blocks until a reader opens it)."""
    got: list[bytes] = []

    def run() -> None:
        with open(path, "rb") as f:
            got.append(f.read())

    t = threading.Thread(target=run, daemon=True)  # daemon: a broken writer must not hang the run
    t.start()
    return t, got


def _stream(path, records: list[str]) -> None:
    f = StreamedFile(path)
    for r in records:
        f.write(r)
        f.commit()
    f.finish()


def _temps(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_fifo_is_written_through_not_replaced(tmp_path):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    t, got = _fifo_reader(fifo)
    _stream(fifo, ["one\n", "two\n"])
    t.join(10)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert got == [b"one\ntwo\n"] and not _temps(tmp_path)
    t, got = _fifo_reader(fifo)
    atomic_write(fifo, lambda p: Path(p).write_text("whole"))
    t.join(10)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and got == [b"whole"] and not _temps(tmp_path)


def test_interrupt_on_a_fifo_sends_only_finished_records(tmp_path):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    t, got = _fifo_reader(fifo)
    f = StreamedFile(fifo)
    f.write("one\n")
    f.commit()
    f.write("tw")  # Ctrl-C mid-record
    assert f.interrupt() == fifo
    t.join(10)
    assert got == [b"one\n"] and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_symlink_to_a_regular_file_stays_a_link(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    _stream(link, ["new\n"])
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == "new\n" and stat.S_IMODE(real.stat().st_mode) == 0o640
    write_bytes_atomic(link, b"bytes")
    assert link.is_symlink() and real.read_bytes() == b"bytes" and not _temps(tmp_path)
    # a dangling link: the file it names is created, the link kept
    dangling = tmp_path / "dangling.txt"
    dangling.symlink_to(tmp_path / "sub" / "made.txt")
    atomic_write(dangling, lambda p: Path(p).write_text("made"))
    assert dangling.is_symlink() and (tmp_path / "sub" / "made.txt").read_text() == "made"


def test_interrupt_through_a_symlink_keeps_the_existing_target(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    f = StreamedFile(link)
    f.write("a\n")
    f.commit()
    dest = f.interrupt()
    assert dest == tmp_path / "real.txt.partial" and dest.read_text() == "a\n"
    assert link.is_symlink() and real.read_text() == "old" and not _temps(tmp_path)


def test_symlink_to_a_fifo_and_to_a_pipe(tmp_path):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    link.symlink_to(fifo)
    t, got = _fifo_reader(fifo)
    _stream(link, ["x\n", "y\n"])
    t.join(10)
    assert link.is_symlink() and stat.S_ISFIFO(os.lstat(fifo).st_mode) and got == [b"x\ny\n"]
    # `-o /proc/self/fd/1` with stdout a pipe: the link resolves to "pipe:[N]", which
    # only the link itself can open
    r, w = os.pipe()
    try:
        fd_link = tmp_path / "stdout"
        fd_link.symlink_to(f"/proc/self/fd/{w}")
        _stream(fd_link, ["tune\n"])
        assert fd_link.is_symlink() and os.read(r, 100) == b"tune\n"
    finally:
        os.close(r)
        os.close(w)


def test_char_devices_are_written_in_place(tmp_path):
    if not stat.S_ISCHR(os.stat("/dev/null").st_mode):
        pytest.skip("/dev/null is not a character device here")
    # Through a link first: a writer that replaced devices fails here, on the link,
    # before the real /dev/null is touched.
    link = tmp_path / "null"
    link.symlink_to("/dev/null")
    _stream(link, ["x\n"])
    assert link.is_symlink() and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    _stream("/dev/null", ["x\n"])
    atomic_write("/dev/null", lambda p: Path(p).write_text("x"))
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)


def test_a_full_device_is_a_one_line_error(tmp_path):
    if not os.path.exists("/dev/full") or not stat.S_ISCHR(os.stat("/dev/full").st_mode):
        pytest.skip("no /dev/full")
    link = tmp_path / "full"
    link.symlink_to("/dev/full")
    for path in (link, "/dev/full"):
        f = StreamedFile(path)
        f.write("x\n")
        with pytest.raises(FolkRNNError, match=r"cannot write: No space left on device$") as e:
            f.commit()
        assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)
        with pytest.raises(FolkRNNError, match="^" + re.escape(f"{path}: cannot write: No space left")):
            atomic_write(path, lambda p: Path(p).write_text("x"))
    assert stat.S_ISCHR(os.lstat("/dev/full").st_mode) and link.is_symlink()


def _enospc_on(folder: Path, monkeypatch) -> None:
    """os.write fails with ENOSPC for files in `folder` (a disk filling up)."""
    real = os.write

    def write(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(folder)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(files.os, "write", write)


def test_disk_full_while_streaming_keeps_the_old_file(tmp_path, monkeypatch):
    out = tmp_path / "tunes.txt"
    out.write_text("old\n")
    _enospc_on(tmp_path, monkeypatch)
    f = StreamedFile(out)
    f.write("new\n")
    with pytest.raises(FolkRNNError) as e:
        f.commit()
    assert str(e.value) == f"{out}: cannot write: No space left on device"
    assert out.read_text() == "old\n" and not _temps(tmp_path)


def test_disk_full_in_atomic_write_keeps_the_old_file(tmp_path):
    out = tmp_path / "m.bin"
    out.write_text("old")

    def write(tmp):
        Path(tmp).write_text("half")
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    with pytest.raises(FolkRNNError) as e:
        atomic_write(out, write)
    assert str(e.value) == f"{out}: cannot write: {os.strerror(errno.EIO)}"
    assert out.read_text() == "old" and not _temps(tmp_path)


def test_streamed_file_syncs_once_per_interval_and_before_the_rename(tmp_path, monkeypatch):
    synced: list[str] = []
    real = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    out = tmp_path / "t.txt"
    f = StreamedFile(out)
    f.SYNC_INTERVAL = 3600.0
    for i in range(500):
        f.write(f"{i}\n")
        f.commit()
    assert synced == []  # not per record
    f.finish()
    assert len(synced) == 2 and synced[0].endswith(".tmp") and synced[1] == str(tmp_path)  # the file, then the folder
    synced.clear()
    g = StreamedFile(tmp_path / "u.txt")
    g.SYNC_INTERVAL = 0.0
    for i in range(3):
        g.write(f"{i}\n")
        g.commit()
    assert len(synced) == 3
    g.abort()
    synced.clear()
    atomic_write(tmp_path / "v.txt", lambda p: Path(p).write_text("v"))
    assert len(synced) == 2 and synced[1] == str(tmp_path)
