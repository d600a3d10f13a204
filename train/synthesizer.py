"""The reference study's baselines behind one interface: fit on labelled real flows, sample flows per class.

Every baseline returns valid flows (runtime.flows.validate): label = the class, pl 0..MAX_LEN, dir +1/-1, iat >= 0 with
iat[0] = 0, packets = len(pl), bytes = sum(pl). Sampling is deterministic in its seed, and each class draws from its
own generator (`class_rng`), so one class's flows do not change when another class's count does.

Baselines: "smote" and "fast_retransmit" (train/oversample.py, no torch), "cvae" (train/cvae.py) and "gasf"
(train/gasf.py). `budget` scales the training effort of the neural ones (1.0 = their documented default).
"""

from __future__ import annotations

import zlib
from typing import Callable, Protocol

import numpy as np

from ..runtime.flows import Flow
from ..runtime.tokenizer import Tokenizer

MAX_LEN = Tokenizer.max_len  # payload clip shared with the tokenizer


class Synthesizer(Protocol):
    name: str

    def fit(self, flows: list[Flow], seed: int = 0) -> None: ...

    def sample(self, counts: dict[str, int], seed: int = 0) -> list[Flow]: ...


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
    """The default log: discards the line (a module function, so that a fitted baseline pickles)."""


class Logged:
    """Holds a neural baseline's `log`; a pickle keeps `quiet` in place of a callback that may not pickle."""

    log: Callable[[str], None]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "log": quiet}


def class_rng(seed: int, label: str) -> np.random.Generator:
    """The generator of one class's draws: depends on the seed and the class name only."""
    return np.random.default_rng([seed, zlib.crc32(label.encode())])


def check_counts(counts: dict[str, int], known: list[str]) -> None:
    """Refuse a class the baseline was not fitted on or a negative count (a ValueError naming it)."""
    for c, n in counts.items():
        if c not in known:
            raise ValueError(f"class {c!r} was not among the {len(known)} classes the baseline was fitted on")
        if n < 0:
            raise ValueError(f"class {c!r}: expected a count >= 0, got {n}")


def padded(flows: list[Flow], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(dir, pl, iat, present), each [B, n]: the first n packets, zeros where a flow is shorter (pl clipped)."""
    out = np.zeros((4, len(flows), n))
    for i, f in enumerate(flows):
        k = min(n, len(f.pl))
        out[0, i, :k], out[1, i, :k], out[2, i, :k], out[3, i, :k] = f.dir[:k], f.pl[:k], f.iat[:k], 1
    out[1] = np.minimum(out[1], MAX_LEN)
    return out[0], out[1], out[2], out[3]


def _smote(budget: float = 1.0, threads: int = 1, log: Callable[[str], None] | None = None) -> Synthesizer:
    from .oversample import Smote

    return Smote()


def _fast_retransmit(budget: float = 1.0, threads: int = 1, log: Callable[[str], None] | None = None) -> Synthesizer:
    from .oversample import FastRetransmit

    return FastRetransmit()


def _cvae(budget: float = 1.0, threads: int = 1, log: Callable[[str], None] | None = None) -> Synthesizer:
    from .cvae import Cvae

    return Cvae(budget=budget, threads=threads, log=log)


def _gasf(budget: float = 1.0, threads: int = 1, log: Callable[[str], None] | None = None) -> Synthesizer:
    from .gasf import GasfDiffusion

    return GasfDiffusion(budget=budget, threads=threads, log=log)


# constructors import their module when called: SMOTE and fast retransmit must not pull in torch
BASELINES: dict[str, Callable[..., Synthesizer]] = {
    "cvae": _cvae, "gasf": _gasf, "smote": _smote, "fast_retransmit": _fast_retransmit}


def make_baseline(name: str, budget: float = 1.0, threads: int = 1,
                  log: Callable[[str], None] | None = None) -> Synthesizer:
    """A fresh, unfitted baseline. `budget` > 0 scales the neural ones' training; `threads` their torch threads;
    `log` receives the neural ones' parameter count and per-epoch loss lines."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")
    if not budget > 0:
        raise ValueError(f"budget: expected a number > 0, got {budget!r}")
    if threads < 1:
        raise ValueError(f"threads: expected a whole number >= 1, got {threads!r}")
    return BASELINES[name](budget=budget, threads=threads, log=log)
