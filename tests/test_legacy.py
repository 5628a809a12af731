"""Lasagne pickle import: original layout, numpy re-computation of the LSTM equations, hostile and broken pickles."""

from __future__ import annotations

import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from folkrnn.checkpoint import load_checkpoint
from folkrnn.load import load_model
from folkrnn.cli import main
from folkrnn.errors import FolkRNNError
from folkrnn.legacy import load_lasagne_pickle, safe_load, to_lasagne_params
from folkrnn.vocab import Vocabulary

V2 = Vocabulary.v2()


class Py2Pickler(pickle._Pickler):  # the pure-Python pickler, to write opcodes as Python 2 did
    """Protocol 2 with `bytes` written as Python 2 `str` (SHORT_BINSTRING/BINSTRING) or,
    with as_bytes, as SHORT_BINBYTES (read back as bytes: a py2 str read with encoding='bytes')."""

    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, f, as_bytes: bool = False):
        super().__init__(f, protocol=2)
        self.as_bytes = as_bytes

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        if self.as_bytes and n < 256:
            self.write(pickle.SHORT_BINBYTES + bytes([n]) + obj)
        elif n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_pickle(obj, as_bytes_keys: bool = False) -> bytes:
    """A pickle as folk-rnn's Python 2 training script wrote it: protocol 2, str keys
    as byte strings, numpy globals under `numpy.core.multiarray`."""
    buf = io.BytesIO()
    Py2Pickler(buf, as_bytes=as_bytes_keys).dump(obj)
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def lasagne_params(rng: np.random.Generator, V: int, H: int, L: int = 3, scale: float = 0.3) -> list[np.ndarray]:
    """1 + 14 L + 2 float32 arrays in Lasagne's layout (docs/tokens.md)."""
    f = lambda *shape: (rng.standard_normal(shape) * scale).astype(np.float32)  # noqa: E731
    params = [np.eye(V, dtype=np.float32)]
    n_in = V
    for _ in range(L):
        for _gate in range(4):
            params += [f(n_in, H), f(H, H), f(H)]
        params += [f(1, H), f(1, H)]  # cell_init, hid_init
        n_in = H
    params += [f(H, V), f(V)]
    return params


def folkrnn_dict(params, token2idx) -> dict:
    return {
        # as train_rnn.py wrote them: Theano outputs and get_value() are 0-d arrays
        b"configuration": b"config5", b"experiment_id": b"folkrnn_v2_test", b"epoch_since_start": 100,
        b"iters_since_start": 35000, b"losses_train": [np.array(1.5, np.float32), np.array(1.2, np.float32)],
        b"losses_eval_valid": [np.float64(1.4), 1.3], b"learning_rate": np.array(0.003, np.float32),
        b"token2idx": token2idx, b"param_values": params,
    }


def v2_token2idx(as_bytes: bool = True) -> dict:
    return {(t.encode() if as_bytes else t): i for i, t in enumerate(V2.tokens)}


def numpy_probs(params: list[np.ndarray], ids: list[int]) -> np.ndarray:
    """The v2 equations (docs/tokens.md) from the Lasagne arrays, one time step at a time, in float64: (T, V)."""
    p = [a.astype(np.float64) for a in params]
    L = (len(p) - 3) // 14
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    h = [p[1 + 14 * l + 13][0].copy() for l in range(L)]
    c = [p[1 + 14 * l + 12][0].copy() for l in range(L)]
    out = []
    for t in ids:
        u = p[0][t]
        for l in range(L):
            k = 1 + 14 * l
            gate = lambda g: u @ p[k + 3 * g] + h[l] @ p[k + 3 * g + 1] + p[k + 3 * g + 2]  # noqa: E731
            i, f, g, o = sig(gate(0)), sig(gate(1)), np.tanh(gate(2)), sig(gate(3))
            c[l] = f * c[l] + i * g
            h[l] = o * np.tanh(c[l])
            u = h[l]
        z = u @ p[-2] + p[-1]
        e = np.exp(z - z.max())
        out.append(e / e.sum())
    return np.array(out)


def our_probs(model, ids: list[int], explicit: bool = False) -> np.ndarray:
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = model.run_explicit(x)[0] if explicit else model(x)[0]
    return torch.softmax(logits[0].double(), -1).numpy()


