"""`ntg-edge bench paper`: the reference study's whole comparison (Bovenzi et al. 2026), rerun on any labelled split.

Six methods behind one shape (fit on real training flows, sample a count per class): this project's LLaMA and Mamba
(trained with train/train.py into the output folder, sampled through the torch engine) and the study's baselines from
train/synthesizer.py (GASF diffusion, CVAE, SMOTE, Fast Retransmit). Four research questions, as the study asks them:

- RQ1 fidelity: runtime/metrics.py `fidelity` of each method's synthetic flows against the real test flows, beside
  the real-vs-real floor (the training flows scored the same way); a radar of the six metrics normalised to that floor.
- RQ2 TSTR: macro-F1 on the real test flows of a forest trained on synthetic flows only (as many per class as the
  real training split), beside TRTR (the same forest trained on the real training flows).
- RQ3 low-data augmentation: keep a fraction of the real training flows per class, refit every method on the kept
  flows only (strict: a generator cannot see flows the user does not have), fill each class back up to its count in
  the full training split with that method's flows, and score a forest on real kept + synthetic against real-only.
- RQ4 efficiency: fit time (s per epoch for the models trained in epochs), generation ms per flow at batch 1 and
  1024, peak memory, parameters and size on disk, for LLaMA and Mamba with their int8 variants (bench/speed.py's
  `run_speed` over bench/variants.py) and for every baseline.

Draws: every synthetic set is drawn `draws` times (generation seeds seed + d), each scored with its own forest seed
(seed + d); TRTR and real-only use the same forest seeds; figures are mean ± sd over the draws (as `evaluate` does).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import click
import numpy as np

from ..appliance.options import OutPath, positive_ints
from ..runtime.flows import Flow, read_flows, write_atomic, write_flows
from ..runtime.knobs import SEED_MAX
from ..runtime.sampler import spread

METHODS = ("llama", "mamba", "gasf", "cvae", "smote", "fast_retransmit")
GENERATORS = ("llama", "mamba")  # trained with this project's train(); the rest come from train/synthesizer.py
LABELS = {"llama": "LLaMA", "mamba": "Mamba", "gasf": "GASF diffusion", "cvae": "CVAE", "smote": "SMOTE",
          "fast_retransmit": "Fast Retransmit"}
RADAR = ("pkt_count_jsd", "1gram_jsd", "2gram_jsd", "markov_jsd", "uniq_align", "leakage")
HIGHER_BETTER = ("uniq_align",)
FIDELITY = RADAR + ("copy_rate",)
VARIANTS = ("torch fp32", "torchao int8-wo", "torchao int8-da", "onnx fp32", "onnx int8")
SPEED_LENGTH = 10  # packets per flow when timing LLaMA and Mamba (the study's fixed-length setting, as bench speed)
REFIT_CAP = 5  # a refit on kept flows runs at most this many times the full fit's epochs


@dataclass(frozen=True)
class Plan:
    """What a run spends: the default plan is the full comparison; `--quick` trades it for minutes (QUICK below)."""

    epochs: int = 80  # LLaMA/Mamba epochs on the full training split (the Makefile's EPOCHS)
    budget: float = 1.0  # the neural baselines' training effort (train/synthesizer.py: 1.0 = their default)
    fractions: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5, 1.0)
    draws: int = 3
    classes: int = 0  # keep only the N largest classes of the training split (0 = all)
    per_class: int = 0  # at most this many training flows per class, drawn with the seed (0 = all)
    flows_b1: int = 60  # flows timed one at a time for "batch 1"
    variants: tuple[str, ...] = VARIANTS


# Under 10 minutes on a 2-core CPU: 8 classes, 60 training flows each, short training, one draw, two fractions.
QUICK = Plan(epochs=10, budget=0.2, fractions=(0.1, 1.0), draws=1, classes=8, per_class=60, flows_b1=10,
             variants=("torch fp32", "torchao int8-wo", "onnx int8"))


# -- data -------------------------------------------------------------------------------------------------------------
def ndpi_split(ndpi: Path, out: Path, log: Callable[[str], None] = print) -> tuple[Path, Path]:
    """The benchmark split of the nDPI corpus, made as `make bench` makes it (ingest with the labels CSV, then split
    with the default settings), written to out/train.parquet and out/test.parquet."""
    from ..runtime.ingest import ingest_paths
    from ..runtime.split import SplitConfig, split_flows

    if not (ndpi / "pcaps").is_dir() or not (ndpi / "labels.csv.gz").is_file():
        raise ValueError(f"{ndpi}: no nDPI corpus (pcaps/ and labels.csv.gz) here; give --real-train and --real-test, "
                         "or --ndpi DIR")
    flows, _ = ingest_paths([ndpi / "pcaps"], labels=ndpi / "labels.csv.gz", progress=False, warn=lambda m: None)
    train, test, table = split_flows(flows, SplitConfig())
    paths = out / "train.parquet", out / "test.parquet"
    write_flows(paths[0], train)
    write_flows(paths[1], test)
    log(f"nDPI split: {len(table)} classes, {len(train)} train / {len(test)} test flows -> {out}")
    return paths


def subset(train: list[Flow], test: list[Flow], plan: Plan, seed: int) -> tuple[list[Flow], list[Flow]]:
    """The plan's class subset (the largest classes of the training split, ties by name) and per-class cap on the
    training flows (a seeded draw); the test flows of the kept classes are all kept."""
    n = Counter(f.label for f in train)
    keep = sorted(n, key=lambda c: (-n[c], c))[: plan.classes or None]
    rng = np.random.default_rng(seed)
    out = []
    for c in sorted(keep):
        flows = [f for f in train if f.label == c]
        if plan.per_class and len(flows) > plan.per_class:
            flows = [flows[i] for i in sorted(rng.choice(len(flows), plan.per_class, replace=False))]
        out += flows
    return out, [f for f in test if f.label in keep]


def kept_flows(train: list[Flow], fraction: float, seed: int) -> list[Flow]:
    """The low-data setting: round(fraction x n) of each class's n training flows, at least 2 (1 where the class has
    only 1): the first ones of a permutation drawn per class from the seed and the class name, so the flows kept at a
    smaller fraction are among those kept at a larger one, and a class's draw does not depend on the other classes."""
    out = []
    for c in sorted({f.label for f in train}):
        flows = [f for f in train if f.label == c]
        k = min(len(flows), max(2, round(fraction * len(flows))))
        order = np.random.default_rng([seed, zlib.crc32(c.encode())]).permutation(len(flows))
        out += [flows[i] for i in sorted(order[:k])]
    return out


