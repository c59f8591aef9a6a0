"""Reading whole numbers from images of handwriting with a digit classifier.

    from ocrexp.reading import NumberReader
    reader = NumberReader(keras_model)
    reading = reader.read_one("scan.png")          # Reading(number="4721", confidence=0.98, ...)
    results = reader.read(paths)                   # Reading or ImageError per path, in order

The stages, one module each: :mod:`~ocrexp.reading.decode` (any image to grayscale, with a pixel
cap), :mod:`~ocrexp.reading.normalize` (MNIST geometry), :mod:`~ocrexp.reading.segment` (glyphs
and cuts), :mod:`~ocrexp.reading.reader` (batched classification and the choice of cuts),
:mod:`~ocrexp.reading.pyfunc` (the MLflow model, which ``ocrexp.tracking.logged_models.log_reader``
logs) and :mod:`~ocrexp.reading.benchmark` (accuracy on generated numbers). Only numpy, Pillow and
SciPy load with this package; TensorFlow and MLflow load when a model is used or logged.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ocrexp.reading.decode import DEFAULT_MAX_PIXELS, load_image
from ocrexp.reading.errors import (
    BlankImageError,
    ImageError,
    ImageSizeError,
    NoDigitsError,
    UnreadableImageError,
    UnsupportedImageError,
)
from ocrexp.reading.normalize import normalize_digit, to_ink
from ocrexp.reading.reader import DigitReading, NumberReader, Prepared, Reading, prepare, prepare_all
from ocrexp.reading.segment import Glyph, find_glyphs

_LAZY = {
    "NumberReaderModel": "ocrexp.reading.pyfunc",
    "evaluate_reading": "ocrexp.reading.benchmark",
    "run_read_benchmark": "ocrexp.reading.benchmark",
}

__all__ = [
    "DEFAULT_MAX_PIXELS", "BlankImageError", "DigitReading", "Glyph", "ImageError", "ImageSizeError",
    "NoDigitsError", "NumberReader", "Prepared", "Reading", "UnreadableImageError", "UnsupportedImageError",
    "find_glyphs", "load_image", "normalize_digit", "prepare", "prepare_all", "to_ink", *_LAZY,
]


def __getattr__(name: str) -> Any:
    # MLflow-dependent parts load on first use, keeping `ocrexp --help` and the CLI start fast.
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
