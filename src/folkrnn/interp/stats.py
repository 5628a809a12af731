"""Small statistics shared by the analyses, each paired with its control.

>>> import numpy as np
>>> round(pearson(np.arange(5.0), 2 * np.arange(5.0) + 1), 6)
1.0
>>> round(effective_rank(np.ones(8)), 6), round(effective_rank(np.array([1.0, 0, 0])), 6)
(8.0, 1.0)
"""

from __future__ import annotations

import numpy as np


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two 1-D arrays (nan when either is constant)."""
    x = np.asarray(x, np.float64) - np.mean(x)
    y = np.asarray(y, np.float64) - np.mean(y)
    d = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / d) if d > 0 else float("nan")


def permutation_r(x: np.ndarray, y: np.ndarray, n: int, rng: np.random.Generator) -> dict:
    """Pearson r of (x, y) against r with y shuffled `n` times: the 95th percentile of |r|
    under shuffling and the two-sided p-value ((k + 1) / (n + 1))."""
    r = pearson(x, y)
    y = np.asarray(y, np.float64)
    null = np.array([pearson(x, rng.permutation(y)) for _ in range(n)])
    band = float(np.quantile(np.abs(null), 0.95))
    p = float((np.sum(np.abs(null) >= abs(r)) + 1) / (n + 1))
    return {"r": r, "shuffled_abs_r_95": band, "p": p, "shuffles": n}


def effective_rank(s: np.ndarray) -> float:
    """exp(entropy) of the normalised singular values (Roy & Vetterli): from 1 (one
    direction) to the number of values (all equal)."""
    s = np.asarray(s, np.float64)
    tot = s.sum()
    if tot <= 0:
        return 0.0
    p = s[s > 0] / tot
    return float(np.exp(-(p * np.log(p)).sum()))


def top_energy(s: np.ndarray, frac: float = 0.1) -> float:
    """Share of the squared Frobenius norm in the top `frac` of the singular values."""
    s2 = np.sort(np.asarray(s, np.float64))[::-1] ** 2
    k = max(1, int(round(frac * len(s2))))
    return float(s2[:k].sum() / s2.sum()) if s2.sum() > 0 else 0.0


def zscore(value: float, control: np.ndarray) -> float:
    """(value - mean) / sd of the control draws (inf when they do not vary and value differs)."""
    control = np.asarray(control, np.float64)
    sd = control.std(ddof=1) if len(control) > 1 else 0.0
    diff = value - control.mean()
    if sd > 0:
        return float(diff / sd)
    return 0.0 if abs(diff) < 1e-12 else float(np.sign(diff) * np.inf)


def cosine_columns(a: np.ndarray) -> np.ndarray:
    """(n, m) -> (m, m) cosine similarity of the columns (0 for an all-zero column)."""
    a = np.asarray(a, np.float64)
    norms = np.linalg.norm(a, axis=0)
    u = a / np.where(norms > 0, norms, 1.0)
    return u.T @ u


def eta_squared(values: np.ndarray, groups: list[str]) -> float:
    """Share of the variance of `values` explained by the group labels (one-way ANOVA)."""
    v = np.asarray(values, np.float64)
    g = np.asarray(groups)
    tot = ((v - v.mean()) ** 2).sum()
    if tot <= 0:
        return 0.0
    between = sum(((v[g == k].mean() - v.mean()) ** 2) * (g == k).sum() for k in np.unique(g))
    return float(between / tot)


def permutation_eta(values: np.ndarray, groups: list[str], n: int, rng: np.random.Generator) -> dict:
    """eta² of the labels against eta² with the labels shuffled `n` times."""
    e = eta_squared(values, groups)
    g = np.asarray(groups)
    null = np.array([eta_squared(values, list(rng.permutation(g))) for _ in range(n)])
    return {"eta_squared": e, "shuffled_95": float(np.quantile(null, 0.95)),
            "p": float((np.sum(null >= e) + 1) / (n + 1)), "shuffles": n}


def bootstrap_mean(x: np.ndarray, rng: np.random.Generator, draws: int = 2000, level: float = 0.95) -> dict:
    """Mean of `x` (n,) with its percentile bootstrap interval (resampling the n values):
    {mean, lo, hi, n}; nan for an empty `x`.

    >>> r = bootstrap_mean(np.array([1.0, 1.0, 1.0]), np.random.default_rng(0))
    >>> r["mean"], r["lo"], r["hi"], r["n"]
    (1.0, 1.0, 1.0, 3)
    """
    x = np.asarray(x, np.float64)
    if len(x) == 0:
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    means = x[rng.integers(0, len(x), size=(draws, len(x)))].mean(1)
    a = (1 - level) / 2
    return {"mean": float(x.mean()), "lo": float(np.quantile(means, a)), "hi": float(np.quantile(means, 1 - a)),
            "n": int(len(x))}


def sign_flip(d: np.ndarray, rng: np.random.Generator, n: int) -> float:
    """Two-sided p-value of mean(d) = 0 for paired differences `d` (n_pairs,): each
    difference's sign flipped at random `n` times, p = (k + 1) / (n + 1); nan if empty.

    >>> sign_flip(np.full(12, 0.5), np.random.default_rng(0), 999) < 0.01
    True
    """
    d = np.asarray(d, np.float64)
    if len(d) == 0:
        return float("nan")
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n, len(d)))
    null = np.abs((signs * d).mean(1))
    return float((1 + (null >= abs(d.mean()) - 1e-12).sum()) / (n + 1))
