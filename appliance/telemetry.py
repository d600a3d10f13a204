"""The appliance's Prometheus metrics (served at /v1/metrics) and the throughput figures the status page shows.

Each appliance has its own CollectorRegistry, so several apps in one process (the tests) do not collide and the
exposition holds only the appliance's own series.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# classify of 100 flows takes a few ms; streams and generate requests take seconds
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Rate:
    """Events per second over the last `window` seconds (for the page: a counter's rate without a Prometheus)."""

    def __init__(self, window: float = 10.0) -> None:
        self._window = window
        self._events: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        now = time.monotonic()
        with self._lock:
            self._events.append((now, n))
            self._trim(now)

    def per_second(self) -> float:
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            return sum(n for _, n in self._events) / self._window

    def _trim(self, now: float) -> None:
        while self._events and now - self._events[0][0] > self._window:
            self._events.popleft()


class Telemetry:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.generated = Counter("ntg_flows_generated", "Synthetic flows generated, by class.", ["cls"], registry=r)
        self.classified = Counter("ntg_flows_classified", "Flows classified, by predicted class and source "
                                  "(api = classify requests, live = the capture).", ["cls", "source"], registry=r)
        self.latency = Histogram("ntg_request_seconds", "Request latency by route (streams: until their end).",
                                 ["method", "route"], buckets=_BUCKETS, registry=r)
        self.stream_clients = Gauge("ntg_stream_clients", "Open NDJSON streams.", registry=r)
        self.queue_depth = Gauge("ntg_queue_depth", "Flows generated for streams but not sent yet (at most two "
                                 "batches per stream).", registry=r)
        self.errors = Counter("ntg_errors", "Errors by kind (validation, auth, conflict, not_found, internal, "
                              "capture, augment).", ["kind"], registry=r)
        self.classifier_version = Gauge("ntg_classifier_version", "Version of the classifier in use (0 = none).",
                                        registry=r)
        self.classifier_f1 = Gauge("ntg_classifier_macro_f1", "Last measured macro-F1 of the classifier in use on "
                                   "held-out real flows (NaN = never measured).", registry=r)
        self.live_flows = Counter("ntg_live_flows", "Flows seen on the capture interface.", registry=r)
        self.generate_rate, self.classify_rate = Rate(), Rate()

    def count_generated(self, labels: list[str]) -> None:
        for c, n in _tally(labels).items():
            self.generated.labels(cls=c).inc(n)
        self.generate_rate.add(len(labels))

    def count_classified(self, labels: list[str], source: str) -> None:
        for c, n in _tally(labels).items():
            self.classified.labels(cls=c, source=source).inc(n)
        self.classify_rate.add(len(labels))

    def totals(self, counter: Counter) -> dict[str, float]:
        """{class: total} of a counter labelled by class (summed over its other labels)."""
        out: dict[str, float] = {}
        for metric in counter.collect():
            for s in metric.samples:
                if s.name.endswith("_total"):
                    out[s.labels["cls"]] = out.get(s.labels["cls"], 0.0) + s.value
        return out

    @staticmethod
    def value(gauge: Gauge) -> float:
        return gauge.collect()[0].samples[0].value

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _tally(labels: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in labels:
        out[c] = out.get(c, 0) + 1
    return out
