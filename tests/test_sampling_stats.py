"""The sampler's statistics against the distribution it is meant to draw from.

A model whose softmax weights are zero emits its output bias as logits at every
step, whatever it has seen. So with bias b its tokens are independent draws from
softmax(b / T) (`<s>` excluded), and every `--alternatives` entry is the top of that
same distribution: a temperature applied twice, or not at all, shows.

Only public names are used (`folkrnn.sample.sample`, `SampleConfig`, the CLI).
"""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch

from folkrnn.checkpoint import save_checkpoint
from folkrnn.cli import main
from folkrnn.model import FolkRNN, ModelConfig
from folkrnn.sample import SampleConfig, sample
from folkrnn.vocab import EOS, Vocabulary

V2 = Vocabulary.v2()
# The tokens the bias model can emit and their probabilities at the test's temperature.
SUPPORT = ("A", "B", "c", "|", EOS)
TARGET = np.array([0.3, 0.25, 0.2, 0.15, 0.1])
OFF = -1e4  # every other token: probability exp(-1e4 / T) = 0 in float64


def bias_model(bias: np.ndarray) -> FolkRNN:
    """A tiny v2 model whose logits are `bias` (137,) at every step."""
    torch.manual_seed(0)
    m = FolkRNN(ModelConfig(hidden_size=8, num_layers=1))
    with torch.no_grad():
        m.out.weight.zero_()
        m.out.bias.copy_(torch.from_numpy(bias))
    return m.eval()


def bias_for(probs: np.ndarray, temperature: float) -> np.ndarray:
    """The bias b with softmax(b / T) = probs on SUPPORT (and 0 elsewhere)."""
    b = np.full(len(V2), OFF)
    for tok, p in zip(SUPPORT, probs):
        b[V2[tok]] = temperature * math.log(p)
    return b


def chi2_sf_even(x: float, df: int) -> float:
    """P(chi-square with even `df` degrees of freedom > x), in closed form:
    exp(-x/2) * sum_{i < df/2} (x/2)^i / i!."""
    assert df % 2 == 0
    h = x / 2
    return math.exp(-h) * sum(h**i / math.factorial(i) for i in range(df // 2))


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_sampled_frequencies_follow_softmax_of_bias_over_t(temperature):
    model = bias_model(bias_for(TARGET, temperature))
    cfg = SampleConfig(num_tunes=800, seed=12, temperature=temperature, max_length=1000)
    counts: Counter[str] = Counter()
    for t in sample(model, V2, cfg):
        assert not t.truncated  # P(1000 tokens without </s>) = 0.9 ** 1000
        counts.update(t.tokens)
        counts[EOS] += 1
    assert set(counts) <= set(SUPPORT), set(counts) - set(SUPPORT)
    n = sum(counts.values())
    observed = np.array([counts[tok] for tok in SUPPORT], dtype=float)
    expected = TARGET * n
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    # Seeded, so not flaky; a correct sampler sits near chi2 = 4 (its mean), a temperature
    # applied twice or not at all (softmax(b/T^2), softmax(b)) gives chi2 in the thousands.
    assert n > 4_000
    assert chi2_sf_even(chi2, len(SUPPORT) - 1) > 1e-4, (chi2, observed / n, TARGET)
    assert np.abs(observed / n - TARGET).max() < 0.02


def test_chi2_helper_matches_known_values():
    # Tabulated: P(chi2_4 > 9.488) = 0.05, P(chi2_2 > 5.991) = 0.05.
    assert chi2_sf_even(9.4877, 4) == pytest.approx(0.05, abs=1e-4)
    assert chi2_sf_even(5.9915, 2) == pytest.approx(0.05, abs=1e-4)


def _expected_alternatives(bias: np.ndarray, temperature: float, k: int) -> list[tuple[str, float]]:
    """Top-k of softmax(b / T) with `<s>` excluded, in float64 from the float32 bias."""
    z = torch.from_numpy(bias).float().double().numpy() / temperature
    z[V2.bos] = -np.inf
    p = np.exp(z - z.max())
    p /= p.sum()
    order = np.argsort(-p, kind="stable")[:k]
    return [(V2.tokens[i], float(p[i])) for i in order]


def _check_alternatives(steps, want):
    for step in steps:
        assert [tok for tok, _ in step] == [tok for tok, _ in want]
        for (_, got), (_, p) in zip(step, want):
            assert abs(got - p) <= 5e-7  # written to 6 decimals


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_alternatives_are_softmax_of_logits_over_t(temperature):
    # Spread-out probabilities at T = 1, so the top three differ at every temperature.
    probs = np.array([0.4, 0.3, 0.15, 0.1, 0.05])
    bias = bias_for(probs, 1.0)
    model = bias_model(bias)
    want = _expected_alternatives(bias, temperature, 3)
    # The expected values themselves: softmax(log(p) / T) renormalised on the support.
    q = probs ** (1 / temperature)
    assert [p for _, p in want] == pytest.approx(sorted(q / q.sum(), reverse=True)[:3], abs=1e-6)
    tunes = list(sample(model, V2, SampleConfig(num_tunes=3, seed=5, temperature=temperature, alternatives=3)))
    for t in tunes:
        assert len(t.alternatives) == t.length
        _check_alternatives(t.alternatives, want)


def test_cli_alternatives_are_softmax_of_logits_over_t(tmp_path, capsys):
    probs = np.array([0.4, 0.3, 0.15, 0.1, 0.05])
    bias = bias_for(probs, 1.0)
    ckpt = tmp_path / "bias.safetensors"
    save_checkpoint(ckpt, bias_model(bias), V2)
    out = tmp_path / "tunes.jsonl"
    args = ["generate", "-m", str(ckpt), "-n", "2", "--seed", "4", "--temperature", "0.7", "-f", "json",
            "--alternatives", "4", "--no-progress", "-o", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert len(rows) == 2
    want = _expected_alternatives(bias, 0.7, 4)
    for row in rows:
        assert len(row["alternatives"]) == len(row["tokens"]) + (1 if row["ended"] else 0)
        # `generate` opens every tune with a meter and a key (M:* K:*): those two steps are
        # drawn among meter / key tokens only; the free steps after them are softmax(z/T).
        assert row["tokens"][0].startswith("M:") and row["tokens"][1].startswith("K:")
        assert all(tok.startswith("M:") for tok, _ in row["alternatives"][0])
        _check_alternatives(row["alternatives"][2:], want)
