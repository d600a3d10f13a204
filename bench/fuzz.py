"""`ntg-edge bench fuzz`: every command run on random option values and damaged inputs; counts the tracebacks.

The project's rule: a bad input ends as one line naming the file, field or option and what was expected (non-zero
exit), never a Python traceback. Each case starts from a valid, cheap command line over material built once in the
work directory (flows files from the shipped captures, a tiny run, a QRUN, an int8 bundle) and applies one to three
mutations: a bad option value, a missing or conflicting option, or a damaged input (truncated, byte-flipped, emptied,
replaced by a directory, or rewritten by hand with a consistent manifest so that the loader behind the hash check is
reached). Cases run in-process through click's CliRunner (torch is imported once); a small sample is rerun as real
subprocesses to confirm that the in-process view matches. Everything derives from the seed.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import click

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "data" / "captures"
CATEGORIES = ("ok", "clean_error", "traceback", "unnamed_error", "timeout")
# Beside its category, a case is a finding when it changed the material it was given (e.g. `--out` on an input):
# something already written must never be lost or half-written.
CHANGED = "input_changed"
BASE_COMMANDS = ("ingest", "split", "train", "generate", "evaluate", "quantize", "export", "info", "bench speed",
                 "bench parity", "bench ingest")
# fuzzed only where this checkout has them; `serve` is not: a case that starts it would hold the port until killed, and
# its configuration and API are fuzzed by tests/test_server.py and `bench serve` (schemathesis)
OPTIONAL_COMMANDS = ("import",)
MIN_MESSAGE = 15  # shorter than this, an error message cannot say what was wrong and what was expected
TIMEOUT_S = 60.0

# Options whose large valid values make a case run for minutes: they get only small valid values (and bad ones).
COSTLY = {"--epochs", "--dim", "--ffn-dim", "--n-layers", "--n-heads", "--val-flows-per-class", "--n-per-class",
          "--scale", "--flows-b1", "--batches", "--length", "--draws", "--batch-sizes", "--max-packets", "--patience",
          "--duration", "--batch-size", "--cap-per-class", "--cap-per-file"}
# The tiny model every training case trains (seconds on one core).
TINY_TRAIN = ["--epochs", "1", "--dim", "32", "--ffn-dim", "64", "--n-layers", "1", "--n-heads", "2",
              "--max-packets", "8", "--val-flows-per-class", "2", "--device", "cpu"]


# -- material -----------------------------------------------------------------------------------------------------------
@dataclass
class Material:
    """Valid inputs every case starts from, built once per work directory."""

    captures: Path  # a folder of small captures, one service per subfolder: pcap and pcapng
    pcap: Path
    pcapng: Path
    labels: Path  # labels CSV (gzip) of the captures
    nfstream: Path  # an NFStream CSV (splt_* columns) of a few flows: what `import` reads
    flows: Path  # everything the captures hold
    train: Path
    test: Path
    small: Path  # a few flows per class: what training cases train on
    synthetic: Path
    run: Path
    qrun: Path
    bundle: Path


class CaseTimeout(BaseException):
    """Raised by the alarm; a BaseException so that no `except Exception` in the code under test swallows it."""


def _invoke(argv: list[str], timeout: float):
    """CliRunner result of `ntg-edge argv`, or None when it ran past `timeout` seconds."""
    from click.testing import CliRunner

    from ..appliance.cli import main

    def alarm(signum, frame):
        raise CaseTimeout

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return CliRunner().invoke(main, argv, catch_exceptions=True)
    except CaseTimeout:
        return None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _must(argv: list[str]) -> None:
    res = _invoke(argv, 600)
    if res is None or res.exit_code != 0:
        raise RuntimeError(f"building fuzz material failed: ntg-edge {' '.join(argv)}\n"
                           + ("timeout" if res is None else res.output))


def _to_pcapng(pcap: Path, out: Path, records: int) -> None:
    """The first `records` records of a little-endian microsecond pcap as pcapng (SHB, one IDB, EPBs)."""
    data = pcap.read_bytes()
    magic, _, _, _, _, snaplen, linktype = struct.unpack("<IHHiIII", data[:24])
    if magic != 0xA1B2C3D4:
        raise RuntimeError(f"{pcap}: expected a little-endian microsecond pcap")

    def block(kind: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    blocks = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
              block(1, struct.pack("<HHI", linktype, 0, snaplen))]
    pos = 24
    for _ in range(records):
        if pos + 16 > len(data):
            break
        sec, usec, incl, orig = struct.unpack("<IIII", data[pos:pos + 16])
        ticks = sec * 1_000_000 + usec
        frame = data[pos + 16:pos + 16 + incl]
        blocks.append(block(6, struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, incl, orig) + frame))
        pos += 16 + incl
    out.write_bytes(b"".join(blocks))


def _write_labels(flows: Path, out: Path) -> None:
    """A gzip labels CSV naming each flow of `flows` by its 5-tuple, as the nDPI corpus' labels.csv.gz does."""
    from ..runtime.flows import read_flows

    lines = ["file,src_ip,src_port,dst_ip,dst_port,protocol,application_name"]
    lines += [f"{Path(f.file).name},{f.src_ip},{f.src_port},{f.dst_ip},{f.dst_port},{f.protocol},{f.label}"
              for f in read_flows(flows)]
    out.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))


