"""Optuna's study plots as PNG files (matplotlib versions: no plotly needed)."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def save_plots(study: Any, metric_names: list[str], out_dir: Path) -> list[Path]:
    """Optimisation history, parameter importances, parallel coordinates and intermediate values
    (plus the Pareto front for several objectives), each skipped when the study is too small."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import optuna.visualization.matplotlib as vm

    multi = len(study.directions) > 1
    names = list(metric_names) or [f"objective {i}" for i in range(len(study.directions))]
    target = (lambda t: t.values[0]) if multi else None
    first = names[0]
    plots = {
        "optimization_history": lambda: vm.plot_optimization_history(study, target=target, target_name=first),
        "param_importances": lambda: vm.plot_param_importances(study, target=target, target_name=first),
        "parallel_coordinate": lambda: vm.plot_parallel_coordinate(study, target=target, target_name=first),
        "intermediate_values": lambda: vm.plot_intermediate_values(study),
    }
    if multi:
        plots["pareto_front"] = lambda: vm.plot_pareto_front(study, target_names=names)
    saved = []
    for name, make in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks these plots experimental
                axes = make()
            fig = np.ravel(axes)[0].figure if isinstance(axes, np.ndarray) else axes.figure
            fig.set_size_inches(9, 5.5)
            fig.tight_layout()
            path = out_dir / f"{name}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            saved.append(path)
        except Exception as exc:  # too few trials for this plot, or nothing to show
            log.debug("no %s plot: %s", name, exc)
            plt.close("all")
    return saved
