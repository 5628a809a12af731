"""folkrnn.interp weight analyses on tiny models: each statistic finds planted structure
and finds none in structure-free weights (its control)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from folkrnn.checkpoint import Checkpoint
from folkrnn.errors import FolkRNNError
from folkrnn.interp import equivalence, gramian, weights
from folkrnn.interp.counts import (TokenCounts, counts_from_corpus, counts_from_metadata, counts_from_tunes,
                                   token_counts)
from folkrnn.interp.registry import ANALYSES, Context, ExplainConfig, Ran, Result, merge_findings, register
from folkrnn.interp.runner import run_analyses
from folkrnn.model import FolkRNN, ModelConfig
from folkrnn.vocab import Vocabulary

V2 = Vocabulary.v2()
DATA = Path(__file__).parent / "data" / "folkrnn_v2_generated_samples.txt"


def tiny_model(hidden: int = 16, seed: int = 0) -> FolkRNN:
    m = FolkRNN(ModelConfig(hidden_size=hidden, num_layers=3))
    m.reset_parameters(torch.Generator().manual_seed(seed))
    return m.eval()


@pytest.fixture(scope="module")
def counts() -> TokenCounts:
    return counts_from_corpus(DATA, V2)


def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# -- counts ------------------------------------------------------------------------------
def test_counts_from_corpus_and_metadata(counts, tmp_path):
    assert counts.tunes == 64 and counts["<s>"] == 64 and counts["</s>"] == 64
    text = DATA.read_text("utf-8")
    assert counts["|"] == text.split().count("|") and counts.total == len(text.split()) + 128
    assert counts.matches_training_data is None  # nothing recorded to compare with
    meta = {"training": {"data": {"sha256": "0" * 64}}}
    assert counts_from_corpus(DATA, V2, meta).matches_training_data is False
    from_meta = counts_from_metadata({"training": {"token_counts": dict(counts.counts)}}, V2)
    assert from_meta.source == "checkpoint" and from_meta["|"] == counts["|"]
    as_list = counts_from_metadata({"training": {"token_counts": [counts[t] for t in V2.tokens]}}, V2)
    assert as_list.counts == from_meta.counts
    assert counts_from_metadata({"training": {}}, V2) is None
    # as `folkrnn train` writes them: predicted tokens only (no <s>), under training.data
    trained = counts_from_metadata({"training": {"data": {"train_tunes": 7, "sha256": "ab",
                                                          "token_counts": {"|": 3, "</s>": 7}}}}, V2)
    assert trained["<s>"] == 7 and trained["|"] == 3 and trained.tunes == 7 and trained.sha256 == "ab"
    with pytest.raises(FolkRNNError, match="token_counts"):
        counts_from_metadata({"training": {"token_counts": {"|": -1}}}, V2)
    with pytest.raises(FolkRNNError, match="token_counts"):
        counts_from_metadata({"training": {"token_counts": [1, 2]}}, V2)
    # an explicit corpus wins over the checkpoint's counts
    assert token_counts({"training": {"token_counts": {"|": 5}}}, V2, DATA).source == str(DATA)
    assert token_counts({"training": {"token_counts": {"|": 5}}}, V2)["|"] == 5
    # else the training file the checkpoint names, only if its SHA-256 matches
    named = {"training": {"data": {"path": str(DATA), "sha256": counts.sha256}}}
    assert token_counts(named, V2)["|"] == counts["|"]
    assert token_counts({"training": {"data": {"path": str(DATA), "sha256": "0" * 64}}}, V2) is None
    with pytest.raises(FolkRNNError, match="no such file|No such file"):
        counts_from_corpus(tmp_path / "missing.txt", V2)
    with pytest.raises(FolkRNNError, match="directory"):
        counts_from_corpus(tmp_path, V2)
    bad = tmp_path / "bad.txt"
    bad.write_text("hello world\n")
    with pytest.raises(FolkRNNError, match="bad.txt"):
        counts_from_corpus(bad, V2)
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("M:9/7\nK:Xloc\nqq rr\n")
    with pytest.raises(FolkRNNError, match="none of its tokens"):
        counts_from_corpus(foreign, V2)


def test_counts_from_tunes_flags_out_of_vocabulary():
    c = counts_from_tunes([["M:4/4", "K:Cmaj", "C", "Q"]], V2, "x")
    assert c.out_of_vocabulary == {"Q": 1} and c["C"] == 1 and c.log_frequency("^f") == -np.inf


# -- inventory and spectra ------------------------------------------------------------------
def test_inventory_sums_to_the_parameter_count():
    m = tiny_model()
    inv = weights.inventory(m)
    V, H = 137, 16
    expected = 4 * (V * H + H * H + H) + 2 * 4 * (2 * H * H + H) + H * V + V
    assert inv["total"] == m.num_parameters() == expected and inv["initial_states"] == 3 * 2 * H
    whole = [r for r in inv["tensors"] if r["gate"] is None and not r["initial_state"]]
    assert sum(r["count"] for r in whole) == expected
    gates = [r for r in inv["tensors"] if r["gate"] is not None]
    assert len(gates) == 3 * 3 * 4 and {r["label"].split()[1] for r in gates} == {"1", "2", "3"}
    w = m.layers[1].weight_hh.detach().double().numpy()
    row = next(r for r in inv["tensors"] if r["name"] == "layers.1.weight_hh")
    assert row["spectral"] == pytest.approx(np.linalg.svd(w, compute_uv=False)[0], rel=1e-6)
    assert row["frobenius"] == pytest.approx(np.linalg.norm(w), rel=1e-6)
    # the recurrent gate blocks start orthogonal: spectral norm 1
    assert next(r for r in inv["tensors"] if r["name"] == "layers.0.weight_hh[f]")["spectral"] == pytest.approx(1, abs=1e-5)


def test_spectrum_finds_low_rank_and_not_noise():
    g = np.random.default_rng(1)
    noise = g.standard_normal((64, 64))
    low = np.outer(g.standard_normal(64), g.standard_normal(64)) + 0.05 * noise
    d_noise, d_low = weights.spectrum(noise, rng(), 4), weights.spectrum(low, rng(), 4)
    assert d_low["effective_rank"] < 0.5 * d_low["control"]["effective_rank_mean"] and d_low["effective_rank_z"] < -10
    assert abs(d_noise["effective_rank"] / d_noise["control"]["effective_rank_mean"] - 1) < 0.05
    assert d_low["singular_values"] == sorted(d_low["singular_values"], reverse=True)


def test_gate_spectra_cover_every_gate_and_layer():
    rows = weights.gate_spectra(tiny_model(8), rng(), 2)
    assert len(rows) == 24 and {(r["layer"], r["gate"], r["matrix"]) for r in rows} == {
        (l, g, m) for l in (1, 2, 3) for g in "ifgo" for m in ("input", "recurrent")}
    assert next(r for r in rows if r["layer"] == 1 and r["matrix"] == "input")["shape"] == [8, 137]


# -- softmax ---------------------------------------------------------------------------------
def test_softmax_svd_reads_planted_direction_as_tokens(counts):
    m = tiny_model()
    u = np.zeros(137)
    for t in ("|", ":|", "|:"):
        u[V2[t]] = 1.0
    for t in ("c", "d"):
        u[V2[t]] = -1.0
    with torch.no_grad():
        m.out.weight.copy_(torch.from_numpy(10 * np.outer(u, np.ones(16)) / 4) + 0.01 * m.out.weight)
    d = weights.softmax_svd(m, V2, counts, rng(), 2)
    v = d["vectors"][0]
    ends = [{x["token"] for x in v["positive"][:3]}, {x["token"] for x in v["negative"][:2]}]
    assert {"|", ":|", "|:"} in ends or {"|", ":|", "|:"} <= {x["token"] for x in v["negative"][:3]}
    assert all("count" in x for x in v["positive"])
    assert d["effective_rank"] < 0.2 * d["control"]["effective_rank_mean"]


def test_bias_vs_frequency_planted_and_shuffled(counts):
    m = tiny_model()
    idx, logf = weights.target_log_frequency(V2, counts)
    with torch.no_grad():
        m.out.bias.zero_()
        m.out.bias[idx] = torch.tensor(logf, dtype=torch.float32)
    d = weights.bias_vs_frequency(m, V2, counts, rng(), 200)
    assert d["r"] == pytest.approx(1.0, abs=1e-6) and d["p"] < 0.01 and d["slope"] == pytest.approx(1.0, abs=1e-4)
    assert "<s>" not in {p["token"] for p in d["points"]}
    with torch.no_grad():
        m.out.bias.copy_(torch.from_numpy(np.random.default_rng(3).standard_normal(137)))
    d = weights.bias_vs_frequency(m, V2, counts, rng(), 200)
    assert abs(d["r"]) < d["shuffled_abs_r_95"] and d["p"] > 0.05


def test_duplicate_and_sign_flipped_columns_against_spectrum_matched_nulls():
    m = tiny_model(32)
    with torch.no_grad():
        w = m.out.weight
        w[:, 1] = w[:, 0] * 2
        w[:, 2] = -w[:, 0]
        w[:, 4] = -w[:, 3]
    d = weights.duplicate_columns(m, rng(), 3)
    # 0~1 duplicate; 0~2, 1~2, 3~4 flipped
    assert d["duplicates"] == 1 and d["sign_flipped"] == 3
    assert d["control"]["duplicates_95"][1] <= 1 and d["control"]["sign_flipped_95"][1] <= 1
    assert d["pairs"] == 32 * 31 // 2


def _with_all_ones(m, seed=5, size=30.0):
    """A copy of m whose softmax matrix has a large all-ones component added: the same
    number on every token's logit for each unit, which changes no probability."""
    import copy

    m2 = copy.deepcopy(m)
    c = torch.from_numpy(np.random.default_rng(seed).standard_normal(m.out.weight.shape[1]) * size).float()
    with torch.no_grad():
        m2.out.weight += c[None, :]
    return m2


