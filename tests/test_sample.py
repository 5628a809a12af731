"""Sampler, beam search and scoring: equivalences (fused / explicit / stepper, batched / one at a
time, beam / brute force, scores / sampling log-probabilities) and option validation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from folkrnn.errors import FolkRNNError
from folkrnn.model import FolkRNN, ModelConfig
from folkrnn.sample import (
    SampleConfig, Stepper, beam_search, compile_prime, draw, filter_logits, make_prime, sample, score_tunes, uniforms,
)
from folkrnn.tokens import METERS
from folkrnn.vocab import Vocabulary

V2 = Vocabulary.v2()


def _randomise_initial_state(m: FolkRNN, scale: float = 0.5) -> FolkRNN:
    with torch.no_grad():
        for layer in m.layers:
            layer.c0.normal_(0, scale)
            layer.h0.uniform_(-scale, scale)
    return m.eval()


@pytest.fixture(scope="module")
def tiny() -> FolkRNN:
    torch.manual_seed(0)
    m = FolkRNN(ModelConfig(hidden_size=16, num_layers=2))
    with torch.no_grad():
        m.out.bias[V2.eos] += 3.0  # tunes end after a few dozen tokens
        m.out.weight.mul_(3.0)  # peakier distributions: a sharper test of equivalences
    return _randomise_initial_state(m)


def test_fused_explicit_and_stepper_agree_full_v2():
    torch.manual_seed(1)
    m = _randomise_initial_state(FolkRNN(ModelConfig()))
    with torch.no_grad():  # config5's init leaves the biases zero (but f): a path that drops or misorders one would pass
        for layer in m.layers:
            layer.bias.uniform_(-1, 1)
        m.out.bias.uniform_(-2, 2)
    ids = torch.randint(0, 137, (2, 16))
    with torch.no_grad():
        fused, (hf, cf) = m(ids)[0], m.hidden(ids)[1]
        explicit, (he, ce) = m.run_explicit(ids)
        step = Stepper(m)
        state = step.initial_state(2)
        stepped = []
        for t in range(ids.shape[1]):
            logits, state = step(ids[:, t], state)
            stepped.append(logits)
        stepped = torch.stack(stepped, 1)
    prob = lambda z: torch.softmax(z.double(), -1)  # noqa: E731
    assert (prob(fused) - prob(explicit)).abs().max() <= 1e-5
    assert (prob(fused) - prob(stepped)).abs().max() <= 1e-5
    assert (hf - state[0]).abs().max() <= 1e-5 and (cf - state[1]).abs().max() <= 1e-5
    assert (he - hf).abs().max() <= 1e-5 and (ce - cf).abs().max() <= 1e-5


def _toks(tunes):
    return [(t.tokens, t.truncated) for t in tunes]


def test_batched_equals_one_at_a_time(tiny):
    cfg = dict(num_tunes=9, seed=11, max_length=60, temperature=1.3, prime=("M:6/8", "*"))
    one = list(sample(tiny, V2, SampleConfig(batch_size=1, **cfg)))
    for bs in (2, 4, 9, 64):
        many = list(sample(tiny, V2, SampleConfig(batch_size=bs, **cfg)))
        assert _toks(many) == _toks(one), bs
        assert [t.logprob for t in many] == pytest.approx([t.logprob for t in one], abs=1e-4)
    assert [t.index for t in one] == list(range(9))
    assert len({tuple(t.tokens) for t in one}) > 5  # really random
    # the first tunes do not depend on how many are asked for
    assert _toks(sample(tiny, V2, SampleConfig(batch_size=4, **dict(cfg, num_tunes=3)))) == _toks(one[:3])


def test_seed_controls_the_tunes(tiny):
    a = _toks(sample(tiny, V2, SampleConfig(num_tunes=4, seed=1, max_length=50)))
    assert a == _toks(sample(tiny, V2, SampleConfig(num_tunes=4, seed=1, max_length=50)))
    assert a != _toks(sample(tiny, V2, SampleConfig(num_tunes=4, seed=2, max_length=50)))


def test_draw_follows_the_distribution():
    logits = np.array([[2.0, 1.0, 0.0, -1.0, -np.inf]])
    n = 40_000
    u = uniforms(5, np.arange(n), np.zeros(n, dtype=np.int64))
    picks = draw(np.repeat(logits, n, 0), u)
    freq = np.bincount(picks, minlength=5) / n
    p = np.exp(logits[0]) / np.exp(logits[0]).sum()
    assert freq[4] == 0
    assert np.abs(freq - p).max() < 0.01  # ~4 standard errors
    assert abs(u.mean() - 0.5) < 0.01 and abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.02


def test_filter_logits():
    z = np.array([[3.0, 2.0, 1.0, 0.0], [0.0, 0.0, 5.0, -1.0]])
    assert np.isfinite(filter_logits(z, 2, None)).tolist() == [[True, True, False, False], [True, True, True, False]]
    kept = np.isfinite(filter_logits(z, None, 0.85)).tolist()  # masses .64 .24 .09 .03
    assert kept[0] == [True, True, False, False] and kept[1] == [False, False, True, False]
    assert np.isfinite(filter_logits(z, None, 1.0)).all()
    # ties at the k-th value are all kept (no arbitrary order among equals)
    assert np.isfinite(filter_logits(np.array([[1.0, 1.0, 1.0, 0.0]]), 2, None)).sum() == 3


def _greedy(model, vocab, prefix: list[str], max_length: int) -> list[str]:
    ids = [vocab.bos] + vocab.encode(prefix)
    out = list(prefix)
    with torch.no_grad():
        while len(out) < max_length:
            logits = model(torch.tensor([ids]))[0][0, -1]
            logits[vocab.bos] = -math.inf
            tok = int(logits.argmax())
            if tok == vocab.eos:
                break
            out.append(vocab.tokens[tok])
            ids.append(tok)
    return out


def test_top_k_1_and_tiny_top_p_are_greedy(tiny):
    greedy = _greedy(tiny, V2, ["M:4/4"], 40)
    for kw in ({"top_k": 1}, {"top_p": 1e-6}):
        t = list(sample(tiny, V2, SampleConfig(num_tunes=2, seed=3, max_length=40, prime=("M:4/4",), **kw)))
        assert t[0].tokens == greedy and t[1].tokens == greedy


def test_prime_wildcards_and_classes(tiny):
    prime = ("M:*", "K:Cdor", "|:", "*", "*", "G", "*")
    tunes = list(sample(tiny, V2, SampleConfig(num_tunes=12, seed=4, max_length=40, prime=prime)))
    for t in tunes:
        assert t.tokens[0] in METERS
        assert t.tokens[1:3] == ["K:Cdor", "|:"] and t.tokens[5] == "G"
        assert len(t.tokens) >= len(prime)  # </s> is never drawn inside the prime
    assert len({t.tokens[3] for t in tunes}) > 1


def test_make_prime_shortcuts_and_conflicts():
    assert make_prime(meter="M:9/8", mode="mixolydian") == ("M:9/8", "K:Cmix")
    assert make_prime(["M:6/8", "K:Cdor", "|:"], meter="6/8") == ("M:6/8", "K:Cdor", "|:")
    assert make_prime(["*", "*", "A"], mode="minor") == ("M:*", "K:Cmin", "A")
    with pytest.raises(FolkRNNError, match="conflicting options: --meter 6/8"):
        make_prime(["M:4/4", "K:Cmaj"], meter="6/8")
    with pytest.raises(FolkRNNError, match="conflicting options: --mode dorian"):
        make_prime(["M:4/4", "K:Cmaj"], mode="dorian")
    with pytest.raises(FolkRNNError, match="unknown meter"):
        make_prime(meter="5/4")
    with pytest.raises(FolkRNNError, match="unknown mode"):
        make_prime(mode="lydian")


def test_unknown_prime_tokens_listed_in_one_error():
    with pytest.raises(FolkRNNError, match="unknown token\\(s\\) in the prime: K:Gmaj Q"):
        compile_prime(V2, ["M:4/4", "K:Gmaj", "A", "Q", "Q"])


def test_length_cap_flags_truncation(tiny):
    tunes = list(sample(tiny, V2, SampleConfig(num_tunes=10, seed=5, max_length=6)))
    assert all(len(t.tokens) <= 6 for t in tunes)
    assert any(t.truncated for t in tunes)
    assert all(t.truncated == (len(t.tokens) == 6) for t in tunes)


def test_logprob_equals_score(tiny):
    tunes = [t for t in sample(tiny, V2, SampleConfig(num_tunes=8, seed=6, max_length=80, temperature=0.7)) if not t.truncated]
    assert tunes
    scored = list(score_tunes(tiny, V2, [t.tokens for t in tunes], batch_size=3))
    for t, s in zip(tunes, scored):
        assert s.tokens == t.tokens + ["</s>"]
        assert -s.total_nll == pytest.approx(t.logprob, abs=1e-3)
        assert s.mean_nll == pytest.approx(s.total_nll / len(s.logprobs))


def test_score_batched_equals_single(tiny):
    tunes = [t.tokens for t in sample(tiny, V2, SampleConfig(num_tunes=7, seed=7, max_length=50))]
    a = list(score_tunes(tiny, V2, tunes, batch_size=1))
    b = list(score_tunes(tiny, V2, tunes, batch_size=16, chunk=3))
    assert [s.index for s in b] == list(range(7))
    for x, y in zip(a, b):
        assert x.tokens == y.tokens and np.allclose(x.logprobs, y.logprobs, atol=1e-5)
    with pytest.raises(FolkRNNError, match="tune 2: unknown token"):
        list(score_tunes(tiny, V2, [["M:4/4", "K:Cmaj", "A"], ["M:4/4", "K:Cmaj", "H"]]))


def test_alternatives(tiny):
    t = next(sample(tiny, V2, SampleConfig(num_tunes=1, seed=8, max_length=30, alternatives=3, prime=("M:4/4", "K:Cmaj"))))
    assert len(t.alternatives) == t.length
    for step in t.alternatives:
        ps = [p for _, p in step]
        assert len(step) == 3 and ps == sorted(ps, reverse=True) and sum(ps) <= 1 + 1e-6


def test_beam_search_matches_brute_force():
    toks = ["<s>", "</s>", "A", "B", "C"]
    vocab = Vocabulary(toks)
    torch.manual_seed(2)
    m = _randomise_initial_state(FolkRNN(ModelConfig(vocab_size=5, hidden_size=8, num_layers=1)))
    with torch.no_grad():
        m.out.weight.mul_(4)
    L = 4
    # every sequence: up to L-1 body tokens then </s>, or L body tokens (truncated)
    seqs = []
    for n in range(L + 1):
        for body in itertools.product(["A", "B", "C"], repeat=n):
            ended = n < L
            ids = [0] + vocab.encode(body)
            tgt = vocab.encode(body) + ([1] if ended else [])
            with torch.no_grad():
                lp = torch.log_softmax(m(torch.tensor([ids]))[0][0].double(), -1)
            score = float(sum(lp[i, t] for i, t in enumerate(tgt)))
            seqs.append((not ended, -score, list(body)))
    best = sorted(seqs)[:5]
    found = beam_search(m, vocab, SampleConfig(num_tunes=5, beam_width=200, max_length=L))
    assert [t.tokens for t in found] == [b[2] for b in best]
    assert [t.logprob for t in found] == pytest.approx([-b[1] for b in best], abs=1e-5)
    # a narrow beam gives sequences in decreasing probability
    narrow = beam_search(m, vocab, SampleConfig(num_tunes=2, beam_width=2, max_length=L))
    assert narrow[0].logprob >= narrow[1].logprob


def test_beam_respects_prime(tiny):
    tunes = list(sample(tiny, V2, SampleConfig(num_tunes=2, beam_width=3, max_length=30, prime=("M:3/4", "*", "|:"))))
    assert len(tunes) == 2 and all(t.tokens[0] == "M:3/4" and t.tokens[2] == "|:" for t in tunes)


@pytest.mark.parametrize("kw, msg", [
    ({"temperature": 0}, "temperature must be > 0"),
    ({"temperature": -1}, "temperature must be > 0"),
    ({"num_tunes": 0}, "number of tunes must be >= 1"),
    ({"top_k": 0}, "top-k must be >= 1"),
    ({"top_p": 0}, "top-p must be in"),
    ({"top_p": 1.5}, "top-p must be in"),
    ({"max_length": 0}, "length cap"),
    ({"beam_width": 2, "num_tunes": 3}, "at most its width"),
    ({"beam_width": 2, "top_k": 3}, "conflicts with top-k"),
    ({"prime": ("A", "</s>")}, "may not contain </s>"),
    ({"prime": ("A",) * 10, "max_length": 5}, "not fewer than the length cap"),
])
def test_config_validation(kw, msg):
    with pytest.raises(FolkRNNError, match=msg):
        SampleConfig(**kw)


def test_streams_lazily(tiny):
    gen = sample(tiny, V2, SampleConfig(num_tunes=100_000, seed=9, max_length=20, batch_size=8))
    first = next(gen)  # would take minutes if all 100,000 were made first
    assert first.index == 0
    gen.close()


@pytest.mark.parametrize("precision, tol", [("bf16", 0.05), ("int8", 0.1)])
def test_reduced_precision_stays_close(precision, tol):
    torch.manual_seed(3)
    m = _randomise_initial_state(FolkRNN(ModelConfig(hidden_size=64, num_layers=2)), 0.1)
    ids = torch.randint(0, 137, (4, 30))
    ref, low = Stepper(m), Stepper(m, precision)
    sr, sl = ref.initial_state(4), low.initial_state(4)
    worst = 0.0
    with torch.no_grad():
        for t in range(ids.shape[1]):
            lr, sr = ref(ids[:, t], sr)
            ll, sl = low(ids[:, t], sl)
            worst = max(worst, float((torch.softmax(lr, -1) - torch.softmax(ll, -1)).abs().max()))
    assert 0 < worst < tol  # different arithmetic, close distributions
    tunes = list(sample(m, V2, SampleConfig(num_tunes=3, seed=1, max_length=30, precision=precision)))
    assert len(tunes) == 3
    with pytest.raises(FolkRNNError, match="precision must be one of"):
        SampleConfig(precision="fp8")


def test_auto_threads():
    from folkrnn.sample import auto_threads

    assert auto_threads(1) == 1 and auto_threads(16) == 1
    assert auto_threads(512) in (1, None)  # 1 only when the machine is busy


def test_abc_prime_reads_a_file_a_numbered_tune_or_text(tmp_path, monkeypatch):
    """The one prime reader (`generate --prime-abc` and the studio): files and FILE:X only
    when asked, one tune or a named one, the tonic of its K:, the menus' header."""
    from folkrnn.sample import Menus, abc_prime

    f = tmp_path / "two.abc"
    f.write_text("X:3\nM:6/8\nL:1/8\nK:D\nA\n\nX:7\nM:3/4\nL:1/8\nK:Bb\nB\n")
    monkeypatch.chdir(tmp_path)
    assert abc_prime("two.abc:7", files=True) == (abc := abc_prime("X:1\nM:3/4\nL:1/8\nK:Bb\nB"))
    assert abc.tokens == ("M:3/4", "K:Cmaj", "c") and abc.tonic == "Bb"
    with pytest.raises(FolkRNNError, match=r"^--prime-abc two.abc: 2 tunes \(X: 3, 7\); .* two.abc:3"):
        abc_prime("two.abc", where="--prime-abc", files=True)
    with pytest.raises(FolkRNNError, match="no tune with X:5"):
        abc_prime("two.abc:5", files=True)
    with pytest.raises(FolkRNNError, match="holds 2 tunes"):
        abc_prime(f.read_text(), menus=Menus())
    with pytest.raises(FolkRNNError, match="no such file"):
        abc_prime("missing.abc", files=True)
    with pytest.raises(FolkRNNError, match="no tune found"):
        abc_prime("two.abc")  # text, never a file name, unless files=True
    # a missing header comes from the menus; the user's lines are named as typed
    assert abc_prime("|: A", menus=Menus("6/8", "dorian", "D")) == abc_prime("M:6/8\nK:Ddor\n|: A")
    assert abc_prime("GAB", menus=Menus(key="G")).tokens == ("M:*", "K:*", "c", "d", "e")
    with pytest.raises(FolkRNNError, match=r"line 3\b"):
        abc_prime("T:t\nK:G\nH9", menus=Menus())


