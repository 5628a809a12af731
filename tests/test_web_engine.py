"""The studio's engine: streamed generation = the library's sampler; prime checks; files; teacher forcing."""

from __future__ import annotations

import math
import threading

import pytest
import torch
from conftest import requires

from folkrnn.errors import FolkRNNError
from folkrnn.model import FolkRNN, ModelConfig
from folkrnn.sample import SampleConfig, Stepper, sample, score_tunes
from folkrnn.sample.types import tune_type
from folkrnn.vocab import Vocabulary
from folkrnn.web.engine import (
    Batcher,
    Cancelled,
    Compose,
    Job,
    TuneStream,
    command_line,
    compose_config,
    compose_shape,
    prime_tokens,
    token_probabilities,
    tune_abc,
    tune_midi,
    tune_wav,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(3)
    return FolkRNN(ModelConfig(hidden_size=24, num_layers=2)).eval()


@pytest.mark.parametrize("kw", [
    dict(),
    dict(temperature=0.7, prime=("M:6/8", "K:*", "|:", "*", "G")),
    dict(top_k=5, prime=("M:*", "K:Cdor")),
    dict(top_p=0.8, temperature=1.3),
    dict(bars="strict", temperature=0.9, prime=("M:6/8", "K:*")),
    dict(bars="strict", logit_bias=tune_type("jig").bias_vector(Vocabulary.v2(), 2.0), prime=("M:6/8",)),
])
def test_stream_is_the_samplers_tune(model, kw):
    v = Vocabulary.v2()
    cfg = SampleConfig(num_tunes=3, seed=11, max_length=120, **kw)
    ref = list(sample(model, v, cfg))
    step = Stepper(model)
    for i in range(3):
        s = TuneStream(step, v, SampleConfig(**{**cfg.__dict__, "batch_size": 1}), i)
        toks = list(s)
        assert toks == ref[i].tokens == s.tune.tokens
        assert s.tune.truncated == ref[i].truncated
        assert math.isclose(s.tune.logprob, ref[i].logprob, rel_tol=1e-6, abs_tol=1e-6)


def test_stream_stops_when_cancelled(model):
    v = Vocabulary.v2()
    cancel = threading.Event()
    s = TuneStream(Stepper(model), v, SampleConfig(seed=1, max_length=500), 0, cancel)
    it = iter(s)
    next(it)
    cancel.set()
    with pytest.raises(Cancelled, match="stopped after 1 tokens"):
        next(it)
    with pytest.raises(Cancelled):  # a deadline in the past
        list(TuneStream(Stepper(model), v, SampleConfig(seed=1), 0, deadline=0.0))


def test_prime_checks_name_the_problem():
    v = Vocabulary.v2()
    with pytest.raises(FolkRNNError, match="unknown token.*H9.*Zz"):
        compose_config(Compose(prime="|: H9 G Zz"), v, 1)
    with pytest.raises(FolkRNNError, match="unknown meter '5/4'"):
        compose_config(Compose(meter="5/4"), v, 1)
    with pytest.raises(FolkRNNError, match="unknown mode"):
        compose_config(Compose(mode="lydian"), v, 1)
    with pytest.raises(FolkRNNError, match="^prime: "):
        prime_tokens("K:C\n|: G & B", "abc")
    with pytest.raises(FolkRNNError, match="prime format"):
        prime_tokens("G", "midi")
    # an ABC prime is text, never a path: a file name is read as (bad) ABC
    assert prime_tokens("/etc/passwd", "tokens") == ("M:*", "K:*", "/etc/passwd")
    with pytest.raises(FolkRNNError, match="unknown token"):
        compose_config(Compose(prime="/etc/passwd"), v, 1)
    cfg = compose_config(Compose(meter="6/8", mode="minor", prime="|: GAB", prime_format="abc", seed=5), v, 5)
    assert cfg.prime == ("M:6/8", "K:Cmin", "|:", "G", "A", "B") and cfg.seed == 5


def test_command_line_makes_the_same_tune_with_the_cli(tmp_path, model):
    import shlex

    from folkrnn.checkpoint import save_checkpoint
    from folkrnn.cli import main
    from folkrnn.datafile import read_tunes

    v = Vocabulary.v2()
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, v)
    form = Compose(meter="6/8", prime="|: G", num_tunes=2, temperature=0.9, top_k=20, max_tokens=80)
    cmd = shlex.split(command_line(compose_config(form, v, 42), "C", str(path)))
    out = tmp_path / "t.txt"
    assert main(cmd[1:] + ["-f", "tokens", "-o", str(out), "--no-progress"]) == 0
    step = Stepper(model)
    cfg = compose_config(form, v, 42)
    mine = [list(TuneStream(step, v, cfg, i)) for i in range(2)]
    assert [list(t) for t in read_tunes(out, v)] == mine


