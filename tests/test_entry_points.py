"""The entry points own their process: they alone read the sweeper's job from the environment and set
up the libraries' logging; importing ocrexp changes nothing."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _functions_calling(attribute: str) -> set[tuple[str, str]]:
    """``(module path, enclosing function)`` of every ``….attribute(…)`` call under src/."""
    found = set()
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == attribute:
                    found.add((path.relative_to(SRC).as_posix(), function.name))
        module_level = [node for node in tree.body if not isinstance(node, (ast.FunctionDef, ast.ClassDef))]
        if any(isinstance(n, ast.Attribute) and n.attr == attribute for s in module_level for n in ast.walk(s)):
            found.add((path.relative_to(SRC).as_posix(), "<module>"))
    return found


def test_only_the_training_task_function_reads_the_sweepers_job_from_the_environment():
    # Every other function is handed the job (or what follows from it) through its parameters.
    assert _functions_calling("from_env") == {("ocrexp/train.py", "_hydra_main")}


def test_the_scan_finds_a_call_to_from_env_wherever_it_is(tmp_path, monkeypatch):
    package = tmp_path / "ocrexp"
    package.mkdir()
    (package / "stray.py").write_text("from ocrexp.sweep_protocol import TrialJob\n\n"
                                      "class Quiet:\n    def filter(self):\n        return TrialJob.from_env()\n\n"
                                      "JOB = TrialJob.from_env()\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    assert _functions_calling("from_env") == {("ocrexp/stray.py", "filter"), ("ocrexp/stray.py", "<module>")}


def test_importing_ocrexp_and_its_commands_changes_no_environment_variable_or_import_hook():
    code = ("import os, sys\n"
            "before, hooks = dict(os.environ), list(sys.meta_path)\n"
            "import ocrexp, ocrexp.train, ocrexp.cli, ocrexp.evaluate\n"
            "assert dict(os.environ) == before, sorted(set(os.environ.items()) ^ set(before.items()))\n"
            "assert sys.meta_path == hooks, sys.meta_path\n")
    # Without the variables the entry points set, so that setting them again would show.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "TF_CPP_"))}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr

