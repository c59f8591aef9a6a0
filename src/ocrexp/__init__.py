"""ocrexp: configuration-driven experiments for handwritten-digit OCR on TensorFlow/Keras."""

__version__ = "0.1.0"
