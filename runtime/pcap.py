"""Capture reading: pcap / .cap files and live interfaces through libpcap (pcapy-ng), pcapng files by the block reader
below; frames decoded by hand.

Each record becomes a light `Packet` (TCP and UDP over IPv4/IPv6). Everything else is counted in `skipped` under a
short reason and dropped. The decoding follows NFStream's engine where it matters for flow assembly (its flows label
the real corpus): the transport payload length comes from the IP header, not from the captured bytes, so captures cut
by a snap length keep their true sizes; IPv4 fragments after the first are dropped; IP-in-IP and GTP-U are decoded and
the inner packet is used; the VLAN id and tunnel kind are part of the flow key.
"""

from __future__ import annotations

import mmap
import socket
import struct
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Iterator, NamedTuple

import pcapy

TCP, UDP = 6, 17
NO_TUNNEL, GTP = 0, 1

# Link types as libpcap reports them (DLT_*), not the LINKTYPE_* file values: libpcap maps LINKTYPE_RAW 101 to 12.
DLT_NULL, DLT_EN10MB, DLT_PPP, DLT_RAW_BSD, DLT_RAW, DLT_PPP_SERIAL = 0, 1, 9, 14, 12, 50
DLT_C_HDLC, DLT_LOOP, DLT_LINUX_SLL, DLT_IPV4, DLT_IPV6, DLT_LINUX_SLL2 = 104, 108, 113, 228, 229, 276
LINKTYPE_RAW = 101
_LINKTYPE_TO_DLT = {LINKTYPE_RAW: DLT_RAW}  # pcapng stores LINKTYPE_* values; BPF compiles for DLT_* ones

ETH_IPV4, ETH_IPV6, ETH_MPLS, ETH_MPLS_MULTI, ETH_PPPOE = 0x0800, 0x86DD, 0x8847, 0x8848, 0x8864
VLAN_TAGS = (0x8100, 0x88A8, 0x9100)  # 802.1Q, 802.1ad (QinQ outer), legacy QinQ
PPP_IPV4, PPP_IPV6 = 0x0021, 0x0057
IPV6_EXTENSIONS = (0, 43, 60, 135, 139, 140)  # hop-by-hop, routing, destination options, mobility, HIP, shim6
IPV6_FRAGMENT, IPV6_AH = 44, 51
IPIP, IPV6_IN_IP = 4, 41
GTP_U_PORT = 2152

_H = struct.Struct("!H")
_HH = struct.Struct("!HH")
_HHII = struct.Struct("!HHII")
_POLL = 0.01  # seconds between reads of a quiet live interface


class Packet(NamedTuple):
    """One decoded TCP/UDP packet: what flow assembly needs, nothing more."""

    ts: float  # epoch seconds
    src: str
    sport: int
    dst: str
    dport: int
    proto: int  # 6 TCP, 17 UDP
    pl: int  # transport payload bytes, from the IP length fields (>= 0)
    flags: int  # TCP flags byte (0 for UDP)
    vlan: int = 0  # innermost VLAN id, 0 if untagged
    tunnel: int = NO_TUNNEL
    seq: int = 0  # TCP sequence number (0 for UDP)
    ack: int = 0  # TCP acknowledgement number (0 for UDP)


class CaptureError(ValueError):
    """A capture that cannot be opened or read; the message names the source and why."""


