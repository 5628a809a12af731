"""`torchrun --nproc_per_node=2 -m folkrnn generate`: the ranks share the tunes, rank 0 writes one file in order."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from folkrnn.checkpoint import save_checkpoint
from folkrnn.model import FolkRNN, ModelConfig
from folkrnn.vocab import Vocabulary


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    v = Vocabulary.v2()
    torch.manual_seed(2)
    m = FolkRNN(ModelConfig(hidden_size=16, num_layers=1))
    with torch.no_grad():
        m.out.bias[v.eos] += 3.0
        m.out.bias[v["|"]] += 2.0
    path = tmp_path_factory.mktemp("m") / "tiny.safetensors"
    save_checkpoint(path, m, v)
    return path


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--form", "AABB"]])
def test_two_ranks_write_the_one_process_tunes_in_order(tiny, tmp_path, extra):
    common = ["generate", "-m", str(tiny), "-n", "9", "-s", "4", "--no-progress", "--batch-size", "3", *extra]
    one = tmp_path / "one.abc"
    r = subprocess.run([sys.executable, "-m", "folkrnn", *common, "-o", str(one)], capture_output=True, text=True,
                       env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    two = tmp_path / "two.abc"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "folkrnn", *common, "-o", str(two)], capture_output=True, text=True, env=_env(),
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert two.read_text() == one.read_text()
    assert one.read_text().count("X:") == 9


@pytest.mark.slow
def test_ranks_agree_on_a_fresh_seed(tiny, tmp_path):
    """Without --seed each rank would draw its own: rank 0's is used by all, and written once."""
    out = tmp_path / "t.json"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "folkrnn", "generate", "-m", str(tiny), "-n", "4", "--no-progress",
                        "-o", str(out)], capture_output=True, text=True, env=_env(), timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    import json

    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["index"] for x in rows] == [0, 1, 2, 3] or [x["x"] for x in rows] == [1, 2, 3, 4]
    assert len({x["settings"]["seed"] for x in rows}) == 1
