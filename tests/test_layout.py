"""The package's layout: imports run one way (no import circles, type-only imports aside)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nucfuse_datasets"


def module_names() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports_of(path: Path, module: str, known: set[str]) -> set[str]:
    """Every package module ``module`` imports, at the top or inside functions; ``if TYPE_CHECKING:`` excluded."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if "TYPE_CHECKING" in ast.unparse(node.test):
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(alias.name for alias in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)

        def visit_Call(self, node: ast.Call) -> None:  # importlib.import_module("a.literal.name")
            first = node.args[0] if node.args else None
            if ast.unparse(node.func).endswith("import_module") and isinstance(first, ast.Constant):
                found.add(str(first.value))
            self.generic_visit(node)

    Visitor().visit(ast.parse(path.read_text(encoding="utf-8")))
    deps = {d for d in found if d in known}
    # importing a.b.c runs a and a.b first; a module's import of its own ancestors is not a circle
    deps |= {".".join(d.split(".")[:i]) for d in deps for i in range(1, d.count(".") + 1)}
    return {d for d in deps if d in known and d != module and not module.startswith(d + ".")}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles():
    modules = module_names()
    graph = {name: imports_of(path, name, set(modules)) for name, path in modules.items()}
    assert graph["nucfuse_datasets.datasets._registry"] >= {
        "nucfuse_datasets.benchmark.paper"
    }  # the graph sees imports
    assert circles(graph) == []


#: The style guide's "small modules (< ~400 lines)", with a margin: a module past this is split into cohesive pieces.
MAX_MODULE_LINES = 450


def test_no_module_is_too_long():
    lengths = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in module_names().items()}
    assert len(lengths) > 50  # the walk sees the package
    assert {name: n for name, n in lengths.items() if n > MAX_MODULE_LINES} == {}


#: The package root: the shared vocabulary (errors, the Sample schema, the one label-map check), then one sub-package
#: per stage of the flow (io -> datasets -> transforms -> metrics -> benchmark -> export, and the cli over them), and
#: three public leaf modules (the classical baseline, pretrained weights, plots).
ROOT_MODULES = {"__init__", "_version", "_labelmap", "errors", "schema", "baselines", "weights", "viz"}
ROOT_PACKAGES = {"io", "datasets", "transforms", "metrics", "benchmark", "export", "cli"}


def test_package_root_reads_as_the_flow():
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert modules == ROOT_MODULES
    assert packages == ROOT_PACKAGES
