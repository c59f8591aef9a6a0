"""MLflow's private parts that ocrexp relies on: tested with mlflow 3.18.0, read in the source of 3.0.0."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ocrexp.compat import library_changed

CHECKED = "3.0.0 to 3.18.0"


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


def log_model(flavor, name: str, *, saved: Callable[[str], None] | None = None, **kwargs: Any):
    """Log a model of ``flavor`` (``mlflow.tensorflow``, ``mlflow.pyfunc``...) into the active run as
    ``name``, as the flavor's ``log_model`` would (``kwargs`` are its arguments), without two checks
    that cost every run seconds and cannot fail for ocrexp's models; ``saved(path)`` is called with
    the folder the model was saved in, before it is uploaded. Returns MLflow's ``ModelInfo``.

    - The serving-input check: ``Model.log`` loads the saved model back and predicts its input
      example. ``validate_serving_input=False`` turns it off, a keyword ``Model.log`` reads but does
      not document, and then passes on to the flavor's ``save_model``, which rejects it.
    - The requirements check: while the flavor saves, the private
      ``mlflow.utils.environment.warn_dependency_requirement_mismatches`` maps every installed
      distribution to its modules to compare them with the model's pip requirements. ocrexp pins
      those from this very environment, so the function is replaced by a no-op while logging.

    MLflow has no public switch for either. Both only save time, so when MLflow changes under them
    the model is logged with the checks, and the hook's test is what fails. Checked with mlflow
    3.0.0 to 3.18.0.
    """
    from mlflow.models import Model

    with _requirements_trusted():
        return Model.log(artifact_path=None, name=name, flavor=_Unchecked(flavor, saved), validate_serving_input=False,
                         **kwargs)


@contextmanager
def _requirements_trusted() -> Iterator[None]:
    from mlflow.utils import environment

    check = getattr(environment, "warn_dependency_requirement_mismatches", None)
    if check is None:
        yield
        return
    environment.warn_dependency_requirement_mismatches = lambda requirements: None
    try:
        yield
    finally:
        environment.warn_dependency_requirement_mismatches = check


def forget_active_run() -> None:
    """Leave this thread's active MLflow run without writing to the store.

    ``mlflow.end_run`` records the run's end, which on a locked store waits for the lock and then
    fails. The fluent API has no public way to drop its active run otherwise: it lives on the
    private ``mlflow.tracking.fluent._active_run_stack``. Without it the thread's next
    ``mlflow.start_run`` would fail (a run is already active), so the hook raises ``CompatError``
    when the stack is gone. Checked with mlflow 3.0.0 to 3.18.0.
    """
    from mlflow.tracking import fluent

    stack = getattr(fluent, "_active_run_stack", None)
    if not callable(getattr(stack, "get", None)):
        raise library_changed("mlflow", "ocrexp.compat.mlflow.forget_active_run",
                              "mlflow.tracking.fluent._active_run_stack", CHECKED)
    runs = stack.get()
    if runs:
        runs.pop()


# -- the tracking-store registry (ocrexp.tracking.store_process) -----------------------------------
STORE_REGISTRY_CHECKED = "3.18.0"


def _store_registry():
    from mlflow.tracking._tracking_service import utils

    registry = getattr(utils, "_tracking_store_registry", None)
    if not callable(getattr(registry, "register", None)) or not callable(getattr(registry, "get_store", None)):
        return None, utils
    return registry, utils


def _forget_opened_stores(registry) -> None:
    """MLflow keeps each store it opened, by URI: drop them, so the next client asks the builder again."""
    cached = getattr(registry, "_get_store_with_resolved_uri", None)
    if callable(getattr(cached, "cache_clear", None)):
        cached.cache_clear()


def route_sqlite_stores(builder: Callable[..., Any]) -> bool:
    """From now on, every ``MlflowClient`` (and fluent call) of this process gets its tracking store
    for a ``sqlite`` URI from ``builder(store_uri=..., artifact_uri=...)``; False (nothing changed)
    when MLflow no longer lets it.

    MLflow picks a tracking store by the URI's scheme from a registry whose ``register`` is public,
    but the registry itself is the private ``mlflow.tracking._tracking_service.utils._tracking_store_registry``;
    the public way (a ``mlflow.tracking_store`` entry point) would change every process of the
    environment, not one. The store server only saves time, so when the registry is gone the caller
    opens the store itself, as without a server, and the hook's test is what fails. Checked with
    mlflow 3.18.0.
    """
    registry, _ = _store_registry()
    if registry is None:
        return False
    registry.register("sqlite", builder)
    _forget_opened_stores(registry)
    return True


def restore_sqlite_stores() -> None:
    """Undo :func:`route_sqlite_stores`: MLflow opens ``sqlite`` stores itself again (with its private
    ``_get_sqlalchemy_store``, the builder it registers at import). Checked with mlflow 3.18.0."""
    registry, utils = _store_registry()
    own = getattr(utils, "_get_sqlalchemy_store", None)
    if registry is None or own is None:
        raise library_changed("mlflow", "ocrexp.compat.mlflow.restore_sqlite_stores",
                              "mlflow.tracking._tracking_service.utils._get_sqlalchemy_store", STORE_REGISTRY_CHECKED)
    registry.register("sqlite", own)
    _forget_opened_stores(registry)


def open_tracking_store(store_uri: str, artifact_uri: str | None = None) -> Any:
    """The tracking store MLflow opens for ``store_uri`` (an ``SqlAlchemyStore`` for ``sqlite``), as an
    ``MlflowClient`` would get it. The store server calls its methods for the run's process.

    ``MlflowClient`` keeps its store on private attributes; MLflow's registry builds it with the
    defaults a client would use (the artifact root, workspaces), which building the store class
    directly would have to copy. Raises ``CompatError`` when the registry is gone. Checked with
    mlflow 3.18.0.
    """
    registry, _ = _store_registry()
    if registry is None:
        raise library_changed("mlflow", "ocrexp.compat.mlflow.open_tracking_store",
                              "mlflow.tracking._tracking_service.utils._tracking_store_registry",
                              STORE_REGISTRY_CHECKED)
    return registry.get_store(store_uri, artifact_uri)
