"""Run a TensorRT engine (a bundle's model.plan) as a sampler step function. No torch.

NOT MEASURED: written against the documented TensorRT 10 Python API (named tensors, set_input_shape,
set_tensor_address, execute_async_v3); TensorRT cannot be installed on the development machines. Device memory comes
from onnxruntime-gpu OrtValues (the `gpu` extra already installs it), so no pycuda/cupy dependency. The key/value
cache stays on the GPU: each step's present buffers are the next step's past.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .bundle import OrtPast


def tensorrt_available() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


class TrtEngine:
    def __init__(self, plan: str | Path) -> None:
        try:
            import tensorrt as trt
        except ImportError as e:
            raise RuntimeError(f"{plan}: TensorRT is not installed ({e}); load the bundle's model.onnx instead") from None
        import onnxruntime as ort

        self._ort = ort
        self.provider = "TensorRT"
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(Path(plan).read_bytes())
        if self.engine is None:
            raise RuntimeError(f"{plan}: TensorRT could not deserialize the engine (other TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.past_names = [n for n in self.inputs if n.startswith("past_")]
        self.present_names = [n.replace("past_", "present_", 1) for n in self.past_names]
        shape = self.engine.get_tensor_shape(self.past_names[0])  # (-1, heads, -1, head_dim)
        self.heads, self.head_dim = int(shape[1]), int(shape[3])

    def _dev(self, a: np.ndarray):
        return self._ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a), "cuda", 0)

    def __call__(self, tokens: np.ndarray, iats: np.ndarray, past):
        b = tokens.shape[0]
        if past is None:
            empty = np.zeros((b, self.heads, 0, self.head_dim), np.float32)
            past = OrtPast([self._dev(empty) for _ in self.past_names], "cuda")
        feeds = {"tokens": self._dev(tokens.astype(np.int64)), "iats": self._dev(iats.astype(np.int64)),
                 **dict(zip(self.past_names, past.values))}
        for name, value in feeds.items():
            self.context.set_input_shape(name, tuple(value.shape()))
            self.context.set_tensor_address(name, value.data_ptr())
        outs = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            outs[name] = self._ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, "cuda", 0)
            self.context.set_tensor_address(name, outs[name].data_ptr())
        # Stream 0 = the legacy default stream, which OrtValue's device->host copies below synchronise with.
        if not self.context.execute_async_v3(0):
            raise RuntimeError("TensorRT execution failed")
        present = OrtPast([outs[n] for n in self.present_names], "cuda")
        return outs["logits"].numpy()[:, 0], outs["iat_logits"].numpy()[:, 0], present  # (B, 1, V) -> (B, V)
