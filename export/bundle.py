"""Run directory -> model bundle (runtime/bundle.py describes the layout), written atomically."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import onnx

from ..runtime.bundle import MODEL, PLAN, is_bundle
from ..runtime.manifest import BUNDLE_FORMAT, CONFIG, write_manifest, yaml_text
from ..train.checkpoint import load_run, read_config
from .onnx import OPSET, SAMPLER_GROUP, add_sampler, export_onnx, gather_head_columns, pad_vocab, quantize_int8


def export_bundle(run: str | Path, out: str | Path, int8: bool = False, tensorrt: bool = False, log=print) -> Path:
    """Export the run's model to a bundle directory at `out` (replacing an older bundle there, never anything else).

    The bundle is assembled in a temporary directory beside `out` and renamed into place, so a reader sees either
    the old bundle or the complete new one.
    """
    run, out = Path(run), Path(out)
    run_cfg = read_config(run)
    if "quantization" in run_cfg:
        raise ValueError(f"{run}: a torchao {run_cfg['quantization']['scheme']} run; export its fp32 source run "
                         "(with --int8 for an int8 bundle)")
    model, tok = load_run(run)
    if tensorrt and run_cfg.get("model_type", "llama") != "llama":
        raise ValueError(f"{run}: a {run_cfg['model_type']} run; the TensorRT engine build (export/tensorrt.py) is "
                         "for the LLaMA graph only (ONNX Runtime runs this model on any provider)")
    if out.exists() and not is_bundle(out):
        raise FileExistsError(f"{out}: exists and is not a bundle; refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        padded = pad_vocab(model, SAMPLER_GROUP)
        if int8:
            fp32 = export_onnx(padded, tmp / "fp32.onnx")
            quantize_int8(fp32, tmp / MODEL)
            fp32.unlink()
        else:
            export_onnx(padded, tmp / MODEL)
        graph = add_sampler(gather_head_columns(onnx.load(str(tmp / MODEL))), tok.vocab_size, SAMPLER_GROUP)
        onnx.checker.check_model(graph)
        onnx.save(graph, str(tmp / MODEL))
        if tensorrt:
            from .tensorrt import build_engine

            trt_src = export_onnx(model, tmp / "trt.onnx", opset=20)  # see export/tensorrt.py for why opset 20
            c = model.cfg
            build_engine(trt_src, tmp / PLAN, n_heads=c.n_heads, head_dim=c.head_dim, block_size=c.block_size)
            trt_src.unlink()
        cfg = {
            "tokenizer": tok.to_dict(),
            "model_type": run_cfg.get("model_type", "llama"),
            "parameters": model.n_params(),
            "model": model.cfg.to_dict(),
            "source": {"run": str(run.resolve()), "selected": run_cfg.get("selected"),
                       "refit": run_cfg.get("refit")},
            "precision": "int8" if int8 else "fp32",
            "onnx": {"file": MODEL, "opset": OPSET, "outputs": "last position only"},
        }
        if tensorrt:
            cfg["tensorrt"] = {"file": PLAN, "precision": "fp16"}
        (tmp / CONFIG).write_text(yaml_text(cfg))
        write_manifest(tmp, BUNDLE_FORMAT)
        tmp.chmod(0o755)
        if out.exists():  # an older bundle: move it aside, put the new one in place, then delete the old one
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"{'int8' if int8 else 'fp32'} bundle ({sum(p.stat().st_size for p in out.iterdir()) / 1e6:.1f} MB) -> {out}")
    return out
