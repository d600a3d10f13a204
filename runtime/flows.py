"""The one flow format every stage shares: a biflow's first N packets as (direction, payload length, inter-arrival).

A flows file is Parquet with the schema below (README "Flows file"). Real flows come from `ingest`, synthetic flows
from `generate`, other tools' flows from `importers`; all are written and read only through this module, and both
directions go through `validate`, so a stage never sees a flow it cannot trust.
"""

from __future__ import annotations

import glob
import os
import re
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterable, NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
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
    """Flows -> table of SCHEMA, unchecked: for flows this program made; `validate` for any other."""
    flows = list(flows)
    return pa.table({name: [getattr(f, name) for f in flows] for name in _NAMES}, schema=SCHEMA)


# A file from another tool needs only these; the rest get defaults (README "Flows file"): strings "", ports and
# protocol 0, first_ts 0.0, packets = len(pl), bytes = sum(pl), iat all zeros.
REQUIRED = ("label", "dir", "pl")
OUTPUT_SUFFIXES = (".parquet", ".pq")

# Value ranges. Protocol is any IP protocol number, not only TCP/UDP: real captures hold ESP, GRE, SCTP, ICMP flows.
_RANGES = {"src_port": (0, 65535), "dst_port": (0, 65535), "protocol": (0, 255),
           "packets": (0, np.iinfo(np.int64).max), "bytes": (0, np.iinfo(np.int64).max)}
_PL_MAX = np.iinfo(np.int32).max
_WORDS = {"string": "a string", "int": "an integer", "float": "a number", "list<int>": "a list of integers",
          "list<float>": "a list of numbers"}
# What each column accepts from another tool: any width of its kind, cast to SCHEMA after the range checks.
_KINDS = {"label": "string", "file": "string", "src_ip": "string", "src_port": "int", "dst_ip": "string",
          "dst_port": "int", "protocol": "int", "first_ts": "float", "packets": "int", "bytes": "int",
          "pl": "list<int>", "dir": "list<int>", "iat": "list<float>"}


def _fail(source: str | Path, row: int, message: str) -> NoReturn:
    raise ValueError(f"{source}: row {row}: {message}")


# -- validation ---------------------------------------------------------------------------------------------------
def _kind_ok(kind: str, t: pa.DataType) -> bool:
    if pa.types.is_null(t):  # no value at all (an empty column, or only nulls: reported with their row later)
        return True
    if kind == "string":
        return pa.types.is_string(t) or pa.types.is_large_string(t) or (
            pa.types.is_dictionary(t) and pa.types.is_string(t.value_type))
    if kind.startswith("list<"):
        return _is_list(t) and _kind_ok(kind[5:-1], t.value_type)
    return pa.types.is_integer(t) or (kind == "float" and pa.types.is_floating(t))


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _untyped(t: pa.DataType) -> bool:
    return pa.types.is_null(t) or (_is_list(t) and pa.types.is_null(t.value_type))


def _check_nulls(source: str | Path, name: str, col: pa.ChunkedArray | pa.Array) -> None:
    if col.null_count:
        row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        _fail(source, row, f"{name} is missing (null); expected {_WORDS[_KINDS[name]]}")


def _check_range(source: str | Path, name: str, values: np.ndarray, lo: float, hi: float) -> None:
    bad = np.flatnonzero((values < lo) | (values > hi))
    if bad.size:
        expected = f"{lo} .. {hi}" if hi < 2**62 else f">= {lo}"
        _fail(source, int(bad[0]), f"{name} is {values[bad[0]]} (expected {expected})")


class _Lists:
    """A list column as flat values plus per-row lengths: the form every check vectorises over."""

    def __init__(self, source: str | Path, name: str, col: pa.ChunkedArray):
        _check_nulls(source, name, col)
        arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        self.name, self.source = name, source
        self.lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False).astype(np.int64)
        self.ends = np.cumsum(self.lengths)
        flat = arr.flatten()
        if flat.null_count:
            self.fail_at(int(np.flatnonzero(flat.is_null().to_numpy(zero_copy_only=False))[0]), "missing (null)")
        self.values = flat.to_numpy(zero_copy_only=False)

    def fail_at(self, k: int, what: str) -> NoReturn:
        """Fail on flat value k, naming its row and its position in that row's list."""
        row = int(np.searchsorted(self.ends, k, side="right"))
        start = int(self.ends[row] - self.lengths[row])
        _fail(self.source, row, f"{self.name}[{k - start}] is {what}")

    def check(self, ok: np.ndarray, expected: str) -> None:
        bad = np.flatnonzero(~ok)
        if bad.size:
            self.fail_at(int(bad[0]), f"{self.values[bad[0]]} (expected {expected})")

    def same_lengths(self, other: "_Lists") -> None:
        bad = np.flatnonzero(self.lengths != other.lengths)
        if bad.size:
            r = int(bad[0])
            _fail(self.source, r, f"{self.name} has {self.lengths[r]} entries but {other.name} has "
                                  f"{other.lengths[r]} (expected one per packet)")


