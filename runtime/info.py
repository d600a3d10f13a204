"""`ntg-edge info`: what a run or a bundle holds, read from its manifest and config (no torch, no weights loaded)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .manifest import BUNDLE_FORMAT, MANIFEST, RUN_FORMAT, ManifestError, read_format, verify

CONFIG = "config.yaml"  # the same name in runs (train/checkpoint.py) and bundles (runtime/bundle.py)


def _size(root: Path, files: dict) -> str:
    return ", ".join(f"{name} {(root / name).stat().st_size / 1e6:.2f} MB" for name in files)


def describe(path: str | Path) -> list[str]:
    """The report's lines; ValueError (one line) for a folder that is neither, or fails its hashes."""
    root = Path(path)
    fmt = read_format(root)
    if fmt not in (RUN_FORMAT, BUNDLE_FORMAT):
        raise ValueError(f"{root}: neither a training run nor a bundle (no readable {MANIFEST})")
    kind = "run" if fmt == RUN_FORMAT else "bundle"
    try:
        verify(root, fmt, (CONFIG,))
        hashes = "verified"
    except ManifestError as e:
        hashes = f"FAILED: {e}"
    files = json.loads((root / MANIFEST).read_text())["files"]
    try:
        cfg = yaml.safe_load((root / CONFIG).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{root / CONFIG}: unreadable ({str(e).splitlines()[0]})") from None
    tok, model = cfg.get("tokenizer", {}), cfg.get("model", {})
    if kind == "run":
        q = cfg.get("quantization")
        precision = f"torchao {q['scheme']} (int8 weights)" if q else "fp32"
    else:
        precision = str(cfg.get("precision", "?")) + (" + TensorRT plan" if "tensorrt" in cfg else "")
    classes = tok.get("classes", [])
    sel = cfg.get("selected") or (cfg.get("source") or {}).get("selected")
    lines = [f"{root}: {kind} ({fmt}), {cfg.get('model_type', 'llama')}, {precision}",
             f"classes     {len(classes)}: {', '.join(classes)}",
             "model       " + ", ".join(f"{k} {v}" for k, v in model.items()),
             f"parameters  {cfg['parameters']:,}" if "parameters" in cfg else "parameters  not recorded",
             f"flows       up to {tok.get('max_packets', '?')} packets, payloads up to {tok.get('max_len', '?')} B, "
             f"{tok.get('iat_bins', '?')} inter-arrival bins",
             f"size        {_size(root, files)}"]
    if kind == "bundle":
        lines.append(f"source run  {(cfg.get('source') or {}).get('run', 'unknown')}")
    if sel:
        lines.append(f"chosen      epoch {sel['epoch']}: val TSTR {sel['val_tstr']:.3f}, copy rate "
                     f"{sel['val_copy_rate']:.2f}, val loss {sel['val_loss']:.3f}")
    lines.append(f"hashes      {hashes}")
    lines += [f"  {name}  sha256 {digest}" for name, digest in files.items()]
    return lines