def _ip_offset(dlt: int, data: bytes) -> tuple[int, int] | str:
    """(offset of the IP header, VLAN id) for a frame of link type `dlt`, or the reason to skip it."""
    if dlt == DLT_EN10MB:
        etype, off = _H.unpack_from(data, 12)[0], 14
    elif dlt in (DLT_RAW, DLT_RAW_BSD, LINKTYPE_RAW, DLT_IPV4, DLT_IPV6):
        return 0, 0
    elif dlt == DLT_LINUX_SLL:
        etype, off = _H.unpack_from(data, 14)[0], 16
    elif dlt == DLT_LINUX_SLL2:
        etype, off = _H.unpack_from(data, 0)[0], 20
    elif dlt in (DLT_NULL, DLT_LOOP):
        return 4, 0  # 4-byte address family (host or network order): the IP version nibble tells v4 from v6
    elif dlt in (DLT_PPP, DLT_PPP_SERIAL, DLT_C_HDLC):
        if data[0] in (0x0F, 0x8F):  # Cisco HDLC: address, control, Ethernet type
            etype, off = _H.unpack_from(data, 2)[0], 4
        else:  # PPP, optionally in HDLC-like framing (address 0xff, control 0x03)
            off = 2 if data[0] == 0xFF else 0
            proto = _H.unpack_from(data, off)[0]
            if proto not in (PPP_IPV4, PPP_IPV6):
                return "not IP"
            return off + 2, 0
    else:
        return f"link type {dlt}"
    vlan = 0
    while etype in VLAN_TAGS:
        vlan = _H.unpack_from(data, off)[0] & 0x0FFF
        etype = _H.unpack_from(data, off + 2)[0]
        off += 4
    if etype in (ETH_MPLS, ETH_MPLS_MULTI):
        while not data[off + 2] & 0x01:  # walk the label stack to its bottom-of-stack bit
            off += 4
        return off + 4, vlan
    if etype == ETH_PPPOE:
        if _H.unpack_from(data, off + 6)[0] not in (PPP_IPV4, PPP_IPV6):
            return "not IP"
        return off + 8, vlan
    if etype not in (ETH_IPV4, ETH_IPV6):
        return "not IP"
    return off, vlan


def decode(dlt: int, ts: float, data: bytes) -> Packet | str:
    """One captured frame → a `Packet`, or the reason it is skipped. Never raises on malformed or short frames."""
    try:
        where = _ip_offset(dlt, data)
        if isinstance(where, str):
            return where
        off, vlan = where
        return _decode_ip(data, off, ts, vlan, NO_TUNNEL)
    except (IndexError, struct.error):
        return "truncated"


def _decode_ip(data: bytes, off: int, ts: float, vlan: int, tunnel: int) -> Packet | str:
    while True:  # one turn per IP header: IP-in-IP and GTP-U loop to the inner packet
        version = data[off] >> 4
        if version == 4:
            ihl = (data[off] & 0x0F) * 4
            total, frag = _H.unpack_from(data, off + 2)[0], _H.unpack_from(data, off + 6)[0]
            proto = data[off + 9]
            if frag & 0x1FFF:
                return "IP fragment"  # no transport header: NFStream drops these too
            if proto in (IPIP, IPV6_IN_IP):
                off += ihl
                continue
            l4len = total - ihl
            if ihl < 20 or l4len < 0:
                return "bad IP length"
            src = socket.inet_ntop(socket.AF_INET, data[off + 12 : off + 16])
            dst = socket.inet_ntop(socket.AF_INET, data[off + 16 : off + 20])
            l4 = off + ihl
        elif version == 6:
            l4len, proto = _H.unpack_from(data, off + 4)[0], data[off + 6]
            l4 = off + 40
            while proto in IPV6_EXTENSIONS or proto in (IPV6_FRAGMENT, IPV6_AH):
                if proto == IPV6_FRAGMENT:
                    if _H.unpack_from(data, l4 + 2)[0] & 0xFFF8:
                        return "IP fragment"
                    size = 8
                elif proto == IPV6_AH:
                    size = (data[l4 + 1] + 2) * 4
                else:
                    size = (data[l4 + 1] + 1) * 8
                proto = data[l4]
                l4 += size
                l4len -= size
            if proto in (IPIP, IPV6_IN_IP):
                off = l4
                continue
            if l4len < 0:
                return "bad IP length"
            src = socket.inet_ntop(socket.AF_INET6, data[off + 8 : off + 24])
            dst = socket.inet_ntop(socket.AF_INET6, data[off + 24 : off + 40])
        else:
            return "not IP"
        if proto == TCP:
            if l4len < 20:
                return "bad IP length"
            sport, dport, seq, ack = _HHII.unpack_from(data, l4)
            doff = (data[l4 + 12] >> 4) * 4
            return Packet(ts, src, sport, dst, dport, TCP, max(0, l4len - doff), data[l4 + 13], vlan, tunnel, seq, ack)
        if proto == UDP:
            if l4len < 8:
                return "bad IP length"
            sport, dport = _HH.unpack_from(data, l4)
            if GTP_U_PORT in (sport, dport) and tunnel == NO_TUNNEL:
                inner = _gtp_payload(data, l4 + 8)
                if inner is not None:
                    off, tunnel = inner, GTP
                    continue
            return Packet(ts, src, sport, dst, dport, UDP, l4len - 8, 0, vlan, tunnel)
        return f"IP protocol {proto}"


