"""The one flow format every stage shares: a biflow's first N packets as (direction, payload length, inter-arrival).

A flows file is Parquet with the schema below (README "Flows file"). Real flows come from `ingest`, synthetic flows
from `generate`; both are written and read only through this module.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

UP, DOWN = 1, -1  # +1 = sent by src (the endpoint that sent the flow's first packet), -1 = sent by dst


@dataclass
class Flow:
    """One bidirectional flow. `pl`, `dir` and `iat` are aligned, one entry per kept packet."""

    label: str = ""
    file: str = ""
    src_ip: str = ""
    src_port: int = 0
    dst_ip: str = ""
    dst_port: int = 0
    protocol: int = 0  # IP protocol number: 6 = TCP, 17 = UDP
    first_ts: float = 0.0  # epoch seconds of the first packet
    packets: int = 0  # all packets of the flow, not only the kept ones
    bytes: int = 0  # all transport payload bytes of the flow
    pl: list[int] = field(default_factory=list)  # transport payload length, >= 0
    dir: list[int] = field(default_factory=list)  # +1 upstream (from src), -1 downstream
    iat: list[float] = field(default_factory=list)  # seconds since the previous packet of the flow; first = 0

    def signed(self, n: int | None = None) -> list[tuple[int, int]]:
        """The first `n` (direction, payload length) pairs."""
        return list(zip(self.dir[:n], self.pl[:n]))


SCHEMA = pa.schema(
    [
        ("label", pa.string()),
        ("file", pa.string()),
        ("src_ip", pa.string()),
        ("src_port", pa.int32()),
        ("dst_ip", pa.string()),
        ("dst_port", pa.int32()),
        ("protocol", pa.int16()),
        ("first_ts", pa.float64()),
        ("packets", pa.int64()),
        ("bytes", pa.int64()),
        ("pl", pa.list_(pa.int32())),
        ("dir", pa.list_(pa.int8())),
        ("iat", pa.list_(pa.float64())),
    ]
)
_NAMES = [f.name for f in fields(Flow)]
assert _NAMES == SCHEMA.names


def to_table(flows: Iterable[Flow]) -> pa.Table:
    flows = list(flows)
    return pa.table({name: [getattr(f, name) for f in flows] for name in _NAMES}, schema=SCHEMA)


_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path: str | Path, write) -> None:
    """Call `write(tmp_path)`, then rename onto `path`, so a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the result should look like any other written file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_flows(path: str | Path, flows: Iterable[Flow]) -> None:
    table = to_table(flows)
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))


def read_flows(path: str | Path) -> list[Flow]:
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise ValueError(f"{path}: not a readable flows file (Parquet): {e}") from None
    missing = [n for n in _NAMES if n not in table.column_names]
    if missing:
        raise ValueError(f"{path}: not a flows file: missing column(s) {', '.join(missing)}")
    cols = table.select(_NAMES).to_pydict()
    return [Flow(*row) for row in zip(*(cols[n] for n in _NAMES))]
