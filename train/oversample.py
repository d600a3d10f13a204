"""The reference study's non-neural baselines: SMOTE and Fast Retransmit (an expert transformation).

Both work only on the real flows they were fitted on: they stand for augmentation from the small real set available
at augmentation time, with no model trained on anything else. No torch here.
"""

from __future__ import annotations

import numpy as np

from ..runtime.flows import Flow
from ..runtime.settings import FastRetransmitConfig, SmoteConfig
from .synthesizer import (MAX_LEN, State, by_label, make_flow, padded, per_class)


def vectors(flows: list[Flow], n: int) -> np.ndarray:
    """[B, 2n + 1]: signed lengths dir * (pl + 1) (0 = no packet), log1p(iat) per position, kept-packet count."""
    dirs, pls, iats, present = padded(flows, n)
    return np.concatenate([dirs * (pls + 1), np.log1p(iats) * present, present.sum(1, keepdims=True)], axis=1)


def unvector(x: np.ndarray, n: int, label: str) -> Flow:
    """An interpolated vector -> a flow: round and clip, cut at the interpolated count, sign = direction. Where one
    endpoint had no packet the signed length shrinks towards 0 but keeps the present endpoint's sign."""
    count = int(np.clip(np.rint(x[2 * n]), 1, n))
    s = x[:count]
    return make_flow(label, np.where(s < 0, -1, 1), np.abs(s) - 1, np.expm1(np.maximum(x[n:n + count], 0)))


class Smote:
    """SMOTE (imbalanced-learn) per class on `vectors`: each synthetic flow interpolates a real flow of the class and
    one of its k nearest neighbours in the class."""

    name = "smote"

    def __init__(self, config: SmoteConfig = SmoteConfig()):
        self.config = config
        self.flows: list[Flow] = []  # what it was fitted on: its state
        self.x: dict[str, np.ndarray] = {}

    @property
    def classes(self) -> list[str]:
        return list(self.x)

    def fit(self, flows: list[Flow], seed: int = 0) -> None:
        if not flows:
            raise ValueError("no flows to fit on")
        self.flows = list(flows)
        self.x = {c: vectors(fs, self.config.packets) for c, fs in by_label(flows).items()}

    def state(self) -> State:
        return State({"classes": self.classes}, flows=self.flows)

    def restore(self, state: State) -> None:
        self.fit(state.flows)  # the vectors are a function of the flows

    def sample(self, counts: dict[str, int], seed: int = 0) -> list[Flow]:
        return per_class(counts, list(self.x), seed, self._class)

    def _class(self, label: str, want: int, rng: np.random.Generator) -> list[Flow]:
        from imblearn.over_sampling import SMOTE

        x, n = self.x[label], self.config.packets
        if len(x) == 1:
            # SMOTE needs two flows to interpolate: a class of one flow is repeated, its inter-arrival times
            # jittered so that the copies are not all the same flow
            new = np.repeat(x, want, axis=0)
            new[:, n:2 * n] = np.log1p(np.expm1(new[:, n:2 * n]) * np.exp(
                rng.normal(0, self.config.jitter, (want, n))))
        else:
            # imbalanced-learn refuses a one-class target: one placeholder row of another class satisfies it
            # and is never a neighbour (SMOTE looks for neighbours within the class it oversamples)
            fit_x = np.vstack([x, np.zeros((1, x.shape[1]))])
            fit_y = np.r_[np.zeros(len(x), int), 1]
            smote = SMOTE(sampling_strategy={0: len(x) + want}, k_neighbors=min(self.config.k_neighbors,
                          len(x) - 1), random_state=int(rng.integers(2**31)))
            new = smote.fit_resample(fit_x, fit_y)[0][len(fit_x):]  # the synthetic rows come last
        return [unvector(v, n, label) for v in new]


def rtt_gap(dirs: list[int], iats: list[float]) -> float:
    """An RTT-like gap of a flow: the median gap before a packet that answers the other side (a direction change),
    else its median non-zero gap, else 0 (a flow without times)."""
    turns = [t for i, t in enumerate(iats) if i and t > 0 and dirs[i] != dirs[i - 1]]
    gaps = turns or [t for t in iats[1:] if t > 0]
    return float(np.median(gaps)) if gaps else 0.0


class FastRetransmit:
    """The study's expert transformation: a real flow of the class with one packet retransmitted (repeated right after
    itself, same direction and length, one RTT-like gap later; a flow at its class's longest kept length drops its last
    packet) or one packet (not the first) delayed by one RTT-like gap, which shifts the packets after it too. Source
    flow, operation and packet are drawn with the seed."""

    name = "fast_retransmit"

    def __init__(self, config: FastRetransmitConfig = FastRetransmitConfig()):
        self.config = config
        self.flows: dict[str, list[Flow]] = {}

    @property
    def classes(self) -> list[str]:
        return list(self.flows)

    def fit(self, flows: list[Flow], seed: int = 0) -> None:
        if not flows:
            raise ValueError("no flows to fit on")
        self.flows = by_label(flows)

    def state(self) -> State:
        return State({"classes": self.classes}, flows=[f for fs in self.flows.values() for f in fs])

    def restore(self, state: State) -> None:
        self.fit(state.flows)

    def sample(self, counts: dict[str, int], seed: int = 0) -> list[Flow]:
        return per_class(counts, list(self.flows), seed, self._class)

    def _class(self, label: str, want: int, rng: np.random.Generator) -> list[Flow]:
        real = self.flows[label]
        longest = max(len(f.pl) for f in real)
        return [self.transform(real[rng.integers(len(real))], longest, rng) for _ in range(want)]

    def transform(self, f: Flow, longest: int, rng: np.random.Generator) -> Flow:
        dirs, pls, iats = list(f.dir), [min(p, MAX_LEN) for p in f.pl], list(f.iat)
        if not pls:  # nothing to retransmit or delay
            return make_flow(f.label, np.array(dirs), np.array(pls), np.array(iats))
        gap = rtt_gap(dirs, iats)
        can_delay = len(pls) > 1 and gap > 0
        if can_delay and rng.random() >= self.config.repeat_share:
            i = int(rng.integers(1, len(pls)))
            iats[i] += gap
        else:
            # the copy must survive the cut at the class's longest kept length (a one-packet class gets two)
            cap = max(longest, 2)
            i = int(rng.integers(min(len(pls), cap - 1)))
            dirs.insert(i + 1, dirs[i])
            pls.insert(i + 1, pls[i])
            iats.insert(i + 1, gap)
            dirs, pls, iats = dirs[:cap], pls[:cap], iats[:cap]
        return make_flow(f.label, np.array(dirs), np.array(pls), np.array(iats))
