"""How the package hangs together: no import cycles, one sweeper-job contract, trackers in step."""

from __future__ import annotations

import ast
import functools
import inspect
from pathlib import Path

import pytest

from ocrexp.sweep_protocol import ENV_PARENT_RUN_ID, ENV_STORAGE, NUMBER_TAG, PARENT_TAG, TrialJob, is_pruned
from ocrexp.tracking import NullTracker, RunTracker

SRC = Path(__file__).resolve().parents[1] / "src"


@functools.cache
def _modules() -> dict[str, tuple[Path, bool]]:
    """Every module under src/: dotted name -> (file, is a package)."""
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _imported_names(tree: ast.AST, package: str):
    """(dotted name, line) of every import in ``tree``, at any depth: ``import a.b``, ``from a import
    b`` (as ``a.b``, which the caller resolves to ``a`` when ``b`` is not a module), relative imports
    from ``package``, and ``import_module("a.b")`` / ``__import__("a.b")`` with a literal name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "id", getattr(node.func, "attr", None)) in ("import_module", "__import__")):
            yield node.args[0].value, node.lineno


def import_edges() -> dict[str, dict[str, list[str]]]:
    """Module -> the project modules it imports anywhere in its text -> where ("ocrexp/x.py:12").
    Lazy imports inside functions count too: a cycle that works only because one side imports late
    is still a cycle. The parent packages Python runs on the way to a module are not edges (every
    submodule would then form a cycle with its package's ``__init__``)."""
    modules = _modules()

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, dict[str, list[str]]] = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        where = path.relative_to(SRC).as_posix()
        deps: dict[str, list[str]] = {}
        for imported, line in _imported_names(ast.parse(path.read_text()), package):
            target = known(imported)
            if target is not None and target != name and f"{where}:{line}" not in deps.get(target, ()):
                deps.setdefault(target, []).append(f"{where}:{line}")
        edges[name] = deps
    return edges


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (see ``import_edges``)."""
    return {name: set(deps) for name, deps in import_edges().items()}


def package_of(module: str) -> str:
    """The node a module belongs to in the package graph: a subpackage of ``ocrexp``
    (``ocrexp.tracking``, ``ocrexp.reading``, ``ocrexp.data``, ``ocrexp.models``, ``ocrexp.commands``,
    ``ocrexp.compat``...) or a Hydra plugin (``hydra_plugins.ocrexp_optuna_sweeper``) is one node,
    whatever module of it is imported; each top-level module of ``ocrexp`` (``ocrexp.config``,
    ``ocrexp.train``...) and ``ocrexp`` itself is a node of its own. Top-level modules are not lumped
    together: most of them are small shared leaves (``errors``, ``paths``) that everything imports,
    and one node for them all would report a cycle wherever a package sits between two of them."""
    parts = module.split(".")
    if parts[0] == "hydra_plugins":
        return ".".join(parts[:2])
    if len(parts) > 1 and _modules().get(".".join(parts[:2]), (None, False))[1]:
        return ".".join(parts[:2])
    return module


def package_edges() -> dict[str, dict[str, list[str]]]:
    """``import_edges`` between the nodes of ``package_of``, imports within one node left out."""
    out: dict[str, dict[str, list[str]]] = {}
    for module, deps in import_edges().items():
        source = out.setdefault(package_of(module), {})
        for dep, where in deps.items():
            if package_of(dep) != package_of(module):
                source.setdefault(package_of(dep), []).extend(f"{w} imports {dep}" for w in where)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def _shortest_cycle(graph: dict[str, set[str]], members: set[str], start: str) -> list[str]:
    """A shortest path from ``start`` back to itself within ``members`` (a strongly connected set)."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while start not in came_from:
        step = []
        for v in frontier:
            for w in sorted((graph[v] & members) - came_from.keys()):
                came_from[w] = v
                step.append(w)
        frontier = step
    path = [start]
    while path[-1] != start or len(path) == 1:
        path.append(came_from[path[-1]])
    return path[::-1]


def describe_cycles(edges: dict[str, dict[str, list[str]]]) -> str:
    """Each strongly connected set as cycles that together pass through all its members, every step
    with the import lines that make it."""
    graph = {name: set(deps) for name, deps in edges.items()}
    lines = []
    for component in cycles(graph):
        shown: set[str] = set()
        for start in component:
            if start in shown:
                continue
            path = _shortest_cycle(graph, set(component), start)
            shown.update(path)
            lines.append(" -> ".join(path))
            lines.extend(f"    {a} -> {b}: {'; '.join(edges[a][b])}" for a, b in zip(path, path[1:]))
    return "\n".join(lines)


