"""Augment: rebalance real labelled flows with synthetic ones, retrain the forest in the background, and swap it in
only if it is not worse on the held-out real flows.

One job at a time (a second start raises Busy, which the API answers with 409). The job runs in its own thread with
its own generator session and forest threads (config `augment.threads`), so serving keeps its share of the cores.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..runtime.bundle import load_bundle
from ..runtime.flows import Flow
from ..runtime.sampler import Sampling
from .classifier import (Classifier, OnnxClassifier, OnnxModel, Scored, counts, fit_forest, holdout_split, macro_f1,
                         save_classifier)
from .config import ApplianceConfig
from .synth import generate_flows


class Busy(RuntimeError):
    """An augment job is already running."""


@dataclass
class AugmentStatus:
    state: str = "idle"  # idle | running | done | failed
    started: float | None = None  # epoch seconds
    finished: float | None = None
    real_flows: int = 0  # uploaded real flows
    held_out: int = 0  # of which held out to score the classifiers
    target_per_class: int = 0
    synthetic: dict[str, int] = field(default_factory=dict)  # synthetic flows added per class
    before_f1: float | None = None  # the classifier in use, on the held-out flows (None: there was none)
    after_f1: float | None = None  # the retrained candidate, on the same flows
    swapped: bool = False  # the candidate replaced the classifier in use
    version: int = 0  # the classifier version in use after the job
    error: str | None = None


class Augmenter:
    """`holder` is the appliance: it has `classifier` (Classifier or None) and `swap_classifier(new)`."""

    def __init__(self, cfg: ApplianceConfig, holder: Any, classes: list[str], log: Callable[[str], None]) -> None:
        self._cfg, self._holder, self._classes, self._log = cfg, holder, classes, log
        self._lock = threading.Lock()
        self._engine: tuple[Any, Any] | None = None  # (engine, tokenizer) with the augment thread budget
        self.status = AugmentStatus()
        self.candidate: Classifier | None = None  # the last retrained model, swapped in or not (for benchmarks)

    @property
    def running(self) -> bool:
        return self.status.state == "running"

    def start(self, flows: list[Flow], target_per_class: int) -> AugmentStatus:
        with self._lock:
            if self.running:
                raise Busy("an augment job is running; poll GET /v1/augment until it is done")
            self.status = AugmentStatus(state="running", started=time.time(), real_flows=len(flows),
                                        target_per_class=target_per_class)
            status = self.status
        threading.Thread(target=self._run, args=(status, flows, target_per_class), name="augment",
                         daemon=True).start()  # daemon: a forest fit cannot be interrupted; SIGTERM must not wait
        return status

    def _run(self, st: AugmentStatus, flows: list[Flow], target: int) -> None:
        try:
            self._augment(st, flows, target)
            st.state = "done"
        except Exception as e:  # noqa: BLE001 - the job's failure is reported through its status, not raised
            st.state, st.error = "failed", f"{type(e).__name__}: {e}"
            self._log(f"augment failed: {st.error}")
        finally:
            st.finished = time.time()

    def _augment(self, st: AugmentStatus, flows: list[Flow], target: int) -> None:
        cfg = self._cfg
        real, held = holdout_split(flows, cfg.classifier.holdout)
        st.held_out = len(held)
        have = counts(real)
        need = {c: max(0, target - have.get(c, 0)) for c in self._classes if c in have}
        if self._engine is None:
            self._engine = load_bundle(cfg.bundle, "cpu", threads=cfg.augment.threads)
        engine, tok = self._engine
        g = cfg.generator
        synthetic = generate_flows(engine, tok, need, Sampling(g.temperature, g.top_k, g.top_p), g.batch_size,
                                   cfg.augment.seed)
        st.synthetic = counts(synthetic)
        model, classes = fit_forest(real + synthetic, cfg.classifier.trees, cfg.augment.threads, cfg.augment.seed)
        self.candidate = candidate = Scored(OnnxModel(model, len(classes), cfg.classifier.threads), classes)
        current: Classifier | None = self._holder.classifier
        st.after_f1 = macro_f1(candidate, held) if held else None
        st.before_f1 = macro_f1(current, held) if held and current is not None else None
        keep_current = current is not None and (st.after_f1 is None or st.before_f1 is None
                                                or st.after_f1 < st.before_f1)
        if keep_current:
            st.version = current.version
            self._log(f"augment: kept classifier v{current.version} (before {st.before_f1}, after {st.after_f1})")
            return
        version = (current.version if current is not None else 0) + 1
        root = Path(cfg.classifier.path)
        save_classifier(root, model, classes, "forest", version, st.after_f1, counts(real + synthetic))
        self._holder.swap_classifier(OnnxClassifier(root, cfg.classifier.threads))
        st.swapped, st.version = True, version
        self._log(f"augment: classifier v{version} in use (before {st.before_f1}, after {st.after_f1})")

    def describe(self) -> dict:
        return asdict(self.status)
