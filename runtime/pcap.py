"""Capture reading: pcap / pcapng / .cap files or a live interface through libpcap (pcapy-ng), decoded by hand.

Each record becomes a light `Packet` (TCP and UDP over IPv4/IPv6). Everything else is counted in `skipped` under a
short reason and dropped. The decoding follows NFStream's engine where it matters for flow assembly (its flows label
the real corpus): the transport payload length comes from the IP header, not from the captured bytes, so captures cut
by a snap length keep their true sizes; IPv4 fragments after the first are dropped; IP-in-IP and GTP-U are decoded and
the inner packet is used; the VLAN id and tunnel kind are part of the flow key.
"""

from __future__ import annotations

import socket
import struct
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

ETH_IPV4, ETH_IPV6, ETH_MPLS, ETH_MPLS_MULTI, ETH_PPPOE = 0x0800, 0x86DD, 0x8847, 0x8848, 0x8864
VLAN_TAGS = (0x8100, 0x88A8, 0x9100)  # 802.1Q, 802.1ad (QinQ outer), legacy QinQ
PPP_IPV4, PPP_IPV6 = 0x0021, 0x0057
IPV6_EXTENSIONS = (0, 43, 60, 135, 139, 140)  # hop-by-hop, routing, destination options, mobility, HIP, shim6
IPV6_FRAGMENT, IPV6_AH = 44, 51
IPIP, IPV6_IN_IP = 4, 41
GTP_U_PORT = 2152

_H = struct.Struct("!H")
_HH = struct.Struct("!HH")
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


class CaptureError(Exception):
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
            sport, dport = _HH.unpack_from(data, l4)
            doff = (data[l4 + 12] >> 4) * 4
            return Packet(ts, src, sport, dst, dport, TCP, max(0, l4len - doff), data[l4 + 13], vlan, tunnel)
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


class Capture:
    """Iterate the decoded packets of one capture, counting skipped records by reason in `skipped`.

    Timestamps are forced non-decreasing (as NFStream does), so inter-arrival times are never negative.
    A read error mid-file (truncated last record, corrupt block) ends the iteration and is kept in `error`.
    """

    def __init__(self, handle, name: str, deadline: float | None = None) -> None:
        self.name = name
        self.records = 0
        self.skipped: Counter[str] = Counter()
        self.error = ""
        self._handle = handle
        self._dlt = handle.datalink()
        self._deadline = deadline  # time.monotonic() value that ends a live capture

    def __iter__(self) -> Iterator[Packet]:
        # next() rather than next_batch(): a batch that hits a read error loses all its packets, a truncated last
        # record must cost only that record.
        dlt, clock, read = self._dlt, 0.0, self._handle.next
        while self._deadline is None or time.monotonic() < self._deadline:
            try:
                header, data = read()
            except pcapy.PcapError as e:
                self.error = str(e)
                return
            if header is None:
                if self._deadline is None:
                    return  # end of file
                time.sleep(_POLL)  # live, non-blocking: nothing to read yet
                continue
            self.records += 1
            sec, usec = header.getts()
            ts = sec + usec * 1e-6
            if ts < clock:
                ts = clock
            clock = ts
            pkt = decode(dlt, ts, data)
            if isinstance(pkt, str):
                self.skipped[pkt] += 1
            else:
                yield pkt


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
        handle = pcapy.open_offline(str(path))
    except pcapy.PcapError as e:
        raise CaptureError(f"{path}: {e}") from None
    _set_filter(handle, bpf)
    return Capture(handle, str(path))


def open_live(interface: str, duration: float, bpf: str | None = None, snaplen: int = 65535) -> Capture:
    """Capture from `interface` for `duration` seconds (promiscuous). Raises CaptureError naming the interface, or
    ValueError for a BPF filter that does not compile."""
    try:
        handle = pcapy.open_live(interface, snaplen, 1, 100)
        handle.setnonblock(1)  # a blocking read can wait forever on a quiet interface and miss the deadline
    except pcapy.PcapError as e:
        raise CaptureError(str(e) if interface in str(e) else f"{interface}: {e}") from None
    _set_filter(handle, bpf)
    return Capture(handle, interface, deadline=time.monotonic() + duration)
