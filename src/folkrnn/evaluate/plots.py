"""PNG figures of an evaluation: each distribution, side by side with the reference's.

Uses matplotlib's Agg backend (no display needed). One file per figure in the
output directory; `write_plots` returns their paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from folkrnn.files import make_dir
from folkrnn.evaluate.stats import Distributions, sorted_items

PC_NAMES = ["C", "C#/Db", "D", "Eb", "E", "F", "F#/Gb", "G", "Ab", "A", "Bb", "B"]

# name -> (title, x label, file name)
FIGURES = {
    "token": ("Token unigrams", "token", "tokens.png"),
    "meter": ("Meters", "meter", "meters.png"),
    "mode": ("Modes", "mode", "modes.png"),
    "duration": ("Note durations", "eighth notes", "durations.png"),
    "pitch_class": ("Pitch classes (tonic = C)", "pitch class", "pitch_classes.png"),
    "pitch_range": ("Pitch range per tune", "semitones", "pitch_ranges.png"),
    "tune_bars": ("Tune length", "bars", "tune_bars.png"),
    "section_bars": ("Section length", "bars", "section_bars.png"),
    "final_cadence": ("Last note of the tune", "pitch class", "final_cadences.png"),
    "section_cadence": ("Last note of each section", "pitch class", "section_cadences.png"),
    "pattern": ("Form patterns (top 12)", "pattern", "patterns.png"),
}


def _probs(counts: Mapping) -> dict:
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()} if total else {}


def write_plots(
    out_dir: str | Path,
    ours: Distributions,
    ref: Distributions | None = None,
    label: str = "evaluated",
    ref_label: str = "reference",
    divergence: Mapping[str, float] | None = None,
) -> list[Path]:
    """Write one PNG per distribution into `out_dir` (created if needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out = make_dir(out_dir, "plot directory")
    written = []
    for name, (title, xlabel, fname) in FIGURES.items():
        a = ours.get(name)
        b = ref.get(name) if ref is not None else None
        if not a and not b:
            continue
        if name == "token":  # most frequent first (shares of both files added), so the plot reads
            pa0, pb0 = _probs(a), _probs(b or {})
            keys = sorted(set(pa0) | set(pb0), key=lambda t: (-(pa0.get(t, 0) + pb0.get(t, 0)), t))
        elif name == "pattern":
            merged = dict(a)
            for k, v in (b or {}).items():
                merged[k] = merged.get(k, 0) + v
            keys = [k for k, _ in sorted_items(name, merged)][:12]
        else:
            merged = dict(a)
            for k, v in (b or {}).items():
                merged.setdefault(k, 0)
            keys = [k for k, _ in sorted_items(name, merged)]
        pa, pb = _probs(a), _probs(b) if b is not None else None
        width = max(6.0, min(28.0, 0.22 * len(keys) + 3))
        fig, ax = plt.subplots(figsize=(width, 4))
        xs = range(len(keys))
        w = 0.4 if pb is not None else 0.8
        ax.bar([x - (w / 2 if pb is not None else 0) for x in xs], [pa.get(k, 0) for k in keys], width=w, label=label)
        if pb is not None:
            ax.bar([x + w / 2 for x in xs], [pb.get(k, 0) for k in keys], width=w, label=ref_label)
        names = [PC_NAMES[k] if name.endswith("cadence") or name == "pitch_class" else str(k) for k in keys]
        ax.set_xticks(list(xs))
        ax.set_xticklabels(names, rotation=90 if len(keys) > 12 else 0, fontsize=7 if len(keys) > 40 else 9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("share")
        t = title
        if divergence and name in divergence:
            t += f"  (JSD {divergence[name]:.3f} bits)"
        ax.set_title(t)
        if pb is not None:
            ax.legend()
        fig.tight_layout()
        path = out / fname
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
