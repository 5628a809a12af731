"""What the weights alone say (Sturm's parts 2-3): inventory, spectra, the softmax layer,
the input columns as token embeddings. Pure functions of a `FolkRNN`; numpy out.

Conventions: layers are numbered 1-3 in everything returned; units are 0-based indices
within their layer. `out.weight` is V x H: row t decodes token t ("output row"), column j
is what unit j of layer 3 writes on every token ("softmax column"). Every statistic comes
with a control computed the same way on structure-free numbers:
  - spectra: the same matrix with its entries shuffled (same values, no arrangement);
  - column similarities: spectrum-matched random matrices (random orthogonal U and V
    with the matrix's own singular values), many draws, reported as a 95% range;
  - correlations with labels: the labels shuffled over tokens.

The softmax is invariant to adding the same number to every logit, so the part of
the softmax matrix along the all-ones logit direction (its mean row over tokens)
changes no probability. Every softmax-matrix analysis removes it first
(`center_tokens`: V minus its mean over tokens) and reports how much energy it held.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from folkrnn import tokens as T
from folkrnn.interp.counts import TokenCounts
from folkrnn.interp.stats import (cosine_columns, effective_rank, pearson, permutation_eta,
                                  permutation_r, top_energy, zscore)
from folkrnn.model import GATES, FolkRNN
from folkrnn.vocab import BOS, Vocabulary

GATE_NAMES = {"i": "input gate", "f": "forget gate", "g": "cell candidate", "o": "output gate"}
KIND_GROUPS = ("pitch", "duration", "bar", "meter/key", "other")


def kind_group(token: str) -> str:
    """The report's five token kinds (broken rhythms count as durations).

    >>> [kind_group(t) for t in ("^f", "3/2", "2>", "|:", "K:Cdor", "(3", "</s>")]
    ['pitch', 'duration', 'duration', 'bar', 'meter/key', 'other', 'other']
    """
    k = T.kind(token)
    if k in ("pitch", "bar"):
        return k
    if k in ("duration", "broken"):
        return "duration"
    if k in ("meter", "key"):
        return "meter/key"
    return "other"


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def tensor_label(name: str) -> str:
    """`layers.0.weight_hh` -> `layer 1 recurrent weights` (what a reader sees)."""
    parts = name.split(".")
    if parts[0] == "layers":
        what = {"weight_ih": "input weights", "weight_hh": "recurrent weights", "bias": "gate biases",
                "c0": "initial cell state", "h0": "initial hidden state"}[parts[2]]
        return f"layer {int(parts[1]) + 1} {what}"
    return {"out.weight": "softmax weights", "out.bias": "softmax bias"}.get(name, name)


def singular_values(w: np.ndarray) -> np.ndarray:
    """Descending singular values of a matrix."""
    return np.linalg.svd(np.asarray(w, np.float64), compute_uv=False)


def spectral_norm(a: np.ndarray) -> float:
    """Largest singular value (L2 norm for a vector), from the smaller Gram matrix: exact
    enough for the top value and much cheaper than a full SVD."""
    a = np.asarray(a, np.float64)
    if a.ndim < 2:
        return float(np.linalg.norm(a))
    g = a.T @ a if a.shape[0] >= a.shape[1] else a @ a.T
    return float(np.sqrt(max(np.linalg.eigvalsh(g)[-1], 0.0)))


def inventory(model: FolkRNN) -> dict:
    """Every parameter tensor and each LSTM matrix's four gate blocks: shape, count,
    Frobenius and spectral norm. `total` counts the v2 parameters (without the learned
    initial states, given apart as `initial_states`)."""
    rows = []
    total = init = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            a = _np(p)
            is_init = name.rsplit(".", 1)[-1] in ("c0", "h0")
            spec = spectral_norm(a)
            rows.append({"name": name, "label": tensor_label(name), "shape": list(a.shape), "count": int(a.size),
                         "frobenius": float(np.linalg.norm(a)), "spectral": spec, "initial_state": is_init, "gate": None})
            if is_init:
                init += a.size
            else:
                total += a.size
            if name.startswith("layers.") and name.rsplit(".", 1)[-1] in ("weight_ih", "weight_hh", "bias"):
                for k, block in enumerate(np.split(a, 4, axis=0)):
                    spec = spectral_norm(block)
                    rows.append({"name": f"{name}[{GATES[k]}]", "label": f"{tensor_label(name)}, {GATE_NAMES[GATES[k]]}",
                                 "shape": list(block.shape), "count": int(block.size), "frobenius": float(np.linalg.norm(block)),
                                 "spectral": spec, "initial_state": False, "gate": GATES[k]})
    return {"tensors": rows, "total": int(total), "initial_states": int(init)}


def spectrum(w: np.ndarray, rng: np.random.Generator, controls: int) -> dict:
    """Singular values of `w` against the same entries shuffled `controls` times."""
    s = singular_values(w)
    flat = np.asarray(w, np.float64).ravel()
    ctrl_s = [singular_values(rng.permutation(flat).reshape(w.shape)) for _ in range(controls)]
    er = np.array([effective_rank(c) for c in ctrl_s])
    te = np.array([top_energy(c) for c in ctrl_s])
    return {
        "shape": list(w.shape),
        "singular_values": [float(x) for x in s],
        "spectral_norm": float(s[0]),
        "effective_rank": effective_rank(s),
        "top10_energy": top_energy(s),
        "control": {
            "kind": "entries shuffled",
            "draws": controls,
            "singular_values_mean": [float(x) for x in np.mean(ctrl_s, axis=0)],
            "effective_rank_mean": float(er.mean()),
            "effective_rank_sd": float(er.std(ddof=1)) if controls > 1 else 0.0,
            "top10_energy_mean": float(te.mean()),
            "top10_energy_sd": float(te.std(ddof=1)) if controls > 1 else 0.0,
        },
        "effective_rank_z": zscore(effective_rank(s), er),
        "top10_energy_z": zscore(top_energy(s), te),
    }


def gate_spectra(model: FolkRNN, rng: np.random.Generator, controls: int,
                 tick: Callable[[], None] = lambda: None) -> list[dict]:
    """Singular values of each gate's input and recurrent matrix in every layer, with controls."""
    out = []
    for l, layer in enumerate(model.layers):
        for g in GATES:
            for which, label in (("ih", "input"), ("hh", "recurrent")):
                d = spectrum(_np(layer.gate(g, which)), rng, controls)
                out.append({"layer": l + 1, "gate": g, "matrix": label, **d})
                tick()
    return out


