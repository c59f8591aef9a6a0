"""Tab completion: the installed ``ocrexp`` answers a shell's TAB as argcomplete's bash script asks it
(run ids from a real MLflow store), and ``ocrexp-train`` answers through Hydra's own completion."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

import pytest

from tests.project import BIN, Project

BASH_WORDBREAKS = " \t\n\"'><=;|&(:"  # bash's default COMP_WORDBREAKS


@dataclass(frozen=True)
class Store:
    project: Project
    ids: dict[str, str]  # run name -> run id, for the runs whose name is unique
    shared: list[str]  # ids of the two runs named "cnn-mnist"
    deleted: str


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    """Four active runs (two share a name) and one deleted run, in the project's default store."""
    project = Project(tmp_path_factory.mktemp("completion"))
    client, experiment = project.experiment()
    ids = {name: client.create_run(experiment, run_name=name).info.run_id for name in ("vgg16-mnist", "cnn_bn-mnist")}
    shared = [client.create_run(experiment, run_name="cnn-mnist").info.run_id for _ in range(2)]
    deleted = client.create_run(experiment, run_name="discarded").info.run_id
    client.delete_run(deleted)
    return Store(project, ids, shared, deleted)


def complete(project: Project, line: str, **env: str) -> list[str]:
    """What ``ocrexp`` offers for ``line`` with the cursor at its end, asked as argcomplete's bash
    script asks (``eval "$(register-python-argcomplete ocrexp)"``), each offer without bash's space."""
    out = project.root / "completions.txt"
    out.unlink(missing_ok=True)
    proc = subprocess.run(
        [str(BIN / "ocrexp")], cwd=project.root, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        env=project.env(_ARGCOMPLETE="1", _ARGCOMPLETE_SHELL="bash", _ARGCOMPLETE_IFS="\n",
                        _ARGCOMPLETE_COMP_WORDBREAKS=BASH_WORDBREAKS, _ARGCOMPLETE_STDOUT_FILENAME=str(out),
                        COMP_LINE=line, COMP_POINT=str(len(line)), **env))
    assert proc.returncode == 0, proc.stderr
    return [offer.rstrip(" ") for offer in out.read_text().split("\n") if offer]


@pytest.mark.slow
def test_a_run_id_prefix_completes_to_the_short_id_ocrexp_runs_shows(store):
    run_id = store.ids["vgg16-mnist"]
    for command in ("reproduce", "resume", "export", "runs --diff"):
        assert run_id[:8] in complete(store.project, f"ocrexp {command} {run_id[:3]}"), command


def test_a_prefix_longer_than_a_short_id_completes_to_the_full_id(store):
    run_id = store.ids["cnn_bn-mnist"]
    assert complete(store.project, f"ocrexp reproduce {run_id[:10]}") == [run_id]


def test_unique_run_names_complete_and_shared_or_deleted_ones_do_not(store):
    assert complete(store.project, "ocrexp reproduce vgg") == ["vgg16-mnist"]
    assert complete(store.project, "ocrexp reproduce cnn") == ["cnn_bn-mnist"]
    assert complete(store.project, "ocrexp reproduce disc") == []
    assert store.deleted[:8] not in complete(store.project, "ocrexp reproduce ")


def test_an_empty_word_offers_every_active_run(store):
    offered = complete(store.project, "ocrexp resume ")
    assert {run_id[:8] for run_id in [*store.ids.values(), *store.shared]} <= set(offered)


def test_subcommands_and_options_complete(tmp_path):
    project = Project(tmp_path)
    assert complete(project, "ocrexp re") == ["reproduce", "resume"]
    assert "--tracking-uri" in complete(project, "ocrexp reproduce --tr")


def test_predict_model_completes_a_runs_uri_as_bash_shows_it_after_the_colon(store):
    run_id = store.ids["vgg16-mnist"]
    offered = complete(store.project, f"ocrexp predict --model runs:/{run_id[:3]}")
    assert f"/{run_id[:8]}/model" in offered  # bash splits the word at ':' and keeps "runs:" in place
    assert "runs:/" in complete(store.project, "ocrexp predict --model ")


def test_a_tracking_uri_typed_before_the_cursor_is_the_store_read(store, tmp_path):
    run_id = store.ids["vgg16-mnist"]
    elsewhere = Project(tmp_path)  # its default store does not exist
    line = f"ocrexp reproduce --tracking-uri {store.project.tracking_uri} {run_id[:4]}"
    assert complete(elsewhere, line) == [run_id[:8]]


def test_a_missing_store_offers_nothing_and_creates_nothing(tmp_path):
    project = Project(tmp_path)
    assert complete(project, "ocrexp reproduce a") == []
    assert complete(project, "ocrexp reproduce --tracking-uri sqlite:///absent/mlflow.db a") == []
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "absent").exists()


def test_a_file_that_is_not_a_store_offers_nothing(tmp_path):
    (tmp_path / "notes.db").write_text("not a database")
    line = f"ocrexp reproduce --tracking-uri sqlite:///{tmp_path / 'notes.db'} a"
    assert complete(Project(tmp_path), line) == []


def test_completing_a_run_imports_neither_mlflow_nor_tensorflow(store):
    run_id = store.ids["vgg16-mnist"]
    out, line = store.project.root / "completions.txt", f"ocrexp reproduce {run_id[:3]}"
    proc = subprocess.run(
        [str(BIN / "ocrexp")], cwd=store.project.root, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=60, env=store.project.env(_ARGCOMPLETE="1", _ARGCOMPLETE_STDOUT_FILENAME=str(out),
                                          COMP_LINE=line, COMP_POINT=str(len(line)),
                                          PYTHONPROFILEIMPORTTIME="1"))
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in proc.stderr.splitlines()}
    assert run_id[:8] in out.read_text() and "argcomplete" in imported
    assert not imported & {"mlflow", "tensorflow", "keras", "optuna"}


def test_the_registered_bash_script_completes_a_run_id(store):
    """``eval "$(register-python-argcomplete ocrexp)"`` in bash, then the TAB bash would send."""
    run_id = store.ids["vgg16-mnist"]
    script = subprocess.run([str(BIN / "register-python-argcomplete"), "ocrexp"], capture_output=True, text=True,
                            check=True).stdout
    assert "complete" in script and "ocrexp" in script
    tab = (f'{script}\nCOMP_LINE="ocrexp reproduce {run_id[:3]}"; COMP_POINT=${{#COMP_LINE}}; '
           f"COMP_WORDS=(ocrexp reproduce {run_id[:3]}); COMP_CWORD=2\n"
           '_python_argcomplete ocrexp; printf "%s\\n" "${COMPREPLY[@]}"\n')
    proc = subprocess.run(["bash", "-c", tab], cwd=store.project.root, env=store.project.env(),
                          capture_output=True, text=True, timeout=60)
    assert run_id[:8] in proc.stdout.split(), proc.stderr


def test_hydra_completion_of_ocrexp_train_offers_config_groups_and_experiments(tmp_path):
    def query(line: str) -> list[str]:
        proc = Project(tmp_path).run("ocrexp-train", "-sc", "query=bash", timeout=120,
                                     COMP_LINE=line, COMP_POINT=str(len(line)))
        return proc.stdout.split()

    assert {"trainer.", "experiment=", "model="} <= set(query("ocrexp-train "))
    assert "experiment=tutorial" in query("ocrexp-train experiment=")
    install = subprocess.run([str(BIN / "ocrexp-train"), "-sc", "install=bash"], capture_output=True, text=True,
                             check=True).stdout
    assert "-F hydra_bash_completion ocrexp-train" in install
