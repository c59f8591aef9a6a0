"""Loading saved models (MLflow URIs or files) with Keras safe_mode on."""

from __future__ import annotations

import os
from pathlib import Path

from ocrexp.errors import OcrexpError

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


def load_model(uri: str, tracking_uri: str | None = None):
    """Load a Keras model from ``runs:/…``, ``models:/…``, an artifact directory or a model file.
    ``runs:/<run>/…`` names the run as every ocrexp command does (``ocrexp.tracking.refs``).

    Always ``safe_mode=True``: a model file cannot run arbitrary code when it is loaded.
    """
    import keras

    path = Path(uri)
    if not path.exists():
        path = _download(uri, tracking_uri)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.suffix in MODEL_SUFFIXES)
        if not found:
            raise OcrexpError(f"{uri} holds no .keras or .h5 model file.")
        path = found[0]
    if path.suffix not in MODEL_SUFFIXES:
        raise OcrexpError(f"{uri} is not a Keras model file (expected one of {', '.join(MODEL_SUFFIXES)}).")
    try:
        return keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras and h5py raise ValueError, OSError, TypeError... on a bad file
        detail = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise OcrexpError(f"{uri} could not be loaded as a Keras model: {detail}") from None


def _download(uri: str, tracking_uri: str | None) -> Path:
    if "://" not in uri and not uri.startswith(("runs:", "models:")):
        raise OcrexpError(f"model {uri!r} is neither an existing file nor an MLflow URI (runs:/<id>/model, "
                          "models:/<name>/<version>, models:/<name>@<alias>).")
    import mlflow

    from ocrexp.tracking import store_process
    from ocrexp.tracking.refs import resolve_model_uri
    from ocrexp.tracking.store import tracking_uri as default_uri

    store_process.install()  # ocrexp-eval may have started one
    store = tracking_uri or default_uri()
    uri = resolve_model_uri(uri, store)
    # MLflow resolves runs:/ and models:/ through its global tracking URI (which it also exports as
    # MLFLOW_TRACKING_URI); a library call puts both back as they were.
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(store)
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except Exception as exc:  # MlflowException, OSError: report the URI, not the stack
        why = _not_registered(mlflow.MlflowClient(store), uri) if uri.startswith("models:/") else None
        raise OcrexpError(f"could not fetch model {uri!r} from {store}: {why or exc}") from None
    finally:
        mlflow.set_tracking_uri(before)
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)


def source_run_id(uri: str, tracking_uri: str | None = None) -> str | None:
    """The run that produced the model at ``uri`` (``runs:/``, or ``models:/`` with a version, an
    alias, ``latest`` or a logged model's id), if any."""
    if uri.startswith("runs:/"):
        from ocrexp.tracking.refs import resolve_model_uri
        from ocrexp.tracking.store import tracking_uri as default_uri

        return resolve_model_uri(uri, tracking_uri or default_uri())[len("runs:/"):].split("/", 1)[0]
    if not uri.startswith("models:/"):
        return None
    import mlflow
    from mlflow.exceptions import MlflowException

    from ocrexp.tracking import store_process

    store_process.install()
    client = mlflow.MlflowClient(tracking_uri)
    name, ref, alias = _models_uri_parts(uri)
    try:
        if alias:
            return client.get_model_version_by_alias(name, alias).run_id
        if ref is None:  # models:/m-<id>: a logged model, registered or not
            return client.get_logged_model(name).source_run_id
        if ref.isdigit():
            return client.get_model_version(name, ref).run_id
        if ref == "latest":
            versions = client.search_model_versions(f"name = '{name}'")
            return max(versions, key=lambda v: int(v.version)).run_id if versions else None
    except MlflowException as exc:
        raise OcrexpError(f"model {uri!r}: {_not_registered(client, uri) or exc}") from None
    return None  # a stage (models:/name/Production): MLflow resolves it, the source run stays unknown


def _models_uri_parts(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME/REF`` -> (NAME, REF, None); ``models:/NAME@ALIAS`` -> (NAME, None, ALIAS);
    ``models:/ID`` -> (ID, None, None)."""
    rest = uri[len("models:/"):].strip("/")
    if "@" in rest:
        name, _, alias = rest.partition("@")
        return name, None, alias
    name, _, ref = rest.partition("/")
    return name, ref or None, None


def _not_registered(client, uri: str) -> str | None:
    """Why the registry holds no model at ``uri``, naming what it does hold; None when it cannot tell."""
    from mlflow.exceptions import MlflowException

    name, ref, alias = _models_uri_parts(uri)
    try:
        model = client.get_registered_model(name)
    except MlflowException:
        if ref is None and alias is None:
            return None  # models:/<id> names a logged model, not a registered one
        try:
            names = sorted(m.name for m in client.search_registered_models(max_results=20))
        except MlflowException:
            return None
        known = f"registered models: {', '.join(names)}" if names else \
            "the registry is empty; train with tracking.register_as=<name> to register a model"
        return f"no registered model is named {name!r} ({known})."
    try:
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    except MlflowException:
        versions = []
    listed = ", ".join(map(str, versions)) if len(versions) <= 10 else f"{versions[0]} to {versions[-1]}"
    if alias is not None:
        aliases = ", ".join(f"@{a} (version {v})" for a, v in sorted(model.aliases.items())) or "none"
        return (f"model {name!r} has no alias {alias!r} (its aliases: {aliases}; set one in the MLflow UI or with "
                f"MlflowClient().set_registered_model_alias({name!r}, {alias!r}, <version>)).")
    if ref is None:
        return f"use models:/{name}/<version> or models:/{name}@<alias> (versions of {name!r}: {listed or 'none'})."
    if ref.isdigit():
        return f"model {name!r} has no version {ref} (its versions: {listed or 'none'})."
    return (f"model {name!r} has no version in stage {ref!r} (its versions: {listed or 'none'}; aliases replace "
            f"stages: models:/{name}@<alias>).")