def _gtp_payload(data: bytes, off: int) -> int | None:
    """Offset of the IP packet inside a GTPv1-U T-PDU starting at `off`, or None if it is not one."""
    flags, msg = data[off], data[off + 1]
    if flags >> 5 != 1 or msg != 0xFF:
        return None
    pos = off + 8
    if flags & 0x07:  # sequence number, N-PDU number, next extension type
        pos += 4
    if flags & 0x04:
        while data[pos - 1]:  # each extension: length in 4-byte units, last byte = next extension type
            length = data[pos] * 4
            if not length:
                return None
            pos += length
    return pos if data[pos] >> 4 in (4, 6) else None


Record = tuple[int, float, bytes]  # (DLT link type, epoch seconds, captured frame)


class Damaged(Exception):
    """A capture that stops being readable part-way; the message says where and what was lost, not the file name."""


class Capture:
    """Iterate the decoded packets of one capture, counting skipped records by reason in `skipped`.

    Timestamps are forced non-decreasing (as NFStream does), so inter-arrival times are never negative.
    A read error mid-file (truncated last record, corrupt block) ends the iteration and is kept in `error`.
    """

    def __init__(self, records: Iterator[Record], name: str) -> None:
        self.name = name
        self.records = 0
        self.skipped: Counter[str] = Counter()
        self.error = ""
        self._source = records

    def __iter__(self) -> Iterator[Packet]:
        clock = 0.0
        try:
            for dlt, ts, data in self._source:
                self.records += 1
                if ts < clock:
                    ts = clock
                clock = ts
                pkt = decode(dlt, ts, data)
                if isinstance(pkt, str):
                    self.skipped[pkt] += 1
                else:
                    yield pkt
        except Damaged as e:
            self.error = str(e)


def _libpcap_records(handle, deadline: float | None, stop: threading.Event | None = None) -> Iterator[Record]:
    """Records from a libpcap handle; `deadline` (a time.monotonic() value) or `stop` being set ends a live capture."""
    # next() rather than next_batch(): a batch that hits a read error loses all its packets, a truncated last
    # record must cost only that record.
    dlt, read = handle.datalink(), handle.next
    while (deadline is None or time.monotonic() < deadline) and not (stop is not None and stop.is_set()):
        try:
            header, data = read()
        except pcapy.PcapError as e:
            raise Damaged(str(e)) from None
        if header is None:
            if deadline is None:
                return  # end of file
            time.sleep(_POLL)  # live, non-blocking: nothing to read yet
            continue
        sec, usec = header.getts()
        yield dlt, sec + usec * 1e-6, data


_PCAP_ORDER = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",  # microseconds
               b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">",  # nanoseconds
               b"\x34\xcd\xb2\xa1": "<", b"\xa1\xb2\xcd\x34": ">"}  # Kuznetzov's: 24-byte record headers
_MAX_CAPLEN = {231: 128 << 20, 249: 1 << 20, 279: 8 << 20}  # libpcap's limit where not 262144: D-Bus, USBPcap, EBHSCR


