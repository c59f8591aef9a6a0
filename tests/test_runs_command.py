"""``ocrexp runs`` on a real MLflow store filled through MlflowClient (no training)."""

from __future__ import annotations

import csv
import io
import json
import statistics
import subprocess
import sys
from dataclasses import dataclass

import pytest

from ocrexp.sweep_protocol import ROLE_TAG, STUDY_ROLE
from ocrexp.cli import main
from tests.project import Project

START = 1_750_000_000_000  # ms; one minute between runs, in the order below
TEST_ACCURACY = {
    ("cnn-mnist", 1): 0.9912, ("cnn-mnist", 2): 0.9921, ("cnn-mnist", 3): 0.9905,
    ("cnn_bn-mnist", 1): 0.9930, ("cnn_bn-mnist", 2): 0.9925,
    ("vgg16-mnist", 1): 0.9801,
}
DROPOUT = {"cnn-mnist": "0.5", "cnn_bn-mnist": "0.3", "vgg16-mnist": "0.5"}
SWEEP = {"best_value": 0.985, "trials_complete": 18, "trials_pruned": 2, "trials_failed": 1}


@dataclass(frozen=True)
class Store:
    project: Project
    ids: dict[tuple[str, int], str]  # (run_name, seed) -> run id
    sweep_id: str

    @property
    def uri(self) -> str:
        return self.project.tracking_uri


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    """Six training runs (three names, seeds 1-3), a sweep parent, and one run in another experiment."""
    project = Project(tmp_path_factory.mktemp("runs"))
    client, experiment = project.experiment()
    ids = {}
    for i, ((name, seed), accuracy) in enumerate(TEST_ACCURACY.items()):
        run_id = client.create_run(experiment, run_name=name, start_time=START + i * 60_000).info.run_id
        for key, value in {"seed": seed, "model.dropout": DROPOUT[name], "optimizer.lr": 0.001}.items():
            client.log_param(run_id, key, str(value))
        for key, value in {"test_accuracy": accuracy, "val_accuracy": accuracy - 0.002,
                           "train_time_s": 40.0 + i, "test_loss": 0.03 + i / 100}.items():
            client.log_metric(run_id, key, value)
        client.set_terminated(run_id, "FINISHED")
        ids[name, seed] = run_id
    sweep_id = client.create_run(experiment, run_name="optuna-cnn_optuna-1a2b3c", tags={ROLE_TAG: STUDY_ROLE},
                                 start_time=START + len(ids) * 60_000).info.run_id
    for key, value in SWEEP.items():
        client.log_metric(sweep_id, key, value)
    other = project.experiment("other")[1]
    client.create_run(other, run_name="elsewhere", start_time=START)
    return Store(project, ids, sweep_id)


def ocrexp_runs(store: Store, *argv: str) -> int:
    """``ocrexp runs ... --tracking-uri <store>`` in-process; the exit status however main ends."""
    try:
        return main(["runs", *argv, "--tracking-uri", store.uri])
    except SystemExit as exc:
        return exc.code


def table(text: str) -> list[list[str]]:
    """The plain-text table's rows (header first) split on its column gaps."""
    return [line.split() for line in text.strip().splitlines()]


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_table_lists_newest_runs_first_with_short_ids_state_and_default_metrics(store, capsys):
    assert ocrexp_runs(store) == 0
    header, sweep, *rows = table(capsys.readouterr().out)
    assert header == ["run_id", "run_name", "state", "start_time", "test_accuracy", "val_accuracy",
                      "train_time_s", "sweep"]
    assert sweep[:2] == [store.sweep_id[:8], "optuna-cnn_optuna-1a2b3c"]
    assert [r[0] for r in rows] == [run_id[:8] for run_id in reversed(store.ids.values())]
    newest = rows[0]  # vgg16-mnist, seed 1, the sixth run
    assert newest[1:3] == ["vgg16-mnist", "COMPLETE"] and newest[5:8] == ["0.9801", "0.9781", "45"]


def test_sweep_parent_shows_best_value_and_trial_counts(store, capsys):
    assert ocrexp_runs(store, "--limit", "1") == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert line.startswith(store.sweep_id[:8])
    assert line.endswith("best 0.985, 18 complete, 2 pruned, 1 failed")


def test_sweep_column_appears_only_when_a_sweep_parent_is_listed(store, capsys):
    assert ocrexp_runs(store, "--filter", "attributes.run_name = 'cnn-mnist'", "--csv") == 0
    assert "sweep" not in csv_rows(capsys.readouterr().out)[0]


