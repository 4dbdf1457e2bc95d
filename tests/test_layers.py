"""The package's shape, read from its imports: no cycle between modules, and no layer imports a higher one.

The layers follow the data flow, ``data → models → training → evaluation → inference → pipeline → serve →
cli``, above a base of modules everything may import (the errors, the file names, io, the config and the
run-folder format). Imports inside functions count too: a deferred import still makes a cycle.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "toxdistill"
LAYERS = (
    "base",
    "data",
    "models",
    "training",
    "evaluation",
    "inference",
    "export",
    "benchmark",
    "pipeline",
    "serve",
    "cli",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def own_imports(path: Path, known: set[str]) -> set[str]:
    """Our modules that ``path`` imports anywhere in its body; ``from pkg import mod`` counts as ``pkg.mod``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "toxdistill")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "toxdistill":
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            found.update(subs or {node.module})
    return found & known


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else "base"


@functools.cache  # parsed once: parsing the package took up to 0.8 s for each of the 123 parametrized modules
def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: own_imports(p, set(mods)) - {m} for m, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_reader_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from toxdistill.inference import predict\n    import toxdistill.files\n")
    assert own_imports(f, {"toxdistill.inference.predict", "toxdistill.files", "toxdistill.inference"}) == {
        "toxdistill.inference.predict",
        "toxdistill.files",
    }


def test_cycles_are_found_on_a_made_up_graph():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules():
    assert cycles(graph()) == []


def test_no_import_cycle_between_subpackages():
    g = graph()
    pkg = {layer(m) for m in g}
    sub = {p: {layer(t) for m, ts in g.items() if layer(m) == p for t in ts} - {p} for p in pkg}
    assert cycles(sub) == []


@pytest.mark.parametrize("module", sorted(modules()))
def test_no_layer_imports_a_higher_one(module):
    rank = {name: k for k, name in enumerate(LAYERS)}
    mine = rank[layer(module)]
    upward = sorted(t for t in graph()[module] if rank[layer(t)] > mine)
    assert upward == [], f"{module} ({layer(module)}) imports higher layers: {upward}"
