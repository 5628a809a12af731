"""What `generate` leaves behind: finished tunes kept on Ctrl-C, file modes, options that
would be ignored refused, MIDI folders without stale files, X: numbering."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from folkrnn.checkpoint import save_checkpoint
from folkrnn.cli import main
from folkrnn.datafile import read_tunes
from folkrnn.errors import FolkRNNError
from folkrnn.files import StreamedFile, atomic_write
from folkrnn.model import FolkRNN, ModelConfig
from folkrnn.vocab import Vocabulary

V2 = Vocabulary.v2()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A tiny random model whose tunes end soon (a strong </s> bias)."""
    d = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    m = FolkRNN(ModelConfig(hidden_size=16, num_layers=1)).eval()
    with torch.no_grad():
        m.out.bias[V2.eos] += 2.0
    save_checkpoint(d / "m.safetensors", m, V2)
    return d / "m.safetensors"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


# -- Ctrl-C ------------------------------------------------------------------------------
def _interrupt_generate(model: Path, out: Path, sig=signal.SIGINT) -> subprocess.CompletedProcess:
    """Start a very long `generate -o out`, wait for some tunes, send `sig`."""
    cmd = [sys.executable, "-m", "folkrnn", "generate", "-m", str(model), "-n", "1000000", "-s", "1", "-f", "tokens",
           "-o", str(out), "--batch-size", "8", "--max-length", "40", "--no-progress", "--threads", "1"]
    # A shell that starts a command in the background (`.ci/run &`, nohup) hands it SIGINT
    # ignored, and Python then keeps it ignored: give the child the default, as a terminal does.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 180
    while True:
        tmps = list(out.parent.glob(f".{out.name}.*.tmp"))
        if tmps and tmps[0].stat().st_size > 3000:
            break
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"generate wrote no 3000 bytes in 180 s (exit {proc.returncode}): {err[-2000:]}")
        time.sleep(0.05)
    proc.send_signal(sig)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"generate did not stop within 120 s of signal {sig!r}; stderr: {err[-2000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def test_interrupted_generate_keeps_every_finished_tune(model, tmp_path):
    out = tmp_path / "big.txt"
    r = _interrupt_generate(model, out)
    assert r.returncode == 130, r.stderr
    assert "Traceback" not in r.stderr
    tunes = read_tunes(out)  # whole tunes only: a half-written one would not parse or would differ
    assert f"kept {len(tunes)} finished tune(s) in {out}" in r.stderr
    assert len(tunes) >= 10
    assert out.read_text().endswith("\n") and not list(tmp_path.glob(".*.tmp"))
    # the kept tunes are the first ones of the seed, in order
    rc = main(["generate", "-m", str(model), "-n", str(len(tunes)), "-s", "1", "-f", "tokens", "--max-length", "40",
               "-o", str(tmp_path / "ref.txt"), "--no-progress"])
    assert rc == 0 and (tmp_path / "ref.txt").read_text() == out.read_text()


def test_interrupted_generate_never_clobbers_an_existing_file(model, tmp_path):
    out = tmp_path / "big.txt"
    out.write_text("M:4/4\nK:Cmaj\nC D E F |\n")
    r = _interrupt_generate(model, out, signal.SIGTERM)  # `timeout`, `kill`: the same as Ctrl-C
    assert r.returncode == 130, r.stderr
    assert out.read_text() == "M:4/4\nK:Cmaj\nC D E F |\n"
    partial = tmp_path / "big.txt.partial"
    assert f"in {partial}" in r.stderr and len(read_tunes(partial)) >= 10


def test_streamed_file_cuts_an_unfinished_record(tmp_path, umask022):
    p = tmp_path / "a.txt"
    f = StreamedFile(p)
    f.write("one\n")
    f.commit()
    f.write("two\n")
    f.commit()
    f.write("thr")  # Ctrl-C in the middle of the third record
    assert f.interrupt() == p and p.read_text() == "one\ntwo\n" and mode(p) == 0o644
    g = StreamedFile(tmp_path / "b.txt")
    g.write("half")
    assert g.interrupt() is None and not (tmp_path / "b.txt").exists() and not list(tmp_path.glob(".*.tmp"))