def test_sort_by_a_bare_metric_name_descending(store, capsys):
    assert ocrexp_runs(store, "--sort", "test_accuracy DESC", "--filter", "metrics.test_accuracy > 0",
                       "--params", "seed") == 0
    rows = table(capsys.readouterr().out)[1:]
    expected = sorted(TEST_ACCURACY, key=TEST_ACCURACY.get, reverse=True)
    assert [r[0] for r in rows] == [store.ids[key][:8] for key in expected]
    assert rows[0][-1] == "1"  # the seed column: cnn_bn-mnist seed 1 is the best run


def test_sort_by_a_param_named_in_params_and_by_a_full_mlflow_clause(store, capsys):
    assert ocrexp_runs(store, "--sort", "model.dropout", "--params", "model.dropout", "--csv",
                       "--filter", "params.seed = '1'") == 0
    assert [r["model.dropout"] for r in csv_rows(capsys.readouterr().out)] == ["0.3", "0.5", "0.5"]
    assert ocrexp_runs(store, "--sort", "metrics.train_time_s ASC", "--limit", "2", "--csv") == 0
    assert [r["run_id"] for r in csv_rows(capsys.readouterr().out)] == list(store.ids.values())[:2]


def test_filter_and_limit_choose_the_rows(store, capsys):
    assert ocrexp_runs(store, "--filter", "params.seed = '2'", "--csv") == 0
    rows = csv_rows(capsys.readouterr().out)
    assert {r["run_id"] for r in rows} == {store.ids["cnn-mnist", 2], store.ids["cnn_bn-mnist", 2]}
    assert ocrexp_runs(store, "--limit", "3", "--csv") == 0
    assert len(csv_rows(capsys.readouterr().out)) == 3
    assert ocrexp_runs(store, "--filter", "params.seed = '9'") == 0
    assert capsys.readouterr().out.strip() == "no runs in experiment 'ocrexp' match --filter"


def test_group_by_run_name_gives_mean_and_sample_std_over_seeds(store, capsys):
    assert ocrexp_runs(store, "--group-by", "run_name", "--metrics", "test_accuracy", "--csv") == 0
    groups = {r["run_name"]: r for r in csv_rows(capsys.readouterr().out)}
    assert list(groups["cnn-mnist"]) == ["run_name", "n", "test_accuracy_mean", "test_accuracy_std"]
    for name in ("cnn-mnist", "cnn_bn-mnist"):
        values = [acc for (run_name, _), acc in TEST_ACCURACY.items() if run_name == name]
        assert int(groups[name]["n"]) == len(values)
        assert float(groups[name]["test_accuracy_mean"]) == pytest.approx(statistics.mean(values), abs=1e-12)
        assert float(groups[name]["test_accuracy_std"]) == pytest.approx(statistics.stdev(values), abs=1e-12)
    assert groups["vgg16-mnist"]["n"] == "1" and groups["vgg16-mnist"]["test_accuracy_std"] == ""
    assert groups["optuna-cnn_optuna-1a2b3c"]["test_accuracy_mean"] == ""


def test_group_by_prints_an_aligned_table_and_lists_the_params_values(store, capsys):
    assert ocrexp_runs(store, "--group-by", "run_name", "--metrics", "test_accuracy", "--params", "seed",
                       "--filter", "params.seed != ''") == 0
    header, *rows = table(capsys.readouterr().out)
    assert header == ["run_name", "n", "test_accuracy_mean", "test_accuracy_std", "seed"]
    cnn = next(r for r in rows if r[0] == "cnn-mnist")
    values = [0.9912, 0.9921, 0.9905]
    assert cnn == ["cnn-mnist", "3", f"{statistics.mean(values):.4f}", f"{statistics.stdev(values):.7f}", "1,2,3"]


def test_group_by_a_param_sorted_by_a_metric_mean_and_limited_to_groups(store, capsys):
    assert ocrexp_runs(store, "--group-by", "model.dropout", "--metrics", "test_accuracy",
                       "--sort", "test_accuracy DESC", "--limit", "1", "--json") == 0
    (best,) = json.loads(capsys.readouterr().out)
    assert best["model.dropout"] == "0.3" and best["n"] == 2
    assert best["test_accuracy_mean"] == pytest.approx(statistics.mean([0.9930, 0.9925]))


def test_json_has_the_table_columns_and_mlflow_status_with_full_ids_and_nulls_for_missing_values(store, capsys):
    assert ocrexp_runs(store, "--json", "--params", "seed") == 0
    rows = json.loads(capsys.readouterr().out)
    assert list(rows[0]) == ["run_id", "run_name", "state", "status", "start_time", "test_accuracy", "val_accuracy",
                             "train_time_s", "seed", "sweep"]
    sweep, newest = rows[0], rows[1]
    assert sweep["run_id"] == store.sweep_id and sweep["test_accuracy"] is None and sweep["seed"] is None
    assert newest["run_id"] == store.ids["vgg16-mnist", 1] and newest["test_accuracy"] == 0.9801
    assert newest["seed"] == "1" and newest["sweep"] is None and newest["start_time"].startswith("2025-06-15T")
    assert (newest["state"], newest["status"]) == ("COMPLETE", "FINISHED")


