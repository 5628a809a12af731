"""Import the original folk-rnn weights: a Theano/Lasagne pickle (docs/tokens.md) -> `Checkpoint`.

The release's `metadata/folkrnn_v2.pkl` (and the same-layout "worepeats" and Swedish
models) is a Python 2 pickle of a dict holding `token2idx` and `param_values`, a list of
1 + 14 L + 2 numpy arrays in Lasagne's row-vector convention (input @ W):

    [0]            the input "embedding" (V x V identity: one-hot input)
    [k .. k+11]    per layer l, k = 1 + 14 l: (W_in_to_gate n_in x H, W_hid_to_gate H x H,
                   b_gate H) for the gates ingate, forgetgate, cell, outgate
    [k+12, k+13]   cell_init, hid_init (1 x H): the learned initial state
    [-2, -1]       softmax W (H x V) and b (V)

Our `weight_ih` stacks the transposed gate blocks in the same order (i, f, g, o). A
pickle can run code while it loads, so `RestrictedUnpickler` admits numpy arrays,
numpy scalars and dtypes and plain containers, and refuses every other global before
anything is called.

Running no code is not enough: numpy would build whatever array a pickle declares (a
huge shape over a tiny buffer, a zero-stride view, one buffer reused a thousand times),
so a 4 KB file could take gigabytes. The unpickler therefore checks each array's shape,
dtype and data before numpy allocates it: an array is made only from `_reconstruct` and
its own data, at most MAX_ARRAY_ELEMENTS numbers, data exactly as long as shape x
itemsize, and everything built from one file (arrays, bytes, sets) stays within a
budget of about twice the file's size. The layout's sizes are then checked against the
caps of `ModelConfig` before a single weight is converted.

Sizes are read from the arrays (the Swedish model has its own vocabulary size). When a
pickle's vocabulary is the v2 vocabulary in another order, rows and columns are
permuted into the canonical `Vocabulary.v2()` order, which is exact.
"""

from __future__ import annotations

import io
import logging
import math
import pickle
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from folkrnn.checkpoint import Checkpoint
from folkrnn.errors import FolkRNNError
from folkrnn.files import sha256_bytes
from folkrnn.model import FolkRNN, ModelConfig
from folkrnn.vocab import Vocabulary

log = logging.getLogger(__name__)

ARRAYS_PER_LAYER = 14
GATE_NAMES = ("ingate", "forgetgate", "cell", "outgate")  # Lasagne's names, our i, f, g, o
# No weight of a model folkrnn reads can be larger: ModelConfig caps the whole model at
# 100 M parameters.
MAX_ARRAY_ELEMENTS = 100_000_000
# Numbers and (for metadata) byte and unicode strings; never objects, records or void.
ARRAY_KINDS = "biufcSU"


def _allowed_globals() -> dict[tuple[str, str], str]:
    """(module, name) a pickle may name -> which guarded constructor it gets (see
    `RestrictedUnpickler.find_class`)."""
    allowed: dict[tuple[str, str], str] = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy >= 2 / numpy 1 and Python 2
        allowed[(mod, "_reconstruct")] = "_reconstruct"
        allowed[(mod, "scalar")] = "scalar"
    for mod in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "ndarray")] = "ndarray"
        allowed[(mod, "dtype")] = "dtype"
    # Python 3 writes an array's raw bytes at protocol 2 as _codecs.encode(text, 'latin1');
    # admitted only in that form, so it can do nothing but make bytes.
    allowed[("_codecs", "encode")] = "encode"
    for mod in ("__builtin__", "builtins"):  # Python 2 / 3 spelling of plain containers
        allowed[(mod, "set")] = "set"
        allowed[(mod, "frozenset")] = "frozenset"
    return allowed


_ALLOWED = _allowed_globals()

try:  # numpy >= 2 keeps these in numpy._core; pickles from numpy 1 / Python 2 say numpy.core
    from numpy._core import multiarray as _ma
except ImportError:  # pragma: no cover - numpy 1
    from numpy.core import multiarray as _ma  # type: ignore[no-redef]


class _NdarrayName:
    """What `numpy.ndarray` resolves to: the subtype argument numpy's own pickles pass to
    `_reconstruct`, never a constructor: `ndarray(shape, dtype, buffer, offset, strides)`
    would make a zero-stride view that looks huge and holds eight bytes."""

    def __call__(self, *args: Any, **kw: Any) -> Any:
        raise FolkRNNError("refusing numpy.ndarray(...) called directly: a pickled array is _reconstruct and its data")


