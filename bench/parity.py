"""`ntg-edge bench parity`: does quantization or export change what the generator produces?

Every variant (bench/variants.py) generates the same number of flows per class. Per variant: every fidelity metric
of runtime.metrics.fidelity (against the real test flows; leakage and copy rate against the real training flows) and
TSTR macro-F1.

fp32's sampling interval comes from fp32 itself: it generates `draws` times with seeds seed, seed+1, ...; for each
metric the interval is mean +- q * sd * sqrt(1 + 1/draws), the prediction interval of one new draw around that mean.
q is Student's t quantile with draws - 1 degrees of freedom (sd is estimated from those few draws) at the coverage
of Z = 3 normal sd, 99.73%, which keeps the family of 8 metrics x 5 variants from failing by chance. A variant passes
a metric when its value equals fp32's mean to two significant figures or lies inside that interval, and passes when
it passes every metric. A control row, fp32 with a seed none of its draws used, shows the rule's calibration on
every run.

Every variant draws with fp32's first seed, and the sampler hands every engine the same uniforms for the same seed
(runtime/sampler.py), so the variants are paired with that fp32 draw: `same_flows` is the share of flows a variant
generates identical to it (packets, directions and inter-arrival bins). It does not decide pass/fail -- any changed
logit may move one token, which re-routes the rest of its flow -- but shows how far from fp32 a variant samples:
an exact export keeps nearly all flows, a quantized one fewer.

Why not bootstrap one fp32 draw: resampling a fixed set of flows measures how that set would vary, not how a new
generation varies, and one changed token re-routes the rest of its flow, so every variant is a new generation. On the
benchmark run a bootstrap interval (also a two-sample one) failed fp32 against itself on 6 of 8 metrics.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm, t

from ..runtime import metrics
from ..runtime.flows import Flow
from ..runtime.sampler import Sampling, class_counts, generate
from .variants import ALL, FP32

METRICS = ["pkt_count_jsd", "1gram_jsd", "2gram_jsd", "markov_jsd", "uniq_align", "leakage", "copy_rate", "tstr_f1"]
Z = 3.0


def sig2(x: float) -> float:
    return float(f"{x:.2g}")


def measure(syn: list[Flow], test: list[Flow], train: list[Flow], seed: int = 0) -> dict[str, float]:
    out = metrics.fidelity(test, syn, train)
    out["tstr_f1"] = metrics.train_test_f1(syn, test, seed)
    return out


def interval(draws: list[dict[str, float]]) -> dict[str, dict]:
    """{metric: {value, lo, hi}} from repeated draws of the reference."""
    n = len(draws)
    out = {}
    for k in METRICS:
        x = np.array([d[k] for d in draws])
        half = t.ppf(norm.cdf(Z), n - 1) * x.std(ddof=1) * np.sqrt(1 + 1 / n) if n > 1 else 0.0
        out[k] = {"value": float(x.mean()), "lo": float(x.mean() - half), "hi": float(x.mean() + half)}
    return out


def agrees(value: float, ref: dict) -> bool:
    return sig2(value) == sig2(ref["value"]) or ref["lo"] <= value <= ref["hi"]


def run_parity(path, workdir, train: list[Flow], test: list[Flow], n_per_class: int = 100, draws: int = 8,
               seed: int = 0, wanted: tuple[str, ...] = ALL, log=print) -> dict:
    from tqdm import tqdm

    from .variants import build_variants

    variants = build_variants(path, workdir, wanted, log=log)
    if not variants or variants[0].name != FP32:
        raise ValueError(f"{path}: parity needs a trained fp32 run (the reference variant)")
    classes = set(variants[0].open()[1].classes)
    for name, flows in (("--real-train", train), ("--real-test", test)):
        if len({f.label for f in flows} & classes) < 2:
            raise ValueError(f"{name}: flows of at least 2 of the model's classes are needed (TSTR trains a forest "
                             f"on them); found {len({f.label for f in flows} & classes)}")

    def draw(v, s: int) -> list[Flow]:
        step, tok = v.open()
        counts = class_counts([c for c in tok.classes if c in {f.label for f in test}], n_per_class)
        syn = []
        with tqdm(total=sum(counts.values()), desc=f"{v.name} seed {s}", unit="flow", leave=False,
                  disable=None) as bar:  # a bar on a terminal only
            for batch in generate(step, tok, counts, Sampling(), 1024, s):
                syn += batch
                bar.update(len(batch))
        return syn

    fp32 = [draw(variants[0], seed + i) for i in range(draws)]
    ref = interval([measure(syn, test, train, seed) for syn in fp32])
    control = f"{FP32} seed {seed + draws}"  # a fresh draw of the reference itself: what the rule must let pass
    flows = {v.name: draw(v, seed) for v in variants[1:]}
    flows[control] = draw(variants[0], seed + draws)
    values = {name: measure(syn, test, train, seed) for name, syn in flows.items()}
    same = {name: same_flows(syn, fp32[0]) for name, syn in flows.items()}
    verdict = {name: {k: agrees(m[k], ref[k]) for k in METRICS} for name, m in values.items()}
    return {"reference": ref, "variants": values, "pass": {n: all(v.values()) for n, v in verdict.items()},
            "agree": verdict, "same_flows": same, "n_per_class": n_per_class, "draws": draws}


def same_flows(a: list[Flow], b: list[Flow]) -> float:
    """Share of positions where two equally ordered generations hold the same flow."""
    return float(np.mean([(x.pl, x.dir, x.iat) == (y.pl, y.dir, y.iat) for x, y in zip(a, b)]))


def format_parity(rep: dict) -> str:
    names = list(rep["variants"])
    w = max(16, *(len(n) + 2 for n in names))
    lines = [f"{rep['n_per_class']} flows per class; fp32 = mean [interval] of {rep['draws']} draws (where one new "
             f"draw falls with {norm.cdf(Z) * 2 - 1:.2%}); a variant passes a metric inside it or equal to 2 significant figures; * = fails"]
    lines.append(f"{'metric':<14}{FP32:>24}" + "".join(f"{n:>{w}}" for n in names))
    for k in METRICS:
        r = rep["reference"][k]
        cells = [f"{rep['variants'][n][k]:.3f}{'' if rep['agree'][n][k] else '*'}".rjust(w) for n in names]
        band = f"{r['value']:.3f} [{r['lo']:.3f},{r['hi']:.3f}]"
        lines.append(f"{k:<14}{band:>24}" + "".join(cells))
    lines.append(f"{'same flows':<14}{'as its first draw':>24}"
                 + "".join(f"{rep['same_flows'][n]:.3f}".rjust(w) for n in names))
    lines.append(f"{'verdict':<14}{'':>24}" + "".join(("pass" if rep["pass"][n] else "FAIL").rjust(w) for n in names))
    return "\n".join(lines)
