"""A run directory: `model.safetensors` (weights, no pickle) + `config.yaml` (model, tokenizer and class list)."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

from ..runtime.flows import write_atomic
from ..runtime.tokenizer import Tokenizer
from .model import ModelConfig, Transformer

WEIGHTS, CONFIG = "model.safetensors", "config.yaml"


def save_run(run: str | Path, model: Transformer, tok: Tokenizer, extra: dict | None = None) -> None:
    run = Path(run)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    write_atomic(run / WEIGHTS, lambda tmp: save_file(state, tmp))
    cfg = {"model": model.cfg.to_dict(), "tokenizer": tok.to_dict(), **(extra or {})}
    write_atomic(run / CONFIG, lambda tmp: Path(tmp).write_text(yaml.safe_dump(cfg, sort_keys=False)))


def read_config(run: str | Path) -> dict:
    path = Path(run) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{run}: not a run directory (no {CONFIG})")
    return yaml.safe_load(path.read_text())


def load_run(run: str | Path, device: str = "cpu") -> tuple[Transformer, Tokenizer]:
    cfg = read_config(run)
    if "quantization" in cfg:  # a torchao int8 run (train/quantize.py)
        from .quantize import load_quantized

        return load_quantized(run, device)
    model = Transformer(ModelConfig(**cfg["model"]))
    model.load_state_dict(load_file(Path(run) / WEIGHTS, device="cpu"))
    return model.to(device).eval(), Tokenizer.from_dict(cfg["tokenizer"])