_NDARRAY = _NdarrayName()


def _dtype_of(spec: Any) -> np.dtype:
    if isinstance(spec, np.dtype):
        dt = spec
    elif isinstance(spec, (str, bytes)):
        try:
            dt = np.dtype(spec.decode("latin1") if isinstance(spec, bytes) else spec)
        except TypeError:
            raise FolkRNNError(f"refusing dtype {spec!r}") from None
    else:
        raise FolkRNNError(f"refusing a dtype given as a {type(spec).__name__}")
    if dt.kind not in ARRAY_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise FolkRNNError(f"refusing dtype {dt}: a weights pickle holds numbers and strings only")
    return dt


def _shape_of(shape: Any) -> tuple[tuple[int, ...], int]:
    """A declared shape and its element count, refused over MAX_ARRAY_ELEMENTS."""
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise FolkRNNError(f"refusing an array shape {shape!r}: not a tuple of sizes")
    if len(shape) > 32:
        raise FolkRNNError(f"refusing an array of {len(shape)} dimensions")
    count = math.prod(shape)
    if count > MAX_ARRAY_ELEMENTS:
        raise FolkRNNError(f"refusing an array of shape {tuple(shape)}: {count:,} numbers, more than the "
                           f"{MAX_ARRAY_ELEMENTS:,} of the largest model folkrnn reads")
    return tuple(shape), count


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that resolves only numpy array/scalar/dtype constructors and sets,
    each guarded, and checks every array before numpy allocates it.

    Anything else (`os.system`, `builtins.eval`, a Theano class...) raises FolkRNNError
    naming the global, before it is called. `budget`: how many bytes of arrays, bytes
    and sets the pickle may build in all (see `safe_load`).

    The pure-Python unpickler, not the C one: its BUILD step (which hands an array its
    shape and data) can be checked here before numpy acts on it."""

    dispatch = pickle._Unpickler.dispatch.copy()

    def __init__(self, file: Any, *, budget: int = 1 << 20, **kw: Any):
        super().__init__(file, **kw)
        self.budget = budget
        self.built = 0
        self._guards: dict[str, Any] = {
            "_reconstruct": self._reconstruct, "scalar": self._scalar, "ndarray": _NDARRAY, "dtype": self._dtype,
            "encode": self._latin1_bytes, "set": self._container(set), "frozenset": self._container(frozenset),
        }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._guards[_ALLOWED[(module, name)]]
        except KeyError:
            raise FolkRNNError(
                f"refusing to load {module}.{name}: a folk-rnn weights pickle may hold only numpy arrays, "
                "numpy scalars and plain containers"
            ) from None

    def _charge(self, nbytes: int) -> None:
        # A real weights file carries every byte it builds (twice at most, when Python 3
        # wrote it at protocol 2); more means data reused over and over.
        self.built += nbytes
        if self.built > self.budget:
            raise FolkRNNError(f"refusing to build more than {self.budget:,} bytes of arrays from this file "
                               "(its data is reused over and over: not a folk-rnn weights file)")

    def _reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        if subtype is not _NDARRAY:
            raise FolkRNNError("refusing _reconstruct of anything but numpy.ndarray")
        shape, count = _shape_of(shape)
        dt = _dtype_of(dtype)
        self._charge(count * dt.itemsize)
        return _ma._reconstruct(np.ndarray, shape, dt)

    def _scalar(self, dtype: Any, data: Any = None) -> Any:
        dt = _dtype_of(dtype)
        if not isinstance(data, (bytes, str)) or len(data) != dt.itemsize:
            raise FolkRNNError(f"refusing a numpy {dt} scalar without exactly its {dt.itemsize} bytes")
        self._charge(dt.itemsize)
        return _ma.scalar(dt, data)

    def _dtype(self, spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
        dt = _dtype_of(spec)
        # Always a copy: the BUILD that follows sets state on it, and numpy's shared
        # float32 (say) must not be what it changes.
        return np.dtype(dt, align=bool(align), copy=True)

    def _latin1_bytes(self, text: Any, encoding: Any = "utf-8") -> bytes:
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise FolkRNNError("refusing _codecs.encode other than (str, 'latin1')")
        self._charge(len(text))
        return text.encode("latin1")

    def _container(self, kind: type) -> Any:
        def make(items: Any = ()) -> Any:
            if not isinstance(items, (list, tuple, set, frozenset, dict, str, bytes)):
                raise FolkRNNError(f"refusing {kind.__name__}() of a {type(items).__name__}")
            self._charge(8 * len(items))
            return kind(items)

        return make

    def _check_array_state(self, state: Any) -> None:
        """What ndarray.__setstate__ is about to be given: (version,) shape, dtype, fortran, data."""
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise FolkRNNError("refusing an array state that is not numpy's (shape, dtype, order, data)")
        shape, count = _shape_of(state[-4])
        dt = _dtype_of(state[-3])
        data = state[-1]
        if not isinstance(data, (bytes, str)):
            raise FolkRNNError(f"refusing an array whose data is a {type(data).__name__}, not bytes")
        need = count * dt.itemsize
        if len(data) != need:
            raise FolkRNNError(f"refusing an array of shape {shape} and dtype {dt}: its data is {len(data):,} bytes, "
                               f"not the {need:,} they need")
        self._charge(need)

    def load_build(self) -> None:
        state, inst = self.stack[-1], self.stack[-2]
        if isinstance(inst, np.ndarray):
            self._check_array_state(state)
        elif isinstance(inst, np.dtype):
            # (version, byte order, subarray, names, fields, elsize, alignment, flags[, metadata]):
            # no subarray or fields, which would turn a number into a record of any size.
            if not isinstance(state, tuple) or len(state) < 8 or any(x is not None for x in state[2:5]):
                raise FolkRNNError("refusing a dtype state with fields or a subarray")
        elif isinstance(inst, np.generic):
            raise FolkRNNError("refusing state set on a numpy scalar")
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build


def safe_load(data: bytes, where: str = "pickle") -> Any:
    """Unpickle `data` (Python 2 strings read as latin-1) with `RestrictedUnpickler`,
    building at most about twice `len(data)` bytes of arrays."""
    try:
        unpickler = RestrictedUnpickler(io.BytesIO(data), budget=2 * len(data) + (1 << 20), encoding="latin1")
        return unpickler.load()
    except FolkRNNError as e:
        raise FolkRNNError(f"{where}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OverflowError, UnicodeDecodeError, struct.error) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        raise FolkRNNError(f"{where}: not a readable folk-rnn pickle (truncated or corrupt: {msg})") from None


def _text(key: Any) -> str:
    # Python 2 `str` keys arrive as latin-1 str (encoding='latin1') or as bytes.
    if isinstance(key, bytes):
        return key.decode("latin1")
    if isinstance(key, str):
        return key
    raise TypeError(type(key).__name__)


def _get(d: dict, key: str) -> Any:
    for k in (key, key.encode("latin1")):
        if k in d:
            return d[k]
    raise KeyError(key)


def vocabulary_from_token2idx(token2idx: Any, where: str) -> Vocabulary:
    """`token2idx` (token -> index, indices 0..V-1 each once) -> the Vocabulary in index order."""
    if not isinstance(token2idx, dict) or not token2idx:
        raise FolkRNNError(f"{where}: token2idx is not a non-empty dict")
    by_index: dict[int, str] = {}
    for tok, idx in token2idx.items():
        try:
            t = _text(tok)
        except TypeError:
            raise FolkRNNError(f"{where}: token2idx has a non-string token {tok!r}") from None
        if isinstance(idx, (bool, np.bool_)) or not isinstance(idx, (int, np.integer)):
            raise FolkRNNError(f"{where}: token2idx maps {t!r} to a non-integer {idx!r}")
        idx = int(idx)
        if idx in by_index:
            raise FolkRNNError(f"{where}: token2idx gives index {idx} to both {by_index[idx]!r} and {t!r}")
        by_index[idx] = t
    if sorted(by_index) != list(range(len(by_index))):
        raise FolkRNNError(f"{where}: token2idx indices are not 0..{len(by_index) - 1}")
    try:
        return Vocabulary([by_index[i] for i in range(len(by_index))])
    except FolkRNNError as e:
        raise FolkRNNError(f"{where}: {e}") from None


def _as_float_array(a: Any, i: int, where: str) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise FolkRNNError(f"{where}: param_values[{i}] is a {type(a).__name__}, not a numpy array")
    if a.dtype.kind != "f":
        raise FolkRNNError(f"{where}: param_values[{i}] has dtype {a.dtype}, expected a float type")
    if not np.isfinite(a).all():
        raise FolkRNNError(f"{where}: param_values[{i}] holds NaN or infinite values")
    return a.astype(np.float64)


def lasagne_to_state_dict(params: Sequence[Any], where: str = "pickle") -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Lasagne `param_values` -> (config, our state dict in float32), validating every shape.

    The input embedding E (V x d) is folded into layer 0's input weights (E @ W_in):
    with the identity of the released models this is exact; it keeps a model whose
    embedding is not the identity correct as well."""
    params = list(params)
    n = len(params)
    if n < 3 + ARRAYS_PER_LAYER or (n - 3) % ARRAYS_PER_LAYER:
        raise FolkRNNError(f"{where}: param_values has {n} arrays; a folk-rnn LSTM model has 1 + 14 x layers + 2 (45 for v2)")
    first: dict[int, int] = {}
    for i, a in enumerate(params):
        if not isinstance(a, np.ndarray):
            raise FolkRNNError(f"{where}: param_values[{i}] is a {type(a).__name__}, not a numpy array")
        # One array named many times (a pickle's memo) would become a model many times
        # the file's size: Lasagne writes every weight as an array of its own.
        j = first.setdefault(id(a), i)
        if j != i:
            raise FolkRNNError(f"{where}: param_values[{i}] is the same array as param_values[{j}]; "
                               "each weight of a folk-rnn model is an array of its own")
    num_layers = (n - 3) // ARRAYS_PER_LAYER
    emb = params[0]
    if emb.ndim != 2:
        raise FolkRNNError(f"{where}: param_values[0] (input embedding) has shape {emb.shape}, expected 2-D (V x V)")
    vocab_size = emb.shape[0]
    w_out = params[-2]
    if w_out.ndim != 2:
        raise FolkRNNError(f"{where}: param_values[{n - 2}] (softmax W) has shape {w_out.shape}, expected 2-D (H x V)")
    hidden = w_out.shape[0]
    if hidden < 1:
        raise FolkRNNError(f"{where}: param_values[{n - 2}] (softmax W) has no rows")
    try:  # the size caps, before a single weight is converted
        config = ModelConfig(vocab_size=vocab_size, hidden_size=hidden, num_layers=num_layers)
    except FolkRNNError as e:
        raise FolkRNNError(f"{where}: the arrays describe an unusable model: {e}") from None

    layout: dict[int, tuple[tuple[int, ...], str]] = {
        n - 2: ((hidden, vocab_size), "softmax W"), n - 1: ((vocab_size,), "softmax b")}
    n_in = emb.shape[1]
    for l in range(num_layers):
        k = 1 + ARRAYS_PER_LAYER * l
        for g, gate in enumerate(GATE_NAMES):
            layout[k + 3 * g] = ((n_in, hidden), f"layer {l} W_in_to_{gate}")
            layout[k + 3 * g + 1] = ((hidden, hidden), f"layer {l} W_hid_to_{gate}")
            layout[k + 3 * g + 2] = ((hidden,), f"layer {l} b_{gate}")
        layout[k + 12] = ((1, hidden), f"layer {l} cell_init")
        layout[k + 13] = ((1, hidden), f"layer {l} hid_init")
        n_in = hidden
    for i, (shape, what) in sorted(layout.items()):
        if params[i].shape != shape:
            raise FolkRNNError(f"{where}: param_values[{i}] ({what}) has shape {params[i].shape}, expected {shape}")

    arrs = [_as_float_array(a, i, where) for i, a in enumerate(params)]
    emb, w_out, b_out = arrs[0], arrs[-2], arrs[-1]
    sd: dict[str, torch.Tensor] = {}
    for l in range(num_layers):
        k = 1 + ARRAYS_PER_LAYER * l
        w_ih, w_hh, bias = [], [], []
        for g in range(len(GATE_NAMES)):
            w_x = arrs[k + 3 * g]
            if l == 0:
                w_x = emb @ w_x  # one-hot input: row t of E is what the layer sees
            w_ih.append(w_x.T)
            w_hh.append(arrs[k + 3 * g + 1].T)
            bias.append(arrs[k + 3 * g + 2])
        c0, h0 = arrs[k + 12], arrs[k + 13]
        sd[f"layers.{l}.weight_ih"] = torch.from_numpy(np.concatenate(w_ih, axis=0))
        sd[f"layers.{l}.weight_hh"] = torch.from_numpy(np.concatenate(w_hh, axis=0))
        sd[f"layers.{l}.bias"] = torch.from_numpy(np.concatenate(bias))
        sd[f"layers.{l}.c0"] = torch.from_numpy(c0[0])
        sd[f"layers.{l}.h0"] = torch.from_numpy(h0[0])
    sd["out.weight"] = torch.from_numpy(w_out.T)
    sd["out.bias"] = torch.from_numpy(b_out)
    sd = {k: v.to(torch.float32).contiguous() for k, v in sd.items()}
    return config, sd


