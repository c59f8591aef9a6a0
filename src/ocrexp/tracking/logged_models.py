"""Logging MLflow models without the checks that cost a run seconds and cannot fail for ours.

``mlflow.<flavor>.log_model`` does two things beyond saving and uploading the model:

- it loads the saved model back and predicts its input example (the "serving input" check,
  ≈0.7 s for the Keras model, ≈0.3 s for the reader); ocrexp's tests serve both models for real
  instead, so each run need not;
- it checks that this environment satisfies the model's pip requirements, which first maps every
  installed distribution to its modules (≈1 s per process); ocrexp pins the requirements from this
  very environment (``ocrexp.reading.pyfunc.pip_requirements``), so they are satisfied by
  construction.

``log(flavor, ...)`` is ``mlflow.models.Model.log``, MLflow's own path for every flavor's
``log_model``, with both turned off. What is logged (MLmodel, signature, input example, serving
input example, requirements, artifacts) is the same.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable


class _Unchecked:
    """``flavor`` as ``Model.log`` wants it, minus the ``validate_serving_input`` switch, which
    ``Model.log`` reads from its keyword arguments and then forwards to the flavor's ``save_model``
    (which rejects it). ``saved(path)`` sees the local folder the model was saved in, before upload."""

    def __init__(self, flavor, saved: Callable[[str], None] | None = None):
        self._flavor, self._saved = flavor, saved
        self.__name__ = flavor.__name__  # the logged model's flavor name

    def save_model(self, *args, validate_serving_input: bool = True, **kwargs):
        result = self._flavor.save_model(*args, **kwargs)
        if self._saved is not None:
            self._saved(kwargs["path"] if "path" in kwargs else args[0])
        return result


def log(flavor, name: str, *, saved: Callable[[str], None] | None = None, **kwargs: Any):
    """Log a model of ``flavor`` (``mlflow.tensorflow``, ``mlflow.pyfunc``...) into the active run
    as ``name``; ``kwargs`` are the flavor's ``log_model`` arguments, and ``saved(path)`` is called
    with the folder the model was saved in before it is uploaded (to reuse its files). Returns
    MLflow's ``ModelInfo``."""
    from mlflow.models import Model

    with _requirements_trusted():
        return Model.log(artifact_path=None, name=name, flavor=_Unchecked(flavor, saved), validate_serving_input=False,
                         **kwargs)


@contextmanager
def _requirements_trusted():
    """Skip MLflow's check of the pip requirements against this environment, while logging."""
    from mlflow.utils import environment

    check = getattr(environment, "warn_dependency_requirement_mismatches", None)
    if check is None:  # a later MLflow without the check: nothing to skip
        yield
        return
    environment.warn_dependency_requirement_mismatches = lambda requirements: None
    try:
        yield
    finally:
        environment.warn_dependency_requirement_mismatches = check
