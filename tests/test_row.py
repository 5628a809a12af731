"""RowDraw, one tune's token decision, is the batched sampler's: tune i token for token."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from folkrnn.errors import FolkRNNError
from folkrnn.model import FolkRNN, ModelConfig
from folkrnn.sample import Form, RowDraw, SampleConfig, Stepper, sample
from folkrnn.sample.types import tune_type
from folkrnn.vocab import Vocabulary

V2 = Vocabulary.v2()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(5)
    m = FolkRNN(ModelConfig(hidden_size=24, num_layers=2))
    with torch.no_grad():  # bar lines and endings often enough for tunes to close under --bars strict
        m.out.bias[V2.eos] += 2.0
        for t in ("|", ":|", "|:"):
            m.out.bias[V2[t]] += 2.0
    return m.eval()


@torch.inference_mode()
def _row_tune(model, cfg, index):
    step = Stepper(model)
    d = RowDraw(V2, cfg, index)
    state, inp = step.initial_state(1), V2.bos
    while not d.done:
        logits, state = step(torch.tensor([inp]), state)
        tok = d(logits.numpy().astype(np.float64))
        if tok is None:
            break
        inp = tok
    return d.tune()


@pytest.mark.parametrize("kw", [
    dict(),
    dict(temperature=0.8, top_k=12, prime=("M:6/8", "K:*", "|:", "*", "G")),
    dict(bars="strict", temperature=0.9, max_length=90),  # short cap: the wrap-up near the cap is reached
    dict(bars="strict", top_p=0.9, prime=("M:4/4", "K:Cdor", "|:")),
    dict(logit_bias=tune_type("hornpipe").bias_vector(V2), prime=("M:4/4",), temperature=0.9),
    dict(bars="strict", logit_bias=tune_type("jig").bias_vector(V2, 2.0), prime=("M:6/8",)),
])
def test_row_draw_is_the_samplers_draw(model, kw):
    cfg = SampleConfig(num_tunes=4, seed=21, **{"max_length": 200, **kw})
    ref = list(sample(model, V2, cfg))
    assert len({tuple(t.tokens) for t in ref}) > 1  # the tunes differ: the index reaches the draw
    for i in range(4):
        t = _row_tune(model, cfg, i)
        assert t.tokens == ref[i].tokens and t.truncated == ref[i].truncated and t.index == i
        assert math.isclose(t.logprob, ref[i].logprob, rel_tol=1e-6, abs_tol=1e-6)  # batch 1 vs batch 4: float32 sums


def test_strict_rows_keep_the_bars_and_wrap_up(model):
    from folkrnn.evaluate import evaluate_tunes

    cfg = SampleConfig(seed=3, bars="strict", max_length=80)
    tunes = [_row_tune(model, cfg, i) for i in range(5)]
    assert evaluate_tunes([t.tokens for t in tunes]).summary["bars_right"] == 1.0
    free = [_row_tune(model, SampleConfig(seed=3, max_length=80), i) for i in range(5)]
    assert [t.tokens for t in free] != [t.tokens for t in tunes]


def test_row_draw_refuses_what_it_cannot_draw():
    with pytest.raises(FolkRNNError, match="particles"):
        RowDraw(V2, SampleConfig(form=Form.parse("AABB")), 0)
    with pytest.raises(FolkRNNError, match="unknown token"):
        RowDraw(V2, SampleConfig(prime=("H9",)), 0)
    d = RowDraw(V2, SampleConfig(bars="strict", prime=("M:4/4", "K:Cmaj", "|")), 0)
    z = np.zeros((1, len(V2)))
    assert [V2.tokens[d(z)] for _ in range(2)] == ["M:4/4", "K:Cmaj"]
    with pytest.raises(FolkRNNError, match="token '|' at position 3 breaks the bars of tune 1"):
        d(z)
    free = RowDraw(V2, SampleConfig(prime=("M:4/4", "K:Cmaj", "|")), 0)
    assert [V2.tokens[free(z)] for _ in range(3)] == ["M:4/4", "K:Cmaj", "|"]
