"""The number reader as an MLflow pyfunc model, logged beside the Keras model of a training run.

    from ocrexp.tracking.logged_models import log_reader
    log_reader(keras_model)                      # inside an active run: artifact "reader"
    mlflow models serve -m runs:/<run_id>/reader --env-manager local --host 127.0.0.1 -p 5001
    curl -d '{"dataframe_split": {"columns": ["image"], "data": [["<base64 PNG>"]]}}' \
         -H 'Content-Type: application/json' http://127.0.0.1:5001/invocations
    # {"predictions": [{"number": "4721", "confidence": 0.98, "digit_confidences": [...], "error": ""}]}

The logged model is self-contained and holds no pickle: the Keras model travels as an artifact
(a ``.keras`` file, loaded with ``safe_mode=True``, so loading it cannot run code from the file),
this package's source as ``code_paths`` and the model itself as a script (``served_model.py``,
MLflow's "models from code"), so a server needs only the pinned pip requirements, not ocrexp.

Input: a column ``image`` of encoded image bytes (PNG, JPEG, BMP, TIFF...; base64 over REST, as
MLflow does for binary columns), ``.npy`` bytes, or, in-process, numpy pixel arrays or base64
strings. Output, one row per image: ``number``, ``confidence`` (product of the digits'),
``digit_confidences`` and ``error`` (empty when the image was read; the other rows are read
regardless).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

INPUT_COLUMN = "image"
KERAS_ARTIFACT = "keras_model"


class NumberReaderModel(mlflow.pyfunc.PythonModel):
    """``mlflow.pyfunc`` wrapper of :class:`~ocrexp.reading.reader.NumberReader`."""

    def load_context(self, context) -> None:
        from ocrexp.console import tensorflow_chatter_hidden

        with tensorflow_chatter_hidden():  # a model server's first TensorFlow import, if it is one
            import keras

        from ocrexp.reading.reader import NumberReader

        config = dict(context.model_config or {})
        model = keras.saving.load_model(context.artifacts[KERAS_ARTIFACT], safe_mode=True, compile=False)
        self._reader = NumberReader(model, class_names=config.get("class_names"),
                                    pixel_scale=float(config.get("pixel_scale", 255.0)),
                                    batch_size=int(config.get("batch_size", 256)))

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Read every image in ``model_input``; see the module docstring for the columns."""
        from ocrexp.reading.errors import ImageError, UnreadableImageError

        sources: list[Any] = []
        for value in _column(model_input):
            try:
                sources.append(_as_source(value))
            except UnreadableImageError as exc:
                sources.append(exc)
        readable = [s for s in sources if not isinstance(s, ImageError)]
        readings = iter(self._reader.read(readable))
        rows = []
        for source in sources:
            result = source if isinstance(source, ImageError) else next(readings)
            if isinstance(result, ImageError):
                rows.append({"number": "", "confidence": 0.0, "digit_confidences": [], "error": str(result)})
            else:
                rows.append({"number": result.number, "confidence": result.confidence,
                             "digit_confidences": [d.confidence for d in result.digits], "error": ""})
        return pd.DataFrame(rows, columns=["number", "confidence", "digit_confidences", "error"])


def signature():
    """Input: one binary column ``image``. Output: number, confidence, digit confidences, error."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema
    from mlflow.types.schema import Array

    return ModelSignature(
        inputs=Schema([ColSpec(DataType.binary, INPUT_COLUMN)]),
        outputs=Schema([ColSpec(DataType.string, "number"), ColSpec(DataType.double, "confidence"),
                        ColSpec(Array(DataType.double), "digit_confidences"),
                        ColSpec(DataType.string, "error")]),
    )


def example_png() -> bytes:
    """A small drawn "17" as PNG bytes: the logged input example and a smoke test."""
    import io

    from PIL import Image, ImageDraw

    img = Image.new("L", (96, 64), 255)
    draw = ImageDraw.Draw(img)
    draw.line([(22, 14), (28, 10), (28, 54)], fill=20, width=5)
    draw.line([(48, 12), (74, 12), (58, 54)], fill=20, width=5)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _column(model_input) -> list:
    if isinstance(model_input, pd.DataFrame):
        column = INPUT_COLUMN if INPUT_COLUMN in model_input.columns else model_input.columns[0]
        return list(model_input[column])
    if isinstance(model_input, dict):
        value = model_input.get(INPUT_COLUMN, next(iter(model_input.values()), []))
        return list(value) if isinstance(value, (list, tuple, np.ndarray, pd.Series)) else [value]
    if isinstance(model_input, (bytes, str)):
        return [model_input]
    return list(model_input)


def _as_source(value):
    """Image bytes and arrays pass through; base64 (as text, or as its bytes, which is how some
    MLflow input formats deliver a binary column) is decoded first."""
    from ocrexp.reading.errors import UnreadableImageError

    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _unbase64(bytes(value)) or bytes(value)
    if isinstance(value, str):
        decoded = _unbase64(value.encode("ascii", "replace"))
        if decoded is None:
            raise UnreadableImageError("string input is not base64-encoded image bytes")
        return decoded
    if isinstance(value, (list, tuple)):
        return np.asarray(value)
    raise UnreadableImageError(f"cannot read an image from a {type(value).__name__}; send image bytes or a pixel array")


def _unbase64(data: bytes) -> bytes | None:
    """The decoded bytes if ``data`` is entirely base64 text (image formats never are), else None."""
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
    return decoded or None