def test_softmax_analyses_ignore_the_all_ones_direction(counts):
    m = tiny_model(32)
    m2 = _with_all_ones(m)
    assert weights.all_ones_share(weights._np(m2.out.weight)) > 0.9
    a, b = weights.softmax_svd(m, V2, counts, rng(), 2, draws=20), weights.softmax_svd(m2, V2, counts, rng(), 2, draws=20)
    assert a["effective_rank"] == pytest.approx(b["effective_rank"], rel=1e-4)
    assert a["vectors"][0]["singular_value"] == pytest.approx(b["vectors"][0]["singular_value"], rel=1e-4)
    assert [t["token"] for t in a["vectors"][0]["positive"]] in ([t["token"] for t in b["vectors"][0]["positive"]],
                                                                 [t["token"] for t in b["vectors"][0]["negative"]])
    for k in ("band_share", "kurtosis", "majority_sign_share"):
        assert a["w1"][k] == pytest.approx(b["w1"][k], abs=1e-4)
    assert b["w1_uncentered"]["u1_majority_sign_share"] == 1.0  # the raw direction 1 is the offset: one sign
    da, db = weights.duplicate_columns(m, rng(), 3, draws=20), weights.duplicate_columns(m2, rng(), 3, draws=20)
    assert (da["duplicates"], da["sign_flipped"]) == (db["duplicates"], db["sign_flipped"])
    assert da["max_cosine"] == pytest.approx(db["max_cosine"], abs=1e-4)
    assert db["raw_cosine"]["duplicates"] > 100  # the raw cosine reads the shared offset as likeness
    ra, rb = weights.unit_bias_correlation(m, rng(), 3, draws=20), weights.unit_bias_correlation(m2, rng(), 3, draws=20)
    assert np.allclose(ra["r"], rb["r"], atol=1e-4)


