"""Recipe options beyond config5: cosine schedule, warm-up for fine-tuning, bf16, token counts."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from folkrnn.checkpoint import load_model, read_metadata
from folkrnn.datafile import read_tunes
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
