"""torch -> ONNX / TensorRT export and parity checks."""