@pytest.mark.parametrize("shape", [(137, 512), (137, 16)])
def test_spectrum_matched_null_has_the_real_singular_values(shape):
    g = np.random.default_rng(0)
    w = weights.center_tokens(g.standard_normal(shape) * np.linspace(3, 0.1, shape[1]))
    s = weights.singular_values(w)
    for _ in range(3):
        n = weights.spectrum_matched(s, w.shape, g)
        assert n.shape == w.shape
        assert np.allclose(weights.singular_values(n), s, atol=1e-8 * s[0])
        assert np.allclose(n.mean(0), 0, atol=1e-10)  # no all-ones component either


def test_unit_bias_correlation_finds_units_that_copy_the_bias():
    m = tiny_model(32)
    with torch.no_grad():
        m.out.bias.copy_(torch.from_numpy(np.random.default_rng(4).standard_normal(137)))
        m.out.weight[:, 5] = m.out.bias * 0.3
    d = weights.unit_bias_correlation(m, rng(), 3)
    assert d["top_units"][0]["unit"] == 5 and d["top_units"][0]["r"] == pytest.approx(1.0, abs=1e-6)
    assert d["control"]["mean_abs_r"] < 0.15


def test_input_columns_by_kind_and_unseen_tokens(counts):
    m = tiny_model()
    with torch.no_grad():
        for t in V2.tokens:
            if weights.kind_group(t) == "bar":
                m.layers[0].weight_ih[:, V2[t]] *= 20
    d = weights.input_columns(m, V2, counts, rng(), 200)
    assert set(d["input_by_kind"]) == set(weights.KIND_GROUPS)
    assert d["input_by_kind"]["bar"]["mean"] > 5 * d["input_by_kind"]["pitch"]["mean"]
    assert d["input_kind_eta"]["p"] < 0.01
    assert set(d["unseen"]["tokens"]) == {t for t in V2.tokens if counts[t] == 0}
    assert all(t["count"] == counts[t["token"]] for t in d["tokens"])


