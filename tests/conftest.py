"""Shared fixtures. Two corpora: the captures this project ships (data/captures, five services, always present: the
default for every test) and the nDPI corpus beside the checkout (../shared/data/ndpi: the cross-checks that need it,
skipped where it is absent). One tiny model, trained once per session on the shipped captures, serves every test
that needs a model, a quantized run or a bundle."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "data" / "captures"
NDPI = Path(os.environ.get("NTG_NDPI", ROOT.parent / "shared" / "data" / "ndpi"))
# A model small enough to train in seconds; 2 layers so that the cache of more than one layer is exercised.
TINY = {"dim": 32, "ffn_dim": 64, "n_layers": 2, "n_heads": 2, "dropout": 0.1}


@pytest.fixture(scope="session")
def demo_flows():
    """(flows, report): the shipped captures, labelled by folder (dns, http, https, ssh, video)."""
    from ntg_edge.runtime.ingest import ingest_paths

    return ingest_paths([CAPTURES], label_from="folder", progress=False, warn=lambda message: None)


@pytest.fixture(scope="session")
def demo_split(demo_flows):
    """(train, test) of the shipped captures, split as `make demo` splits them."""
    from ntg_edge.runtime.split import SplitConfig, split_flows

    train, test, _ = split_flows(demo_flows[0], SplitConfig(cap_per_file=500))
    return train, test


@pytest.fixture(scope="session")
def real_files(demo_split, tmp_path_factory) -> dict[str, Path]:
    """demo_split written as flows files: {"train": PATH, "test": PATH, "dir": their folder}."""
    from ntg_edge.runtime.flows import write_flows

    root = tmp_path_factory.mktemp("demo_files")
    for name, flows in zip(("train", "test"), demo_split):
        write_flows(root / f"{name}.parquet", flows)
    return {"train": root / "train.parquet", "test": root / "test.parquet", "dir": root}


def export_bundles(run: Path, root: Path) -> dict[str, Path]:
    """{"fp32": BUNDLE, "int8": BUNDLE} exported from `run` into `root`."""
    from ntg_edge.export.bundle import export_bundle

    return {name: export_bundle(run, root / name, int8=name == "int8", log=lambda *_: None)
            for name in ("fp32", "int8")}


def id_table_bytes(model, multiple: int = 1) -> int:
    """Bytes of a factorised head's two id tables (int32 output and float32 log share per id, vocabulary padded to
    `multiple`), which int8 leaves as they are: at the tests' tiny sizes they weigh as much as the weights."""
    return 8 * (-(-model.cfg.vocab_size // multiple) * multiple) if model.cfg.head_size else 0


@pytest.fixture(scope="session")
def tiny_run(demo_split, tmp_path_factory) -> Path:
    """A run directory: TINY trained for 3 epochs on the shipped captures' training split (16 packets per flow), a
    tenth of its flows with the class hidden, so that it can be guided."""
    from ntg_edge.train.train import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny_run")
    train(demo_split[0], out, TINY, TrainConfig(epochs=3, val_flows_per_class=10, max_packets=16, class_dropout=0.1),
          log=lambda *_: None)
    return out


@pytest.fixture(scope="session")
def tiny_bundles(tiny_run, tmp_path_factory) -> dict[str, Path]:
    """The fp32 and int8 bundles of tiny_run."""
    return export_bundles(tiny_run, tmp_path_factory.mktemp("tiny_bundles"))


@pytest.fixture(scope="session")
def ndpi() -> Path:
    """The nDPI capture corpus beside the checkout (never copied into the project)."""
    if not (NDPI / "pcaps").is_dir():
        pytest.skip(f"nDPI corpus not found at {NDPI} (set NTG_NDPI): the cross-checks against it need it")
    return NDPI


@pytest.fixture(scope="session")
def ndpi_flows(ndpi: Path):
    """(flows, report): the whole nDPI corpus ingested once per session with its labels CSV (about 3 s)."""
    from ntg_edge.runtime.ingest import ingest_paths

    return ingest_paths([ndpi / "pcaps"], labels=ndpi / "labels.csv.gz", progress=False, warn=lambda message: None)
