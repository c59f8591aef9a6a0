"""The study's MLflow parent run: one per study, found again on resume and shared by every worker.

The parent's id lives in the study (user attribute ``ocrexp.mlflow_parent_run_id``), so a resumed
sweep, or another worker on another machine, reopens the same run. Two workers creating it at the
same instant both keep the earliest run tagged with the study and delete their other one.
Each trial's job becomes a nested child run tagged with its study and trial number (the job reads
its ``ocrexp.sweep_protocol.TrialJob``); the sweeper tags the child with the trial's final state once
Optuna has it.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Mapping

from ocrexp.sweep_protocol import (BEST_METRIC, NUMBER_TAG, PARENT_TAG, ROLE_TAG, STATE_TAG, STUDY_METRICS, STUDY_ROLE,
                                    STUDY_TAG)

log = logging.getLogger(__name__)

PARENT_ATTR = "ocrexp.mlflow_parent_run_id"


class StudyRun:
    """The parent run of one Optuna study in the task's MLflow experiment."""

    def __init__(self, tracking_cfg: Any, study: Any, study_name: str):
        import mlflow

        from ocrexp.tracking.store import ensure_store, get_experiment_id, tracking_uri

        self.uri = tracking_uri(tracking_cfg)
        ensure_store(self.uri)
        self.client = mlflow.MlflowClient(self.uri)
        self.experiment_id = get_experiment_id(self.client, tracking_cfg.experiment_name)
        self.study_name = study_name
        self._lock = threading.Lock()  # MlflowClient calls from several trial threads
        self.run_id, self.resumed = self._find_or_create(study)
        study.set_user_attr(PARENT_ATTR, self.run_id)

    def _find_or_create(self, study: Any) -> tuple[str, bool]:
        known = study.user_attrs.get(PARENT_ATTR)
        if known:
            try:
                run = self.client.get_run(known)
                if run.info.lifecycle_stage == "active" and run.info.experiment_id == self.experiment_id:
                    return known, True
            except Exception:  # deleted, or another tracking store: start a parent here
                pass
        found = self._earliest()
        if found:
            return found, True
        mine = self.client.create_run(self.experiment_id, run_name=f"optuna-{self.study_name}",
                                      tags={ROLE_TAG: STUDY_ROLE, STUDY_TAG: self.study_name}).info.run_id
        earliest = self._earliest()
        if earliest and earliest != mine:  # another worker created one at the same moment
            self.client.delete_run(mine)
            return earliest, True
        return mine, False

    def _earliest(self) -> str | None:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{ROLE_TAG}` = '{STUDY_ROLE}' AND tags.`{STUDY_TAG}` = '{_esc(self.study_name)}'",
            order_by=["attributes.start_time ASC"], max_results=5)
        runs = sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))
        return runs[0].info.run_id if runs else None

    def start(self, params: Mapping[str, str], tags: Mapping[str, str]) -> None:
        """Mark the run RUNNING and record the search space and sweeper settings.

        MLflow params cannot change, so a resume with a different setting keeps the first value
        and says which keys differ.
        """
        from mlflow.entities import Param, RunTag

        self.client.update_run(self.run_id, status="RUNNING")
        logged = self.client.get_run(self.run_id).data.params
        new = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in logged]
        changed = sorted(k for k, v in params.items() if k in logged and logged[k] != str(v)[:6000])
        if changed:
            log.warning("MLflow parent run %s keeps its first values of %s (changed since)", self.run_id,
                        ", ".join(changed))
        for i in range(0, len(new), 100):
            self._log_params(new[i:i + 100])
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def _log_params(self, params: list) -> None:
        """Log ``params``, some of which another worker starting the same study may log first: SQLite
        takes the same value twice, a PostgreSQL-backed store refuses the whole batch."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.log_batch(self.run_id, params=params)
        except MlflowException:
            logged = self.client.get_run(self.run_id).data.params
            rest = [p for p in params if p.key not in logged]
            if len(rest) == len(params):  # nothing was logged by another worker: a real failure
                raise
            if rest:
                self.client.log_batch(self.run_id, params=rest)

    def child_run_id(self, number: int) -> str | None:
        with self._lock:
            runs = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`{PARENT_TAG}` = '{self.run_id}' AND tags.`{NUMBER_TAG}` = '{number}'",
                order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0].info.run_id if runs else None

    def trial_finished(self, frozen: Any, child_id: str | None, counts: Any, best: float | None) -> None:
        """Tag the child with the trial's state; log the study's counts and best value on the parent."""
        from mlflow.entities import Metric

        now, step = int(time.time() * 1000), counts.done + counts.failed
        by_state = {"complete": counts.complete, "pruned": counts.pruned, "failed": counts.failed}
        metrics = [Metric(name, by_state[state], now, step) for name, state in STUDY_METRICS.items()]
        if best is not None:
            metrics.append(Metric(BEST_METRIC, best, now, step))
        if frozen.values and len(frozen.values) == 1:
            metrics.append(Metric("trial_value", frozen.values[0], now, frozen.number))
        with self._lock:
            if child_id:
                self.client.set_tag(child_id, STATE_TAG, frozen.state.name)
            self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, status: str, results: Mapping[str, Any], study: Any, plots: bool) -> None:
        """Record the results file, best parameters, trial table and plots; end the run."""
        import yaml
        from mlflow.entities import RunTag

        with self._lock:
            self.client.log_text(self.run_id, yaml.safe_dump(dict(results), sort_keys=False),
                                 "optimization_results.yaml")
            best = results.get("best_params") or {}
            tags = [RunTag(f"best.{_tag_name(k)}", str(v)) for k, v in best.items()]
            if "best_trial" in results:
                tags.append(RunTag("best.trial_number", str(results["best_trial"])))
            if tags:
                self.client.log_batch(self.run_id, tags=tags)
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    study.trials_dataframe().to_csv(Path(tmp) / "trials.csv", index=False)
                    self.client.log_artifact(self.run_id, str(Path(tmp) / "trials.csv"))
                except Exception as exc:
                    log.debug("no trials table: %s", exc)
                if plots:
                    from ._plots import save_plots

                    for path in save_plots(study, results.get("metric") or [], Path(tmp)):
                        self.client.log_artifact(self.run_id, str(path), "plots")
            self.client.set_terminated(self.run_id, status)

    @property
    def url_hint(self) -> str:
        return f"MLflow parent run {self.run_id} in {self.uri}"


def _tag_name(param: str) -> str:
    """A parameter's name as MLflow accepts it: ``+w`` (an override that adds ``w``) is ``w``."""
    return re.sub(r"[^\w\-. /]", "_", param.lstrip("+~"))


def _esc(text: str) -> str:
    return text.replace("'", "\\'")