TUNE = ["<s>", "M:6/8", "K:Cdor", "|:", "G", "c", "c", "B", "c", "d", "|", "e", "2", "d", "c", "3", ":|", "</s>"]


@pytest.fixture(scope="module")
def v2_pickle(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    params = lasagne_params(np.random.default_rng(0), 137, 32)
    path = tmp_path_factory.mktemp("pkl") / "folkrnn_v2.pkl"
    path.write_bytes(py2_pickle(folkrnn_dict(params, v2_token2idx())))
    return path, params


def test_import_matches_numpy_recomputation(v2_pickle):
    path, params = v2_pickle
    ckpt = load_lasagne_pickle(path)
    assert ckpt.vocab == V2 and ckpt.model.config.hidden_size == 32 and ckpt.model.config.num_layers == 3
    ids = V2.encode(TUNE)
    ref = numpy_probs(params, ids)
    assert np.abs(our_probs(ckpt.model, ids) - ref).max() <= 1e-5
    assert np.abs(our_probs(ckpt.model, ids, explicit=True) - ref).max() <= 1e-5
    src = ckpt.metadata["source"]
    assert src["configuration"] == "config5" and src["epoch_since_start"] == 100
    assert src["losses_train"] == pytest.approx([1.5, 1.2]) and len(src["sha256"]) == 64
    assert src["losses_eval_valid"] == pytest.approx([1.4, 1.3]) and src["learning_rate"] == pytest.approx(0.003)


def test_full_size_v2_pickle_has_5599881_parameters(tmp_path):
    params = lasagne_params(np.random.default_rng(1), 137, 512, scale=0.05)
    assert len(params) == 45
    path = tmp_path / "v2.pkl"
    path.write_bytes(py2_pickle(folkrnn_dict(params, v2_token2idx())))
    model = load_lasagne_pickle(path).model
    assert model.num_parameters() == 5_599_881
    ids = V2.encode(TUNE[:8])
    assert np.abs(our_probs(model, ids) - numpy_probs(params, ids)).max() <= 1e-5


def test_bytes_keys_and_python3_pickles_load(tmp_path):
    params = lasagne_params(np.random.default_rng(2), 137, 8, L=1)
    for i, data in enumerate((py2_pickle(folkrnn_dict(params, v2_token2idx()), as_bytes_keys=True),
                              pickle.dumps({"token2idx": v2_token2idx(False), "param_values": params}, protocol=2),
                              pickle.dumps({"token2idx": v2_token2idx(False), "param_values": params}, protocol=4))):
        p = tmp_path / f"m{i}.pkl"
        p.write_bytes(data)
        ckpt = load_lasagne_pickle(p)
        assert ckpt.vocab == V2 and ckpt.model.config.num_layers == 1


def test_reordered_v2_vocabulary_is_put_in_canonical_order(tmp_path):
    rng = np.random.default_rng(3)
    params = lasagne_params(rng, 137, 16, L=2)
    order = rng.permutation(137)  # the pickle's index j holds v2 token order[j]
    t2i = {V2.tokens[order[j]].encode(): j for j in range(137)}
    p = tmp_path / "perm.pkl"
    p.write_bytes(py2_pickle(folkrnn_dict(params, t2i)))
    ckpt = load_lasagne_pickle(p)
    assert ckpt.vocab == V2
    pickle_vocab = [V2.tokens[order[j]] for j in range(137)]
    ids_pickle = [pickle_vocab.index(t) for t in TUNE]
    ref = numpy_probs(params, ids_pickle)  # columns in the pickle's order
    ours = our_probs(ckpt.model, V2.encode(TUNE))
    ref_canonical = ref[:, [pickle_vocab.index(t) for t in V2.tokens]]
    assert np.abs(ours - ref_canonical).max() <= 1e-5


def test_other_vocabulary_and_sizes(tmp_path):
    """A Swedish-style model: its own token2idx and vocabulary size, another hidden size."""
    toks = ["<s>", "</s>", "[L:1/8]", "[M:3/4]", "[K:DMin]", "A", "B", "c", "d", "|", "2", "z", "(3"]
    params = lasagne_params(np.random.default_rng(4), len(toks), 24, L=2)
    p = tmp_path / "swedish.pkl"
    p.write_bytes(py2_pickle(folkrnn_dict(params, {t.encode(): i for i, t in enumerate(toks)})))
    ckpt = load_lasagne_pickle(p)
    assert list(ckpt.vocab.tokens) == toks
    assert ckpt.model.config.vocab_size == 13 and ckpt.model.config.hidden_size == 24
    ids = [0, 2, 3, 4, 5, 9, 8, 6, 1]
    assert np.abs(our_probs(ckpt.model, ids) - numpy_probs(params, ids)).max() <= 1e-5
    from folkrnn.sample import SampleConfig, sample

    tunes = list(sample(ckpt.model, ckpt.vocab, SampleConfig(num_tunes=3, seed=1, max_length=20, prime=("[L:1/8]", "M:*", "K:*"))))
    assert all(t.tokens[1] == "[M:3/4]" and t.tokens[2] == "[K:DMin]" for t in tunes)


def test_non_identity_embedding_is_folded_in(tmp_path):
    rng = np.random.default_rng(5)
    params = lasagne_params(rng, 137, 8, L=1)
    params[0] = (rng.standard_normal((137, 137)) * 0.2).astype(np.float32)
    p = tmp_path / "emb.pkl"
    p.write_bytes(py2_pickle(folkrnn_dict(params, v2_token2idx())))
    ids = V2.encode(TUNE)
    assert np.abs(our_probs(load_lasagne_pickle(p).model, ids) - numpy_probs(params, ids)).max() <= 1e-5


class Hostile:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    params = lasagne_params(np.random.default_rng(6), 137, 8, L=1)
    data = pickle.dumps({"token2idx": v2_token2idx(False), "param_values": params, "x": Hostile(marker)}, protocol=2)
    p = tmp_path / "evil.pkl"
    p.write_bytes(data)
    with pytest.raises(FolkRNNError, match=r"refusing to load (posix|os|nt)\.system"):
        load_lasagne_pickle(p)
    assert not marker.exists()
    for payload in (pickle.dumps(eval, protocol=2), pickle.dumps(torch.nn.Linear, protocol=2)):
        with pytest.raises(FolkRNNError, match="refusing to load"):
            safe_load(payload)
    # The CLI: one line, exit 2, nothing run.
    assert main(["import", str(p), "-o", str(tmp_path / "x.safetensors")]) == 2
    assert not marker.exists() and not (tmp_path / "x.safetensors").exists()


def test_unpickler_allow_list_is_exactly_arrays_scalars_dtypes_and_sets():
    from folkrnn.legacy import _ALLOWED, RestrictedUnpickler

    old, new = "numpy.core.multiarray", "numpy._core.multiarray"
    want = {
        (old, "_reconstruct"), (new, "_reconstruct"), (old, "scalar"), (new, "scalar"),
        ("numpy", "ndarray"), (old, "ndarray"), (new, "ndarray"), ("numpy", "dtype"), (old, "dtype"), (new, "dtype"),
        ("__builtin__", "set"), ("builtins", "set"), ("__builtin__", "frozenset"), ("builtins", "frozenset"),
    }
    assert set(_ALLOWED) == want | {("_codecs", "encode")}
    unpickler = RestrictedUnpickler(io.BytesIO(b""))
    # each name gets a guarded stand-in that does what numpy's own pickles need of it
    for spelling in (old, new):
        a = unpickler.find_class(spelling, "_reconstruct")(unpickler.find_class("numpy", "ndarray"), (0,), b"b")
        assert type(a) is np.ndarray and a.shape == (0,)
        assert unpickler.find_class(spelling, "scalar")(np.dtype("f4"), b"\x00\x00\xc0?") == np.float32(1.5)
        assert unpickler.find_class(spelling, "dtype")("f4", False, True) == np.dtype("f4")
    assert unpickler.find_class("builtins", "set")([1, 1, 2]) == {1, 2}
    assert unpickler.find_class("__builtin__", "frozenset")((3,)) == frozenset({3})
    # _codecs.encode is admitted only as the latin-1 bytes maker Python 3 writes at protocol 2.
    enc = unpickler.find_class("_codecs", "encode")
    assert enc("\xff\x00A", "latin1") == b"\xff\x00A" and enc("A", "latin-1") == b"A"


def _call(module: str, name: str, *args) -> bytes:
    """A protocol 2 pickle that calls module.name(*args) (GLOBAL + REDUCE), as an attacker writes it."""
    arg_ops = pickle.dumps(args, protocol=2)[2:-1]  # the tuple's opcodes, without PROTO and STOP
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + arg_ops + b"R."


def test_hostile_globals_from_allowed_looking_modules_are_refused(tmp_path):
    """numpy and codec functions that can run code or write files, spelled every way a
    pickle can name a global: each is refused with the project error, and none runs."""
    marker = tmp_path / "pwned"
    run_code = f"open({str(marker)!r}, 'w').close()"
    payloads = {
        "numpy.testing runstring (exec)": _call("numpy.testing", "runstring", run_code, {}),
        "numpy.testing._private.utils runstring": _call("numpy.testing._private.utils", "runstring", run_code, {}),
        "numpy.testing assert_ (harmless, still not data)": _call("numpy.testing", "assert_", True),
        "numpy.lib.format open_memmap (writes a file)": _call("numpy.lib.format", "open_memmap", str(marker), "w+", "u1", (1,)),
        "numpy.lib._npyio_impl save (writes a file)": _call("numpy.lib._npyio_impl", "save", str(marker), [1]),
        "numpy load (an unrestricted unpickler)": _call("numpy", "load", str(marker), None, True),
        "numpy frombuffer": _call("numpy", "frombuffer", b"\x00" * 8),
        "a method through a dotted name": _call("numpy", "ndarray.tofile", str(marker)),
        "multiarray, not a constructor": _call("numpy._core.multiarray", "_vec_string", ["a"], "S1", "upper"),
        "_codecs.encode rot13": _call("_codecs", "encode", "abc", "rot13"),
        "_codecs.encode utf-16": _call("_codecs", "encode", "abc", "utf-16"),
        "_codecs.encode zlib": _call("_codecs", "encode", b"abc", "zlib"),
        "_codecs.encode base64": _call("_codecs", "encode", b"abc", "base64"),
        "_codecs.encode of bytes": _call("_codecs", "encode", b"abc", "latin1"),
        "builtins eval, protocol 4 (STACK_GLOBAL)": pickle.dumps(eval, protocol=4),
        "builtins getattr": _call("builtins", "getattr", 1, "real"),
        "copyreg _reconstructor": _call("copyreg", "_reconstructor", 1, 2, 3),
    }
    # builtins.eval spelled through copyreg's extension registry (EXT1 opcode): the
    # unpickler looks the code up and still asks find_class for builtins.eval.
    import copyreg

    code = next(c for c in range(200, 256) if c not in copyreg._inverted_registry)
    copyreg.add_extension("builtins", "eval", code)
    try:
        ext = b"\x80\x02\x82" + bytes([code]) + pickle.dumps((run_code,), protocol=2)[2:-1] + b"R."
        payloads["builtins eval via copyreg extension"] = ext
        for what, blob in payloads.items():
            with pytest.raises(FolkRNNError, match=r"^hostile: refusing") as e:
                safe_load(blob, where="hostile")
            assert "\n" not in str(e.value), what
            assert not marker.exists(), what
    finally:
        copyreg.remove_extension("builtins", "eval", code)
    # The same pickles with the standard unpickler do run (so the payloads are real).
    pickle.loads(payloads["numpy.testing runstring (exec)"])
    assert marker.exists()


def test_truncated_and_malformed_pickles(tmp_path, v2_pickle):
    path, params = v2_pickle
    data = path.read_bytes()
    cases = {
        "trunc": (data[: len(data) // 2], "truncated or corrupt"),
        "empty": (b"", "truncated or corrupt"),
        "notdict": (py2_pickle([1, 2, 3]), "expected the folk-rnn metadata dict"),
        "nokey": (py2_pickle({b"param_values": params}), "lacks the key 'token2idx'"),
        "count": (py2_pickle(folkrnn_dict(params[:44], v2_token2idx())), "has 44 arrays"),
        "shape": (py2_pickle(folkrnn_dict(params[:5] + [params[5][:, :3]] + params[6:], v2_token2idx())), r"param_values\[5\]"),
        "dtype": (py2_pickle(folkrnn_dict(params[:3] + [params[3].astype(np.int32)] + params[4:], v2_token2idx())), "dtype int32"),
        "nan": (py2_pickle(folkrnn_dict(params[:2] + [np.full_like(params[2], np.nan)] + params[3:], v2_token2idx())), "NaN"),
        "vocab": (py2_pickle(folkrnn_dict(params, {b"<s>": 0, b"</s>": 0})), "index 0 to both"),
        "vsize": (py2_pickle(folkrnn_dict(params, {b"<s>": 0, b"</s>": 1, b"A": 2})), "3 tokens but the arrays are for 137"),
    }
    for name, (blob, msg) in cases.items():
        p = tmp_path / f"{name}.pkl"
        p.write_bytes(blob)
        with pytest.raises(FolkRNNError, match=msg) as e:
            load_lasagne_pickle(p)
        assert "\n" not in str(e.value) and str(p) in str(e.value), name


def test_cli_import_and_pickle_as_model(tmp_path, v2_pickle, capsys):
    path, params = v2_pickle
    out = tmp_path / "imported.safetensors"
    assert main(["import", str(path), "-o", str(out)]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.metadata["source"]["experiment_id"] == "folkrnn_v2_test"
    ids = V2.encode(TUNE)
    assert np.abs(our_probs(ckpt.model, ids) - numpy_probs(params, ids)).max() <= 1e-5
    # fp16 storage: same model to fp16 precision
    assert main(["import", str(path), "-o", str(tmp_path / "half.safetensors"), "--fp16"]) == 0
    half = load_checkpoint(tmp_path / "half.safetensors")
    assert np.abs(our_probs(half.model, ids) - numpy_probs(params, ids)).max() <= 2e-3
    # -m file.pkl works directly
    assert load_model(path).model.config.hidden_size == 32
    capsys.readouterr()
    assert main(["generate", "-m", str(path), "-n", "2", "--seed", "3", "--format", "tokens", "--max-length", "30", "--meter", "6/8", "--mode", "major", "--no-progress"]) == 0
    assert capsys.readouterr().out.count("M:") >= 1


def test_export_round_trip(v2_pickle, tmp_path):
    path, params = v2_pickle
    model = load_lasagne_pickle(path).model
    back = to_lasagne_params(model)
    assert len(back) == 45 and all(a.shape == b.shape for a, b in zip(back, params))
    assert max(float(np.abs(a - b).max()) for a, b in zip(back, params)) == 0.0


def test_info_on_a_pickle(v2_pickle, capsys):
    path, _ = v2_pickle
    assert main(["info", "-m", str(path), "--no-gates"]) == 0
    out = capsys.readouterr().out
    assert "imported    lasagne-pickle folkrnn_v2.pkl" in out and "experiment_id folkrnn_v2_test" in out
    assert "training loss: 2 values" in out and "layers.2.weight_hh" in out and "checksum" not in out


# -- hostile sizes: refused before numpy allocates, memory bounded by the file --------------
class _ArrayPickle:
    """Pickles as numpy writes an array (_reconstruct, then BUILD with `state`), whatever the state says."""

    def __init__(self, state, declared=(0,)):
        self.state, self.declared = state, declared

    def __reduce__(self):
        import numpy._core.multiarray as ma

        return (ma._reconstruct, (np.ndarray, self.declared, b"b"), self.state)


class _ZeroStride:
    """numpy.ndarray(shape, dtype, buffer, 0, strides=0): a huge array over a few bytes."""

    def __init__(self, shape):
        self.shape = shape

    def __reduce__(self):
        return (np.ndarray, (self.shape, "f4", b"\0" * 4, 0, (0,) * len(self.shape)))


def _max_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("obj, msg", [
    (_ArrayPickle((1, (10**6, 10**6), np.dtype("f8"), False, b"\0" * 100)), r"1,000,000,000,000 numbers, more than the 100,000,000"),
    (_ArrayPickle(None, declared=(10**12,)), r"1,000,000,000,000 numbers"),
    (_ArrayPickle((1, (4,), np.dtype("f4"), False, b"\0" * 100)), r"its data is 100 bytes, not the 16 they need"),
    (_ArrayPickle((1, (2,), np.dtype("O"), False, [1, 2])), r"refusing dtype object"),
    (_ArrayPickle((1, (2,), np.dtype([("a", "f8")]), False, b"\0" * 16)), r"refusing dtype"),
    (_ZeroStride((10**6, 10**6)), r"refusing numpy\.ndarray\(\.\.\.\) called directly"),
])
def test_declared_arrays_are_checked_before_they_are_built(obj, msg):
    import time

    for protocol in (2, 4):
        start = time.monotonic()
        with pytest.raises(FolkRNNError, match=msg) as e:
            safe_load(pickle.dumps(obj, protocol=protocol), where="hostile")
        assert time.monotonic() - start < 5
        assert str(e.value).startswith("hostile: refusing") and "\n" not in str(e.value)


def test_data_reused_over_and_over_is_refused():
    raw = b"\0" * 65536
    arrays = pickle.dumps([_ArrayPickle((1, (16384,), np.dtype("f4"), False, raw)) for _ in range(300)], protocol=3)
    assert len(arrays) < 80_000  # one buffer, named 300 times: 20 MB of arrays
    with pytest.raises(FolkRNNError, match=r"refusing to build more than [\d,]+ bytes of arrays from this file"):
        safe_load(arrays)
    # a set built from the same list again and again
    items = pickle.dumps(list(range(20000)), protocol=2)[2:-1]  # ... BINPUT 0 ...: the list is memo 0
    sets = b"\x80\x02" + items + b"cbuiltins\nfrozenset\nh\x00\x85R0" * 40 + b"."
    with pytest.raises(FolkRNNError, match="refusing to build more than"):
        safe_load(sets)


def test_one_array_named_as_many_weights_is_refused(tmp_path):
    params = lasagne_params(np.random.default_rng(7), 137, 8, L=1)
    params[4] = params[1]  # W_in_to_forgetgate is W_in_to_ingate: the same shape, one object
    p = tmp_path / "shared.pkl"
    p.write_bytes(py2_pickle(folkrnn_dict(params, v2_token2idx())))
    with pytest.raises(FolkRNNError, match=r"param_values\[4\] is the same array as param_values\[1\]"):
        load_lasagne_pickle(p)


def test_layout_sizes_are_capped_before_conversion(tmp_path):
    tiny = np.zeros((1, 1), np.float32)

    def layout(V: int, H: int, L: int) -> list[np.ndarray]:
        # only the embedding and softmax W carry the sizes; the rest is wrong on purpose,
        # so that only a size check made first names the sizes
        return [np.eye(V, dtype=np.float32)] + [tiny.copy() for _ in range(14 * L)] + [np.zeros((H, V), np.float32), np.zeros(V, np.float32)]

    cases = {
        "hidden": (layout(3, 5000, 1), r"hidden_size must be 1\.\.4096, got 5000"),
        "layers": (layout(3, 4, 17), r"num_layers must be 1\.\.16, got 17"),
        "total": (layout(137, 4096, 16), r"parameters; folkrnn reads at most 100,000,000"),
    }
    for name, (params, msg) in cases.items():
        p = tmp_path / f"{name}.pkl"
        tokens = ["<s>", "</s>"] + [f"t{i}" for i in range(params[0].shape[0] - 2)]
        p.write_bytes(py2_pickle(folkrnn_dict(params, {t.encode(): i for i, t in enumerate(tokens)})))
        with pytest.raises(FolkRNNError, match=msg) as e:
            load_lasagne_pickle(p)
        assert str(e.value).startswith(f"{p}: the arrays describe an unusable model"), name


def test_small_hostile_pickle_costs_little_memory(tmp_path):
    """A few-kB pickle whose weights are zero-stride views: a 2048-unit model on the old
    reader (hundreds of MB, a cubic-cost matmul), refused here before any is built."""
    import time

    H, V = 2048, 137
    params = lasagne_params(np.random.default_rng(8), V, 4, L=1)
    shapes = [(V, V)] + [(V, H), (H, H), (H,)] * 4 + [(1, H), (1, H), (H, V), (V,)]
    p = tmp_path / "views.pkl"
    p.write_bytes(py2_pickle(folkrnn_dict([_ZeroStride(s) for s in shapes], v2_token2idx())))
    assert p.stat().st_size < 10_000
    before, start = _max_rss_mb(), time.monotonic()
    with pytest.raises(FolkRNNError, match="called directly"):
        load_lasagne_pickle(p)
    assert _max_rss_mb() - before < 200 and time.monotonic() - start < 10
    assert len(params) == len(shapes)
