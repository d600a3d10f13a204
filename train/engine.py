"""A torch model as an Engine (runtime/engine.py): the numpy sampler draws from its logits."""

from __future__ import annotations

import numpy as np
import torch

from ..runtime.engine import State, select_rows
from .model import Transformer


class TorchEngine:
    samples = False

    def __init__(self, model: Transformer) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.provider = f"torch {self.device.type}"

    @torch.inference_mode()
    def step(self, tokens: np.ndarray, iats: np.ndarray, state: State) -> tuple[np.ndarray, np.ndarray, State]:
        x, bins = torch.from_numpy(tokens).to(self.device), torch.from_numpy(iats).to(self.device)
        logits, iat_logits, state = self.model(x, bins, state, last_only=True)
        return logits[:, -1].float().cpu().numpy(), iat_logits[:, -1].float().cpu().numpy(), state

    def sample_step(self, *args):
        raise NotImplementedError("torch models are sampled in numpy (samples = False)")

    def select(self, state: State, rows: np.ndarray) -> State:
        return select_rows(state, torch.from_numpy(rows).to(self.device))
