"""ntg-edge: learn real network traffic, generate synthetic flows from small quantized models."""

__version__ = "0.1.0"