def refit_epochs(epochs: int, n_full: int, n_kept: int) -> int:
    """Epochs for LLaMA or Mamba refitted on kept flows: as many training flows seen as in the full fit (its number of
    optimizer steps, while an epoch still holds a batch or more), because a budget in epochs is a tiny one on tiny data
    (30 epochs of 116 flows taught a generator almost nothing, docs/appliance.md); at most REFIT_CAP times its epochs,
    since every epoch also pays for the checkpoint rule's validation."""
    return min(REFIT_CAP * epochs, math.ceil(epochs * n_full / max(1, n_kept)))


# -- methods ----------------------------------------------------------------------------------------------------------
class Generator:
    """LLaMA or Mamba in the Synthesizer shape: `fit` trains a run into `run` (train/train.py with `epochs`, its
    checkpoint rule included; its log beside it as RUN.log), `sample` generates from it through the torch engine.

    A fit leaves RUN.fit.json beside the run: what it was trained on (a digest of the flows, epochs, seed), how long
    it took, its peak memory and device. A later fit of the same flows, epochs and seed reuses the run instead of
    training again, so an interrupted `bench paper` resumes, and runs trained elsewhere (`--jobs`, another machine)
    are picked up."""

    def __init__(self, name: str, run: Path, epochs: int) -> None:
        self.name, self.run, self.epochs = name, run, epochs
        self.record_path = run.parent / f"{run.name}.fit.json"
        self.record: dict = {}

    def key(self, flows: list[Flow], seed: int) -> dict:
        rows = [(f.label, f.dir, f.pl, f.iat) for f in flows]
        return {"flows": hashlib.sha256(json.dumps(rows).encode()).hexdigest(), "epochs": self.epochs, "seed": seed}

    def trained(self, flows: list[Flow], seed: int) -> dict | None:
        """The record of a finished fit of these flows, epochs and seed, or None."""
        try:
            record = json.loads(self.record_path.read_text())
        except (OSError, ValueError):
            return None
        ok = isinstance(record, dict) and record.get("key") == self.key(flows, seed) and self.run.is_dir()
        return record if ok else None  # the run itself is verified when it is loaded

    def train(self, flows: list[Flow], seed: int = 0, threads: int | None = None, together: int = 1) -> dict:
        """Train the run unless a finished fit of the same flows, epochs and seed is recorded; the record
        (`together`: how many fits ran side by side with this one, for the report)."""
        import torch

        from ..runtime.settings import TrainConfig
        from ..train.train import resolve_device, train
        from .speed import PeakMemory

        record = self.trained(flows, seed)
        if record is not None:
            return record
        if threads:
            torch.set_num_threads(threads)
        lines: list[str] = []
        c = TrainConfig(epochs=self.epochs, seed=seed)
        device = resolve_device(c.device)
        t = time.perf_counter()
        with PeakMemory() as mem:
            summary = train(flows, self.run, None, c, log=lines.append, model_type=self.name)
        record = {"key": self.key(flows, seed), "fit_s": time.perf_counter() - t, "fit_peak_mb": mem.peak_mb,
                  "device": torch.cuda.get_device_name() if device == "cuda" else device, "together": together,
                  "summary": summary}
        log_path = self.run.parent / f"{self.run.name}.log"
        write_atomic(log_path, lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))
        write_atomic(self.record_path, lambda tmp: Path(tmp).write_text(json.dumps(record, default=float)))
        return record

    def fit(self, flows: list[Flow], seed: int = 0) -> None:
        from ..train.checkpoint import load_run
        from ..train.engine import TorchEngine

        self.record = self.train(flows, seed)
        model, self.tok = load_run(self.run)
        self.engine = TorchEngine(model)

    def sample(self, counts: dict[str, int], seed: int = 0) -> list[Flow]:
        from ..runtime.sampler import generate

        counts = {c: n for c, n in counts.items() if n > 0}
        return [f for batch in generate(self.engine, self.tok, counts, seed=seed) for f in batch]


def _train_job(name: str, run: Path, epochs: int, flows: list[Flow], seed: int, threads: int, together: int) -> None:
    Generator(name, run, epochs).train(flows, seed, threads, together)


def generator_jobs(train: list[Flow], methods: tuple[str, ...], plan: Plan, out: Path,
                   seed: int) -> list[tuple[str, Path, int, list[Flow]]]:
    """(model, run, epochs, flows) of every LLaMA/Mamba fit a run of `run_paper` makes: the full fit, then one refit
    per kept fraction, as `run_paper` names them."""
    jobs = []
    for m in (m for m in methods if m in GENERATORS):
        jobs.append((m, run_dir(out, m), plan.epochs, train))
        for f in fractions_below_one(plan):
            kept = kept_flows(train, f, seed)
            jobs.append((m, run_dir(out, m, f), refit_epochs(plan.epochs, len(train), len(kept)), kept))
    return jobs


