"""The fast step (`folkrnn.sample.Stepper`) at batch 1, the studio's and `generate -n 1`'s path:
its logits and state against the fused kernel over hundreds of steps on a v2-size model,
its tunes against the hooked (reference) step and against bigger batches, and its
per-thread scratch buffers under two threads."""

from __future__ import annotations

import threading

import pytest
import torch

from folkrnn.model import FolkRNN, ModelConfig
from folkrnn.sample import SampleConfig, Stepper, sample
from folkrnn.vocab import Vocabulary

V2 = Vocabulary.v2()


@pytest.fixture(scope="module")
def v2_size() -> FolkRNN:
    """A random model of v2's size (137 x 512 x 3) with every bias and initial state
    non-zero, so that a path that drops or misorders one fails."""
    torch.manual_seed(21)
    m = FolkRNN(ModelConfig())
    with torch.no_grad():
        for layer in m.layers:
            layer.bias.uniform_(-1, 1)
            layer.c0.normal_(0, 0.5)
            layer.h0.uniform_(-0.5, 0.5)
        m.out.bias.uniform_(-2, 2)
    return m.eval()


@pytest.mark.parametrize("batch", [1, 3])
def test_stepper_equals_fused_kernel_over_300_steps(v2_size, batch):
    """Logits at every one of 300 steps and the final state, against the fused kernel run
    over the whole sequence (teacher-forced: the same inputs), within 1e-5 in float32."""
    g = torch.Generator().manual_seed(batch)
    ids = torch.randint(0, 137, (batch, 300), generator=g)
    step = Stepper(v2_size)
    with torch.inference_mode():
        fused, _ = v2_size(ids)
        _, (hf, cf) = v2_size.hidden(ids)
        state, stepped = step.initial_state(batch), []
        for t in range(ids.shape[1]):
            logits, state = step(ids[:, t], state)
            stepped.append(logits)
    worst_logit = float((torch.stack(stepped, 1) - fused).abs().max())
    worst_state = max(float((hf - state[0]).abs().max()), float((cf - state[1]).abs().max()))
    assert worst_logit <= 1e-5 and worst_state <= 1e-5, (worst_logit, worst_state)


def _toks(tunes):
    return [(t.index, t.tokens, t.truncated) for t in tunes]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batch_1_tunes_equal_the_reference_step_and_bigger_batches(v2_size, seed):
    cfg = dict(num_tunes=2, seed=seed, max_length=80, temperature=1.2)
    one = list(sample(v2_size, V2, SampleConfig(batch_size=1, **cfg)))
    reference = list(sample(v2_size, V2, SampleConfig(batch_size=1, **cfg), hooks=[]))  # the hooked step's cell
    batched = list(sample(v2_size, V2, SampleConfig(batch_size=2, **cfg)))
    assert _toks(one) == _toks(reference) == _toks(batched)
    assert [t.logprob for t in one] == pytest.approx([t.logprob for t in reference], abs=1e-4)
    assert all(len(t.tokens) > 10 for t in one)


def test_one_stepper_stepped_from_two_threads(v2_size):
    """The studio steps one Stepper from several threads: each has its own scratch."""
    step = Stepper(v2_size)
    ids = torch.randint(0, 137, (2, 60), generator=torch.Generator().manual_seed(5))

    def run(row: int, batch: int) -> torch.Tensor:
        with torch.inference_mode():
            state, out = step.initial_state(batch), []
            for t in range(ids.shape[1]):
                logits, state = step(ids[row, t].repeat(batch), state)
                out.append(logits[0].clone())
            return torch.stack(out)

    alone = [run(0, 1), run(1, 4)]
    together: list = [None, None]
    threads = [threading.Thread(target=lambda r=r, b=b: together.__setitem__(r, run(r, b))) for r, b in ((0, 1), (1, 4))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert torch.equal(together[0], alone[0]) and torch.equal(together[1], alone[1])
