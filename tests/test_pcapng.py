"""pcapng reading: several interfaces (each with its own link type, snap length and clock), several sections of either
byte order, every packet block kind, damage, BPF per link type, and the corpus' pcapng files against Wireshark's
count. The small captures are built block by block."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ntg_edge.runtime.ingest import ingest_paths
from ntg_edge.runtime.pcap import PCAPNG_MAGIC, CaptureError, Pcapng, open_file

from test_ingest import eth, ipv4, ipv6, tcp, udp, wireshark_counts

LE, BE = "<", ">"
ETHERNET, RAW, SLL = 1, 101, 113  # LINKTYPE_* values as stored
DLT_RAW = 12  # what LINKTYPE_RAW is read as
NS, POW2_10 = 9, 0x80 | 10  # if_tsresol: 10^-9 s; 2^-10 s


# ---------------------------------------------------------------- block builders


def block(order: str, kind: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    return struct.pack(order + "II", kind, len(body) + 12) + body + struct.pack(order + "I", len(body) + 12)


def shb(order: str) -> bytes:
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(order: str, linktype: int, snaplen: int, tsresol: int | None = None, tsoffset: int | None = None) -> bytes:
    options = b""
    if tsresol is not None:
        options += struct.pack(order + "HHB3x", 9, 1, tsresol)
    if tsoffset is not None:
        options += struct.pack(order + "HHq", 14, 8, tsoffset)
    if options:
        options += struct.pack(order + "HH", 0, 0)
    return block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + options)


def epb(order: str, iface: int, ticks: int, frame: bytes, snaplen: int = 0) -> bytes:
    kept = frame[:snaplen] if snaplen else frame
    head = struct.pack(order + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(kept), len(frame))
    return block(order, 6, head + kept)


def pb(order: str, iface: int, ticks: int, frame: bytes) -> bytes:
    """The obsolete Packet Block."""
    head = struct.pack(order + "HHIIII", iface, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame))
    return block(order, 2, head + frame)


def spb(order: str, frame: bytes, snaplen: int) -> bytes:
    return block(order, 3, struct.pack(order + "I", len(frame)) + frame[:snaplen])


def other_blocks(order: str) -> bytes:
    """Blocks to skip: name resolution, interface statistics, decryption secrets, a custom one."""
    return (block(order, 4, bytes(4)) + block(order, 5, bytes(12)) + block(order, 10, bytes(8))
            + block(order, 0x00000BAD, b"vendor data"))


def records(path: Path) -> list[tuple[int, float, int]]:
    return [(dlt, ts, len(data)) for dlt, ts, data in Pcapng(path)]


UDP_100 = eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(5000, 53, b"u" * 100)))
TCP_1000 = ipv4("10.0.0.3", "10.0.0.4", 6, tcp(40000, 443, b"t" * 1000))  # raw IP, no link header
SLL_V6 = bytes(14) + b"\x86\xdd" + ipv6("2001:db8::1", "2001:db8::2", 17, udp(1, 2, b"v" * 7))


# ---------------------------------------------------------------- tests


def test_each_interface_has_its_own_link_type_snap_length_and_clock(tmp_path):
    """libpcap stops at the second interface of such a file, so here, where the interfaces come first, it read no
    packet at all; every packet is read here, with its interface's link type, snap length, timestamp resolution
    (microseconds by default, 10^-9, 2^-10) and offset."""
    path = tmp_path / "three.pcapng"
    path.write_bytes(shb(LE) + idb(LE, ETHERNET, 65535) + idb(LE, RAW, 64, tsresol=NS)
                     + idb(LE, SLL, 0, tsresol=POW2_10, tsoffset=1000)
                     + epb(LE, 0, 1_000_250_000, UDP_100)
                     + epb(LE, 1, 1_000_500_000_123, TCP_1000, snaplen=64)
                     + epb(LE, 2, 1792, SLL_V6))  # 1792 / 2^10 = 1.75 s, + 1000 s
    assert records(path) == [(1, 1000.25, len(UDP_100)), (DLT_RAW, 1000.500000123, 64), (SLL, 1001.75, len(SLL_V6))]
    capture = open_file(path)
    packets = list(capture)
    assert [(p.src, p.pl) for p in packets] == [("10.0.0.1", 100), ("10.0.0.3", 1000), ("2001:db8::1", 7)]
    assert capture.records == 3 and not capture.error and not capture.skipped


def test_sections_of_both_byte_orders_and_every_packet_block(tmp_path):
    """A big-endian section, then a little-endian one whose interface 0 is its own; SPB, obsolete PB and EPB are
    read, other blocks skipped. An SPB has no timestamp: it takes the previous packet's."""
    path = tmp_path / "sections.pcapng"
    path.write_bytes(shb(BE) + other_blocks(BE) + idb(BE, ETHERNET, 60) + idb(BE, RAW, 65535)
                     + epb(BE, 0, 5_000_000, UDP_100, snaplen=60) + spb(BE, UDP_100, 60) + pb(BE, 1, 6_000_000, TCP_1000)
                     + shb(LE) + idb(LE, RAW, 65535, tsresol=NS) + other_blocks(LE)
                     + epb(LE, 0, 7_000_000_001, TCP_1000))
    assert records(path) == [(1, 5.0, 60), (1, 0.0, 60), (DLT_RAW, 6.0, len(TCP_1000)),
                             (DLT_RAW, 7.000000001, len(TCP_1000))]
    packets = list(open_file(path))
    assert [(p.ts, p.pl) for p in packets] == [(5.0, 100), (5.0, 100), (6.0, 1000), (7.000000001, 1000)]