def test_diff_shows_the_params_and_metrics_that_differ_side_by_side(store, capsys):
    a, b = store.ids["cnn-mnist", 1], store.ids["cnn_bn-mnist", 2]
    assert ocrexp_runs(store, "--diff", a, b[:8]) == 0  # an id prefix from the table works too
    out = capsys.readouterr().out
    rows = table(out.split("\n\n")[1])
    assert rows[0] == ["kind", "key", a[:8], b[:8]]
    assert ["param", "model.dropout", "0.5", "0.3"] in rows and ["param", "seed", "1", "2"] in rows
    assert ["metric", "test_accuracy", "0.9912", "0.9925"] in rows
    assert not any(r[1] == "optimizer.lr" for r in rows)
    assert out.strip().endswith("params: 2 of 3 differ; metrics: 4 of 4 differ.")


def test_diff_takes_unique_run_names_from_any_experiment(store, capsys):
    assert ocrexp_runs(store, "--diff", "vgg16-mnist", "elsewhere") == 0  # "elsewhere" is in experiment other
    a, b = capsys.readouterr().out.splitlines()[:2]
    assert a.startswith(f"a: {store.ids['vgg16-mnist', 1][:8]}  vgg16-mnist  COMPLETE  ")
    assert b.split()[2:4] == ["elsewhere", "RUNNING"]


def test_group_by_state_counts_runs_by_trial_state(store, capsys):
    assert ocrexp_runs(store, "--group-by", "state", "--metrics", "test_accuracy", "--csv") == 0
    assert {r["state"]: r["n"] for r in csv_rows(capsys.readouterr().out)} == {"COMPLETE": "6", "RUNNING": "1"}


def test_diff_says_so_when_two_runs_are_the_same(store, capsys):
    run_id = store.ids["cnn-mnist", 1]
    assert ocrexp_runs(store, "--diff", run_id, run_id) == 0
    assert capsys.readouterr().out.strip() == (
        f"runs {run_id[:8]} and {run_id[:8]} have the same params (3) and metrics (4).")


def test_experiment_option_reads_another_experiment(store, capsys):
    assert ocrexp_runs(store, "--experiment", "other", "--csv") == 0
    assert [r["run_name"] for r in csv_rows(capsys.readouterr().out)] == ["elsewhere"]


def test_default_store_is_the_projects(store, capsys, monkeypatch):
    monkeypatch.setenv("OCREXP_ROOT", str(store.project.root))
    assert main(["runs", "--limit", "1", "--csv"]) == 0
    assert csv_rows(capsys.readouterr().out)[0]["run_id"] == store.sweep_id


@pytest.mark.parametrize("argv, message", [
    (["--experiment", "nope"], "has no experiment named 'nope'; choose one of Default, ocrexp, other"),
    (["--filter", "params.seed = 1"], "--filter 'params.seed = 1' is not valid MLflow search syntax"),
    (["--filter", "params.seed = '1'", "--sort", "metrics.test_accuracy DOWN"],
     "--sort 'metrics.test_accuracy DOWN' is not a valid MLflow order"),
    (["--sort", "test_accuracy DOWN"], "--sort 'test_accuracy DOWN' is not KEY [ASC|DESC]"),
    (["--diff", "0123abcd", "4567"], "no run has the id, id prefix or name '0123abcd' in sqlite:///"),
    (["--diff", "not-an-id", "4567"], "no run has the id, id prefix or name 'not-an-id'"),
    (["--diff", "cnn-mnist", "vgg16-mnist"], "run 'cnn-mnist' is ambiguous, the name of 3 runs"),
    (["--diff", "cnn-mnist", "vgg16-mnist", "--group-by", "seed"], "--diff and --group-by do different things"),
    (["--group-by", "no_such_key"], "--group-by 'no_such_key': no matching run has a param or tag of that name"),
    (["--group-by", "metrics.test_accuracy"], "runs are grouped by a param or tag"),
])
def test_mistakes_end_with_one_sentence_and_exit_status_2(store, capsys, argv, message):
    assert ocrexp_runs(store, *argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_missing_store_is_reported_not_created(tmp_path, capsys):
    db = tmp_path / "mlruns" / "mlflow.db"
    try:
        status = main(["runs", "--tracking-uri", f"sqlite:///{db}"])
    except SystemExit as exc:
        status = exc.code
    assert status == 2 and f"there is no MLflow store at {db} yet" in capsys.readouterr().err
    assert not db.exists()


def test_help_stays_instant_without_mlflow_or_pandas():
    code = ("import sys; from ocrexp.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('mlflow', 'pandas', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
