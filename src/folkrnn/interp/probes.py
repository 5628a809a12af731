"""Linear probes and unit rankings on per-token labels, each with its control.

A *probe* reads a label (position in bar, next token is a bar line, section...) from a
layer's state with a closed-form ridge classifier (one-vs-rest least squares on
standardised features, argmax). It is fitted on some tunes and scored on others (the
split is by tune, never by token), and judged against:

- the *shuffled-label control*: the same probe fitted on the training labels permuted
  over tokens, scored on the true held-out labels; it must sit at chance (the majority
  class's share of the held-out tokens);
- the *token baseline*: the same probe reading only the one-hot of the current and the
  previous token;
- the *control task* (Hewitt & Liang 2019): the same probe, on the same state, fitted and
  scored on a label that depends only on the current token's identity (each token type
  mapped to a random label drawn from the real label's marginal distribution). A state
  that keeps token identity scores well on it without holding the real label; the
  probe's *selectivity* is accuracy - control-task accuracy.

Differences between two probes are scored on the same held-out rows and come with a
bootstrap interval over held-out tunes (`paired_interval`; the rows of one tune are not
independent).

A *unit ranking* scores each unit of a layer by how much of its variance a label
explains (eta squared), raw and after the current token's effect is removed (each
token's mean activation subtracted), and by the share of its power at the bar period
(the Fourier bin of one cycle per bar, over each tune); `cycle_power` does the same at a
period of several bars (8: the phrase) on bar-averaged activations, against a random
network and shuffled bar order. The chance level of eta squared
comes from the same units with the labels permuted.

>>> import numpy as np
>>> x = np.array([[0.0], [1.0], [0.1], [0.9]]); g = np.array([0, 1, 0, 1])
>>> round(float(eta_squared(x, g)[0]), 3)
0.988
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from folkrnn.errors import FolkRNNError


def eta_squared(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """values (N, H), groups (N,) ints >= 0 -> (H,): between-group SS / total SS per column,
    in [0, 1]; 0 for a column that does not vary (whose sums of squares are rounding).

    >>> eta_squared(np.array([[0., 1., 0.3], [0., -1., 0.3], [2., 1., 0.3], [2., -1., 0.3]]), np.array([0, 0, 1, 1])).tolist()
    [1.0, 0.0, 0.0]
    """
    v = np.asarray(values, np.float64)
    g = np.asarray(groups)
    if len(g) != len(v):
        raise FolkRNNError(f"{len(v)} rows of values but {len(g)} labels")
    mu = v.mean(0)
    total = ((v - mu) ** 2).sum(0)
    k = int(g.max()) + 1 if len(g) else 0
    n = np.bincount(g, minlength=k).astype(np.float64)
    sums = np.zeros((k, v.shape[1]))
    np.add.at(sums, g, v)
    means = sums / np.maximum(n, 1)[:, None]
    between = (n[:, None] * (means - mu) ** 2).sum(0)
    varies = (total > 0) & (np.ptp(v, 0) > 0 if len(v) else False)
    return np.clip(np.where(varies, between / np.where(varies, total, 1), 0.0), 0.0, 1.0)


def residualise(values: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """values (N, H) minus each current token's mean activation (the token's own effect)."""
    v = np.asarray(values, np.float64)
    t = np.asarray(tokens)
    k = int(t.max()) + 1
    n = np.bincount(t, minlength=k).astype(np.float64)
    sums = np.zeros((k, v.shape[1]))
    np.add.at(sums, t, v)
    return v - (sums / np.maximum(n, 1)[:, None])[t]


def bar_period_power(values: np.ndarray, offsets: Sequence[int], bars: Sequence[int], min_bars: int = 4,
                     bars_per_cycle: int = 1, shift: int = 0) -> np.ndarray:
    """Mean over tunes of each unit's share of (non-constant) spectral power in the Fourier
    bin of one cycle per `bars_per_cycle` bars (tune k: rows offsets[k]:offsets[k+1],
    `bars[k]` bars, so the bin of round(bars[k] / bars_per_cycle) cycles over the tune).
    Tunes with fewer than `min_bars` bars, fewer than 4 rows a cycle, or the bin at or
    above Nyquist are left out. A flat spectrum gives about 1 / (rows / 2) per bin.

    With `bars_per_cycle=1` the rows are tokens (the bar period); for longer periods pass
    the bar-level series of `bar_means`, which holds whole cycles only, so the bin is
    exact and the uneven token counts of bars do not smear it.

    >>> t = np.arange(32)
    >>> v = np.stack([np.cos(2 * np.pi * t / 8), np.cos(2 * np.pi * t / 4)], 1)
    >>> [round(float(x), 2) for x in bar_period_power(v, [0, 32], [32], min_bars=16, bars_per_cycle=8)]
    [1.0, 0.0]
    """
    v = np.asarray(values, np.float64)
    acc = np.zeros(v.shape[1])
    used = 0
    for k in range(len(offsets) - 1):
        a, b = offsets[k], offsets[k + 1]
        nb = bars[k]
        cyc = int(round(nb / bars_per_cycle))
        if nb < min_bars or cyc < 1 or b - a < 4 * cyc or cyc >= (b - a) // 2:
            continue
        x = v[a:b] - v[a:b].mean(0)
        p = np.abs(np.fft.rfft(x, axis=0)) ** 2
        tot = p[1:].sum(0)
        j = cyc + shift  # `shift`: a neighbouring bin (is the cycle's bin a peak, or a slope?)
        if not 1 <= j < len(p):
            continue
        acc += np.where(tot > 0, p[j] / np.where(tot > 0, tot, 1), 0.0)
        used += 1
    return acc / max(used, 1)


def bar_means(values: np.ndarray, offsets: Sequence[int], bar_of_row: np.ndarray,
              bars_per_cycle: int = 1) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Token rows (N, H) -> one row per bar (M, H): each unit's mean over the rows of the bar
    (`bar_of_row` (N,): the bar index within its tune, < 0 = outside any bar, left out).
    Per tune only the first whole cycles are kept (a multiple of `bars_per_cycle` bars);
    a bar without rows takes the tune's mean. Returns the series, its offsets
    (tunes + 1,) and the bars kept per tune.

    >>> s, o, n = bar_means(np.arange(6.0)[:, None], [0, 6], np.array([-1, 0, 0, 1, 2, 2]), 2)
    >>> s[:, 0].tolist(), o.tolist(), n
    ([1.5, 3.0], [0, 2], [2])
    """
    v = np.asarray(values, np.float64)
    bi_all = np.asarray(bar_of_row)
    rows, offs, kept = [], [0], []
    for k in range(len(offsets) - 1):
        a, b = offsets[k], offsets[k + 1]
        bi = bi_all[a:b]
        nb = int(bi.max()) + 1 if b > a and bi.max() >= 0 else 0
        nb -= nb % bars_per_cycle
        sel = (bi >= 0) & (bi < nb)
        if nb == 0 or not sel.any():
            offs.append(offs[-1])
            kept.append(0)
            continue
        n = np.bincount(bi[sel], minlength=nb)
        sums = np.zeros((nb, v.shape[1]))
        np.add.at(sums, bi[sel], v[a:b][sel])
        m = sums / np.maximum(n, 1)[:, None]
        m[n == 0] = v[a:b][sel].mean(0)
        rows.append(m)
        offs.append(offs[-1] + nb)
        kept.append(nb)
    series = np.concatenate(rows) if rows else np.zeros((0, v.shape[1]))
    return series, np.array(offs), kept


