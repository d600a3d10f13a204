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
