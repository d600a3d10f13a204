"""ONNX step graph -> TensorRT engine (model.plan), with the TensorRT 10 Python API.

NOT MEASURED: TensorRT cannot be installed on this project's development machines; this module is written against
the documented API (Builder / OnnxParser / IBuilderConfig / IOptimizationProfile) and has not been run. Every entry
point raises TensorRTUnavailable with a clear message when `import tensorrt` fails.

Choices:
- Build from the fp32 graph exported at opset 20 (plain MatMul/Softmax/ReduceMean ops): the opset-23 `Attention` and
  `RMSNormalization` ops are only parsed by recent TensorRT ONNX parsers, and the int8 ONNX graph of
  quantize_dynamic (DynamicQuantizeLinear, MatMulInteger) is not supported by TensorRT at all.
- fp16 = BuilderFlag.FP16. No int8 engine: TensorRT 10 deprecates implicit (calibrated) INT8 in favour of explicit
  Q/DQ graphs, which quantize_dynamic does not produce; an int8 engine waits for a GPU to measure it on.
- One optimisation profile: batch 1..max_batch, seq 1..block_size, past 0..block_size-1 (empty tensors are legal in
  TensorRT, which is how the first step's zero-length past is fed).
"""

from __future__ import annotations

from pathlib import Path

from ..runtime.engine import IATS, STATE_IN, TOKENS


class TensorRTUnavailable(RuntimeError):
    pass


def _trt():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise TensorRTUnavailable(f"TensorRT is not installed ({e}): pip install 'ntg-edge[gpu]' on a machine with "
                                  "an NVIDIA GPU, or use the ONNX Runtime bundle") from None
    return trt


def build_engine(onnx_path: str | Path, plan_path: str | Path, *, n_heads: int, head_dim: int,
                 block_size: int, max_batch: int = 1024, opt_batch: int = 256, fp16: bool = True,
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
    for name in (TOKENS, IATS):
        profile.set_shape(name, (1, 1), (opt_batch, 1), (max_batch, block_size))
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        if name.startswith(STATE_IN):
            profile.set_shape(name, (1, n_heads, 0, head_dim), (opt_batch, n_heads, opt_past, head_dim),
                              (max_batch, n_heads, block_size - 1, head_dim))
    config.add_optimization_profile(profile)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"{onnx_path}: TensorRT engine build failed (see the log above)")
    plan_path = Path(plan_path)
    plan_path.write_bytes(bytes(plan))
    return plan_path
