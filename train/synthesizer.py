"""The reference study's baselines behind one interface: fit on labelled real flows, sample flows per class.

Every baseline returns valid flows (runtime.flows.validate): label = the class, pl 0..MAX_LEN, dir +1/-1, iat >= 0 with
iat[0] = 0, packets = len(pl), bytes = sum(pl). Sampling is deterministic in its seed, and each class draws from its
own generator (`class_rng`), so one class's flows do not change when another class's count does.

Baselines: "smote" and "fast_retransmit" (train/oversample.py, no torch), "cvae" (train/cvae.py) and "gasf"
(train/gasf.py). `budget` scales the training effort of the neural ones (1.0 = their documented default). Their
settings live in runtime/settings.py with every other model's, so that the command line declares `train --model
NAME`'s options without torch.

A fitted baseline is kept as a run directory (`ntg-edge train --model NAME`), the project's run format without pickle:
its `state()` goes to model.safetensors (tensors: weights, bucket tables), flows.parquet (the real flows it samples
from) and config.yaml (plain data: its settings, its classes), all hashed in manifest.json; `load_baseline` verifies
them and hands them to a fresh baseline's `restore`. Reading a SMOTE or Fast Retransmit run needs no torch.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from ..runtime.flows import Flow, read_flows
from ..runtime.manifest import CONFIG, RUN_FORMAT, read_format, read_manifest, read_yaml, verify
from ..runtime.settings import BASELINE_CONFIGS, CvaeConfig, FastRetransmitConfig, GasfConfig, SmoteConfig
from ..runtime.tokenizer import Tokenizer

MAX_LEN = Tokenizer.max_len  # payload clip shared with the tokenizer
# A run's files. Named here, torch-free, so that the edge install reads baseline runs; train/checkpoint.py, which
# writes every run, takes them from here.
WEIGHTS, FLOWS = "model.safetensors", "flows.parquet"


# -- the interface -----------------------------------------------------------------------------------------------------
@dataclass
class State:
    """What a fitted baseline samples from, in forms that load without running stored code: `config` is plain data
    (config.yaml), `tensors` go to model.safetensors, `flows` (the real flows it keeps) to flows.parquet."""

    config: dict
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    flows: list[Flow] = field(default_factory=list)


class Synthesizer(Protocol):
    name: str
    config: object  # its BASELINE_CONFIGS settings
    classes: list[str]  # the classes it was fitted on (empty before `fit`)

    def fit(self, flows: list[Flow], seed: int = 0) -> None: ...

    def sample(self, counts: dict[str, int], seed: int = 0) -> list[Flow]: ...

    def state(self) -> State:
        """What it samples from once fitted."""

    def restore(self, state: State) -> None:
        """Become the fitted baseline whose `state()` this is (this one made with the same settings)."""


def make_flow(label: str, dirs: np.ndarray, pls: np.ndarray, iats: np.ndarray) -> Flow:
    """A synthetic flow from aligned per-packet arrays; enforces the invariants every baseline promises."""
    dirs = np.where(np.asarray(dirs) < 0, -1, 1)
    pls = np.clip(np.rint(pls), 0, MAX_LEN).astype(np.int64)
    iats = np.maximum(np.nan_to_num(np.asarray(iats, dtype=np.float64), nan=0.0, posinf=0.0), 0.0)
    if len(iats):
        iats[0] = 0.0
    return Flow(label=label, packets=len(pls), bytes=int(pls.sum()), pl=pls.tolist(), dir=dirs.tolist(),
                iat=iats.tolist())


def quiet(line: str) -> None:
    """The default log: discards the line."""


def class_rng(seed: int, label: str) -> np.random.Generator:
    """The generator of one class's draws: depends on the seed and the class name only."""
    return np.random.default_rng([seed, zlib.crc32(label.encode())])


def per_class(counts: dict[str, int], known: list[str], seed: int,
              draw: Callable[[str, int, np.random.Generator], list[Flow]]) -> list[Flow]:
    """`draw(label, n, rng)` for every class with a count, each with its own `class_rng`, in the order of `counts`.
    A class the baseline was not fitted on or a negative count is a ValueError naming it."""
    for c, n in counts.items():
        if c not in known:
            raise ValueError(f"class {c!r} was not among the {len(known)} classes the baseline was fitted on")
        if n < 0:
            raise ValueError(f"class {c!r}: expected a count >= 0, got {n}")
    return [f for label, n in counts.items() if n for f in draw(label, n, class_rng(seed, label))]


