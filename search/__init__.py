"""infersearch: search pruning, quantization, precision and batch size for the fastest model that keeps its accuracy."""

__version__ = "0.1.0"