def _write_nfstream(flows: Path, out: Path, n: int) -> None:
    """The first `n` flows as NFStream's to_csv() writes them: list cells as JSON text, directions 0/1."""
    from ..runtime.flows import read_flows

    lines = ["application_name,src_ip,src_port,dst_ip,dst_port,protocol,splt_direction,splt_ps,splt_piat_ms"]
    for f in read_flows(flows)[:n]:
        cells = [[0 if d > 0 else 1 for d in f.dir], f.pl, [round(t * 1e3, 3) for t in f.iat]]
        lines.append(f"{f.label},{f.src_ip},{f.src_port},{f.dst_ip},{f.dst_port},{f.protocol},"
                     + ",".join('"' + json.dumps(c) + '"' for c in cells))
    out.write_text("\n".join(lines) + "\n")


def _nfstream_damage(path: Path, rng: random.Random) -> str:
    """An NFStream CSV that parses but breaks a promise: ragged lists, bad directions, text where numbers go."""
    lines = path.read_text().splitlines()
    k = rng.randrange(1, len(lines))
    kinds = {
        "ragged splt_ps": lambda ln: ln.replace('[', '[7, ', 2).replace('[7, ', '[', 1),
        "direction 5": lambda ln: ln.replace('"[0', '"[5', 1).replace('"[1', '"[5', 1),
        "text in splt_ps": lambda ln: ln.rsplit('"[', 2)[0] + '"[\"a\"]","[1]"',
        "negative sizes": lambda ln: ln.replace(', ', ', -', 3),
        "NaN times": lambda ln: ln.rsplit('"[', 1)[0] + '"[NaN]"',
        "missing cells": lambda ln: ln.split(",")[0],
    }
    what = rng.choice(sorted(kinds))
    lines[k] = kinds[what](lines[k])
    path.write_text("\n".join(lines) + "\n")
    return f"NFStream CSV row {k}: {what}"


def _write_small(train: Path, out: Path, per_class: int) -> None:
    from ..runtime.flows import read_flows, write_flows

    seen: Counter[str] = Counter()
    keep = []
    for f in read_flows(train):
        if seen[f.label] < per_class:
            seen[f.label] += 1
            keep.append(f)
    write_flows(out, keep)


def build_material(workdir: Path, log: Callable[[str], None]) -> Material:
    """The valid inputs, built with the CLI itself (and reused when already there)."""
    root = workdir / "material"
    m = Material(captures=root / "captures", pcap=root / "captures" / "dns" / "dns.pcap",
                 pcapng=root / "captures" / "ssh" / "ssh.pcapng", labels=root / "labels.csv.gz",
                 nfstream=root / "nfstream.csv",
                 flows=root / "flows.parquet", train=root / "split" / "train.parquet",
                 test=root / "split" / "test.parquet", small=root / "small.parquet",
                 synthetic=root / "synthetic.parquet", run=root / "run", qrun=root / "qrun", bundle=root / "bundle")
    if (root / "done").exists() and (workdir / "pristine").is_dir():
        restore_material(workdir)  # an interrupted earlier run may have left a case's change in it
        return m
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(workdir / "pristine", ignore_errors=True)
    m.pcap.parent.mkdir(parents=True)
    m.pcapng.parent.mkdir(parents=True)
    shutil.copy(CAPTURES / "dns" / "dns.pcap", m.pcap)
    _to_pcapng(CAPTURES / "ssh" / "ssh.pcap", m.pcapng, 300)
    steps = [
        ("flows", ["ingest", str(CAPTURES), "--label-from", "folder", "--out", str(m.flows)]),
        ("split", ["split", str(m.flows), "--cap-per-file", "500", "--out", str(m.train.parent)]),
        ("small", None),
        ("run", ["train", str(m.train), *TINY_TRAIN, "--out", str(m.run)]),
        ("synthetic", ["generate", str(m.run), "--n-per-class", "20", "--device", "cpu", "--out", str(m.synthetic)]),
        ("qrun", ["quantize", str(m.run), "--scheme", "int8-wo", "--out", str(m.qrun)]),
        ("bundle", ["export", str(m.run), "--int8", "--out", str(m.bundle)]),
    ]
    for name, argv in steps:
        start = time.perf_counter()
        if argv is None:
            _write_small(m.train, m.small, 20)
            _write_labels(m.flows, m.labels)
            _write_nfstream(m.flows, m.nfstream, 60)
        else:
            _must(argv)
        log(f"material {name}: {time.perf_counter() - start:.1f} s")
    (root / "done").write_text("")
    shutil.copytree(root, workdir / "pristine", dirs_exist_ok=True)
    return m


