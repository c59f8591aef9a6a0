"""``ocrexp runs`` on Optuna sweeps: the ``state`` and ``sweep`` columns and ``--sweep REF``, on a real
MLflow store filled as the sweeper and its training jobs fill it (no training); then one real pruned
sweep, end to end."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from ocrexp.cli import main
from ocrexp.sweep_protocol import NUMBER_TAG, PARENT_TAG, ROLE_TAG, STATE_TAG, STUDY_ROLE, STUDY_TAG
from tests.project import Project
from tests.test_runs_command import csv_rows, table

START = 1_750_000_000_000  # ms; one minute between runs, in the order they are created
MAXIMIZE, MINIMIZE, TWO_OBJECTIVES = "cnn_optuna-aaaa1111", "loss_search-bbbb2222", "pareto-cccc3333"


@dataclass(frozen=True)
class Trial:
    number: int
    status: str  # MLflow's, as the job ended its run
    tag: str | None  # the trial's state as the sweeper tagged it (None: not yet)
    value: float | None  # the study's value of a COMPLETE trial
    epochs: int  # the epochs its run logged
    lr: float


# The maximize study, in the order the trials started. Trial 5 was interrupted: Optuna failed it and
# its job ended its run KILLED. Trial 6 still trains.
TRIALS = [
    Trial(0, "FINISHED", "COMPLETE", 0.95, 3, 1e-3),
    Trial(1, "FINISHED", "PRUNED", None, 1, 1e-5),
    Trial(2, "FINISHED", "COMPLETE", 0.97, 3, 3e-3),
    Trial(3, "FINISHED", "PRUNED", None, 2, 1e-4),
    Trial(4, "FAILED", "FAIL", None, 1, 1e-2),
    Trial(5, "KILLED", "FAIL", None, 2, 2e-3),
    Trial(6, "RUNNING", None, None, 1, 5e-4),
]
STATES = ["COMPLETE", "PRUNED", "COMPLETE", "PRUNED", "FAIL", "KILLED", "RUNNING"]
BEST_FIRST = [2, 0, 3, 1, 6, 4, 5]  # by value, then by the epoch a pruned trial reached; then RUNNING, FAIL, KILLED
LOSSES = {0: 0.30, 1: 0.20, 2: 0.25}  # the minimize study's values (val_loss)


@dataclass(frozen=True)
class SweepStore:
    project: Project
    parents: dict[str, str]  # study -> parent run id
    trials: dict[tuple[str, int], str]  # (study, trial number) -> run id
    plain: dict[str, str]  # run name -> run id, runs that are no trial
    lost_trial: str  # a trial whose study has no parent run

    @property
    def uri(self) -> str:
        return self.project.tracking_uri


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> SweepStore:
    """Three studies' parent and trial runs tagged as the sweeper tags them, and plain runs."""
    project = Project(tmp_path_factory.mktemp("sweeps"))
    client, experiment = project.experiment()
    clock = iter(range(START, START + 100 * 60_000, 60_000))

    def create(name: str, status: str | None, tags: dict[str, str] | None = None, **params) -> str:
        run_id = client.create_run(experiment, run_name=name, start_time=next(clock), tags=tags).info.run_id
        for key, value in params.items():
            client.log_param(run_id, key.replace("__", "."), str(value))
        if status:
            client.set_terminated(run_id, status)
        return run_id

    def parent(study: str, directions: str, metric: str, metrics: dict[str, float]) -> str:
        run_id = create(f"optuna-{study}", None, {ROLE_TAG: STUDY_ROLE, STUDY_TAG: study})
        for key, value in {"optuna.directions": directions, "optuna.metric": metric,
                           "space.optimizer.lr": "log interval [1e-05, 0.01]",
                           "space.model.dense_units": "choice of [32, 64]"}.items():
            client.log_param(run_id, key, value)
        for key, value in metrics.items():
            client.log_metric(run_id, key, value)
        return run_id

    def trial(study: str, parent_id: str | None, number: int, status: str, tag: str | None, epochs: int,
              metric: str, lr: float, final: dict[str, float]) -> str:
        tags = {STUDY_TAG: study, NUMBER_TAG: str(number), **({PARENT_TAG: parent_id} if parent_id else {})}
        run_id = create(f"trial-{number}", None, tags, optimizer__lr=lr, model__dense_units=64, seed=1)
        for epoch in range(1, epochs + 1):
            client.log_metric(run_id, "loss", 1 / epoch, step=epoch)
            client.log_metric(run_id, metric, 0.5 + epoch / 20 if metric == "val_accuracy" else 1 / epoch,
                              step=epoch)
        for key, value in final.items():
            client.log_metric(run_id, key, value)
        if tag:
            client.set_tag(run_id, STATE_TAG, tag)
        if status != "RUNNING":
            client.set_terminated(run_id, status)
        return run_id

    plain = {"cnn-mnist": create("cnn-mnist", "FINISHED", test_accuracy=0.99),
             "broken": create("broken", "FAILED"), "stopped": create("stopped", "KILLED")}
    parents, trials = {}, {}
    parents[MAXIMIZE] = parent(MAXIMIZE, "maximize", "val_accuracy",
                               {"best_value": 0.97, "trials_complete": 2, "trials_pruned": 2, "trials_failed": 2})
    for t in TRIALS:
        final = {"test_accuracy": t.value - 0.01} if t.value else {}
        trials[MAXIMIZE, t.number] = trial(MAXIMIZE, parents[MAXIMIZE], t.number, t.status, t.tag, t.epochs,
                                           "val_accuracy", t.lr, final)
        if t.value is not None:
            client.log_metric(parents[MAXIMIZE], "trial_value", t.value, step=t.number)
    parents[MINIMIZE] = parent(MINIMIZE, "minimize", "val_loss", {"best_value": 0.20, "trials_complete": 3})
    for number, loss in LOSSES.items():
        trials[MINIMIZE, number] = trial(MINIMIZE, parents[MINIMIZE], number, "FINISHED", "COMPLETE", 2,
                                         "val_loss", 1e-3 * (number + 1), {})
        client.log_metric(parents[MINIMIZE], "trial_value", loss, step=number)
    client.set_terminated(parents[MINIMIZE], "FINISHED")
    parents[TWO_OBJECTIVES] = parent(TWO_OBJECTIVES, "minimize,maximize", "val_loss,val_accuracy",
                                     {"trials_complete": 2})
    for number in (0, 1):
        trials[TWO_OBJECTIVES, number] = trial(TWO_OBJECTIVES, parents[TWO_OBJECTIVES], number, "FINISHED",
                                               "COMPLETE", 2, "val_loss", 1e-3, {})
    client.set_terminated(parents[TWO_OBJECTIVES], "FINISHED")
    lost = trial("no-parent-dddd4444", None, 0, "FINISHED", "COMPLETE", 1, "val_accuracy", 1e-3, {})
    return SweepStore(project, parents, trials, plain, lost)


