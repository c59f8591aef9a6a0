"""``ocrexp dashboard``: which storage it opens, its one-sentence refusals, the command a sweep prints,
and a real optuna-dashboard that serves the study, keeps its output in logs/dashboard.log, and leaves
nothing running when stopped.

Journals are written by Optuna itself; the sweep is the trivial Hydra app of ``test_sweeper.py``.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from hydra_plugins.ocrexp_optuna_sweeper._study import storage_url
from ocrexp.sweep_protocol import journal_path
from ocrexp import cli
from ocrexp.commands import dashboard
from ocrexp.errors import OcrexpError
from tests.project import Project
from tests.servers import assert_stops_cleanly, free_port, server_starter
from tests.toy_sweep import sweep

optuna.logging.set_verbosity(optuna.logging.WARNING)


def write_study(path: Path, name: str, trials: int = 2) -> Path:
    """A journal holding study ``name`` with ``trials`` finished trials, as Optuna writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(path))),
                                direction="maximize")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=trials)
    return path


def in_project(root: Path, name: str, age_s: float = 0) -> Path:
    """Study ``name`` where a sweep keeps it by default, last written ``age_s`` seconds ago."""
    path = write_study(journal_path(root, name), name)
    when = time.time() - age_s
    os.utime(path, (when, when))
    return path


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("OCREXP_ROOT", str(tmp_path))
    return tmp_path


# -- which storage ----------------------------------------------------------------------------------

def test_a_study_journal_is_found_where_the_sweep_writes_it(root):
    for name in ("cnn_optuna-1a2b3c4d", "my study/2"):
        assert str(journal_path(root, name)) == storage_url(None, name, root)


def test_a_study_name_opens_its_own_journal(root):
    wanted = in_project(root, "cnn_optuna-aaaa", age_s=60)
    in_project(root, "cnn_optuna-bbbb")
    target = dashboard.resolve("cnn_optuna-aaaa", None, root)
    assert target == dashboard.Target(str(wanted), str(wanted))


def test_without_a_name_the_most_recently_updated_journal_opens_and_the_others_are_named(root):
    in_project(root, "old", age_s=3600)
    newest = in_project(root, "new")
    in_project(root, "middle", age_s=60)
    target = dashboard.resolve(None, None, root)
    assert target.storage == str(newest)
    assert target.others == ("middle", "old")


def test_a_single_journal_opens_with_no_others_named(root):
    only = in_project(root, "only")
    assert dashboard.resolve(None, None, root) == dashboard.Target(str(only), str(only))


def test_no_studies_says_how_to_run_a_sweep(root):
    with pytest.raises(OcrexpError, match=r"^no Optuna studies in .*: run a sweep first \(ocrexp-train -m "
                                          r"hparams_search=cnn_optuna\)"):
        dashboard.resolve(None, None, root)
    with pytest.raises(OcrexpError, match="run a sweep first"):
        dashboard.resolve("anything", None, root)


def test_an_unknown_study_lists_the_known_ones(root):
    in_project(root, "beta")
    in_project(root, "alpha")
    with pytest.raises(OcrexpError, match=r"^no study 'gamma' in .*: known studies are alpha, beta$"):
        dashboard.resolve("gamma", None, root)


def test_storage_option_takes_journal_paths_from_the_project_root_and_sqlite_files_as_urls(root, tmp_path):
    journal = write_study(root / "studies" / "shared.journal", "s1")
    assert dashboard.resolve(None, "studies/shared.journal", root).storage == str(journal)
    assert dashboard.resolve(None, str(journal), root).storage == str(journal)
    database = tmp_path / "optuna.db"
    optuna.create_study(study_name="s2", storage=f"sqlite:///{database}")
    assert dashboard.resolve(None, str(database), root).storage == f"sqlite:///{database}"
    assert dashboard.resolve(None, f"sqlite:///{database}", root).storage == f"sqlite:///{database}"


def test_storage_option_refuses_what_is_not_there(root):
    with pytest.raises(OcrexpError, match=r"^no Optuna storage at .*missing\.journal: pass a journal file"):
        dashboard.resolve(None, "missing.journal", root)
    with pytest.raises(OcrexpError, match=r"^no SQLite database at /nowhere/x\.db"):
        dashboard.resolve(None, "sqlite:////nowhere/x.db", root)


def test_a_server_url_is_shown_without_its_password(root):
    target = dashboard.resolve(None, "postgresql://optuna:s3cret@db-host/optuna", root)
    assert target.shown == "postgresql://optuna:***@db-host/optuna"
    assert target.storage.endswith("://optuna:s3cret@db-host/optuna")


# -- refusals, in one sentence ----------------------------------------------------------------------

def test_missing_optuna_dashboard_says_which_extra_installs_it(root, monkeypatch, capsys, tmp_path):
    in_project(root, "s")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert cli.main(["dashboard"]) == 2
    assert capsys.readouterr().err == "error: optuna-dashboard is not installed: pip install 'ocrexp[dashboard]'\n"


