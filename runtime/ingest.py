"""Ingest: captures → labelled bidirectional flows (the `ntg-edge ingest` stage).

Flow assembly follows NFStream 6.x, whose flows label the real corpus (data/ndpi): a flow is keyed by its canonical
5-tuple plus VLAN id and tunnel kind; `src` is the endpoint that sent the first packet; a packet arriving
`idle_timeout` seconds or more after the flow's last packet, or `active_timeout` seconds or more after its first,
closes the flow and opens a new one with that packet.

TCP FIN/RST end a flow (`tcp_end`, the default; `tcp_end=False` / `--no-tcp-end` gives NFStream's behaviour, where only
the timeouts end a flow):
- an RST ends the flow, and the RST packet belongs to it;
- a FIN ends the flow once it is acknowledged and so is the other endpoint's FIN: the packet whose acknowledgement
  number covers the later of the two belongs to the flow and ends it. Sequence numbers, not packet order, tell when
  both are acknowledged: when both ends close at once their FINs cross and each is acknowledged by its own pure ACK;
- while both endpoints have sent a FIN, a SYN ends the flow before it and starts a new one (the port reused after a
  close whose last ACK was not captured);
- an ended flow is yielded at once (bounded memory on live capture), and any later packet with the same key starts a
  new flow: a reused port, or stray retransmissions after the close (short flows, which the benchmark's >= 3 packet
  filter drops).

NFStream, whose flows label the corpus, does not end flows on FIN/RST, so one of its flows can be several of ours (a
reused port within the idle timeout; a close and its stray retransmissions). For labels, each flow is told whether it
continues the previous flow of its key as NFStream would see it (no timeout between them): `Labels` gives such a flow
the same CSV row as that previous flow, and every other flow the next row of its 5-tuple.
"""

from __future__ import annotations

import csv
import gzip
import sys
import zlib
from collections import Counter, OrderedDict, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Literal

from tqdm import tqdm

from .flows import DOWN, UP, Flow
from .knobs import check, knob
from .pcap import Capture, CaptureError, Packet, open_file, open_live

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")
LABEL_COLUMNS = ("file", "src_ip", "src_port", "dst_ip", "dst_port", "protocol", "application_name")
_SCAN_INTERVAL = 1.0  # seconds of capture time between idle scans (NFStream: 10 ms; only output order differs)

LabelFrom = Literal["folder", "file"]
FlowKey = tuple  # (file, protocol, (ip, port), (ip, port)) with the two endpoints in canonical order


_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10
_SEQ_MASK, _SEQ_HALF = 0xFFFFFFFF, 1 << 31  # TCP sequence space: compare modulo 2^32
_TCP = 6


class _Open:
    """A flow being assembled; `last` is the time of its latest packet, `nf_first` the first packet time of the
    NFStream flow it is part of, `continues` whether it continues the previous flow of its key as NFStream would see
    it, `fin_next` the acknowledgement number that covers each endpoint's FIN ([src, dst], None until it sends one)
    and `fins_acked` which of them have been acknowledged (1 src's, 2 dst's)."""

    __slots__ = ("flow", "last", "nf_first", "continues", "fin_next", "fins_acked")

    def __init__(self, flow: Flow, last: float, nf_first: float, continues: bool) -> None:
        self.flow = flow
        self.last = last
        self.nf_first = nf_first
        self.continues = continues
        self.fin_next: list[int | None] = [None, None]
        self.fins_acked = 0


@dataclass(frozen=True)
class Assembly:
    """How packets become flows (module docstring): the settings ingest, live capture and `serve` share."""

    max_packets: int = knob(64, "Packets kept per flow.", lo=1)
    idle_timeout: float = knob(120.0, "Seconds without a packet that end a flow.", lo=0, lo_open=True)
    active_timeout: float = knob(1800.0, "Seconds after which a flow is cut.", lo=0, lo_open=True)
    tcp_end: bool = knob(True, "TCP FIN/RST end a flow (off: only the timeouts do, as in NFStream).")

    def __post_init__(self) -> None:
        check(self)


def assemble(
    packets: Iterable[Packet],
    file: str = "",
    a: Assembly = Assembly(),
    on_packet: Callable[[Flow], None] | None = None,
) -> Iterator[Flow]:
    """Yield each bidirectional flow of `packets` (time-ordered) as soon as it is finished, the rest at the end.

    Every packet counts in `packets`/`bytes`; only the first `max_packets` are kept in `pl`/`dir`/`iat`. With
    `tcp_end`, TCP FIN/RST end a flow (module docstring); without, only the timeouts do. `on_packet(flow)` is called
    with the still-open flow after each of its packets (live classification of a flow before it ends).
    """
    for flow, _ in _assemble(packets, file, a, on_packet):
        yield flow