def train_generators(jobs: list[tuple[str, Path, int, list[Flow]]], seed: int, workers: int, threads: int,
                     log: Callable[[str], None] = print) -> None:
    """Train the jobs' runs `workers` at a time in spawned processes (one GPU, or many cores, shared by small models),
    each with `threads` torch threads; runs already trained are skipped. The fit times recorded are then measured
    side by side."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    todo = [j for j in jobs if Generator(*j[:3]).trained(j[3], seed) is None]
    workers = min(workers, len(todo))
    log(f"training {len(todo)} LLaMA/Mamba run(s), {workers} at a time ({len(jobs) - len(todo)} already trained)")
    if not todo:
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        running = {pool.submit(_train_job, *job, seed, threads, workers): job[1] for job in todo}
        for done in as_completed(running):
            done.result()
            log(f"{running[done].name}: trained")


def make_method(name: str, run: Path, epochs: int, budget: float, threads: int):
    """A fresh, unfitted method (a Synthesizer); a generator trains into `run`."""
    if name in GENERATORS:
        return Generator(name, run, epochs)
    from ..train.synthesizer import make_baseline

    return make_baseline(name, budget=budget, threads=threads)


def check_methods(methods: tuple[str, ...]) -> None:
    """Every baseline asked for can be built here (its module present, its dependencies installed), before any work."""
    for m in methods:
        if m in GENERATORS:
            continue
        try:
            make_method(m, Path(), 1, 1.0, 1)
        except ImportError as e:
            raise ValueError(f"--methods: {m} cannot run here ({e})") from None


# -- scores -----------------------------------------------------------------------------------------------------------
def mean_sd(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "sd": float(np.std(values))}


def floor_fidelity(train: list[Flow], test: list[Flow]) -> dict[str, float]:
    """The real-vs-real floor: the training flows scored as a synthetic set would be (leakage and copy rate of the
    test flows against the training flows: the natural rates)."""
    from ..runtime import metrics

    out = metrics.fidelity(test, train)
    out["leakage"] = metrics.leakage(train, test)
    out["copy_rate"] = metrics.copy_rate(train, test)
    return out


def radar_score(metric: str, value: float, floor: float) -> float:
    """1 = as good as the real floor or better, towards 0 = worse: floor / value for the lower-is-better metrics,
    value / floor for UniqAlign; capped at 1."""
    num, den = (value, floor) if metric in HIGHER_BETTER else (floor, value)
    return 1.0 if den <= 0 else float(min(1.0, max(0.0, num / den)))


def better(metric: str, a: float, b: float) -> bool:
    return a > b if metric in HIGHER_BETTER else a < b


# -- efficiency -------------------------------------------------------------------------------------------------------
def baseline_size(method, run: Path) -> tuple[int | None, int]:
    """(parameters, bytes) of a fitted baseline, written to `run` as `ntg-edge train --model NAME` writes it: the
    bytes are its files but config and manifest (a neural one's weights, the real flows SMOTE and Fast Retransmit
    keep, GASF both), as LLaMA's size is its weights file; parameters None for the ones without a network."""
    from ..runtime.manifest import CONFIG, read_manifest, read_yaml
    from ..train.checkpoint import save_baseline

    save_baseline(run, method)
    size = sum((run / name).stat().st_size for name in read_manifest(run) if name != CONFIG)
    return read_yaml(run / CONFIG).get("parameters"), size


def generator_efficiency(gen: Generator, base: dict, plan: Plan, work: Path, log: Callable[[str], None]) -> list[dict]:
    """One row per variant of a trained generator: bench/speed.py's run_speed at batch 1 and 1024, fixed length."""
    from .speed import run_speed

    hist = gen.record["summary"]["history"]
    base = {**base, "epochs": len(hist), "s_per_epoch": float(np.mean([h["epoch_s"] for h in hist])),
            "params": gen.record["summary"]["params"], "fit_device": gen.record["device"],
            "fits_together": gen.record["together"]}
    rep = run_speed(gen.run, work, batches=(1, 1024), flows_b1=plan.flows_b1, n_batches=1, length=SPEED_LENGTH,
                    peer=False, wanted=plan.variants, log=log)
    rows = []
    for v in dict.fromkeys(r["variant"] for r in rep["rows"]):
        b1, b1024 = ({r["batch"]: r for r in rep["rows"] if r["variant"] == v}[b] for b in (1, 1024))
        rows.append({**base, "variant": v, "size_bytes": b1["size_bytes"], "ms_per_flow_b1": b1["ms_per_flow"],
                     "ms_per_flow_b1024": b1024["ms_per_flow"], "gen_peak_mb": b1["peak_mb"],
                     "packets_per_flow": SPEED_LENGTH})
    return rows


def baseline_efficiency(method, base: dict, classes: list[str], plan: Plan, seed: int, run: Path) -> list[dict]:
    """A baseline's own `sample`: one call of 1024 flows (spread over the classes), and flows_b1 calls of one flow;
    its size as the run directory `run`."""
    from .speed import PeakMemory

    method.sample({classes[0]: 1}, seed)  # warm-up: lazy imports, first-call allocations
    with PeakMemory() as mem:
        t = time.perf_counter()
        flows = method.sample(spread(classes, 1024), seed)
        b1024 = (time.perf_counter() - t) / len(flows)
    t = time.perf_counter()
    for i in range(plan.flows_b1):
        method.sample({classes[i % len(classes)]: 1}, seed + i)
    b1 = (time.perf_counter() - t) / plan.flows_b1
    params, size = baseline_size(method, run)
    return [{**base, "variant": "", "params": params, "size_bytes": size,
             "ms_per_flow_b1": 1e3 * b1, "ms_per_flow_b1024": 1e3 * b1024, "gen_peak_mb": mem.peak_mb,
             "packets_per_flow": float(np.mean([len(f.pl) for f in flows]))}]


