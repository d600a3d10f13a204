"""A model bundle: what the edge generates from, with no torch.

    BUNDLE/
      model.onnx      the step graph (export/onnx.py), fp32 or int8 weights
      model.plan      optional: a TensorRT engine built from model.onnx for one GPU (export/tensorrt.py)
      config.yaml     tokenizer (incl. the class list), model config, source run, precision
      manifest.json   {"format": ..., "files": {name: sha256}} over every other file

`load_bundle` checks every hash before anything is loaded and returns a step function for runtime/sampler.py plus
the Tokenizer. The key/value cache goes in and out as numpy arrays on the CPU; on a GPU it stays in ONNX Runtime's
device buffers (OrtValues) and is fed back through an IOBinding. A bundle's graph also samples (export/onnx.py
`add_sampler`): `sample_step` returns the next ids, and only those leave the engine; `__call__` returns the last
position's logits for other sampling settings.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .tokenizer import Tokenizer

MANIFEST, MODEL, PLAN, CONFIG = "manifest.json", "model.onnx", "model.plan", "config.yaml"
FORMAT = "ntg-edge-bundle/1"
PROVIDERS = ("auto", "cpu", "cuda", "tensorrt")


class BundleError(ValueError):
    """A bundle that is missing, incomplete or modified."""


def is_bundle(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(root: str | Path) -> dict:
    """Hash every file under `root` (but the manifest) into manifest.json."""
    root = Path(root)
    files = {p.relative_to(root).as_posix(): sha256(p) for p in sorted(root.rglob("*"))
             if p.is_file() and p.name != MANIFEST}
    manifest = {"format": FORMAT, "files": files}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def verify(root: str | Path) -> dict:
    """The bundle's config after checking the manifest; BundleError (one line, naming the file) otherwise."""
    root = Path(root)
    try:
        manifest = json.loads((root / MANIFEST).read_text())
        files = manifest["files"]
    except FileNotFoundError:
        raise BundleError(f"{root}: not a bundle (no {MANIFEST})") from None
    except (ValueError, KeyError, TypeError) as e:
        raise BundleError(f"{root}/{MANIFEST}: unreadable manifest ({e})") from None
    for need in (MODEL, CONFIG):
        if need not in files:
            raise BundleError(f"{root}: {MANIFEST} does not list {need}")
    for name, digest in files.items():
        path = root / name
        if not path.is_file():
            raise BundleError(f"{root}/{name}: missing (listed in {MANIFEST})")
        if sha256(path) != digest:
            raise BundleError(f"{root}/{name}: sha256 does not match {MANIFEST} (modified or corrupt bundle)")
    return yaml.safe_load((root / CONFIG).read_text())


def _threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def ort_providers(provider: str = "auto") -> list:
    """The ONNX Runtime execution providers for `provider`, best first, limited to those this install has."""
    import onnxruntime as ort

    if provider not in PROVIDERS:
        raise ValueError(f"provider {provider!r}: choose one of {', '.join(PROVIDERS)}")
    have = set(ort.get_available_providers())
    want = {"cpu": [], "cuda": ["CUDAExecutionProvider"],
            "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider"],
            "auto": ["TensorrtExecutionProvider", "CUDAExecutionProvider"]}[provider]
    if provider in ("cuda", "tensorrt") and want[0] not in have:
        raise BundleError(f"provider {provider!r}: onnxruntime has no {want[0]} (install onnxruntime-gpu; "
                          f"available: {', '.join(sorted(have))})")
    chosen: list = []
    for p in want:
        if p not in have:
            continue
        if p == "TensorrtExecutionProvider":
            # fp16 kernels and an on-disk engine cache: building TensorRT engines takes minutes, so build once.
            cache = os.environ.get("NTG_TRT_CACHE", str(Path.home() / ".cache" / "ntg-edge" / "trt"))
            chosen.append((p, {"trt_fp16_enable": True, "trt_engine_cache_enable": True,
                               "trt_engine_cache_path": cache}))
        else:
            chosen.append(p)
    return chosen + ["CPUExecutionProvider"]


class OrtPast:
    """The key/value cache as ONNX Runtime values on a GPU. `past[rows]` keeps those batch rows (the sampler drops
    finished flows); that round-trips through the host, which the sampler does rarely."""

    def __init__(self, values: list, device: str) -> None:
        self.values, self.device = values, device

    def __getitem__(self, rows: np.ndarray) -> "OrtPast":
        import onnxruntime as ort

        return OrtPast([ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v.numpy()[rows]), self.device, 0)
                        for v in self.values], self.device)