def cycle_power(values: np.ndarray, control: np.ndarray, offsets: Sequence[int], bar_of_row: np.ndarray,
                rng: np.random.Generator, bars_per_cycle: int = 8, shuffles: int = 20, top: int = 5) -> dict | None:
    """Units whose bar-averaged activation cycles every `bars_per_cycle` bars.

    values (N, H): a layer's states; control (N, H): the same layer of a freshly
    network (the random-network control) on the same rows. Each unit's score is its share of power at the
    cycle's bin (`bar_period_power` over `bar_means`, tunes with at least 2 whole cycles). Two
    controls: the random network's units, and the same units with each tune's bars put
    in a random order (`shuffles` draws pooled), each summarised by its 99th percentile
    over units (and its maximum). A unit *tracks the cycle* when it beats both 99th
    percentiles and its power at the cycle's bin is a peak, above both neighbouring bins
    (a slowly drifting unit beats shuffled bar order with a slope, not a peak; `peaked`
    counts the units with a peak) (`above_controls`, best first); by chance about 1% of the units would, so
    a layer is judged by that count against 1% and by its top unit against both maxima
    (`above_control_max`: the units above every control value).
    Returns None when no tune has 2 cycles."""
    series, offs, nb = bar_means(values, offsets, bar_of_row, bars_per_cycle)
    used = sum(n >= 2 * bars_per_cycle for n in nb)
    if used == 0:
        return None

    def power(x: np.ndarray, shift: int = 0) -> np.ndarray:
        return bar_period_power(x, offs, nb, min_bars=2 * bars_per_cycle, bars_per_cycle=bars_per_cycle, shift=shift)

    pw = power(series)
    # a unit that drifts slowly has more power in the bin below the cycle's than in it (a
    # slope, not a peak); random networks with slow states do, and beat shuffled bar order
    peak = pw > np.maximum(power(series, -1), power(series, 1))
    rand_series, _, _ = bar_means(control, offsets, bar_of_row, bars_per_cycle)
    rand = power(rand_series)
    shuf = []
    for _ in range(shuffles):
        order = np.concatenate([offs[k] + rng.permutation(offs[k + 1] - offs[k]) for k in range(len(nb))])
        shuf.append(power(series[order.astype(np.int64)]))
    r99 = float(np.quantile(rand, 0.99))
    s99 = float(np.quantile(np.concatenate(shuf), 0.99))
    cut = max(r99, s99)
    order_pw = np.argsort(-pw, kind="stable")
    above = [int(i) for i in order_pw if pw[i] > cut and peak[i]]
    top_cut = max(float(rand.max()), float(np.max(shuf)))
    return {"bars_per_cycle": bars_per_cycle, "tunes": int(used), "units": int(len(pw)),
            "top": [{"unit": int(u), "power": float(pw[u])} for u in np.argsort(-pw, kind="stable")[:top]],
            "random_network_99": r99, "shuffled_bars_99": s99, "above_controls": above,
            "random_network_max": float(rand.max()), "shuffled_bars_max": float(np.max(shuf)),
            "above_control_max": [int(i) for i in order_pw if pw[i] > top_cut and peak[i]],
            "peaked": int(peak.sum()),
            "flat_share": float(np.mean([2 / n for n in nb if n >= 2 * bars_per_cycle]))}


