"""A trivial Hydra app swept by the ocrexp Optuna sweeper, for fast sweeper tests (no TensorFlow).

``score = x * step / steps + 0.01 * y``, reported step by step to the trial, with knobs to fail,
return NaN, lag or return two objectives. ``write_app`` puts it in a folder; the ``app`` fixture
(conftest) does that once per session.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna

from ocrexp.pruning import open_storage


def write_app(folder: Path) -> Path:
    """The app (``app.py`` and ``conf/config.yaml``) in ``folder``; returns the script's path."""
    (folder / "conf").mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(APP)
    (folder / "conf" / "config.yaml").write_text(APP_CONFIG)
    return folder / "app.py"


APP = '''
import json, os, signal, time
import hydra
from ocrexp.pruning import trial_reporter
from ocrexp.sweep_protocol import TrialJob

def lines(name):
    path = os.environ[name]
    return [json.loads(line) for line in open(path)] if os.path.exists(path) else []


def wait_for(condition, limit=120.0):
    """Poll until ``condition()``; False after ``limit`` s (only when the behaviour under test is broken)."""
    deadline = time.time() + limit
    while not condition():
        if time.time() > deadline:
            return False
        time.sleep(0.05)
    return True


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg) -> float:
    job = TrialJob.from_env()
    number = job.number if job else -1
    start = time.time()
    with open(os.environ["EVENTS_FILE"] + ".starts", "a") as f:
        f.write(json.dumps({"number": number, "pid": os.getpid()}) + "\\n")
    if cfg.fail_below is not None and cfg.x < cfg.fail_below:
        raise ValueError(f"x={cfg.x} is below {cfg.fail_below}")
    time.sleep(cfg.slow_seconds if number == cfg.slow_trial else 0)
    released = None
    if number == cfg.slow_trial and cfg.wait_for_others:  # hold this slot until others have finished
        released = wait_for(lambda: sum(e["number"] != number for e in lines("EVENTS_FILE")) >= cfg.wait_for_others)
    if cfg.rendezvous:  # every trial waits until trials run in this many processes at once
        released = wait_for(lambda: len({e["pid"] for e in lines("EVENTS_STARTS")}) >= cfg.rendezvous, 30.0)
    if number == cfg.die_at:  # the job's process is killed (out of memory, its machine lost)
        os.kill(os.getpid(), signal.SIGKILL)
    if number == cfg.break_storage_at:  # the study's database goes away: its file is no database any more
        with open(job.storage.removeprefix("sqlite:///"), "r+b") as db:
            db.write(b"gone" * 1024)
        return 0.0
    reporter = trial_reporter(job, "score")
    value = base = float("nan") if cfg.nan_above is not None and cfg.x > cfg.nan_above else 0.0
    for step in range(1, cfg.steps + 1):
        time.sleep(cfg.sleep)
        value = base + cfg.x * step / cfg.steps + 0.01 * cfg.y
        if reporter is not None:
            reporter.report(step, value, last=step == cfg.steps)
    with open(os.environ["EVENTS_FILE"], "a") as f:
        f.write(json.dumps({"number": number, "pid": os.getpid(), "start": start, "end": time.time(),
                            "released": released}) + "\\n")
    return [value, float(cfg.y)] if cfg.objectives == 2 else value

if __name__ == "__main__":
    main()
'''

APP_CONFIG = '''
defaults:
  - override hydra/sweeper: ocrexp_optuna
  - override hydra/launcher: joblib
  - _self_
x: 0.5
y: 1
sleep: 0.0
steps: 1
fail_below: null
nan_above: null
slow_trial: -1
slow_seconds: 0.0
wait_for_others: 0
rendezvous: 0
objectives: 1
break_storage_at: null
die_at: null
optimized_metric: score
hydra:
  sweep:
    dir: ${oc.env:OCREXP_ROOT}/multirun/${now:%H-%M-%S-%f}
  sweeper:
    n_trials: 6
    seed: 0
    sampler: random
    heartbeat_interval: 1
    plots: false
    params:
      x: interval(0, 1)
      y: choice(1, 2, 3)
'''


def start_sweep(app: Path, root: Path, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "OCREXP_ROOT": str(root), "EVENTS_FILE": str(root / "events.jsonl"),
           "EVENTS_STARTS": str(root / "events.jsonl.starts")}
    return subprocess.Popen([sys.executable, str(app), "-m", *overrides], cwd=root, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def sweep(app: Path, root: Path, *overrides: str, ok: bool = True, timeout: float = 180) -> str:
    proc = start_sweep(app, root, *overrides)
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        kill_group(proc)
    assert (proc.returncode == 0) == ok, f"exit {proc.returncode}\n{out[-4000:]}"
    return out


def kill_group(proc: subprocess.Popen) -> None:
    """End the sweep's leftovers (joblib's workers) by its process group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def load_study(root: Path, url: str | None = None) -> optuna.Study:
    if url is None:
        (url,) = glob.glob(str(root / "mlruns" / "optuna" / "*.journal"))
    storage = open_storage(url)
    (name,) = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage)


def events(root: Path) -> list[dict]:
    path = root / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def by_state(study: optuna.Study) -> dict[str, list[optuna.trial.FrozenTrial]]:
    out: dict[str, list] = {}
    for t in study.get_trials():
        out.setdefault(t.state.name, []).append(t)
    return out
