"""ONNX step graph -> TensorRT engine (model.plan), with the TensorRT 10 Python API.

NOT MEASURED: TensorRT cannot be installed on this project's development machines; this module is written against
the documented API (Builder / OnnxParser / IBuilderConfig / IOptimizationProfile) and has not been run. Every entry
point raises TensorRTUnavailable with a clear message when `import tensorrt` fails.

Choices:
- Build from the fp32 graph exported at opset 20 (plain MatMul/Softmax/ReduceMean ops): the opset-23 `Attention` and
  `RMSNormalization` ops are only parsed by recent TensorRT ONNX parsers, and the int8 ONNX graph of
  quantize_dynamic (DynamicQuantizeLinear, MatMulInteger) is not supported by TensorRT at all.
- fp16 = BuilderFlag.FP16. int8 = BuilderFlag.INT8 (implicit quantization, with fp16 fallback) calibrated by an
  entropy calibrator over real token sequences; implicit INT8 is deprecated in TensorRT 10 in favour of explicit Q/DQ
  graphs (ModelOpt), kept here because it needs no extra tool.
- One optimisation profile: batch 1..max_batch, seq 1..block_size, past 0..block_size-1 (empty tensors are legal in
  TensorRT, which is how the first step's zero-length past is fed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class TensorRTUnavailable(RuntimeError):
    pass


def _trt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise TensorRTUnavailable(f"TensorRT is not installed ({e}): pip install 'ntg-edge[gpu]' on a machine with "
                                  "an NVIDIA GPU, or use the ONNX Runtime bundle") from None
    return trt


def build_engine(onnx_path: str | Path, plan_path: str | Path, *, n_layers: int, n_heads: int, head_dim: int,
                 block_size: int, max_batch: int = 1024, opt_batch: int = 256, fp16: bool = True,
                 int8: bool = False, calibration: list[tuple[np.ndarray, np.ndarray]] | None = None,
                 workspace_gib: float = 4.0) -> Path:
    """Parse `onnx_path` (the step graph) and write a serialized engine to `plan_path`."""
    trt = _trt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path}: TensorRT cannot parse the graph: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    opt_past = block_size // 4
    for name in ("tokens", "iats"):
        profile.set_shape(name, (1, 1), (opt_batch, 1), (max_batch, block_size))
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        if name.startswith("past_"):
            profile.set_shape(name, (1, n_heads, 0, head_dim), (opt_batch, n_heads, opt_past, head_dim),
                              (max_batch, n_heads, block_size - 1, head_dim))
    config.add_optimization_profile(profile)
    if int8:
        if not calibration:
            raise ValueError("int8 needs calibration batches of real (tokens, iats)")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _calibrator(trt, calibration, n_layers, n_heads, head_dim)
        config.set_calibration_profile(profile)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"{onnx_path}: TensorRT engine build failed (see the log above)")
    plan_path = Path(plan_path)
    plan_path.write_bytes(bytes(plan))
    return plan_path


def _calibrator(trt, batches, n_layers: int, n_heads: int, head_dim: int):
    """IInt8EntropyCalibrator2 feeding prefill batches (tokens, iats) with an empty past; buffers via ORT OrtValues."""
    import onnxruntime as ort

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.batches, self.keep = list(batches), []

        def get_batch_size(self) -> int:
            return 1  # ignored with explicit batch

        def get_batch(self, names):
            if not self.batches:
                return None
            tokens, iats = self.batches.pop(0)
            empty = np.zeros((tokens.shape[0], n_heads, 0, head_dim), np.float32)
            host = {"tokens": tokens, "iats": iats}
            self.keep = [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(host.get(n, empty)), "cuda", 0)
                         for n in names]
            return [v.data_ptr() for v in self.keep]

        def read_calibration_cache(self):
            return None

        def write_calibration_cache(self, cache) -> None:
            pass

    return Calibrator()