# -- the run ----------------------------------------------------------------------------------------------------------
def pct(fraction: float) -> str:
    return f"{100 * fraction:g}%"


def fractions_below_one(plan: Plan) -> list[float]:
    return sorted(f for f in set(plan.fractions) if f < 1)  # at 100% nothing is missing: augmented = real-only


def run_dir(out: Path, method: str, fraction: float = 1.0) -> Path:
    """Where a method's fit on the full split (or its refit on a kept fraction) goes."""
    return out / "runs" / (method if fraction == 1.0 else f"{method}-{100 * fraction:g}pct")


def timed_fit(method, flows: list[Flow], seed: int) -> tuple[float, float]:
    """Fit `method`; (wall seconds, peak MB) of the fit: a generator's as recorded when its run was trained."""
    from .speed import PeakMemory

    if isinstance(method, Generator):
        method.fit(flows, seed)
        return method.record["fit_s"], method.record["fit_peak_mb"]
    t = time.perf_counter()
    with PeakMemory() as mem:
        method.fit(flows, seed)
    return time.perf_counter() - t, mem.peak_mb


def run_paper(train: list[Flow], test: list[Flow], out: str | Path, methods: tuple[str, ...] = METHODS,
              plan: Plan = Plan(), seed: int = 0, threads: int = 1, jobs: int = 1,
              log: Callable[[str], None] = print) -> dict:
    """The report (a dict: `write_report` writes it) of every research question for every method; the runs and the
    first draw of each method's synthetic flows go to out/runs and out/synthetic. With `jobs` > 1 the LLaMA/Mamba
    runs are trained that many at a time first (`train_generators`)."""
    from ..runtime import metrics
    from ..runtime.metrics import train_test_f1

    t_start = time.perf_counter()
    out = Path(out)
    check_methods(methods)
    if any(m in GENERATORS for m in methods):
        import torch

        torch.set_num_threads(threads)
    train, test = subset(train, test, plan, seed)
    classes = sorted({f.label for f in train})
    if len(classes) < 2 or not {f.label for f in test} & set(classes):
        raise ValueError(f"need training flows of at least 2 classes and test flows of those classes (got "
                         f"{len(classes)} training classes)")
    counts = {c: n for c, n in sorted(Counter(f.label for f in train).items())}
    seeds = [seed + d for d in range(plan.draws)]
    fractions = fractions_below_one(plan)
    kept = {f: kept_flows(train, f, seed) for f in fractions}
    log(f"{len(classes)} classes, {len(train)} train / {len(test)} test flows; methods {', '.join(methods)}; "
        f"{plan.draws} draw(s); fractions {', '.join(map(pct, plan.fractions))}")
    if jobs > 1 and any(m in GENERATORS for m in methods):
        train_generators(generator_jobs(train, methods, plan, out, seed), seed, jobs, threads, log)

    floor = floor_fidelity(train, test)
    trtr = mean_sd([train_test_f1(train, test, s, threads) for s in seeds])
    real_only = {f: mean_sd([train_test_f1(kept[f], test, s, threads) for s in seeds]) for f in fractions}
    fid, tstr, aug, eff = {}, {}, {}, []
    for m in methods:
        method = make_method(m, run_dir(out, m), plan.epochs, plan.budget, threads)
        fit_s, fit_mb = timed_fit(method, train, seed)
        draws = [method.sample(counts, s) for s in seeds]
        write_flows(out / "synthetic" / f"{m}.parquet", draws[0])
        scores = [metrics.fidelity(test, syn, train) for syn in draws]
        fid[m] = {k: mean_sd([s[k] for s in scores]) for k in FIDELITY}
        tstr[m] = mean_sd([train_test_f1(syn, test, s, threads) for syn, s in zip(draws, seeds)])
        log(f"{m}: fitted in {fit_s:.1f} s; TSTR {tstr[m]['mean']:.3f} (TRTR {trtr['mean']:.3f})")
        base = {"method": m, "fit_s": fit_s, "fit_peak_mb": fit_mb}
        if isinstance(method, Generator):
            eff += generator_efficiency(method, base, plan, out / "runs" / f"{m}-variants", log)
        else:
            eff += baseline_efficiency(method, base, classes, plan, seed, out / "runs" / m)
        aug[m] = {}
        for f in fractions:  # strict: refitted on the kept flows only
            have = Counter(x.label for x in kept[f])
            refit = make_method(m, run_dir(out, m, f), refit_epochs(plan.epochs, len(train), len(kept[f])),
                                plan.budget, threads)
            refit.fit(kept[f], seed)
            missing = {c: counts[c] - have[c] for c in classes if counts[c] > have[c]}
            aug[m][f] = mean_sd([train_test_f1(kept[f] + refit.sample(missing, s), test, s, threads) for s in seeds])
            log(f"{m}: {pct(f)} kept ({len(kept[f])} flows) + {sum(missing.values())} synthetic: macro-F1 "
                f"{aug[m][f]['mean']:.3f} (real-only {real_only[f]['mean']:.3f})")

    full = {pct(1.0): trtr} if 1.0 in plan.fractions else {}  # all real flows kept: every method is TRTR
    rep = {
        "meta": {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(threads),
                 "code": code_version(),
                 "plan": asdict(plan), "seed": seed, "methods": list(methods), "classes": counts,
                 "train_flows": len(train), "test_flows": len(test),
                 "memory": "peak RSS growth over the block (VmHWM reset through /proc/self/clear_refs; "
                           "the process's ru_maxrss where that reset is not possible), not tracemalloc: torch's "
                           "and numpy's native buffers are what matters"},
        "rq1": {"real_floor": floor, "methods": fid,
                "radar": {m: {k: radar_score(k, fid[m][k]["mean"], floor[k]) for k in RADAR} for m in methods}},
        "rq2": {"trtr": trtr, "methods": {m: {**tstr[m], "ratio": tstr[m]["mean"] / max(trtr["mean"], 1e-9)}
                                          for m in methods}},
        "rq3": {"fractions": sorted(set(plan.fractions)), "kept_flows": {pct(f): len(kept[f]) for f in fractions},
                "real_only": {**{pct(f): real_only[f] for f in fractions}, **full},
                "methods": {m: {**{pct(f): aug[m][f] for f in fractions}, **full} for m in methods}},
        "rq4": {"rows": eff},
    }
    rep["conclusions"] = conclusions(rep)
    rep["meta"]["wall_s"] = time.perf_counter() - t_start
    return rep


