"""The verdicts of `folkrnn explain` (issue 19, item 1): a model of random weights gets "no"
to every question through the same code path explain uses, while the shipped default
model still gets "yes" on Q1 with the probes' three controls (the token baseline, a
random network of the trained weights permuted, and Hewitt & Liang's control task)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_legacy import folkrnn_dict, lasagne_params, py2_pickle, v2_token2idx

from folkrnn.interp.activity import Sizes
from folkrnn.interp.context import Context, ExplainConfig
from folkrnn.interp.counts import counts_from_corpus
from folkrnn.interp.registry import merge_findings
from folkrnn.interp.runner import run_analyses
from folkrnn.load import load_model
from folkrnn.vocab import Vocabulary

DATA = Path(__file__).parent / "data" / "folkrnn_v2_generated_samples.txt"
QUESTIONS = ["bars", "recovery", "structure", "sections", "cadences", "enharmonics", "enharmonic_behaviour"]


def _random_checkpoint(tmp_path: Path, hidden: int, scale: float):
    """A Lasagne pickle of random weights (all entries N(0, scale^2)), loaded as explain loads it."""
    params = lasagne_params(np.random.default_rng(7), 137, hidden, scale=scale)
    path = tmp_path / f"random_{hidden}.pkl"
    path.write_bytes(py2_pickle(folkrnn_dict(params, v2_token2idx())))
    return load_model(path)


def _run(ck, sizes: Sizes, names=QUESTIONS) -> dict:
    ctx = Context(ck, counts_from_corpus(DATA, Vocabulary.v2()), ExplainConfig.make(quick=True), corpus=DATA,
                  sizes=sizes)
    return merge_findings(run_analyses(ctx, names))


def _no_everywhere(f: dict) -> None:
    v = f["verdicts"]
    assert set(v) == {"q1", "q2", "q3", "q4"}, v
    assert all(x in ("no", "not shown") for x in v.values()), (v, f["answers"])
    for row in f["bars"]["probe_detail"]["position in bar"]["layers"]:
        assert row["selectivity"]["lo"] <= 0 or row["over_random"]["lo"] <= 0 or row["over_baseline"]["lo"] <= 0


# scale 0.05 is the case of issue 19: the random network's state reads position in bar far
# above the token baseline (about 54% against 34% at full size), so a control that
# only asks "beats the token baseline" says yes
@pytest.mark.parametrize("scale", [0.05, 0.3])
def test_random_model_gets_no_to_every_question(tmp_path, scale):
    f = _run(_random_checkpoint(tmp_path, 64, scale), Sizes.make(quick=True))
    _no_everywhere(f)


@pytest.mark.slow
def test_full_size_random_model_gets_no_on_the_probes(tmp_path):
    ck = _random_checkpoint(tmp_path, 512, 0.05)
    f = _run(ck, Sizes(probe_tunes=40, max_tune_tokens=160, ablation_tunes=2, ablation_seeds=(1,), ablation_ks=(5,),
                       ablation_max_length=40), names=["bars", "structure"])
    assert f["verdicts"] == {"q1": "no", "q2": "no"}, f["answers"]
    p = f["bars"]["probe_detail"]["position in bar"]
    best = max(r["accuracy"] for r in p["layers"])
    assert best > p["baseline"] + 0.05  # the random state does beat the token baseline...
    assert all(r["selectivity"]["difference"] < 0 for r in p["layers"])  # ...but not its control task


@pytest.mark.slow
def test_default_model_still_reads_position_in_bar():
    ck = load_model("default")
    f = _run(ck, Sizes(probe_tunes=64, max_tune_tokens=400, ablation_tunes=2, ablation_seeds=(1,), ablation_ks=(5,),
                       ablation_max_length=40), names=["bars"])
    assert f["verdicts"]["q1"] == "yes", f["answers"]["q1"]
    p = f["bars"]["probe_detail"]["position in bar"]
    reads = [r for r in p["layers"] if r["layer"] == 3 and r["selectivity"]["lo"] > 0 and r["over_random"]["lo"] > 0
             and r["over_baseline"]["lo"] > 0]
    assert reads, p["layers"]