# -- file modes --------------------------------------------------------------------------
def test_written_files_follow_the_umask_and_keep_a_replaced_files_mode(model, tmp_path, capsys, umask022):
    out = tmp_path / "t.abc"
    assert run(capsys, "generate", "-m", str(model), "-n", "2", "-s", "1", "-o", str(out), "--no-progress")[0] == 0
    assert mode(out) == 0o644  # was 0600 whatever the umask (mkstemp)
    out.chmod(0o640)
    assert run(capsys, "generate", "-m", str(model), "-n", "2", "-s", "2", "-o", str(out), "--no-progress")[0] == 0
    assert mode(out) == 0o640
    os.umask(0o077)
    ck = tmp_path / "c.safetensors"
    save_checkpoint(ck, FolkRNN(ModelConfig(hidden_size=8, num_layers=1)), V2)  # what train writes
    assert mode(ck) == 0o600
    atomic_write(tmp_path / "x", lambda tmp: Path(tmp).write_text("x"))
    assert mode(tmp_path / "x") == 0o600


def test_corpus_output_mode(tmp_path, capsys, umask022):
    src = tmp_path / "in.txt"
    src.write_text("M:4/4\nK:Cmaj\n| C D E F | G A B c |\n")
    out = tmp_path / "out.txt"
    assert run(capsys, "corpus", str(src), "-o", str(out), "-q")[0] == 0
    assert mode(out) == 0o644


# -- options -----------------------------------------------------------------------------
@pytest.mark.parametrize("argv, msg", [
    (["-k", "D", "-f", "tokens"], "token output is always in C"),
    (["-k", "C#", "-f", "tokens"], "token output is always in C"),
    (["--tempo", "90", "-f", "tokens"], "--tempo apply to"),
    (["--program", "40", "-f", "tokens"], "--program apply to"),
    (["--soundfont", "x.sf2", "-f", "midi", "-o", "d"], "--soundfont is only used with --wav"),
    (["--beam", "0"], "--beam must be >= 1"),
    (["--program", "200"], "--program must be 0-127"),
    (["--prime-abc", "missing.abc"], "missing.abc: no such file"),
])
def test_misleading_options_are_refused(model, capsys, tmp_path, argv, msg):
    rc, out, err = run(capsys, "generate", "-m", str(model), "--no-progress", *argv)
    assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1 and out == ""


def test_state_file_is_not_a_model(tmp_path, capsys):
    from safetensors.torch import save_file

    p = tmp_path / "state.safetensors"
    save_file({"x": torch.zeros(1)}, str(p), metadata={"state": "{}"})
    rc, _, err = run(capsys, "generate", "-m", str(p))
    assert rc == 2 and "training state file" in err and "best.safetensors" in err


def test_tempo_program_and_first_index_in_abc(model, capsys):
    rc, out, _ = run(capsys, "generate", "-m", str(model), "-n", "2", "-s", "5", "--tempo", "96", "--program", "73",
                     "--first-index", "11", "--no-progress")
    assert rc == 0
    beat = {"M:6/8": "3/8", "M:9/8": "3/8", "M:12/8": "3/8", "M:3/2": "1/2"}
    meters = [ln for ln in out.splitlines() if ln.startswith("M:")]
    assert [ln for ln in out.splitlines() if ln.startswith("Q:")] == [f"Q:{beat.get(m, '1/4')}=96" for m in meters]
    assert out.count("%%MIDI program 73\n") == 2
    rc, jig, _ = run(capsys, "generate", "-m", str(model), "-s", "5", "--meter", "6/8", "--tempo", "110", "--no-progress")
    assert "\nQ:3/8=110\n" in jig  # the dotted-quarter beat, as the MIDI tempo counts it
    assert "X:11\n" in out and "X:12\n" in out and "X:1\n" not in out
    lines = out.splitlines()
    first = lambda prefix: next(i for i, ln in enumerate(lines) if ln.startswith(prefix))
    assert first("M:") < first("Q:") < first("K:") and first("%%MIDI") < first("K:")  # in the header
    rc, plain, _ = run(capsys, "generate", "-m", str(model), "-n", "2", "-s", "5", "--no-progress")
    assert "Q:" not in plain and "%%MIDI" not in plain
    # the same tunes: numbering only
    strip = lambda t: [ln for ln in t.splitlines() if not ln.startswith(("X:", "T:", "Q:", "%%MIDI"))]
    assert strip(out) == strip(plain)


