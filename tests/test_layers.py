"""The import layering of the package (STYLE.md): a module imports only from its own layer
or lower ones, and no two modules import each other (also through imports inside
functions, which is how the old checkpoint <-> legacy and vocab <-> datafile cycles hid)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "folkrnn"

# Lowest first. A module or package (by its first name under folkrnn/) in each layer.
LAYERS: list[set[str]] = [
    {"__init__", "errors", "data", "files"},
    {"vocab", "tokens"},
    {"rhythm"},
    {"abc", "midi", "datafile", "strict"},
    {"corpus", "evaluate", "ngram", "repair"},
    {"hooks", "model"},
    {"checkpoint", "legacy", "precision"},
    {"load"},
    {"sample", "train", "generated"},
    {"tune"},
    {"interp"},
    {"cli", "web", "__main__"},
]
RANK = {name: k for k, layer in enumerate(LAYERS) for name in layer}

# Imports allowed against the order, each with its reason.
EXCEPTIONS = {
    # checkpoint.__getattr__: `from folkrnn.checkpoint import load_model` (the old path) stays
    # importable; folkrnn.load is imported on first use, never at import time.
    ("checkpoint", "load"),
}


def _component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _edges() -> set[tuple[str, str, str]]:
    """(importer component, imported component, file) for every folkrnn import anywhere in a file."""
    out = set()
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        me = rel.parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against the file's package
                    base = ["folkrnn", *rel.parts[:-1]][: len(rel.parts) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                if mod == "folkrnn":  # `from folkrnn import tokens`: a submodule or the package itself
                    names = [f"folkrnn.{a.name}" if (SRC / f"{a.name}.py").exists() or (SRC / a.name).is_dir() else "folkrnn"
                             for a in node.names]
                else:
                    names = [mod]
            for n in names:
                if n == "folkrnn" or n.startswith("folkrnn."):
                    other = _component(n)
                    if other != me:
                        out.add((me, other, str(rel)))
    return out


def test_every_module_has_a_layer():
    comps = {p.relative_to(SRC).parts[0].removesuffix(".py") for p in SRC.rglob("*.py")}
    unplaced = sorted(comps - set(RANK))
    assert not unplaced, f"place {unplaced} in LAYERS in tests/test_layers.py"


def test_no_module_imports_a_higher_layer():
    bad = sorted(f"{f}: {a} (layer {RANK.get(a)}) imports {b} (layer {RANK.get(b)})"
                 for a, b, f in _edges() if (a, b) not in EXCEPTIONS and RANK.get(b, -1) > RANK.get(a, -1))
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph: dict[str, set[str]] = {}
    for a, b, _ in _edges():
        if (a, b) not in EXCEPTIONS:
            graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}
    cycles = []

    def visit(n: str, path: list[str]) -> None:
        state[n] = 1
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                cycles.append(" -> ".join(path[path.index(m):] + [m]) if m in path else f"{n} -> {m}")
            elif m not in state:
                visit(m, path + [m])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    assert not cycles, cycles


def test_the_checker_sees_lazy_and_package_imports():
    # The parser must see imports inside functions and `from folkrnn import x`; a real file of
    # ours that does both is checkpoint.py's lazy re-export and evaluate/tune.py.
    edges = {(a, b) for a, b, _ in _edges()}
    assert ("checkpoint", "load") in edges  # inside a function
    assert ("evaluate", "tokens") in edges  # `from folkrnn import tokens as T`
