"""A run directory: `model.safetensors` (weights, no pickle), `config.yaml` (model, tokenizer with the class list,
training summary) and `manifest.json` (their sha256, checked before loading). A quantized run ("QRUN",
train/quantize.py) is a run directory too: its config adds `quantization: {scheme, tensors}`. So is a baseline's run
(train/synthesizer.py, which reads it): its tensors, the real flows it keeps (`flows.parquet`) or both, and its config
without a tokenizer."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..runtime.flows import Flow, write_atomic, write_flows
from ..runtime.manifest import CONFIG, RUN_FORMAT, read_format, read_yaml, verify, write_manifest, yaml_text
from ..runtime.tokenizer import Tokenizer
from ..runtime.settings import MODEL_CONFIGS
from .lengths import plain_params, plain_state
from .mamba import Mamba
from .model import Transformer
from .quantize import flat_state, int8_names, quantize_model, restore_int8
from .synthesizer import FLOWS, WEIGHTS, Synthesizer, baseline_name

ARCHITECTURES = {"llama": Transformer, "mamba": Mamba}  # a run's model_type -> its module (configs: MODEL_CONFIGS)
Model = Transformer | Mamba


def check_out(run: str | Path) -> None:
    """Refuse to write a run into a file or a non-empty folder that is not a run: its files would be mixed with ours
    (an older run there is replaced, as export replaces an older bundle)."""
    run = Path(run)
    if run.exists() and (not run.is_dir() or (any(run.iterdir()) and read_format(run) != RUN_FORMAT)):
        raise ValueError(f"{run}: exists and is not a run directory; refusing to write into it")


def write_run(run: str | Path, state: dict[str, torch.Tensor], cfg: dict, metadata: dict | None = None,
              flows: list[Flow] | None = None) -> None:
    """Weights (none where `state` is empty: a baseline that keeps flows only), the flows a baseline keeps (where
    given), config and manifest, each file written atomically; the manifest last, so a run interrupted while writing
    is refused rather than loaded half-old, half-new."""
    run = Path(run)
    names = []
    if state:
        write_atomic(run / WEIGHTS, lambda tmp: save_file(state, tmp, metadata=metadata))
        names.append(WEIGHTS)
    if flows:
        write_flows(run / FLOWS, flows)
        names.append(FLOWS)
    write_atomic(run / CONFIG, lambda tmp: Path(tmp).write_text(yaml_text(cfg)))
    write_manifest(run, RUN_FORMAT, names + [CONFIG])


def build_model(model_type: str, tok: Tokenizer, overrides: dict | None = None) -> Model:
    """The one factory: a freshly initialised `model_type` for the tokenizer's vocabulary, `overrides` on its config's
    defaults."""
    if model_type not in ARCHITECTURES:
        raise ValueError(f"model {model_type!r}: expected one of {', '.join(ARCHITECTURES)}")
    cfg = MODEL_CONFIGS[model_type](vocab_size=tok.vocab_size, iat_bins=tok.iat_bins, block_size=tok.block_size,
                                    **(overrides or {}))
    return ARCHITECTURES[model_type](cfg)


def model_type(model: nn.Module) -> str:
    return next(name for name, cls in ARCHITECTURES.items() if isinstance(model, cls))


def save_run(run: str | Path, model: Model, tok: Tokenizer, extra: dict | None = None) -> None:
    state = plain_state(model)  # what a plain model of the config holds
    write_run(run, state, {"model_type": model_type(model), "parameters": plain_params(model),
                           "model": model.cfg.to_dict(), "tokenizer": tok.to_dict(), **(extra or {})})


def save_baseline(run: str | Path, baseline: Synthesizer, extra: dict | None = None) -> None:
    """A fitted baseline as a run directory that train/synthesizer.py's `load_baseline` reads: config.yaml holds
    model_type, its settings (`model`) and its plain fitted data (classes, parameters), then `extra`."""
    st = baseline.state()
    cfg = {"model_type": baseline.name, "model": asdict(baseline.config), **st.config, **(extra or {})}
    write_run(run, {k: torch.from_numpy(v) for k, v in st.tensors.items()}, cfg, flows=st.flows)


def save_quantized(out: str | Path, model: Model, tok: Tokenizer, scheme: str, extra: dict | None = None) -> None:
    cfg = {**(extra or {}), "model": model.cfg.to_dict(), "tokenizer": tok.to_dict(),
           "quantization": {"scheme": scheme, "tensors": int8_names(model)}}
    write_run(out, flat_state(model), cfg, metadata={"scheme": scheme})


def read_config(run: str | Path) -> dict:
    """The run's config after checking its manifest; ValueError (one line, naming the file) otherwise."""
    run = Path(run)
    name = baseline_name(run)
    if name:
        raise ValueError(f"{run}: a {name} baseline run, which only `generate` and `info` read; this command takes "
                         "llama and mamba runs")
    verify(run, RUN_FORMAT, (WEIGHTS, CONFIG))
    cfg = read_yaml(run / CONFIG)
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict) or not isinstance(cfg.get("tokenizer"),
                                                                                             dict):
        raise ValueError(f"{run / CONFIG}: expected a mapping with 'model' and 'tokenizer' sections")
    return cfg


def _parse(run: Path, cfg: dict) -> tuple[Model, Tokenizer]:
    """The run's (untrained) model and its tokenizer; runs from before Mamba carry no model_type: LLaMA."""
    name = cfg.get("model_type", "llama")
    if name not in ARCHITECTURES:
        raise ValueError(f"{run / CONFIG}: model_type {name!r}: expected one of {', '.join(ARCHITECTURES)}")
    try:
        return ARCHITECTURES[name](MODEL_CONFIGS[name](**cfg["model"])), Tokenizer.from_dict(cfg["tokenizer"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{run / CONFIG}: {e}") from None


def load_run(run: str | Path, device: str = "cpu") -> tuple[Model, Tokenizer]:
    """(model in eval mode, tokenizer) of a verified run or QRUN."""
    run = Path(run)
    cfg = read_config(run)
    model, tok = _parse(run, cfg)
    try:
        state = load_file(run / WEIGHTS, device="cpu")
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{run / WEIGHTS}: unreadable weights ({e})") from None
    if "quantization" in cfg:  # torchao int8 runs load on the CPU
        q = cfg["quantization"]
        model = quantize_model(model, q["scheme"], embedding="tok_emb.weight" in q["tensors"])
        restore_int8(model, state, q["tensors"], str(run))
        return model, tok
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{run / WEIGHTS}: weights do not fit the config ({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), tok


def quantize_run(run: str | Path, scheme: str, out: str | Path, embedding: bool = True) -> dict:
    """Quantize a trained fp32 run into the QRUN directory `out`; returns sizes and the logits error on a probe."""
    from .quantize import logits_error

    cfg = read_config(run)
    if "quantization" in cfg:
        raise ValueError(f"{run}: already quantized ({cfg['quantization']['scheme']})")
    check_out(out)
    model, tok = load_run(run)
    qmodel = quantize_model(model, scheme, embedding)
    save_quantized(out, qmodel, tok, scheme, {k: v for k, v in cfg.items() if k not in ("model", "tokenizer")})
    return {"scheme": scheme, "fp32_bytes": (Path(run) / WEIGHTS).stat().st_size,
            "int8_bytes": (Path(out) / WEIGHTS).stat().st_size, **logits_error(model, qmodel, tok)}
