"""`folkrnn explain` end to end on tiny models: the report's files and schema, bad input,
and a Lasagne pickle of random weights, of which the report must say it finds no structure."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from test_legacy import folkrnn_dict, lasagne_params, py2_pickle, v2_token2idx

from folkrnn.checkpoint import save_checkpoint
from folkrnn.cli import main
from folkrnn.interp.analyses import P_CUT
from folkrnn.interp.counts import counts_from_corpus
from folkrnn.model import FolkRNN, ModelConfig
from folkrnn.vocab import Vocabulary

V2 = Vocabulary.v2()
DATA = Path(__file__).parent / "data" / "folkrnn_v2_generated_samples.txt"


@pytest.fixture(scope="module")
def structured(tmp_path_factory) -> Path:
    """A tiny checkpoint with structure planted where the analyses look: the output bias is
    the log training frequency, and its training counts are recorded in the metadata."""
    m = FolkRNN(ModelConfig(hidden_size=16, num_layers=3))
    m.reset_parameters(torch.Generator().manual_seed(0))
    counts = counts_from_corpus(DATA, V2)
    with torch.no_grad():
        for i, t in enumerate(V2.tokens):
            m.out.bias[i] = float(np.log(counts[t] + 0.5))
    path = tmp_path_factory.mktemp("m") / "tiny.safetensors"
    # as `folkrnn train` records them: the predicted tokens (no <s>) under training.data
    predicted = {t: n for t, n in counts.counts.items() if t != "<s>" and n}
    save_checkpoint(path, m, V2, {"training": {"data": {"train_tunes": 64, "token_counts": predicted}}})
    return path


@pytest.fixture(scope="module")
def random_pickle(tmp_path_factory) -> Path:
    params = lasagne_params(np.random.default_rng(7), 137, 32, scale=0.3)
    path = tmp_path_factory.mktemp("pkl") / "random_v2.pkl"
    path.write_bytes(py2_pickle(folkrnn_dict(params, v2_token2idx())))
    return path


def run(args, capsys) -> tuple[int, str, str]:
    rc = main(["explain", "--no-progress", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_explain_quick_end_to_end(structured, tmp_path, capsys):
    rc, out, err = run(["-m", str(structured), "-o", str(tmp_path / "r"), "--quick"], capsys)
    assert rc == 0, err
    assert "report.html" in out and "findings.json" in out
    f = json.loads((tmp_path / "r" / "findings.json").read_text())
    assert f["format"] == "folkrnn-explain" and f["counts"]["source"] == "checkpoint"
    assert f["counts"]["counts"]["<s>"] == 64
    p = f["parameters"]
    sv = p["softmax_singular_values"]
    assert sv == sorted(sv, reverse=True) and len(sv) == 16
    assert p["total"] == FolkRNN(ModelConfig(hidden_size=16)).num_parameters()
    assert p["bias_vs_log_frequency"] > 0.9 and p["bias_vs_log_frequency_control"]["p"] < 0.01
    assert {r["layer"] for r in p["gate_spectra"]} == {1, 2, 3}
    assert isinstance(f["enharmonics"]["pairs"], list) and f["enharmonics"]["pairs"][0]["count_a"] >= 0
    assert set(f["answers"]) == {"q4"}
    for absent in ("bars", "structure", "cadences"):  # not built here: absent, not faked
        assert absent not in f
    html = (tmp_path / "r" / "report.html").read_text()
    assert "the bias rises with the token" in html
    # self-contained: every image is a data URI, nothing is fetched
    assert not re.search(r'(src|href)="(?!data:)', html) and "<script" not in html
    assert html.count('src="data:image/png;base64,') >= 6
    # every number in a sentence about the bias comes from the findings
    r = p["bias_vs_log_frequency"]
    assert f"Pearson r = {r:.2f}" in html


def test_explain_with_corpus_and_only(structured, tmp_path, capsys):
    rc, out, err = run(["-m", str(structured), "-o", str(tmp_path), "--quick", "--corpus", str(DATA),
                        "--only", "bias_frequency,inventory"], capsys)
    assert rc == 0, err
    f = json.loads((tmp_path / "findings.json").read_text())
    assert f["counts"]["source"] == str(DATA) and [a["name"] for a in f["analyses"]] == ["inventory", "bias_frequency"]
    assert "enharmonics" not in f and "answers" not in f and "softmax_singular_values" not in f["parameters"]


def test_explain_without_counts_skips_token_analyses(tmp_path, capsys):
    m = FolkRNN(ModelConfig(hidden_size=8, num_layers=3))
    path = tmp_path / "nocounts.safetensors"
    save_checkpoint(path, m, V2)
    rc, out, err = run(["-m", str(path), "-o", str(tmp_path / "r"), "--quick", "--only", "bias_frequency,enharmonics"], capsys)
    assert rc == 0, err
    assert "skipped bias_frequency" in out
    f = json.loads((tmp_path / "r" / "findings.json").read_text())
    assert "bias_vs_log_frequency" not in f.get("parameters", {}) and "answers" not in f
    assert "No analysis of this question ran" in (tmp_path / "r" / "report.html").read_text()


@pytest.mark.parametrize("args, message", [
    (["-m", "/nonexistent.safetensors", "-o", "{tmp}/r"], "no such model file"),
    (["-m", "{model}", "-o", "{tmp}/file.txt"], "not a directory"),
    (["-m", "{model}", "-o", "{tmp}/r", "--corpus", "{tmp}/missing.txt"], "no such file"),
    (["-m", "{model}", "-o", "{tmp}/r", "--corpus", "{tmp}/file.txt"], "file.txt"),
    (["-m", "{model}", "-o", "{tmp}/r", "--only", "nope"], "unknown analysis"),
    (["-m", "{model}"], "-o DIR"),
])
def test_explain_bad_input_exits_2(structured, tmp_path, capsys, args, message):
    (tmp_path / "file.txt").write_text("not a token file\n")
    args = [a.format(tmp=tmp_path, model=structured) for a in args]
    rc, out, err = run(args, capsys)
    assert rc == 2 and message in err and err.count("\n") == 1


def test_random_lasagne_pickle_report_finds_no_structure(random_pickle, tmp_path, capsys):
    rc, out, err = run(["-m", str(random_pickle), "-o", str(tmp_path), "--quick", "--corpus", str(DATA)], capsys)
    assert rc == 0, err
    f = json.loads((tmp_path / "findings.json").read_text())
    p = f["parameters"]
    c = p["bias_vs_log_frequency_control"]
    # this draw's r (about 0.27 over 70 tokens) is a 1-in-40 chance event; the report's bar is p < 0.01
    assert c["p"] > P_CUT and abs(p["bias_vs_log_frequency"]) < 0.35
    for r in p["gate_spectra"]:  # spectra are those of the same numbers shuffled
        assert abs(r["effective_rank"] / r["control"]["effective_rank_mean"] - 1) < 0.05
    s = p["softmax_spectrum"]
    assert abs(s["effective_rank"] / s["control"]["effective_rank_mean"] - 1) < 0.05
    assert p["softmax_column_pairs"]["duplicates"] == 0 and p["softmax_column_pairs"]["sign_flipped"] == 0
    html = (tmp_path / "report.html").read_text()
    assert "no relation between the bias and training frequency beyond chance" in html
    assert "In 0 of 24 gate matrices the singular values are more concentrated" in html
    assert "indistinguishable from that of the same numbers in random positions" in html
    assert "no closer than random pairs of seen pitch tokens by input weights" in html
    assert "no closer than random pairs of seen pitch tokens by output weights" in html
    assert "the kinds differ" not in html
    # the activation analyses (they read the corpus) find nothing either, and say so
    a = f["answers"]
    for q in ("q1", "q2", "q3"):
        assert "finds no structure" in a[q], a[q]
    assert "no sign that it treats the spellings as equivalent" in a["q4"]
    assert "no unit tracks 8-bar cycles beyond the controls" in html
    for row in f["bars"]["probe_detail"]["position in bar"]["layers"]:
        assert abs(row["shuffled"] - f["bars"]["probe_detail"]["position in bar"]["chance"]) < 0.1
