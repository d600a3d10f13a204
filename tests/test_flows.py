"""The flows file format: validation, other tools' minimal files, importers, atomic writes, and the tokenizer's
refusals. Property-based where the input space is large (hypothesis), with small files built in the tests."""

from __future__ import annotations

import csv
import gzip
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ntg_edge.runtime.flows import (STALE_TEMP_S, Flow, check_output, read_flows, to_table, validate, write_atomic,
                                    write_flows)
from ntg_edge.runtime.importers import import_cesnet, import_nfstream
from ntg_edge.runtime.tokenizer import Tokenizer

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
INT64_MAX = 2**63 - 1


# -- strategies ---------------------------------------------------------------------------------------------------
@st.composite
def flows(draw, max_packets: int = 40, max_pl: int = 2**31 - 1, labels=st.text(max_size=12)) -> Flow:
    n = draw(st.integers(0, max_packets))
    packets = st.lists(st.integers(0, max_pl), min_size=n, max_size=n)
    seconds = st.floats(0, 1e7, allow_nan=False, allow_infinity=False)
    return Flow(label=draw(labels), file=draw(st.text(max_size=12)), src_ip=draw(st.text(max_size=40)),
                src_port=draw(st.integers(0, 65535)), dst_ip=draw(st.text(max_size=40)),
                dst_port=draw(st.integers(0, 65535)), protocol=draw(st.integers(0, 255)),
                first_ts=draw(st.floats(allow_nan=False, allow_infinity=False)),
                packets=draw(st.integers(n, INT64_MAX)), bytes=draw(st.integers(0, INT64_MAX)), pl=draw(packets),
                dir=draw(st.lists(st.sampled_from([1, -1]), min_size=n, max_size=n)),
                iat=draw(st.lists(seconds, min_size=n, max_size=n)))


def _break(draw, f: Flow, kind: str) -> tuple[Flow, str]:
    """One violation of `kind` in flow `f` (which has >= 1 packet): (broken flow, the column the error must name)."""
    k = draw(st.integers(0, len(f.pl) - 1))
    at = lambda xs, v: xs[:k] + [v] + xs[k + 1 :]  # noqa: E731
    if kind == "dir length":
        return replace(f, dir=f.dir[:-1]), "dir"
    if kind == "iat length":
        return replace(f, iat=f.iat + [0.0]), "iat"
    if kind == "negative pl":
        return replace(f, pl=at(f.pl, draw(st.integers(-(2**31), -1)))), f"pl[{k}]"
    if kind == "dir value":
        return replace(f, dir=at(f.dir, draw(st.integers(-128, 127).filter(lambda d: d not in (1, -1))))), f"dir[{k}]"
    if kind == "iat value":
        bad = draw(st.sampled_from([math.nan, math.inf, -math.inf]) | st.floats(max_value=-1e-300))
        return replace(f, iat=at(f.iat, bad)), f"iat[{k}]"
    if kind == "packets":
        return replace(f, packets=draw(st.integers(-(2**63), len(f.pl) - 1))), "packets"
    if kind == "protocol":
        return replace(f, protocol=draw(st.integers(256, 2**15 - 1) | st.integers(-(2**15), -1))), "protocol"
    if kind == "port":
        port = draw(st.sampled_from(["src_port", "dst_port"]))
        return replace(f, **{port: draw(st.integers(65536, 2**31 - 1) | st.integers(-(2**31), -1))}), port
    if kind == "null label":
        return replace(f, label=None), "label"
    raise AssertionError(kind)


KINDS = ["dir length", "iat length", "negative pl", "dir value", "iat value", "packets", "protocol", "port",
         "null label"]


# -- validation and round trips -----------------------------------------------------------------------------------
@SETTINGS
@given(st.lists(flows(), max_size=4))
def test_valid_flows_round_trip_exactly(tmp_path, batch):
    path = tmp_path / "f.parquet"
    write_flows(path, batch)
    assert read_flows(path) == batch


