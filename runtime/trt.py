"""A TensorRT engine (a bundle's model.plan) as an Engine (runtime/engine.py). No torch.

NOT MEASURED: written against the documented TensorRT 10 Python API (named tensors, set_input_shape,
set_tensor_address, execute_async_v3); TensorRT cannot be installed on the development machines. Device memory comes
from onnxruntime-gpu OrtValues (the `gpu` extra already installs it), so no pycuda/cupy dependency. The state stays
on the GPU: each step's present buffers are the next step's past. The plan's graph has no sampler: the numpy sampler
draws from its logits.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from .engine import IAT_LOGITS, IATS, LOGITS, STATE_IN, TOKENS, State, initial_state_shape, state_output
from .ort import OrtPast


def tensorrt_available() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


class TrtEngine:
    samples = False
    provider = "TensorRT"

    def __init__(self, plan: str | Path) -> None:
        try:
            import tensorrt as trt
        except ImportError as e:
            raise RuntimeError(f"{plan}: TensorRT is not installed ({e}); load the bundle's model.onnx instead") from None
        import onnxruntime as ort

        self._ort = ort
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(Path(plan).read_bytes())
        if self.engine is None:
            raise RuntimeError(f"{plan}: TensorRT could not deserialize the engine (other TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.state_in = [n for n in self.inputs if n.startswith(STATE_IN)]
        self.state_out = [state_output(n) for n in self.state_in]

    def _dev(self, a: np.ndarray):
        return self._ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a), "cuda", 0)

    def step(self, tokens: np.ndarray, iats: np.ndarray, state: State) -> tuple[np.ndarray, np.ndarray, State]:
        b = tokens.shape[0]
        if state is None:
            state = OrtPast([self._dev(np.zeros(initial_state_shape(list(self.engine.get_tensor_shape(n)), b),
                                                np.float32)) for n in self.state_in], "cuda")
        feeds = {TOKENS: self._dev(tokens.astype(np.int64)), IATS: self._dev(iats.astype(np.int64)),
                 **dict(zip(self.state_in, state.values))}
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
        state = OrtPast([outs[n] for n in self.state_out], "cuda")
        return outs[LOGITS].numpy()[:, 0], outs[IAT_LOGITS].numpy()[:, 0], state  # (B, 1, V) -> (B, V)

    def sample_step(self, *args):
        raise NotImplementedError("the TensorRT plan has no in-graph sampler (samples = False)")

    def select(self, state: State, rows: np.ndarray) -> State:
        return state.select(rows)
