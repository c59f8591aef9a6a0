"""``ocrexp.tracking.refs``: a run named by full id, unique id prefix or unique run name, on a real
SQLite MLflow store (no training)."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest

from ocrexp.errors import OcrexpError
from ocrexp.tracking.refs import (AmbiguousRun, RunNotFound, check_store, describe, find_run, resolve_model_uri,
                                  resolve_run)

TWIN_PREFIX = "beef01"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """Runs in two experiments: unique names, a name two runs share, two ids with a common prefix,
    a name with a quote, and a deleted run."""
    import mlflow

    root = tmp_path_factory.mktemp("refs")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    first, second = client.create_experiment("first"), client.create_experiment("second")
    ids = {}
    for experiment, name in ((first, "solo"), (first, "twin"), (second, "twin"), (second, "it's"),
                             (first, "p1"), (first, "p2"), (second, "gone")):
        ids.setdefault(name, []).append(client.create_run(experiment, run_name=name).info.run_id)
    client.delete_run(ids["gone"][0])
    with sqlite3.connect(root / "mlflow.db") as con:  # two ids that start alike, as chance would make them
        con.execute("PRAGMA foreign_keys = OFF")
        for name, new in (("p1", TWIN_PREFIX + "0" * 26), ("p2", TWIN_PREFIX + "1" * 26)):
            for table in ("runs", "tags"):
                con.execute(f"UPDATE {table} SET run_uuid = ? WHERE run_uuid = ?", (new, ids[name][0]))
            ids[name] = [new]
    return {"uri": uri, "ids": ids, "root": root}


def _name(store, ref):
    return resolve_run(ref, store["uri"]).info.run_name


def test_a_full_id_a_prefix_and_a_unique_name_name_the_same_run(store):
    solo = store["ids"]["solo"][0]
    assert {_name(store, ref) for ref in (solo, solo[:4], solo[:8], solo[:8].upper(), " solo ", "solo")} == {"solo"}


def test_a_name_with_a_quote_is_found(store):
    assert _name(store, "it's") == "it's"


def test_runs_are_found_in_every_experiment(store):
    assert resolve_run(store["ids"]["twin"][1][:8], store["uri"]).info.run_id == store["ids"]["twin"][1]


def test_an_ambiguous_name_lists_each_candidate_with_id_name_and_start(store):
    with pytest.raises(AmbiguousRun) as caught:
        resolve_run("twin", store["uri"])
    message = str(caught.value)
    assert "\n" not in message and "the name of 2 runs" in message and "give more of the id" in message
    for run_id in store["ids"]["twin"]:
        assert run_id[:8] in message
    assert describe(resolve_run(store["ids"]["twin"][0], store["uri"])) in message  # "<id8> twin (YYYY-MM-DD HH:MM)"


def test_an_ambiguous_prefix_lists_both_runs(store):
    with pytest.raises(AmbiguousRun, match=f"run '{TWIN_PREFIX}' is ambiguous, the id prefix or name of 2 runs: "
                                           f"{TWIN_PREFIX}.. p[12] .*; {TWIN_PREFIX}.. p[12] "):
        resolve_run(TWIN_PREFIX, store["uri"])
    assert _name(store, TWIN_PREFIX + "1") == "p2"


def test_an_unknown_run_says_where_it_looked(store):
    with pytest.raises(RunNotFound) as caught:
        resolve_run("0000dead", store["uri"])
    assert str(caught.value) == (f"no run has the id, id prefix or name '0000dead' in {store['uri']} (3 experiments "
                                 "searched); `ocrexp runs` lists the runs.")  # Default, first, second


def test_a_prefix_shorter_than_four_characters_is_not_an_id(store):
    with pytest.raises(RunNotFound, match="an id prefix needs at least 4 characters"):
        resolve_run(store["ids"]["solo"][0][:3], store["uri"])


def test_a_deleted_run_is_not_found_by_name_or_prefix(store):
    gone = store["ids"]["gone"][0]
    for ref in ("gone", gone[:8]):
        with pytest.raises(RunNotFound):
            resolve_run(ref, store["uri"])


@pytest.mark.parametrize("ref", ["", "  ", "a\tb", "a'b\"c", None])
def test_a_malformed_name_is_one_sentence(store, ref):
    with pytest.raises(OcrexpError, match="is not a run id, id prefix or run name"):
        resolve_run(ref, store["uri"])


def test_find_run_can_be_limited_to_experiments(store):
    import mlflow

    client = mlflow.MlflowClient(store["uri"])
    first = client.get_experiment_by_name("first").experiment_id
    assert find_run(client, "twin", store["uri"], [first]).info.run_id == store["ids"]["twin"][0]
    with pytest.raises(RunNotFound, match=r"\(the experiment searched\)"):
        find_run(client, "it's", store["uri"], [first])


def test_runs_uris_get_the_full_id_and_other_uris_are_left_alone(store):
    solo = store["ids"]["solo"][0]
    assert resolve_model_uri(f"runs:/{solo[:6]}/model", store["uri"]) == f"runs:/{solo}/model"
    assert resolve_model_uri("runs:/solo/reader/MLmodel", store["uri"]) == f"runs:/{solo}/reader/MLmodel"
    for uri in ("models:/digits/3", "models:/digits@champion", "/tmp/model.keras", "model.keras"):
        assert resolve_model_uri(uri, store["uri"]) == uri
    for bad in ("runs:/", "runs://model", "runs:/solo"):
        with pytest.raises(OcrexpError, match="is incomplete"):
            resolve_model_uri(bad, store["uri"])


def test_a_missing_store_is_refused_and_not_created(tmp_path):
    db = tmp_path / "none" / "mlflow.db"
    with pytest.raises(OcrexpError, match=f"there is no MLflow store at {db} yet"):
        resolve_run("solo", f"sqlite:///{db}")
    assert not db.parent.exists()


def test_a_file_that_is_not_a_database_is_refused_and_left_as_it_was(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a database\n")
    with pytest.raises(OcrexpError, match=r"notes.txt is not an MLflow store \(file is not a database\)"):
        check_store(f"sqlite:///{path}")
    assert path.read_text() == "not a database\n"


def test_a_database_that_is_not_mlflows_is_refused_without_creating_tables(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE notes (text TEXT)")
    with pytest.raises(OcrexpError, match="is a SQLite database but not an MLflow store"):
        check_store(f"sqlite:///{path}")
    with sqlite3.connect(path) as con:
        assert [row[0] for row in con.execute("SELECT name FROM sqlite_master")] == ["notes"]


def test_a_tracking_server_that_does_not_answer_is_one_sentence():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(OcrexpError, match=f"the MLflow tracking server http://127.0.0.1:{port} does not answer"):
        check_store(f"http://127.0.0.1:{port}")


def test_every_command_that_takes_a_run_resolves_it_here():
    """The commands and loaders share this resolver; none keeps a lookup of its own."""
    src = Path(__file__).resolve().parents[1] / "src" / "ocrexp"
    users = {"commands/reproduce.py": "resolve_run", "commands/resume.py": "resolve_run",
             "commands/export.py": "resolve_model_uri", "commands/runs.py": "find_run",
             "models/io.py": "resolve_model_uri", "evaluate.py": "resolve_model_uri", "train.py": "resolve_model_uri"}
    for module, name in users.items():
        assert name in (src / module).read_text(), f"{module} does not use tracking.refs.{name}"
    for path in src.rglob("*.py"):
        text = path.read_text()
        assert "attributes.run_id LIKE" not in text or path.name == "refs.py", f"{path} searches run ids itself"
