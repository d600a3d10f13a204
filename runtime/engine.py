"""The engine contract: what the sampler (runtime/sampler.py) asks of a model runtime, and the step graph's input and
output names, in one place. ONNX Runtime (runtime/ort.py), TensorRT (runtime/trt.py) and torch (train/engine.py)
implement it.

A generator is a recurrent step: (tokens, iats, state) -> (next-token scores, next-iat scores, new state). The state
is the model's own business: a key/value cache per layer for the LLaMA decoder, a convolution window and an SSM state
per layer for a state-space model. The sampler never looks inside it; it starts from `None` and only asks the engine
to keep some batch rows of it (`select`) when flows finish, so any model whose state has the batch first fits.

In a graph, every state input `past_<x>` has the output `present_<x>` that feeds it at the next step. An input state
whose shape has dynamic dimensions other than the batch starts empty along them (a cache of length 0); a state with
only static dimensions starts as zeros (a recurrent state).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

# -- the step graph's names (export/onnx.py writes them, the engines read them) ------------------------------------------
TOKENS, IATS = "tokens", "iats"  # (B, T) int64: packet tokens and inter-arrival bins
LOGITS, IAT_LOGITS = "logits", "iat_logits"  # (B, 1, V), (B, 1, K) float32: the last position's scores
UNIFORM, TEMPERATURE, BIAS = "uniform", "temperature", "bias"  # the in-graph sampler's inputs: (B, 2), (), (V,)
NEXT_TOKEN, NEXT_IAT = "next_token", "next_iat"  # (B,) int64: what the in-graph sampler drew
STATE_IN, STATE_OUT = "past_", "present_"

State = Any  # an engine's own recurrent state; None before the first step


def state_output(name: str) -> str:
    """The output that feeds state input `name` at the next step: past_key_0 -> present_key_0."""
    return STATE_OUT + name[len(STATE_IN) :]


def initial_state_shape(shape: list, batch: int) -> tuple[int, ...]:
    """A state input's shape at the first step: batch first, other dynamic dimensions (names, None, -1) empty."""
    return (batch, *(d if isinstance(d, int) and d >= 0 else 0 for d in shape[1:]))


def select_rows(state: State, rows: np.ndarray) -> State:
    """The batch rows `rows` of a state held as (nested) lists/tuples of batch-first arrays or tensors."""
    if isinstance(state, (list, tuple)):
        return type(state)(select_rows(s, rows) for s in state)
    return state[rows]


@runtime_checkable
class Engine(Protocol):
    """A model runtime the sampler can drive."""

    provider: str  # where it runs, for reports: "CPUExecutionProvider", "TensorRT", "torch cpu", ...
    samples: bool  # whether `sample_step` draws inside the engine (only the ids leave it)

    def step(self, tokens: np.ndarray, iats: np.ndarray, state: State) -> tuple[np.ndarray, np.ndarray, State]:
        """tokens, iats (B, T) int64 -> the last position's (B, V) token and (B, K) iat scores, the new state."""
        ...

    def sample_step(self, tokens: np.ndarray, iats: np.ndarray, state: State, u: np.ndarray, temperature: float,
                    bias: np.ndarray) -> tuple[np.ndarray, np.ndarray, State]:
        """One step and the draw inside the engine, by runtime/sampler.py's rule (`sample`) from the uniforms `u`
        (B, 2) and the (V,) `bias`: (next token ids, next iat bins, new state). Only where `samples` is true."""
        ...

    def select(self, state: State, rows: np.ndarray) -> State:
        """The state of batch rows `rows` only (finished flows leave the batch)."""
        ...
