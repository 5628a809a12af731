"""Recipe options beyond config5: cosine schedule, warm-up for fine-tuning, bf16, token counts."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from folkrnn.checkpoint import read_metadata
from folkrnn.load import load_model
from folkrnn.datafile import read_tunes
from folkrnn import precision
from folkrnn.errors import FolkRNNError
from folkrnn.precision import bf16_problem
from folkrnn.train import TrainConfig, make_batch, train

SAMPLES = Path(__file__).resolve().parent / "data" / "folkrnn_v2_generated_samples.txt"
TINY = dict(hidden_size=24, num_layers=2, batch_size=16, checkpoint_minutes=60.0)


def nll(model_path: Path, data: Path) -> float:
    m = load_model(str(model_path))
    net = m.model.float().eval()
    seqs = [[m.vocab.bos, *m.vocab.encode(t), m.vocab.eos] for t in read_tunes(data, m.vocab)]
    ids, tgt = make_batch(seqs, m.vocab.eos)
    with torch.no_grad():
        logits, _ = net(ids)
    return float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100))


def test_cosine_schedule_and_warmup():
    c = TrainConfig(learning_rate=0.002, lr_schedule="cosine", lr_min=0.0002, epochs=20, warmup=10)
    assert c.lr_at(0) == pytest.approx(0.002) and c.lr_at(20) == pytest.approx(0.0002)
    assert c.lr_at(10) == pytest.approx(0.0011)
    rates = [c.lr_at(e / 4) for e in range(81)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))  # never rises after warm-up
    assert [c.lr_at(0, iteration=i) for i in (0, 4, 9, 10)] == pytest.approx([0.0002, 0.001, 0.002, 0.002])


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny model trained to a low rate on the 64 v2 samples, and that data."""
    d = tmp_path_factory.mktemp("recipe")
    data = d / "tunes.txt"
    data.write_text(SAMPLES.read_text())
    cfg = TrainConfig(**TINY, epochs=40, learning_rate=0.01, lr_schedule="cosine", lr_min=0.0005, seed=3)
    train(data, d / "base", cfg, progress=False)
    return d / "base" / "last.safetensors", data


def test_warmup_keeps_the_first_finetuning_step_small(trained, tmp_path):
    """A fresh RMSprop accumulator makes the first step ~3x the rate on every weight: without
    warm-up one step at a fine-tuning rate throws the model off its own training tunes."""
    base, data = trained
    before = nll(base, data)
    after = {}
    for w in (0, 50):
        cfg = TrainConfig(**TINY, epochs=1, max_iterations=1, learning_rate=0.01, init=str(base), warmup=w)
        train(data, tmp_path / f"w{w}", cfg, progress=False)
        after[w] = nll(tmp_path / f"w{w}" / "last.safetensors", data)
    assert after[0] > before + 0.05  # the problem is real at this rate
    assert after[50] < before + 0.01  # and warm-up removes it


BF16_PROBLEM = bf16_problem("cpu")


@pytest.mark.skipif(BF16_PROBLEM is not None, reason=f"bf16 does not run here: {BF16_PROBLEM}")
def test_bf16_trains_like_fp32(trained, tmp_path):
    _, data = trained
    res = {}
    for p in ("fp32", "bf16"):
        cfg = TrainConfig(**TINY, epochs=3, learning_rate=0.005, precision=p, seed=5)
        res[p] = train(data, tmp_path / p, cfg, progress=False)["valid_nll"]
    assert math.isfinite(res["bf16"])
    assert abs(res["bf16"] - res["fp32"]) < 0.05
    meta = read_metadata(tmp_path / "bf16" / "last.safetensors")
    assert meta["training"]["train_config"]["precision"] == "bf16"
    # Master weights stay fp32 whatever the compute precision.
    assert load_model(str(tmp_path / "bf16" / "last.safetensors")).model.out.weight.dtype == torch.float32


def test_bf16_probe_agrees_with_a_real_bf16_step():
    """The probe's verdict is what the trainer's own autocast call does here."""
    from folkrnn.model import FolkRNN, ModelConfig

    m = FolkRNN(ModelConfig(hidden_size=16, num_layers=1, dropout=0.0))
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits, _ = m(torch.zeros(1, 3, dtype=torch.long))
        logits.float().sum().backward()
        runs = True
    except RuntimeError:
        runs = False
    assert runs == (BF16_PROBLEM is None)
    assert bf16_problem("cpu") is BF16_PROBLEM  # cached per process


def test_bf16_where_it_cannot_run_is_refused_before_anything_is_written(trained, tmp_path, monkeypatch):
    """Exercised on every machine: the probe is told bf16 fails, as on an AVX2-only CPU."""
    _, data = trained
    monkeypatch.setattr(precision, "bf16_problem", lambda device="cpu": "no bf16 LSTM kernel on this CPU")
    with pytest.raises(FolkRNNError, match="--precision bf16: no bf16 LSTM kernel on this CPU; use --precision fp32"):
        train(data, tmp_path / "b", TrainConfig(**TINY, epochs=1, precision="bf16"), progress=False)
    assert not (tmp_path / "b").exists()
    # auto picks fp32 there, and trains, recording what it asked for
    out = train(data, tmp_path / "a", TrainConfig(**TINY, epochs=1, precision="auto"), progress=False)
    assert math.isfinite(out["valid_nll"])
    assert precision.resolve_precision("auto", "cpu") == "fp32" and precision.resolve_precision("fp32", "cpu") == "fp32"


@pytest.mark.skipif(BF16_PROBLEM is None, reason="bf16 runs here: nothing to refuse")
def test_cli_bf16_refused_in_one_line_exit_2(trained, tmp_path):
    import subprocess
    import sys

    _, data = trained
    r = subprocess.run([sys.executable, "-m", "folkrnn", "train", str(data), "-o", str(tmp_path / "r"), "--hidden", "8",
                        "--layers", "1", "--precision", "bf16", "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--precision bf16" in lines[0] and "fp32" in lines[0] and "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists()


def test_checkpoint_records_training_token_counts(trained):
    base, data = trained
    meta = read_metadata(base)
    counts = meta["training"]["data"]["token_counts"]
    n_body = meta["training"]["data"]["train_tokens"]
    assert sum(counts.values()) == n_body  # every predicted token of the training tunes, </s> included
    assert counts["</s>"] == meta["training"]["data"]["train_tunes"]
    assert "|" in counts and counts["|"] > 100


def test_resume_with_nothing_left_to_do_says_so(trained, tmp_path, caplog):
    _, data = trained
    cfg = TrainConfig(**TINY, epochs=1)
    train(data, tmp_path / "r", cfg, progress=False)
    with caplog.at_level("WARNING"):
        row = train(data, tmp_path / "r", cfg, resume=True, progress=False)
    assert "nothing left to do" in caplog.text and "--epochs" in caplog.text
    assert row["epoch"] == 1
