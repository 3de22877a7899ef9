"""The packages' import structure: no import cycle in either package, and in fewtask_data
"imports only point down" through its layers (docs/ARCHITECTURE.md).

Imports are read with ``ast`` from every module, including imports inside functions
(deferred imports still tie modules together) and type-checking blocks.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# fewtask_data's layers, bottom to top: a module imports from its own layer or lower ones.
LAYERS = ["errors", "io", "episode", "formats", "augment", "sampling", "stream", "sources", "families", "builders", "cli"]


def modules(package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of a package."""
    root = REPO / package
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that module ``name`` imports. ``from pkg import x`` counts as
    importing ``pkg.x`` when that is a module, else as importing the module that defines ``x``
    (for the lazily exported names of ``fewtask_data/__init__.py``), else ``pkg``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                if f"{base}.{alias.name}" in known:
                    targets.add(f"{base}.{alias.name}")
                elif base in known and known[base].name == "__init__.py" and base.count(".") == 0:
                    value = getattr(importlib.import_module(base), alias.name, None)
                    targets.add(getattr(value, "__module__", None) or base)
                else:
                    targets.add(base)
    return {t for t in targets if t in known and t != name}


def graph(package: str) -> dict[str, set[str]]:
    known = modules(package)
    return {name: imported(name, path, known) for name, path in known.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


@pytest.mark.parametrize(
    "package",
    [
        "fewtask_data",
        "trainer",
    ],
)
def test_no_import_cycle(package):
    cycle = find_cycle(graph(package))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_cycles_through_deferred_imports(tmp_path):
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from fewtask_data.stream import FamilyStream\n")
    assert imported("fewtask_data.x", source, modules("fewtask_data")) == {"fewtask_data.stream"}


# trainer's layers, bottom to top (docs/ARCHITECTURE.md).
TRAINER_LAYERS = ["core", "models", "algorithms", "domains", "training", "evaluation", "experiments", "cli"]


def layer(module: str, layers: list[str] = LAYERS) -> int:
    parts = module.split(".")
    return layers.index(parts[1]) if len(parts) > 1 else len(layers)  # the package itself sits on top


def test_fewtask_data_imports_only_point_down():
    edges = graph("fewtask_data")
    assert set(LAYERS) == {name.split(".")[1] for name in edges if "." in name}, "every module belongs to a layer"
    upward = [f"{a} -> {b}" for a, targets in edges.items() for b in targets if layer(b) > layer(a)]
    assert not upward, "imports pointing up: " + "; ".join(sorted(upward))


def test_trainer_imports_only_point_down():
    edges = graph("trainer")
    assert set(TRAINER_LAYERS) == {name.split(".")[1] for name in edges if "." in name}, "every module belongs to a layer"
    upward = [f"{a} -> {b}" for a, targets in edges.items() for b in targets
              if layer(b, TRAINER_LAYERS) > layer(a, TRAINER_LAYERS)]  # fmt: skip
    assert not upward, "imports pointing up: " + "; ".join(sorted(upward))


def test_fewtask_data_never_imports_the_trainer():
    known = {**modules("fewtask_data"), **modules("trainer")}
    for name, path in modules("fewtask_data").items():
        assert not {t for t in imported(name, path, known) if t.startswith("trainer")}, name
