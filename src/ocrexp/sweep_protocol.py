"""What an Optuna sweep tells each training job, and how the job's MLflow run answers: one contract.

The sweeper (``hydra_plugins.ocrexp_optuna_sweeper``) runs every trial as a Hydra job, often in another
process or on another machine. It hands the job a :class:`TrialJob` through environment variables,
set per job with ``hydra.job.env_set`` so that they stay out of the task config (and out of the
logged params). From the storage URL, study name and trial id any process can rebuild the trial
(``optuna.load_study`` then ``optuna.trial.Trial(study, trial_id)``), report to it and be pruned
(``ocrexp.pruning``); the parent run id makes the job's MLflow run a nested child of the study's run
(``ocrexp.tracking``). The names below are the whole contract: nothing else spells them.

Importing this module is cheap: no Optuna, no MLflow.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_STORAGE = "OCREXP_OPTUNA_STORAGE"
ENV_STUDY = "OCREXP_OPTUNA_STUDY"
ENV_TRIAL_ID = "OCREXP_OPTUNA_TRIAL_ID"
ENV_TRIAL_NUMBER = "OCREXP_OPTUNA_TRIAL_NUMBER"
ENV_PARENT_RUN_ID = "OCREXP_PARENT_RUN_ID"

# Study user attribute holding the pruner spec (a name or a mapping): written by the sweeper, read
# by every job so that all of them prune with the study's pruner.
PRUNER_ATTR = "ocrexp.pruner"
# Trial user attribute: the number of the trial this one retries (re-queued after its worker died).
RETRY_OF = "ocrexp.retry_of"
# Trial user attributes of a FAIL trial: why the sweeper failed it, and in its words.
FAIL_KIND = "ocrexp.fail_kind"  # error | orphaned | interrupted | surplus
FAIL_REASON = "ocrexp.fail_reason"

# Tags on a trial's MLflow run.
PARENT_TAG = "mlflow.parentRunId"
STUDY_TAG = "optuna.study"
NUMBER_TAG = "optuna.trial_number"
STATE_TAG = "ocrexp.trial_state"  # COMPLETE | PRUNED | FAIL
# The study's parent run: tagged with its role, and holding these metrics (updated after every trial).
ROLE_TAG, STUDY_ROLE = "ocrexp.role", "optuna-study"
STUDY_METRICS = {"trials_complete": "complete", "trials_pruned": "pruned", "trials_failed": "failed"}
BEST_METRIC = "best_value"


# Where a study lives unless hydra.sweeper.storage says otherwise (read by ocrexp dashboard too).
JOURNAL_DIR = Path("mlruns") / "optuna"
JOURNAL_SUFFIX = ".journal"


def journal_path(root: Path, study_name: str) -> Path:
    """The default storage of ``study_name`` in the project at ``root``: one Optuna journal file."""
    return root / JOURNAL_DIR / (re.sub(r"[^A-Za-z0-9_.-]+", "_", study_name) + JOURNAL_SUFFIX)


def redact(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``, for logs and headers."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


@dataclass(frozen=True)
class TrialJob:
    """The trial one training job runs, as the sweeper hands it down."""

    storage: str
    study: str
    trial_id: int
    number: int
    parent_run_id: str | None = None

    def to_env(self) -> dict[str, str]:
        """The job's environment variables."""
        env = {ENV_STORAGE: self.storage, ENV_STUDY: self.study, ENV_TRIAL_ID: str(self.trial_id),
               ENV_TRIAL_NUMBER: str(self.number)}
        if self.parent_run_id:
            env[ENV_PARENT_RUN_ID] = self.parent_run_id
        return env

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrialJob | None:
        """The trial this process runs, or None outside an Optuna sweep. Only the job's entry point
        (``ocrexp-train``'s task function) reads it; everything else is handed the job."""
        env = os.environ if environ is None else environ
        storage, study, trial_id = env.get(ENV_STORAGE), env.get(ENV_STUDY), env.get(ENV_TRIAL_ID)
        if not (storage and study and trial_id):
            return None
        return cls(storage, study, int(trial_id), int(env.get(ENV_TRIAL_NUMBER, -1)),
                   env.get(ENV_PARENT_RUN_ID) or None)

    @property
    def run_name(self) -> str:
        """The MLflow run name: the study's runs read best as ``trial-<n>`` under its parent."""
        return f"trial-{self.number}"

    def run_tags(self) -> dict[str, str]:
        """Tags that place the job's MLflow run under the study's parent run."""
        tags = {STUDY_TAG: self.study, NUMBER_TAG: str(self.number)}
        if self.parent_run_id:
            tags[PARENT_TAG] = self.parent_run_id
        return tags


def storage_failed(exc: BaseException) -> bool:
    """Whether ``exc`` says the study's storage stopped answering (its database went away), rather
    than a bug of the sweep or the job."""
    import optuna

    if isinstance(exc, optuna.exceptions.StorageInternalError):
        return True
    try:
        from sqlalchemy.exc import OperationalError
    except ImportError:
        return False
    return isinstance(exc, OperationalError)


class JobInterrupted(Exception):
    """A sweep job stopped by Ctrl-C or SIGTERM after its run ended as KILLED. Raised instead of
    KeyboardInterrupt, which joblib answers by ending every worker, the other jobs' mid-cleanup too;
    Hydra records this one as the job's failure and the sweeper queues the trial again."""


class TrialEnded(JobInterrupted):
    """The sweep ended a job's trial while the job still trained it (it was interrupted, or took the
    job for a dead one and queued its parameters again): the job stops, its run ends as KILLED."""


def is_pruned(exc: BaseException | None) -> bool:
    """Whether ``exc`` is Optuna's ``TrialPruned`` (without importing Optuna: if it is not loaded,
    nothing can have raised it)."""
    optuna = sys.modules.get("optuna")
    return optuna is not None and isinstance(exc, optuna.TrialPruned)
