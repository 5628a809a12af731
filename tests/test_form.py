"""--form: planned sections on top of --bars strict, closings chosen by resampling particles."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from folkrnn.errors import FolkRNNError
from folkrnn.evaluate import evaluate_tunes
from folkrnn.evaluate.tune import analyse_tune
from folkrnn.model import FolkRNN, ModelConfig
from folkrnn.sample import Form, SampleConfig, sample
from folkrnn.sample.form import _choose
from folkrnn.vocab import Vocabulary

V2 = Vocabulary.v2()


@pytest.fixture(scope="module")
def tiny() -> FolkRNN:
    """An untrained model that likes bar lines, section ends and </s>: left free, it ends its
    sections anywhere, so every 8-bar part below is the plan's doing."""
    torch.manual_seed(0)
    m = FolkRNN(ModelConfig(hidden_size=16, num_layers=1))
    with torch.no_grad():
        m.out.bias[V2.eos] += 4.0
        for t in ("|", ":|", "|:", "]"):
            m.out.bias[V2[t]] += 3.0
    return m.eval()


def _tunes(model, form: Form | None, n: int = 60, **kw):
    cfg = SampleConfig(num_tunes=n, seed=kw.pop("seed", 3), batch_size=kw.pop("batch_size", 32), form=form, **kw)
    return list(sample(model, V2, cfg))


def test_free_tiny_model_does_not_make_8_bar_parts(tiny):
    s = evaluate_tunes([t.tokens for t in _tunes(tiny, None, bars="strict")]).summary
    assert s["sections_8_bars"] < 0.3 and s["pattern_AABB"] < 0.2  # the control: the plan below is what does it


@pytest.mark.parametrize("endings", [0, 1, 2])
def test_aabb_gives_two_repeated_8_bar_parts_every_time(tiny, endings):
    tunes = _tunes(tiny, Form.parse("AABB", endings=endings))
    assert not any(t.truncated for t in tunes)
    ev = evaluate_tunes([t.tokens for t in tunes])
    s = ev.summary
    assert s["sections_8_bars"] == 1.0 and s["tunes_all_sections_8_bars"] == 1.0
    assert s["bars_right"] == 1.0 and s["repeats_ok"] == 1.0
    for r in ev.reports:
        assert len(r.sections) == 2 and all(sec.repeated and sec.bars == 8 for sec in r.sections)
        if endings:
            assert all(sec.endings == (endings, endings) for sec in r.sections)
    assert s["pattern_AABB"] >= 0.9  # B's notes differ from A's (labels are evaluate's similarity)
    assert s["tunes_with_pickup"] > 0  # pickups and their complements are planned as evaluate counts them


@pytest.mark.parametrize("spec, bars, want", [("AB", 8, [(8, False)] * 2), ("ABAC", 8, [(8, False)] * 4),
                                              ("AABBCC", 8, [(8, True)] * 3), ("AAB", 8, [(8, True), (8, False)]),
                                              ("ABB", 8, [(8, False), (8, True)]), ("AABB", 16, [(16, True)] * 2),
                                              ("AABB", 4, [(4, True)] * 2)])
def test_every_form_gives_its_sections(tiny, spec, bars, want):
    tunes = _tunes(tiny, Form.parse(spec, bars=bars, lookahead=min(2, bars - 1)), n=20)
    for t in tunes:
        r = analyse_tune(t.tokens)
        got = [(s.bars, s.repeated) for s in r.sections]
        assert got == want, " ".join(t.tokens)
        assert r.bars_right == r.bars and not r.repeat_errors


def test_tune_i_is_the_same_whatever_the_batch_and_the_count(tiny):
    f = Form.parse("AABB")
    one = [t.tokens for t in _tunes(tiny, f, n=5, batch_size=1, seed=9)]
    many = [t.tokens for t in _tunes(tiny, f, n=8, batch_size=3, seed=9)][:5]
    assert one == many
    assert [t.tokens for t in _tunes(tiny, f, n=5, batch_size=1, seed=10)] != one


def test_primes_are_kept_and_checked_against_the_plan(tiny):
    tunes = _tunes(tiny, Form.parse("AABB"), n=4, prime=("M:6/8", "K:Cdor", "|:"))
    assert all(t.tokens[:3] == ["M:6/8", "K:Cdor", "|:"] for t in tunes)
    with pytest.raises(FolkRNNError, match="does not fit form"):
        _tunes(tiny, Form.parse("AB"), n=1, prime=("M:6/8", "K:Cdor", "|:"))  # AB repeats nothing


def test_logprob_is_the_models_own(tiny):
    """Tune.logprob is the model's log-probability of the tokens chosen (temperature 1, no masks)."""
    from folkrnn.sample import score_tunes

    tunes = _tunes(tiny, Form.parse("AABB"), n=3)
    scored = score_tunes(tiny, V2, [t.tokens for t in tunes])
    for t, s in zip(tunes, scored):
        assert t.logprob == pytest.approx(float(np.sum(s.logprobs)), abs=1e-3)


def test_resampling_keeps_a_particle_in_proportion_to_its_weight():
    class R:
        def __init__(self, w):
            self.logw, self.ids = w, [5]

    members = [(R(np.log(0.1)), None, None, False), (R(np.log(0.3)), None, None, False), (R(np.log(0.6)), None, None, False)]
    picks = np.bincount([_choose(members, 0, seed, (0, 0)) for seed in range(3000)], minlength=3) / 3000
    assert np.allclose(picks, [0.1, 0.3, 0.6], atol=0.03)
    capped = [(R(0.0), None, None, True), (R(np.log(1e-9)), None, None, False)]  # one hit the length cap
    assert {_choose(capped, 0, s, (0, 0)) for s in range(50)} == {1}


def test_candidates_choose_better_closings_than_forcing(tiny):
    """The particles' weight is the model's probability of closing where the plan closes: with
    more of them the kept closings are more probable under the model than forced ones."""
    forced = _tunes(tiny, Form.parse("AABB", candidates=1), n=40, seed=4)
    chosen = _tunes(tiny, Form.parse("AABB", candidates=8), n=40, seed=4)

    def per_token(ts):
        return sum(t.logprob for t in ts) / sum(t.length for t in ts)

    assert per_token(chosen) > per_token(forced)


def test_bad_forms_are_one_line_errors():
    for spec, msg in (("AAAB", "once or twice"), ("A1", "letters"), ("BA", "first part is A"), ("", "letters")):
        with pytest.raises(FolkRNNError, match=msg):
            Form.parse(spec)
    with pytest.raises(FolkRNNError, match="endings"):
        Form.parse("AB", endings=1)
    with pytest.raises(FolkRNNError, match="form-bars"):
        Form.parse("AABB", bars=1)
    with pytest.raises(FolkRNNError, match="lookahead"):
        Form.parse("AABB", lookahead=8)
    with pytest.raises(FolkRNNError, match="beam"):
        SampleConfig(beam_width=2, form=Form.parse("AABB"))
    assert SampleConfig(form=Form.parse("AABB")).bars == "strict"


def test_cli_form(tmp_path):
    def run(*a):
        return subprocess.run([sys.executable, "-m", "folkrnn", "generate", *a], capture_output=True, text=True)

    r = run("--form-bars", "4")
    assert r.returncode == 2 and "needs --form" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run("--form", "AAAB")
    assert r.returncode == 2 and "once or twice" in r.stderr
    r = run("--form", "AABB", "--endings", "1", "-n", "2", "-s", "1", "--meter", "6/8", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("|1") == 4 and "--form AABB --endings 1" in r.stdout  # the comment says how to make it again