def _loadings(vec: np.ndarray, vocab: Vocabulary, counts: TokenCounts | None, k: int) -> dict:
    order = np.argsort(vec)

    def item(i):
        d = {"token": vocab.tokens[i], "loading": float(vec[i])}
        if counts is not None:
            d["count"] = counts[vocab.tokens[i]]
        return d

    return {"positive": [item(i) for i in order[::-1][:k]], "negative": [item(i) for i in order[:k]]}


def center_tokens(w: np.ndarray) -> np.ndarray:
    """(V, H) softmax matrix minus its mean over tokens (each unit's column centred): the
    all-ones logit direction, which changes no probability, removed.

    >>> w = np.array([[1.0, 5.0], [3.0, 5.0]])
    >>> center_tokens(w).tolist(), center_tokens(w + 7.0).tolist()
    ([[-1.0, 0.0], [1.0, 0.0]], [[-1.0, 0.0], [1.0, 0.0]])
    """
    w = np.asarray(w, np.float64)
    return w - w.mean(0, keepdims=True)


def all_ones_share(w: np.ndarray) -> float:
    """Share of the squared Frobenius norm of a (V, H) matrix along the all-ones direction
    of the token axis (what `center_tokens` removes)."""
    w = np.asarray(w, np.float64)
    tot = float((w * w).sum())
    return float(w.shape[0] * (w.mean(0) ** 2).sum() / tot) if tot > 0 else 0.0


