"""Logging a run's models: the Keras model's pinned requirements and the number reader.

Both go through ``ocrexp.compat.mlflow.log_model``: MLflow's own ``Model.log`` without its
serving-input and requirements checks, which cost a run seconds and cannot fail for these models
(ocrexp's tests serve both models for real, and the requirements are pinned from this very
environment by ``pip_requirements``). What is logged is the same. ``log_reader`` logs the number
reader (``ocrexp.reading.pyfunc``).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from ocrexp.compat.mlflow import log_model


def log_reader(keras_model, name: str = "reader", *, class_names: Sequence[str] | None = None,
               pixel_scale: float = 255.0, batch_size: int = 256, model_file: Path | None = None):
    """Log the number reader around ``keras_model`` into the active MLflow run as ``name``.

    ``pixel_scale`` is what the model's training pipeline divided uint8 pixels by, and
    ``class_names`` label its outputs (default ``"0"`` .. ``"9"``). ``model_file``: ``keras_model``
    already saved as a ``.keras`` file (the Keras flavor's copy), which spares saving it again.
    Returns MLflow's ``ModelInfo``.
    """
    import mlflow.pyfunc
    import pandas as pd

    from ocrexp.reading import pyfunc

    config = {"pixel_scale": float(pixel_scale), "batch_size": int(batch_size),
              "class_names": list(class_names) if class_names else None}
    with tempfile.TemporaryDirectory(prefix="ocrexp-reader-") as tmp:
        if model_file is None or not Path(model_file).is_file():
            model_file = Path(tmp) / "digits.keras"
            keras_model.save(model_file)
        return log_model(
            mlflow.pyfunc, name,
            python_model=str(Path(pyfunc.__file__).with_name("served_model.py")),
            artifacts={pyfunc.KERAS_ARTIFACT: str(model_file)},
            code_paths=[str(_package_copy())],
            model_config=config,
            signature=pyfunc.signature(),
            input_example=pd.DataFrame({pyfunc.INPUT_COLUMN: [pyfunc.example_png()]}),
            pip_requirements=pip_requirements(),
        )


def pip_requirements() -> list[str]:
    """What serving a logged model needs, pinned to this environment's versions. Passing them to
    MLflow explicitly spares it inferring them, which re-imports the model in a subprocess."""
    return list(_pins())


@functools.cache  # a process's environment does not change under it
def _pins() -> tuple[str, ...]:
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for dist in ("mlflow", "tensorflow", "keras", "numpy", "pandas", "pillow", "scipy"):
        try:
            pins.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            pins.append(dist)
    return tuple(pins)


_code: dict[int, Path] = {}  # by process id: a forked process makes (and removes) its own


def _package_copy() -> Path:
    """A clean copy of the ``ocrexp`` package (no caches) to ship as the reader's code. Made once per
    process, which runs the code it was started with (a sweep worker logs a reader per trial), and
    removed when the process exits."""
    pid = os.getpid()
    if pid not in _code:
        import ocrexp

        tmp = Path(tempfile.mkdtemp(prefix="ocrexp-code-"))
        shutil.copytree(Path(ocrexp.__file__).parent, tmp / "code" / "ocrexp",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        atexit.register(_remove_copy, pid, tmp)
        _code[pid] = tmp / "code" / "ocrexp"
    return _code[pid]


def _remove_copy(pid: int, tmp: Path) -> None:
    if os.getpid() == pid:
        shutil.rmtree(tmp, ignore_errors=True)
