"""The import direction of docs/architecture.md: numpy_ref stands on NumPy alone, and no import of
the project's modules runs in a circle, neither between modules nor between their folders."""

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("numpy_ref", "rnn_jax", "experiments", "tools")


def test_numpy_ref_imports_without_jax_or_torch() -> None:
    code = (
        "import sys, numpy_ref, numpy_ref.data, numpy_ref.spec\n"
        "import pkgutil, importlib\n"
        "for m in pkgutil.iter_modules(numpy_ref.__path__):\n"
        "    importlib.import_module('numpy_ref.' + m.name)\n"
        "heavy = {'jax', 'jaxlib', 'optax', 'torch'}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def project_modules() -> dict[str, Path]:
    """Every module of the project's packages: dotted name -> file (a package is its __init__)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that ``name`` imports anywhere in its file (module level or inside a
    function): ``import a.b`` and ``from a import b`` name ``a.b`` where it is a module, else
    ``a``; relative imports are resolved from ``name``'s package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # a name defined in a module: the module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[str]:
    """Each circle of imports (a strongly connected component of more than one node, Tarjan):
    one cycle in it as a path, and the circle's other members."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    found = []
    for component in components:
        cycle = _cycle_in(component, graph)
        others = sorted(component - set(cycle))
        found.append(
            " -> ".join(cycle) + (f" (in the same circle: {', '.join(others)})" if others else "")
        )
    return found


def _cycle_in(component: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest path from the component's first node back to itself (breadth first)."""
    start = min(component)
    previous = {start: ""}
    queue = [start]
    for v in queue:
        for w in sorted(graph.get(v, set()) & component):
            if w == start:
                path = [v]
                while previous[path[-1]]:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if w not in previous:
                previous[w] = v
                queue.append(w)
    raise AssertionError(f"no cycle in {component}")


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def folder(module: str, graph: dict[str, set[str]]) -> str:
    """The folder (package) a module lives in; a package's __init__ lives in its own folder."""
    is_package = any(other.startswith(module + ".") for other in graph)
    return module if is_package else module.rpartition(".")[0] or module


def test_the_import_graph_is_found() -> None:
    graph = import_graph()
    assert "numpy_ref.spec" in graph["rnn_jax.models"]
    assert len(graph) > 60


def test_no_module_imports_itself_through_others() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(found)


def test_no_folder_imports_itself_through_others() -> None:
    """Between folders (numpy_ref, rnn_jax, experiments' rooms): lower never imports higher."""
    graph = import_graph()
    folders: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph.items():
        here = folder(module, graph)
        folders[here] |= {folder(t, graph) for t in targets} - {here}
    found = cycles(folders)
    assert not found, "import cycles between folders: " + "; ".join(found)