def ocrexp_runs(store: SweepStore, *argv: str) -> int:
    try:
        return main(["runs", *argv, "--tracking-uri", store.uri])
    except SystemExit as exc:
        return exc.code


def test_state_column_says_each_trials_state_and_optuna_words_for_other_runs(store, capsys):
    assert ocrexp_runs(store, "--limit", "0", "--csv") == 0
    rows = {r["run_id"]: r for r in csv_rows(capsys.readouterr().out)}
    assert [rows[store.trials[MAXIMIZE, t.number]]["state"] for t in TRIALS] == STATES
    assert [rows[store.trials[MAXIMIZE, t.number]]["status"] for t in TRIALS] == [t.status for t in TRIALS]
    assert [rows[store.plain[name]]["state"] for name in ("cnn-mnist", "broken", "stopped")] == \
        ["COMPLETE", "FAIL", "KILLED"]
    assert [rows[store.parents[s]]["state"] for s in (MAXIMIZE, MINIMIZE)] == ["RUNNING", "COMPLETE"]


def test_sweep_column_names_each_trials_parent_and_sums_up_each_study(store, capsys):
    assert ocrexp_runs(store, "--limit", "0") == 0
    lines = {line[:8]: line for line in capsys.readouterr().out.splitlines()[1:]}
    parent = store.parents[MAXIMIZE]
    assert lines[parent[:8]].endswith("best 0.97, 2 complete, 2 pruned, 2 failed")
    for t in TRIALS:
        assert lines[store.trials[MAXIMIZE, t.number][:8]].endswith(f"  {parent[:8]}")
    assert lines[store.lost_trial[:8]].endswith("  no-parent-dddd4444")  # no parent run: the study's name
    assert not lines[store.plain["cnn-mnist"][:8]].endswith(parent[:8])

    assert ocrexp_runs(store, "--limit", "0", "--csv") == 0
    rows = {r["run_id"]: r for r in csv_rows(capsys.readouterr().out)}
    assert rows[store.trials[MAXIMIZE, 3]]["sweep"] == parent  # the full id, for machines
    assert rows[store.plain["cnn-mnist"]]["sweep"] == ""