def _classic_damage(path: str | Path, why: str) -> str:
    """libpcap's reason for stopping in a pcap file, with where it stopped and how much was left: libpcap does not
    say, and with a BPF filter the records it returned do not tell either. The record headers are walked with
    libpcap's rules (version 2.0-2.3 files may have captured and original length swapped; a captured length over
    libpcap's limit is an error) to the first record it refuses or the end of the file cuts short."""
    with open(path, "rb") as f:
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if f.seek(0, 2) else b""
    order = _PCAP_ORDER.get(buf[:4])
    if order is None or len(buf) < 24:
        return why
    step = 24 if buf[:4] in (b"\x34\xcd\xb2\xa1", b"\xa1\xb2\xcd\x34") else 16
    major, minor = struct.unpack_from(order + "HH", buf, 4)
    swapped = (major == 2 and minor < 3) or major == 543  # DG/UX tcpdump writes 543.0
    maybe_swapped = major == 2 and minor == 3
    limit = _MAX_CAPLEN.get(struct.unpack_from(order + "I", buf, 20)[0] & 0x03FFFFFF, 262144)  # low bits: link type
    pos, records, lengths = 24, 0, struct.Struct(order + "II")
    while pos + step <= len(buf):
        caplen, length = lengths.unpack_from(buf, pos + 8)
        if swapped or (maybe_swapped and caplen > length):
            caplen = length
        if caplen > limit or pos + step + caplen > len(buf):
            break
        pos += step + caplen
        records += 1
    if pos == len(buf):  # every record is whole: libpcap stopped for a reason of its own (a read error)
        return why
    return f"damaged after {records} packets at byte {pos:,}: {len(buf) - pos:,} bytes not read ({why})"


def _located(records: Iterator[Record], path: str | Path) -> Iterator[Record]:
    """`records` of the pcap file `path`, whose damage, if any, is located in the file."""
    try:
        yield from records
    except Damaged as e:
        raise Damaged(_classic_damage(path, str(e))) from None


# ---------------------------------------------------------------- pcapng
# libpcap reads a pcapng file only while every interface has the first one's link type and snap length, and stops
# with an error at the first that does not (in the nDPI corpus instagram.pcap lost 2,699 of its 3,443 packets). This
# reader takes each interface as it comes. Every pcapng file goes through it, not only those libpcap refuses: one code
# path for the format, tested on its own. It costs about a microsecond a record more than libpcap, which does not show
# beside decoding and flow assembly in the corpus' ingest time.

PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"  # the Section Header Block type, the same in either byte order
_BOM = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}  # byte-order magic as stored → struct order
_SHB, _IDB, _PB, _SPB, _EPB = 0x0A0D0D0A, 1, 2, 3, 6  # block types read; others (NRB, ISB, DSB...) are skipped
_MIN_BODY = {_SHB: 16, _IDB: 8, _PB: 20, _SPB: 4, _EPB: 20}  # fixed fields between the two length fields
_IF_TSRESOL, _IF_TSOFFSET = 9, 14  # IDB options used


class _Interface(NamedTuple):
    dlt: int
    snaplen: int  # 0: no limit
    ticks: int  # timestamp units per second (if_tsresol; default microseconds)
    offset: int  # seconds added to every timestamp (if_tsoffset)
    bpf: object | None  # pcapy.BPFProgram compiled for this link type, or None without a filter


class _Order(NamedTuple):
    """The structs of one byte order."""

    code: str  # "<" or ">"
    u32: struct.Struct
    head: struct.Struct  # block type, block length
    epb: struct.Struct  # interface, timestamp high and low words, captured length


_ORDERS = {bom: _Order(code, struct.Struct(code + "I"), struct.Struct(code + "II"), struct.Struct(code + "IIII"))
           for bom, code in _BOM.items()}


