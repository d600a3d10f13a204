"""The local classifier: a model over the benchmark's flow features, run by ONNX Runtime beside the generator.

Features (runtime/metrics.py `features`, the benchmark's TSTR classifier): a flow's first 20 packets as signed values
dir * (payload length + 1), 0 where the flow has fewer packets, then its kept-packet count: 21 float32 columns.

Persistence without pickles: the Random Forest is fitted with scikit-learn and converted to ONNX (skl2onnx), so
loading a classifier never executes stored code, and the edge box runs it on the ONNX Runtime it already has (one
runtime for both models, and far faster than scikit-learn's own predict_proba: docs/appliance.md). A classifier
directory holds

    classifier.json     {"format", "kind", "classes", "features", "model", "sha256", "version", "macro_f1", ...}
    classifier-N.onnx   the model named by "model"; its sha256 must match, or the classifier is refused

A retrain writes a new classifier-N.onnx first and then replaces classifier.json atomically, so a crash leaves the
previous classifier intact. The seam for another classifier (e.g. an ONNX model of your own IDS): any ONNX model
that takes `X` (or its only input) as (N, 21) float32 features and has a (N, classes) float output of probabilities,
described by the same classifier.json with kind "onnx"; it serves classify and live capture but is not retrained.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Protocol

import numpy as np
from sklearn.metrics import f1_score

from ..runtime.manifest import sha256
from ..runtime.flows import Flow, write_atomic
from ..runtime.metrics import N_FEATURES, features, fit, forest, train_test_f1

FORMAT = "ntg-edge-classifier/1"
META = "classifier.json"
FEATURES = f"first{N_FEATURES}-signed+count"  # the layout of runtime/metrics.py `features`


class ClassifierError(ValueError):
    """A classifier that is missing, unreadable or modified; the message names the file."""


class Classifier(Protocol):
    """What classify, augment and live capture need from a classifier."""

    classes: list[str]
    kind: str
    version: int
    macro_f1: float | None  # on the held-out real flows when it was trained; None if never measured

    def predict_proba(self, flows: list[Flow]) -> np.ndarray: ...


class OnnxModel:
    """An ONNX classifier graph (a file or bytes) in its own ONNX Runtime session: features in, probabilities out."""

    def __init__(self, model: str | Path | bytes, n_classes: int, threads: int = 1) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads  # the classifier's share of the cores (config: classifier.threads)
        so.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), so,
                                                 providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ONNX Runtime raises its own exception types for a bad graph
            raise ValueError(f"not a loadable ONNX model ({str(e).splitlines()[0]})") from None
        self._input = self._session.get_inputs()[0].name
        outs = [o for o in self._session.get_outputs()
                if o.type == "tensor(float)" and len(o.shape or ()) == 2 and o.shape[1] in (n_classes, None)]
        if not outs:
            raise ValueError(f"no (N, {n_classes}) float output of probabilities")
        self._output = next((o.name for o in outs if o.name == "probabilities"), outs[-1].name)
        self._n = n_classes

    def predict_proba(self, flows: list[Flow]) -> np.ndarray:
        if not flows:
            return np.zeros((0, self._n), np.float32)
        (p,) = self._session.run([self._output], {self._input: features(flows)})
        return p


class OnnxClassifier:
    """A classifier directory (module docstring) verified and loaded into an ONNX Runtime session."""

    def __init__(self, root: str | Path, threads: int = 1) -> None:
        root = Path(root)
        meta_path = root / META
        try:
            meta = json.loads(meta_path.read_text())
            model = root / meta["model"]
            digest, classes = meta["sha256"], list(meta["classes"])
        except FileNotFoundError:
            raise ClassifierError(f"{meta_path}: no classifier here") from None
        except (ValueError, KeyError, TypeError) as e:
            raise ClassifierError(f"{meta_path}: unreadable classifier description ({e})") from None
        if meta.get("format") != FORMAT or meta.get("features") != FEATURES:
            raise ClassifierError(f"{meta_path}: format {meta.get('format')!r} / features {meta.get('features')!r}, "
                                  f"expected {FORMAT!r} / {FEATURES!r}")
        if not model.is_file():
            raise ClassifierError(f"{model}: missing (named by {META})")
        if sha256(model) != digest:
            raise ClassifierError(f"{model}: sha256 does not match {META} (modified or corrupt classifier)")
        try:
            self._model = OnnxModel(model, len(classes), threads)
        except ValueError as e:
            raise ClassifierError(f"{model}: {e}") from None
        self.root, self.classes, self.kind = root, classes, str(meta.get("kind", "onnx"))
        self.version = int(meta.get("version", 0))
        self.macro_f1 = meta.get("macro_f1")
        self.trained_on: dict[str, int] = meta.get("trained_on", {})

    def predict_proba(self, flows: list[Flow]) -> np.ndarray:
        return self._model.predict_proba(flows)

    def describe(self) -> dict:
        return {"kind": self.kind, "version": self.version, "classes": self.classes, "macro_f1": self.macro_f1,
                "trained_on": self.trained_on, "features": FEATURES}


def predict(clf: Classifier, flows: list[Flow]) -> tuple[list[str], np.ndarray]:
    p = clf.predict_proba(flows)
    return [clf.classes[i] for i in p.argmax(axis=1)], p


def macro_f1(clf: Classifier, flows: list[Flow]) -> float:
    """Macro-F1 over the classes present in `flows` (the benchmark's measure)."""
    y = [f.label for f in flows]
    pred, _ = predict(clf, flows)
    return float(f1_score(y, pred, labels=sorted(set(y)), average="macro", zero_division=0))


def _flow_key(f: Flow) -> bytes:
    return repr((f.label, f.file, f.src_ip, f.src_port, f.dst_ip, f.dst_port, f.protocol, f.first_ts, f.pl,
                 f.dir)).encode()


def holdout_split(flows: list[Flow], share: float) -> tuple[list[Flow], list[Flow]]:
    """(train, held out): per class, the `share` of its flows with the smallest content hashes, at least one and
    never all of a class with two or more. Decided by each flow's content, not a random draw, so the same flows give
    the same holdout whether they train the classifier at start-up or come back through augment: "before" and
    "after" are then scored on flows neither model saw."""
    by: dict[str, list[tuple[bytes, int]]] = {}
    for i, f in enumerate(flows):
        by.setdefault(f.label, []).append((hashlib.sha256(_flow_key(f)).digest(), i))
    held: set[int] = set()
    for items in by.values():
        k = 0 if len(items) < 2 else min(len(items) - 1, max(1, round(share * len(items))))
        held.update(i for _, i in sorted(items)[:k])
    return [f for i, f in enumerate(flows) if i not in held], [flows[i] for i in sorted(held)]


def fit_forest(flows: list[Flow], trees: int, threads: int, seed: int = 0) -> tuple[bytes, list[str]]:
    """(ONNX model bytes, classes) of the benchmark's Random Forest fitted on labelled `flows`."""
    from skl2onnx import to_onnx

    classes = sorted({f.label for f in flows})
    y = np.searchsorted(classes, [f.label for f in flows])
    x = features(flows)
    clf = fit(forest(seed, threads, trees), x, y)
    # zipmap off: probabilities as one (N, classes) tensor, in the order of `classes` (the forest's integer labels)
    onx = to_onnx(clf, x[:1], options={"zipmap": False}, target_opset={"": 17, "ai.onnx.ml": 3})
    return onx.SerializeToString(), classes


def save_classifier(root: str | Path, model: bytes, classes: list[str], kind: str, version: int,
                    macro_f1: float | None, trained_on: dict[str, int]) -> Path:
    """Write classifier-<version>.onnx, then classifier.json atomically (module docstring); returns `root`."""
    root = Path(root)
    name = f"classifier-{version}.onnx"
    write_atomic(root / name, lambda tmp: Path(tmp).write_bytes(model))
    meta = {"format": FORMAT, "kind": kind, "classes": classes, "features": FEATURES, "model": name,
            "sha256": hashlib.sha256(model).hexdigest(), "version": version, "macro_f1": macro_f1,
            "trained_on": trained_on, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_atomic(root / META, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2) + "\n"))
    for old in root.glob("classifier-*.onnx"):  # earlier versions: nothing names them any more
        if old.name != name:
            old.unlink(missing_ok=True)
    return root


