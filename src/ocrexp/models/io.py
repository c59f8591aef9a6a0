"""Loading saved models (MLflow URIs or files) with Keras safe_mode on."""

from __future__ import annotations

from pathlib import Path

from ocrexp.errors import OcrexpError

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


def load_model(uri: str, tracking_uri: str | None = None):
    """Load a Keras model from ``runs:/…``, ``models:/…``, an artifact directory or a model file.

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
        raise OcrexpError(f"model {uri!r} is neither an existing file nor an MLflow URI (runs:/<id>/model, models:/<name>/<version>).")
    import mlflow

    from ocrexp.tracking.store import tracking_uri as default_uri

    mlflow.set_tracking_uri(tracking_uri or default_uri())
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except Exception as exc:  # MlflowException, OSError: report the URI, not the stack
        raise OcrexpError(f"could not fetch model {uri!r} from {mlflow.get_tracking_uri()}: {exc}") from None


def source_run_id(uri: str, tracking_uri: str | None = None) -> str | None:
    """The run that produced the model at ``uri`` (``runs:/`` or ``models:/``), if any."""
    if uri.startswith("runs:/"):
        return uri[len("runs:/"):].split("/", 1)[0]
    if uri.startswith("models:/"):
        import mlflow

        name, _, ref = uri[len("models:/"):].partition("/")
        client = mlflow.MlflowClient(tracking_uri)
        if ref.isdigit():
            return client.get_model_version(name, ref).run_id
        if ref.startswith("@") or ref:
            return client.get_model_version_by_alias(name, ref.lstrip("@")).run_id
    return None
