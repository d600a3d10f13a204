"""A model bundle: what the edge generates from, with no torch.

    BUNDLE/
      model.onnx      the step graph (export/onnx.py), fp32 or int8 weights, ending in the in-graph sampler
      model.plan      optional: a TensorRT engine built from model.onnx for one GPU (export/tensorrt.py)
      config.yaml     tokenizer (incl. the class list), model config, source run, precision
      manifest.json   the sha256 of every other file (runtime/manifest.py)

`load_bundle` checks every hash before anything is loaded and returns an Engine (runtime/engine.py) and the
Tokenizer.
"""

from __future__ import annotations

from pathlib import Path

from .engine import Engine
from .manifest import BUNDLE_FORMAT, CONFIG, read_format, read_yaml, verify
from .ort import OrtEngine, ProviderError, available
from .tokenizer import Tokenizer
from .trt import TrtEngine, tensorrt_available

MODEL, PLAN = "model.onnx", "model.plan"


class BundleError(ValueError):
    """A bundle that is missing, incomplete, modified, or asks for what this install does not have."""


def is_bundle(path: str | Path) -> bool:
    return read_format(path) == BUNDLE_FORMAT


def read_bundle_config(root: str | Path) -> dict:
    """The bundle's config after checking its manifest; BundleError (one line, naming the file) otherwise."""
    root = Path(root)
    try:
        verify(root, BUNDLE_FORMAT, (MODEL, CONFIG))
        cfg = read_yaml(root / CONFIG)
    except ValueError as e:  # ManifestError, or a config that is not YAML
        raise BundleError(str(e)) from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("tokenizer"), dict):
        raise BundleError(f"{root / CONFIG}: expected a mapping with a 'tokenizer' section")
    return cfg


def load_bundle(path: str | Path, provider: str = "auto", threads: int | None = None) -> tuple[Engine, Tokenizer]:
    """(engine, Tokenizer) of a verified bundle.

    provider: "auto" = a TensorRT engine (model.plan) when the bundle has one and `tensorrt` imports, else ONNX Runtime
    with TensorRT EP > CUDA EP > CPU, whichever this onnxruntime has; "cpu", "cuda" or "tensorrt" to insist.
    """
    root = Path(path)
    cfg = read_bundle_config(root)
    try:
        tok = Tokenizer.from_dict(cfg["tokenizer"])
    except (TypeError, ValueError) as e:
        raise BundleError(f"{root / CONFIG}: tokenizer: {e}") from None
    try:
        if (root / PLAN).is_file() and provider in ("auto", "tensorrt"):
            if tensorrt_available():
                return TrtEngine(root / PLAN), tok
            if provider == "tensorrt" and "TensorrtExecutionProvider" not in available():
                raise BundleError(f"{root / PLAN}: the tensorrt Python package is not installed")
        return OrtEngine(root / MODEL, provider, threads), tok
    except BundleError:
        raise
    except ProviderError as e:
        raise BundleError(f"{root}: {e}") from None
    except ValueError as e:  # ONNX Runtime could not load the graph (the message names the file)
        raise BundleError(str(e)) from None
    except RuntimeError as e:  # nor TensorRT its plan
        raise BundleError(f"{root / PLAN}: cannot be loaded ({str(e).splitlines()[0]})") from None
