"""The activation toolkit on tiny models: probes and their controls, unit rankings,
interventions (each removed afterwards), the ablation runner, and the Q1-Q4 analyses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from folkrnn.checkpoint import save_checkpoint
from folkrnn.cli import main
from folkrnn.errors import FolkRNNError
from folkrnn.hooks import any_hooks, hook_name
from folkrnn.interp import ablation, probes
from folkrnn.interp import interventions as iv
from folkrnn.model import FolkRNN, ModelConfig
from folkrnn.sample import SampleConfig, sample
from folkrnn.vocab import Vocabulary

V2 = Vocabulary.v2()
DATA = Path(__file__).parent / "data" / "folkrnn_v2_generated_samples.txt"


# -- probes ---------------------------------------------------------------------------------------
def _planted(n_tunes=40, per=50, d=12, seed=0):
    rng = np.random.default_rng(seed)
    tunes = np.repeat(np.arange(n_tunes), per)
    y = rng.integers(0, 4, len(tunes))
    x = rng.normal(size=(len(tunes), d))
    x[np.arange(len(y)), y] += 2.5  # each class pushes its own unit: linearly readable
    tokens = rng.integers(0, 6, len(tunes))  # tokens unrelated to the label
    return x, y, tunes, tokens


def test_probe_reads_a_planted_label_and_the_shuffled_control_is_at_chance():
    x, y, tunes, tokens = _planted()
    rng = np.random.default_rng(1)
    test = probes.split_by_tune(tunes, rng)
    assert set(np.unique(tunes[test])).isdisjoint(np.unique(tunes[~test]))  # split by tune, never by token
    base = probes.token_features(tokens, np.roll(tokens, 1), 6)
    r = probes.probe(x, y, test, rng, baseline=base)
    assert r["accuracy"] > 0.8
    assert abs(r["shuffled"] - r["chance"]) < 0.08  # the shuffled-label probe sits at chance
    assert r["baseline"] < 0.4 and r["over_baseline"] > 0.4
    # a probe on features carrying no label is at chance too
    noise = np.random.default_rng(3).normal(size=x.shape)
    assert abs(probes.probe(noise, y, test, rng)["accuracy"] - r["chance"]) < 0.08


def test_probe_needs_two_tunes_and_labels():
    x, y, tunes, _ = _planted(n_tunes=1)
    with pytest.raises(FolkRNNError, match="2 tunes"):
        probes.split_by_tune(tunes, np.random.default_rng(0))
    with pytest.raises(FolkRNNError, match="too few"):
        probes.probe(x, np.full(len(y), -1), np.zeros(len(y), bool), np.random.default_rng(0))


def test_rankings_raw_residualised_and_bar_power():
    x, y, tunes, tokens = _planted(d=6)
    # unit 1 follows the token only: high raw eta for a token-aligned label, none after residualising
    label_from_token = tokens // 2
    x[:, 1] = tokens + 0.01 * np.random.default_rng(0).normal(size=len(tokens))
    r = probes.rank_units(x, label_from_token, tokens, np.random.default_rng(0))
    assert r.eta[1] > 0.5 and r.eta_resid[1] < 0.01
    r2 = probes.rank_units(x, y, tokens, np.random.default_rng(0))
    assert r2.top(1)[0] in (0, 2, 3) and r2.eta_resid[0] > r2.chance_resid_99
    # a unit oscillating once per bar has its power at the bar period
    T, nb = 96, 12
    t = np.arange(T)
    v = np.stack([np.sin(2 * np.pi * nb * t / T), np.random.default_rng(1).normal(size=T)], 1)
    bp = probes.bar_period_power(v, [0, T], [nb])
    assert bp[0] > 0.9 and bp[1] < 0.2


def _bar_rows(n_tunes=30, n_bars=32, per_bar=6, h=8, seed=0):
    """Token-level states of `h` noise units, `per_bar` rows a bar after 2 header rows (bar -1)."""
    rng = np.random.default_rng(seed)
    bar_of_row = np.concatenate([np.r_[-1, -1, np.repeat(np.arange(n_bars), per_bar)] for _ in range(n_tunes)])
    offsets = np.arange(n_tunes + 1) * (2 + n_bars * per_bar)
    return rng.normal(size=(len(bar_of_row), h)), bar_of_row, offsets


def test_cycle_power_finds_a_planted_8_bar_unit_and_not_a_random_one():
    x, bar_of_row, offsets = _bar_rows(h=64)
    # units 3 and 5 swing once every 8 bars (plus the same noise as the others); the rest is noise
    x[:, 3] += 1.5 * np.where(bar_of_row >= 0, np.cos(2 * np.pi * bar_of_row / 8), 0.0)
    x[:, 5] += 1.2 * np.where(bar_of_row >= 0, np.sin(2 * np.pi * bar_of_row / 8), 0.0)
    control = np.random.default_rng(9).normal(size=x.shape)  # the random network's units: no cycle
    c = probes.cycle_power(x, control, offsets, bar_of_row, np.random.default_rng(1), bars_per_cycle=8)
    assert c["tunes"] == 30 and c["units"] == 64
    assert c["top"][0]["unit"] == 3 and c["top"][0]["power"] > 0.5
    assert c["above_controls"][:2] == [3, 5] and c["above_control_max"] == [3, 5]
    # noise units beat the 99th percentiles only at about the chance rate, a random unit (0) not at all
    assert len(c["above_controls"]) <= 4 and 0 not in c["above_controls"]
    assert c["shuffled_bars_99"] < 0.3 and c["random_network_99"] < 0.3
    from folkrnn.interp.behaviour import _cycle_beats, _cycle_sentence

    assert _cycle_beats(c) and "no unit tracks" not in _cycle_sentence({"1": c})
    noise = np.random.default_rng(11).normal(size=x.shape)  # a network of noise units against the noise control
    none = probes.cycle_power(noise, control, offsets, bar_of_row, np.random.default_rng(1), bars_per_cycle=8)
    assert not _cycle_beats(none) and "no unit tracks 8-bar cycles beyond the controls" in _cycle_sentence({"1": none})
    # shuffling the bars destroys the cycle: the planted unit alone scores like noise
    only = x[:, [3]]
    s, o, n = probes.bar_means(only, offsets, bar_of_row, 8)
    order = np.concatenate([o[k] + np.random.default_rng(k).permutation(n[k]) for k in range(len(n))])
    assert probes.bar_period_power(s[order], o, n, 16, 8)[0] < 0.3
    # a 4-bar cycle is not an 8-bar one
    y, _, _ = _bar_rows(h=64, seed=2)
    y[:, 0] += 1.5 * np.where(bar_of_row >= 0, np.cos(2 * np.pi * bar_of_row / 4), 0.0)
    c4 = probes.cycle_power(y, control, offsets, bar_of_row, np.random.default_rng(1), bars_per_cycle=8)
    assert 0 not in c4["above_controls"]
    # tunes shorter than 2 cycles: nothing to test
    short = bar_of_row.copy()
    short[short >= 12] = -1
    assert probes.cycle_power(x, control, offsets, short, np.random.default_rng(1)) is None


def test_paired_lower_bound():
    g = np.repeat(np.arange(20), 10)
    a = np.ones(200, bool)
    b = np.zeros(200, bool)
    assert probes.paired_lower_bound(a, b, g, np.random.default_rng(0)) == pytest.approx(1.0)
    assert probes.paired_lower_bound(b, b, g, np.random.default_rng(0)) == 0.0


# -- interventions --------------------------------------------------------------------------------
def _ids(n=3, t=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 137, (n, t), generator=g)


def test_every_intervention_changes_values_and_is_removed_afterwards(tiny_model):
    m = tiny_model
    ids = _ids()
    with torch.no_grad():
        base, _ = m.run_explicit(ids)
        cache_b = m.run_with_cache(_ids(seed=1), names=[hook_name("h", layer=1)], dtype=torch.float32)
        h = hook_name("h", layer=1)
        hooks = [iv.zero(h, [0, 3]), iv.clamp(h, [5], 0.9), iv.mean(h, [2], torch.full((16,), 0.3)),
                 iv.add_direction(h, torch.ones(16), 0.5), iv.patch(h, cache_b), iv.two_hot(int(ids[0, 0]), 7, 0.5)]
        for pair in hooks:
            with m.hooks([pair]):
                assert any_hooks(m)
                changed, _ = m.run_explicit(ids)
            assert not any_hooks(m)
            assert not torch.allclose(changed, base), pair
            after, _ = m.run_explicit(ids)
            assert torch.equal(after, base), pair
        # removed also when the block raises
        with pytest.raises(RuntimeError):
            with m.hooks([iv.zero(h, [0])]):
                raise RuntimeError("boom")
        assert not any_hooks(m)


def test_clamp_sets_values_and_patch_copies_another_run(tiny_model):
    m = tiny_model
    ids, other = _ids(), _ids(seed=1)
    h2 = hook_name("h", layer=2)
    with torch.no_grad():
        with m.hooks([iv.clamp(hook_name("h", layer=1), [4], 0.9)]):
            c = m.run_with_cache(ids, names=[hook_name("h", layer=1)], dtype=torch.float32)
        v = c.get("h", layer=1, unit=4)
        assert torch.allclose(v, torch.full_like(v, 0.9))
        theirs = m.run_with_cache(other, names=[h2], dtype=torch.float32)
        ref, _ = m.run_explicit(other)
        with m.hooks([iv.patch(h2, theirs)]):  # the last layer's h decides the logits
            patched, _ = m.run_explicit(ids)
    assert torch.allclose(patched, ref, atol=1e-5)


def test_two_hot_extremes_equal_the_tokens(tiny_model):
    m = tiny_model
    ids = _ids(1)
    a, b = int(ids[0, 4]), 9
    swapped = ids.clone()
    swapped[ids == a] = b
    with torch.no_grad():
        ref_a, _ = m.run_explicit(ids)
        ref_b, _ = m.run_explicit(swapped)
        with m.hooks([iv.two_hot(a, b, 0.0)]):
            out0, _ = m.run_explicit(ids)
        with m.hooks([iv.two_hot(a, b, 1.0)]):
            out1, _ = m.run_explicit(ids)
    assert torch.allclose(out0, ref_a, atol=1e-6) and torch.allclose(out1, ref_b, atol=1e-5)


def test_unit_specs():
    assert iv.parse_units("1:0") == ("layers.0.hook_h", [0])
    for bad in ("3", "x:1", "0:1", "3:a", "3:"):
        with pytest.raises(FolkRNNError):
            iv.parse_units(bad)
    with pytest.raises(FolkRNNError, match="not a number"):
        iv.parse_clamp("2:1=high")



def test_studio_intervention_sets_the_units(tiny_model):
    """Zero, mean and clamp of a unit list (several layers) reach the model: the hooked run's
    cache holds the set values, the other units move only through the recurrence."""
    m = tiny_model
    ids = [V2.bos, *V2.encode("M:4/4 K:Cmaj | C D E F | G A B c |".split())]
    spec = iv.Intervention("c", "mean", iv.parse_unit_specs("1:2,5=0.75 2:3", 2, 16))
    means = iv.unit_means(m, ids, spec)
    names = [hook_name("c", layer=1), hook_name("c", layer=2)]
    with torch.no_grad():
        plain = m.run_with_cache([ids], names=names, dtype=torch.float32)
        assert means[(1, 2)] == pytest.approx(float(plain.get("c", layer=1)[:, 2].mean()), abs=1e-6)
        with m.hooks(spec.hooks(means)):
            c = m.run_with_cache([ids], names=names, dtype=torch.float32)
        zeroed = iv.Intervention("c", "zero", spec.units)
        with m.hooks(zeroed.hooks()):
            z = m.run_with_cache([ids], names=names, dtype=torch.float32)
    c1, c2 = c.get("c", layer=1), c.get("c", layer=2)
    assert torch.allclose(c1[:, 2], torch.full_like(c1[:, 2], means[(1, 2)])) and torch.all(c1[:, 5] == 0.75)
    assert torch.allclose(c2[:, 3], torch.full_like(c2[:, 3], means[(2, 3)]))
    assert torch.all(z.get("c", layer=1)[:, 2] == 0) and torch.all(z.get("c", layer=1)[:, 5] == 0.75)
    assert not torch.allclose(c1[:, 0], plain.get("c", layer=1)[:, 0])  # the rest of the layer feels it
    assert not any_hooks(m)
    with pytest.raises(FolkRNNError, match="means"):
        spec.hooks()
    with pytest.raises(FolkRNNError, match="quantity"):
        iv.Intervention("x", "zero", spec.units)


@pytest.mark.parametrize("text, message", [
    ("2:3", "layers 1 to 1"), ("1:16", "units 0 to 15"), ("1:3=11", "within ±10"), ("1:3=nan", "cannot read"),
    ("3", "has no layer"), ("1:0-8", "cannot read"), ("1:0,1,2,3,4,5,6,7,8", "at most 8 units"),
    ("1:3,1:3", "given twice"), ("", "at least one"),
])
def test_unit_lists_are_checked(text, message):
    with pytest.raises(FolkRNNError, match=message):
        iv.parse_unit_specs(text, 1, 16, max_units=8)


# -- ablation runner ------------------------------------------------------------------------------
def test_ablation_runner_baseline_matches_plain_sampling_and_controls(tiny_model):
    m = tiny_model
    h = hook_name("h", layer=2)
    conds = [ablation.Condition(None, info={"units": "none"}),
             ablation.Condition(h, (0, 1, 2), "zero", {"units": "top"}),
             ablation.Condition(h, (0, 1, 2), "mean", {"units": "top"})]
    res = ablation.run(m, V2, conds, tunes=3, seeds=[5, 6], max_length=40,
                       means={h: torch.zeros(16)})
    assert not any_hooks(m)
    assert [r["units"] for r in res] == ["none", "top", "top"] and all(r["tunes"] == 3 and r["seeds"] == [5, 6] for r in res)
    # the baseline rows are tunes 0-2 of each seed's run, untouched: same as sampling them alone
    for seed, value in zip([5, 6], res[0]["metrics"]["bars_mean"]["values"]):
        plain = [t.tokens for t in sample(m, V2, SampleConfig(num_tunes=3, seed=seed, max_length=40))]
        assert ablation.evaluate_tokens(plain)["bars_mean"] == pytest.approx(value)
    # zero and mean(=0) replacement are the same intervention here (same rows, same draws)
    other = ablation.run(m, V2, [conds[0], conds[2], conds[1]], tunes=3, seeds=[5, 6], max_length=40,
                         means={h: torch.zeros(16)})
    assert other[1]["metrics"]["bars_mean"]["values"] == res[1]["metrics"]["bars_mean"]["values"]
    assert other[0]["metrics"] == res[0]["metrics"]
    with pytest.raises(FolkRNNError):
        ablation.Condition(h, (1,), "half")


def test_random_and_variance_matched_units():
    rng = np.random.default_rng(0)
    r = ablation.random_units(10, 4, [0, 1], rng)
    assert len(set(r)) == 4 and not {0, 1} & set(r)
    var = np.array([10.0, 9.0, 0.1, 0.2, 8.5, 9.5, 0.3, 10.2])
    vm = ablation.variance_matched_units(var, [0, 1], rng, near=2)
    assert set(vm) <= {4, 5, 7} and len(set(vm)) == 2
    with pytest.raises(FolkRNNError):
        ablation.random_units(4, 4, [0], rng)


# -- the analyses in the report -------------------------------------------------------------------
def test_activation_analyses_on_a_tiny_model(tmp_path, capsys):
    m = FolkRNN(ModelConfig(hidden_size=16, num_layers=3))
    m.reset_parameters(torch.Generator().manual_seed(3))
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, m, V2)
    rc = main(["explain", "--no-progress", "-m", str(path), "-o", str(tmp_path / "r"), "--quick", "--corpus", str(DATA)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    f = json.loads((tmp_path / "r" / "findings.json").read_text())
    b = f["bars"]
    assert set(b["probes"]) == {"1", "2", "3"}
    for layer in b["probes"].values():
        for name in ("position in bar", "next is bar line"):
            p = layer[name]
            assert 0 <= p["h"] <= 1 and 0 <= p["token_baseline"] <= 1 and abs(p["shuffled_h"] - p["chance"]) < 0.25
    assert set(b["top_units"]) == {"1", "2", "3"} and len(b["top_units"]["1"]) == 10
    kinds = {(a["units"], a["replace"]) for a in b["ablation"]}
    assert kinds == {("top", "zero"), ("top", "mean"), ("random", "zero"), ("variance_matched", "zero"),
                     ("variance_matched", "mean")}
    for a in b["ablation"]:
        assert {"layer", "k", "units", "replace", "bars_right", "sd", "tunes", "seeds"} <= set(a)
        assert a["layer"] in (1, 2, 3) and len(a["unit_ids"]) == a["k"]
    assert 0 <= b["baseline_bars_right"] <= 1 and "recovery" in b and "none" in b["recovery"]
    cf = f["structure"]["cycle_units_fourier"]
    assert set(cf) <= {"1", "2", "3"}
    for c in cf.values():
        assert len(c["top"]) == 5 and all(0 <= u["power"] <= 1 for u in c["top"]) and c["units"] == 16
        assert set(c["above_control_max"]) <= set(c["above_controls"]) <= set(range(16)) and 0 <= c["shuffled_bars_99"] <= 1
    assert "repeated_bars" in f["structure"] and "model_p_tonic_at_cadence" in f["cadences"]
    assert f["enharmonics"]["behaviour"]["tunes"] >= 3
    assert set(f["answers"]) == {"q1", "q2", "q3", "q4"}
    html = (tmp_path / "r" / "report.html").read_text()
    assert "8-bar cycles" in html
    # numbers in sentences come from the findings
    assert f"{100 * b['baseline_bars_right']:.1f}%" in html


def test_generate_ablate_and_clamp(tmp_path, capsys):
    m = FolkRNN(ModelConfig(hidden_size=16, num_layers=3))
    m.reset_parameters(torch.Generator().manual_seed(4))
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(path, m, V2)
    base = ["generate", "-m", str(path), "-s", "3", "-n", "2", "--max-length", "40", "-f", "json", "--no-progress"]
    assert main(base) == 0
    plain = capsys.readouterr().out
    assert main(base + ["--ablate", "3:0,1,2,3,4,5,6,7", "--clamp", "2:1=0.9"]) == 0
    changed = capsys.readouterr().out
    assert plain and [json.loads(x)["tokens"] for x in plain.splitlines()] != [json.loads(x)["tokens"] for x in changed.splitlines()]
    assert main(base[:-3] + ["-f", "abc", "--no-progress", "--ablate", "3:0"]) == 0
    assert "--ablate 3:0" in capsys.readouterr().out
    for bad, msg in ((["--ablate", "4:1"], "no hook point"), (["--ablate", "3:16"], "unit 16"),
                     (["--clamp", "2:1"], "LAYER:UNITS=VALUE")):
        assert main(base + bad) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1