class OrtEngine:
    """The step function over an ONNX Runtime session: `engine(tokens, iats, past) -> (logits, iat_logits, present)`,
    and `sample_step` through the graph's own sampler (every bundle graph has one)."""

    samples = True

    def __init__(self, model_path: str | Path, provider: str = "auto", threads: int | None = None) -> None:
        import onnxruntime as ort

        self._ort = ort
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads or _threads()
        so.inter_op_num_threads = 1  # one step graph, sequential
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(model_path), so, providers=ort_providers(provider))
        self.provider = self.session.get_providers()[0]
        self.device = "cpu" if self.provider == "CPUExecutionProvider" else "cuda"
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        self._past_names = [n for n in shapes if n.startswith("past_")]
        self._present_names = [n.replace("past_", "present_", 1) for n in self._past_names]
        _, heads, _, head_dim = shapes[self._past_names[0]]  # (B, heads, P, head_dim)
        self.heads, self.head_dim = int(heads), int(head_dim)
        # the token head may be padded past the tokenizer's vocabulary (export/onnx.py pad_vocab); the bias is not
        self.vocab = int(shapes["bias"][0])

    def _run(self, wanted: list[str], tokens: np.ndarray, iats: np.ndarray, past: Any, u: np.ndarray | None = None,
             temperature: float = 1.0, bias: np.ndarray | None = None) -> tuple[list[np.ndarray], Any]:
        """(the outputs `wanted`, as numpy arrays; the present cache)."""
        b = tokens.shape[0]
        feeds = {"tokens": np.ascontiguousarray(tokens, dtype=np.int64),
                 "iats": np.ascontiguousarray(iats, dtype=np.int64),
                 # wanting only the logits, the sampler still runs (ORT runs every node): any valid inputs do
                 "uniform": np.zeros((b, 2), np.float32) if u is None else np.ascontiguousarray(u, dtype=np.float32),
                 "temperature": np.array(temperature, np.float32),
                 "bias": np.zeros(self.vocab, np.float32) if bias is None else bias}
        empty = (b, self.heads, 0, self.head_dim)
        if self.device == "cpu":
            # ONNX Runtime reads numpy inputs in place and hands back fresh arrays, so an IOBinding would save no copy
            # here, and its ~25 binding calls per step cost ~100 us of Python at batch 1 (a quarter of a step).
            if past is None:
                past = [np.zeros(empty, np.float32)] * len(self._past_names)
            out = self.session.run(wanted + self._present_names, {**feeds, **dict(zip(self._past_names, past))})
            return out[: len(wanted)], out[len(wanted) :]
        # On a GPU the cache stays in ONNX Runtime's device buffers (OrtValues) and is fed back through an IOBinding.
        if past is None:
            past = OrtPast([self._ort.OrtValue.ortvalue_from_numpy(np.zeros(empty, np.float32), self.device, 0)
                            for _ in self._past_names], self.device)
        io = self.session.io_binding()
        for name, value in feeds.items():
            io.bind_cpu_input(name, value)
        for name, value in zip(self._past_names, past.values):
            io.bind_ortvalue_input(name, value)
        for name in wanted + self._present_names:
            io.bind_output(name, self.device)
        self.session.run_with_iobinding(io)
        out = io.get_outputs()
        return [v.numpy() for v in out[: len(wanted)]], OrtPast(out[len(wanted) :], self.device)

    def __call__(self, tokens: np.ndarray, iats: np.ndarray, past: Any) -> tuple[np.ndarray, np.ndarray, Any]:
        (logits, iat_logits), present = self._run(["logits", "iat_logits"], tokens, iats, past)
        return logits[:, 0, : self.vocab], iat_logits[:, 0], present

    def sample_step(self, tokens: np.ndarray, iats: np.ndarray, past: Any, u: np.ndarray, temperature: float,
                    bias: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]:
        """One step and the in-graph draw: (next token ids, next iat bins, present), as runtime/sampler.py's `sample`
        would pick them from this step's logits with the uniforms `u` (batch, 2)."""
        (ids, bins), present = self._run(["next_token", "next_iat"], tokens, iats, past, u, max(temperature, 1e-6),
                                         bias)
        return ids, bins, present


def load_bundle(path: str | Path, provider: str = "auto", threads: int | None = None) -> tuple[Any, Tokenizer]:
    """(step function, Tokenizer) of a verified bundle.

    provider: "auto" = a TensorRT engine (model.plan) when the bundle has one and `tensorrt` imports, else ONNX Runtime
    with TensorRT EP > CUDA EP > CPU, whichever this onnxruntime has; "cpu", "cuda" or "tensorrt" to insist.
    """
    root = Path(path)
    cfg = verify(root)
    tok = Tokenizer.from_dict(cfg["tokenizer"])
    if (root / PLAN).is_file() and provider in ("auto", "tensorrt"):
        from .trt import TrtEngine, tensorrt_available

        if tensorrt_available():
            return TrtEngine(root / PLAN), tok
        if provider == "tensorrt" and "TensorrtExecutionProvider" not in _available():
            raise BundleError(f"{root}/{PLAN}: the tensorrt Python package is not installed")
    return OrtEngine(root / MODEL, provider, threads), tok


def _available() -> set[str]:
    import onnxruntime as ort

    return set(ort.get_available_providers())
