"""`folkrnn demo` (what `make demo` runs) end to end on a tiny model."""

from __future__ import annotations

import subprocess
import sys

import torch

from folkrnn.checkpoint import save_checkpoint
from folkrnn.datafile import read_tunes
from folkrnn.model import FolkRNN, ModelConfig
from folkrnn.vocab import Vocabulary


def test_demo_writes_abc_tokens_midi_and_evaluates(tmp_path):
    v = Vocabulary.v2()
    torch.manual_seed(0)
    m = FolkRNN(ModelConfig(hidden_size=16, num_layers=1))
    with torch.no_grad():  # make the tiny model write short well-formed tunes: M:4/4 K:Cmaj C | ... </s>
        m.out.bias.fill_(-20)
        m.out.weight.zero_()
        for tok, bias in (("C", 4), ("|", 3), ("</s>", 2.5)):
            m.out.bias[v[tok]] = bias
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, m, v)
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "folkrnn", "demo", "-m", str(path), "-n", "3", "-o", str(out),
                        "--meter", "4/4", "--mode", "major", "--key", "D"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("X:") == 3 and "K:Dmaj" in r.stdout
    assert "bars right" in r.stdout
    assert len(read_tunes(out / "tunes.txt", v)) == 3
    assert (out / "tunes.abc").read_text().count("X:") == 3
    mids = sorted(out.glob("*.mid"))
    assert len(mids) == 3 and mids[0].read_bytes().startswith(b"MThd")


def test_demo_bad_options(tmp_path):
    r = subprocess.run([sys.executable, "-m", "folkrnn", "demo", "-m", str(tmp_path / "nope.safetensors")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no such model file" in r.stderr and "Traceback" not in r.stderr