def test_midi_folder_holds_only_this_runs_tunes(model, capsys, tmp_path):
    d = tmp_path / "mid"
    assert run(capsys, "generate", "-m", str(model), "-n", "4", "-s", "1", "-f", "midi", "-o", str(d), "--no-progress")[0] == 0
    (d / "notes.txt").write_text("mine")
    rc, _, err = run(capsys, "generate", "-m", str(model), "-n", "2", "-s", "1", "-f", "midi", "-o", str(d), "--no-progress")
    assert rc == 0 and "removed 2 tune file(s)" in err
    assert sorted(p.name for p in d.iterdir()) == ["notes.txt", "tune_00001.mid", "tune_00002.mid"]
    assert run(capsys, "generate", "-m", str(model), "-n", "1", "-s", "1", "-f", "midi", "-o", str(d),
               "--first-index", "7", "--no-progress")[0] == 0
    assert sorted(p.name for p in d.iterdir()) == ["notes.txt", "tune_00007.mid"]


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    p = tmp_path / "f"
    p.write_text("old")

    def boom(tmp):
        Path(tmp).write_text("new, half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(p, boom)
    assert p.read_text() == "old" and sorted(x.name for x in tmp_path.iterdir()) == ["f"]
    with pytest.raises(FolkRNNError, match="is a folder"):
        atomic_write(tmp_path, lambda tmp: None)


# -- FIFOs and full disks ------------------------------------------------------------------
def test_generate_into_a_fifo_writes_through_it(model, capsys, tmp_path):
    import threading

    fifo = tmp_path / "tunes.fifo"
    os.mkfifo(fifo)
    got: list[str] = []

    def read() -> None:
        with open(fifo) as f:
            got.append(f.read())

    reader = threading.Thread(target=read, daemon=True)  # daemon: a writer that never opens it must not hang pytest
    reader.start()
    rc, _, err = run(capsys, "generate", "-m", str(model), "-n", "3", "-s", "4", "-o", str(fifo), "--no-progress")
    reader.join(30)
    assert rc == 0, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and not list(tmp_path.glob(".*.tmp"))
    _, stdout, _ = run(capsys, "generate", "-m", str(model), "-n", "3", "-s", "4", "--no-progress")
    assert got == [stdout] and stdout.count("X:") == 3


def test_generate_on_a_full_disk_is_one_line_and_keeps_the_old_file(model, capsys, tmp_path, monkeypatch):
    import errno

    import folkrnn.files

    out = tmp_path / "tunes.abc"
    out.write_text("old tunes\n")
    real = os.write

    def full_disk(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(folkrnn.files.os, "write", full_disk)
    rc, stdout, err = run(capsys, "generate", "-m", str(model), "-n", "3", "-s", "1", "-o", str(out), "--no-progress")
    assert rc == 2 and stdout == ""
    assert err.strip() == f"folkrnn generate: error: {out}: cannot write: No space left on device"
    assert out.read_text() == "old tunes\n" and sorted(p.name for p in tmp_path.iterdir()) == ["tunes.abc"]
