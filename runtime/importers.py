"""Flows from other tools' outputs: NFStream and CESNET DataZoo files -> list[Flow] (torch-free).

Each importer reads CSV (plain or gzip; picked by any name not ending in .parquet/.pq) or Parquet, turns each row into
one Flow and returns them checked by `flows.validate`. An error is one line, "FILE: row R: FIELD ...", R being the
0-based data row (the CSV header line not counted) and FIELD the source's column name.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Callable, NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .flows import DOWN, UP, Flow, validate

NFSTREAM_SPLT = ("splt_direction", "splt_ps", "splt_piat_ms")
CESNET_CHANNELS = ("IPT", "DIR", "SIZE")  # the rows of a PPI matrix, in DataZoo's order (IPT_POS, DIR_POS, SIZE_POS)
_FLAT_PPI = re.compile(r"(IPT|DIR|SIZE)_(\d+)")  # DataZoo's flattened PPI columns: IPT_1 .. IPT_30, DIR_1, ...


def _fail(path: Path, row: int, field: str, what: str) -> NoReturn:
    raise ValueError(f"{path}: row {row}: {field} {what}")


# -- reading ------------------------------------------------------------------------------------------------------
def _epoch_seconds(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """A timestamp column as float epoch seconds (a zone-less timestamp is taken as UTC)."""
    per_second = {"s": 1, "ms": 1e3, "us": 1e6, "ns": 1e9}[col.type.unit]
    return pa.chunked_array([pa.array(col.cast(pa.int64()).to_numpy() / per_second)])


def _read(path: Path, keep: Callable[[str], bool]) -> dict[str, list]:
    """The file's columns that `keep` accepts, as Python lists; timestamps become epoch seconds."""
    parquet = path.suffix.lower() in (".parquet", ".pq")
    try:
        if parquet:
            names = [n for n in pq.read_schema(path).names if keep(n)]
            table = pq.read_table(path, columns=names)
        else:
            with pacsv.open_csv(path) as reader:
                names = [n for n in reader.schema.names if keep(n)]
            table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(include_columns=names))
    except (OSError, pa.ArrowInvalid) as e:
        kind = "Parquet" if parquet else "CSV"
        raise ValueError(f"{path}: not a readable {kind} file: {str(e).splitlines()[0]}") from None
    return {n: (_epoch_seconds(c) if pa.types.is_timestamp(c.type) else c).to_pylist()
            for n, c in zip(table.column_names, table.columns) if keep(n)}  # keep: an empty CSV selection reads all


def _require(path: Path, cols: dict[str, list], names: tuple[str, ...], what: str) -> None:
    for name in names:
        if name not in cols:
            raise ValueError(f"{path}: missing column {name} ({what})")


# -- values ---------------------------------------------------------------------------------------------------------
def _sequence(path: Path, row: int, field: str, value: object) -> np.ndarray:
    """A list cell: a list (Parquet) or its text "[0, 1, -1]" (CSV; NFStream's own to_csv and to_pandas write this)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            _fail(path, row, field, f"is {value[:40]!r}, not a list of numbers")
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        _fail(path, row, field, f"is {str(value)[:40]!r}, not a list of numbers")
    if not np.isfinite(a).all():
        _fail(path, row, field, "holds a missing or infinite value")
    return a


def _integers(path: Path, row: int, field: str, a: np.ndarray) -> list[int]:
    """The values as ints; each must be a whole number."""
    bad = np.flatnonzero(a != np.round(a))
    if bad.size:
        _fail(path, row, f"{field}[{bad[0]}]", f"is {a[bad[0]]:g} (expected an integer)")
    return a.astype(np.int64).tolist()


def _non_negative(path: Path, row: int, field: str, a: np.ndarray) -> np.ndarray:
    bad = np.flatnonzero(a < 0)
    if bad.size:
        _fail(path, row, f"{field}[{bad[0]}]", f"is {a[bad[0]]:g} (expected >= 0)")
    return a


def _unpadded(path: Path, row: int, field: str, dirs: np.ndarray, pad: int) -> int:
    """How many packets a padded direction sequence holds: the entries before the first `pad`; all later ones must
    be `pad` too (a packet after padding would mean a corrupt or reordered sequence)."""
    n = int(np.argmax(dirs == pad)) if (dirs == pad).any() else len(dirs)
    late = np.flatnonzero(dirs[n:] != pad)
    if late.size:
        _fail(path, row, f"{field}[{n + late[0]}]", f"is {dirs[n + late[0]]:g} after padding {pad} at [{n}]")
    return n


def _text(path: Path, row: int, field: str, value: object) -> str:
    if value is None:
        _fail(path, row, field, "is missing")
    return str(value)  # an integer-coded label becomes its decimal string


def _integer(path: Path, row: int, field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        _fail(path, row, field, f"is {value!r:.40} (expected an integer)")
    return int(value)


def _seconds(path: Path, row: int, field: str, value: object, per_second: float = 1.0) -> float:
    """Epoch time: a number (in 1/per_second s) or ISO 8601 text, also with dashes in the time as CESNET's README
    writes it (2022-11-07T00-00-00.040535); without a zone it is UTC."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value / per_second
    if isinstance(value, str):
        try:
            t = datetime.fromisoformat(re.sub(r"T(\d\d)-(\d\d)-(\d\d)", r"T\1:\2:\3", value.strip()))
            return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()
        except ValueError:
            pass
    _fail(path, row, field, f"is {value!r:.40} (expected a time)")


