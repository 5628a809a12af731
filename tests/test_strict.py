"""--bars strict: the BarGuard keeps every bar right by rhythm's (evaluate's) rules, never dead-ends."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from folkrnn import rhythm as R
from folkrnn.errors import FolkRNNError
from folkrnn.evaluate import evaluate_tunes
from folkrnn.model import FolkRNN, ModelConfig
from folkrnn.sample import SampleConfig, sample
from folkrnn.sample.strict import BarGuard
from folkrnn.vocab import Vocabulary

V2 = Vocabulary.v2()


def _walk(rng: np.random.Generator, max_tokens: int = 3000, unmarked: bool = False) -> list[str]:
    """A random tune drawn uniformly among what the guard allows (bar marks and </s> favoured)."""
    g, toks = BarGuard(V2, unmarked_boundaries=unmarked), []
    while True:
        ids = np.flatnonzero(g.allowed())
        assert len(ids), f"dead end after {' '.join(toks)}"
        w = np.ones(len(ids))
        for j, i in enumerate(ids):
            t = V2.tokens[i]
            if t == "</s>":
                w[j] = len(ids) * 0.5 if len(toks) > 60 else 0.05
            elif t in R.REPEAT_START + R.REPEAT_END + R.ENDING_1 + R.ENDING_2 or t == "|":
                w[j] = 5.0
            elif t == "]":
                w[j] = 20.0
        i = int(rng.choice(ids, p=w / w.sum()))
        g.advance(i, check=False)
        if i == V2.eos:
            return toks
        toks.append(V2.tokens[i])
        assert len(toks) < max_tokens


def test_random_walks_under_the_guard_have_every_bar_right():
    rng = np.random.default_rng(0)
    tunes = [_walk(rng, unmarked=k % 2 == 1) for k in range(60)]
    ev = evaluate_tunes(tunes)
    s = ev.summary
    assert s["bars_right"] == 1.0 and s["tunes_all_bars_right"] == 1.0
    assert s["repeats_ok"] == 1.0 and s["stray_tokens_per_tune"] == 0
    verdicts = {b.verdict for t in tunes for b in R.layout(R.scan(t)).bars}
    assert verdicts == {"full", "pickup", "complement"}  # the walks do exercise pickups and complements
    assert sum(len(R.layout(R.scan(t)).splits) for t in tunes) > 0  # ... and unmarked section boundaries


@pytest.fixture(scope="module")
def tiny() -> FolkRNN:
    torch.manual_seed(0)
    m = FolkRNN(ModelConfig(hidden_size=16, num_layers=1))
    with torch.no_grad():
        m.out.bias[V2.eos] += 4.0  # an untrained model: let tunes end once the guard allows it,
        for t in ("|", ":|", "|:", "]"):  # and chords close before they hold the whole keyboard
            m.out.bias[V2[t]] += 3.0
    return m.eval()


def test_strict_sampling_gives_every_bar_right_on_200_tunes(tiny):
    cfg = SampleConfig(num_tunes=200, seed=3, max_length=1000, batch_size=64, bars="strict")
    tunes = list(sample(tiny, V2, cfg))
    assert not any(t.truncated for t in tunes)
    s = evaluate_tunes([t.tokens for t in tunes]).summary
    assert s["tunes"] == 200 and s["bars_right"] == 1.0 and s["tunes_all_bars_right"] == 1.0
    assert s["repeats_ok"] == 1.0 and s["stray_tokens_per_tune"] == 0
    assert s["bars"] >= 1000 and len({t.tokens[0] for t in tunes}) >= 5  # real work: many bars, many meters
    assert s["tunes_with_pickup"] > 0


def test_strict_sampling_is_batch_independent_and_keeps_primes(tiny):
    one = [t.tokens for t in sample(tiny, V2, SampleConfig(num_tunes=6, seed=5, batch_size=1, bars="strict",
                                                            prime=("M:6/8", "K:Cdor", "|:")))]
    many = [t.tokens for t in sample(tiny, V2, SampleConfig(num_tunes=6, seed=5, batch_size=4, bars="strict",
                                                             prime=("M:6/8", "K:Cdor", "|:")))]
    assert one == many and all(t[:3] == ["M:6/8", "K:Cdor", "|:"] for t in one)


def test_a_prime_that_breaks_the_bars_is_refused(tiny):
    with pytest.raises(FolkRNNError, match="strict"):
        list(sample(tiny, V2, SampleConfig(num_tunes=1, seed=1, bars="strict", prime=("M:4/4", "K:Cmaj", "C", "9"))))
    with pytest.raises(FolkRNNError, match="bars"):
        SampleConfig(bars="loose")
    with pytest.raises(FolkRNNError, match="beam"):
        SampleConfig(beam_width=2, bars="strict")


def test_the_guard_reads_bars_as_rhythm_does():
    g = BarGuard(V2)
    for t in "M:4/4 K:Cmaj C 8 | [ C E ] 2 (3 c d e c 2> d".split():  # 2 + 2 + 3 + 1/2 = 7.5 of 8
        g.advance(V2[t])
    ok = g.allowed()
    assert ok[V2["2"]] and ok[V2["/2"]]  # d lasts 1 (2 x 1/2): a full bar; d /2: 1/4, 3/4 left to fill
    assert not ok[V2["3"]] and not ok[V2["4"]] and not ok[V2["</s>"]] and not ok[V2["|1"]]
    g = BarGuard(V2)
    for t in "M:4/4 K:Cmaj [ C E".split():  # no bar line inside a chord, nor inside a tuplet
        g.advance(V2[t])
    assert not g.allowed()[V2["|"]] and not g.allowed()[V2["z"]]
