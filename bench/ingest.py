"""`ntg-edge bench ingest`: ingest throughput (capture records/s, TCP/UDP packets/s, flows/s) in one process."""

from __future__ import annotations

import time
from pathlib import Path

from ..runtime.ingest import ingest_paths


def run_ingest(paths: list[str | Path]) -> dict:
    start = time.perf_counter()
    flows, report = ingest_paths(paths, progress=False, warn=lambda message: None)
    seconds = time.perf_counter() - start
    return {"files": report.files, "records": report.records, "packets": report.packets, "flows": len(flows),
            "seconds": seconds, "records_s": report.records / seconds, "packets_s": report.packets / seconds,
            "flows_s": len(flows) / seconds}


def format_ingest(rep: dict) -> str:
    return (f"{rep['files']} files, {rep['records']:,} records, {rep['packets']:,} TCP/UDP packets, "
            f"{rep['flows']:,} flows in {rep['seconds']:.2f} s\n"
            f"{rep['records_s']:,.0f} records/s  {rep['packets_s']:,.0f} packets/s  {rep['flows_s']:,.0f} flows/s "
            f"(one process)")