def test_files_of_a_tune():
    toks = "M:6/8 K:Cdor |: G c c 2 B c d :| 2".split()  # a stray length at the end: left out
    abc, repairs = tune_abc(toks, key="D", title="Jig")
    assert repairs == ["repaired for ABC: dropped a length that follows no note"]
    assert "K:Ddor" in abc and "T:Jig" in abc and "% " + repairs[0] in abc
    mid = tune_midi(toks, key="D", tempo=120)
    assert mid.startswith(b"MThd")
    with pytest.raises(FolkRNNError):
        tune_abc(["G", "A"])


@requires("fluidsynth", "soundfont")
def test_wav_of_a_tune():
    wav = tune_wav("M:4/4 K:Cmaj C D E F | G 4 |".split(), tempo=160)
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE" and len(wav) > 10_000


def test_teacher_forcing_agrees_with_score_tunes(model):
    v = Vocabulary.v2()
    toks = "M:4/4 K:Cmaj |: C D E F | G 2 G 2 :|".split()
    steps = token_probabilities(model, v, toks, k=4)
    ref = next(score_tunes(model, v, [toks]))
    assert [s.token for s in steps] == ref.tokens
    for s, lp in zip(steps, ref.logprobs):
        assert math.isclose(math.log(s.p), lp, rel_tol=1e-4, abs_tol=1e-5)
        assert len(s.alternatives) == 4 and s.alternatives[0][1] >= s.alternatives[-1][1]
        assert (s.rank == 1) == (s.alternatives[0][0] == s.token)
        assert s.rank > 4 or s.token in [t for t, _ in s.alternatives]
    with pytest.raises(FolkRNNError, match="H9"):
        token_probabilities(model, v, ["M:4/4", "H9"])


def test_batcher_steps_tunes_together_with_their_own_draws(model):
    """Tunes of different settings, joining at different times, stepped as one batch:
    each is the tune TuneStream (and so the sampler) makes alone."""
    v = Vocabulary.v2()
    step = Stepper(model)
    cfgs = [SampleConfig(seed=s, max_length=L, batch_size=1, **kw) for s, L, kw in (
        (1, 150, {}), (2, 40, dict(temperature=0.6)), (3, 150, dict(top_k=4, prime=("M:6/8", "K:*", "|:"))),
        (4, 90, dict(top_p=0.7)), (1, 150, {}))]
    b = Batcher(step, v)
    try:
        streamed: list[list[str]] = [[] for _ in cfgs]
        jobs = []
        for k, cfg in enumerate(cfgs):
            jobs.append(b.submit(Job(cfg, k % 3, streamed[k].append)))
        cancel = threading.Event()
        cancel.set()
        gone = b.submit(Job(cfgs[0], 0, lambda t: None, cancel))
        for j in jobs + [gone]:
            assert j.done.wait(60)
        assert isinstance(gone.error, Cancelled) and gone.result is None
        for k, (cfg, job) in enumerate(zip(cfgs, jobs)):
            ref = TuneStream(step, v, cfg, k % 3)
            assert list(ref) == job.result.tokens == streamed[k]
            assert job.result.truncated == ref.tune.truncated
            assert math.isclose(job.result.logprob, ref.tune.logprob, rel_tol=1e-6, abs_tol=1e-6)
        assert b.max_rows >= 2 and b.steps < sum(len(j.result.tokens) + 1 for j in jobs)
        bad = b.submit(Job(SampleConfig(prime=("H9",)), 0, lambda t: None))
        assert bad.done.wait(10) and "H9" in str(bad.error)
    finally:
        b.close()


SHAPES = [
    dict(),
    dict(bars="strict", meter="6/8", temperature=0.8),
    dict(tune_type="hornpipe", form="none", top_k=20),  # the type's meter and feel, no plan
    dict(tune_type="reel", form="none", bars="strict"),
    dict(tune_type="jig"),  # meter, feel and the type's form AABB
    dict(form="AB", form_bars=4, endings=0, meter="3/4"),
    dict(form="AABB", form_bars=4, endings=1, prime="|: G", mode="dorian", tune_type="slip-jig"),
]


