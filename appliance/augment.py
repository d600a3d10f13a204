"""Augment: rebalance real labelled flows with synthetic ones, retrain the forest in the background, and swap it in
only if real + synthetic is not worse than the real flows alone on held-out real flows.

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
from .classifier import (Classifier, OnnxClassifier, OnnxModel, Scored, counts, fit_forest, held_out_f1,
                         holdout_split, save_classifier)
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
    held_out: int = 0  # of which held out to score the two recipes
    target_per_class: int = 0
    synthetic: dict[str, int] = field(default_factory=dict)  # synthetic flows added per class
    before_f1: float | None = None  # a forest on the real flows alone, on the held-out flows (None: none held out)
    after_f1: float | None = None  # a forest on the real and synthetic flows, on the same held-out flows
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
        cfg, c = self._cfg, self._cfg.classifier
        fit_on, held = holdout_split(flows, c.holdout)
        st.held_out = len(held)
        have = counts(flows)
        need = {k: max(0, target - have.get(k, 0)) for k in self._classes if k in have}
        if self._engine is None:
            self._engine = load_bundle(cfg.bundle, "cpu", threads=cfg.augment.threads)
        engine, tok = self._engine
        synthetic = generate_flows(engine, tok, need, cfg.generator.sampling, cfg.generator.batch_size,
                                   cfg.augment.seed)
        st.synthetic = counts(synthetic)
        # Two recipes judged on the same held-out real flows, both fitted without them: the real flows alone
        # ("before") and with the synthetic ones ("after"). Not the classifier in use: it may have been fitted on
        # these very flows (start-up fits on all of them), which would make it look better than it is.
        threads, seed = cfg.augment.threads, cfg.augment.seed
        st.before_f1 = held_out_f1(fit_on, held, c.trees, threads, seed)
        st.after_f1 = held_out_f1(fit_on + synthetic, held, c.trees, threads, seed)
        # the chosen recipe is then fitted on every real flow: a class of 2-5 flows cannot spare one for good
        model, classes = fit_forest(flows + synthetic, c.trees, threads, seed)
        self.candidate = Scored(OnnxModel(model, len(classes), c.threads), classes)
        current: Classifier | None = self._holder.classifier
        worse = st.after_f1 is not None and st.before_f1 is not None and st.after_f1 < st.before_f1
        if current is not None and worse:
            st.version = current.version
            self._log(f"augment: kept classifier v{current.version} (held-out macro-F1 real only {st.before_f1:.3f}, "
                      f"augmented {st.after_f1:.3f})")
            return
        version = (current.version if current is not None else 0) + 1
        root = Path(c.path)
        save_classifier(root, model, classes, "forest", version, st.after_f1, counts(flows + synthetic))
        self._holder.swap_classifier(OnnxClassifier(root, c.threads))
        st.swapped, st.version = True, version
        self._log(f"augment: classifier v{version} in use (held-out macro-F1 real only {st.before_f1}, "
                  f"augmented {st.after_f1})")

    def describe(self) -> dict:
        return asdict(self.status)
