"""``hydra.sweeper.custom_search_space``: a function ``configure(cfg, trial)`` that suggests more
parameters once a trial's ``params`` are sampled (Optuna's define-by-run API), as in the official sweeper.

``cfg`` is the sweep's composed config. Before the call, the trial's user attributes hold the fixed
overrides (``{key: value}``), so the function can see them; suggesting one of them is a mistake. The
parameters it suggests are the trial's like the others: overrides of the same name (``z`` sets
``z``, ``+w`` adds ``w``), recorded in the study, queued again with the rest when the trial is
retried. The sweep calls it once on a throwaway trial before it starts, so a wrong path or a failing
function is one sentence rather than a failed trial each.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ._errors import SweeperError
from ._search_space import SearchSpace


class CustomSpace:
    """The loaded ``configure`` function and what it needs at every trial."""

    def __init__(self, path: str, cfg: Any, space: SearchSpace):
        self.path = path
        self.cfg = cfg
        self.fixed = space.fixed_values()
        self.configure = load(path)

    def apply(self, trial: Any) -> None:
        """Record the fixed overrides on ``trial`` and let ``configure`` suggest its parameters."""
        for key, value in self.fixed.items():
            trial.set_user_attr(key, value)
        self.configure(self.cfg, trial)
        both = sorted(set(trial.params) & set(self.fixed))
        if both:
            raise SweeperError(f"hydra.sweeper.custom_search_space={self.path} suggests {', '.join(both)}, which the "
                               f"overrides fix ({', '.join(f'{k}={self.fixed[k]}' for k in both)}): "
                               f"drop one of the two.")

    def dry_run(self, space: SearchSpace, directions: list[str], sample: Mapping[str, Any]) -> tuple[dict, dict]:
        """``(params, distributions)`` of a throwaway trial given ``sample`` for the space's parameters."""
        import optuna

        study = optuna.create_study(directions=directions, sampler=optuna.samplers.RandomSampler(0))
        study.enqueue_trial(dict(sample))
        trial = study.ask(space.distributions)
        try:
            self.apply(trial)
        except SweeperError:
            raise
        except Exception as exc:
            raise SweeperError(f"hydra.sweeper.custom_search_space={self.path} failed on a first trial: "
                               f"{_detail(exc)}.") from None
        return dict(trial.params), dict(trial.distributions)


def load(path: str) -> Callable[[Any, Any], None]:
    """The function at ``path``; a leading dot (the official example's ``.module.configure``) reads
    the module from the app's own folder, which Python puts on ``sys.path``."""
    import importlib

    module, _, name = path.lstrip(".").rpartition(".")
    try:
        function = getattr(importlib.import_module(module), name)
        if not callable(function):
            raise TypeError(f"it is a {type(function).__name__}, not a function")
        return function
    except Exception as exc:
        raise SweeperError(f"hydra.sweeper.custom_search_space={path} cannot be loaded ({_detail(exc)}): give the "
                           f"dotted path of a function configure(cfg, trial), e.g. mypackage.search.configure.") \
            from None


def _detail(exc: BaseException) -> str:
    """The innermost cause of ``exc`` on one line: ``ModuleNotFoundError: No module named 'x'``."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0].rstrip('.')}" if text else type(exc).__name__
