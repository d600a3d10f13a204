"""Ingest throughput on the real corpus: capture records/s, TCP/UDP packets/s and flows/s (not a test).

    python bench/ingest.py [CAPTURES_DIR ...]    # default: the nDPI corpus beside the checkout (data/ndpi/pcaps)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ntg_edge.runtime.ingest import ingest_paths

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ndpi" / "pcaps"


def main(paths: list[str]) -> None:
    start = time.perf_counter()
    flows, report = ingest_paths(paths or [DEFAULT], progress=False, warn=lambda message: None)
    seconds = time.perf_counter() - start
    print(f"{report.files} files, {report.records} records, {report.packets} TCP/UDP packets, "
          f"{len(flows)} flows in {seconds:.2f} s")
    print(f"{report.records / seconds:,.0f} records/s  {report.packets / seconds:,.0f} packets/s  "
          f"{len(flows) / seconds:,.0f} flows/s  (one process)")


if __name__ == "__main__":
    main(sys.argv[1:])
