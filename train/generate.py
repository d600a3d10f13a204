"""Generation from a torch model: a step function for the shared numpy sampler (runtime/sampler.py)."""

from __future__ import annotations

import numpy as np
import torch

from ..runtime.sampler import StepFn
from .model import Transformer


def torch_step(model: Transformer) -> StepFn:
    device = next(model.parameters()).device

    @torch.inference_mode()
    def step(tokens: np.ndarray, iats: np.ndarray, past):
        x, bins = torch.from_numpy(tokens).to(device), torch.from_numpy(iats).to(device)
        logits, iat_logits, present = model(x, bins, past, last_only=True)
        return logits[:, -1].float().cpu().numpy(), iat_logits[:, -1].float().cpu().numpy(), present

    return step
