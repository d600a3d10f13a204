from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NDPI = Path(os.environ.get("NTG_NDPI", ROOT.parent / "shared" / "data" / "ndpi"))


@pytest.fixture(scope="session")
def ndpi() -> Path:
    """The nDPI capture corpus beside the checkout (never copied into the project)."""
    if not (NDPI / "pcaps").is_dir():
        pytest.skip(f"real corpus not found at {NDPI} (set NTG_NDPI)")
    return NDPI


@pytest.fixture(scope="session")
def ndpi_flows(ndpi: Path):
    """(flows, report): the whole corpus ingested once per session with its labels CSV (about 3 s)."""
    from ntg_edge.runtime.ingest import ingest_paths

    return ingest_paths([ndpi / "pcaps"], labels=ndpi / "labels.csv.gz", progress=False, warn=lambda message: None)


@pytest.fixture(scope="session")
def bench_split(ndpi_flows):
    """(train, test): the standard benchmark split of the corpus, with the CLI's defaults."""
    from ntg_edge.runtime.split import split_flows

    train, test, _ = split_flows(ndpi_flows[0])
    return train, test


# -- a tiny model on real flows, shared by tests/test_quantize.py and tests/test_bench.py -----------------------------
TINY_Q = {"dim": 32, "hidden": 64, "n_layers": 1, "n_heads": 2, "dropout": 0.1}


@pytest.fixture(scope="session")
def tiny_flows(bench_split) -> tuple[list, list]:
    """(train, test) of the benchmark split's four largest classes."""
    from collections import Counter

    real, test = bench_split
    top = [c for c, _ in Counter(f.label for f in real).most_common(4)]
    return [f for f in real if f.label in top][:240], [f for f in test if f.label in top][:80]


@pytest.fixture(scope="session")
def tiny_run(tiny_flows, tmp_path_factory) -> Path:
    from ntg_edge.train.train import TrainConfig, train

    out = tmp_path_factory.mktemp("qrun_src")
    train(tiny_flows[0], out, TINY_Q, TrainConfig(epochs=1, val_flows_per_class=10), max_packets=16,
          log=lambda *_: None)
    return out