def _assemble(
    packets: Iterable[Packet],
    file: str,
    a: Assembly,
    on_packet: Callable[[Flow], None] | None = None,
) -> Iterator[tuple[Flow, bool]]:
    """`assemble`, each flow with whether it continues the previous flow of its key in NFStream's eyes (always
    False without `tcp_end`)."""
    max_packets, idle_timeout, active_timeout, tcp_end = a.max_packets, a.idle_timeout, a.active_timeout, a.tcp_end
    table: OrderedDict[tuple, _Open] = OrderedDict()  # least recently updated first, so idle flows are at the front
    ended: OrderedDict[tuple, tuple[float, float]] = OrderedDict()  # key -> (last, nf_first) of flows ended by TCP
    next_scan = 0.0
    for p in packets:
        a, b = (p.src, p.sport), (p.dst, p.dport)
        key = (p.proto, p.vlan, p.tunnel, a, b) if a <= b else (p.proto, p.vlan, p.tunnel, b, a)
        o = table.get(key)
        end = False
        if o is not None:
            if p.ts - o.last >= idle_timeout or p.ts - o.flow.first_ts >= active_timeout:
                del table[key]
                yield o.flow, o.continues
                o = None
            elif p.flags & _SYN and None not in o.fin_next:  # both ends closed: the port reused
                del table[key]
                ended[key] = (o.last, o.nf_first)
                yield o.flow, o.continues
                o = None
        if o is None:
            gone = ended.pop(key, None)
            continues = gone is not None and p.ts - gone[0] < idle_timeout and p.ts - gone[1] < active_timeout
            flow = Flow(file=file, src_ip=p.src, src_port=p.sport, dst_ip=p.dst, dst_port=p.dport, protocol=p.proto,
                        first_ts=p.ts, packets=1, bytes=p.pl, pl=[p.pl], dir=[UP], iat=[0.0])
            o = table[key] = _Open(flow, p.ts, gone[1] if continues else p.ts, continues)
            up = True
        else:
            flow = o.flow
            up = p.src == flow.src_ip and p.sport == flow.src_port
            flow.packets += 1
            flow.bytes += p.pl
            if len(flow.pl) < max_packets:
                flow.pl.append(p.pl)
                flow.dir.append(UP if up else DOWN)
                flow.iat.append(p.ts - o.last)
            o.last = p.ts
            table.move_to_end(key)
        if on_packet is not None:
            on_packet(o.flow)
        if tcp_end and p.proto == _TCP:
            if p.flags & _RST:
                end = True
            else:
                mine, theirs = (0, 1) if up else (1, 0)
                if p.flags & _FIN:  # the FIN takes one sequence number, after the payload
                    o.fin_next[mine] = (p.seq + p.pl + 1) & _SEQ_MASK
                their_fin = o.fin_next[theirs]
                if p.flags & _ACK and their_fin is not None and (p.ack - their_fin) & _SEQ_MASK < _SEQ_HALF:
                    o.fins_acked |= 1 << theirs  # acknowledges their FIN (or beyond it, modulo 2^32)
                    end = o.fins_acked == 3
        if end:  # yielded at once, so a closed connection costs no memory until the idle timeout
            del table[key]
            ended[key] = (p.ts, o.nf_first)
            yield o.flow, o.continues
        if p.ts >= next_scan:  # expire idle flows even if no packet of theirs comes again: bounded memory when live
            next_scan = p.ts + _SCAN_INTERVAL
            while table:
                o = next(iter(table.values()))
                if p.ts - o.last < idle_timeout:
                    break
                table.popitem(last=False)
                yield o.flow, o.continues
            while ended and p.ts - next(iter(ended.values()))[0] >= idle_timeout:
                ended.popitem(last=False)
    for o in table.values():
        yield o.flow, o.continues


def _canonical(file: str, proto: int, a: tuple[str, int], b: tuple[str, int]) -> FlowKey:
    return (file, proto, a, b) if a <= b else (file, proto, b, a)


class Labels:
    """Application labels from a labels CSV (the shape of data/ndpi/labels.csv.gz), by capture file name and 5-tuple.

    A 5-tuple can carry several flows in one capture (port reuse, idle gaps): the k-th flow of a 5-tuple gets the k-th
    row's label and later extra flows the last one, so one `Labels` serves one pass over the captures. A flow that
    `continues` the previous one of its 5-tuple (ended by FIN/RST where NFStream, which made the CSV, saw no end) gets
    that flow's row again.
    """

    def __init__(self, rows: dict[FlowKey, list[str]]) -> None:
        self._rows = rows
        self._taken: Counter[FlowKey] = Counter()

    @classmethod
    def from_csv(cls, path: str | Path) -> Labels:
        """Read a gzip or plain CSV. Raises ValueError naming the file and the missing column or bad row."""
        path = Path(path)
        rows: dict[FlowKey, list[str]] = defaultdict(list)
        with open(path, "rb") as f:
            opener = gzip.open if f.read(2) == b"\x1f\x8b" else open
        try:
            with opener(path, "rt", newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                missing = [c for c in LABEL_COLUMNS if c not in (reader.fieldnames or [])]
                if missing:
                    raise ValueError(f"{path}: not a labels CSV: missing column {', '.join(missing)}")
                for line, r in enumerate(reader, start=2):
                    try:
                        key = _canonical(Path(r["file"]).name, int(r["protocol"]), (r["src_ip"], int(r["src_port"])),
                                         (r["dst_ip"], int(r["dst_port"])))
                    except (TypeError, ValueError):
                        raise ValueError(f"{path}:{line}: bad port or protocol number") from None
                    rows[key].append(r["application_name"])
        # a damaged gzip stream (zlib.error, EOFError, gzip.BadGzipFile), bytes that are not UTF-8, a broken CSV
        except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error) as e:
            raise ValueError(f"{path}: not a readable labels CSV ({type(e).__name__}: {e})") from None
        return cls(dict(rows))

    def take(self, flow: Flow, continues: bool = False) -> str | None:
        """The label of `flow` (by `flow.file`, either orientation), or None if the CSV has no such flow."""
        key = _canonical(flow.file, flow.protocol, (flow.src_ip, flow.src_port), (flow.dst_ip, flow.dst_port))
        labels = self._rows.get(key)
        if labels is None:
            return None
        if not (continues and key in self._taken):
            self._taken[key] += 1
        return labels[min(self._taken[key] - 1, len(labels) - 1)]