@dataclass(frozen=True)
class Ranking:
    """Scores per unit: `eta` (label explains this share of the variance), `eta_resid`
    (same after the current token's mean is removed), `bar_power` (share of power at the
    bar period; None when not asked), `chance_eta_99` (99th percentile over units of eta
    with the labels permuted), `chance_resid_99`."""

    eta: np.ndarray
    eta_resid: np.ndarray
    bar_power: np.ndarray | None
    chance_eta_99: float
    chance_resid_99: float

    def top(self, k: int, by: str = "eta_resid") -> list[int]:
        s = getattr(self, by)
        return [int(i) for i in np.argsort(-s, kind="stable")[:k]]


def rank_units(values: np.ndarray, labels: np.ndarray, tokens: np.ndarray, rng: np.random.Generator,
               offsets: Sequence[int] | None = None, bars: Sequence[int] | None = None) -> Ranking:
    """Rank the units (columns of `values`, (N, H)) by the integer `labels` (N,); rows with a
    label < 0 are left out of eta. `tokens` (N,): the current token of each row."""
    v = np.asarray(values, np.float64)
    keep = labels >= 0
    resid = residualise(v, tokens)
    y = labels[keep]
    eta = eta_squared(v[keep], y)
    eta_r = eta_squared(resid[keep], y)
    perm = rng.permutation(y)
    ce = float(np.quantile(eta_squared(v[keep], perm), 0.99))
    cr = float(np.quantile(eta_squared(resid[keep], perm), 0.99))
    bp = bar_period_power(v, offsets, bars) if offsets is not None and bars is not None else None
    return Ranking(eta, eta_r, bp, ce, cr)