def permute_vocabulary(sd: dict[str, torch.Tensor], perm: Sequence[int]) -> dict[str, torch.Tensor]:
    """Reorder the token dimension: new token j is old token perm[j] (input columns, output rows)."""
    p = torch.as_tensor(list(perm), dtype=torch.long)
    sd = dict(sd)
    sd["layers.0.weight_ih"] = sd["layers.0.weight_ih"][:, p].contiguous()
    sd["out.weight"] = sd["out.weight"][p].contiguous()
    sd["out.bias"] = sd["out.bias"][p].contiguous()
    return sd


def _jsonable(x: Any, depth: int = 0) -> Any:
    """Pickle metadata (numpy scalars, tuples, Python 2 strings) -> JSON-friendly values."""
    if depth > 20:
        return None
    if isinstance(x, bytes):
        return x.decode("latin1")
    if isinstance(x, (str, bool)) or x is None:
        return x
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        f = float(x)
        return f if math.isfinite(f) else None
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist(), depth + 1) if x.size <= 100_000 else f"<array {x.shape}>"
    if isinstance(x, dict):
        return {str(_jsonable(k, depth + 1)): _jsonable(v, depth + 1) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [_jsonable(v, depth + 1) for v in x]
    return repr(x)


SOURCE_KEYS = ("configuration", "experiment_id", "epoch_since_start", "iters_since_start",
               "losses_train", "losses_eval_valid", "learning_rate")


def load_lasagne_pickle(path: str | Path) -> Checkpoint:
    """Read a folk-rnn Lasagne pickle into a `Checkpoint` (model in eval mode, float32).

    Raises FolkRNNError for anything but the documented layout: foreign globals, missing
    keys, wrong array count, shapes, dtypes, non-finite values, a bad token2idx."""
    path = Path(path)
    where = str(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise FolkRNNError(f"{where}: {e.strerror or e}") from None
    obj = safe_load(data, where)
    if not isinstance(obj, dict):
        raise FolkRNNError(f"{where}: holds a {type(obj).__name__}, expected the folk-rnn metadata dict")
    try:
        token2idx = _get(obj, "token2idx")
        params = _get(obj, "param_values")
    except KeyError as e:
        raise FolkRNNError(f"{where}: the pickle lacks the key {e}") from None
    if not isinstance(params, (list, tuple)):
        raise FolkRNNError(f"{where}: param_values is a {type(params).__name__}, expected a list of arrays")
    vocab = vocabulary_from_token2idx(token2idx, where)
    config, sd = lasagne_to_state_dict(params, where)
    if len(vocab) != config.vocab_size:
        raise FolkRNNError(f"{where}: token2idx has {len(vocab)} tokens but the arrays are for {config.vocab_size}")
    v2 = Vocabulary.v2()
    if vocab != v2 and set(vocab.tokens) == set(v2.tokens):
        log.info("%s: vocabulary reordered into the canonical v2 order", where)
        sd = permute_vocabulary(sd, [vocab[t] for t in v2.tokens])
        vocab = v2
    model = FolkRNN(config)
    model.load_state_dict(sd)
    model.eval()
    source: dict[str, Any] = {"kind": "lasagne-pickle", "file": path.name, "sha256": sha256_bytes(data)}
    for key in SOURCE_KEYS:
        try:
            source[key] = _jsonable(_get(obj, key))
        except KeyError:
            pass
    meta = {"source": source, "file": where, "config": config.to_dict(), "vocabulary": list(vocab.tokens)}
    return Checkpoint(model, vocab, meta)


def to_lasagne_params(model: FolkRNN) -> list[np.ndarray]:
    """Our weights -> the 45-array Lasagne `param_values` list (float32), the inverse import.

    Lets a model trained here run in the original folk-rnn tools."""
    c = model.config
    h = c.hidden_size
    out: list[np.ndarray] = [np.eye(c.vocab_size, dtype=np.float32)]
    with torch.no_grad():
        for layer in model.layers:
            for g in range(4):
                out.append(layer.weight_ih[g * h : (g + 1) * h].T.float().numpy().copy())
                out.append(layer.weight_hh[g * h : (g + 1) * h].T.float().numpy().copy())
                out.append(layer.bias[g * h : (g + 1) * h].float().numpy().copy())
            out.append(layer.c0.float().numpy()[None].copy())
            out.append(layer.h0.float().numpy()[None].copy())
        out.append(model.out.weight.T.float().numpy().copy())
        out.append(model.out.bias.float().numpy().copy())
    return out