@dataclass
class IngestReport:
    files: int = 0  # captures read (fully or up to a read error)
    failed: list[str] = field(default_factory=list)  # "path: why" for captures that could not be opened
    warnings: list[str] = field(default_factory=list)  # failures and mid-file read errors, one line each
    records: int = 0  # capture records read
    packets: int = 0  # TCP/UDP packets assembled into flows
    skipped: Counter[str] = field(default_factory=Counter)  # records not assembled, by reason
    flows: int = 0
    unlabelled: int = 0

    def lines(self) -> list[str]:
        """The human-readable report the CLI prints."""
        out = [f"files      {self.files} read, {len(self.failed)} failed",
               f"records    {self.records}",
               f"packets    {self.packets} TCP/UDP assembled",
               f"flows      {self.flows} ({self.unlabelled} unlabelled)"]
        out += [f"skipped    {n:>8}  {why}" for why, n in self.skipped.most_common()]
        return out


def find_captures(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given (any extension) and, under directories, every *.pcap / *.pcapng / *.cap, sorted."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in CAPTURE_SUFFIXES)
        elif p.is_file():
            found.append(p)
        else:
            raise ValueError(f"{p}: no such file or directory")
    return found


def _warn_stderr(message: str) -> None:
    tqdm.write(f"warning: {message}", file=sys.stderr)  # tqdm.write keeps the progress bar intact


Labeller = Callable[[Flow, bool], "str | None"]  # (flow, continues the previous flow of its key) -> label


def _labeller(path: Path, table: Labels | None, label_from: LabelFrom | None) -> Labeller:
    if table is not None:
        return table.take
    if label_from is None:
        return lambda flow, continues: None
    name = {"folder": path.parent.name, "file": path.stem}[label_from]
    return lambda flow, continues: name


def _collect(capture: Capture, file: str, report: IngestReport, label: Labeller, warn: Callable[[str], None],
             a: Assembly) -> list[Flow]:
    flows = []
    for flow, continues in _assemble(capture, file, a):
        got = label(flow, continues)
        flow.label = got or ""
        report.unlabelled += not got
        flows.append(flow)
    report.files += 1
    report.records += capture.records
    report.packets += capture.records - sum(capture.skipped.values())
    report.skipped.update(capture.skipped)
    report.flows += len(flows)
    if capture.error:  # the error says what was kept and what was lost
        report.warnings.append(f"{capture.name}: {capture.error}")
        warn(report.warnings[-1])
    return flows


def ingest_paths(
    paths: Iterable[str | Path],
    labels: str | Path | None = None,
    label_from: LabelFrom | None = None,
    bpf: str | None = None,
    a: Assembly = Assembly(),
    progress: bool = True,
    warn: Callable[[str], None] = _warn_stderr,
) -> tuple[list[Flow], IngestReport]:
    """Ingest capture files and directories (recursive). Labels come from a labels CSV (`labels`), from each
    capture's folder or file name (`label_from`), or not at all. A capture that cannot be opened costs one `warn`
    line and is skipped; `a` says how packets become flows. Raises ValueError for a missing path or a bad labels
    CSV.
    """
    files = find_captures(paths)
    table = Labels.from_csv(labels) if labels is not None else None
    report = IngestReport()
    flows: list[Flow] = []
    for path in tqdm(files, desc="ingest", unit="file", disable=None if progress else True):  # bars on a terminal
        try:
            capture = open_file(path, bpf)
        except CaptureError as e:
            report.failed.append(str(e))
            report.warnings.append(str(e))
            warn(str(e))
            continue
        flows += _collect(capture, path.name, report, _labeller(path, table, label_from), warn, a)
    return flows, report


def ingest_live(
    interface: str,
    duration: float,
    bpf: str | None = None,
    a: Assembly = Assembly(),
    warn: Callable[[str], None] = _warn_stderr,
) -> tuple[list[Flow], IngestReport]:
    """Capture `duration` seconds from `interface` into unlabelled flows (`file` = the interface name).
    Raises CaptureError if the interface cannot be opened (permissions, no such device, bad filter)."""
    report = IngestReport()
    flows = _collect(open_live(interface, duration, bpf), interface, report, lambda flow, continues: None, warn, a)
    return flows, report