# -- NFStream -------------------------------------------------------------------------------------------------------
def _flow(path: Path, row: int, cols: dict[str, list], label_column: str, dirs: list[int],
          sizes: tuple[str, np.ndarray], gaps_ms: tuple[str, np.ndarray], scalars: dict) -> Flow:
    """One row's Flow: its packets (sizes and inter-arrival gaps in ms, each with its source field's name for errors)
    and the per-flow columns in `scalars` ({Flow attribute: (source column, converter)}) the file has."""
    pl = _integers(path, row, sizes[0], _non_negative(path, row, sizes[0], sizes[1]))
    flow = Flow(label=_text(path, row, label_column, cols[label_column][row]), pl=pl, dir=dirs,
                iat=(_non_negative(path, row, gaps_ms[0], gaps_ms[1]) / 1e3).tolist(), packets=len(pl), bytes=sum(pl))
    for attr, (source, convert) in scalars.items():
        if source in cols:
            setattr(flow, attr, convert(path, row, source, cols[source][row]))
    return flow


def import_nfstream(path: str | Path, label_column: str = "application_name") -> list[Flow]:
    """Flows from an NFStream output (NFStreamer(..., splt_analysis=N, accounting_mode=3).to_csv(), or its
    to_pandas() saved as Parquet).

    Packets: NFStream's early-flow sequences, padded to N with -1 when the flow has fewer packets:
    `splt_direction` 0 = src->dst -> dir +1, 1 = dst->src -> dir -1; `splt_ps` -> pl as stored, NOT converted;
    `splt_piat_ms` (ms) -> iat in seconds. Sizes: NFStream's splt_ps follows its `accounting_mode` (0 link layer,
    the default; 1 IP; 2 transport; 3 payload), and a flows file holds transport payload lengths, which only mode 3
    gives: headers cannot be subtracted afterwards (TCP options and IP options vary per packet). So the file must
    come from accounting_mode=3; that mode is not recorded in NFStream's output and cannot be checked here.

    Per flow: label from `label_column` (nDPI's `application_name` by default), src_ip, src_port, dst_ip, dst_port,
    protocol as NFStream names them (src = the endpoint that sent the first packet, as in a flows file), first_ts =
    `bidirectional_first_seen_ms` / 1000, packets = `bidirectional_packets`, bytes = `bidirectional_bytes` (payload
    bytes under accounting_mode=3), `file` if the file has such a column (NFStream has none); a missing one takes the
    flows-file default (flows.REQUIRED)."""
    path = Path(path)
    scalars = {"src_ip": ("src_ip", _text), "src_port": ("src_port", _integer), "dst_ip": ("dst_ip", _text),
               "dst_port": ("dst_port", _integer), "protocol": ("protocol", _integer),
               "first_ts": ("bidirectional_first_seen_ms", partial(_seconds, per_second=1e3)),
               "packets": ("bidirectional_packets", _integer), "bytes": ("bidirectional_bytes", _integer),
               "file": ("file", _text)}
    wanted = {label_column, *NFSTREAM_SPLT, *(source for source, _ in scalars.values())}
    cols = _read(path, wanted.__contains__)
    _require(path, cols, (label_column, *NFSTREAM_SPLT), "an NFStream output made with splt_analysis > 0")
    flows = []
    for row in range(len(cols[label_column])):
        d, ps, piat = (_sequence(path, row, name, cols[name][row]) for name in NFSTREAM_SPLT)
        for name, a in (("splt_ps", ps), ("splt_piat_ms", piat)):
            if len(a) != len(d):
                _fail(path, row, name, f"has {len(a)} entries but splt_direction has {len(d)} (expected one per "
                                       "packet)")
        n = _unpadded(path, row, "splt_direction", d, pad=-1)
        codes = _integers(path, row, "splt_direction", d[:n])
        bad = [i for i, c in enumerate(codes) if c not in (0, 1)]
        if bad:
            _fail(path, row, f"splt_direction[{bad[0]}]", f"is {codes[bad[0]]} (expected 0, 1, or -1 padding)")
        flows.append(_flow(path, row, cols, label_column, [UP if c == 0 else DOWN for c in codes],
                           ("splt_ps", ps[:n]), ("splt_piat_ms", piat[:n]), scalars))
    validate(flows, path)
    return flows


