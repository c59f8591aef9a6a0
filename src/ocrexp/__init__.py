"""ocrexp: configuration-driven experiments for handwritten-digit OCR on TensorFlow/Keras."""

__version__ = "0.1.0"

import os as _os

# TensorFlow's C++ start-up chatter (CUDA probes on CPU machines) drowns the useful output.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
