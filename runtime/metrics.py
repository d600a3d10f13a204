"""Fidelity of synthetic flows against real ones, as in the reference study, plus memorisation checks and TSTR.

Every distribution metric is computed per class and macro-averaged. A packet is the signed value dir * (pl + 1), so
a zero-length packet keeps its direction. JSD is the Jensen-Shannon divergence in bits (0 = same, 1 = disjoint).

- pkt_count_jsd: number of kept packets per flow.
- 1gram_jsd / 2gram_jsd: single packets and consecutive pairs, pooled over the class's flows.
- markov_jsd: per source packet value, JSD of its next-value distribution (<EOS> counts as a value), averaged with
  the real data's source frequencies as weights; a source the synthetic flows never emit scores 1.
- uniq_align: 1 - |u_syn - u_real|, u = distinct sequences / sequences: 1 = synthetic as diverse as real.
- leakage: Jaccard of the sets of exact sequences, synthetic vs real *training* flows.
- copy rate: share of flows whose first `prefix` packets equal some training flow's first `prefix` packets.
"""

from __future__ import annotations

import warnings
from collections import Counter, defaultdict
from typing import Iterable

import numpy as np
from scipy.spatial.distance import jensenshannon
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import f1_score

from .flows import Flow

END = 0  # the <EOS> value in Markov chains; packet values are never 0
PREFIX = 10
N_FEATURES = 20


def seq(f: Flow, n: int | None = None) -> tuple[int, ...]:
    return tuple(d * (p + 1) for d, p in zip(f.dir[:n], f.pl[:n]))


def by_class(flows: Iterable[Flow]) -> dict[str, list[Flow]]:
    groups: dict[str, list[Flow]] = defaultdict(list)
    for f in flows:
        groups[f.label].append(f)
    return dict(groups)


def jsd(p: Counter, q: Counter) -> float:
    keys = list(p.keys() | q.keys())
    if not p or not q:
        return 1.0 if (p or q) else 0.0
    pv = np.array([p[k] for k in keys], dtype=float)
    qv = np.array([q[k] for k in keys], dtype=float)
    return float(jensenshannon(pv, qv, base=2) ** 2)


def _counts(flows: list[Flow], n: int) -> Counter:
    c: Counter = Counter()
    for f in flows:
        s = seq(f)
        c.update(zip(*(s[i:] for i in range(n))))
    return c


def _transitions(flows: list[Flow]) -> dict[int, Counter]:
    t: dict[int, Counter] = defaultdict(Counter)
    for f in flows:
        s = seq(f) + (END,)
        for a, b in zip(s, s[1:]):
            t[a][b] += 1
    return t


def markov_jsd(real: list[Flow], syn: list[Flow]) -> float:
    tr, ts = _transitions(real), _transitions(syn)
    weights = {a: sum(c.values()) for a, c in tr.items()}
    total = sum(weights.values())
    if not total:
        return 0.0
    return sum(w * (jsd(tr[a], ts[a]) if a in ts else 1.0) for a, w in weights.items()) / total


def uniq_align(real: list[Flow], syn: list[Flow]) -> float:
    def u(fs: list[Flow]) -> float:
        return len({seq(f) for f in fs}) / len(fs) if fs else 0.0

    return 1.0 - abs(u(syn) - u(real))


def leakage(train: list[Flow], syn: list[Flow]) -> float:
    a, b = {seq(f) for f in train}, {seq(f) for f in syn}
    return len(a & b) / len(a | b) if a | b else 0.0


def copy_rate(train: Iterable[Flow], flows: list[Flow], prefix: int = PREFIX) -> float:
    seen = {seq(f, prefix) for f in train}
    return float(np.mean([seq(f, prefix) in seen for f in flows])) if flows else 0.0


def copy_rate_as(train: list[Flow], flows: list[Flow], like: list[Flow], prefix: int = PREFIX) -> float:
    """copy_rate of `flows` with each class weighted by its share of `like`: a synthetic set drawn in any class mix
    (e.g. the same count for every class) compared with the natural rate of the real flows `like`, whose classes copy
    at different rates (a small class of near-identical flows copies at 1.0, a large mixed one far less)."""
    groups = by_class(flows)
    shares = {c: n for c, n in Counter(f.label for f in like).items() if c in groups}
    total = sum(shares.values())
    return sum(n * copy_rate(train, groups[c], prefix) for c, n in shares.items()) / total if total else 0.0