# -- CESNET DataZoo -------------------------------------------------------------------------------------------------
def _ppi(path: Path, row: int, cols: dict[str, list], flat: list[int]) -> np.ndarray:
    """One flow's PPI as a (3, L) float matrix: IPT, DIR, SIZE (a 4th row of PUSH flags is dropped). `flat` = the
    positions of the flattened columns, empty when the file has a PPI column."""
    if flat:
        cells = [[cols[f"{c}_{i}"][row] for i in range(1, flat[-1] + 1)] for c in CESNET_CHANNELS]
        value = _sequence(path, row, "PPI (IPT_i, DIR_i, SIZE_i)", cells)
    else:
        value = _sequence(path, row, "PPI", cols["PPI"][row])
    if value.ndim != 2 or value.shape[0] not in (3, 4):
        _fail(path, row, "PPI", f"has shape {value.shape} (expected [[IPT...], [DIR...], [SIZE...]])")
    return value[:3]


def import_cesnet(path: str | Path, label_column: str = "APP") -> list[Flow]:
    """Flows from a CESNET DataZoo dataset file (CESNET-TLS22, CESNET-QUIC22, CESNET-TLS-Year22, ...).

    Packets: the per-packet information (PPI) of the first 30 packets, in either shape DataZoo documents:
    - a `PPI` column holding [[IPT...], [DIR...], [SIZE...]] (as the datasets' CSV files write it, or as nested lists
      in Parquet), optionally with a 4th row of TCP PUSH flags, which is dropped;
    - flattened columns IPT_1 .. IPT_n, DIR_1 .. DIR_n, SIZE_1 .. SIZE_n (DataZoo's `flatten_ppi=True` dataframes).
    The sequences are either cut at PPI_LEN or zero-padded to 30; both are accepted, padding being recognised by
    DIR = 0 (a real packet's DIR is +1 or -1). IPT (ms) -> iat in seconds; DIR +1 (client->server) -> dir +1, -1 -> -1;
    SIZE, the transport payload length, -> pl unchanged. The TLS datasets leave zero-length packets and TCP
    retransmissions out of PPI; they stay out.

    Per flow: label from `label_column` (`APP` by default; an integer-coded APP becomes its decimal string),
    SRC_IP/SRC_PORT (the client, which sends the first packet) -> src, DST_IP/DST_PORT -> dst, PROTOCOL, first_ts
    from TIME_FIRST (ISO text, a timestamp, or epoch seconds; UTC), packets = PACKETS + PACKETS_REV (all packets of
    the flow). bytes = sum of the kept SIZEs: BYTES/BYTES_REV are the exporter's (ipfixprobe) octet counts of whole
    IP packets as we read its documentation, not transport payload, so they are not used."""
    path = Path(path)
    scalars = {"src_ip": ("SRC_IP", _text), "src_port": ("SRC_PORT", _integer), "dst_ip": ("DST_IP", _text),
               "dst_port": ("DST_PORT", _integer), "protocol": ("PROTOCOL", _integer),
               "first_ts": ("TIME_FIRST", _seconds)}
    wanted = {label_column, "PPI", "PACKETS", "PACKETS_REV", *(source for source, _ in scalars.values())}
    cols = _read(path, lambda n: n in wanted or _FLAT_PPI.fullmatch(n) is not None)
    flat = sorted({int(m[2]) for m in map(_FLAT_PPI.fullmatch, cols) if m})
    _require(path, cols, (label_column,), "the label column")
    if "PPI" in cols:
        flat = []
    elif not flat:
        raise ValueError(f"{path}: missing column PPI (or its flattened form IPT_1, DIR_1, SIZE_1, ...)")
    else:  # every position 1..n of every channel: a gap would shift the packets after it
        _require(path, cols, tuple(f"{c}_{i}" for i in range(1, flat[-1] + 1) for c in CESNET_CHANNELS),
                 "flattened PPI columns are numbered 1 .. n for each of IPT, DIR, SIZE")
    flows = []
    for row in range(len(cols[label_column])):
        ipt, d, size = _ppi(path, row, cols, flat)
        n = _unpadded(path, row, "PPI DIR", d, pad=0)
        dirs = _integers(path, row, "PPI DIR", d[:n])
        bad = [i for i, x in enumerate(dirs) if x not in (UP, DOWN)]
        if bad:
            _fail(path, row, f"PPI DIR[{bad[0]}]", f"is {dirs[bad[0]]} (expected +1, -1, or 0 padding)")
        flow = _flow(path, row, cols, label_column, dirs, ("PPI SIZE", size[:n]), ("PPI IPT", ipt[:n]), scalars)
        if "PACKETS" in cols and "PACKETS_REV" in cols:
            flow.packets = (_integer(path, row, "PACKETS", cols["PACKETS"][row])
                            + _integer(path, row, "PACKETS_REV", cols["PACKETS_REV"][row]))
        flows.append(flow)
    validate(flows, path)
    return flows