def test_sweep_by_parent_id_prefix_lists_trials_best_first_with_pruned_epoch_and_best_mark(store, capsys):
    parent = store.parents[MAXIMIZE]
    assert ocrexp_runs(store, "--sweep", parent[:6]) == 0
    heading, blank, header, *rows = capsys.readouterr().out.splitlines()
    assert heading == (f"study {MAXIMIZE} (run {parent[:8]}, RUNNING): maximize val_accuracy; "
                       "best 0.97, 2 complete, 2 pruned, 2 failed")
    assert header.split() == ["run_id", "trial", "state", "value", "best", "pruned_at", "test_accuracy",
                              "val_accuracy", "train_time_s", "model.dense_units", "optimizer.lr"]
    assert [row.split()[:3] for row in rows] == [
        [store.trials[MAXIMIZE, n][:8], str(n), STATES[n]] for n in BEST_FIRST]
    best, second, pruned_late, pruned_early = (row.split() for row in rows[:4])
    assert best[3:5] == ["0.97", "*"] and second[3:5] == ["0.95", "0.94"]  # no mark: its test_accuracy follows
    assert pruned_late[3:5] == ["2", "0.60"] and pruned_early[3:5] == ["1", "0.55"]  # pruned_at, val_accuracy
    assert rows[0].index("*") == header.index("best")


def test_sweep_by_run_name_and_by_study_name_list_the_same_trials(store, capsys):
    listings = []
    for ref in (f"optuna-{MAXIMIZE}", MAXIMIZE, store.parents[MAXIMIZE]):
        assert ocrexp_runs(store, "--sweep", ref, "--csv") == 0
        listings.append([r["run_id"] for r in csv_rows(capsys.readouterr().out)])
    assert listings[0] == listings[1] == listings[2] == [store.trials[MAXIMIZE, n] for n in BEST_FIRST]