def class_fidelity(real: list[Flow], syn: list[Flow]) -> dict[str, float]:
    return {
        "pkt_count_jsd": jsd(Counter(len(f.pl) for f in real), Counter(len(f.pl) for f in syn)),
        "1gram_jsd": jsd(_counts(real, 1), _counts(syn, 1)),
        "2gram_jsd": jsd(_counts(real, 2), _counts(syn, 2)),
        "markov_jsd": markov_jsd(real, syn),
        "uniq_align": uniq_align(real, syn),
    }


def fidelity(real: list[Flow], syn: list[Flow], train: list[Flow] | None = None) -> dict[str, float]:
    """Macro-averaged fidelity of `syn` against `real` over the classes of `real`; leakage/copy rate need `train`."""
    if not real:
        raise ValueError("no real flows to compare with")
    r, s = by_class(real), by_class(syn)
    per_class = [class_fidelity(r[c], s.get(c, [])) for c in sorted(r)]
    out = {k: float(np.mean([m[k] for m in per_class])) for k in per_class[0]}
    if train is not None:
        out["leakage"] = leakage(train, syn)
        out["copy_rate"] = copy_rate(train, syn)
    return out


def features(flows: list[Flow], n: int = N_FEATURES) -> np.ndarray:
    """The classifier's view of a flow: its first n signed packets (0 = absent) and its kept-packet count."""
    x = np.zeros((len(flows), n + 1), dtype=np.float32)
    for i, f in enumerate(flows):
        s = seq(f, n)
        x[i, : len(s)] = s
        x[i, n] = len(f.pl)
    return x


TREES = 200  # the benchmark's forest; the appliance's classifier defaults to the same


def forest(seed: int = 0, threads: int = -1, trees: int = TREES) -> RandomForestClassifier:
    """The benchmark's Random Forest; `threads` -1 = every core."""
    return RandomForestClassifier(n_estimators=trees, n_jobs=threads, random_state=seed)


def fit(clf: RandomForestClassifier, x: np.ndarray, y) -> RandomForestClassifier:
    with warnings.catch_warnings():
        # every tree warns when most of its bootstrap's classes are singletons (2-5 flows per class, as on a box
        # with few labelled flows): y is labels, not a regression target
        warnings.filterwarnings("ignore", "The number of unique classes is greater than 50%", UserWarning)
        return clf.fit(x, y)


def train_test_f1(train: list[Flow], test: list[Flow], seed: int = 0, threads: int = -1, trees: int = TREES) -> float:
    """Macro-F1 on `test` of a forest fitted on `train` (TSTR when `train` is synthetic, TRTR when real)."""
    clf = fit(forest(seed, threads, trees), features(train), [f.label for f in train])
    y = [f.label for f in test]
    return float(f1_score(y, clf.predict(features(test)), labels=sorted(set(y)), average="macro", zero_division=0))


def evaluate(test: list[Flow], draws: list[list[Flow]], train: list[Flow] | None = None, seed: int = 0) -> dict:
    """The report: synthetic vs real test, and with `train` the real-vs-real floor (train vs test) beside it.

    `draws` are independent synthetic sets (generation seeds). On small test splits one draw's macro-F1 moves by a few
    hundredths from seed to seed, so each draw gets its own forest seed, the report gives the mean over draws
    ("synthetic") and their standard deviation ("synthetic_sd"), and TRTR is averaged over the same forest seeds.
    """
    reps = []
    for i, syn in enumerate(draws):
        r = fidelity(test, syn, train)
        r["tstr_f1"] = train_test_f1(syn, test, seed + i)
        reps.append(r)
    rep: dict = {"draws": len(draws)}
    rep["synthetic"] = {k: float(np.mean([r[k] for r in reps])) for k in reps[0]}
    rep["synthetic_sd"] = {k: float(np.std([r[k] for r in reps])) for k in reps[0]}
    if train is not None:
        floor = fidelity(test, train)
        floor["leakage"] = leakage(train, test)
        floor["copy_rate"] = copy_rate(train, test)  # the natural rate
        floor["tstr_f1"] = float(np.mean([train_test_f1(train, test, seed + i) for i in range(len(draws))]))  # TRTR
        rep["real_floor"] = floor
        rep["ratio"] = {"tstr_over_trtr": rep["synthetic"]["tstr_f1"] / max(floor["tstr_f1"], 1e-9)}
    return rep