@SETTINGS
@given(st.lists(flows(max_packets=10), min_size=1, max_size=4), st.data())
def test_each_violation_is_refused_naming_file_row_and_column(tmp_path, batch, data):
    row = data.draw(st.integers(0, len(batch) - 1))
    if not batch[row].pl:
        batch[row] = replace(batch[row], pl=[0], dir=[1], iat=[0.0], packets=max(batch[row].packets, 1))
    batch[row], column = _break(data.draw, batch[row], data.draw(st.sampled_from(KINDS)))
    path = tmp_path / "syn.parquet"
    pq.write_table(to_table(batch), path)  # a file another program wrote: nothing checked on the way in
    for attempt in (lambda: read_flows(path), lambda: write_flows(path, batch)):
        with pytest.raises(ValueError) as e:
            attempt()
        message = str(e.value)
        assert message.startswith(f"{path}: row {row}: ") and column in message and "\n" not in message


def test_messages_read_as_documented(tmp_path):
    path = tmp_path / "syn.parquet"
    f = Flow(label="a", packets=5, pl=[1, 2, 3, 4, 5], dir=[1, -1, 1, -1], iat=[0.0] * 5)
    pq.write_table(to_table([Flow(label="a")] * 17 + [f]), path)
    with pytest.raises(ValueError, match=r"^.*syn\.parquet: row 17: pl has 5 entries but dir has 4 \(expected one "
                                         r"per packet\)$"):
        read_flows(path)
    for bad, message in [(replace(f, dir=[1] * 5, pl=[1, 2, 2.5, 4, 5]), "row 0: pl is [1, 2, 2.5, 4, 5] (expected "
                                                                          "a list of integers"),
                         (replace(f, dir=[1] * 5, label=7), "row 0: label is 7 (expected a string"),
                         (replace(f, dir=[1] * 5, packets=2**70), "row 0: packets is"),
                         (replace(f, dir=[1] * 5, packets=4), "row 0: packets is 4 but pl keeps 5")]:
        with pytest.raises(ValueError) as e:
            validate([bad], "api")
        assert str(e.value).startswith(f"api: {message}")


@SETTINGS
@given(st.data())
def test_arbitrary_tables_are_read_or_refused_with_a_value_error(tmp_path, data):
    """Whatever another tool writes, read_flows returns flows or raises ValueError: never another exception."""
    cells = {"string": st.text(max_size=3) | st.none(), "int": st.integers(-(2**40), 2**40) | st.none(),
             "float": st.floats() | st.none(),
             "list<int>": st.lists(st.integers(-3, 3) | st.none(), max_size=3) | st.none(),
             "list<float>": st.lists(st.floats() | st.none(), max_size=3) | st.none()}
    n = data.draw(st.integers(0, 4))
    names = data.draw(st.lists(st.sampled_from(["label", "dir", "pl", "iat", "packets", "protocol", "first_ts"]),
                               unique=True))
    columns = {}
    for name in names:
        kind = data.draw(st.sampled_from(sorted(cells)))
        columns[name] = data.draw(st.lists(cells[kind], min_size=n, max_size=n))
    path = tmp_path / "other.parquet"
    try:
        pq.write_table(pa.table(columns) if columns else pa.table({"x": [0] * n}), path)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return  # Arrow could not make that table: nothing to read
    try:
        got = read_flows(path)
    except ValueError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e)
    else:
        assert len(got) == n