# -- Q4 ----------------------------------------------------------------------------------------
def test_equivalent_pairs_depend_on_the_mode():
    pairs = {(p["a"], p["b"]): p for p in equivalence.equivalent_pairs(V2)}
    get = lambda a, b: pairs.get((a, b)) or pairs.get((b, a))  # noqa: E731
    assert get("=B", "B")["modes"] == ["K:Cmaj"] and get("=B", "B")["kind"] == "redundant"
    assert get("^f", "_g")["all_modes"] and get("^f", "_g")["kind"] == "enharmonic"
    assert get("=C", "C")["all_modes"]
    assert get("_B", "B")["modes"] == ["K:Cmin", "K:Cdor", "K:Cmix"]
    assert get("_C", "B") is None and get("_C", "B,")["modes"] == ["K:Cmaj"]
    assert get("^f", "f") is None  # a semitone apart in every mode


def test_equivalence_similarity_planted(counts):
    m = tiny_model()
    with torch.no_grad():
        w = m.layers[0].weight_ih
        w[:, V2["=B"]] = w[:, V2["B"]] * 1.5
        m.out.weight[V2["=A"]] = m.out.weight[V2["A"]]
    d = equivalence.similarity(m, V2, counts, rng(), 200)
    p = next(p for p in d["pairs"] if {p["a"], p["b"]} == {"=B", "B"})
    assert p["input"]["cosine"] == pytest.approx(1.0) and p["input"]["rank_from_a"] == 1 and p["input"]["z"] > 3
    q = next(p for p in d["pairs"] if {p["a"], p["b"]} == {"=A", "A"})
    assert q["output"]["cosine"] == pytest.approx(1.0) and q["output"]["rank_from_b"] == 1
    u = next(p for p in d["pairs"] if {p["a"], p["b"]} == {"^f", "_g"})
    assert u["count_a" if u["a"] == "_g" else "count_b"] == counts["_g"]
    assert ("_g" in u["unseen"]) == (counts["_g"] == 0)
    assert d["control"]["input"]["pairs"] == d["pitch_tokens"] * (d["pitch_tokens"] - 1) // 2
    assert "seen.all" in d["summary"] and "permutation" in d["summary"]["seen.all"]["input"]


def test_gramian_rejects_bad_shapes_and_shows_repeats():
    g = gramian.gramian(np.array([[1.0, 2.0], [1.0, 2.0], [-1.0, -2.0]]))
    assert g[0, 1] == pytest.approx(1) and g[0, 2] == pytest.approx(-1)
    assert gramian.gramian(torch.ones(3, 4)).shape == (3, 3)
    with pytest.raises(FolkRNNError, match="time, hidden"):
        gramian.gramian(np.ones(5))
    assert gramian.plot(g, ["C", "|", "D"])[:4] == b"\x89PNG"


# -- registry ----------------------------------------------------------------------------------
def test_registry_contract():
    import folkrnn.interp.analyses  # noqa: F401  (registers the built-in analyses)

    with pytest.raises(ValueError, match="twice"):
        register("softmax", "again", "parameters")(lambda ctx, bar: Result())
    ck = Checkpoint(tiny_model(8), V2, {})
    with pytest.raises(FolkRNNError, match="unknown analysis"):
        run_analyses(Context(ck, None, ExplainConfig.make(True)), ["nope"])
    a, b = ANALYSES["softmax"], ANALYSES["inventory"]
    clash = [Ran(a, Result(findings={"x": 1}), 0.0), Ran(b, Result(findings={"x": 2}), 0.0)]
    with pytest.raises(ValueError, match="parameters.x"):
        merge_findings(clash)
    ok = merge_findings([Ran(a, Result(findings={"x": 1}, answers={"q4": "t"}), 0.0),
                         Ran(b, Result(skipped="no"), 0.0)])
    assert ok == {"parameters": {"x": 1}, "answers": {"q4": "t"}}
    json.dumps(ok)