def held_out_f1(fit_on: list[Flow], held: list[Flow], trees: int, threads: int, seed: int = 0) -> float | None:
    """Macro-F1 on `held` of a forest fitted on `fit_on`: how good the recipe is, judged on flows it did not see."""
    return train_test_f1(fit_on, held, seed, threads, trees) if held else None


def train_classifier(root: str | Path, flows: list[Flow], trees: int, threads: int, holdout: float,
                     version: int = 1, seed: int = 0) -> OnnxClassifier:
    """Score the forest on a held-out part of labelled `flows`, then fit it on all of them, store and load it.

    The holdout only measures: a class of 2-5 flows cannot spare one of them for good (at 5% of the benchmark's
    training split, the forest fitted without its holdout scored 0.32 macro-F1 on the test split, 0.47 with it)."""
    fit_on, held = holdout_split(flows, holdout)
    score = held_out_f1(fit_on, held, trees, threads, seed)
    model, classes = fit_forest(flows, trees, threads, seed)
    save_classifier(root, model, classes, "forest", version, score, counts(flows))
    return OnnxClassifier(root, threads)


def counts(flows: list[Flow]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in flows:
        out[f.label] = out.get(f.label, 0) + 1
    return dict(sorted(out.items()))


class Scored:
    """A model not stored yet (a retrain's candidate) seen as a Classifier, to score it before deciding to keep it."""

    kind, version, macro_f1 = "forest", 0, None

    def __init__(self, model: OnnxModel, classes: list[str]) -> None:
        self._model, self.classes = model, classes

    def predict_proba(self, flows: list[Flow]) -> np.ndarray:
        return self._model.predict_proba(flows)
