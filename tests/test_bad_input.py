"""Every command, given a user's mistake, answers in one line and writes nothing.

One table of bad inputs for every ``ocrexp`` subcommand and both Hydra entry points: unknown,
ambiguous and malformed runs and model URIs, missing, empty and unreadable files and folders, an
empty store, a store that is not MLflow's, an unreachable tracking server, unknown flags and bad
``--filter`` expressions. Each case runs the installed command and asserts its exit status (2, or
the documented one), exactly one ``error:`` line on stderr that names the problem and the fix, no
traceback, and an MLflow store left as it was. The README's "When things go wrong" shows the same
table.
"""

from __future__ import annotations

import shutil
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.project import Project

pytestmark = pytest.mark.slow  # ~60 commands, each importing MLflow or TensorFlow

PREFIX = "abcdef"  # two runs' ids start with it (set in the database, as chance would after ~300 runs)


@dataclass(frozen=True)
class Case:
    argv: tuple[str, ...]
    expect: str  # a piece of the error line, with {placeholders}
    status: int = 2


CASES = {
    # -- the command line itself
    "no command": Case(("ocrexp",), "the following arguments are required: COMMAND"),
    "unknown command": Case(("ocrexp", "nosuch"), "invalid choice: 'nosuch'"),
    "unknown flag": Case(("ocrexp", "runs", "--bogus"), "unrecognized arguments: --bogus"),
    "bad number": Case(("ocrexp", "runs", "--limit", "x"), "argument --limit: invalid value: 'x'"),
    "train: unknown flag": Case(("ocrexp-train", "--bogus"), "ocrexp-train: unrecognized arguments: --bogus"),
    "train: unknown key": Case(("ocrexp-train", "no_such_key=1"), "no_such_key is not a setting"),
    "train: unknown option": Case(("ocrexp-train", "dataset=nosuch"), "dataset=nosuch is not a known dataset"),
    "eval: unknown flag": Case(("ocrexp-eval", "--bogus"), "ocrexp-eval: unrecognized arguments: --bogus"),
    "eval: no model": Case(("ocrexp-eval",), "model_uri"),
    # -- naming a run
    "reproduce: unknown run": Case(("ocrexp", "reproduce", "0000dead"),
                                   "no run has the id, id prefix or name '0000dead' in {store}"),
    "reproduce: ambiguous name": Case(("ocrexp", "reproduce", "twin"), "run 'twin' is ambiguous, the name of 2 runs"),
    "reproduce: ambiguous prefix": Case(("ocrexp", "reproduce", PREFIX),
                                        f"run '{PREFIX}' is ambiguous, the id prefix or name of 2 runs"),
    "reproduce: short prefix": Case(("ocrexp", "reproduce", "abc"), "an id prefix needs at least 4 characters"),
    "reproduce: malformed": Case(("ocrexp", "reproduce", "a\tb"), "is not a run id, id prefix or run name"),
    "resume: unknown run": Case(("ocrexp", "resume", "nosuch"), "no run has the id, id prefix or name 'nosuch'"),
    "resume: finished run": Case(("ocrexp", "resume", "solo"), "has no checkpoint to resume (it finished)"),
    "export: unknown run": Case(("ocrexp", "export", "0000dead", "{tmp}/m.keras"), "no run has the id"),
    "export: bad suffix": Case(("ocrexp", "export", "solo", "{tmp}/m.txt"), "must end in .keras"),
    "export: unregistered": Case(("ocrexp", "export", "models:/nosuch/1", "{tmp}/m.keras"),
                                 "no registered model is named 'nosuch'"),
    "diff: ambiguous": Case(("ocrexp", "runs", "--diff", "twin", "solo"), "run 'twin' is ambiguous"),
    "diff: unknown": Case(("ocrexp", "runs", "--diff", "solo", "0000dead"), "no run has the id"),
    "ensemble: unknown run": Case(("ocrexp", "ensemble", "0000dead", "solo"), "no run has the id"),
    "ensemble: one model": Case(("ocrexp", "ensemble", "solo"), "an ensemble needs at least two models"),
    "ensemble: ambiguous run": Case(("ocrexp", "ensemble", "twin", "solo"), "run 'twin' is ambiguous"),
    "predict: unknown run": Case(("ocrexp", "predict", "--model", "runs:/0000dead/model", "{image}"),
                                 "no run has the id"),
    "predict: ambiguous run": Case(("ocrexp", "predict", "--model", "runs:/twin/model", "{image}"),
                                   "run 'twin' is ambiguous"),
    "predict: incomplete URI": Case(("ocrexp", "predict", "--model", "runs:/", "{image}"), "is incomplete"),
    "eval: unknown run": Case(("ocrexp-eval", "model_uri=runs:/0000dead/model"), "no run has the id"),
    "eval: ambiguous run": Case(("ocrexp-eval", "model_uri=runs:/twin/model"), "run 'twin' is ambiguous"),
    "train: unknown init_from": Case(("ocrexp-train", "model.init_from=runs:/0000dead/model", "debug=fast"),
                                     "no run has the id"),
    # -- files and folders
    "predict: missing model file": Case(("ocrexp", "predict", "--model", "{tmp}/none.keras", "{image}"),
                                        "is neither an existing file nor an MLflow URI"),
    "predict: empty model file": Case(("ocrexp", "predict", "--model", "{empty_keras}", "{image}"),
                                      "could not be loaded as a Keras model"),
    "predict: missing image": Case(("ocrexp", "predict", "--model", "{model}", "{tmp}/none.png"),
                                   "none.png", status=3),
    "predict: empty folder": Case(("ocrexp", "predict", "--model", "{model}", "{empty_dir}"),
                                  "holds no image files", status=3),
    "predict: not an image": Case(("ocrexp", "predict", "--model", "{model}", "{text_png}"),
                                  "text.png", status=3),
    "eval: missing model file": Case(("ocrexp-eval", "model_uri={tmp}/none.keras"),
                                     "is neither an existing file nor an MLflow URI"),
    "data: unknown dataset": Case(("ocrexp", "data", "fetch", "nosuch"), "invalid choice: 'nosuch'"),
    # -- stores
    "runs: no store yet": Case(("ocrexp", "runs", "--tracking-uri", "sqlite:///{tmp}/none.db"),
                               "there is no MLflow store at {tmp}/none.db yet"),
    "runs: not a database": Case(("ocrexp", "runs", "--tracking-uri", "sqlite:///{text_png}"),
                                 "is not an MLflow store (file is not a database)"),
    "runs: not MLflow's": Case(("ocrexp", "runs", "--tracking-uri", "sqlite:///{other_db}"),
                               "is a SQLite database but not an MLflow store"),
    "runs: empty store": Case(("ocrexp", "runs", "--tracking-uri", "{empty_store}"),
                              "has no experiment named 'ocrexp'"),
    "runs: server down": Case(("ocrexp", "runs", "--tracking-uri", "http://127.0.0.1:{port}"), "does not answer"),
    "runs: unknown experiment": Case(("ocrexp", "runs", "--experiment", "nosuch"), "has no experiment named 'nosuch'"),
    "runs: bad filter": Case(("ocrexp", "runs", "--filter", "seed ==="), "is not valid MLflow search syntax"),
    "runs: bad sort": Case(("ocrexp", "runs", "--sort", "a b c"), "is not KEY [ASC|DESC]"),
    "reproduce: server down": Case(("ocrexp", "reproduce", "solo", "--tracking-uri", "http://127.0.0.1:{port}"),
                                   "does not answer"),
    "reproduce: not a database": Case(("ocrexp", "reproduce", "solo", "--tracking-uri", "sqlite:///{text_png}"),
                                      "is not an MLflow store"),
    "ui: not a database": Case(("ocrexp", "ui", "--tracking-uri", "sqlite:///{text_png}", "--port", "{port}"),
                               "is not an MLflow store"),
    "eval: server down": Case(("ocrexp-eval", "model_uri=runs:/solo/model", "tracking.uri=http://127.0.0.1:{port}"),
                              "does not answer"),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory, trained) -> dict[str, str]:
    """A project whose store holds the fixture run and runs named to be confused, plus bad files."""
    import mlflow

    source, run_id = trained
    project = Project(tmp_path_factory.mktemp("bad-input"))
    shutil.copytree(source.root / "mlruns", project.root / "mlruns")  # artifacts stay where they were logged
    client = mlflow.MlflowClient(project.tracking_uri)
    experiment = client.get_experiment_by_name("ocrexp").experiment_id
    client.update_run(run_id, name="solo")
    made = [client.create_run(experiment, run_name=name).info.run_id for name in ("twin", "twin", "a", "b")]
    for made_id in made:
        client.set_terminated(made_id)
    db = project.root / "mlruns" / "mlflow.db"
    with sqlite3.connect(db) as con:  # ids that share a prefix, as two runs' would among a few hundred
        con.execute("PRAGMA foreign_keys = OFF")
        for old, new in zip(made[2:], (PREFIX + "0" * 26, PREFIX + "1" * 26)):
            for table, column in (("runs", "run_uuid"), ("tags", "run_uuid"), ("params", "run_uuid"),
                                  ("metrics", "run_uuid"), ("latest_metrics", "run_uuid")):
                con.execute(f"UPDATE {table} SET {column} = ? WHERE {column} = ?", (new, old))
    tmp = tmp_path_factory.mktemp("bad-files")
    (tmp / "empty").mkdir()
    (tmp / "empty.keras").write_bytes(b"")
    (tmp / "text.png").write_text("not an image\n")
    with sqlite3.connect(tmp / "other.db") as con:
        con.execute("CREATE TABLE notes (text TEXT)")
    empty = Project(tmp_path_factory.mktemp("empty-store"))
    from ocrexp.tracking.store import ensure_store

    ensure_store(empty.tracking_uri)  # tables, no experiment
    image = next((source.root).rglob("*.png"), None) or _digit_png(tmp)
    model = next((source.root / "mlruns").rglob("model.keras"))  # the fixture run's only model file
    return {"root": str(project.root), "store": project.tracking_uri, "tmp": str(tmp), "image": str(image),
            "model": str(model), "empty_keras": str(tmp / "empty.keras"),
            "empty_dir": str(tmp / "empty"), "text_png": str(tmp / "text.png"),
            "other_db": str(tmp / "other.db"), "empty_store": empty.tracking_uri, "port": str(_closed_port())}