def test_no_module_imports_itself_through_others():
    edges = import_edges()
    assert "ocrexp.train" in edges and "hydra_plugins.ocrexp_optuna_sweeper._impl" in edges
    assert not cycles(import_graph()), "import cycles between modules:\n" + describe_cycles(edges)


def test_no_package_imports_itself_through_others():
    """Data flows config -> data -> model -> fit -> evaluate -> tracking; tracking observes the others
    and nothing it observes imports it back. See ``package_of`` for what a node is."""
    edges = package_edges()
    assert {"ocrexp.tracking", "ocrexp.reading", "ocrexp.config", "hydra_plugins.ocrexp_optuna_sweeper"} <= set(edges)
    assert not cycles({k: set(v) for k, v in edges.items()}), \
        "import cycles between packages:\n" + describe_cycles(edges)


def test_the_cycle_finder_finds_a_cycle_and_names_its_imports():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    edges = {"a": {"b": ["a.py:3"]}, "b": {"c": ["b.py:5"], "a": ["b.py:9"]}, "c": {"a": ["c.py:1"]}}
    text = describe_cycles(edges)
    assert text.splitlines()[0] == "a -> b -> a" and "b.py:9" in text and "c.py:1" in text


def test_lazy_relative_and_from_imports_are_all_edges():
    tree = ast.parse("def f():\n    from . import pyfunc\n    from ..tracking import run as r\n"
                     "    import_module('ocrexp.data.mnist')\nimport ocrexp.models.cnn\n")
    names = {name for name, _ in _imported_names(tree, "ocrexp.reading")}
    assert names == {"ocrexp.reading.pyfunc", "ocrexp.tracking.run", "ocrexp.data.mnist", "ocrexp.models.cnn"}
    assert package_of("ocrexp.tracking.run") == "ocrexp.tracking" == package_of("ocrexp.tracking")
    assert package_of("ocrexp.config") == "ocrexp.config"
    assert package_of("hydra_plugins.ocrexp_optuna_sweeper._impl") == "hydra_plugins.ocrexp_optuna_sweeper"


def test_sweeper_settings_module_imports_nothing_of_the_plugin():
    graph = import_graph()
    assert not {d for d in graph["hydra_plugins.ocrexp_optuna_sweeper.config"] if "ocrexp" in d}


def public_methods(cls) -> set[str]:
    return {name for name, _ in inspect.getmembers(cls, inspect.isfunction) if not name.startswith("_")}


def test_null_tracker_has_exactly_the_run_trackers_methods_and_signatures():
    assert public_methods(NullTracker) == public_methods(RunTracker)
    for name in public_methods(RunTracker):
        real, null = inspect.signature(getattr(RunTracker, name)), inspect.signature(getattr(NullTracker, name))
        assert list(real.parameters) == list(null.parameters), name


def test_null_tracker_rejects_a_misspelt_method():
    with pytest.raises(AttributeError):
        NullTracker().log_metric({"x": 1.0})


def test_trial_job_travels_through_the_environment_and_names_the_child_run():
    job = TrialJob("postgresql://db/optuna", "cnn-1234", trial_id=17, number=5, parent_run_id="abc")
    env = job.to_env()
    assert env[ENV_STORAGE] == "postgresql://db/optuna" and env[ENV_PARENT_RUN_ID] == "abc"
    assert TrialJob.from_env(env) == job
    assert TrialJob.from_env({}) is None
    assert job.run_name == "trial-5"
    assert job.run_tags()[PARENT_TAG] == "abc" and job.run_tags()[NUMBER_TAG] == "5"
    assert PARENT_TAG not in TrialJob("j.journal", "s", 1, 1).run_tags()


def test_pruned_trials_are_recognised_by_type_not_by_name():
    import optuna

    class TrialPruned(Exception):  # same name, not Optuna's
        pass

    assert is_pruned(optuna.TrialPruned("pruned after epoch 2"))
    assert not is_pruned(TrialPruned()) and not is_pruned(KeyboardInterrupt()) and not is_pruned(None)


@pytest.mark.parametrize("module", sorted(_modules()))
def test_every_module_imports(module):
    """The fast test path reaches every module at least this far: an upgrade that breaks a module's
    imports fails here, even for modules whose behaviour only the slow tests exercise."""
    import importlib

    importlib.import_module(module)


def test_the_readme_stays_a_users_document_of_at_most_400_lines():
    """Reasoning goes to docs/, dated numbers to benchmarks/results/, history to git (issue 24)."""
    lines = (SRC.parent / "README.md").read_text().splitlines()
    assert len(lines) <= 400, f"README.md has {len(lines)} lines: move reasoning to docs/ and keep it at 400"