def code_version() -> str:
    """The checkout's commit (with "+changes" when the tree differs from it), or "unknown" outside a git checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+changes" if dirty else "")


def machine(threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:  # Linux names the CPU model here; platform.processor() is often empty there
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = ""
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
        gpu = f", GPU {sys.modules['torch'].cuda.get_device_name(0)}"
    return (f"{platform.machine()} {cpu}, {os.cpu_count()} cores ({threads} thread(s) used){gpu}, "
            f"Python {platform.python_version()}")


# -- conclusions ------------------------------------------------------------------------------------------------------
def conclusions(rep: dict) -> dict[str, list[str]]:
    """Plain sentences for each research question, from the numbers alone."""
    methods, draws = rep["meta"]["methods"], rep["meta"]["plan"]["draws"]
    gens, bases = [m for m in methods if m in GENERATORS], [m for m in methods if m not in GENERATORS]
    fid, floor = rep["rq1"]["methods"], rep["rq1"]["real_floor"]
    out: dict[str, list[str]] = {"rq1": [], "rq2": [], "rq3": [], "rq4": []}

    def val(m: str, k: str) -> float:
        return fid[m][k]["mean"]

    best = {k: max(methods, key=lambda m: val(m, k) if k in HIGHER_BETTER else -val(m, k)) for k in RADAR}
    top, n = Counter(best[k] for k in RADAR).most_common(1)[0]
    out["rq1"].append(f"Closest to the real data on the most metrics: {LABELS[top]} (best on {n} of {len(RADAR)}: "
                      f"{', '.join(k for k in RADAR if best[k] == top)}).")
    for g in gens if bases else ():
        beat = [k for k in RADAR if all(better(k, val(g, k), val(b, k)) for b in bases)]
        out["rq1"].append(f"{LABELS[g]} beats every baseline on {len(beat)} of {len(RADAR)} metrics "
                          f"({', '.join(beat) or 'none'}): {'yes' if 2 * len(beat) > len(RADAR) else 'not'} on most.")
    copiers = [m for m in methods if val(m, "copy_rate") > floor["copy_rate"]]
    out["rq1"].append(
        f"Copy rate above the natural rate ({floor['copy_rate']:.2f}, real test flows whose first 10 packets equal a "
        f"training flow's): " + (", ".join(f"{LABELS[m]} {val(m, 'copy_rate'):.2f}" for m in copiers) if copiers
                                 else "none") + ".")

    t, trtr = rep["rq2"]["methods"], rep["rq2"]["trtr"]["mean"]
    order = sorted(methods, key=lambda m: -t[m]["mean"])
    line = f"Best TSTR: {LABELS[order[0]]}, macro-F1 {t[order[0]]['mean']:.3f} = {t[order[0]]['ratio']:.2f} x TRTR " \
           f"({trtr:.3f})"
    if len(order) > 1 and draws > 1 and t[order[0]]["mean"] - t[order[1]]["mean"] <= t[order[0]]["sd"] + t[order[1]]["sd"]:
        line += f"; {LABELS[order[1]]} ({t[order[1]]['mean']:.3f}) is within the draws' spread of it"
    out["rq2"].append(line + ".")
    out["rq2"].append("Ranking: " + " > ".join(f"{LABELS[m]} {t[m]['mean']:.3f}" for m in order) + ".")
    for g in gens if bases else ():
        above = [b for b in bases if t[b]["mean"] >= t[g]["mean"]]
        out["rq2"].append(f"{LABELS[g]}'s TSTR is " + ("above every baseline's." if not above else
                                                       f"not above {', '.join(LABELS[b] for b in above)}."))

    fractions = [f for f in rep["rq3"]["fractions"] if f < 1]
    low = [f for f in fractions if f <= 0.1] or fractions[:1]
    if low:
        where = ", ".join(pct(f) for f in low)
        real = rep["rq3"]["real_only"]
        gain = {m: float(np.mean([rep["rq3"]["methods"][m][pct(f)]["mean"] - real[pct(f)]["mean"] for f in low]))
                for m in methods}
        b = max(methods, key=gain.get)
        out["rq3"].append(
            f"At {where} of the real training flows, augmenting with {LABELS[b]} gains {gain[b]:+.3f} macro-F1 over "
            f"real-only (mean over those fractions)." if gain[b] > 0 else
            f"At {where} of the real training flows no method improves on real-only; the least harmful is "
            f"{LABELS[b]} ({gain[b]:+.3f} macro-F1).")
        out["rq3"].append(f"Gain over real-only at {where}: " + ", ".join(f"{LABELS[m]} {gain[m]:+.3f}" for m in
                                                                        sorted(methods, key=lambda m: -gain[m])) + ".")
    else:
        out["rq3"].append("No fraction below 100% was run: nothing to augment.")

    rows = rep["rq4"]["rows"]
    for key, what in (("ms_per_flow_b1", "batch 1"), ("ms_per_flow_b1024", "batch 1024")):
        r = min(rows, key=lambda r: r[key])
        out["rq4"].append(f"Fastest generation at {what}: {LABELS[r['method']]}"
                          f"{' ' + r['variant'] if r['variant'] else ''}, {r[key]:.3f} ms per flow.")
    for g in gens:
        mine = [r for r in rows if r["method"] == g and r["size_bytes"]]
        fp32 = next((r for r in mine if r["variant"] == "torch fp32"), None)
        int8 = [r for r in mine if "int8" in r["variant"]]  # the shipped variant (ONNX int8) where it was built
        small = next((r for r in int8 if r["variant"] == "onnx int8"), min(int8, key=lambda r: r["size_bytes"],
                                                                            default=None))
        if fp32 and small:
            out["rq4"].append(f"{LABELS[g]}: {small['variant']} is {small['size_bytes'] / 1e6:.2f} MB against "
                              f"{fp32['size_bytes'] / 1e6:.2f} MB fp32 ({fp32['size_bytes'] / small['size_bytes']:.1f}x "
                              f"smaller), {small['ms_per_flow_b1']:.2f} against {fp32['ms_per_flow_b1']:.2f} ms per "
                              f"flow at batch 1.")
    return out


# -- report -----------------------------------------------------------------------------------------------------------
def md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
            *("| " + " | ".join(r) + " |" for r in rows)]


def ms(v: dict, draws: int) -> str:
    return f"{v['mean']:.3f}" + (f" ± {v['sd']:.3f}" if draws > 1 else "")


def report_md(rep: dict, command: str) -> str:
    meta, plan = rep["meta"], rep["meta"]["plan"]
    methods, draws = meta["methods"], plan["draws"]
    head = [LABELS[m] for m in methods]
    quick = plan != asdict(Plan())
    lines = [
        "# The reference study's comparison (Bovenzi et al. 2026), rerun", "",
        f"- Command: `{command}`",
        f"- Date: {meta['date']}; wall time {meta['wall_s'] / 60:.1f} min",
        f"- Machine: {meta['machine']}; code {meta.get('code', 'unknown')}",
        f"- Data: {len(meta['classes'])} classes, {meta['train_flows']} training / {meta['test_flows']} test flows"
        + (f" (the {plan['classes']} largest classes" if plan["classes"] else "")
        + (f", at most {plan['per_class']} training flows per class, drawn with the seed" if plan["per_class"] else "")
        + (")" if plan["classes"] else ""),
        f"- Plan{' (not the full plan: figures for a smoke check, not for citing)' if quick else ' (full)'}: "
        f"LLaMA/Mamba {plan['epochs']} epochs (the checkpoint rule of `ntg-edge train` picks the kept epoch), "
        f"neural baselines budget {plan['budget']:g}, {draws} draw(s) (generation seed and forest seed "
        f"{meta['seed']} + d), fractions {', '.join(pct(f) for f in plan['fractions'])}, seed {meta['seed']}",
        f"- Methods: {', '.join(head)}", "",
        "## RQ1: fidelity", "",
        "Synthetic flows (as many per class as the real training split) against the real test flows; JSDs in bits, "
        "macro over classes (0 = same distribution); UniqAlign 1 = as diverse as real; leakage = Jaccard of exact "
        "sequences with the training flows; copy rate = flows whose first 10 packets equal a training flow's. "
        "Real floor = the real training flows scored the same way (leakage and copy rate: the test flows against "
        "the training flows, the natural rates)"
        + (f"; mean ± sd over {draws} draws." if draws > 1 else "."), ""]
    fid, floor = rep["rq1"]["methods"], rep["rq1"]["real_floor"]
    lines += md_table(["metric", "real floor", *head],
                      [[k, f"{floor[k]:.3f}", *(ms(fid[m][k], draws) for m in methods)] for k in FIDELITY])
    lines += ["", "![fidelity radar](fidelity_radar.png)", "",
              "Radar: each axis is the metric normalised to the real floor, floor / value for the lower-is-better "
              "metrics (the JSDs, leakage) and value / floor for UniqAlign, capped at 1: 1 = as good as real "
              "(or better), 0.5 = twice as far from the test flows as the real training flows are.", ""]
    lines += [f"- {s}" for s in rep["conclusions"]["rq1"]]

    t = rep["rq2"]
    lines += ["", "## RQ2: TSTR", "",
              "Random-forest macro-F1 on the real test flows (200 trees, runtime/metrics.py features), trained on "
              "synthetic flows only (as many per class as the real training split) = TSTR, or on the real training "
              "flows = TRTR.", ""]
    lines += md_table(["trained on", "macro-F1", "/ TRTR"],
                      [["real training flows (TRTR)", ms(t["trtr"], draws), "1.00"]]
                      + [[LABELS[m], ms(t["methods"][m], draws), f"{t['methods'][m]['ratio']:.2f}"] for m in methods])
    lines += ["", "![TSTR](tstr.png)", ""] + [f"- {s}" for s in rep["conclusions"]["rq2"]]

    a = rep["rq3"]
    cols = [pct(f) for f in a["fractions"]]
    lines += ["", "## RQ3: low-data augmentation", "",
              "For each fraction, each class keeps round(fraction x its training flows), at least 2 (the first of a "
              "permutation drawn per class from the seed and the class name, so smaller fractions' flows are among "
              "larger ones'). Strict setting: every method is refitted on the kept flows only (a generator cannot "
              "see flows the user does not have; LLaMA/Mamba see as many training flows as in the full fit, at most "
              f"{REFIT_CAP}x its epochs; the baselines keep their own budget). Each class is then filled back up to its count in the full training split "
              "with that method's flows, and a forest trained on real kept + synthetic is scored on the real test "
              "flows. At 100% nothing is missing, so every method equals real-only (TRTR).", ""]
    kept = [str(a["kept_flows"].get(c, meta["train_flows"])) for c in cols]
    lines += md_table(["method", *cols], [["kept real flows", *kept], ["real only", *(ms(a["real_only"][c], draws)
                                                                                     for c in cols)]]
                      + [[LABELS[m], *(ms(a["methods"][m][c], draws) for c in cols)] for m in methods])
    lines += ["", "![augmentation](augmentation.png)", ""] + [f"- {s}" for s in rep["conclusions"]["rq3"]]

    lines += ["", "## RQ4: efficiency", "",
              f"Fit: wall seconds of `fit` on the training split (LLaMA/Mamba: s per epoch = the training part of an "
              f"epoch, without the checkpoint rule's validation). Generation: ms per flow, one flow per call "
              f"({plan['flows_b1']} calls) and 1,024 per call; LLaMA/Mamba and their int8 variants generate fixed "
              f"{SPEED_LENGTH}-packet flows through bench/speed.py (the study's setting), the baselines whole flows "
              f"(their mean length in the table). Memory: {meta['memory']}. A method measured later can reuse memory "
              "an earlier one freed, so its figure can understate. Size: the weights file (ONNX: the graph) for "
              "LLaMA/Mamba, the files of its run (`train --model NAME`) for a baseline: the weights, the real flows it "
              "keeps (SMOTE, Fast Retransmit) or both (GASF). Timed one method after another on a possibly shared "
              "machine: compare within a run.", ""]
    lines += md_table(["method", "variant", "parameters", "size MB", "fit s", "s/epoch", "fit peak MB",
                       "ms/flow b1", "ms/flow b1024", "gen peak MB", "packets/flow"],
                      [[LABELS[r["method"]] if first else "", r["variant"] or "–",
                        f"{r['params']:,}" if r["params"] else "–",
                        f"{r['size_bytes'] / 1e6:.2f}" if r["size_bytes"] else "–",
                        f"{r['fit_s']:.2f}" if first else "", f"{r['s_per_epoch']:.2f}" if first and "s_per_epoch" in r
                        else "", f"{r['fit_peak_mb']:.0f}" if first else "", f"{r['ms_per_flow_b1']:.3f}",
                        f"{r['ms_per_flow_b1024']:.3f}", f"{r['gen_peak_mb']:.0f}", f"{r['packets_per_flow']:.1f}"]
                       for i, r in enumerate(rep["rq4"]["rows"])
                       for first in [i == 0 or rep["rq4"]["rows"][i - 1]["method"] != r["method"]]])
    fitted = {(r["method"], r["fit_device"], r["fits_together"]) for r in rep["rq4"]["rows"] if "fit_device" in r}
    lines += [""] + [f"- {LABELS[m]} was trained on {device}" + (f", {n} fits side by side (fit s and s/epoch measured "
                                                                  "so)." if n > 1 else ".")
                     for m, device, n in sorted(fitted)]
    lines += [f"- {s}" for s in rep["conclusions"]["rq4"]]
    return "\n".join(lines) + "\n"


def plots(rep: dict, out: Path) -> None:
    """fidelity_radar.png, tstr.png and augmentation.png (matplotlib, Agg: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods, draws = rep["meta"]["methods"], rep["meta"]["plan"]["draws"]
    angles = np.linspace(0, 2 * np.pi, len(RADAR), endpoint=False).tolist()
    fig, ax = plt.subplots(figsize=(6.5, 6.5), subplot_kw={"polar": True})
    ax.plot(angles + angles[:1], [1.0] * (len(RADAR) + 1), "k--", lw=1, label="real floor")
    for m in methods:
        v = [rep["rq1"]["radar"][m][k] for k in RADAR]
        ax.plot(angles + angles[:1], v + v[:1], lw=1.5, label=LABELS[m])
        ax.fill(angles + angles[:1], v + v[:1], alpha=0.05)
    ax.set_xticks(angles, RADAR)
    ax.set_ylim(0, 1.05)
    ax.set_title("RQ1 fidelity, normalised to the real floor (1 = as good as real)")
    ax.legend(loc="upper right", bbox_to_anchor=(1.3, 1.1), fontsize=8)
    fig.savefig(out / "fidelity_radar.png", dpi=110, bbox_inches="tight")
    plt.close(fig)

    t = rep["rq2"]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar([LABELS[m] for m in methods], [t["methods"][m]["mean"] for m in methods],
           yerr=[t["methods"][m]["sd"] for m in methods] if draws > 1 else None, color="tab:blue", capsize=3)
    ax.axhline(t["trtr"]["mean"], color="k", ls="--", lw=1, label=f"TRTR {t['trtr']['mean']:.3f}")
    ax.set_ylabel("macro-F1 on real test flows")
    ax.set_ylim(0, 1)
    ax.set_title("RQ2 TSTR: forest trained on synthetic flows only")
    ax.legend()
    fig.autofmt_xdate(rotation=20)
    fig.savefig(out / "tstr.png", dpi=110, bbox_inches="tight")
    plt.close(fig)

    a = rep["rq3"]
    x = [100 * f for f in a["fractions"]]
    fig, ax = plt.subplots(figsize=(7, 4.5))

    def line(series: dict, **kw) -> None:
        y = [series[pct(f)]["mean"] for f in a["fractions"]]
        ax.errorbar(x, y, yerr=[series[pct(f)]["sd"] for f in a["fractions"]] if draws > 1 else None, marker="o",
                    capsize=3, **kw)

    line(a["real_only"], color="k", ls="--", label="real only")
    for m in methods:
        line(a["methods"][m], label=LABELS[m])
    ax.set_xscale("log")
    ax.set_xticks(x, [pct(f) for f in a["fractions"]])
    ax.minorticks_off()
    ax.set_xlabel("real training flows kept per class")
    ax.set_ylabel("macro-F1 on real test flows")
    ax.set_title("RQ3 augmentation: real kept + synthetic up to the full split's counts")
    ax.legend(fontsize=8)
    fig.savefig(out / "augmentation.png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def write_report(rep: dict, out: Path, command: str) -> None:
    write_atomic(out / "report.json", lambda tmp: Path(tmp).write_text(json.dumps(rep, indent=2, default=float)))
    plots(rep, out)
    write_atomic(out / "report.md", lambda tmp: Path(tmp).write_text(report_md(rep, command)))


# -- the command ------------------------------------------------------------------------------------------------------
def _methods(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    unknown = [n for n in names if n not in METHODS]
    if unknown or not names:
        raise click.BadParameter(f"{', '.join(unknown) or 'none given'}: expected some of {', '.join(METHODS)}")
    return names


def _fractions(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    pcts = positive_ints(ctx, param, value)
    if any(p > 100 for p in pcts):
        raise click.BadParameter(f"expected percentages 1 .. 100, got {value!r}")
    return tuple(sorted({p / 100 for p in pcts}))


def command(ctx: click.Context) -> str:
    """The command line as given (the options not left at their defaults), for the report's header."""
    words = ["ntg-edge bench paper"]
    for k, v in ctx.params.items():
        if ctx.get_parameter_source(k) == click.core.ParameterSource.DEFAULT or v in (None, False):
            continue
        if k == "fractions":
            v = ",".join(f"{100 * f:g}" for f in v)
        words.append(f"--{k.replace('_', '-')}" + ("" if v is True else f" {','.join(v) if isinstance(v, tuple) else v}"))
    return " ".join(words)


@click.command("paper")
@click.option("--real-train", type=click.Path(exists=True, dir_okay=False),
              help="Real training flows (with --real-test; default: the nDPI benchmark split, built into --out).")
@click.option("--real-test", type=click.Path(exists=True, dir_okay=False), help="Real test flows.")
@click.option("--ndpi", default="../shared/data/ndpi", show_default=True, type=click.Path(file_okay=False),
              help="The nDPI corpus (pcaps/, labels.csv.gz) split as `make bench` splits it, when no flows are given.")
@click.option("--methods", default=",".join(METHODS), show_default=True, callback=_methods,
              help="Comma-separated methods to compare.")
@click.option("--quick", is_flag=True, help="Minutes, not hours: the 8 largest classes, 60 training flows each, "
                                            "10 epochs, budget 0.2, one draw, fractions 10,100.")
@click.option("--epochs", type=click.IntRange(min=1), help="LLaMA/Mamba epochs on the full split (default 80; "
                                                           "--quick 10).")
@click.option("--budget", type=click.FloatRange(min=0, min_open=True),
              help="Training effort of the neural baselines (1 = their default; --quick 0.2).")
@click.option("--fractions", callback=_fractions, help="RQ3's kept shares in percent (default 5,10,20,50,100; "
                                                       "--quick 10,100).")
@click.option("--draws", type=click.IntRange(min=1), help="Synthetic draws per set (default 3; --quick 1).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, SEED_MAX))
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1),
              help="Threads for torch, the forests and the baselines (1: timings that compare across machines).")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1),
              help="Train the LLaMA/Mamba runs (full fits and refits) this many at a time first, in worker processes: "
                   "for a GPU or a many-core machine. Runs already in --out (same flows, epochs, seed) are reused "
                   "either way, so an interrupted run resumes.")
@click.option("--out", required=True, type=OutPath(file_okay=False), help="Folder for the report, runs and plots.")
def paper_command(real_train, real_test, ndpi, methods, quick, epochs, budget, fractions, draws, seed, threads,
                  jobs, out) -> None:
    """The reference study's four research questions (fidelity, TSTR, low-data augmentation, efficiency) for LLaMA,
    Mamba and its baselines: report.md, report.json and plots in --out."""
    if bool(real_train) != bool(real_test):
        raise click.UsageError("give --real-train and --real-test together (or neither, for the nDPI split)")
    plan = QUICK if quick else Plan()
    plan = replace(plan, **{k: v for k, v in dict(epochs=epochs, budget=budget, fractions=fractions,
                                                  draws=draws).items() if v is not None})
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise click.BadParameter(f"{out} is a file", param_hint="--out")
    check_methods(methods)
    out.mkdir(parents=True, exist_ok=True)
    if not real_train:
        real_train, real_test = ndpi_split(Path(ndpi), out, log=click.echo)
    rep = run_paper(read_flows(real_train), read_flows(real_test), out, methods, plan, seed, threads, jobs,
                    click.echo)
    write_report(rep, out, command(click.get_current_context()))
    for q in ("rq1", "rq2", "rq3", "rq4"):
        for s in rep["conclusions"][q]:
            click.echo(f"{q.upper()}: {s}")
    click.echo(f"report -> {out / 'report.md'}")
