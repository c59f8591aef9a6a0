"""How the package hangs together: no import cycles, one sweeper-job contract, trackers in step."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from ocrexp.sweep_protocol import ENV_PARENT_RUN_ID, ENV_STORAGE, NUMBER_TAG, PARENT_TAG, TrialJob, is_pruned
from ocrexp.tracking import NullTracker, RunTracker

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, tuple[Path, bool]]:
    """Every module under src/: dotted name -> (file, is a package)."""
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its text (lazy imports inside functions
    count too: a cycle that works only because one side imports late is still a cycle)."""
    modules = _modules()

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps.update(filter(None, (known(alias.name) for alias in node.names)))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    deps.add(known(target if target in modules else base))
        graph[name] = deps - {name, None}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
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


def test_no_module_imports_itself_through_others():
    graph = import_graph()
    assert "ocrexp.train" in graph and "hydra_plugins.ocrexp_optuna_sweeper._impl" in graph
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


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
