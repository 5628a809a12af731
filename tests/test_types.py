"""--type: a tune type's meter, form and rhythmic feel (folkrnn.sample.types)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from folkrnn.errors import FolkRNNError
from folkrnn.evaluate import evaluate_tunes
from folkrnn.model import FolkRNN, ModelConfig
from folkrnn.sample import Form, SampleConfig, sample
from folkrnn.sample.types import TYPE_NAMES, tune_type
from folkrnn.tokens import kind
from folkrnn.vocab import Vocabulary

V2 = Vocabulary.v2()
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny() -> FolkRNN:
    torch.manual_seed(0)
    m = FolkRNN(ModelConfig(hidden_size=16, num_layers=1))
    with torch.no_grad():
        m.out.bias[V2.eos] += 4.0
        for t in ("|", ":|", "|:"):
            m.out.bias[V2[t]] += 3.0
    return m.eval()


def _rate(tunes, tok: str) -> float:
    toks = [x for t in tunes for x in t.tokens]
    return toks.count(tok) / len(toks)


def test_every_type_has_a_meter_form_and_documented_basis():
    for name in TYPE_NAMES:
        t = tune_type(name)
        assert t.meter in V2 and t.form in ("AABB", "AB") and t.bars in (8, 16)
        assert (t.basis == "R: fields") == bool(t.bias)
        assert all(kind(tok) in ("duration", "broken", "tuplet") for tok in t.bias)
    assert tune_type("Slip Jig").name == "slip-jig"
    with pytest.raises(FolkRNNError, match="not a tune type"):
        tune_type("gigue")


def test_the_feels_tell_a_hornpipe_from_a_reel():
    """Both are 4/4: the corpus's hornpipes are dotted pairs, its reels running eighths."""
    h, r = tune_type("hornpipe"), tune_type("reel")
    assert h.meter == r.meter == "M:4/4"
    assert h.bias[">"] > 0.5 and r.bias.get(">", 0.0) < -1.0
    assert h.hallmarks["broken_per_bar"] > 5 * r.hallmarks["broken_per_bar"]


def test_feel_moves_the_rhythm_and_zero_feel_changes_nothing():
    torch.manual_seed(1)
    tiny = FolkRNN(ModelConfig(hidden_size=16, num_layers=1)).eval()  # near-uniform tokens: long tunes, every rhythm token
    h = tune_type("hornpipe")
    base = dict(num_tunes=40, seed=5, prime=("M:4/4",), batch_size=16, max_length=300)
    plain = list(sample(tiny, V2, SampleConfig(**base)))
    felt = list(sample(tiny, V2, SampleConfig(**base, logit_bias=h.bias_vector(V2, 1.0))))
    # the dotted pair the type favours comes more often; the sixteenths it shuns less often
    assert h.bias[">"] > 0.5 and _rate(felt, ">") > 1.5 * _rate(plain, ">")
    assert h.bias["/2"] < -1.0 and _rate(felt, "/2") < 0.5 * _rate(plain, "/2")
    assert h.bias_vector(V2, 0.0) is None
    zero = list(sample(tiny, V2, SampleConfig(**base, logit_bias=(0.0,) * len(V2))))
    assert [t.tokens for t in zero] == [t.tokens for t in plain]
    # the log-probability stays the model's own: the same tokens score the same with or without a feel
    assert [t.logprob for t in zero] == pytest.approx([t.logprob for t in plain])


def test_jig_in_aabb_gives_8_bar_parts_with_the_feel(tiny):
    j = tune_type("jig")
    cfg = SampleConfig(num_tunes=30, seed=2, prime=(j.meter,), batch_size=16, form=Form.parse(j.form, bars=j.bars),
                       logit_bias=j.bias_vector(V2))
    tunes = list(sample(tiny, V2, cfg))
    s = evaluate_tunes([t.tokens for t in tunes]).summary
    assert all(t.tokens[0] == "M:6/8" for t in tunes)
    assert s["sections_8_bars"] == 1.0 and s["bars_right"] == 1.0 and s["repeats_ok"] == 1.0


def test_bias_is_checked():
    with pytest.raises(FolkRNNError, match="finite"):
        SampleConfig(logit_bias=(float("nan"),) * 137)
    with pytest.raises(FolkRNNError, match="beam search"):
        SampleConfig(beam_width=2, logit_bias=(0.0,) * 137)
    with pytest.raises(FolkRNNError, match="vocabulary of 137"):
        list(sample(FolkRNN(ModelConfig(hidden_size=8, num_layers=1)), V2, SampleConfig(logit_bias=(0.0, 1.0))))


def test_cli_type_errors_are_one_line():
    def run(*a):
        return subprocess.run([sys.executable, "-m", "folkrnn", "generate", *a], capture_output=True, text=True)

    for args, msg in ((("--type", "gigue"), "not a tune type"), (("--type", "reel", "--meter", "6/8"), "is in 4/4"),
                      (("--feel", "2"), "needs --type"), (("--type", "reel", "--feel", "-1"), "--feel must be")):
        r = run(*args, "-n", "1")
        assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_cli_type_sets_meter_and_form(tmp_path):
    out = tmp_path / "t.abc"
    r = subprocess.run([sys.executable, "-m", "folkrnn", "generate", "--type", "slide", "-n", "2", "-s", "3",
                        "--no-progress", "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert text.count("\nM:12/8\n") == 2 and "--type slide --form AABB" in text


@pytest.mark.slow
def test_the_table_is_what_the_script_builds(tmp_path):
    """tune_types.json is the output of scripts/tune_types.py on music21's files, not edited by hand."""
    out = tmp_path / "types.json"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "tune_types.py"), "-o", str(out)], check=True,
                   capture_output=True)
    shipped = json.loads((ROOT / "src" / "folkrnn" / "data" / "tune_types.json").read_text())
    assert json.loads(out.read_text())["types"] == shipped["types"]