def test_a_minimize_sweep_lists_the_smallest_value_first_and_marks_it(store, capsys):
    assert ocrexp_runs(store, "--sweep", MINIMIZE, "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["trial"], r["value"], r["best"]) for r in rows] == [(1, 0.20, True), (2, 0.25, False), (0, 0.30, False)]


def test_a_sweep_with_several_objectives_keeps_trial_order_and_marks_no_best(store, capsys):
    assert ocrexp_runs(store, "--sweep", TWO_OBJECTIVES, "--csv") == 0
    rows = csv_rows(capsys.readouterr().out)
    assert [(r["trial"], r["value"], r["best"]) for r in rows] == [("0", "", "False"), ("1", "", "False")]


def test_sweep_json_and_csv_carry_the_table_fields_and_mlflow_status(store, capsys):
    assert ocrexp_runs(store, "--sweep", MAXIMIZE, "--json", "--metrics", "val_accuracy", "--params", "seed") == 0
    rows = json.loads(capsys.readouterr().out)
    assert list(rows[0]) == ["run_id", "trial", "state", "status", "value", "best", "pruned_at", "val_accuracy",
                             "seed"]
    by_trial = {r["trial"]: r for r in rows}
    assert by_trial[2] == {"run_id": store.trials[MAXIMIZE, 2], "trial": 2, "state": "COMPLETE", "status": "FINISHED",
                           "value": 0.97, "best": True, "pruned_at": None, "val_accuracy": 0.65, "seed": "1"}
    assert [by_trial[n]["pruned_at"] for n in (1, 3)] == [1, 2]
    assert (by_trial[5]["state"], by_trial[5]["status"], by_trial[5]["value"]) == ("KILLED", "KILLED", None)
    assert ocrexp_runs(store, "--sweep", MAXIMIZE, "--csv", "--metrics", "val_accuracy", "--params", "seed") == 0
    csv_text = capsys.readouterr().out
    assert csv_text.splitlines()[0] == "run_id,trial,state,status,value,best,pruned_at,val_accuracy,seed"
    assert csv_rows(csv_text)[0]["best"] == "True" and csv_rows(csv_text)[2]["pruned_at"] == "2"


def test_sweep_takes_filter_and_limit(store, capsys):
    assert ocrexp_runs(store, "--sweep", MAXIMIZE, "--filter", f"tags.`{STATE_TAG}` = 'PRUNED'", "--csv") == 0
    assert [r["trial"] for r in csv_rows(capsys.readouterr().out)] == ["3", "1"]
    assert ocrexp_runs(store, "--sweep", MAXIMIZE, "--limit", "2") == 0
    assert [row[1] for row in table(capsys.readouterr().out.split("\n\n")[1])[1:]] == ["2", "0"]


@pytest.mark.parametrize("argv, message", [
    (["--sweep", "no-such-study"], "--sweep 'no-such-study': no study has that name, and no run has the id, id "
                                   "prefix or name 'no-such-study'"),
    (["--sweep", "cnn-mnist"], "is not a sweep's parent run"),
    (["--sweep", MAXIMIZE, "--sort", "test_accuracy DESC"], "--sweep lists the trials best first; leave out --sort"),
    (["--sweep", MAXIMIZE, "--group-by", "seed"], "--group-by and --sweep do different things"),
])
def test_sweep_mistakes_end_with_one_sentence(store, capsys, argv, message):
    assert ocrexp_runs(store, *argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_sweep_naming_a_trial_says_which_sweep_to_give(store, capsys):
    trial = store.trials[MAXIMIZE, 3]
    assert ocrexp_runs(store, "--sweep", trial[:8]) == 2
    assert (f"run {trial[:8]} (trial-3) is trial 3 of study '{MAXIMIZE}': give --sweep "
            f"{store.parents[MAXIMIZE][:8]}.") in capsys.readouterr().err


@pytest.mark.slow
def test_a_real_pruned_sweep_reads_from_the_shell(project, mnist):
    """Two learning rates on a grid, one too small to reach 50 % validation accuracy after an epoch:
    a threshold pruner stops it, the other trains both epochs and is the best."""
    project.run("ocrexp-train", "-m", "hparams_search=cnn_optuna", "debug=fast", "trainer.epochs=2",
                "optimizer.lr=choice(1e-5,3e-3)", "model.conv1_filters=16", "model.conv2_filters=32",
                "model.dense_units=32", "model.dropout=0.2", "tracking.log_model=false", "tracking.log_plots=false",
                "hydra.sweeper.sampler=grid", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1",
                "hydra.sweeper.study_name=readable", "hydra.sweeper.plots=false",
                "hydra.sweeper.pruner={_target_: optuna.pruners.ThresholdPruner, lower: 0.5}", timeout=600)
    listing = project.run("ocrexp", "runs").stdout
    sweep = project.run("ocrexp", "runs", "--sweep", "readable").stdout
    print(f"$ ocrexp runs\n{listing}\n$ ocrexp runs --sweep readable\n{sweep}")  # shown with pytest -s

    header, *rows = table(listing)
    assert header[:3] == ["run_id", "run_name", "state"] and header[-1] == "sweep"
    parent = next(row for row in rows if row[1] == "optuna-readable")
    assert parent[2] == "COMPLETE" and " ".join(parent).endswith("1 complete, 1 pruned, 0 failed")
    assert sorted(row[2] for row in rows if row[1].startswith("trial-")) == ["COMPLETE", "PRUNED"]
    assert all(row[-1] == parent[0] for row in rows if row[1].startswith("trial-"))

    heading, _, trials = sweep.partition("\n\n")
    assert heading.startswith(f"study readable (run {parent[0]}, COMPLETE): maximize val_accuracy; best ")
    header, best, pruned = table(trials)
    assert header[:6] == ["run_id", "trial", "state", "value", "best", "pruned_at"] and "optimizer.lr" in header
    assert best[2] == "COMPLETE" and best[4] == "*" and best[-1] == "0.003"
    assert pruned[2:4] == ["PRUNED", "1"] and pruned[-1] == "1e-05"
