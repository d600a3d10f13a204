"""The engine variants the benches compare, each opening to an (Engine, Tokenizer) for the shared sampler.

From a trained fp32 run: torch fp32, torchao int8-wo and int8-da (train/quantize.py), ONNX fp32 and ONNX int8 (built
into a work directory with export/bundle.py, opened with runtime/bundle.py) and, where present, ONNX Runtime's
TensorRT provider. From a quantized run (QRUN) or a bundle: that one variant.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..runtime.bundle import load_bundle, read_bundle_config
from ..runtime.engine import Engine
from ..runtime.manifest import RUN_FORMAT, read_format
from ..runtime.tokenizer import Tokenizer

FP32 = "torch fp32"
ALL = (FP32, "torchao int8-wo", "torchao int8-da", "onnx fp32", "onnx int8", "onnx int8 tensorrt")


@dataclass
class Variant:
    name: str
    open: Callable[[], tuple[Engine, Tokenizer]]
    size_bytes: int  # what this variant stores on disk (weights file / graph file)


def dir_bytes(path: str | Path) -> int:
    p = Path(path)
    return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def is_run(path: str | Path) -> bool:
    return read_format(path) == RUN_FORMAT


def _torch_variant(name: str, model, tok: Tokenizer, size: int) -> Variant:
    from ..train.engine import TorchEngine

    return Variant(name, lambda: (TorchEngine(model), tok), size)


def _bundle_variant(name: str, bundle: Path, provider: str = "cpu") -> Variant:
    return Variant(name, lambda: load_bundle(bundle, provider=provider), onnx_bytes(bundle))


def onnx_bytes(bundle: Path) -> int:
    """The graph(s) of a bundle (the config/tokenizer files are a few kB and the same for every variant)."""
    graphs = list(Path(bundle).glob("*.onnx")) + list(Path(bundle).glob("*.onnx.data"))
    return sum(g.stat().st_size for g in graphs) if graphs else dir_bytes(bundle)


def tensorrt_ep_available() -> tuple[bool, str]:
    """Whether ONNX Runtime can run the TensorRT execution provider here, and why not (runtime.trt checks the
    tensorrt package for engines built with export/tensorrt.py)."""
    if importlib.util.find_spec("tensorrt") is None:
        return False, "tensorrt is not installed"
    try:
        import onnxruntime as ort
    except ImportError:
        return False, "onnxruntime is not installed"
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        return False, "onnxruntime has no TensorrtExecutionProvider (needs onnxruntime-gpu and a GPU)"
    return True, ""


def build_variants(path: str | Path, workdir: str | Path, wanted: tuple[str, ...] = ALL, log=print) -> list[Variant]:
    """Every wanted variant that can be built from `path` (a run, a QRUN or a bundle); skipped ones are logged."""
    path, workdir = Path(path), Path(workdir)
    if not is_run(path):  # an ONNX bundle
        name = "onnx int8" if read_bundle_config(path).get("precision") == "int8" else "onnx fp32"
        return [_bundle_variant(name, path)]

    from ..export.bundle import export_bundle
    from ..train.checkpoint import WEIGHTS, load_run, read_config
    from ..train.quantize import flat_state, quantize_model, state_bytes

    cfg = read_config(path)
    model, tok = load_run(path)
    if "quantization" in cfg:
        return [_torch_variant(f"torchao {cfg['quantization']['scheme']}", model, tok, (path / WEIGHTS).stat().st_size)]
    out = []
    if FP32 in wanted:
        out.append(_torch_variant(FP32, model, tok, (path / WEIGHTS).stat().st_size))
    for scheme in ("int8-wo", "int8-da"):
        if f"torchao {scheme}" in wanted:
            q = quantize_model(model, scheme)
            # the size the QRUN's model.safetensors has (int8 rows + fp32 scales + fp32 norms), header aside
            out.append(_torch_variant(f"torchao {scheme}", q, tok, state_bytes(flat_state(q))))
    for name, int8 in (("onnx fp32", False), ("onnx int8", True)):
        if name not in wanted:
            continue
        try:
            bundle = export_bundle(path, workdir / name.replace(" ", "_"), int8=int8, log=lambda *a, **k: None)
            out.append(_bundle_variant(name, bundle))
        except Exception as e:  # the exporter is optional for the torch variants: say why and go on
            log(f"skip {name}: {type(e).__name__}: {e}")
    if "onnx int8 tensorrt" in wanted:
        ok, why = tensorrt_ep_available()
        bundle = workdir / "onnx_int8"
        if not ok:
            log(f"skip TensorRT: {why}")
        elif bundle.is_dir():
            out.append(_bundle_variant("onnx int8 tensorrt", bundle, provider="tensorrt"))
    return out
