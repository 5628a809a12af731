"""Figures of the weight analyses, as PNG bytes (matplotlib's Agg backend, no display).

Each plotting function takes the findings dict its analysis produced, so a figure shows
exactly the numbers in `findings.json`, with the control drawn in grey.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np

KIND_COLOURS = {"pitch": "#1f77b4", "duration": "#ff7f0e", "bar": "#2ca02c", "meter/key": "#d62728", "other": "#9467bd"}
GATE_COLOURS = {"i": "#1f77b4", "f": "#2ca02c", "g": "#ff7f0e", "o": "#d62728"}
CONTROL = "#999999"


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def png(draw: Callable, size: tuple[float, float] = (7.0, 4.0), dpi: int = 90) -> bytes:
    """Run `draw(fig)` on a new figure and return it as PNG bytes."""
    plt = _plt()
    fig = plt.figure(figsize=size, dpi=dpi)
    try:
        draw(fig)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


def gate_spectra(rows: list[dict]) -> bytes:
    layers = sorted({r["layer"] for r in rows})

    def draw(fig):
        axes = fig.subplots(len(layers), 2, squeeze=False, sharey=False)
        for li, layer in enumerate(layers):
            for mi, which in enumerate(("input", "recurrent")):
                ax = axes[li][mi]
                for r in rows:
                    if r["layer"] != layer or r["matrix"] != which:
                        continue
                    s = np.asarray(r["singular_values"])
                    ax.semilogy(np.arange(1, len(s) + 1), s, color=GATE_COLOURS[r["gate"]], lw=1.2, label=r["gate"])
                    ax.semilogy(np.arange(1, len(s) + 1), r["control"]["singular_values_mean"], color=GATE_COLOURS[r["gate"]],
                                lw=0.8, ls=":", alpha=0.8)
                ax.set_title(f"layer {layer}, {which} matrices", fontsize=9)
                ax.tick_params(labelsize=7)
                if li == len(layers) - 1:
                    ax.set_xlabel("index", fontsize=8)
                if mi == 0:
                    ax.set_ylabel("singular value", fontsize=8)
        axes[0][1].legend(fontsize=7, title="gate (dotted: shuffled)", title_fontsize=7, ncol=2)

    return png(draw, (8.0, 2.4 * len(layers) + 0.4))


def spectrum(d: dict, title: str) -> bytes:
    def draw(fig):
        ax = fig.subplots()
        s = np.asarray(d["singular_values"])
        x = np.arange(1, len(s) + 1)
        ax.semilogy(x, s, "o-", ms=3, lw=1, label="model")
        ax.semilogy(x, d["control"]["singular_values_mean"], "-", color=CONTROL, lw=1.5,
                    label=f"same entries shuffled (mean of {d['control']['draws']})")
        ax.set_xlabel("index")
        ax.set_ylabel("singular value")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)

    return png(draw, (7.0, 3.4))


def bias_scatter(d: dict) -> bytes:
    from folkrnn.interp.weights import kind_group

    def draw(fig):
        ax = fig.subplots()
        pts = d["points"]
        for g, col in KIND_COLOURS.items():
            sel = [p for p in pts if kind_group(p["token"]) == g]
            if sel:
                ax.scatter([p["log_frequency"] for p in sel], [p["bias"] for p in sel], s=14, color=col, label=g)
        xs = np.array([min(p["log_frequency"] for p in pts), max(p["log_frequency"] for p in pts)])
        ax.plot(xs, d["slope"] * xs + d["intercept"], color="k", lw=0.8, label=f"fit, r = {d['r']:.2f}")
        for p in sorted(pts, key=lambda p: -abs(p["bias"] - (d["slope"] * p["log_frequency"] + d["intercept"])))[:6]:
            ax.annotate(p["token"], (p["log_frequency"], p["bias"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("log relative frequency in training (as a target)")
        ax.set_ylabel("softmax bias")
        ax.set_title(f"Output bias vs training frequency (shuffled: |r| < {d['shuffled_abs_r_95']:.2f} in 95%)", fontsize=10)
        ax.legend(fontsize=7)

    return png(draw, (7.0, 4.2))


def histogram_vs_control(values, control_band: float, xlabel: str, title: str, band_label: str) -> bytes:
    def draw(fig):
        ax = fig.subplots()
        ax.hist(values, bins=40, color="#1f77b4", alpha=0.85)
        for x in (-control_band, control_band):
            ax.axvline(x, color=CONTROL, ls="--", lw=1.2)
        ax.axvline(control_band, color=CONTROL, ls="--", lw=1.2, label=band_label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("units")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)

    return png(draw, (7.0, 3.2))


def input_norms(d: dict) -> bytes:
    def draw(fig):
        axes = fig.subplots(1, 2)
        any_unseen = False
        for ax, key, label in ((axes[0], "input_norm", "layer-1 input column norm"), (axes[1], "output_norm", "softmax row norm")):
            for gi, (g, col) in enumerate(KIND_COLOURS.items()):
                sel = [t for t in d["tokens"] if t["kind"] == g]
                if not sel:
                    continue
                xs = gi + (np.linspace(-0.3, 0.3, len(sel)) if len(sel) > 1 else np.zeros(1))
                unseen = np.array([t.get("count", 1) == 0 for t in sel])
                ys = np.array([t[key] for t in sel])
                ax.scatter(xs[~unseen], ys[~unseen], s=12, color=col)
                if unseen.any():
                    any_unseen = True
                    ax.scatter(xs[unseen], ys[unseen], s=18, facecolors="none", edgecolors="k", lw=0.8)
            ax.set_xticks(range(len(KIND_COLOURS)), list(KIND_COLOURS), fontsize=8)
            ax.set_ylabel(label, fontsize=9)
        title = "Token columns by kind (one dot per token"
        fig.suptitle(title + ("; open circles: never seen in training)" if any_unseen else ")"), fontsize=10)

    return png(draw, (8.0, 3.4))


def equivalence(d: dict) -> bytes:
    """Cosines of the equivalent pairs (by kind) over the histogram of all pitch-token pairs;
    pairs holding a never-seen token as ticks along the bottom."""
    def draw(fig):
        axes = fig.subplots(1, 2)
        for ax, space, label in ((axes[0], "input", "layer-1 input columns"), (axes[1], "output", "softmax rows")):
            ctrl = np.asarray(d["all_pair_cosines"][space])
            bins = np.linspace(min(-0.2, ctrl.min()), 1.0, 41)
            ax.hist(ctrl, bins=bins, color=CONTROL, alpha=0.55, density=True, label="all pitch-token pairs (control)")
            for kind, col in (("enharmonic", "#d62728"), ("redundant", "#1f77b4")):
                xs = [p[space]["cosine"] for p in d["pairs"] if p["kind"] == kind and not p.get("unseen")]
                if xs:
                    ax.hist(xs, bins=bins, density=True, histtype="step", lw=1.8, color=col,
                            label=f"{kind} pairs, both seen ({len(xs)})")
            un = [p[space]["cosine"] for p in d["pairs"] if p.get("unseen")]
            if un:
                ax.plot(un, np.zeros(len(un)), "|", color="k", ms=12, mew=1.2, label=f"pairs with an unseen token ({len(un)})")
            ax.set_xlabel(f"cosine similarity, {label}", fontsize=9)
            ax.set_ylabel("density", fontsize=9)
        axes[0].legend(fontsize=7, loc="upper right")

    return png(draw, (9.0, 3.4))