def spectrum_matched(s: np.ndarray, shape: tuple[int, int], rng: np.random.Generator,
                     centered: bool = True) -> np.ndarray:
    """A random (V, H) matrix U diag(s) W^T with the singular values `s` (descending) and
    Haar-random orthonormal U, W: the same spectrum, no arrangement. `centered`: U is drawn
    orthogonal to the all-ones vector (as a `center_tokens` matrix's is), so at most V - 1
    values are kept (the last value of a centred V x H matrix with H >= V is 0)."""
    V, H = shape
    r = min(len(s), V - 1 if centered else V, H)
    a = rng.standard_normal((V, r))
    if centered:
        a -= a.mean(0, keepdims=True)
    u, _ = np.linalg.qr(a)
    w, _ = np.linalg.qr(rng.standard_normal((H, r)))
    return (u * np.asarray(s, np.float64)[:r]) @ w.T


def _range95(x) -> list[float]:
    x = np.asarray(x, np.float64)
    return [float(np.quantile(x, 0.025)), float(np.quantile(x, 0.975))]


def _distribution(v: np.ndarray, band: tuple[float, float]) -> dict:
    """A singular vector's entries: share with magnitude in `band`, excess kurtosis, share
    with the majority sign."""
    v = np.asarray(v, np.float64)
    a = np.abs(v)
    z = (v - v.mean()) / (v.std() or 1.0)
    pos = float((v > 0).mean())
    return {"band_share": float(((a >= band[0]) & (a <= band[1])).mean()), "kurtosis": float((z ** 4).mean() - 3),
            "majority_sign_share": max(pos, 1 - pos), "min": float(v.min()), "max": float(v.max())}


def softmax_svd(model: FolkRNN, vocab: Vocabulary, counts: TokenCounts | None, rng: np.random.Generator,
                controls: int, top: int = 4, k_tokens: int = 6, draws: int = 200,
                band: tuple[float, float] = (0.04, 0.06)) -> dict:
    """SVD of the softmax matrix V (tokens x units) with the all-ones logit direction
    removed (`center_tokens`; `all_ones_share`: the energy it held): singular values
    (descending) against shuffled entries, and the top left singular vectors read as
    tokens (largest +/- loadings; a singular vector's sign is arbitrary, so + and - are
    two ends of one axis).

    `w1`: the first right singular vector (what layer 3 must hold to produce direction
    1), as Sturm's part 3 reads it: the share of its entries with magnitude in `band`,
    its excess kurtosis (a multi-modal distribution has a low one) and the share with the
    majority sign, against the same for `draws` spectrum-matched matrices (95% range);
    `w1_uncentered`: the same for the raw matrix, whose direction 1 is mostly the
    all-ones direction."""
    raw = _np(model.out.weight)
    w = center_tokens(raw)
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    d = spectrum(w, rng, controls)
    d["all_ones_share"] = all_ones_share(raw)
    d["centered"] = True
    u_raw, s_raw, vt_raw = np.linalg.svd(raw, full_matrices=False)
    null = [_distribution(np.linalg.svd(spectrum_matched(s, w.shape, rng), full_matrices=False)[2][0], band)
            for _ in range(draws)]
    d["w1"] = {**_distribution(vt[0], band), "band": list(band),
               "control": {"kind": "spectrum-matched random matrices", "draws": draws,
                           **{f"{k}_95": _range95([n[k] for n in null]) for k in null[0]}}}
    d["w1_uncentered"] = {**_distribution(vt_raw[0], band), "singular_value": float(s_raw[0]),
                          "u1_majority_sign_share": max(float((u_raw[:, 0] > 0).mean()), float((u_raw[:, 0] < 0).mean()))}
    d["u1_majority_sign_share"] = max(float((u[:, 0] > 0).mean()), float((u[:, 0] < 0).mean()))
    d["vectors"] = [{"index": j + 1, "singular_value": float(s[j]), **_loadings(u[:, j], vocab, counts, k_tokens)}
                    for j in range(min(top, len(s)))]
    # Which kind of token each direction separates: eta² of the loadings by kind.
    kinds = [kind_group(t) for t in vocab.tokens]
    for v, j in zip(d["vectors"], range(len(d["vectors"]))):
        groups = {g: float(np.mean(u[[i for i, k in enumerate(kinds) if k == g], j])) for g in KIND_GROUPS if g in kinds}
        v["mean_loading_by_kind"] = groups
    return d