def padded(flows: list[Flow], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(dir, pl, iat, present), each [B, n]: the first n packets, zeros where a flow is shorter (pl clipped)."""
    out = np.zeros((4, len(flows), n))
    for i, f in enumerate(flows):
        k = min(n, len(f.pl))
        out[0, i, :k], out[1, i, :k], out[2, i, :k], out[3, i, :k] = f.dir[:k], f.pl[:k], f.iat[:k], 1
    out[1] = np.minimum(out[1], MAX_LEN)
    return out[0], out[1], out[2], out[3]


def by_label(flows: list[Flow]) -> dict[str, list[Flow]]:
    """The flows of each class, classes sorted, each class's flows in their order (a baseline's draws index them)."""
    out: dict[str, list[Flow]] = {c: [] for c in sorted({f.label for f in flows})}
    for f in flows:
        out[f.label].append(f)
    return out


def net_tensors(net: object) -> dict[str, np.ndarray]:
    """A neural baseline's torch module as State tensors, named net.<parameter>."""
    return {f"net.{k}": v.detach().cpu().numpy() for k, v in net.state_dict().items()}


def load_net(net: object, tensors: dict[str, np.ndarray]) -> None:
    """Put `net_tensors` back into a module built with the same settings (RuntimeError where they do not fit); eval."""
    import torch

    net.load_state_dict({k[4:]: torch.from_numpy(v) for k, v in tensors.items() if k.startswith("net.")})
    net.eval()


def _smote(config: SmoteConfig, budget: float, threads: int, log: Callable[[str], None] | None) -> Synthesizer:
    from .oversample import Smote

    return Smote(config)


def _fast_retransmit(config: FastRetransmitConfig, budget: float, threads: int,
                     log: Callable[[str], None] | None) -> Synthesizer:
    from .oversample import FastRetransmit

    return FastRetransmit(config)


def _cvae(config: CvaeConfig, budget: float, threads: int, log: Callable[[str], None] | None) -> Synthesizer:
    from .cvae import Cvae

    return Cvae(config, budget=budget, threads=threads, log=log)


def _gasf(config: GasfConfig, budget: float, threads: int, log: Callable[[str], None] | None) -> Synthesizer:
    from .gasf import GasfDiffusion

    return GasfDiffusion(config, budget=budget, threads=threads, log=log)


# constructors import their module when called: SMOTE and fast retransmit must not pull in torch
BASELINES: dict[str, Callable[..., Synthesizer]] = {
    "cvae": _cvae, "gasf": _gasf, "smote": _smote, "fast_retransmit": _fast_retransmit}


def make_baseline(name: str, budget: float = 1.0, threads: int = 1, log: Callable[[str], None] | None = None,
                  config: object | None = None) -> Synthesizer:
    """A fresh, unfitted baseline. `budget` > 0 scales the neural ones' training; `threads` their torch threads;
    `log` receives the neural ones' parameter count and per-epoch loss lines; `config` (its BASELINE_CONFIGS class)
    replaces its default settings."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")
    if not budget > 0:
        raise ValueError(f"budget: expected a number > 0, got {budget!r}")
    if threads < 1:
        raise ValueError(f"threads: expected a whole number >= 1, got {threads!r}")
    return BASELINES[name](config or BASELINE_CONFIGS[name](), budget, threads, log)


# -- runs --------------------------------------------------------------------------------------------------------------
def baseline_name(path: str | Path) -> str | None:
    """The baseline a run directory holds, or None (a LLaMA or Mamba run, a bundle, not a run). Reads config.yaml
    before its hash is checked, only to choose the loader: every loader verifies the run before using it."""
    path = Path(path)
    if read_format(path) != RUN_FORMAT:
        return None
    try:
        cfg = read_yaml(path / CONFIG)
    except (OSError, ValueError):
        return None  # the loader's manifest check says what is wrong
    name = cfg.get("model_type") if isinstance(cfg, dict) else None
    return name if name in BASELINES else None


def load_baseline(run: str | Path, threads: int = 1) -> Synthesizer:
    """The fitted baseline of a verified run directory; ValueError (one line, naming the file) otherwise. Imports its
    module: a CVAE or GASF run needs torch (ImportError where it is missing)."""
    run = Path(run)
    verify(run, RUN_FORMAT, (CONFIG,))
    cfg = read_yaml(run / CONFIG)
    name = cfg.get("model_type") if isinstance(cfg, dict) else None
    if name not in BASELINES:
        raise ValueError(f"{run / CONFIG}: model_type {name!r}: expected one of {', '.join(BASELINES)}")
    listed = read_manifest(run)
    tensors = {}
    if WEIGHTS in listed:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            tensors = load_file(run / WEIGHTS)
        except (SafetensorError, OSError) as e:
            raise ValueError(f"{run / WEIGHTS}: unreadable tensors ({e})") from None
    flows = read_flows(run / FLOWS) if FLOWS in listed else []
    try:
        baseline = make_baseline(name, threads=threads, config=BASELINE_CONFIGS[name](**cfg["model"]))
        baseline.restore(State(cfg, tensors, flows))
    except (KeyError, TypeError, ValueError, RuntimeError) as e:  # files rewritten together with their manifest
        raise ValueError(f"{run}: not a {name} run this version reads ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None
    return baseline