def _defaults(name: str, n: int, pl: _Lists) -> pa.Array:
    """The documented value of a column a file leaves out."""
    if name == "packets":
        return pa.array(pl.lengths, pa.int64())
    if name == "bytes":
        running = np.concatenate([[0], np.cumsum(pl.values, dtype=np.int64)])
        return pa.array(running[pl.ends] - running[pl.ends - pl.lengths], pa.int64())
    if name == "iat":
        offsets = pa.array(np.concatenate([[0], pl.ends]), pa.int32())
        return pa.ListArray.from_arrays(offsets, pa.array(np.zeros(len(pl.values))))
    return pa.repeat(pa.scalar(0 if _KINDS[name] != "string" else "", SCHEMA.field(name).type), n)


def _first_misfit(values: list, kind: str) -> int | None:
    """The first value Arrow cannot store, or stores as another kind (a float among ints, a bool, a number label)."""
    for row, value in enumerate(values):
        try:
            if not _kind_ok(kind, pa.array([value]).type):
                return row
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            return row
    return None


def _table(flows: list[Flow], source: str | Path) -> pa.Table:
    """Flow objects -> table with the types Arrow infers, so that a float or a bool where an integer belongs is seen
    (a typed conversion would truncate 2.5 to 2); `validate` then checks ranges and casts to SCHEMA."""
    columns = {}
    for name in _NAMES:
        values = [getattr(f, name) for f in flows]
        try:
            col = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            col = None
        if col is None or not _kind_ok(_KINDS[name], col.type):
            row = _first_misfit(values, _KINDS[name])
            if row is None:  # each value fits alone but not together, e.g. ints beyond int64 beside negatives
                raise ValueError(f"{source}: {name}: values of mixed types (expected {_WORDS[_KINDS[name]]} in "
                                 "every row)")
            t = SCHEMA.field(name).type
            _fail(source, row, f"{name} is {values[row]!r:.60} (expected {_WORDS[_KINDS[name]]}, stored as "
                               f"{getattr(t, 'value_type', t)})")
        columns[name] = col
    return pa.table(columns)


def _sequences(flows: pa.Table, source: str | Path) -> _Lists:
    """Check the per-packet columns; returns `pl`, which the defaults of missing columns derive from."""
    pl, dirs = _Lists(source, "pl", flows["pl"]), _Lists(source, "dir", flows["dir"])
    pl.same_lengths(dirs)
    pl.check((pl.values >= 0) & (pl.values <= _PL_MAX), f"a payload length 0 .. {_PL_MAX}")
    dirs.check((dirs.values == UP) | (dirs.values == DOWN), "+1 or -1")
    if "iat" in flows.column_names:
        iat = _Lists(source, "iat", flows["iat"])
        pl.same_lengths(iat)
        iat.check(np.isfinite(iat.values) & (iat.values >= 0), "a finite number of seconds >= 0")
    return pl


