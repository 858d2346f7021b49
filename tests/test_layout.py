"""The package layout's rules (docs/architecture.md), read from the source with ``ast``.

Every ``import`` counts, also one inside a function: a lazy import is still a dependency. The checker is
plain functions over a ``{module: {imported modules}}`` graph, so the tests below also feed it small bad
graphs to show each rule can fail.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "clip4idc"
MAX_LINES = 600

# The network is the bottom layer: it may use only the shared modules at the package's top level.
NETWORK_MAY_NOT_IMPORT = ("training", "evaluation", "explanation", "data", "app", "cli", "weights")
# Explanation reads the network; it must not depend on the evaluation protocol.
EXPLANATION_MAY_NOT_IMPORT = ("evaluation", "app", "cli")


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = ["clip4idc", *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, name] if name else base)


def imports_of(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The ``clip4idc`` modules one file imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "clip4idc"}
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node.level, node.module) if node.level else node.module
            if not target or target.split(".")[0] != "clip4idc":
                continue
            subs = {f"{target}.{alias.name}" for alias in node.names} & known
            found |= subs or {target}
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """``{module: {clip4idc modules it imports}}`` for every ``.py`` file under ``root``."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    known = set(files)
    return {
        mod: imports_of(path.read_text(), mod, path.name == "__init__.py", known) - {mod}
        for mod, path in files.items()
    }


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def layout_problems(graph: Mapping[str, set[str]]) -> list[str]:
    """Every broken rule of docs/architecture.md, one line each (empty: the layout holds)."""
    problems = [f"import circle: {' <-> '.join(c)}" for c in cycles(graph)]
    for mod, deps in sorted(graph.items()):
        for dep in sorted(deps):
            if _in(dep, "clip4idc.cli") and not _in(mod, "clip4idc.cli"):
                problems.append(f"{mod} imports the command line ({dep})")
            if _in(dep, "clip4idc.app") and not _in(mod, "clip4idc.app") and not _in(mod, "clip4idc.cli"):
                problems.append(f"{mod} imports the app ({dep}); the app is a client of the library")
            for layer, banned in (
                ("network", NETWORK_MAY_NOT_IMPORT),
                ("explanation", EXPLANATION_MAY_NOT_IMPORT),
            ):
                if _in(mod, f"clip4idc.{layer}") and any(_in(dep, f"clip4idc.{b}") for b in banned):
                    problems.append(f"{mod} ({layer}) imports {dep}")
    return problems


# ---------------------------------------------------------------------------------------------------------
# the real package


def test_the_package_keeps_its_layout():
    graph = import_graph()
    assert "clip4idc.network.model" in graph and "clip4idc.cli" in graph  # the scan saw the package
    assert layout_problems(graph) == []


def test_no_library_file_is_too_long():
    long = {
        str(p.relative_to(ROOT)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


# ---------------------------------------------------------------------------------------------------------
# the checker fails on bad graphs


def test_checker_finds_an_import_circle():
    graph = {"clip4idc.a": {"clip4idc.b"}, "clip4idc.b": {"clip4idc.c"}, "clip4idc.c": {"clip4idc.a"}}
    assert layout_problems(graph) == ["import circle: clip4idc.a <-> clip4idc.b <-> clip4idc.c"]


def test_checker_finds_the_library_importing_the_cli():
    graph = {"clip4idc.evaluation.evaluate": {"clip4idc.cli.caption"}, "clip4idc.cli.caption": set()}
    assert layout_problems(graph) == [
        "clip4idc.evaluation.evaluate imports the command line (clip4idc.cli.caption)"
    ]


def test_checker_finds_the_network_importing_upper_layers():
    for upper in ("training.train", "evaluation.metrics", "explanation.maps", "app.web", "data.readers"):
        graph = {"clip4idc.network.model": {f"clip4idc.{upper}"}, f"clip4idc.{upper}": set()}
        assert f"clip4idc.network.model (network) imports clip4idc.{upper}" in layout_problems(graph)
    assert layout_problems({"clip4idc.network.model": {"clip4idc.precision", "clip4idc.tokenizer"}}) == []


def test_checker_finds_explanation_on_the_evaluation_protocol_and_the_library_on_the_app():
    graph = {
        "clip4idc.explanation.pointing": {"clip4idc.evaluation.results"},
        "clip4idc.io": {"clip4idc.app"},
    }
    assert layout_problems(graph) == [
        "clip4idc.explanation.pointing (explanation) imports clip4idc.evaluation.results",
        "clip4idc.io imports the app (clip4idc.app); the app is a client of the library",
    ]


def test_scanner_sees_lazy_and_relative_imports(tmp_path):
    pkg = tmp_path / "clip4idc"
    (pkg / "network").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "network" / "__init__.py").write_text("")
    (pkg / "cli.py").write_text("")
    (pkg / "network" / "model.py").write_text("def f():\n    from .. import cli\n")
    graph = import_graph(pkg)
    assert graph["clip4idc.network.model"] == {"clip4idc.cli"}
    assert layout_problems(graph) == [
        "clip4idc.network.model imports the command line (clip4idc.cli)",
        "clip4idc.network.model (network) imports clip4idc.cli",
    ]
