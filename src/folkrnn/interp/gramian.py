"""Gramians over a tune (Sturm's parts 9-10): how alike the model's states are at every
pair of steps. Repeated bars show as off-diagonal stripes.

>>> import numpy as np
>>> g = gramian(np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]]))
>>> g.round(3).tolist()
[[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
>>> token_gramian([5, 7, 5]).tolist()
[[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from folkrnn.errors import FolkRNNError


def gramian(states, normalise: bool = True, center: bool = False) -> np.ndarray:
    """states (T, H) -> (T, T): the inner products of the state vectors at every pair of
    steps; with `normalise` (default) the cosine similarities (a zero vector gives 0).
    `center` subtracts the tune's mean state first, so what every step shares (e.g. a
    large constant unit) does not make all steps look alike."""
    if hasattr(states, "detach"):
        states = states.detach().cpu().numpy()
    x = np.asarray(states, np.float64)
    if x.ndim != 2:
        raise FolkRNNError(f"gramian needs a (time, hidden) array, got shape {x.shape}")
    if center:
        x = x - x.mean(axis=0, keepdims=True)
    if normalise:
        n = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(n > 0, n, 1.0)
    return x @ x.T


def token_gramian(ids: Sequence[int]) -> np.ndarray:
    """X^T X of the one-hot inputs: 1 where two steps hold the same token."""
    a = np.asarray(ids)
    return (a[:, None] == a[None, :]).astype(np.float64)


def bar_lines(tokens: Sequence[str]) -> list[int]:
    """Step indices of bar tokens, for drawing bar boundaries on a Gramian."""
    from folkrnn.tokens import kind

    return [i for i, t in enumerate(tokens) if kind(t) == "bar"]


def plot(g: np.ndarray, tokens: Sequence[str] | None = None, title: str = "") -> bytes:
    """A Gramian as a PNG, bar lines (when `tokens` are given) drawn as thin lines."""
    from folkrnn.interp.figures import png

    def draw(fig):
        ax = fig.subplots()
        im = ax.imshow(g, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        if tokens is not None:
            for b in bar_lines(tokens):
                ax.axhline(b, color="k", lw=0.3, alpha=0.4)
                ax.axvline(b, color="k", lw=0.3, alpha=0.4)
        ax.set_xlabel("step")
        ax.set_ylabel("step")
        ax.set_title(title, fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.8)

    return png(draw, (5.5, 4.8))