def test_a_port_in_use_is_refused_in_one_sentence(root, capsys):
    in_project(root, "s")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["dashboard", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: port {port} on 127.0.0.1 is already in use") and err.count("\n") == 1


def test_ocrexp_help_imports_neither_optuna_nor_the_dashboard():
    code = ("import sys; from ocrexp import cli; cli.build_parser().format_help(); "
            "print(sorted(m for m in ('optuna', 'optuna_dashboard', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert "dashboard" in cli.build_parser().format_help()


# -- the sweep's header -----------------------------------------------------------------------------

def watch_line(out: str) -> str:
    (line,) = [line for line in out.splitlines() if "Watch it live: " in line]
    return line.split("Watch it live: ", 1)[1]


def test_the_sweep_prints_the_command_that_opens_its_study(app, tmp_path, monkeypatch):  # noqa: F811
    out = sweep(app, tmp_path, "hydra.sweeper.n_trials=1")
    words = shlex.split(watch_line(out))
    assert words[:2] == ["ocrexp", "dashboard"] and len(words) == 3
    monkeypatch.setenv("OCREXP_ROOT", str(tmp_path))
    journal = Path(dashboard.resolve(words[2], None, tmp_path).storage)
    assert optuna.get_all_study_names(JournalStorage(JournalFileBackend(str(journal)))) == [words[2]]


@pytest.mark.slow
def test_a_sweep_on_another_storage_prints_it_for_dashboard_storage(app, tmp_path):  # noqa: F811
    database = tmp_path / "studies.db"
    out = sweep(app, tmp_path, "hydra.sweeper.n_trials=1", f"hydra.sweeper.storage=sqlite:///{database}")
    assert watch_line(out) == f"ocrexp dashboard --storage sqlite:///{database}"
    with sqlite3.connect(database) as db:
        assert db.execute("select count(*) from studies").fetchone() == (1,)


# -- a real optuna-dashboard ------------------------------------------------------------------------

needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")


@pytest.fixture
def start_dashboard():
    """A function that starts ``ocrexp dashboard`` in a project and waits until its API answers
    (tests/servers.py); the servers it started are stopped at the end of the test."""
    yield from server_starter("dashboard", "/api/studies")


def study_names(port: int) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=30) as resp:
        return [s["study_name"] for s in json.load(resp)["study_summaries"]]


@pytest.mark.slow
@needs_proc
def test_dashboard_serves_the_study_and_a_stop_signal_ends_every_server_process(project: Project, start_dashboard):
    name = "cnn_optuna-0123abcd"
    journal = write_study(journal_path(project.root, name), name)
    server = start_dashboard(project, name)
    assert study_names(server.port) == [name]
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/dashboard", timeout=30) as resp:
        assert resp.status == 200 and b"<html" in resp.read().lower()
    assert_stops_cleanly(server.proc, signal.SIGTERM, server.server_pid, server.port)
    log = project.root / "logs" / "dashboard.log"
    assert server.out.read_text() == (f"optuna-dashboard for {journal}: http://127.0.0.1:{server.port}/ "
                                      f"(Ctrl-C to stop)\nServer log: {log}\n")
    assert server.err.read_text() == ""
    text = log.read_text()
    assert text.startswith("--- ") and " starting optuna-dashboard: " in text.splitlines()[0]
    assert f"http://127.0.0.1:{server.port}" in text  # its own "Listening" line (gunicorn's or wsgiref's)


@pytest.mark.slow
@needs_proc
def test_verbose_dashboard_shows_the_server_output_and_writes_no_log(project: Project, start_dashboard):
    write_study(journal_path(project.root, "s"), "s")
    server = start_dashboard(project, OCREXP_VERBOSE="1")
    assert_stops_cleanly(server.proc, signal.SIGTERM, server.server_pid, server.port)
    assert server.first_line.startswith("optuna-dashboard for ")
    assert f"http://127.0.0.1:{server.port}" in server.err.read_text()  # its "Listening" line
    assert "Server log:" not in server.out.read_text()
    assert not (project.root / "logs").exists()


@pytest.mark.slow
def test_a_dashboard_that_fails_on_its_storage_is_one_error_line_quoting_its_log(project: Project):
    not_a_db = project.root / "studies.db"
    not_a_db.write_text("not a database\n")
    port = free_port()
    proc = project.run("ocrexp", "dashboard", "--storage", f"sqlite:///{not_a_db}", "--port", str(port),
                       check=False, timeout=120)
    log = project.root / "logs" / "dashboard.log"
    assert proc.returncode == 2
    assert proc.stdout == (f"optuna-dashboard for sqlite:///{not_a_db}: http://127.0.0.1:{port}/ (Ctrl-C to stop)\n"
                           f"Server log: {log}\n")
    assert proc.stderr == ("error: optuna-dashboard stopped with exit status 1: sqlite3.DatabaseError: file is not "
                           f"a database; its output is in {log}\n")
    assert "Traceback (most recent call last):" in log.read_text()