class Pcapng:
    """The records of a pcapng file, each with its own interface's link type and timestamp resolution, across any
    number of sections of either byte order.

    Opening reads the file up to its first interface (as libpcap does), so a file whose header is unreadable raises
    CaptureError there; damage later ends the iteration with `Damaged`, after every packet before it.
    """

    def __init__(self, path: str | Path, bpf: str | None = None) -> None:
        self.path = str(path)
        self._bpf = bpf
        self._order = _ORDERS[b"\x4d\x3c\x2b\x1a"]  # until the section header says
        self._interfaces: list[_Interface] = []
        self._pos = 0  # offset of the next block
        self._packets = 0  # packet blocks read, filtered out or not
        try:
            with open(path, "rb") as f:  # mapped, not read: a capture can be larger than memory
                self._buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if f.seek(0, 2) else b""
        except OSError as e:
            raise CaptureError(f"{path}: {e.strerror}") from None
        if self._buf[:4] != PCAPNG_MAGIC:
            raise CaptureError(f"{path}: not a pcapng file")
        try:
            while not self._interfaces and self._pos < len(self._buf):
                self._next()  # no packet can come before the first interface: one that does is damage
        except Damaged as e:
            raise CaptureError(f"{path}: {e}") from None

    def __iter__(self) -> Iterator[Record]:
        end, step = len(self._buf), self._next
        while self._pos < end:
            record = step()
            if record is not None:
                yield record

    def _next(self) -> Record | None:
        """Read the block at `_pos` and move past it: its packet record, or None (other blocks, filtered packets)."""
        buf, pos = self._buf, self._pos
        if pos + 12 > len(buf):
            raise self._damage("a block header cut short")
        kind, length = self._order.head.unpack_from(buf, pos)
        if kind == _SHB:  # a new section (the type reads the same in both orders): its byte-order magic says which
            order = _ORDERS.get(buf[pos + 8 : pos + 12])
            if order is None:
                raise self._damage("no byte-order magic in a section header")
            self._order = order
            length = order.u32.unpack_from(buf, pos + 4)[0]
        if length < 12 + _MIN_BODY.get(kind, 0) or length % 4:
            raise self._damage(f"a block of type {kind:#x} and length {length}")
        if pos + length > len(buf):
            raise self._damage(f"a {length:,}-byte block runs past the end of the file")
        if self._order.u32.unpack_from(buf, pos + length - 4)[0] != length:
            raise self._damage("a block whose two length fields differ")
        body, size = pos + 8, length - 12  # the body lies between the two length fields
        if kind == _EPB:
            iface, high, low, caplen = self._order.epb.unpack_from(buf, body)
            record = self._packet(iface, (high << 32) | low, body + 20, caplen, size - 20)
        else:
            record = self._block(kind, body, size)
        self._pos = pos + length
        return record

    def _block(self, kind: int, body: int, size: int) -> Record | None:
        """A block other than an EPB, whose body is `size` bytes at offset `body`."""
        buf, order = self._buf, self._order.code
        if kind == _IDB:
            self._interfaces.append(self._interface(body, size))
        elif kind == _SHB:
            major = struct.unpack_from(order + "H", buf, body + 4)[0]
            if major != 1:
                raise self._damage(f"pcapng version {major}")
            self._interfaces = []  # interface ids are numbered per section
        elif kind == _PB:
            iface, _, high, low, caplen = struct.unpack_from(order + "HHIII", buf, body)
            return self._packet(iface, (high << 32) | low, body + 20, caplen, size - 20)
        elif kind == _SPB:  # interface 0, no timestamp; captured: the original length cut at the snap length
            caplen = struct.unpack_from(order + "I", buf, body)[0]
            if self._interfaces and self._interfaces[0].snaplen:
                caplen = min(caplen, self._interfaces[0].snaplen)
            return self._packet(0, None, body + 4, caplen, size - 4)
        return None

    def _packet(self, iface: int, ticks: int | None, start: int, caplen: int, room: int) -> Record | None:
        """The record of a packet block: `caplen` bytes at `start`, `room` bytes before the block's options."""
        if iface >= len(self._interfaces):
            raise self._damage(f"a packet of interface {iface}, which has no description")
        if caplen > room:
            raise self._damage(f"a {caplen:,}-byte packet in a block with room for {room:,}")
        self._packets += 1
        i = self._interfaces[iface]
        data = self._buf[start : start + caplen]
        if i.bpf is not None and not i.bpf.filter(data):
            return None
        # An SPB's 0 becomes the previous packet's time in Capture, whose clock never goes back.
        return i.dlt, 0.0 if ticks is None else ticks / i.ticks + i.offset, data

    def _interface(self, body: int, size: int) -> _Interface:
        buf, order = self._buf, self._order.code
        linktype, _, snaplen = struct.unpack_from(order + "HHI", buf, body)
        dlt = _LINKTYPE_TO_DLT.get(linktype, linktype)
        ticks, offset, pos, end = 10**6, 0, body + 8, body + size
        while pos + 4 <= end:  # options: code, length, value padded to 4 bytes; code 0 ends them
            code, length = struct.unpack_from(order + "HH", buf, pos)
            if code == 0 or pos + 4 + length > end:
                break
            if code == _IF_TSRESOL and length >= 1:  # high bit set: a negative power of 2, else of 10
                exp = buf[pos + 4]
                ticks = 2 ** (exp & 0x7F) if exp & 0x80 else 10**exp
            elif code == _IF_TSOFFSET and length >= 8:
                offset = struct.unpack_from(order + "q", buf, pos + 4)[0]
            pos += 4 + (length + 3) // 4 * 4
        return _Interface(dlt, snaplen, ticks, offset, self._compile(dlt, snaplen))

    def _compile(self, dlt: int, snaplen: int):
        """The BPF filter for one interface's link type. pcapy's `BPFProgram.filter` takes the captured bytes as the
        packet's length too, so `len`/`greater`/`less` see the captured length in a pcapng file."""
        if not self._bpf:
            return None
        try:  # netmask 0, as libpcap's setfilter on a file gets it from pcapy
            return pcapy.compile(dlt, snaplen or 262144, self._bpf, 1, 0)
        except pcapy.PcapError as e:
            raise ValueError(f"--bpf {self._bpf!r}: {e} (link type {dlt} in {self.path})") from None

    def _damage(self, why: str) -> Damaged:
        left = len(self._buf) - self._pos
        return Damaged(f"damaged after {self._packets} packets at byte {self._pos:,}: {left:,} bytes not read ({why})")


