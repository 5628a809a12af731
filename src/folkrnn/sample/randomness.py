"""Counter-based randomness and the draw: tune i's token at position t depends on (seed, i, t) only.

The uniform number behind tune i's draw at position t is a hash of (seed, i, t)
(splitmix64), not a shared generator's next value, so tune i is the same whatever the
batch size or the number of tunes asked for. The draw is an inverse-CDF lookup in float64.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_POS_MUL = np.uint64(0xD1B54A32D192ED03)


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 arrays (wrap-around arithmetic is intended)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniforms(seed: int, tune: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """A uniform in [0, 1) for each (tune, position), a pure function of (seed, tune, pos).

    >>> u = uniforms(7, np.array([0, 1, 0]), np.array([5, 5, 5]))
    >>> bool(u[0] == u[2]) and bool(u[0] != u[1]) and bool(((0 <= u) & (u < 1)).all())
    True
    """
    with np.errstate(over="ignore"):
        s = _mix64(np.array([seed], dtype=np.uint64) + _GOLDEN)
        k = _mix64(s + np.asarray(tune, dtype=np.uint64) * _GOLDEN)
        z = _mix64(k ^ (np.asarray(pos, dtype=np.uint64) * _POS_MUL))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def filter_logits(z: np.ndarray, top_k: int | None, top_p: float | None) -> np.ndarray:
    """Set to -inf what top-k / top-p (nucleus) filtering removes; z (batch, vocab) float64.

    >>> z = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    >>> np.isfinite(filter_logits(z, None, 0.8)).tolist(), np.isfinite(filter_logits(z, 1, None)).tolist()
    ([[True, True, False, False]], [[True, False, False, False]])
    """
    V = z.shape[-1]
    if top_k is not None and top_k < V:
        kth = np.partition(z, V - top_k, axis=-1)[:, V - top_k : V - top_k + 1]
        z = np.where(z < kth, -np.inf, z)
    if top_p is not None and top_p < 1:
        order = np.argsort(-z, axis=-1, kind="stable")
        zs = np.take_along_axis(z, order, -1)
        p = np.exp(zs - zs[:, :1])
        p /= p.sum(-1, keepdims=True)
        before = np.cumsum(p, -1) - p  # mass of the strictly more probable tokens
        drop = np.zeros(z.shape, dtype=bool)
        np.put_along_axis(drop, order, before >= top_p - 1e-12, -1)
        z = np.where(drop, -np.inf, z)
    return z


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (rows of -inf but one finite value are fine)."""
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def draw(z: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw from softmax(z) per row with the given uniforms in [0, 1).

    z (batch, vocab) float64 -> token ids (batch,). Tokens of probability 0 are never drawn."""
    cdf = np.cumsum(softmax(z), -1)
    target = u * cdf[:, -1]
    idx = (cdf <= target[:, None]).sum(-1)  # = searchsorted(cdf, target, side="right") per row
    return np.minimum(idx, z.shape[-1] - 1)



def log_softmax_at(z: np.ndarray, tok: np.ndarray) -> np.ndarray:
    """log softmax(z)[row, tok[row]] in float64."""
    m = z.max(-1)
    lse = m + np.log(np.exp(z - m[:, None]).sum(-1))
    return z[np.arange(len(tok)), tok] - lse

