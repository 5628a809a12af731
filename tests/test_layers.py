"""The import layering of the package: a module imports only from its own layer or lower
ones, and no two parts import each other. Every import counts, also one inside a function:
deferring an import hides a cycle from the interpreter, not from a reader. No exceptions.

`LAYERS` is also what scripts/architecture.py draws (docs/img/architecture.png)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "folkrnn"

# Lowest first. A module or package (by its first name under folkrnn/) in each layer.
LAYERS: list[set[str]] = [
    {"__init__", "errors", "data", "files"},
    {"vocab", "tokens"},
    {"rhythm"},
    {"abc", "midi", "datafile"},
    {"corpus", "evaluate", "ngram", "repair"},
    {"hooks", "model"},
    {"checkpoint", "legacy", "precision"},
    {"load"},
    {"sample", "train"},
    {"tune"},
    {"interp"},
    {"cli", "web", "__main__"},
]
RANK = {name: k for k, layer in enumerate(LAYERS) for name in layer}


def _component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _edges(src: Path = SRC) -> set[tuple[str, str, str]]:
    """(importer component, imported component, file) for every folkrnn import anywhere in a file."""
    out = set()
    for path in src.rglob("*.py"):
        rel = path.relative_to(src)
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
                    names = [f"folkrnn.{a.name}" if (src / f"{a.name}.py").exists() or (src / a.name).is_dir() else "folkrnn"
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
                 for a, b, f in _edges() if RANK.get(b, -1) > RANK.get(a, -1))
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    graph: dict[str, set[str]] = {}
    for a, b, _ in _edges():
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


def test_the_checker_sees_every_kind_of_import(tmp_path):
    # A package of our own making: imports inside functions and methods, under `if`, relative
    # ones and `from folkrnn import x` must all count.
    pkg = tmp_path / "folkrnn"
    (pkg / "sub").mkdir(parents=True)
    for name in ("__init__", "low", "mid", "top", "other"):
        (pkg / f"{name}.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "low.py").write_text("def f():\n    from folkrnn.top import x\n")
    (pkg / "mid.py").write_text("class C:\n    def m(self):\n        import folkrnn.other\n")
    (pkg / "top.py").write_text("from folkrnn import low\n")
    (pkg / "sub" / "a.py").write_text("if True:\n    from ..mid import C\n")
    edges = {(a, b) for a, b, _ in _edges(pkg)}
    assert edges == {("low", "top"), ("mid", "other"), ("top", "low"), ("sub", "mid")}

