"""The official hydra-optuna-sweeper's example problems, written afresh for ``ocrexp_optuna``.

One Hydra app (``sphere.py``) with a primary config per example, each as the official docs show it
but for the sweeper's name: ``sphere`` (minimise w² + x² + y² + z²), ``binh_korn`` (two objectives),
``custom`` (the custom search space example, whose ``configure`` lives in the app's own file, as in
the official example) and ``older`` (the sphere with the older ``search_space`` block). ``write_examples`` puts them in a folder; tests sweep them with
``tests.toy_sweep.sweep``.
"""

from __future__ import annotations

from pathlib import Path

import yaml


def write_examples(folder: Path) -> Path:
    """The app and its configs in ``folder``; returns the script's path."""
    (folder / "conf").mkdir(parents=True, exist_ok=True)
    (folder / "sphere.py").write_text(APP)
    for name, text in CONFIGS.items():
        (folder / "conf" / f"{name}.yaml").write_text(text)
    return folder / "sphere.py"


def results(root: Path) -> dict:
    """The sweep's ``optimization_results.yaml``."""
    return yaml.safe_load((root / "multirun" / "optimization_results.yaml").read_text())


APP = '''
import hydra


@hydra.main(config_path="conf", config_name="sphere", version_base="1.3")
def main(cfg):
    if cfg.get("error"):
        raise RuntimeError("cfg.error is True")
    if cfg.get("task") == "binh_korn":
        x, y = cfg.x, cfg.y
        return 4 * x**2 + 4 * y**2, (x - 5) ** 2 + (y - 5) ** 2
    values = [cfg.get(k, 0.0) for k in ("w", "x", "y", "z")]
    return sum(float(v) ** 2 for v in values if isinstance(v, (int, float)))


def configure(cfg, trial):
    """The official example's: z within max_z_difference_from_x of the sampled x, and a new key w."""
    x_value = trial.params["x"]
    trial.suggest_float("z", x_value - cfg.max_z_difference_from_x, x_value + cfg.max_z_difference_from_x)
    trial.suggest_float("+w", 0.0, 1.0)


def suggest_y(cfg, trial):
    trial.suggest_int("y", -5, 5)


def broken(cfg, trial):
    return trial.params["no_such_param"]


if __name__ == "__main__":
    main()
'''

_SWEEP_DIR = '''  sweep:
    dir: ${oc.env:OCREXP_ROOT}/multirun
'''

CONFIGS = {
    "sphere": '''
defaults:
  - override hydra/sweeper: ocrexp_optuna
  - override hydra/sweeper/sampler: tpe

hydra:
''' + _SWEEP_DIR + '''  sweeper:
    sampler:
      seed: 123
    direction: minimize
    study_name: sphere
    storage: null
    n_trials: 20
    n_jobs: 1
    max_failure_rate: 0.0
    params:
      x: range(-5.5, 5.5, step=0.5)
      y: choice(-5, 0, 5)

x: 1
y: 1
z: 1
''',
    "binh_korn": '''
defaults:
  - override hydra/sweeper: ocrexp_optuna
  - override hydra/sweeper/sampler: nsgaii

hydra:
''' + _SWEEP_DIR + '''  sweeper:
    sampler:
      seed: 123
    direction: [minimize, minimize]
    study_name: multi-objective
    storage: null
    n_trials: 20
    n_jobs: 1
    params:
      x: range(0, 5, step=0.5)
      y: range(0, 3, step=0.5)

task: binh_korn
x: 1
y: 1
''',
    "older": '''
defaults:
  - override hydra/sweeper: ocrexp_optuna

hydra:
''' + _SWEEP_DIR + '''  sweeper:
    direction: minimize
    search_space:
      x:
        type: float
        low: -5
        high: 5
      y:
        type: categorical
        choices: [-5, 0, 5]
      z:
        type: int
        low: 1
        high: 9
        step: 2

x: 1
y: 1
z: 1
''',
    "custom": '''
defaults:
  - override hydra/sweeper: ocrexp_optuna

hydra:
''' + _SWEEP_DIR + '''  sweeper:
    sampler:
      seed: 123
    direction: minimize
    study_name: custom-search-space
    storage: null
    n_trials: 20
    n_jobs: 1
    params:
      x: range(-5.5, 5.5, 0.5)
      y: choice(-5, 0, 5)
    # `custom_search_space` should be a dotpath pointing to a
    # callable that provides search-space configuration logic:
    custom_search_space: .sphere.configure

x: 1
y: 1
z: 100
max_z_difference_from_x: 0.5
''',
}