def _scalar(source: str | Path, name: str, col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Check one per-flow column and cast it to its SCHEMA type."""
    _check_nulls(source, name, col)
    if name in _RANGES:
        _check_range(source, name, col.to_numpy(), *_RANGES[name])
    elif name == "first_ts":
        ts = col.to_numpy().astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(ts))
        if bad.size:
            _fail(source, int(bad[0]), f"first_ts is {ts[bad[0]]} (expected finite epoch seconds)")
    return col.cast(SCHEMA.field(name).type)


def validate(flows: Iterable[Flow] | pa.Table, source: str | Path) -> pa.Table:
    """Check flows and return them as a table of exactly SCHEMA; raise ValueError on the first violation found.

    `flows` is Flow objects or a table as read from Parquet, possibly another tool's: only `label`, `dir` and `pl`
    are required, extra columns are ignored, missing ones get the defaults named at REQUIRED. The error is one line,
    "SOURCE: row R: COLUMN ...", R being the 0-based flow index. Checked: `pl`, `dir` and `iat` hold one entry per
    packet; pl >= 0, dir +1 or -1, iat finite and >= 0; packets >= len(pl); ports 0..65535, protocol 0..255,
    packets and bytes >= 0, first_ts finite; no missing (null) value; strings where strings belong, integers where
    integers belong (any width that fits the schema)."""
    if not isinstance(flows, pa.Table):
        flows = _table(list(flows), source)
    for name in REQUIRED:
        if name not in flows.column_names:
            raise ValueError(f"{source}: not a flows file: missing column {name} "
                             f"(a flows file needs at least {', '.join(REQUIRED)})")
    for name in _NAMES:
        if name in flows.column_names and not _kind_ok(_KINDS[name], flows.schema.field(name).type):
            raise ValueError(f"{source}: column {name} is {flows.schema.field(name).type} "
                             f"(expected {_WORDS[_KINDS[name]]} in every row)")
    # A column without any value (no rows, only nulls, only empty lists) has Arrow type null or list<null>: give it
    # its type; nulls are found later.
    flows = pa.table({n: flows[n].cast(SCHEMA.field(n).type) if _untyped(flows[n].type) else flows[n]
                      for n in _NAMES if n in flows.column_names})

    pl = _sequences(flows, source)
    columns = {name: _scalar(source, name, flows[name]) if name in flows.column_names
               else _defaults(name, flows.num_rows, pl) for name in _NAMES}
    packets = columns["packets"].to_numpy()
    bad = np.flatnonzero(packets < pl.lengths)
    if bad.size:
        r = int(bad[0])
        _fail(source, r, f"packets is {packets[r]} but pl keeps {pl.lengths[r]} "
                         "(expected all packets of the flow, at least the kept ones)")
    return pa.table(columns, schema=SCHEMA)


# -- files ----------------------------------------------------------------------------------------------------------
def check_output(path: str | Path) -> None:
    """Refuse an output name the flows writer does not write: flows are Parquet, named .parquet or .pq."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        what = f"{suffix[1:]} output is not available" if suffix else "give the file a .parquet name"
        raise ValueError(f"{path}: flows are written as Parquet (.parquet); {what}")


_UMASK = os.umask(0)
os.umask(_UMASK)

# A temp file of a write that was killed is removed by a later write of the same path once it is this old. Age,
# not "its writer's pid is dead": a pid says nothing across machines or containers sharing a directory, and every
# write_atomic caller serialises data already in memory (seconds), so a live writer's temp file never gets this old.
STALE_TEMP_S = 600.0
_TEMP_RANDOM = r"[a-z0-9_]{8}"  # tempfile.mkstemp's random part


def _remove_stale_temps(path: Path) -> None:
    """Remove the leftovers of killed writes of `path`: our own temp-file names only, owned by us, and old."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.{_TEMP_RANDOM}\.tmp")
    cutoff = time.time() - STALE_TEMP_S
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            st = tmp.lstat()
            if pattern.fullmatch(tmp.name) and tmp.is_file() and st.st_uid == os.getuid() and st.st_mtime < cutoff:
                tmp.unlink()
        except OSError:  # another writer removed it first, or it is not ours to remove
            continue


def write_atomic(path: str | Path, write: Callable[[str], object]) -> None:
    """Call `write(tmp_path)`, then rename onto `path`, so a reader never sees a half-written file. The temp file is
    `.NAME.XXXXXXXX.tmp` beside `path`; a killed write's one is cleaned by a later write (STALE_TEMP_S)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
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
    """Validate and write; refuses a non-Parquet name (check_output) and an invalid flow (validate)."""
    check_output(path)
    table = validate(flows, path)
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))


def read_flows(path: str | Path) -> list[Flow]:
    """Read and validate a flows file (ours, or another tool's with at least label, dir and pl)."""
    path = Path(path)
    try:
        present = set(pq.read_schema(path).names)
        table = pq.read_table(path, columns=[n for n in _NAMES if n in present])
    except (OSError, pa.ArrowInvalid) as e:
        raise ValueError(f"{path}: not a readable flows file (Parquet): {e}") from None
    cols = validate(table, path).to_pydict()
    return [Flow(*row) for row in zip(*(cols[n] for n in _NAMES))]
