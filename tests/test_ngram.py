"""Tests of the n-gram baseline (interpolated modified Kneser-Ney)."""

from __future__ import annotations

import json
import math
import random
from fractions import Fraction

import pytest

from folkrnn.cli import main
from folkrnn.datafile import write_tunes
from folkrnn.errors import FolkRNNError
from folkrnn.ngram import NGramModel, RawCounts, parse_orders, sweep
from folkrnn.vocab import Vocabulary

V2 = Vocabulary.v2()


def _corpus(seed: int = 0, n: int = 12):
    rng = random.Random(seed)
    notes = "C D E F G A B c d e".split()
    tunes = []
    for _ in range(n):
        meter = rng.choice(["M:4/4", "M:6/8"])
        body = []
        for _ in range(rng.randint(3, 6)):
            body += [rng.choice(notes) for _ in range(rng.randint(2, 5))] + [rng.choice(["|", "|", ":|", "2"])]
        tunes.append([meter, rng.choice(["K:Cmaj", "K:Cdor"]), *body])
    return tunes


def _contexts(tunes, order):
    """Every context the model meets on these tunes, plus some it never saw."""
    out = set()
    for t in tunes:
        s = ["<s>", *t, "</s>"]
        for i in range(1, len(s)):
            out.add(tuple(s[max(0, i - order + 1) : i]))
    out |= {("z", "z", "z")[: order - 1], ("<s>", "M:3/2")[: order - 1], ()}
    return sorted(out)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_each_context_sums_to_one_exactly(order):
    tunes = _corpus()
    m = NGramModel.train(tunes, order=order, exact=True)
    for ctx in _contexts(tunes, order):
        probs = m.distribution(list(ctx))
        assert all(isinstance(p, Fraction) and p > 0 for p in probs)
        assert sum(probs) == 1, ctx


def test_float_model_agrees_with_exact_model():
    tunes = _corpus(1)
    exact = NGramModel.train(tunes, order=3, exact=True)
    flt = NGramModel.train(tunes, order=3)
    for ctx in _contexts(tunes, 3)[:40]:
        for a, b in zip(exact.distribution(list(ctx)), flt.distribution(list(ctx))):
            assert float(a) == pytest.approx(b, rel=1e-12)


def test_unseen_tokens_get_nonzero_probability():
    m = NGramModel.train(_corpus(), order=4)
    for tok in ["^f'", "(9", "M:3/2", "16", "<s>"]:
        assert m.prob(tok, ["<s>", "M:4/4", "K:Cmaj"]) > 0
        assert m.prob(tok, []) > 0


def test_discounts_are_in_range():
    m = NGramModel.train(_corpus(2, 40), order=4)
    for k in range(1, 5):
        d1, d2, d3 = m.discounts[k]
        assert 0 < d1 <= 1 and 0 < d2 <= 2 and 0 < d3 <= 3


def test_higher_order_helps_on_a_repetitive_corpus():
    phrase = "C D E F G A B c | c B A G F E D C |".split()
    rng = random.Random(3)
    tunes = [["M:4/4", "K:Cmaj", *phrase * rng.randint(2, 4)] for _ in range(30)]
    train, test = tunes[:25], tunes[25:]
    scores = dict(sweep(train, test, [1, 2, 3, 5]))
    nll = {k: s.nats_per_token for k, s in scores.items()}
    assert nll[1] > nll[2] > nll[3] >= nll[5] - 1e-9
    assert nll[3] < 0.5


def test_score_convention_predicts_every_token_after_bos():
    tunes = _corpus(4)
    m = NGramModel.train(tunes, order=3)
    s = m.score(tunes[:3])
    assert s.tunes == 3
    assert s.tokens == sum(len(t) + 1 for t in tunes[:3])  # body + M: + K: + </s>
    manual = 0.0
    for t in tunes[:3]:
        seq = ["<s>", *t, "</s>"]
        for i in range(1, len(seq)):
            manual -= math.log(m.prob(seq[i], seq[max(0, i - 2) : i]))
    assert s.nll_nats == pytest.approx(manual)
    assert s.bits_per_token == pytest.approx(s.nats_per_token / math.log(2))
    assert s.perplexity == pytest.approx(math.exp(s.nats_per_token))