@pytest.mark.parametrize("extra", [{}, {"bars": "strict"}, {"form": "AABB"}])
def test_a_shard_of_a_run_is_the_same_tunes(extra):
    """SampleConfig(first=k): tunes k, k+1... exactly as a run from 0 makes them (torchrun shards)."""
    from folkrnn.model import FolkRNN, ModelConfig
    from folkrnn.sample import Form, SampleConfig, sample
    from folkrnn.vocab import Vocabulary

    v = Vocabulary.v2()
    torch.manual_seed(3)
    m = FolkRNN(ModelConfig(hidden_size=16, num_layers=1)).eval()
    with torch.no_grad():
        m.out.bias[v.eos] += 3.0
        m.out.bias[v["|"]] += 2.0
    kw = dict(extra)
    if "form" in kw:
        kw["form"] = Form.parse(kw["form"])
    whole = list(sample(m, v, SampleConfig(num_tunes=7, seed=5, batch_size=3, **kw)))
    shard = list(sample(m, v, SampleConfig(num_tunes=3, seed=5, batch_size=2, first=4, **kw)))
    assert [t.index for t in shard] == [4, 5, 6]
    assert [t.tokens for t in shard] == [t.tokens for t in whole[4:]]
    assert [t.logprob for t in shard] == pytest.approx([t.logprob for t in whole[4:]], rel=1e-8)