# -- probes ---------------------------------------------------------------------------------
def _standardise(xtr: np.ndarray, xte: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = xtr.mean(0)
    sd = xtr.std(0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    return (xtr - mu) / sd, (xte - mu) / sd


def ridge_fit_predict(xtr: np.ndarray, ytrs: Sequence[np.ndarray], xte: np.ndarray, classes: int,
                      lam: float = 1e-2) -> list[np.ndarray]:
    """Closed-form ridge one-vs-rest: for each label vector in `ytrs` ((n_train,) ints in
    [0, classes)), the predicted classes of `xte`. One factorisation serves all of them."""
    a, b = _standardise(np.asarray(xtr, np.float32), np.asarray(xte, np.float32))
    n, d = a.shape
    gram = (a.T @ a).astype(np.float64) + lam * n * np.eye(d)
    chol = np.linalg.cholesky(gram)
    out = []
    for y in ytrs:
        Y = np.zeros((n, classes))
        Y[np.arange(n), y] = 1.0
        ym = Y.mean(0)
        w = np.linalg.solve(chol.T, np.linalg.solve(chol, (a.T @ (Y - ym).astype(np.float32)).astype(np.float64)))
        out.append(np.argmax(b @ w + ym, axis=1))
    return out


def token_features(tokens: np.ndarray, prev: np.ndarray, vocab_size: int) -> np.ndarray:
    """(N, 2V) one-hot of the current and the previous token (the token baseline's input)."""
    x = np.zeros((len(tokens), 2 * vocab_size), np.float32)
    x[np.arange(len(tokens)), tokens] = 1.0
    x[np.arange(len(tokens)), vocab_size + prev] = 1.0
    return x


def split_by_tune(tunes: np.ndarray, rng: np.random.Generator, test_share: float = 0.25) -> np.ndarray:
    """(N,) bool: the rows of held-out tunes (a `test_share` of the tunes, at least one)."""
    ids = np.unique(tunes)
    if len(ids) < 2:
        raise FolkRNNError("a probe needs at least 2 tunes (it is scored on held-out tunes)")
    n_test = max(1, int(round(test_share * len(ids))))
    test = rng.choice(ids, n_test, replace=False)
    return np.isin(tunes, test)


def control_task_labels(labels: np.ndarray, tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Hewitt & Liang's control task for `labels` (N,) ints (< 0 = unlabelled): each token
    type in `tokens` (N,) gets one label drawn from the real labels' marginal distribution
    (over the labelled rows), and every labelled row takes its token's label. Unlabelled
    rows stay -1. The result depends on token identity only.

    >>> y = np.array([0, 1, 1, -1, 2, 0]); t = np.array([5, 5, 7, 7, 9, 7])
    >>> c = control_task_labels(y, t, np.random.default_rng(0))
    >>> bool(c[0] == c[1]) and bool(c[2] == c[5]) and int(c[3]) == -1
    True
    """
    y = np.asarray(labels)
    t = np.asarray(tokens)
    keep = y >= 0
    out = np.full(len(y), -1, np.int64)
    if not keep.any():
        return out
    classes = int(y[keep].max()) + 1
    marginal = np.bincount(y[keep], minlength=classes) / keep.sum()
    types = np.unique(t[keep])
    drawn = rng.choice(classes, size=len(types), p=marginal)
    table = dict(zip(types.tolist(), drawn.tolist()))
    out[keep] = [table[v] for v in t[keep].tolist()]
    return out


def probe(x: np.ndarray, labels: np.ndarray, test: np.ndarray, rng: np.random.Generator,
          baseline: np.ndarray | None = None, lam: float = 1e-2, keep_correct: bool = False,
          max_train: int | None = None, control: np.ndarray | None = None) -> dict:
    """Fit on rows ~test (at most `max_train` of them, drawn at random), score on rows
    `test`; labels (N,) ints, < 0 = row left out.

    Returns accuracy, the shuffled-label control's accuracy, chance (majority share of
    the held-out rows), and, with `baseline` features, the baseline's accuracy and
    `over_baseline` (accuracy - baseline). With `control` labels (N,), the control
    task's (`control_task_labels`, labelled on the same rows) accuracy of the same probe
    on the same features, `control_chance`, and the `selectivity` (accuracy - control
    task). `keep_correct` adds `correct` (and `control_correct`): (held-out rows,) bool,
    for comparing probes tune by tune (`paired_interval`)."""
    keep = labels >= 0
    tr, te = keep & ~test, keep & test
    if tr.sum() < 2 or te.sum() < 1:
        raise FolkRNNError("too few labelled tokens to fit and score a probe")
    if max_train is not None and tr.sum() > max_train:  # a random subset of the training tokens (speed)
        drop = rng.choice(np.nonzero(tr)[0], int(tr.sum()) - max_train, replace=False)
        tr = tr.copy()
        tr[drop] = False
    classes = int(labels[keep].max()) + 1
    ytr, yte = labels[tr], labels[te]
    ys = [ytr, rng.permutation(ytr)]
    if control is not None:
        control = np.asarray(control)
        if not np.array_equal(control >= 0, keep):
            raise FolkRNNError("control-task labels must label the same rows as the real labels")
        ctr, cte = control[tr], control[te]
        ys.append(ctr)
        classes = max(classes, int(control[keep].max()) + 1)
    pred, shuf, *ctl = ridge_fit_predict(x[tr], ys, x[te], classes, lam)
    chance = float(np.bincount(yte, minlength=classes).max() / len(yte))
    out = {"accuracy": float((pred == yte).mean()), "shuffled": float((shuf == yte).mean()), "chance": chance,
           "classes": int(labels[keep].max()) + 1, "train_tokens": int(tr.sum()), "test_tokens": int(te.sum())}
    if keep_correct:
        out["correct"] = pred == yte
    if control is not None:
        out["control_task"] = float((ctl[0] == cte).mean())
        out["control_chance"] = float(np.bincount(cte, minlength=classes).max() / len(cte))
        out["selectivity"] = out["accuracy"] - out["control_task"]
        if keep_correct:
            out["control_correct"] = ctl[0] == cte
    if baseline is not None:
        (bp,) = ridge_fit_predict(baseline[tr], [ytr], baseline[te], classes, lam)
        out["baseline"] = float((bp == yte).mean())
        out["over_baseline"] = out["accuracy"] - out["baseline"]
    return out


def paired_lower_bound(a: np.ndarray, b: np.ndarray, groups: np.ndarray, rng: np.random.Generator,
                       draws: int = 1000, q: float = 0.01) -> float:
    """The `q` quantile of accuracy(a) - accuracy(b) (per-row bools on the same rows) when
    the groups (tunes: rows of one tune are not independent) are resampled with replacement."""
    ids, inv = np.unique(groups, return_inverse=True)
    n = np.bincount(inv).astype(np.float64)
    da = np.bincount(inv, weights=a.astype(np.float64)) - np.bincount(inv, weights=b.astype(np.float64))
    pick = rng.integers(len(ids), size=(draws, len(ids)))
    diffs = da[pick].sum(1) / n[pick].sum(1)
    return float(np.quantile(diffs, q))


def paired_interval(a: np.ndarray, b: np.ndarray, groups: np.ndarray, rng: np.random.Generator,
                    draws: int = 2000, level: float = 0.99) -> dict:
    """accuracy(a) - accuracy(b) for per-row bools on the same held-out rows, with its
    percentile bootstrap interval at `level` when the groups (tunes) are resampled with
    replacement: {difference, lo, hi, level, tunes}.

    >>> g = np.repeat(np.arange(10), 5); a = np.ones(50, bool); b = np.zeros(50, bool)
    >>> r = paired_interval(a, b, g, np.random.default_rng(0)); (r["difference"], r["lo"], r["hi"])
    (1.0, 1.0, 1.0)
    """
    ids, inv = np.unique(groups, return_inverse=True)
    n = np.bincount(inv).astype(np.float64)
    da = np.bincount(inv, weights=np.asarray(a, np.float64)) - np.bincount(inv, weights=np.asarray(b, np.float64))
    pick = rng.integers(len(ids), size=(draws, len(ids)))
    diffs = da[pick].sum(1) / n[pick].sum(1)
    q = (1 - level) / 2
    return {"difference": float(da.sum() / n.sum()), "lo": float(np.quantile(diffs, q)),
            "hi": float(np.quantile(diffs, 1 - q)), "level": level, "tunes": int(len(ids))}


def encode_labels(values: Sequence, top: int | None = None, min_count: int = 1) -> tuple[np.ndarray, list]:
    """Hashable labels (None = no label) -> ints (-1 for None and for classes outside the
    `top` most frequent or rarer than `min_count`), and the class names in code order."""
    from collections import Counter

    c = Counter(v for v in values if v is not None)
    names = [k for k, n in c.most_common(top) if n >= min_count]
    code = {k: i for i, k in enumerate(names)}
    return np.array([code.get(v, -1) if v is not None else -1 for v in values], np.int64), names