def target_log_frequency(vocab: Vocabulary, counts: TokenCounts) -> tuple[list[int], np.ndarray]:
    """Indices of tokens the model had to predict at least once (seen, and not `<s>`,
    which is never a target) and the log of their relative frequency among those."""
    idx = [i for i, t in enumerate(vocab.tokens) if t != BOS and counts[t] > 0]
    n = np.array([counts[vocab.tokens[i]] for i in idx], np.float64)
    return idx, np.log(n / n.sum())


def bias_vs_frequency(model: FolkRNN, vocab: Vocabulary, counts: TokenCounts, rng: np.random.Generator,
                      permutations: int) -> dict:
    """Output bias v against log training frequency over the tokens seen as targets,
    against the bias shuffled over those tokens; plus the mean bias of unseen tokens."""
    b = _np(model.out.bias)
    idx, logf = target_log_frequency(vocab, counts)
    if len(idx) < 3:
        return {"tokens": len(idx)}
    d = permutation_r(logf, b[idx], permutations, rng)
    slope, intercept = np.polyfit(logf, b[idx], 1)
    unseen = [i for i, t in enumerate(vocab.tokens) if counts[t] == 0 and t != BOS]
    return {
        **d,
        "tokens": len(idx),
        "slope": float(slope),
        "intercept": float(intercept),
        "points": [{"token": vocab.tokens[i], "bias": float(b[i]), "log_frequency": float(f), "count": counts[vocab.tokens[i]]}
                   for i, f in zip(idx, logf)],
        "unseen_tokens": len(unseen),
        "unseen_bias_mean": float(b[unseen].mean()) if unseen else None,
        "seen_bias_mean": float(b[idx].mean()),
    }


def _matched_nulls(w: np.ndarray, rng: np.random.Generator, draws: int):
    """`draws` spectrum-matched random matrices of the centred softmax matrix `w`."""
    s = singular_values(w)
    return (spectrum_matched(s, w.shape, rng) for _ in range(draws))