def test_counts_frame_tunes_and_use_truncated_histories():
    raw = RawCounts([["M:2/4", "K:Cmaj", "C"]], 3, V2)
    # predicted tokens: M:, K:, C, </s>
    assert raw.tokens == 4 and sum(raw.counts[1].values()) == 4
    assert sum(raw.counts[3].values()) == 3  # no trigram ends at M: (only <s> before it)


def test_unknown_token_is_an_error():
    with pytest.raises(FolkRNNError, match="Q"):
        NGramModel.train([["M:4/4", "K:Cmaj", "Q"]], order=2)


def test_parse_orders():
    assert parse_orders("2-4,7") == [2, 3, 4, 7]
    for bad in ["0", "x", "3-", "13"]:
        with pytest.raises(FolkRNNError):
            parse_orders(bad)


def test_cli_ngram(tmp_path, capsys):
    train, test = tmp_path / "train.txt", tmp_path / "test.txt"
    tunes = _corpus(5, 30)
    write_tunes(train, tunes[:25])
    write_tunes(test, tunes[25:])
    out = tmp_path / "ngram.json"
    assert main(["ngram", str(train), "--test", str(test), "--order", "1-3", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "nats/token" in text and "<- best" in text
    data = json.loads(out.read_text())
    assert [o["order"] for o in data["orders"]] == [1, 2, 3]
    assert all(o["nll_nats_per_token"] > 0 and o["tokens"] == sum(len(t) + 1 for t in tunes[25:]) for o in data["orders"])


def test_cli_ngram_bad_order(tmp_path, capsys):
    f = tmp_path / "t.txt"
    write_tunes(f, _corpus(6, 3))
    assert main(["ngram", str(f), "--test", str(f), "--order", "zero"]) == 2
    assert "--order" in capsys.readouterr().err


def test_cli_ngram_split_and_network_beside(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from folkrnn.checkpoint import save_checkpoint
    from folkrnn.model import FolkRNN, ModelConfig
    from folkrnn.sample import score_tunes
    from folkrnn.train import TrainConfig, split_train_valid

    tunes = _corpus(8, 40)
    data = tmp_path / "data.txt"
    write_tunes(data, tunes)
    torch.manual_seed(0)
    model = FolkRNN(ModelConfig(hidden_size=8, num_layers=1, dropout=0.0))
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(ckpt, model, V2)
    out = tmp_path / "n.json"
    assert main(["ngram", str(data), "--split", "--order", "2", "-m", str(ckpt), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    _, va = split_train_valid(len(tunes), TrainConfig())
    held = [tunes[i] for i in va]
    assert res["test"]["tunes"] == len(held) and res["train"]["tunes"] == len(tunes) - len(held)
    expected = [s for s in score_tunes(model.eval(), V2, held)]
    nll = sum(s.total_nll for s in expected) / sum(len(s.logprobs) for s in expected)
    assert res["network"]["nll_nats_per_token"] == pytest.approx(nll, rel=1e-6)
    assert res["network"]["tokens"] == res["orders"][0]["tokens"]  # same tokens, same convention
    assert " net " in capsys.readouterr().out


def test_kneser_ney_by_hand_on_a_tiny_corpus():
    """Interpolated modified Kneser-Ney, order 2, worked out by hand (Chen & Goodman).

    Vocabulary <s> </s> a b c (V = 5). Tunes, framed:
        <s> a b a b </s>   <s> a b c </s>   <s> c a b </s>   <s> a b a </s>
    """
    vocab = Vocabulary(["<s>", "</s>", "a", "b", "c"])
    tunes = [["a", "b", "a", "b"], ["a", "b", "c"], ["c", "a", "b"], ["a", "b", "a"]]
    m = NGramModel.train(tunes, order=2, vocab=vocab, exact=True)
    F = Fraction

    # Order 2 (the top order) uses raw bigram counts:
    #   <s>a 3, <s>c 1, ab 5, ba 2, b</s> 2, bc 1, c</s> 1, ca 1, a</s> 1
    # count-of-counts n1 = 5 (<s>c bc c</s> ca a</s>), n2 = 2 (ba b</s>), n3 = 1 (<s>a), n4 = 0 (ab is 5)
    # Y = n1 / (n1 + 2 n2) = 5/9
    # D1 = 1 - 2 Y n2/n1 = 1 - 2 (5/9)(2/5) = 5/9
    # D2 = 2 - 3 Y n3/n2 = 2 - 3 (5/9)(1/2) = 7/6
    # D3+ = 3 - 4 Y n4/n3 needs a count of 4 (n4 = 0 here): no estimate, the fallback 3/2
    assert m.discounts[2] == (F(5, 9), F(7, 6), F(3, 2))

    # Order 1 uses continuation counts: the number of distinct left neighbours.
    #   a: <s>a ba ca -> 3;  b: ab -> 1;  c: bc <s>c -> 2;  </s>: b</s> c</s> a</s> -> 3
    # (plain counts would be a 6, b 5, c 2, </s> 4)
    # count-of-counts n1 = 1, n2 = 1, n3 = 2, n4 = 0; Y = 1/3
    # D1 = 1 - 2 (1/3)(1/1) = 1/3;  D2 = 2 - 3 (1/3)(2/1) = 0, not > 0: fallback 1;  D3+: fallback 3/2
    assert m.discounts[1] == (F(1, 3), F(1), F(3, 2))

    # P1(w) = (max(a(w) - D(a(w)), 0) + gamma / V) / 9, total 3 + 1 + 2 + 3 = 9,
    # gamma = D1 N1 + D2 N2 + D3 N3+ = 1/3 + 1 + (3/2) 2 = 13/3, gamma / V = 13/15
    #   P1(a) = (3 - 3/2 + 13/15) / 9 = (71/30) / 9 = 71/270 = P1(</s>)
    #   P1(b) = (1 - 1/3 + 13/15) / 9 = (23/15) / 9 = 23/135
    #   P1(c) = (2 - 1 + 13/15) / 9 = (28/15) / 9 = 28/135
    #   P1(<s>) = (13/15) / 9 = 13/135
    p1 = {"a": F(71, 270), "b": F(23, 135), "c": F(28, 135), "</s>": F(71, 270), "<s>": F(13, 135)}
    assert sum(p1.values()) == 1
    for w, p in p1.items():
        assert m.prob(w, []) == p, w
        # A context never seen (nothing follows </s>) hands its mass down unchanged.
        assert m.prob(w, ["</s>"]) == p, w

    # Context a: ab 5, a</s> 1 -> total 6; N1 = 1, N2 = 0, N3+ = 1
    # gamma(a) = 5/9 + 3/2 = 37/18
    #   P(b|a) = (5 - 3/2 + (37/18)(23/135)) / 6 = (7/2 + 851/2430) / 6 = (9356/2430) / 6 = 2339/3645
    #   P(</s>|a) = (1 - 5/9 + (37/18)(71/270)) / 6 = (2160/4860 + 2627/4860) / 6 = 4787/29160
    #   P(c|a) = (37/18)(28/135) / 6 = 259/3645
    #   P(a|a) = (37/18)(71/270) / 6 = 2627/29160
    #   P(<s>|a) = (37/18)(13/135) / 6 = 481/14580
    pa = {"b": F(2339, 3645), "</s>": F(4787, 29160), "c": F(259, 3645), "a": F(2627, 29160), "<s>": F(481, 14580)}
    assert sum(pa.values()) == 1
    for w, p in pa.items():
        assert m.prob(w, ["a"]) == p, w

    # Context b: ba 2, b</s> 2, bc 1 -> total 5; N1 = 1, N2 = 2; gamma(b) = 5/9 + 2 (7/6) = 26/9
    #   P(a|b) = (2 - 7/6 + (26/9)(71/270)) / 5 = (2025/2430 + 1846/2430) / 5 = 3871/12150
    #   P(c|b) = (1 - 5/9 + (26/9)(28/135)) / 5 = (540/1215 + 728/1215) / 5 = 1268/6075
    assert m.prob("a", ["b"]) == F(3871, 12150)
    assert m.prob("c", ["b"]) == F(1268, 6075)

    # Context <s> (raw counts too: nothing precedes it): <s>a 3, <s>c 1 -> total 4; gamma = 5/9 + 3/2 = 37/18
    #   P(a|<s>) = (3 - 3/2 + (37/18)(71/270)) / 4 = (7290/4860 + 2627/4860) / 4 = 9917/19440
    #   P(b|<s>) = (37/18)(23/135) / 4 = 851/9720
    assert m.prob("a", ["<s>"]) == F(9917, 19440)
    assert m.prob("b", ["<s>"]) == F(851, 9720)
    # The float model gives the same numbers.
    flt = NGramModel.train(tunes, order=2, vocab=vocab)
    assert flt.prob("b", ["a"]) == pytest.approx(2339 / 3645, rel=1e-12)