@pytest.mark.parametrize("kw", SHAPES)
def test_studio_tune_is_the_librarys_tune(model, kw):
    """Whatever the shape (bars, type, form), the studio's tune i is `sample`'s tune i."""
    from dataclasses import replace

    v = Vocabulary.v2()
    form = Compose(num_tunes=2, max_tokens=160, **kw)
    cfg = compose_config(form, v, 17)
    ref = list(sample(model, v, replace(cfg, batch_size=256)))
    step = Stepper(model)
    for i in range(2):
        s = TuneStream(step, v, cfg, i, model=model)
        assert list(s) == s.tune.tokens == ref[i].tokens
        assert s.tune.index == i and s.tune.truncated == ref[i].truncated
        assert math.isclose(s.tune.logprob, ref[i].logprob, rel_tol=1e-6, abs_tol=1e-6)
    if cfg.form is None:  # the server's batcher steps it as TuneStream does
        b = Batcher(step, v)
        try:
            jobs = [b.submit(Job(cfg, i, lambda t: None)) for i in range(2)]
            assert all(j.done.wait(60) for j in jobs)
            assert [j.result.tokens for j in jobs] == [t.tokens for t in ref]
        finally:
            b.close()
    else:
        assert cfg.bars == "strict" and cfg.form.parts[0].letter == "A"


def test_shapes_set_the_config():
    v = Vocabulary.v2()
    jig = compose_config(Compose(tune_type="jig"), v, 1)
    assert jig.prime[:1] == ("M:6/8",) and jig.form.spec == "AABB" and jig.form.bars == 8
    assert jig.logit_bias == tune_type("jig").bias_vector(v) and jig.bars == "strict"
    none = compose_config(Compose(tune_type="jig", form=""), v, 1)
    assert none.form is None and none.bars == "free" and none.logit_bias == jig.logit_bias
    assert compose_config(Compose(form="aabb", endings=2), v, 1).form.endings == 2
    assert compose_config(Compose(bars="strict"), v, 1).bars == "strict"
    assert Compose().temperature == 0.9  # the README's advice


@pytest.mark.parametrize("kw, msg", [
    (dict(tune_type="gigue"), "not a tune type; choose one of reel, jig"),
    (dict(tune_type="reel", meter="6/8"), "--type reel is in 4/4, not --meter 6/8"),
    (dict(form="AAAB"), "a part is played once or twice"),
    (dict(form="A1"), "write the parts as letters"),
    (dict(form_bars=4), "--form-bars needs --form"),
    (dict(form="AB", endings=1), "no repeated part to end twice"),
    (dict(form="AABB", form_bars=1), "--form-bars must be 2 .. 64"),
    (dict(form="AABB", endings=8), "--endings must be 0 .. 7"),
    (dict(bars="loose"), "bars must be one of free, strict"),
    (dict(tune_type="jig", prime="M:4/4 K:* G", prime_format="tokens"), "conflicting options: --meter 6/8"),
])
def test_compose_config_errors_are_one_line(kw, msg):
    with pytest.raises(FolkRNNError) as e:
        compose_config(Compose(**kw), Vocabulary.v2(), 1)
    assert msg in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("kw", SHAPES[1:] + [dict(temperature=1.0, top_p=0.7, num_tunes=3, max_tokens=200, key="G")])
def test_command_line_round_trip(tmp_path, model, monkeypatch, kw):
    """The printed command, read by `folkrnn generate`'s own parser and checks, asks the
    library for the very SampleConfig the studio samples with (batch size aside)."""
    import shlex
    from dataclasses import replace

    import folkrnn.sample
    from folkrnn.checkpoint import save_checkpoint
    from folkrnn.cli import main

    v = Vocabulary.v2()
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, v)
    form = Compose(**kw)
    cfg = compose_config(form, v, 42)
    cmd = command_line(cfg, form.key, str(path), compose_shape(form).flags)
    seen = []

    def fake_sample(model, vocab, cfg, progress=False, hooks=None):
        seen.append(cfg)
        return iter(())

    monkeypatch.setattr(folkrnn.sample, "sample", fake_sample)
    assert main(shlex.split(cmd)[1:] + ["-o", str(tmp_path / "t.abc"), "--no-progress"]) == 0
    assert len(seen) == 1 and replace(seen[0], batch_size=cfg.batch_size) == cfg
    plan = f"--form {cfg.form.spec}" if cfg.form is not None else "--form none" if form.tune_type else "--form"
    for flag, on in (("--bars strict", cfg.bars == "strict" and cfg.form is None),
                     (f"--type {form.tune_type} ", bool(form.tune_type)), (plan, plan != "--form")):
        assert (flag in cmd) == on, cmd