def _pearson_columns(w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r over tokens of each column of `w` (V, H) with `b` (V,); 0 for a constant column."""
    wc = w - w.mean(0)
    bc = b - b.mean()
    den = np.linalg.norm(wc, axis=0) * np.linalg.norm(bc)
    return np.where(den > 0, (wc.T @ bc) / np.where(den > 0, den, 1.0), 0.0)


def unit_bias_correlation(model: FolkRNN, rng: np.random.Generator, controls: int, draws: int = 100) -> dict:
    """Pearson r over tokens between each unit's softmax column and the output bias
    (Pearson centres both, so the all-ones direction plays no part), against the columns
    of `draws` spectrum-matched random matrices (`controls` is kept for the call's shape)."""
    w, b = center_tokens(_np(model.out.weight)), _np(model.out.bias)
    r = _pearson_columns(w, b)
    ctrl = np.concatenate([_pearson_columns(c, b) for c in _matched_nulls(w, rng, draws)])
    band = float(np.quantile(np.abs(ctrl), 0.99))
    order = np.argsort(-np.abs(r))
    return {
        "r": [float(x) for x in r],
        "mean_abs_r": float(np.abs(r).mean()),
        "max_abs_r": float(np.abs(r).max()),
        "units_beyond_control": int((np.abs(r) > band).sum()),
        "top_units": [{"unit": int(j), "r": float(r[j])} for j in order[:10]],
        "control": {"kind": "spectrum-matched random matrices (random orthogonal U, V; the same singular values)",
                    "draws": draws, "mean_abs_r": float(np.abs(ctrl).mean()), "abs_r_99": band},
    }


def duplicate_columns(model: FolkRNN, rng: np.random.Generator, controls: int, threshold: float = 0.9,
                      draws: int = 100) -> dict:
    """Pairs of layer-3 units whose softmax columns are near-duplicates (Pearson r over
    tokens > t) or sign-flipped (< -t). Pearson r is the cosine of the columns with the
    all-ones direction removed: a shared offset on every token moves no probability, and
    a raw cosine counts it as likeness. Against `draws` spectrum-matched random matrices
    (the same singular values as the centred matrix): their mean count and 95% range.
    `raw_cosine`: the counts by the raw cosine, for comparison with the old reading."""
    raw = _np(model.out.weight)
    w = center_tokens(raw)
    H = w.shape[1]
    iu = np.triu_indices(H, 1)

    def count(m):
        c = cosine_columns(m)[iu]
        return int((c > threshold).sum()), int((c < -threshold).sum()), c

    dup, flip, c = count(w)
    raw_dup, raw_flip, _ = count(raw)
    ctrl = [count(m)[:2] for m in _matched_nulls(w, rng, draws)]
    order = np.argsort(-np.abs(c))[:10]
    return {
        "threshold": threshold,
        "measure": "Pearson r of the columns over tokens (cosine after centring)",
        "pairs": int(len(c)),
        "duplicates": dup,
        "sign_flipped": flip,
        "max_cosine": float(c.max()) if len(c) else None,
        "min_cosine": float(c.min()) if len(c) else None,
        "top_pairs": [{"units": [int(iu[0][k]), int(iu[1][k])], "cosine": float(c[k])} for k in order],
        "raw_cosine": {"duplicates": raw_dup, "sign_flipped": raw_flip},
        "control": {"kind": "spectrum-matched random matrices (random orthogonal U, V; the same singular values)",
                    "draws": draws,
                    "duplicates_mean": float(np.mean([x[0] for x in ctrl])),
                    "sign_flipped_mean": float(np.mean([x[1] for x in ctrl])),
                    "duplicates_95": _range95([x[0] for x in ctrl]),
                    "sign_flipped_95": _range95([x[1] for x in ctrl])},
    }


def input_columns(model: FolkRNN, vocab: Vocabulary, counts: TokenCounts | None, rng: np.random.Generator,
                  permutations: int) -> dict:
    """Norm of each token's layer-1 input column (all four gates, 4H numbers) and of its
    softmax row, grouped by token kind; eta² of the kinds against shuffled kinds (over
    seen tokens only when counts are known, since unseen tokens keep random weights)."""
    w_in = _np(model.layers[0].weight_ih)
    w_out = _np(model.out.weight)
    kinds = [kind_group(t) for t in vocab.tokens]
    n_in = np.linalg.norm(w_in, axis=0)
    n_out = np.linalg.norm(w_out, axis=1)
    seen = [i for i, t in enumerate(vocab.tokens) if counts is None or counts[t] > 0]

    def by_kind(norms, idx):
        out = {}
        for g in KIND_GROUPS:
            sel = [i for i in idx if kinds[i] == g]
            if sel:
                out[g] = {"tokens": len(sel), "mean": float(norms[sel].mean()), "sd": float(norms[sel].std()),
                          "min": float(norms[sel].min()), "max": float(norms[sel].max())}
        return out

    d = {
        "tokens": [{"token": t, "kind": kinds[i], "input_norm": float(n_in[i]), "output_norm": float(n_out[i]),
                    **({"count": counts[t]} if counts is not None else {})} for i, t in enumerate(vocab.tokens)],
        "input_by_kind": by_kind(n_in, seen),
        "output_by_kind": by_kind(n_out, seen),
        "over": "seen tokens" if counts is not None else "all tokens",
        "input_kind_eta": permutation_eta(n_in[seen], [kinds[i] for i in seen], permutations, rng),
        "output_kind_eta": permutation_eta(n_out[seen], [kinds[i] for i in seen], permutations, rng),
    }
    if counts is not None:
        unseen = [i for i, t in enumerate(vocab.tokens) if counts[t] == 0]
        d["unseen"] = {"tokens": [vocab.tokens[i] for i in unseen],
                       "input_norm_mean": float(n_in[unseen].mean()) if unseen else None,
                       "seen_input_norm_mean": float(n_in[seen].mean()) if seen else None}
        lc = np.log([counts[vocab.tokens[i]] for i in seen])
        d["input_norm_vs_log_count_r"] = pearson(lc, n_in[seen]) if len(seen) > 2 else None
    return d