def test_minimal_files_from_other_tools_get_the_documented_defaults(tmp_path):
    path = tmp_path / "other.pq"
    pq.write_table(pa.table({"pl": [[10, 0, 1500], []], "dir": [[1, -1, -1], []], "label": ["web", "dns"],
                             "extra": ["ignored", "too"]}), path)
    web, dns = read_flows(path)
    assert web == Flow(label="web", file="", src_ip="", src_port=0, dst_ip="", dst_port=0, protocol=0, first_ts=0.0,
                       packets=3, bytes=1510, pl=[10, 0, 1500], dir=[1, -1, -1], iat=[0.0, 0.0, 0.0])
    assert dns == Flow(label="dns")
    # other integer and float widths are accepted and stored in the schema's
    pq.write_table(pa.table({"label": ["a"], "dir": pa.array([[1, -1]], pa.list_(pa.int64())),
                             "pl": pa.array([[5, 6]], pa.list_(pa.uint16())),
                             "iat": pa.array([[0, 1]], pa.list_(pa.int32())),
                             "first_ts": pa.array([3], pa.int64())}), path)
    assert read_flows(path) == [Flow(label="a", first_ts=3.0, packets=2, bytes=11, pl=[5, 6], dir=[1, -1],
                                     iat=[0.0, 1.0])]
    for table, message in [(pa.table({"label": ["a"], "dir": [[1]]}), "missing column pl"),
                           (pa.table({"pl": [[1]], "dir": [[1]]}), "missing column label"),
                           (pa.table({"label": ["a"], "dir": [[1.0]], "pl": [[1]]}), "column dir is list<"),
                           (pa.table({"label": [1], "dir": [[1]], "pl": [[1]]}), "column label is int64")]:
        pq.write_table(table, path)
        with pytest.raises(ValueError, match=message):
            read_flows(path)


