"""`ntg-edge bench parity`: does quantization or export change what the generator produces?

Every variant (export/variants.py) generates the same number of flows per class with the same seed. Per variant:
every fidelity metric of runtime.metrics.fidelity (against the real test flows; leakage and copy rate against the
real training flows) and TSTR macro-F1, each with a bootstrap interval -- the synthetic flows are resampled with
replacement within each class (`bootstrap` times for the fidelity metrics: the 2.5-97.5 percentile interval shifted
by the bootstrap's bias so that it is centred on the point value, see `score`; `tstr_resamples`
times for TSTR, each with its own forest seed, interval = min..max of those fits).

Rule: a variant passes a metric when its value equals fp32's to two significant figures, or differs from it by no
more than the two-sample interval sqrt(h_fp32^2 + h_variant^2) (h = half-width of each bootstrap interval). A variant
passes when it passes every metric. Why two-sample: a variant's flows are a new draw, and a single changed token
re-routes every later token of its flow (ONNX fp32, whose logits equal torch's to 6e-6, samples different flows),
so "inside fp32's own interval" failed ONNX fp32 on 3 of 8 metrics of the benchmark run. The control row, fp32
with the next seed, shows the rule's calibration on every run.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from ..runtime import metrics
from ..runtime.flows import Flow
from ..runtime.sampler import Sampling, generate
from .variants import ALL, FP32

METRICS = ["pkt_count_jsd", "1gram_jsd", "2gram_jsd", "markov_jsd", "uniq_align", "leakage", "copy_rate", "tstr_f1"]


def sig2(x: float) -> float:
    return float(f"{x:.2g}")


def _resample(syn: list[Flow], rng: np.random.Generator) -> list[Flow]:
    groups = defaultdict(list)
    for f in syn:
        groups[f.label].append(f)
    out = []
    for fs in groups.values():
        out += [fs[i] for i in rng.integers(0, len(fs), len(fs))]
    return out


def score(syn: list[Flow], test: list[Flow], train: list[Flow], bootstrap: int = 200, tstr_resamples: int = 3,
          seed: int = 0) -> dict[str, dict]:
    """{metric: {value, lo, hi}} for one variant's synthetic flows."""
    rng = np.random.default_rng(seed)
    point = metrics.fidelity(test, syn, train)
    point["tstr_f1"] = metrics.train_test_f1(syn, test, seed)
    boots = defaultdict(list)
    for _ in range(bootstrap):
        for k, v in metrics.fidelity(test, _resample(syn, rng), train).items():
            boots[k].append(v)
    for r in range(tstr_resamples):
        boots["tstr_f1"].append(metrics.train_test_f1(_resample(syn, rng), test, seed + 1 + r))
    out = {}
    for k in METRICS:
        b = boots.get(k)
        if not b:
            lo = hi = point[k]
        elif k == "tstr_f1":
            lo, hi = min(b + [point[k]]), max(b + [point[k]])
        else:
            # Resampling with replacement duplicates flows, which biases these plug-in metrics (uniq_align and
            # leakage most: duplicates are not distinct sequences; the JSDs grow on fewer distinct flows). So the
            # percentile interval is shifted by that bias: centred on the point value, with the bootstrap's spread.
            bias = float(np.mean(b)) - point[k]
            lo, hi = (float(x) - bias for x in np.percentile(b, [2.5, 97.5]))
        out[k] = {"value": point[k], "lo": lo, "hi": hi}
    return out


def agrees(m: dict, ref: dict) -> bool:
    def half(x: dict) -> float:
        return (x["hi"] - x["lo"]) / 2

    return sig2(m["value"]) == sig2(ref["value"]) or abs(m["value"] - ref["value"]) <= math.hypot(half(m), half(ref))


def run_parity(path, workdir, train: list[Flow], test: list[Flow], n_per_class: int = 100, bootstrap: int = 200,
               tstr_resamples: int = 3, seed: int = 0, wanted: tuple[str, ...] = ALL, log=print) -> dict:
    from tqdm import tqdm

    from .variants import build_variants

    variants = build_variants(path, workdir, wanted, log=log)
    if not variants or variants[0].name != FP32:
        raise ValueError(f"{path}: parity needs a trained fp32 run (the reference variant)")
    control = f"{FP32} seed {seed + 1}"  # a second draw of the reference itself: what the rule must let pass
    jobs = [(v.name, v, seed) for v in variants] + [(control, variants[0], seed + 1)]
    results, generated = {}, {}
    for name, v, s in jobs:
        step, tok = v.open()
        counts = {c: n_per_class for c in sorted({f.label for f in test}) if c in tok.classes}
        syn = []
        with tqdm(total=sum(counts.values()), desc=name, unit="flow", leave=False) as bar:
            for batch in generate(step, tok, counts, Sampling(), 1024, s):
                syn += batch
                bar.update(len(batch))
        generated[name] = len(syn)
        results[name] = score(syn, test, train, bootstrap, tstr_resamples, seed)
    ref = results[FP32]
    verdict = {name: {k: agrees(r[k], ref[k]) for k in METRICS} for name, r in results.items()}
    return {"variants": results, "pass": {n: all(v.values()) for n, v in verdict.items()}, "agree": verdict,
            "flows": generated, "n_per_class": n_per_class, "bootstrap": bootstrap, "tstr_resamples": tstr_resamples}


def format_parity(rep: dict) -> str:
    names = list(rep["variants"])
    w = max(20, *(len(n) + 2 for n in names))
    lines = [f"{rep['n_per_class']} flows per class; [lo, hi] = bootstrap {rep['bootstrap']} (fidelity, 2.5-97.5 %), "
             f"{rep['tstr_resamples']} resamples (TSTR, min-max); pass = same as fp32 to 2 significant figures or "
             f"within the two-sample interval of fp32 and the variant; * = fails"]
    lines.append(f"{'metric':<14}" + "".join(f"{n:>{w}}" for n in names))
    for k in METRICS:
        cells = []
        for n in names:
            m = rep["variants"][n][k]
            flag = "" if rep["agree"][n][k] else "*"
            cells.append(f"{m['value']:.3f} [{m['lo']:.3f},{m['hi']:.3f}]{flag}".rjust(w))
        lines.append(f"{k:<14}" + "".join(cells))
    lines.append(f"{'verdict':<14}" + "".join(("pass" if rep["pass"][n] else "FAIL").rjust(w) for n in names))
    return "\n".join(lines)