def _set_filter(handle, bpf: str | None) -> None:
    if bpf:
        try:
            handle.setfilter(bpf)
        except pcapy.PcapError as e:
            raise ValueError(f"--bpf {bpf!r}: {e}") from None  # the user's filter, not this capture, is at fault


def open_file(path: str | Path, bpf: str | None = None) -> Capture:
    """A capture file (pcap or pcapng, any extension). Raises CaptureError naming the file and the reason, or
    ValueError for a BPF filter that does not compile."""
    try:
        with open(path, "rb") as f:
            pcapng = f.read(4) == PCAPNG_MAGIC
    except OSError as e:
        raise CaptureError(f"{path}: {e.strerror}") from None
    if pcapng:
        return Capture(iter(Pcapng(path, bpf)), str(path))
    try:
        handle = pcapy.open_offline(str(path))
    except pcapy.PcapError as e:
        raise CaptureError(f"{path}: {e}") from None
    _set_filter(handle, bpf)
    return Capture(_located(_libpcap_records(handle, None), path), str(path))


def open_live(interface: str, duration: float, bpf: str | None = None, snaplen: int = 65535,
              stop: threading.Event | None = None) -> Capture:
    """Capture from `interface` for `duration` seconds (promiscuous; math.inf = until `stop` is set). Raises
    CaptureError naming the interface, or ValueError for a BPF filter that does not compile."""
    try:
        handle = pcapy.open_live(interface, snaplen, 1, 100)
        handle.setnonblock(1)  # a blocking read can wait forever on a quiet interface and miss the deadline
    except pcapy.PcapError as e:
        raise CaptureError(str(e) if interface in str(e) else f"{interface}: {e}") from None
    _set_filter(handle, bpf)
    return Capture(_libpcap_records(handle, time.monotonic() + duration, stop), interface)
