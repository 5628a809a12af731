"""Checkpoints: round trip, validation with one-line errors, `-m MODEL` resolution, parameter table."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import folkrnn.load as ld
from folkrnn.checkpoint import FORMAT_VERSION, load_checkpoint, parameter_table, read_metadata, save_checkpoint
from folkrnn.cli import main
from folkrnn.errors import FolkRNNError
from folkrnn.load import NO_DEFAULT, load_model
from folkrnn.model import FolkRNN, ModelConfig
from folkrnn.vocab import Vocabulary

V2 = Vocabulary.v2()


@pytest.fixture
def tiny(tmp_path) -> tuple[Path, FolkRNN]:
    torch.manual_seed(0)
    m = FolkRNN(ModelConfig(hidden_size=16, num_layers=2)).eval()
    with torch.no_grad():
        for layer in m.layers:
            layer.c0.normal_()
            layer.h0.normal_()
    p = tmp_path / "tiny.safetensors"
    save_checkpoint(p, m, V2, {"training": {"epoch": 3, "history": [{"epoch": 3, "valid_nll": 1.25}]}})
    return p, m


def test_round_trip_fp32_and_fp16(tiny, tmp_path):
    p, m = tiny
    ck2 = load_checkpoint(p)
    for k, v in m.state_dict().items():
        assert torch.equal(ck2.model.state_dict()[k], v)
    assert ck2.vocab == V2 and ck2.metadata["training"]["epoch"] == 3
    assert ck2.metadata["format_version"] == FORMAT_VERSION
    half = tmp_path / "half.safetensors"
    save_checkpoint(half, m, V2, dtype=torch.float16)
    assert half.stat().st_size < p.stat().st_size * 0.6
    h = load_checkpoint(half)
    assert max(float((h.model.state_dict()[k] - v).abs().max()) for k, v in m.state_dict().items()) < 1e-2
    with pytest.raises(FolkRNNError, match="float32 or float16"):
        save_checkpoint(tmp_path / "x.safetensors", m, V2, dtype=torch.int8)


def _tensors(m: FolkRNN) -> dict:
    return {k: v.detach().clone().contiguous() for k, v in m.state_dict().items()}


def _write(path: Path, tensors: dict, meta: dict) -> Path:
    save_file(tensors, str(path), metadata={"folkrnn": json.dumps(meta)})
    return path


def test_validation_errors_are_one_line(tiny, tmp_path):
    p, m = tiny
    meta = read_metadata(p)
    t = _tensors(m)
    bad_shape = dict(t, **{"out.bias": torch.zeros(5)})
    bad_dtype = dict(t, **{"out.bias": torch.zeros(137, dtype=torch.int32)})
    bad_nan = dict(t, **{"out.bias": torch.full((137,), float("nan"))})
    missing = {k: v for k, v in t.items() if k != "out.bias"}
    cases = {
        "shape": (_write(tmp_path / "s.safetensors", bad_shape, meta), "out.bias has shape"),
        "dtype": (_write(tmp_path / "d.safetensors", bad_dtype, meta), "dtype torch.int32"),
        "nan": (_write(tmp_path / "n.safetensors", bad_nan, meta), "NaN"),
        "names": (_write(tmp_path / "m.safetensors", missing, meta), "missing \\['out.bias'\\]"),
        "vocab": (_write(tmp_path / "v.safetensors", t, dict(meta, vocabulary=list(V2.tokens[:100]))), "100 tokens but the config says 137"),
        "config": (_write(tmp_path / "c.safetensors", t, dict(meta, config={"hidden_size": 16, "bogus": 1})), "unknown model config keys: bogus"),
        "format": (_write(tmp_path / "f.safetensors", t, {"x": 1}), "format field missing"),
        "newer": (_write(tmp_path / "w.safetensors", t, dict(meta, format_version=99)), "newer"),
    }
    data = p.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) - 1000])
    cases["truncated"] = (tmp_path / "trunc.safetensors", "corrupt or truncated")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 50)
    cases["garbage"] = (tmp_path / "garbage.safetensors", "not a folkrnn checkpoint")
    for name, (path, msg) in cases.items():
        with pytest.raises(FolkRNNError, match=msg) as e:
            load_model(path)
        assert "\n" not in str(e.value) and str(path) in str(e.value), name


def test_model_spec_resolution(tiny, tmp_path, monkeypatch):
    p, _ = tiny
    with pytest.raises(FolkRNNError, match="no such model file"):
        load_model(tmp_path / "nope.safetensors")
    with pytest.raises(FolkRNNError, match="is a directory"):
        load_model(tmp_path)
    monkeypatch.setattr(ld, "default_model_path", lambda: None)
    with pytest.raises(FolkRNNError) as e:
        load_model("default")
    assert str(e.value) == NO_DEFAULT
    assert main(["info"]) == 2  # -m default is the default
    monkeypatch.setattr(ld, "default_model_path", lambda: p)
    assert load_model("default").model.config.hidden_size == 16
    assert load_model().model.config.hidden_size == 16


def test_shipped_default_is_a_trained_v2_model():
    assert ld.default_model_path() is not None, "the package ships folkrnn_v2_default.safetensors"
    ckpt = load_model("default")
    assert ckpt.vocab == Vocabulary.v2()
    assert ckpt.model.num_parameters() == 5_599_881
    assert ckpt.metadata["training"]["best_valid"] < 2.0  # far below the unigram's ~3.1


def test_parameter_table_v2():
    m = FolkRNN(ModelConfig())
    rows = parameter_table(m)
    whole = [r for r in rows if "[" not in r.name]
    assert sum(r.count for r in whole if r.trainable) == 5_599_881
    assert sum(r.count for r in whole if not r.trainable) == 3 * 2 * 512
    gates = [r for r in rows if r.name.startswith("layers.1.weight_hh[")]
    assert [r.name[-2] for r in gates] == ["i", "f", "g", "o"] and all(r.shape == (512, 512) for r in gates)
    norm = next(r.norm for r in rows if r.name == "layers.1.weight_hh")
    assert norm == pytest.approx(sum(g.norm**2 for g in gates) ** 0.5, rel=1e-5)
    f_bias = next(r for r in rows if r.name == "layers.0.bias[f]")
    assert f_bias.norm == pytest.approx(5.0 * 512**0.5)


def test_info_cli(tiny, capsys):
    p, _ = tiny
    assert main(["info", "-m", str(p)]) == 0
    out = capsys.readouterr().out
    assert "14,297" in out and "layers.1.weight_hh[f]" in out
    assert "out.bias[" not in out  # the output bias is one number per token, not four gates
    assert main(["info", "-m", str(p), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["parameters"] == 14_297 and doc["initial_state_numbers"] == 64 and doc["vocabulary_size"] == 137


def test_info_full_v2_count(tmp_path, capsys):
    p = tmp_path / "v2.safetensors"
    save_checkpoint(p, FolkRNN(ModelConfig()), V2)
    assert main(["info", "-m", str(p), "--no-gates"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"parameters +5,599,881 \(plus 3,072", out)


def test_tensor_checksum_catches_damage_a_valid_header_hides(tmp_path):
    p = tmp_path / "m.safetensors"
    save_checkpoint(p, FolkRNN(ModelConfig(hidden_size=8, num_layers=1)), V2)
    assert len(read_metadata(p)["tensors_sha256"]) == 64
    data = bytearray(p.read_bytes())
    data[-7] ^= 0x01  # one flipped bit in the last tensor's bytes: header and shapes intact, values finite
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(FolkRNNError, match=r"bad\.safetensors: the weights do not match the checksum") as e:
        load_checkpoint(bad)
    assert "\n" not in str(e.value)
    # a file written before checksums existed still loads
    meta = read_metadata(p)
    del meta["tensors_sha256"]
    old = tmp_path / "old.safetensors"
    save_file(load_file(str(p)), str(old), metadata={"folkrnn": json.dumps(meta)})
    assert load_checkpoint(old).model.config.hidden_size == 8


def test_info_is_a_model_card(tmp_path, capsys):
    from folkrnn.train import TrainConfig

    tc = asdict(TrainConfig())
    hist = [{"iteration": 10 * e, "epoch": float(e), "train_nll": 3 - e / 20, "valid_nll": 3 - e / 25 + (0.5 if e > 20 else 0),
             "lr": 0.003} for e in range(1, 31)]
    meta = {"training": {"train_config": tc, "data": {"path": "d.txt", "tunes": 100, "train_tunes": 90, "valid_tunes": 10,
                                                      "train_tokens": 900, "valid_tokens": 100, "sha256": "ab" * 32},
                         "epoch": 30, "iteration": 300, "tokens_seen": 27_000, "elapsed": 7200.0, "best_valid": 2.2,
                         "history": hist}}
    p = tmp_path / "m.safetensors"
    save_checkpoint(p, FolkRNN(ModelConfig(hidden_size=8, num_layers=1)), V2, meta)
    assert main(["info", "-m", str(p)]) == 0
    out = capsys.readouterr().out
    assert "{" not in out  # no raw JSON
    recipe = " ".join(out.split("recipe", 1)[1].split("\n\n", 1)[0].split())
    for k, v in tc.items():  # the whole recipe, nothing cut off
        assert f"{k} " in recipe, k
    table = out.split("Validation history", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    assert len(table) == 10 and sum(r.endswith("*") for r in table) == 1
    assert table[0].split()[0] == "1.0" and table[-1].split()[0] == "30.0" and table[-1].endswith("*") is False
    assert next(r for r in table if r.endswith("*")).split()[0] == "20.0"  # the best (epoch 20) is always shown
    assert "data        d.txt: 100 tunes (90 for training, 10 held out)" in out


# -- hostile configs and headers: refused before anything is built ----------------------
def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.fixture
def no_build(monkeypatch):
    """Building the model (or reading the tensors) is the cost a bad header must not reach."""
    import folkrnn.checkpoint as ck

    def refuse(*a, **k):
        raise AssertionError("the model was built (or the tensors read) for a bad file")

    monkeypatch.setattr(ck, "FolkRNN", refuse)
    monkeypatch.setattr(ck, "load_file", refuse)


@pytest.mark.parametrize("config, msg", [
    ({"hidden_size": 6000}, r"hidden_size must be 1\.\.4096, got 6000"),
    ({"hidden_size": 10**9}, r"hidden_size must be 1\.\.4096"),
    ({"hidden_size": 1e9}, r"hidden_size must be a whole number, got 1000000000\.0"),
    ({"hidden_size": 512.5}, r"hidden_size must be a whole number, got 512\.5"),
    ({"hidden_size": True}, r"hidden_size must be a whole number, got True"),
    ({"hidden_size": "16"}, r"hidden_size must be a whole number, got '16'"),
    ({"num_layers": 20000}, r"num_layers must be 1\.\.16, got 20000"),
    ({"num_layers": 0}, r"num_layers must be 1\.\.16, got 0"),
    ({"vocab_size": 10**7}, r"vocab_size must be 3\.\.4096"),
    ({"dropout": "0.5"}, r"dropout must be a number in \[0, 1\), got '0\.5'"),
    ({"dropout": 1.0}, r"dropout must be a number in \[0, 1\)"),
    ({"hidden_size": 4096, "num_layers": 16}, r"2,0\d\d,\d\d\d,\d\d\d parameters; folkrnn reads at most 100,000,000"),
    # within every cap, but not what the tensors are: the header's shapes say so first
    ({"hidden_size": 2500}, r"tensor layers\.0\.weight_ih has shape \(64, 137\), expected \(10000, 137\)"),
    ({"num_layers": 3}, r"tensor names do not match the model \(missing \['layers\.2\.bias'"),
])
def test_bad_configs_are_refused_before_the_model_is_built(tiny, tmp_path, no_build, config, msg):
    p, m = tiny
    meta = read_metadata(p)
    bad = _write(tmp_path / "bad.safetensors", _tensors(m), dict(meta, config=dict(meta["config"], **config)))
    with pytest.raises(FolkRNNError, match=msg) as e:
        load_model(bad)
    assert "\n" not in str(e.value) and str(bad) in str(e.value)


def test_config_that_is_not_an_object(tiny, tmp_path, no_build):
    p, m = tiny
    bad = _write(tmp_path / "bad.safetensors", _tensors(m), dict(read_metadata(p), config=[16, 2]))
    with pytest.raises(FolkRNNError, match="model config: expected a JSON object, got list"):
        load_model(bad)


def test_deeply_nested_json_is_refused(tiny, tmp_path, no_build):
    p, m = tiny
    t = _tensors(m)
    meta_text = json.dumps(read_metadata(p))
    for depth, msg in ((100_000, "nested too deeply"), (200, "nested more than 64 deep")):
        # in the folkrnn metadata string
        bad = tmp_path / f"meta{depth}.safetensors"
        save_file(t, str(bad), metadata={"folkrnn": meta_text[:-1] + f', "x": {_nested(depth)}}}'})
        with pytest.raises(FolkRNNError, match=msg):
            load_model(bad)
        # in the safetensors header itself
        raw = tmp_path / f"header{depth}.safetensors"
        header = f'{{"__metadata__": {{"folkrnn": {json.dumps(meta_text)}}}, "x": {_nested(depth)}}}'.encode()
        raw.write_bytes(len(header).to_bytes(8, "little") + header)
        with pytest.raises(FolkRNNError, match=msg) as e:
            load_model(raw)
        assert "\n" not in str(e.value)
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes((200_000_000).to_bytes(8, "little") + b"{}")
    with pytest.raises(FolkRNNError, match="not a folkrnn checkpoint"):
        load_model(huge)


def test_cli_info_on_a_bad_config_is_one_line_exit_2(tiny, tmp_path):
    import subprocess
    import sys

    p, m = tiny
    meta = read_metadata(p)
    bad = _write(tmp_path / "bad.safetensors", _tensors(m), dict(meta, config=dict(meta["config"], hidden_size=512.5)))
    r = subprocess.run([sys.executable, "-m", "folkrnn", "info", "-m", str(bad)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"folkrnn info: error: {bad}: hidden_size must be a whole number, got 512.5"
