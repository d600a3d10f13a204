"""The step graph on ONNX Runtime: an Engine (runtime/engine.py) for the CPU, CUDA and TensorRT execution providers.

On the CPU the state goes in and out as numpy arrays: ONNX Runtime reads numpy inputs in place and hands back fresh
arrays, so an IOBinding would save no copy, while its ~25 binding calls per step cost about a quarter of a batch-1
step. On a GPU the state stays in ONNX Runtime's device buffers (OrtValues) and is fed back through an IOBinding.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .engine import (BIAS, IAT_LOGITS, IATS, LOGITS, NEXT_IAT, NEXT_TOKEN, STATE_IN, TEMPERATURE, TOKENS, UNIFORM,
                     State, initial_state_shape, select_rows, state_output)

PROVIDERS = ("auto", "cpu", "cuda", "tensorrt")


class ProviderError(ValueError):
    """An execution provider this onnxruntime install does not have."""


def cpu_threads() -> int:
    """The cores this process may run on (its affinity), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def available() -> set[str]:
    import onnxruntime as ort

    return set(ort.get_available_providers())


def ort_providers(provider: str = "auto") -> list:
    """The ONNX Runtime execution providers for `provider`, best first, limited to those this install has."""
    if provider not in PROVIDERS:
        raise ProviderError(f"device {provider!r}: expected one of {', '.join(PROVIDERS)}")
    have = available()
    want = {"cpu": [], "cuda": ["CUDAExecutionProvider"],
            "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
            "auto": ["TensorrtExecutionProvider", "CUDAExecutionProvider"]}[provider]
    if provider in ("cuda", "tensorrt") and want[0] not in have:
        raise ProviderError(f"device {provider!r}: onnxruntime has no {want[0]} (install ntg-edge[gpu]; "
                            f"available: {', '.join(sorted(have))})")
    chosen: list = []
    for p in want:
        if p not in have:
            continue
        if p == "TensorrtExecutionProvider":
            # fp16 kernels and an on-disk engine cache: building TensorRT engines takes minutes, so build once.
            cache = os.environ.get("NTG_TRT_CACHE", str(Path.home() / ".cache" / "ntg-edge" / "trt"))
            chosen.append((p, {"trt_fp16_enable": True, "trt_engine_cache_enable": True,
                               "trt_engine_cache_path": cache}))
        else:
            chosen.append(p)
    return chosen + ["CPUExecutionProvider"]


class OrtPast:
    """A state held as ONNX Runtime values on a GPU. `select` round-trips through the host, which the sampler does
    rarely (when a quarter of the batch has finished)."""

    def __init__(self, values: list, device: str) -> None:
        self.values, self.device = values, device

    def select(self, rows: np.ndarray) -> "OrtPast":
        import onnxruntime as ort

        return OrtPast([ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v.numpy()[rows]), self.device, 0)
                        for v in self.values], self.device)


class OrtEngine:
    """The Engine over an ONNX Runtime session of a bundle's step graph (which ends in the in-graph sampler)."""

    samples = True

    def __init__(self, model_path: str | Path, provider: str = "auto", threads: int | None = None) -> None:
        import onnxruntime as ort

        self._ort = ort
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads or cpu_threads()
        so.inter_op_num_threads = 1  # one step graph, sequential
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self.session = ort.InferenceSession(str(model_path), so, providers=ort_providers(provider))
        except ProviderError:
            raise
        except Exception as e:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...) share no base
            raise ValueError(f"{model_path}: ONNX Runtime cannot load it ({str(e).strip().splitlines()[0]})") from None
        self.provider = self.session.get_providers()[0]
        self.device = "cpu" if self.provider == "CPUExecutionProvider" else "cuda"
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        self._state_shapes = {n: s for n, s in shapes.items() if n.startswith(STATE_IN)}
        self._state_in = list(self._state_shapes)
        self._state_out = [state_output(n) for n in self._state_in]
        # the token head may be padded past the tokenizer's vocabulary (export/onnx.py pad_vocab); the bias is not
        self.vocab = int(shapes[BIAS][0])

    def _initial(self, batch: int) -> list[np.ndarray]:
        return [np.zeros(initial_state_shape(s, batch), np.float32) for s in self._state_shapes.values()]

    def _run(self, wanted: list[str], tokens: np.ndarray, iats: np.ndarray, state: State,
             u: np.ndarray | None = None, temperature: float = 1.0,
             bias: np.ndarray | None = None) -> tuple[list[np.ndarray], State]:
        """(the outputs `wanted`, as numpy arrays; the new state)."""
        b = tokens.shape[0]
        feeds = {TOKENS: np.ascontiguousarray(tokens, dtype=np.int64),
                 IATS: np.ascontiguousarray(iats, dtype=np.int64),
                 # wanting only the logits, the sampler still runs (ORT runs every node): any valid inputs do
                 UNIFORM: np.zeros((b, 2), np.float32) if u is None else np.ascontiguousarray(u, dtype=np.float32),
                 TEMPERATURE: np.array(temperature, np.float32),
                 BIAS: np.zeros(self.vocab, np.float32) if bias is None else bias}
        if self.device == "cpu":
            state = self._initial(b) if state is None else state
            out = self.session.run(wanted + self._state_out, {**feeds, **dict(zip(self._state_in, state))})
            return out[: len(wanted)], out[len(wanted) :]
        if state is None:
            state = OrtPast([self._ort.OrtValue.ortvalue_from_numpy(a, self.device, 0) for a in self._initial(b)],
                            self.device)
        io = self.session.io_binding()
        for name, value in feeds.items():
            io.bind_cpu_input(name, value)
        for name, value in zip(self._state_in, state.values):
            io.bind_ortvalue_input(name, value)
        for name in wanted + self._state_out:
            io.bind_output(name, self.device)
        self.session.run_with_iobinding(io)
        out = io.get_outputs()
        return [v.numpy() for v in out[: len(wanted)]], OrtPast(out[len(wanted) :], self.device)

    def step(self, tokens: np.ndarray, iats: np.ndarray, state: State) -> tuple[np.ndarray, np.ndarray, State]:
        (logits, iat_logits), state = self._run([LOGITS, IAT_LOGITS], tokens, iats, state)
        return logits[:, 0, : self.vocab], iat_logits[:, 0], state

    def sample_step(self, tokens: np.ndarray, iats: np.ndarray, state: State, u: np.ndarray, temperature: float,
                    bias: np.ndarray) -> tuple[np.ndarray, np.ndarray, State]:
        (ids, bins), state = self._run([NEXT_TOKEN, NEXT_IAT], tokens, iats, state, u, temperature, bias)
        return ids, bins, state

    def select(self, state: State, rows: np.ndarray) -> State:
        return state.select(rows) if isinstance(state, OrtPast) else select_rows(state, rows)
