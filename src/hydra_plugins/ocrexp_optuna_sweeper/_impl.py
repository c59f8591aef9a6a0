"""The sweep: build the search space, open (or resume) the study, run the trial loop, report.

Each trial is a Hydra job launched by the configured launcher as a batch of one. Its overrides are
the fixed values, the sampled values and, through ``++hydra.job.env_set``, the job's
``ocrexp.sweep_protocol.TrialJob``: how it reaches its trial and its MLflow parent run.
"""

from __future__ import annotations

import logging
import math
import shlex
import time
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict, read_write

from ocrexp import paths, processes
from ocrexp.config import plain
from ocrexp.errors import Terminated
from ocrexp.sweep_protocol import FAIL_KIND, FAIL_REASON, TrialJob, redact, storage_failed

from . import _sampler, _search_space, _study
from ._custom_space import CustomSpace
from ._errors import SweeperError
from ._loop import Outcome, TrialLoop, format_values
from ._resume import Ownership
from .config import OcrexpOptunaSweeperConf

log = logging.getLogger(__name__)
JOBS_GRACE_S = 30.0  # how long an interrupted sweep waits for its jobs to end their runs as KILLED


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class OptunaSweeperImpl:
    """Runs one sweep: the settings are ``OcrexpOptunaSweeperConf``'s fields."""

    def __init__(self, **options: Any) -> None:
        options.pop("_target_", None)
        self.opts = OcrexpOptunaSweeperConf(**{k: plain(v) for k, v in options.items()})
        if self.opts.n_trials < 1 or self.opts.n_jobs < 1:
            raise SweeperError(f"hydra.sweeper.n_trials={self.opts.n_trials} and n_jobs={self.opts.n_jobs} "
                               f"must both be at least 1.")
        if not 0 <= self.opts.max_failure_rate <= 1:
            raise SweeperError(f"hydra.sweeper.max_failure_rate={self.opts.max_failure_rate} is not allowed: "
                               f"use a fraction in [0, 1].")
        self.n_jobs = self.opts.n_jobs

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.sampler_choice = config.hydra.runtime.get("choices", {}).get("hydra/sweeper/sampler")
        launcher_target = str(config.hydra.launcher.get("_target_", ""))
        if self.n_jobs > 1 and launcher_target.endswith("BasicLauncher"):
            log.warning("hydra.sweeper.n_jobs=%d needs a process launcher (hydra/launcher=joblib or submitit): "
                        "the basic launcher runs jobs in this process, so trials run one at a time", self.n_jobs)
            self.n_jobs = 1
        if launcher_target.endswith("JoblibLauncher"):
            self._size_joblib_pool(config)
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function)

    def _size_joblib_pool(self, config: DictConfig) -> None:
        """At least max(n_jobs, 2) loky workers: one per trial slot, and never the sweeper's own
        process (joblib runs n_jobs=1 in-process), so TensorFlow state never leaks between trials."""
        import os

        wanted = max(self.n_jobs, 2)
        current = int(config.hydra.launcher.get("n_jobs", -1) or -1)
        cpus = os.cpu_count() or 1
        effective = current if current > 0 else max(cpus + 1 + current, 1)
        if effective < wanted:
            with read_write(config.hydra.launcher), open_dict(config.hydra.launcher):
                config.hydra.launcher.n_jobs = wanted

    # -- the sweep -------------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> None:
        """Run trials until the study has ``n_trials`` results; resume it if it exists."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress lines replace Optuna's
        space = _search_space.build(self._params(), list(arguments))
        space.custom = self.opts.custom_search_space
        if not (space.distributions or space.custom):
            raise SweeperError("nothing to search: give hydra.sweeper.params (or the command line) at least one "
                               "choice(...), range(...) or interval(...).")
        self.directions = _study.directions_of(self.opts.direction, self.opts.directions)
        self.metric_names = self._metric_names(self.directions)
        self.custom = CustomSpace(space.custom, self.config, space) if space.custom else None
        self._check_composes(space)
        self.ownership = ownership = self._open_study(space)
        self.parent = self._open_parent_run(space)
        self._t0 = time.monotonic()
        loop = TrialLoop(study=self.study, ownership=ownership, space=space, launch=self._launch, env=self._env,
                         before_tell=self._before_tell, after_tell=self._after_tell, n_trials=self.n_trials,
                         n_jobs=self.n_jobs, n_values=len(self.directions), max_failures=self.max_failures,
                         timeout=self.opts.timeout, requeue=self.opts.requeue_orphans, on_interrupt=_pass_on,
                         extend=self.custom.apply if self.custom else None, grace_s=JOBS_GRACE_S)
        status, lost = "FINISHED", None
        try:
            loop.run()
        except KeyboardInterrupt as exc:
            status = "KILLED"
            log.warning("Interrupted: %s; run the same command again to resume", _interrupted_trials(
                loop.interrupted, self.opts.requeue_orphans))
            # a clean exit status (the shell's 128 + signal number), without Hydra's traceback
            raise SystemExit(143 if isinstance(exc, Terminated) else 130) from None
        except BaseException as exc:
            status = "FAILED"
            if not storage_failed(exc):
                raise
            lost = exc
        finally:
            status = "FAILED" if loop.stop_reason == "failures" else status
            try:
                self._finish(loop.stop_reason, status)
            except Exception as exc:  # with the storage gone, the results file and parent run wait for the rerun
                if lost is None and not storage_failed(exc):
                    raise
                lost = lost or exc
        if lost is not None:
            raise SweeperError(f"the study's storage {redact(str(self.url))} stopped answering ({_first_line(lost)}); run "
                               "the same command again once it answers: the study goes on, and trials left "
                               "RUNNING are queued again.")
        if loop.stop_reason == "failures":
            raise SweeperError(self._failure_sentence())
        if loop.stop_reason == "timeout":
            log.info("Stopped: %s; run the same command again to continue the study", loop.stop_message)

    def _params(self) -> dict[str, Any]:
        """``params``, or the official sweeper's older ``search_space`` block read as params."""
        params, older = self.opts.params or {}, self.opts.search_space
        if not older:
            return params
        if params:
            log.warning("hydra.sweeper.params and hydra.sweeper.search_space are both set: the sweep searches params "
                        "and ignores search_space")
            return params
        params = _search_space.from_older_form(older)
        as_yaml = ", ".join(f"{k}: '{v}'" for k, v in params.items())
        log.warning("hydra.sweeper.search_space is the older form of params; as params it reads: params: {%s}", as_yaml)
        return params

    def _open_study(self, space: _search_space.SearchSpace) -> Ownership:
        """Name, open (or resume) and seed the study; fail what a dead sweep left running."""
        import optuna
        from optuna.trial import TrialState

        opts, directions = self.opts, self.directions
        prefix = self.config.hydra.runtime.get("choices", {}).get("hparams_search") or self.config.hydra.job.name
        self.study_name = opts.study_name or _study.default_study_name(prefix, space, directions)
        self.url = _study.storage_url(opts.storage, self.study_name, paths.project_root())
        self.pruner = _study.check_pruner(opts.pruner, directions)
        self.sampler_spec = spec = _sampler.sampler_spec(opts.sampler, self.sampler_choice)
        self.study, storage = _study.open_study(self.study_name, self.url, self.pruner, opts.pruner, directions)
        ownership = Ownership(storage, opts.heartbeat_interval)
        ownership.reap(self.study, self.study.get_trials(deepcopy=False), opts.requeue_orphans)
        trials = self.study.get_trials(deepcopy=False)
        shared = _study.is_server_url(self.url) or any(
            t.state == TrialState.RUNNING and ownership.orphan_reason(t) is None for t in trials)
        self.base_seed = opts.seed if spec.get("seed") is None else spec["seed"]
        seed = _study.effective_seed(self.base_seed, len(trials), shared)
        self.sampler = self.study.sampler = _sampler.make_sampler({**spec, "seed": seed}, None, space)
        self.n_trials = opts.n_trials
        if type(self.sampler).__name__ == "GridSampler":
            size = math.prod(len(v) for v in _search_space.grid_values(space).values())
            if size < self.n_trials:
                log.info("The grid has %d points: n_trials lowered from %d to %d", size, self.n_trials, size)
                self.n_trials = size
        self.max_failures = math.floor(opts.max_failure_rate * self.n_trials)

        log.info("Optuna study %s in %s: %s, %s (seed %s), %s, %d trial(s) at once", self.study_name,
                 redact(self.url), "/".join(directions), type(self.sampler).__name__, seed,
                 type(self.pruner).__name__, self.n_jobs)
        for name, text in space.describe().items():
            log.info("  %s: %s", name, text)
        default_storage = self.url == _study.storage_url(None, self.study_name, paths.project_root())
        log.info("Watch it live: ocrexp dashboard %s", shlex.quote(self.study_name) if default_storage
                 else "--storage " + shlex.quote(redact(self.url)))
        counts = _study.Counts.of(trials)
        if counts.done or counts.failed:
            log.info("Resuming: %d of %d trials have a result (%d pruned), %d failed", counts.done, self.n_trials,
                     counts.pruned, counts.failed)
        return ownership

    def _finish(self, stop_reason: str | None, status: str) -> dict[str, Any]:
        """Write ``optimization_results.yaml`` and close the MLflow parent run."""
        results = self._results(self.study, self.directions, stop_reason)
        self._write_results(results)
        if self.parent is not None:
            try:
                self.parent.finish(status, results, self.study, plots=self.opts.plots and status != "KILLED")
            except Exception as exc:
                log.warning("could not finish the MLflow parent run: %s", exc)
        return results

    def _metric_names(self, directions: list[str]) -> list[str]:
        metric = plain(self.config.get("optimized_metric"))
        if metric is None:
            return ["value"] if len(directions) == 1 else [f"value{i}" for i in range(len(directions))]
        names = [str(m) for m in (metric if isinstance(metric, list) else [metric])]
        if len(names) != len(directions):
            raise SweeperError(f"optimized_metric={metric} names {len(names)} metric(s) but hydra.sweeper.direction "
                               f"has {len(directions)}: give one direction per metric.")
        return names

    def _check_composes(self, space: _search_space.SearchSpace) -> None:
        """Compose one trial's config here, so a key that does not exist fails once, not per trial."""
        sample, dists = {}, {}
        for name, dist in space.distributions.items():
            sample[name] = dist.choices[0] if hasattr(dist, "choices") else dist.low
        if self.custom is not None:
            sample, dists = self.custom.dry_run(space, self.directions, sample)
        try:
            self.hydra_context.config_loader.load_sweep_config(self.config, space.overrides(sample, dists))
        except Exception as exc:
            text = f"{exc}\n{exc.__cause__ or ''}"
            lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()] or [type(exc).__name__]
            detail = next((ln for ln in lines[1:] if ln.startswith("Key ")), None)
            first = lines[0].rstrip(".") + (f" ({detail})" if detail else "")
            raise SweeperError(f"the search space does not fit the config: {first}.") from None

    def _open_parent_run(self, space: _search_space.SearchSpace):
        tracking = self.config.get("tracking")
        if not (self.opts.mlflow and tracking is not None and tracking.get("enabled", True)):
            return None
        from ._mlflow import StudyRun

        parent = StudyRun(tracking, self.study, self.study_name)
        params = {f"space.{k}": v for k, v in space.describe().items()}
        params.update({"optuna.sampler": type(self.sampler).__name__, "optuna.pruner": type(self.pruner).__name__,
                       "optuna.directions": ",".join(self.directions), "optuna.storage": redact(self.url),
                       "optuna.metric": ",".join(self.metric_names)})
        tags = {"optuna.n_trials": self.n_trials, "optuna.sampler_config": self.sampler_spec,
                "optuna.pruner_config": plain(self.opts.pruner), "optuna.seed": self.base_seed}
        parent.start(params, tags)
        log.info("%s %s", "Reopened" if parent.resumed else "Created", parent.url_hint)
        return parent

    # -- hooks for the trial loop ----------------------------------------------------------------
    def _launch(self, overrides: list[str], job_idx: int) -> Any:
        return self.launcher.launch([overrides], initial_job_idx=job_idx)[0]

    def _env(self, trial: Any) -> dict[str, str]:
        parent_run_id = self.parent.run_id if self.parent is not None else None
        return TrialJob(self.url, self.study_name, self.ownership.trial_id(trial), trial.number,
                        parent_run_id).to_env()

    def _before_tell(self, trial: Any, outcome: Outcome) -> None:
        if self.parent is not None:
            child = self.parent.child_run_id(trial.number)
            if child:
                outcome.attrs["mlflow_run_id"] = child

    def _after_tell(self, frozen: Any, outcome: Outcome, counts: _study.Counts) -> None:
        best_value, best_text = self._best()
        state = frozen.state.name
        if state == "COMPLETE":
            what = f"{','.join(self.metric_names)}={format_values(frozen.values)}"
        elif state == "PRUNED":
            step = frozen.last_step
            what = f"at step {step}" + (f", {self.metric_names[0]}={frozen.intermediate_values[step]:.6g}"
                                        if step is not None else "")
        else:
            what = f"{outcome.reason}; " if frozen.user_attrs.get(FAIL_KIND) == "error" else ""
            what += f"failures {counts.task_failures}, at most {self.max_failures} allowed"
        log.info("[%d/%d] trial %d %s in %.0fs: %s | best %s | elapsed %s", counts.done, self.n_trials, frozen.number,
                 state, outcome.seconds, what, best_text, _hms(time.monotonic() - self._t0))
        if self.parent is not None:
            try:
                self.parent.trial_finished(frozen, outcome.attrs.get("mlflow_run_id"), counts, best_value)
            except Exception as exc:
                log.warning("MLflow parent run not updated: %s", exc)

    def _best(self) -> tuple[float | None, str]:
        if len(self.study.directions) > 1:
            return None, f"{len(self.study.best_trials)} trial(s) on the Pareto front"
        try:
            best = self.study.best_trial
        except ValueError:
            return None, "-"
        return best.value, f"{best.value:.6g} (trial {best.number})"

    # -- results ---------------------------------------------------------------------------------
    def _results(self, study: Any, directions: list[str], stop_reason: str | None) -> dict[str, Any]:
        counts = _study.Counts.of(study.get_trials(deepcopy=False))
        results: dict[str, Any] = {
            "name": "ocrexp_optuna", "study_name": self.study_name, "storage": redact(self.url),
            "directions": directions, "metric": self.metric_names, "n_trials": self.n_trials,
            "counts": counts.as_dict(),
            "stopped_by": stop_reason or ("budget" if counts.done >= self.n_trials else None),
        }
        if len(directions) == 1:
            try:
                best = study.best_trial
                results.update(best_value=best.value, best_params=dict(best.params), best_trial=best.number)
            except ValueError:
                results.update(best_value=None, best_params={})
        else:
            results["solutions"] = [{"number": t.number, "values": list(t.values), "params": dict(t.params)}
                                    for t in study.best_trials]
        if self.parent is not None:
            results["mlflow_parent_run_id"] = self.parent.run_id
            results["mlflow_tracking_uri"] = self.parent.uri
        return results

    def _write_results(self, results: dict[str, Any]) -> None:
        import yaml

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        path = sweep_dir / "optimization_results.yaml"
        path.write_text(yaml.safe_dump(results, sort_keys=False))
        best = results.get("best_value")
        log.info("Study %s: %s | best %s | results in %s", self.study_name,
                 ", ".join(f"{v} {k}" for k, v in results["counts"].items() if v),
                 "-" if best is None else f"{best:.6g} with {results.get('best_params')}", path)

    def _failure_sentence(self) -> str:
        trials = self.study.get_trials(deepcopy=False)
        failed = [t for t in trials if t.state.name == "FAIL" and t.user_attrs.get(FAIL_KIND, "error") == "error"]
        why = ""
        if failed:
            last = max(failed, key=lambda t: t.number)
            reason = str(last.user_attrs.get(FAIL_REASON)).rstrip(".")
            why = f"; the last one (trial {last.number}) failed with {reason}"
        return (f"The sweep stopped because {len(failed)} trials of study {self.study_name} failed, more than "
                f"max_failure_rate={self.opts.max_failure_rate} of n_trials={self.n_trials} allows "
                f"({self.max_failures}){why}.")


def _interrupted_trials(numbers: list[int], requeued: bool) -> str:
    """``trials 3, 4 marked FAIL and queued again``: what an interruption did to the running trials."""
    if not numbers:
        return "no trial was left running"
    numbers = sorted(numbers)
    return (f"trial{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))} marked FAIL"
            f"{' and queued again' if requeued else ''}")


def _pass_on(exc: KeyboardInterrupt) -> None:
    """SIGTERM reached only this process (Ctrl-C reaches the whole group): pass it on to the jobs."""
    if isinstance(exc, Terminated):
        _interrupt_children()


def _interrupt_children() -> None:
    """Send SIGINT to this process's children (the launcher's workers), so their jobs end their
    MLflow runs as KILLED instead of being cut off; Linux only, best effort."""
    import os
    import signal

    for child in processes.children(os.getpid()):
        try:
            os.kill(child, signal.SIGINT)
        except OSError:  # ended meanwhile
            continue




def _first_line(exc: BaseException) -> str:
    """The first line of what went wrong: the database's own words when Optuna wrapped them."""
    exc = exc.__cause__ or exc
    text = str(exc).strip()
    return (text.splitlines()[0].strip() if text else type(exc).__name__).rstrip(".")