def _two_packets(tmp_path: Path) -> tuple[Path, int]:
    """A capture of two packets on two interfaces, and the offset of its second packet's block."""
    head = shb(LE) + idb(LE, ETHERNET, 65535) + idb(LE, RAW, 65535) + epb(LE, 0, 1_000_000, UDP_100)
    path = tmp_path / "two.pcapng"
    path.write_bytes(head + epb(LE, 1, 2_000_000, TCP_1000) + other_blocks(LE))
    return path, len(head)


def test_damaged_tail_keeps_every_packet_before_it(tmp_path):
    path, second = _two_packets(tmp_path)
    path.write_bytes(path.read_bytes()[: second + 100])  # cut inside the second packet's block
    capture = open_file(path)
    assert len(list(capture)) == 1
    assert capture.error == (f"damaged after 1 packets at byte {second:,}: 100 bytes not read "
                             f"(a {len(epb(LE, 1, 0, TCP_1000)):,}-byte block runs past the end of the file)")
    warnings = []
    flows, report = ingest_paths([path], progress=False, warn=warnings.append)
    assert report.files == 1 and not report.failed and report.records == 1 and len(flows) == 1
    assert warnings == [f"{path}: {capture.error}"]


def test_corrupt_block_in_the_middle(tmp_path):
    """A block whose two length fields disagree ends the read there; what follows is counted as not read."""
    path, second = _two_packets(tmp_path)
    data = bytearray(path.read_bytes())
    data[second + 4] ^= 0x04  # the leading length, 4 bytes off
    path.write_bytes(bytes(data))
    capture = open_file(path)
    assert len(list(capture)) == 1
    assert capture.error.startswith(f"damaged after 1 packets at byte {second:,}: {len(data) - second:,} bytes")


@pytest.mark.parametrize("damage", ["byte order", "before interface", "version"])
def test_unreadable_header_fails_the_file(tmp_path, damage):
    """Damage before the first interface description is a file that cannot be opened, as with libpcap."""
    good = shb(LE)
    head = {"byte order": PCAPNG_MAGIC + good[4:8] + b"junk" + good[12:],
            "before interface": good + epb(LE, 0, 0, UDP_100),
            "version": good[:12] + struct.pack("<H", 2) + good[14:]}[damage]
    path = tmp_path / "bad.pcapng"
    path.write_bytes(head + idb(LE, ETHERNET, 65535) + epb(LE, 0, 0, UDP_100))
    with pytest.raises(CaptureError, match="bad.pcapng: damaged after 0 packets at byte"):
        open_file(path)
    warnings = []
    _, report = ingest_paths([path], progress=False, warn=warnings.append)
    assert report.files == 0 and len(report.failed) == 1 and len(warnings) == 1


def test_bpf_is_compiled_for_each_link_type(tmp_path):
    path = tmp_path / "two.pcapng"
    path.write_bytes(shb(LE) + idb(LE, ETHERNET, 65535) + idb(LE, RAW, 65535)
                     + epb(LE, 0, 1_000_000, UDP_100) + epb(LE, 1, 2_000_000, TCP_1000))
    assert [p.proto for p in open_file(path, "tcp")] == [6]  # found behind no link header
    assert [p.proto for p in open_file(path, "udp")] == [17]  # found behind an Ethernet header
    with pytest.raises(ValueError, match="--bpf 'tcp prt'"):
        open_file(path, "tcp prt")
    with pytest.raises(ValueError, match="--bpf .*link type 12 in .*two.pcapng"):  # Ethernet addresses on raw IP
        list(open_file(path, "ether host 00:00:00:00:00:00"))


# ---------------------------------------------------------------- the real corpus


def test_corpus_instagram_is_read_to_the_end(ndpi):
    """instagram.pcap is pcapng with a second interface of another snap length: libpcap stopped there, after 744 of
    its 3,443 packets (as many as tshark shows)."""
    assert len(records(ndpi / "pcaps" / "instagram.pcap")) == 3443


def test_corpus_pcapng_counts_match_wireshark(ndpi):
    """Every pcapng file of the corpus (among them 23 with several interfaces, one of which libpcap could not read
    to the end) yields as many records as Wireshark counts."""
    pcaps = ndpi / "pcaps"
    names = [p.name for p in sorted(pcaps.iterdir()) if p.read_bytes()[:4] == PCAPNG_MAGIC]
    expected = wireshark_counts(pcaps, names)
    ours = {name: len(records(pcaps / name)) for name in names}
    assert ours == expected