def fingerprint(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file and folder under `root`: cheap, and any write or removal changes it."""
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns)
            for p in root.rglob("*")}


def _changes(before: dict, after: dict) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def restore_material(workdir: Path) -> None:
    """Put the material back as built, after a case changed it."""
    shutil.rmtree(workdir / "material")
    shutil.copytree(workdir / "pristine", workdir / "material")


# -- damage -------------------------------------------------------------------------------------------------------------
def _truncate(path: Path, rng: random.Random) -> str:
    data = path.read_bytes()
    keep = rng.randrange(len(data)) if data else 0
    path.write_bytes(data[:keep])
    return f"truncated to {keep} of {len(data)} bytes"


def _flip(path: Path, rng: random.Random) -> str:
    data = bytearray(path.read_bytes())
    if not data:
        return "left empty"
    spots = sorted(rng.randrange(len(data)) for _ in range(rng.randint(1, 8)))
    for i in spots:
        data[i] ^= rng.randint(1, 255)
    path.write_bytes(bytes(data))
    return f"bytes flipped at offsets {spots}"


def _empty(path: Path, rng: random.Random) -> str:
    path.write_bytes(b"")
    return "emptied"


def _garbage(path: Path, rng: random.Random) -> str:
    n = rng.randint(1, 4096)
    path.write_bytes(rng.randbytes(n))
    return f"replaced by {n} random bytes"


def _directory(path: Path, rng: random.Random) -> str:
    path.unlink()
    path.mkdir()
    return "replaced by an empty directory"


BYTE_DAMAGE: list[Callable[[Path, random.Random], str]] = [_truncate, _flip, _empty, _garbage, _directory]


def _flows_table_damage(path: Path, rng: random.Random) -> str:
    """A Parquet file pyarrow reads but whose content breaks the flows schema's promises."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(path).slice(0, 40)
    n = t.num_rows
    kinds = {
        "pl as strings": lambda: t.set_column(t.schema.get_field_index("pl"), "pl",
                                              pa.array([[str(v) for v in r] for r in t["pl"].to_pylist()])),
        "ragged pl/dir/iat": lambda: t.set_column(t.schema.get_field_index("dir"), "dir",
                                                  pa.array([r[:-1] for r in t["dir"].to_pylist()], pa.list_(pa.int8()))),
        "label column missing": lambda: t.drop_columns(["label"]),
        "label as int": lambda: t.set_column(0, "label", pa.array(list(range(n)), pa.int64())),
        "null labels": lambda: t.set_column(0, "label", pa.array([None] * n, pa.string())),
        "negative pl": lambda: t.set_column(t.schema.get_field_index("pl"), "pl",
                                            pa.array([[-v - 1 for v in r] for r in t["pl"].to_pylist()],
                                                     pa.list_(pa.int32()))),
        "dir of 0 and 7": lambda: t.set_column(t.schema.get_field_index("dir"), "dir",
                                               pa.array([[rng.choice((0, 7)) for _ in r] for r in t["dir"].to_pylist()],
                                                        pa.list_(pa.int8()))),
        "NaN and inf iat": lambda: t.set_column(t.schema.get_field_index("iat"), "iat",
                                                pa.array([[rng.choice((float("nan"), float("inf"), -1.0)) for _ in r]
                                                          for r in t["iat"].to_pylist()])),
        "no rows": lambda: t.slice(0, 0),
        "empty packet lists": lambda: t.set_column(t.schema.get_field_index("pl"), "pl",
                                                   pa.array([[] for _ in range(n)], pa.list_(pa.int32()))),
        "pl as a scalar column": lambda: t.set_column(t.schema.get_field_index("pl"), "pl",
                                                      pa.array(list(range(n)), pa.int32())),
        "unicode and empty labels": lambda: t.set_column(0, "label", pa.array([rng.choice(("", "ß\u202e", "a.b."))
                                                                               for _ in range(n)])),
    }
    what = rng.choice(sorted(kinds))
    pq.write_table(kinds[what](), path)
    return f"rewritten with pyarrow: {what}"


def _labels_damage(path: Path, rng: random.Random) -> str:
    text = gzip.decompress(path.read_bytes())
    kinds = {
        "gzip magic then garbage": lambda: b"\x1f\x8b" + rng.randbytes(200),
        "truncated gzip": lambda: path.read_bytes()[: max(10, len(path.read_bytes()) // 3)],
        "binary, not gzip": lambda: rng.randbytes(300),
        "plain CSV without application_name": lambda: text.replace(b",application_name", b",app"),
        "port 'abc'": lambda: text.replace(b",53,", b",abc,", 1) + b"x.pcap,1.1.1.1,abc,2.2.2.2,1,6,dns\n",
        "Latin-1 bytes": lambda: text + "é,ü\n".encode("latin-1"),
        "only a header": lambda: text.split(b"\n")[0],
    }
    what = rng.choice(sorted(kinds))
    path.write_bytes(kinds[what]())
    return f"labels CSV: {what}"


def _yaml_damage(path: Path, rng: random.Random) -> str:
    import yaml

    cfg = yaml.safe_load(path.read_text())
    section = cfg.get("model") or cfg
    key = rng.choice(sorted(k for k, v in section.items() if not isinstance(v, (dict, list))))
    kinds = {"a string": "abc", "negative": -3, "null": None, "a list": [1, 2], "huge": 10**12, "NaN": float("nan")}
    what = rng.choice(sorted(kinds))
    if rng.random() < 0.2:
        path.write_text(rng.choice(("- 1\n- 2\n", "just text\n", "{a: [1, 2\n", "\t: :\n")))
        return "config.yaml replaced by a YAML document that is not the config"
    section[key] = kinds[what]
    path.write_text(yaml.safe_dump(cfg))
    return f"config.yaml: {key} set to {what}"


def _manifest_damage(path: Path, rng: random.Random) -> str:
    kinds = {
        "a JSON list": "[1, 2]",
        "format unknown": json.dumps({"format": "ntg-edge-run/9", "files": {}}),
        "files not a mapping": json.dumps({"format": json.loads(path.read_text())["format"], "files": [1]}),
        "a hash changed": path.read_text().replace('": "', '": "0', 1),
        "not JSON": "{format: run",
    }
    what = rng.choice(sorted(kinds))
    path.write_text(kinds[what])
    return f"manifest.json: {what}"


def _rehash(root: Path) -> None:
    """Rewrite root/manifest.json over the files it lists, so that the damage passes the hash check."""
    from ..runtime.manifest import write_manifest

    old = json.loads((root / "manifest.json").read_text())
    write_manifest(root, old["format"], [n for n in old["files"] if (root / n).is_file()])


def _damage_model_dir(root: Path, rng: random.Random) -> str:
    """Damage one file of a copied run or bundle; often re-hash so that the loader behind the check is reached."""
    files = sorted(p.name for p in root.iterdir())
    name = rng.choice(files)
    target = root / name
    roll = rng.random()
    if roll < 0.15:
        target.unlink()
        return f"{root.name}/{name} removed"
    if name == "config.yaml" and roll < 0.6:
        what = _yaml_damage(target, rng)
    elif name == "manifest.json" and roll < 0.6:
        return f"{root.name}/{_manifest_damage(target, rng)}"
    else:
        what = f"{name} {rng.choice(BYTE_DAMAGE)(target, rng)}"
    if name != "manifest.json" and target.is_file() and rng.random() < 0.6:
        _rehash(root)
        what += ", manifest re-hashed to match"
    return f"{root.name}/{what}"


def damage(kind: str, src: Path, dst: Path, rng: random.Random) -> str:
    """Copy input `src` (of `kind`) to `dst`, damaged; the damage in words."""
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy(src, dst)
    if kind in ("run", "qrun", "bundle"):
        return _damage_model_dir(dst, rng)
    if kind == "captures":
        files = sorted(p for p in dst.rglob("*") if p.is_file())
        target = rng.choice(files)
        return f"{target.relative_to(dst.parent)} {rng.choice(BYTE_DAMAGE)(target, rng)}"
    if kind == "flows" and rng.random() < 0.5:
        return f"{dst.name} {_flows_table_damage(dst, rng)}"
    if kind == "nfstream" and rng.random() < 0.6:
        return f"{dst.name} {_nfstream_damage(dst, rng)}"
    if kind == "labels" and rng.random() < 0.6:
        return f"{dst.name} {_labels_damage(dst, rng)}"
    return f"{dst.name} {rng.choice(BYTE_DAMAGE)(dst, rng)}"


# -- cases --------------------------------------------------------------------------------------------------------------
@dataclass
class Case:
    command: str  # "train", "bench speed"
    index: int
    argv: list[str]
    mutations: list[str] = field(default_factory=list)


@dataclass
class Base:
    """A valid command line: argv, and which of its values are inputs of which kind (damageable)."""

    argv: list[str]
    inputs: dict[int, str]  # argv index -> input kind
    conflicts: list[list[str]] = field(default_factory=list)  # option sets the command must refuse together


def _base(command: str, m: Material, case: Path, rng: random.Random) -> Base:
    model_kind = rng.choice(("run", "qrun", "bundle"))
    model = {"run": m.run, "qrun": m.qrun, "bundle": m.bundle}[model_kind]
    if command == "ingest":
        labelled = (["--labels", str(m.labels)], {3: "labels"}) if rng.random() < 0.4 else (["--label-from", "folder"], {})
        return Base(["ingest", str(m.captures), *labelled[0], "--max-packets", "8", "--out", str(case / "flows.parquet")],
                    {1: "captures", **labelled[1]},
                    [["--labels", str(m.labels), "--label-from", "file"], ["--interface", "fuzz0"],
                     ["--interface", "fuzz0", "--duration", "0.1"]])
    if command == "split":
        return Base(["split", str(m.flows), "--cap-per-file", "500", "--out", str(case / "split")], {1: "flows"})
    if command == "train":
        return Base(["train", str(m.small), *TINY_TRAIN, "--out", str(case / "run")], {1: "flows"},
                    [["--dim", "30", "--n-heads", "4"], ["--dim", "6", "--n-heads", "2"], ["--min-lr", "1", "--lr", "0.1"],
                     ["--length-scales", "2", "--length-head", "16"]])
    if command == "generate":
        return Base(["generate", str(model), "--n-per-class", "2", "--device", "cpu", "--out", str(case / "syn.parquet")],
                    {1: model_kind},
                    [["--counts-from", str(m.small)], ["--scale", "2"], ["--classes", "dns,nope"],
                     ["--device", "tensorrt"], ["--classes", ""], ["--classes", ",,"]])
    if command == "evaluate":
        return Base(["evaluate", "--real-test", str(m.test), "--synthetic", str(m.synthetic), "--real-train", str(m.small),
                     "--json", str(case / "report.json")], {2: "flows", 4: "flows", 6: "flows"},
                    [["--synthetic", str(m.small)], ["--real-test", str(m.synthetic)]])
    if command == "quantize":
        return Base(["quantize", str(model if model_kind != "bundle" else m.run), "--scheme", "int8-wo",
                     "--out", str(case / "q")], {1: "qrun" if model_kind == "qrun" else "run"}, [["--keep-embedding-fp32"]])
    if command == "export":
        int8 = ["--int8"] if rng.random() < 0.5 else []  # fp32 exports in half the time
        return Base(["export", str(model if model_kind != "bundle" else m.run), *int8, "--out", str(case / "b")],
                    {1: "qrun" if model_kind == "qrun" else "run"}, [["--format", "tensorrt", "--int8"]])
    if command == "info":
        return Base(["info", str(model)], {1: model_kind})
    if command == "bench speed":
        # mostly the bundle: a run builds five variants (torchao, two ONNX exports) before timing anything
        speed_kind = "bundle" if rng.random() < 0.7 else "run"
        return Base(["bench", "speed", str(m.bundle if speed_kind == "bundle" else m.run), "--batch-sizes", "2", "--flows-b1", "1", "--batches", "1",
                     "--length", "2", "--no-peer"], {2: speed_kind})
    if command == "bench parity":
        return Base(["bench", "parity", str(m.run), "--real-train", str(m.small), "--real-test", str(m.test),
                     "--n-per-class", "2", "--draws", "2"], {2: "run", 4: "flows", 6: "flows"})
    if command == "bench ingest":
        return Base(["bench", "ingest", str(m.pcap), str(m.pcapng), "--json", str(case / "ingest.json")],
                    {2: "pcap", 3: "pcapng"})
    if command == "import":
        return Base(["import", str(m.nfstream), "--from", "nfstream", "--out", str(case / "imported.parquet")],
                    {1: "nfstream"}, [["--from", "cesnet"], ["--label-column", "src_ip"], ["--label-column", "nope"]])
    raise ValueError(f"no fuzz base for command {command!r}")


def _command(command: str) -> click.Command:
    from ..appliance.cli import main

    cmd: click.Command = main
    for word in command.split():
        cmd = cmd.commands[word]
    return cmd


def _numbers(kind: type, costly: bool) -> list[str]:
    bad = ["-1", "0", "-0", "nan", "inf", "-inf", "1e309", "abc", "", " ", "1,5", "0x10", "٣", "½", "1 2", "--"]
    small = ["1", "2"] if kind is int else ["0.5", "1", "1e-300"]
    if kind is int:
        bad += ["1.5", "1e3", "-2147483649"]
    huge = [] if costly else ["99999999999999999999", "2147483648"]
    return bad + small + huge


def _value_pool(opt: click.Option, m: Material, case: Path) -> list[str]:
    """Values to try for `opt`: out of range, of the wrong type, empty, unicode, plus a few valid small ones."""
    t = opt.type
    costly = opt.opts[0] in COSTLY
    if isinstance(t, click.Choice):
        return ["", "XYZ", *(str(c).upper() for c in t.choices), *(f"{c} " for c in t.choices), "é", *map(str, t.choices)]
    if isinstance(t, click.IntRange) or t is click.INT:
        return _numbers(int, costly)
    if isinstance(t, click.FloatRange) or t is click.FLOAT:
        return _numbers(float, costly)
    if isinstance(t, click.Path):
        return ["", str(case / "missing.parquet"), str(case), "/dev/null", str(m.captures), str(m.run / "config.yaml"),
                str(case / ("é\u202e" * 3 + ".parquet")), str(case / ("x" * 300)), str(m.flows / "x.parquet"),
                str(m.flows) + "/"]
    if opt.callback is not None and opt.opts[0] == "--batch-sizes":
        return ["", ",", "1,,2", "0", "-1", "a", "1.5", "٣", "2"]
    return ["", " ", ",", "é\u202e", "((", "tcp port 99999", "not a filter", "dns,dns", "dns", "x" * 5000]


def _mutate_option(base: Base, argv: list[str], cmd: click.Command, m: Material, case: Path,
                   rng: random.Random) -> str:
    """Set a random option of `cmd` to a random value of its pool (replacing any value it had)."""
    options = [p for p in cmd.params if isinstance(p, click.Option) and p.opts[0] not in ("--help", "--version")]
    if not options:  # `info` has none
        return _stray(base, argv, cmd, m, case, rng)
    opt = rng.choice(options)
    name = opt.opts[0]
    if opt.is_flag:
        argv.append(rng.choice(opt.opts + opt.secondary_opts))
        return f"flag {argv[-1]}"
    value = rng.choice(_value_pool(opt, m, case))
    if name in argv and not opt.multiple:
        at = argv.index(name) + 1
        argv[at:at + 1] = [value]  # also where a stray option ended argv without a value
    else:
        argv += [name, value]
    return f"{name} {value!r}"


def _drop(base: Base, argv: list[str], cmd: click.Command, m: Material, case: Path, rng: random.Random) -> str:
    """Remove an option with its value, or a positional argument."""
    start = len(_prefix(argv))
    if len(argv) <= start:
        return "nothing to drop"
    i = rng.randrange(start, len(argv))
    if argv[i].startswith("--") and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
        dropped = argv[i:i + 2]
        del argv[i:i + 2]
    else:
        dropped = [argv.pop(i)]
    return f"dropped {' '.join(dropped)}"


def _conflict(base: Base, argv: list[str], cmd: click.Command, m: Material, case: Path, rng: random.Random) -> str:
    extra = rng.choice(base.conflicts) if base.conflicts else ["--no-such-option"]
    argv += extra
    return f"added {' '.join(extra)}"


def _stray(base: Base, argv: list[str], cmd: click.Command, m: Material, case: Path, rng: random.Random) -> str:
    extra = rng.choice([["--no-such-option"], ["stray-positional"], [str(m.flows)], ["--"], ["-"], ["--out"]])
    argv += extra
    return f"added {' '.join(extra)}"


def _out_clash(base: Base, argv: list[str], cmd: click.Command, m: Material, case: Path, rng: random.Random) -> str:
    """--out somewhere it cannot or must not go: over an existing file or folder, under a file, on an input."""
    if "--out" not in argv:
        return "no --out"
    i = argv.index("--out") + 1
    blocker = case / "blocker"
    blocker.write_text("something already written\n")
    inputs = [argv[k] for k in base.inputs if k < len(argv)]
    value = rng.choice([str(blocker), str(blocker / "x"), str(case), "/proc/fuzz", "", *inputs])
    argv[i:i + 1] = [value]  # also where a stray `--out` ended argv without a value
    return f"--out {value!r} (blocker = an existing file)"


MUTATIONS = [_mutate_option, _mutate_option, _mutate_option, _drop, _conflict, _stray, _out_clash]


def _prefix(argv: list[str]) -> list[str]:
    return argv[:2] if argv[0] == "bench" else argv[:1]


def build_case(command: str, index: int, seed: int, m: Material, workdir: Path) -> Case:
    """Case `index` of `command`: the same (seed, command, index) always gives the same argv and the same files."""
    rng = random.Random(f"{seed}:{command}:{index}")
    case = workdir / "cases" / command.replace(" ", "-") / str(index)
    shutil.rmtree(case, ignore_errors=True)
    case.mkdir(parents=True)
    base = _base(command, m, case, rng)
    argv = list(base.argv)
    done = []
    cmd = _command(command)
    for _ in range(rng.choice((1, 1, 2, 3))):
        if base.inputs and rng.random() < 0.4:
            k = rng.choice(sorted(base.inputs))
            if k >= len(argv) or argv[k] != base.argv[k]:  # dropped or replaced by an earlier mutation
                continue
            src = Path(argv[k])
            dst = case / f"damaged-{k}-{src.name}"
            if dst.exists():
                continue
            done.append(f"argv[{k}] = {damage(base.inputs[k], src, dst, rng)}")
            argv[k] = str(dst)
        else:
            done.append(rng.choice(MUTATIONS)(base, argv, cmd, m, case, rng))
    return Case(command, index, argv, done)


# -- outcomes -----------------------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    category: str
    seconds: float
    message: str = ""  # the error line (or the exception) as the user sees it
    where: str = ""  # traceback: file:line of the innermost frame in this project, and the exception type
    why: str = ""  # unnamed_error: what is missing from the message


def _error_text(stderr: str) -> str:
    """What click (or the code) told the user: from the first `Error:` line on, else the last lines."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    for k, ln in enumerate(lines):
        if ln.startswith("Error:"):
            return "\n".join(lines[k:])
    return "\n".join(lines[-1:])


def _names(case: Case, cmd: click.Command) -> list[str]:
    """What an error may name to say where the problem is: an option or argument of the command, or a path."""
    names = [o for p in cmd.params for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])]
    names += [p.human_readable_name for p in cmd.params if isinstance(p, click.Argument)]
    names += [p.name for p in cmd.params if p.name]  # a field: `active_timeout: expected a number > 0`
    for a in case.argv[len(_prefix(case.argv)):]:
        if "/" in a:  # the file, or the folder above it that is in the way
            path = Path(a)
            names += [str(path), path.name, str(path.parent), str(path.parent.parent)]
        elif len(a) >= 3 and not re.fullmatch(r"[-+.\de]+", a):  # a stray argument among others: "(stray -)";
            names.append(a)  # not a number, which a library may echo without naming the option it came from
    names = [n for n in names if len(n.strip("/")) >= 2]
    # what the user typed, quoted back whatever its length: an unknown option '-1', a stray argument (-)
    return names + [f"{q[0]}{a}{q[1]}" for a in case.argv[len(_prefix(case.argv)):] for q in ("''", "()")]


def classify(case: Case, exit_code: int, stderr: str, cmd: click.Command,
             verdict: re.Pattern | None) -> tuple[str, str, str]:
    """(category, message, why) of one run."""
    if exit_code == 0:
        return "ok", "", ""
    text = _error_text(stderr)
    if verdict is not None and verdict.search(stderr):
        return "ok", text, ""  # the command's own verdict (bench parity), not an input error
    message = text.removeprefix("Error:").strip()
    if not message:
        return "unnamed_error", text, "no message"
    if len(message) < MIN_MESSAGE:
        return "unnamed_error", text, f"shorter than {MIN_MESSAGE} characters"
    if "\n" in message:
        return "unnamed_error", text, "more than one line"
    if not any(n in message for n in _names(case, cmd)):
        return "unnamed_error", text, "names neither an option nor a path"
    return "clean_error", text, ""


def _where(exc: BaseException, tb) -> str:
    frames = traceback.extract_tb(tb)
    ours = [f for f in frames if f.filename.startswith(str(ROOT)) and "/.venv/" not in f.filename]
    inner = frames[-1] if frames else None
    top = ours[-1] if ours else inner
    at = f"{Path(top.filename).relative_to(ROOT) if top.filename.startswith(str(ROOT)) else top.filename}:{top.lineno}"
    deeper = f" (raised in {Path(inner.filename).name}:{inner.lineno})" if inner and inner is not top else ""
    return f"{type(exc).__name__} at {at}{deeper}"


VERDICTS = {"bench parity": re.compile(r"^parity FAILED: ", re.M)}


def run_case(case: Case, timeout: float) -> Outcome:
    cmd = _command(case.command)
    start = time.perf_counter()
    res = _invoke(case.argv, timeout)
    seconds = time.perf_counter() - start
    if res is None:
        return Outcome("timeout", seconds)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        msg = f"{type(res.exception).__name__}: {res.exception}".splitlines()[0][:300]
        return Outcome("traceback", seconds, msg, _where(res.exception, res.exc_info[2]))
    category, message, why = classify(case, res.exit_code, res.stderr, cmd, VERDICTS.get(case.command))
    return Outcome(category, seconds, message, why=why)


def _cli_path() -> str:
    exe = Path(sys.executable).parent / "ntg-edge"
    return str(exe) if exe.exists() else shutil.which("ntg-edge") or "ntg-edge"


def run_subprocess(case: Case, timeout: float) -> Outcome:
    """The same case as a real process: a traceback there is Python's own report on stderr."""
    start = time.perf_counter()
    try:
        p = subprocess.run([_cli_path(), *case.argv], capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL, errors="replace")
    except subprocess.TimeoutExpired:
        return Outcome("timeout", time.perf_counter() - start)
    seconds = time.perf_counter() - start
    if "Traceback (most recent call last)" in p.stderr:
        return Outcome("traceback", seconds, p.stderr.strip().splitlines()[-1][:300])
    category, message, why = classify(case, p.returncode, p.stderr, _command(case.command),
                                      VERDICTS.get(case.command))
    return Outcome(category, seconds, message, why=why)


# -- the benchmark ------------------------------------------------------------------------------------------------------
def available_commands() -> list[str]:
    """The fuzzed commands: the base set, plus `import` where this checkout has it."""
    from ..appliance.cli import main

    return list(BASE_COMMANDS) + [c for c in OPTIONAL_COMMANDS if c in main.commands]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence Python warnings (torch, sklearn) that thousands of cases would repeat on the real stderr."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def run_fuzz(workdir: str | Path, cases_per_command: int, seed: int, commands: list[str] | None = None,
             log: Callable[[str], None] = print, subprocess_sample: int = 1, timeout: float = TIMEOUT_S) -> dict:
    """Fuzz each command with `cases_per_command` cases; rerun `subprocess_sample` of them per command as processes.

    Returns {"seed", "cases_per_command", "counts": {command: {category: n}}, "totals", "tracebacks",
    "findings": [one entry per traceback, unnamed error or changed input: argv, mutations, message, where], "distinct": [the findings
    grouped by where they arise], "subprocess": [in-process vs subprocess category of each sampled case], "cases": [every
    case's category, seconds, message and mutations]}.
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    known = available_commands()
    commands = list(commands or known)
    unknown = [c for c in commands if c not in known]
    if unknown:
        raise ValueError(f"--commands: unknown command {', '.join(unknown)} (expected some of {', '.join(known)})")
    start = time.perf_counter()
    m = build_material(workdir, log)
    pristine = fingerprint(workdir / "material")
    counts: dict[str, Counter[str]] = {}
    findings, checks, log_cases = [], [], []
    with _quiet():
        for command in commands:
            counts[command] = Counter({c: 0 for c in (*CATEGORIES, CHANGED)})
            t0 = time.perf_counter()
            cases = []
            for i in range(cases_per_command):
                case = build_case(command, i, seed, m, workdir)
                out = run_case(case, timeout)
                counts[command][out.category] += 1
                changed = _changes(pristine, fingerprint(workdir / "material"))
                if changed:
                    counts[command][CHANGED] += 1
                    findings.append({"command": command, "case": i, "category": CHANGED,
                                     "argv": ["ntg-edge", *case.argv], "mutations": case.mutations,
                                     "message": out.message, "where": "", "why": f"changed {', '.join(changed[:5])}"})
                    restore_material(workdir)
                    pristine = fingerprint(workdir / "material")
                if out.category in ("traceback", "unnamed_error"):
                    findings.append({"command": command, "case": i, "category": out.category,
                                     "argv": ["ntg-edge", *case.argv], "mutations": case.mutations,
                                     "message": out.message, "where": out.where, "why": out.why})
                else:
                    shutil.rmtree(workdir / "cases" / command.replace(" ", "-") / str(i), ignore_errors=True)
                cases.append((case, out))
                log_cases.append({"command": command, "case": i, "category": out.category,
                                  "seconds": round(out.seconds, 2), "message": out.message,
                                  "mutations": case.mutations})
            sample = random.Random(f"{seed}:{command}:sample").sample(range(len(cases)),
                                                                      min(subprocess_sample, len(cases)))
            for i in sample:
                case = build_case(command, i, seed, m, workdir)  # fresh files: the in-process run changed them
                sub = run_subprocess(case, timeout)
                checks.append({"command": command, "case": i, "argv": ["ntg-edge", *case.argv],
                               "in_process": cases[i][1].category, "subprocess": sub.category,
                               "match": sub.category == cases[i][1].category})
                if _changes(pristine, fingerprint(workdir / "material")):  # counted in-process already
                    restore_material(workdir)
                    pristine = fingerprint(workdir / "material")
                if cases[i][1].category not in ("traceback", "unnamed_error"):
                    shutil.rmtree(workdir / "cases" / command.replace(" ", "-") / str(i), ignore_errors=True)
            c = counts[command]
            log(f"{command:<13} {cases_per_command} cases in {time.perf_counter() - t0:.0f} s: "
                + ", ".join(f"{k} {c[k]}" for k in CATEGORIES if c[k]))
    totals = Counter()
    for c in counts.values():
        totals.update(c)
    return {"seed": seed, "cases_per_command": cases_per_command, "seconds": time.perf_counter() - start,
            "counts": {k: dict(v) for k, v in counts.items()}, "totals": {k: totals[k] for k in (*CATEGORIES, CHANGED)},
            "tracebacks": totals["traceback"], "findings": findings, "distinct": _distinct(findings),
            "subprocess": checks, "cases": log_cases}


def _distinct(findings: list[dict]) -> list[dict]:
    """Findings grouped by where they arise (traceback) or by command and message shape (unnamed error); each group
    keeps its count and its shortest reproduction."""
    groups: dict[tuple, list[dict]] = {}
    for f in findings:
        shape = f["where"] if f["category"] == "traceback" else re.sub(r"/\S+|\d+", "…", f["message"] or f["why"])
        groups.setdefault((f["category"], f["command"], shape), []).append(f)
    out = []
    for (category, command, shape), fs in groups.items():
        first = min(fs, key=lambda f: (len(f["mutations"]), len(" ".join(f["argv"]))))
        out.append({"category": category, "command": command, "count": len(fs), "where": first["where"],
                    "message": first["message"], "why": first["why"], "argv": first["argv"],
                    "mutations": first["mutations"]})
    return out


def format_fuzz(rep: dict) -> str:
    width = max(13, *(len(c) for c in rep["counts"]))
    columns = (*CATEGORIES, CHANGED)
    lines = [f"{'command':<{width}}" + "".join(f"{c:>15}" for c in columns)]
    for command, c in rep["counts"].items():
        lines.append(f"{command:<{width}}" + "".join(f"{c.get(k, 0):>15}" for k in columns))
    lines.append(f"{'total':<{width}}" + "".join(f"{rep['totals'][k]:>15}" for k in columns))
    lines.append(f"{rep['tracebacks']} tracebacks (target 0) in {sum(rep['totals'][k] for k in CATEGORIES)} cases, "
                 f"seed {rep['seed']}, {rep['seconds']:.0f} s")
    mismatched = [s for s in rep["subprocess"] if not s["match"]]
    lines.append(f"subprocess check: {len(rep['subprocess']) - len(mismatched)} of {len(rep['subprocess'])} sampled "
                 "cases agree with the in-process run")
    for s in mismatched:
        lines.append(f"  differs: {s['in_process']} in-process, {s['subprocess']} as a process: {' '.join(s['argv'])}")
    for d in rep["distinct"]:
        lines.append(f"\n{d['category']} x{d['count']} in {d['command']}: {d['where'] or d['why']}")
        lines.append(f"  message:  {d['message']}")
        lines.append(f"  damage:   {'; '.join(d['mutations'])}")
        lines.append(f"  argv:     {' '.join(map(_quote, d['argv']))}")
    return "\n".join(lines)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


@click.command("fuzz")
@click.option("--cases", default=200, show_default=True, type=click.IntRange(min=1), help="Cases per command.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="The same seed, the same cases.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Also write the report as JSON.")
@click.option("--commands", help="Comma-separated subset, e.g. 'train,bench speed' (default: every command).")
@click.option("--workdir", type=click.Path(file_okay=False),
              help="Where the material and the damaged copies go (default: a temporary folder, removed after).")
def fuzz(cases, seed, json_out, commands, workdir) -> None:
    """Random option values and damaged inputs for every command; counts tracebacks (target 0)."""
    import tempfile

    wanted = [c.strip() for c in commands.split(",")] if commands else None
    with contextlib.ExitStack() as stack:
        work = workdir or stack.enter_context(tempfile.TemporaryDirectory(prefix="ntg-fuzz-"))
        rep = run_fuzz(work, cases, seed, wanted, log=click.echo)
    click.echo(format_fuzz(rep))
    if json_out:
        from ..runtime.flows import write_atomic

        write_atomic(json_out, lambda tmp: Path(tmp).write_text(json.dumps(rep, indent=2, default=str)))
    if rep["tracebacks"]:
        raise SystemExit(1)
