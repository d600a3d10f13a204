"""`ntg-edge info`: what a run or a bundle holds, read from its manifest and config (no torch, no weights loaded)."""

from __future__ import annotations

from pathlib import Path

from .settings import BASELINE_CONFIGS
from .manifest import (BUNDLE_FORMAT, CONFIG, MANIFEST, RUN_FORMAT, ManifestError, read_format, read_manifest, read_yaml,
                       verify)



def _size(root: Path, files: dict) -> str:
    return ", ".join(f"{name} {(root / name).stat().st_size / 1e6:.2f} MB" if (root / name).is_file()
                     else f"{name} missing" for name in files)


def _baseline_lines(cfg: dict) -> list[str]:
    """A baseline's run (train/synthesizer.py): its settings, classes and what it was fitted on."""
    classes = [str(c) for c in cfg["classes"]]
    fit = cfg.get("train") or {}
    return [f"model type  {cfg['model_type']} (a reference-study baseline: `generate` samples it with its own method)",
            f"classes     {len(classes)}: {', '.join(classes)}",
            "model       " + ", ".join(f"{k} {v}" for k, v in cfg["model"].items()),
            f"parameters  {cfg['parameters']:,}" if "parameters" in cfg else "parameters  none (it samples from the "
            "real flows it keeps)",
            f"fitted on   {fit.get('flows', '?')} flows, seed {fit.get('seed', '?')}, {fit.get('fit_s', '?')} s"]


def _config_lines(kind: str, cfg: dict) -> list[str]:
    if kind == "run" and cfg.get("model_type") in BASELINE_CONFIGS:
        return _baseline_lines(cfg)
    tok, model = cfg["tokenizer"], cfg["model"]
    if kind == "run":
        q = cfg.get("quantization")
        precision = f"torchao {q['scheme']} (int8 weights)" if q else "fp32"
    else:
        precision = str(cfg.get("precision", "?")) + (" + TensorRT plan" if "tensorrt" in cfg else "")
    classes = [str(c) for c in tok.get("classes", [])]
    sel = cfg.get("selected") or (cfg.get("source") or {}).get("selected")
    lines = [f"model type  {cfg.get('model_type', 'llama')}, {precision}",
             f"classes     {len(classes)}: {', '.join(classes)}",
             "model       " + ", ".join(f"{k} {v}" for k, v in model.items()),
             f"parameters  {cfg['parameters']:,}" if "parameters" in cfg else "parameters  not recorded",
             f"flows       up to {tok.get('max_packets', '?')} packets, payloads up to {tok.get('max_len', '?')} B, "
             f"{tok.get('iat_bins', '?')} inter-arrival bins"]
    if kind == "bundle":
        lines.append(f"source run  {(cfg.get('source') or {}).get('run', 'unknown')}")
    if sel:
        # runs trained before the checkpoint window scored an epoch by its own TSTR
        mean = f" (mean of {sel['val_window']} epochs {sel['val_score']:.3f})" if sel.get("val_window", 1) > 1 else ""
        lines.append(f"chosen      epoch {sel['epoch']}: val TSTR {sel['val_tstr']:.3f}{mean}, copy rate "
                     f"{sel['val_copy_rate']:.2f}, val loss {sel['val_loss']:.3f}")
    refit = cfg.get("refit") or (cfg.get("source") or {}).get("refit")
    if refit:
        lines.append(f"refit       on all {refit['flows']} flows for {refit['epochs']} epochs: copy rate "
                     f"{refit['copy_rate']:.2f} against them")
    return lines


def describe(path: str | Path) -> tuple[list[str], bool]:
    """(the report's lines, whether every hash matched); ValueError (one line) for a folder that is neither."""
    root = Path(path)
    fmt = read_format(root)
    if fmt not in (RUN_FORMAT, BUNDLE_FORMAT):
        raise ValueError(f"{root}: neither a training run nor a bundle (no readable {MANIFEST})")
    kind = "run" if fmt == RUN_FORMAT else "bundle"
    files = read_manifest(root)
    try:
        verify(root, fmt, (CONFIG,))
        hashes = "verified"
    except ManifestError as e:
        hashes = f"FAILED: {e}"
    head = [f"{root}: {kind} ({fmt})", f"size        {_size(root, files)}"]
    if hashes != "verified":  # what the files say cannot be trusted: show the manifest only
        return head + [f"hashes      {hashes}"] + [f"  {name}  sha256 {digest}" for name, digest in files.items()], False
    try:
        lines = head + _config_lines(kind, read_yaml(root / CONFIG))
    except (AttributeError, KeyError, TypeError, ValueError) as e:  # a config rewritten together with its manifest
        raise ValueError(f"{root / CONFIG}: unexpected content ({type(e).__name__}: {e})") from None
    lines.append(f"hashes      {hashes}")
    lines += [f"  {name}  sha256 {digest}" for name, digest in files.items()]
    return lines, True
