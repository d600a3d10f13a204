"""Live capture: packets from an interface (pcapy-ng) assembled into flows by runtime/ingest.py `assemble` (the code
ingest uses), each flow classified once, when it reaches `classify_at` packets or ends if it ends shorter.

The capture runs in its own thread until `stop()`; its counts and recent predictions are read by the API, the
metrics and the page.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass
from typing import Any, Callable

from ..runtime.flows import Flow
from ..runtime.ingest import Assembly, assemble
from ..runtime.pcap import CaptureError, open_live
from .classifier import predict
from .config import CaptureConfig
from .telemetry import Telemetry


@dataclass(frozen=True)
class LivePrediction:
    time: float  # epoch seconds of the flow's first packet
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    protocol: int
    packets: int  # kept packets when it was classified
    ended: bool  # classified because the flow ended (before reaching classify_at packets)
    label: str
    probability: float


class LiveCapture:
    """`classifier()` returns the classifier in use at each call (so a swapped-in one is picked up at once)."""

    def __init__(self, cfg: CaptureConfig, classifier: Callable[[], Any], telemetry: Telemetry,
                 log: Callable[[str], None]) -> None:
        self.cfg, self._classifier, self._telemetry, self._log = cfg, classifier, telemetry, log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.flows_seen = 0  # flows assembled (ended, or classified while still open)
        self.unclassified = 0  # flows seen while no classifier was loaded
        self.counts: Counter[str] = Counter()
        self.recent: deque[LivePrediction] = deque(maxlen=cfg.recent)
        self.error: str | None = None
        self._early: set[int] = set()  # id() of open flows already classified at classify_at packets

    def start(self) -> None:
        """Open the interface (CaptureError / ValueError now, naming the interface or the filter) and capture."""
        capture = open_live(self.cfg.interface, math.inf, self.cfg.bpf, stop=self._stop)
        self._thread = threading.Thread(target=self._run, args=(capture,), name="capture", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self, capture) -> None:
        c = self.cfg
        try:
            for flow in assemble(capture, c.interface, Assembly(c.max_packets, c.idle_timeout, c.active_timeout),
                                 on_packet=self._on_packet):
                if id(flow) in self._early:
                    self._early.discard(id(flow))
                else:
                    self._classify(flow, ended=True)
        except (CaptureError, OSError) as e:
            self.error = str(e)
            self._telemetry.errors.labels(kind="capture").inc()
            self._log(f"capture on {c.interface} stopped: {e}")
        if capture.error:
            self.error = capture.error
            self._telemetry.errors.labels(kind="capture").inc()

    def _on_packet(self, flow: Flow) -> None:
        # `packets` too: with classify_at == max_packets, `pl` stays at that length for every later packet
        if len(flow.pl) == self.cfg.classify_at and flow.packets == self.cfg.classify_at:
            self._early.add(id(flow))
            self._classify(flow, ended=False)

    def _classify(self, flow: Flow, ended: bool) -> None:
        clf = self._classifier()
        with self._lock:
            self.flows_seen += 1
        self._telemetry.live_flows.inc()
        if clf is None:
            with self._lock:
                self.unclassified += 1
            return
        labels, p = predict(clf, [flow])
        pred = LivePrediction(flow.first_ts, flow.src_ip, flow.src_port, flow.dst_ip, flow.dst_port, flow.protocol,
                              len(flow.pl), ended, labels[0], float(p[0].max()))
        with self._lock:
            self.counts[labels[0]] += 1
            self.recent.append(pred)
        self._telemetry.count_classified(labels, "live")

    def snapshot(self) -> dict:
        with self._lock:
            return {"interface": self.cfg.interface, "bpf": self.cfg.bpf, "running": self.running,
                    "error": self.error, "classify_at": self.cfg.classify_at, "flows_seen": self.flows_seen,
                    "unclassified": self.unclassified, "counts": dict(self.counts),
                    "recent": [asdict(p) for p in reversed(self.recent)], "time": time.time()}
