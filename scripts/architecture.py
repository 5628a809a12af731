"""Draw the package's layers: docs/img/architecture.png, for docs/architecture.md.

    .venv/bin/python scripts/architecture.py [-o docs/img/architecture.png]

The layers are read from `LAYERS` in tests/test_layers.py (the test that holds every
import to them), so the picture cannot drift from what the test checks. One row per
layer, lowest at the bottom; a package is drawn with a trailing `/` and its modules listed
under its name. Imports point down the stack: a row may import from its own row and the rows
below it, never from a row above.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "folkrnn"
TEST = ROOT / "tests" / "test_layers.py"


def read_layers(path: Path = TEST) -> list[list[str]]:
    """`LAYERS` of tests/test_layers.py, lowest first, names sorted within a layer (no import of the test)."""
    for node in ast.parse(path.read_text("utf-8")).body:
        target = node.target if isinstance(node, ast.AnnAssign) else (node.targets[0] if isinstance(node, ast.Assign) else None)
        if isinstance(target, ast.Name) and target.id == "LAYERS":
            return [sorted(layer) for layer in ast.literal_eval(node.value)]
    raise SystemExit(f"{path}: no LAYERS")


def label(name: str) -> str:
    """`sample/` for a package, `model.py` for a module, the name for anything else."""
    if (SRC / name).is_dir():
        return f"{name}/"
    return f"{name}.py" if (SRC / f"{name}.py").exists() else name


def submodules(name: str) -> list[str]:
    """The modules of a package (none for a module or a data folder)."""
    d = SRC / name
    return sorted(p.stem for p in d.glob("*.py") if p.name != "__init__.py") if d.is_dir() else []


def draw(layers: list[list[str]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    import textwrap

    row_h, box_h, width = 1.0, 0.74, 10.0
    fig, ax = plt.subplots(figsize=(9.5, 0.62 * len(layers) + 1.0))
    for k, names in enumerate(layers):
        y = k * row_h
        ax.add_patch(FancyBboxPatch((0, y + 0.06), width, row_h - 0.12, boxstyle="round,pad=0,rounding_size=0.08",
                                    fc="#f3f5f8" if k % 2 else "#e8edf3", ec="#c4ccd6", lw=0.8))
        ax.text(-0.15, y + row_h / 2, f"{k}", ha="right", va="center", fontsize=9, color="#667")
        cell = width / len(names)
        for j, name in enumerate(names):
            x = j * cell + 0.08
            pkg = (SRC / name).is_dir()
            ax.add_patch(FancyBboxPatch((x, y + (row_h - box_h) / 2), cell - 0.16, box_h,
                                        boxstyle="round,pad=0,rounding_size=0.06",
                                        fc="#dbe8f6" if pkg else "white", ec="#5b7fa6" if pkg else "#8a98a8", lw=1.0))
            subs = submodules(name)
            cx = x + (cell - 0.16) / 2
            ax.text(cx, y + row_h / 2 + (0.17 if subs else 0), label(name), ha="center", va="center",
                    fontsize=8.5 if len(names) > 3 else 9.5, family="monospace", weight="bold" if pkg else "normal")
            if subs:
                chars = max(12, int(cell * 13))  # about 13 characters of 6.5 pt text per unit of width
                lines = textwrap.wrap(" ".join(subs), chars)
                ax.text(cx, y + row_h / 2 - 0.12, "\n".join(lines[:2]) + (" ..." if len(lines) > 2 else ""), ha="center",
                        va="center", fontsize=6.5, family="monospace", color="#345")
    top = len(layers) * row_h
    ax.add_patch(FancyArrowPatch((width + 0.45, top - 0.3), (width + 0.45, 0.3), arrowstyle="-|>", mutation_scale=16,
                                 lw=1.4, color="#a33"))
    ax.text(width + 0.65, top / 2, "imports point down:\na layer imports its own\nand lower layers only",
            rotation=90, ha="left", va="center", fontsize=8.5, color="#a33")
    ax.text(-0.15, top + 0.1, "layer", ha="right", va="bottom", fontsize=8, color="#667")
    ax.set_title("folkrnn: the package's layers (from tests/test_layers.py)", fontsize=11, loc="left")
    ax.set_xlim(-0.6, width + 1.4)
    ax.set_ylim(-0.1, top + 0.4)
    ax.axis("off")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", type=Path, default=ROOT / "docs" / "img" / "architecture.png")
    args = ap.parse_args()
    layers = read_layers()
    draw(layers, args.out)
    print(f"wrote {args.out} ({len(layers)} layers, {sum(map(len, layers))} names)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