def _digit_png(folder: Path) -> Path:
    from PIL import Image

    path = folder / "digit.png"
    Image.new("L", (28, 28), 0).save(path)
    return path


def _closed_port() -> int:
    with socket.socket() as sock:  # a port nothing listens on once this socket closes
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in (root / "mlruns").rglob("*") if p.is_file() and not p.name.endswith(".lock")}


@pytest.mark.parametrize("name", list(CASES))
def test_a_mistake_is_one_line_and_writes_nothing(world, name):
    case = CASES[name]
    project = Project(Path(world["root"]))
    argv = [part.format(**world) for part in case.argv]
    before = _snapshot(project.root)
    proc = project.run(*argv, check=False, timeout=120)
    err = proc.stderr.strip()
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr[-3000:]
    if case.status == 3:  # ocrexp predict: the images it could not read, one line each, on stderr
        assert proc.returncode == 3 and len(lines) == 1 and "error:" in lines[0], proc.stderr
    else:
        assert proc.returncode == case.status, proc.stderr
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert case.expect.format(**world) in lines[0], lines[0]
    assert _snapshot(project.root) == before, "the command wrote to the store"


def test_the_readme_shows_the_table():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## When things go wrong", 1)[1].split("\n## ", 1)[0]
    for case in CASES.values():
        command = " ".join(case.argv[:2]) if case.argv[0] == "ocrexp" else case.argv[0]
        assert f"`{command}" in section, f"README's When things go wrong has no row for {command}"
