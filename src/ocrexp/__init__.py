"""ocrexp: configuration-driven experiments for handwritten-digit OCR on TensorFlow/Keras."""

__version__ = "0.1.0"

from ocrexp.console import quiet_libraries as _quiet_libraries

# Here, not in the entry points: every process that runs ocrexp code (sweep workers included)
# imports this package before TensorFlow or MLflow, and their start-up chatter is decided at load.
_quiet_libraries()