def test_unreadable_files_are_one_line_errors(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_text("not parquet")
    with pytest.raises(ValueError, match="not a readable flows file"):
        read_flows(path)


@pytest.mark.parametrize("name", ["syn.parquet", "syn.pq", "SYN.PARQUET", "d/syn.parquet"])
def test_check_output_accepts_parquet_names(name):
    check_output(name)


@pytest.mark.parametrize("name, what", [("syn.pcap", "pcap output is not available"),
                                        ("syn.csv", "csv output is not available"),
                                        ("syn", "give the file a .parquet name")])
def test_check_output_refuses_other_names(tmp_path, name, what):
    with pytest.raises(ValueError) as e:
        check_output(name)
    assert str(e.value) == f"{name}: flows are written as Parquet (.parquet); {what}"
    with pytest.raises(ValueError):
        write_flows(tmp_path / name, [])
    assert not (tmp_path / name).exists()


# -- atomic writes --------------------------------------------------------------------------------------------------
def test_a_killed_write_leaves_a_temp_file_that_a_later_write_removes(tmp_path):
    out = tmp_path / "f.parquet"
    killed = ("import os, sys; from ntg_edge.runtime.flows import write_atomic; "
              "write_atomic(sys.argv[1], lambda tmp: (open(tmp, 'w').write('half'), os._exit(9)))")
    assert subprocess.run([sys.executable, "-c", killed, str(out)]).returncode == 9
    (left,) = tmp_path.glob(".f.parquet.*.tmp")
    assert left.stat().st_mode & 0o777 == 0o600 and not out.exists()

    write_flows(out, [])  # a fresh leftover may be a live writer's: kept
    assert left.exists()
    old = time.time() - STALE_TEMP_S - 1
    os.utime(left, (old, old))
    others = [tmp_path / ".f.parquet.notours.tmp", tmp_path / ".g.parquet.abcd1234.tmp", tmp_path / "f.parquet.tmp"]
    for p in others:
        p.write_text("x")
        os.utime(p, (old, old))
    write_flows(out, [Flow(label="a")])
    assert not left.exists() and all(p.exists() for p in others)
    assert read_flows(out) == [Flow(label="a")]


def test_a_failed_write_removes_its_temp_file_and_keeps_the_old_output(tmp_path):
    out = tmp_path / "r.json"
    out.write_text("old")

    def fail(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(out, fail)
    assert out.read_text() == "old" and list(tmp_path.iterdir()) == [out]


# -- tokenizer ------------------------------------------------------------------------------------------------------
TOK = Tokenizer(classes=("a", "b", "c"), max_packets=24)


@SETTINGS
@given(flows(max_packets=40, max_pl=TOK.max_len, labels=st.sampled_from(TOK.classes)))
def test_tokenizer_round_trips_valid_flows(f):
    toks, bins = TOK.encode(f)
    back = TOK.decode(toks[1:], bins[1:], f.label)
    n = min(len(f.pl), TOK.max_packets)
    assert (back.label, back.pl, back.dir, back.packets) == (f.label, f.pl[:n], f.dir[:n], n)
    assert back.iat[:1] == [0.0] * min(n, 1) and all(x >= 0 for x in back.iat)


@FEW
@given(flows(max_packets=10, max_pl=10**6, labels=st.sampled_from(TOK.classes)))
def test_tokenizer_clips_long_payloads(f):
    toks, bins = TOK.encode(f)
    assert TOK.decode(toks[1:], bins[1:], f.label).pl == [min(p, TOK.max_len) for p in f.pl[: TOK.max_packets]]


@SETTINGS
@given(flows(max_packets=20, max_pl=TOK.max_len, labels=st.sampled_from(TOK.classes)), st.data())
def test_tokenizer_refuses_what_it_cannot_represent(f, data):
    if not f.pl:
        f = replace(f, pl=[0], dir=[1], iat=[0.0])
    kind = data.draw(st.sampled_from(["dir length", "iat length", "negative pl", "dir value", "iat value", "class",
                                      "float pl"]))
    if kind == "class":
        bad, expected = replace(f, label=data.draw(st.text().filter(lambda s: s not in TOK.classes))), "class"
    elif kind == "float pl":
        bad, expected = replace(f, pl=[p + 0.5 for p in f.pl]), "integers"
    else:
        bad, expected = _break(data.draw, f, kind)[0], None
    with pytest.raises(ValueError, match=expected):
        TOK.encode(bad)


def test_tokenizer_unknown_class_is_a_value_error():
    with pytest.raises(ValueError, match="'zz' is not one of the model's 3 classes"):
        TOK.class_token("zz")
    with pytest.raises(ValueError, match="payload length -1 is negative"):
        TOK.packet_tokens(np.array([-1]), np.array([-1]))


# -- importers ------------------------------------------------------------------------------------------------------
N_SPLT = 6
NF_HEADER = ["id", "src_ip", "src_port", "dst_ip", "dst_port", "protocol", "bidirectional_first_seen_ms",
             "bidirectional_packets", "bidirectional_bytes", "application_name", *["splt_direction", "splt_ps",
                                                                                   "splt_piat_ms"]]


def _pad(xs: list, n: int = N_SPLT) -> list:
    return xs + [-1] * (n - len(xs))


NF_ROWS = [
    [0, "10.0.0.1", 51000, "8.8.8.8", 53, 17, 1600000000123, 2, 90, "DNS", _pad([0, 1]), _pad([30, 60]),
     _pad([0, 12])],
    [1, "10.0.0.1", 40000, "1.1.1.1", 443, 6, 1600000001000, 40, 5000, "TLS.Cloudflare", [0, 1, 0, 0, 1, 1],
     [0, 0, 0, 517, 1400, 1400], [0, 20, 1, 3, 25, 0]],
]


def _write_nfstream(path: Path, rows: list[list], header: list[str] = NF_HEADER) -> None:
    """The layout of NFStreamer.to_csv(): one row per flow, splt lists written as "[0, 1, -1]"; or its
    to_pandas() frame saved as Parquet, with the lists as lists."""
    if path.suffix == ".parquet":
        pq.write_table(pa.table({h: [r[i] for r in rows] for i, h in enumerate(header)}), path)
        return
    with (gzip.open(path, "wt", newline="") if path.suffix == ".gz" else open(path, "w", newline="")) as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows([json.dumps(v) if isinstance(v, list) else v for v in r] for r in rows)


@pytest.mark.parametrize("name", ["nf.csv", "nf.csv.gz", "nf.parquet"])
def test_import_nfstream(tmp_path, name):
    path = tmp_path / name
    _write_nfstream(path, NF_ROWS)
    dns, tls = import_nfstream(path)
    assert dns == Flow(label="DNS", src_ip="10.0.0.1", src_port=51000, dst_ip="8.8.8.8", dst_port=53, protocol=17,
                       first_ts=1600000000.123, packets=2, bytes=90, pl=[30, 60], dir=[1, -1], iat=[0.0, 0.012])
    assert tls.pl == [0, 0, 0, 517, 1400, 1400] and tls.dir == [1, -1, 1, 1, -1, -1] and tls.packets == 40
    assert tls.iat == [0.0, 0.02, 0.001, 0.003, 0.025, 0.0]
    assert [f.label for f in import_nfstream(path, label_column="dst_ip")] == ["8.8.8.8", "1.1.1.1"]


def test_import_nfstream_minimal_columns(tmp_path):
    path = tmp_path / "nf.csv"
    keep = [NF_HEADER.index(h) for h in ("application_name", "splt_direction", "splt_ps", "splt_piat_ms")]
    _write_nfstream(path, [[r[i] for i in keep] for r in NF_ROWS], [NF_HEADER[i] for i in keep])
    dns, _ = import_nfstream(path)
    assert dns == Flow(label="DNS", packets=2, bytes=90, pl=[30, 60], dir=[1, -1], iat=[0.0, 0.012])


@pytest.mark.parametrize("name, column, value, message", [
    ("nf.csv", "splt_direction", [0, -1, 1, -1, -1, -1], "row 1: splt_direction[2] is 1 after padding -1 at [1]"),
    ("nf.csv", "splt_direction", [0, 2, -1, -1, -1, -1], "row 1: splt_direction[1] is 2 (expected 0, 1, or -1 "
                                                         "padding)"),
    ("nf.csv", "splt_ps", [1, 2, 3], "row 1: splt_ps has 3 entries but splt_direction has 6"),
    ("nf.csv", "splt_ps", [1, 2, 3, "x", 5, 6], "row 1: splt_ps is"),
    ("nf.csv", "splt_ps", "[1, 2", "row 1: splt_ps is '[1, 2', not a list of numbers"),
    ("nf.csv", "splt_ps", [5, -3, 0, 0, 0, 0], "row 1: splt_ps[1] is -3 (expected >= 0)"),
    ("nf.parquet", "splt_ps", [5, 3.5, 0, 0, 0, 0], "row 1: splt_ps[1] is 3.5 (expected an integer)"),
    ("nf.csv", "splt_piat_ms", [0, 1, 2, -4, 0, 0], "row 1: splt_piat_ms[3] is -4 (expected >= 0)"),
    ("nf.csv", "dst_port", 70000, "row 1: dst_port is 70000 (expected 0 .. 65535)"),
    ("nf.parquet", "src_port", 5.5, "row 1: src_port is 5.5 (expected an integer)"),
    ("nf.parquet", "application_name", None, "row 1: application_name is missing"),
])
def test_import_nfstream_errors_name_file_row_and_field(tmp_path, name, column, value, message):
    path = tmp_path / name
    rows = [list(r) for r in NF_ROWS]
    rows[1][NF_HEADER.index(column)] = value
    _write_nfstream(path, rows)
    with pytest.raises(ValueError) as e:
        import_nfstream(path)
    assert str(e.value).startswith(f"{path}: {message}") and "\n" not in str(e.value)


def test_import_nfstream_missing_columns(tmp_path):
    path = tmp_path / "nf.csv"
    keep = [i for i, h in enumerate(NF_HEADER) if h != "splt_ps"]
    _write_nfstream(path, [[r[i] for i in keep] for r in NF_ROWS], [NF_HEADER[i] for i in keep])
    with pytest.raises(ValueError, match="missing column splt_ps"):
        import_nfstream(path)
    with pytest.raises(ValueError, match="missing column app"):
        import_nfstream(path, label_column="app")
    path.write_bytes(b"\x00\x01not csv\n\"")
    with pytest.raises(ValueError, match="nf.csv"):
        import_nfstream(path)


def test_import_nfstream_on_real_sequences_of_the_ndpi_corpus(tmp_path, ndpi):
    """NFStream's own first-64-packet sequences of the nDPI corpus, re-written in its CSV layout."""
    reference = ndpi / "reference_splt64.jsonl.gz"
    if not reference.exists():
        pytest.skip(f"{reference} not found")
    with gzip.open(reference, "rt") as f:
        rows = [json.loads(line) for _, line in zip(range(500), f)]
    header = [k for k in rows[0] if k != "file"]
    path = tmp_path / "ndpi.csv"
    _write_nfstream(path, [[r[k] for k in header] for r in rows], header)
    flows = import_nfstream(path)
    for f, r in zip(flows, rows, strict=True):
        assert len(f.pl) == min(r["bidirectional_packets"], 64) and f.label == r["application_name"]
        assert f.packets == r["bidirectional_packets"] and f.bytes >= sum(f.pl)


CESNET_HEADER = ["ID", "SRC_IP", "DST_IP", "SRC_PORT", "DST_PORT", "PROTOCOL", "TIME_FIRST", "PACKETS",
                 "PACKETS_REV", "PPI", "PPI_LEN", "APP"]
PPI = [[0, 15, 3], [1, -1, 1], [1350, 1200, 40]]
PPI_PADDED = [[0, 7] + [0] * 28, [1, -1] + [0] * 28, [1350, 1200] + [0] * 28]


def test_import_command_writes_a_flows_file(tmp_path):
    from click.testing import CliRunner

    from ntg_edge.appliance.cli import main

    src, out = tmp_path / "nf.csv", tmp_path / "nf.parquet"
    _write_nfstream(src, NF_ROWS)
    res = CliRunner().invoke(main, ["import", str(src), "--from", "nfstream", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert read_flows(out) == import_nfstream(src) and "2 flows of 2 classes" in res.output
    res = CliRunner().invoke(main, ["import", str(src), "--from", "nfstream", "--label-column", "nosuch",
                                    "--out", str(tmp_path / "x.parquet")])
    assert res.exit_code != 0 and "nosuch" in res.output and not (tmp_path / "x.parquet").exists()
    res = CliRunner().invoke(main, ["import", str(src), "--from", "nfstream", "--out", str(tmp_path / "x.csv")])
    assert res.exit_code != 0 and "x.csv" in res.output

def _cesnet_rows(ppis: list) -> list[list]:
    return [[i, "10.0.0.1", "142.250.1.1", 50000 + i, 443, 17, f"2022-11-07T00:00:0{i}.040535", 10, 12, p,
             len([d for d in p[1] if d]), "google-www"] for i, p in enumerate(ppis)]


def _write_cesnet(path: Path, rows: list[list], header: list[str] = CESNET_HEADER) -> None:
    """DataZoo's layouts: the datasets' CSV files (PPI written as "[[...], [...], [...]]") or Parquet with nested
    lists."""
    if path.suffix == ".parquet":
        pq.write_table(pa.table({h: [r[i] for r in rows] for i, h in enumerate(header)}), path)
        return
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows([json.dumps(v) if isinstance(v, list) else v for v in r] for r in rows)


@pytest.mark.parametrize("name", ["c.csv", "c.parquet"])
def test_import_cesnet(tmp_path, name):
    path = tmp_path / name
    _write_cesnet(path, _cesnet_rows([PPI, PPI_PADDED, PPI + [[0, 1, 0]]]))  # cut at PPI_LEN, zero-padded, PUSH row
    cut, padded, push = import_cesnet(path)
    assert replace(cut, first_ts=0.0) == Flow(label="google-www", src_ip="10.0.0.1", src_port=50000,
                                              dst_ip="142.250.1.1", dst_port=443, protocol=17, packets=22,
                                              bytes=2590, pl=[1350, 1200, 40], dir=[1, -1, 1],
                                              iat=[0.0, 0.015, 0.003])
    assert cut.first_ts == pytest.approx(1667779200.040535, abs=1e-6)  # CSV: inferred timestamp; Parquet: text
    assert (padded.pl, padded.dir, padded.iat) == ([1350, 1200], [1, -1], [0.0, 0.007])
    assert replace(push, src_port=50000, first_ts=cut.first_ts) == cut


def test_import_cesnet_flattened_and_minimal(tmp_path):
    """DataZoo's flatten_ppi=True frame: IPT_1..IPT_30, DIR_1.., SIZE_1..; APP integer-coded; nothing else."""
    cols = {"APP": [3]}
    for c, row in zip(("IPT", "DIR", "SIZE"), PPI_PADDED):
        cols |= {f"{c}_{i}": [v] for i, v in enumerate(row, 1)}
    path = tmp_path / "flat.parquet"
    pq.write_table(pa.table(cols), path)
    assert import_cesnet(path) == [Flow(label="3", packets=2, bytes=2550, pl=[1350, 1200], dir=[1, -1],
                                        iat=[0.0, 0.007])]
    # a timestamp column, as a DataZoo dataframe saved to Parquet holds it
    pq.write_table(pa.table({"APP": ["x"], "PPI": [PPI], "TIME_FIRST": pa.array([1667779200500000000],
                                                                                pa.timestamp("ns"))}), path)
    assert import_cesnet(path)[0].first_ts == 1667779200.5


@pytest.mark.parametrize("ppi, message", [
    ([[0, 1, 2], [1, 0, -1], [5, 0, 5]], "row 0: PPI DIR[2] is -1 after padding 0 at [1]"),
    ([[0, 1], [1, 2], [5, 5]], "row 0: PPI DIR[1] is 2 (expected +1, -1, or 0 padding)"),
    ([[0, 1], [1, -1], [5, -5]], "row 0: PPI SIZE[1] is -5 (expected >= 0)"),
    ([[0, -1], [1, -1], [5, 5]], "row 0: PPI IPT[1] is -1 (expected >= 0)"),
    ([[0, 1], [1, -1]], "row 0: PPI has shape (2, 2)"),
    ([[0, 1], [1, -1], [5]], "row 0: PPI is"),
])
def test_import_cesnet_errors_name_file_row_and_field(tmp_path, ppi, message):
    path = tmp_path / "c.csv"
    _write_cesnet(path, _cesnet_rows([ppi]))
    with pytest.raises(ValueError) as e:
        import_cesnet(path)
    assert str(e.value).startswith(f"{path}: {message}") and "\n" not in str(e.value)


def test_import_cesnet_missing_columns(tmp_path):
    path = tmp_path / "c.csv"
    _write_cesnet(path, [r[:-1] for r in _cesnet_rows([PPI])], CESNET_HEADER[:-1])
    with pytest.raises(ValueError, match="missing column APP"):
        import_cesnet(path)
    _write_cesnet(path, [["x"]], ["APP"])
    with pytest.raises(ValueError, match="missing column PPI"):
        import_cesnet(path)
    pq.write_table(pa.table({"APP": ["x"], "IPT_1": [0], "DIR_1": [1], "SIZE_1": [3], "IPT_2": [0], "DIR_2": [1]}),
                   tmp_path / "f.parquet")
    with pytest.raises(ValueError, match="missing column SIZE_2"):
        import_cesnet(tmp_path / "f.parquet")
