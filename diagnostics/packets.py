"""One line per captured frame, as an operator reads a tcpdump: pure functions over bytes, no I/O.

What matters on an overlay is what is inside the tunnel, so a VXLAN datagram
(UDP 4789, or flannel's 8472, with the I flag) is shown as its outer VTEPs and
VNI, then the inner frame decoded the same way: its MACs, and its ARP, IPv4 or
IPv6 packet with ICMP, ICMPv6, TCP or UDP. A frame too short for a header it
announces says so instead of guessing.
"""

from __future__ import annotations

import ipaddress
import struct

VXLAN_PORTS = (4789, 8472)
LINKTYPE_ETHERNET, LINKTYPE_RAW = 1, 101
ICMP_TYPES = {0: "echo reply", 3: "unreachable", 5: "redirect", 8: "echo request", 11: "time exceeded"}
UNREACHABLE = {0: "net", 1: "host", 2: "protocol", 3: "port", 4: "need to frag", 13: "admin prohibited"}
ICMP6_TYPES = {1: "unreachable", 2: "packet too big", 3: "time exceeded", 128: "echo request", 129: "echo reply",
               133: "router solicitation", 134: "router advertisement", 135: "neighbor solicitation",
               136: "neighbor advertisement"}  # fmt: skip
TCP_FLAGS = "FSRPAUEC"


def mac(data: bytes) -> str:
    return ":".join(f"{b:02x}" for b in data)


def summary(frame: bytes, linktype: int = LINKTYPE_ETHERNET, orig_len: int | None = None) -> str:
    """The frame as one line: ``MAC > MAC, IP > IP ICMP echo request id 7 seq 1, length 98``."""
    length = len(frame) if orig_len is None else orig_len
    if linktype == LINKTYPE_RAW:
        return f"{_ip_any(frame)}, length {length}"
    return f"{_ethernet(frame)}, length {length}"


def _ethernet(frame: bytes) -> str:
    if len(frame) < 14:
        return f"truncated frame ({len(frame)} bytes)"
    head = f"{mac(frame[6:12])} > {mac(frame[0:6])}"
    off, vlans = 12, []
    ethertype = struct.unpack_from("!H", frame, off)[0]
    while ethertype in (0x8100, 0x88A8) and len(frame) >= off + 6:
        vlans.append(str(struct.unpack_from("!H", frame, off + 2)[0] & 0x0FFF))
        off += 4
        ethertype = struct.unpack_from("!H", frame, off)[0]
    if vlans:
        head += f" vlan {'.'.join(vlans)}"
    payload = frame[off + 2 :]
    if ethertype == 0x0806:
        return f"{head}, {_arp(payload)}"
    if ethertype in (0x0800, 0x86DD):
        return f"{head}, {_ip_any(payload)}"
    return f"{head}, ethertype 0x{ethertype:04x}"


def _arp(p: bytes) -> str:
    if len(p) < 28:
        return "ARP, truncated"
    op = struct.unpack_from("!H", p, 6)[0]
    sha, spa, tha, tpa = p[8:14], p[14:18], p[18:24], p[24:28]
    sender, target = ipaddress.IPv4Address(spa), ipaddress.IPv4Address(tpa)
    if op == 1:
        return f"ARP who-has {target} tell {sender}"
    if op == 2:
        return f"ARP reply {sender} is-at {mac(sha)}"
    return f"ARP op {op} {sender} ({mac(sha)}) > {target} ({mac(tha)})"


def _ip_any(p: bytes) -> str:
    if not p:
        return "empty IP packet"
    version = p[0] >> 4
    if version == 4:
        return _ipv4(p)
    if version == 6:
        return _ipv6(p)
    return f"IP version {version}?"


def _ipv4(p: bytes) -> str:
    if len(p) < 20:
        return "IPv4, truncated"
    ihl = (p[0] & 0x0F) * 4
    proto, src, dst = p[9], ipaddress.IPv4Address(p[12:16]), ipaddress.IPv4Address(p[16:20])
    frag = struct.unpack_from("!H", p, 6)[0]
    offset, more = (frag & 0x1FFF) * 8, bool(frag & 0x2000)
    tail = f" (frag offset {offset}{', more' if more else ''})" if offset or more else ""
    if offset:  # no transport header in a later fragment
        return f"{src} > {dst} IPv4 proto {proto}{tail}"
    return f"{_transport(proto, str(src), str(dst), p[ihl:])}{tail}"


def _ipv6(p: bytes) -> str:
    if len(p) < 40:
        return "IPv6, truncated"
    src, dst = ipaddress.IPv6Address(p[8:24]), ipaddress.IPv6Address(p[24:40])
    return _transport(p[6], str(src), str(dst), p[40:])


def _transport(proto: int, src: str, dst: str, t: bytes) -> str:
    if proto == 1:
        return f"{src} > {dst} {_icmp(t, ICMP_TYPES, 'ICMP')}"
    if proto == 58:
        return f"{src} > {dst} {_icmp(t, ICMP6_TYPES, 'ICMPv6')}"
    if proto == 6:
        if len(t) < 20:
            return f"{src} > {dst} TCP, truncated"
        sport, dport, seq, ack, off_flags = struct.unpack_from("!HHIIH", t)
        flags = "".join(c for i, c in enumerate(TCP_FLAGS) if off_flags & (1 << i)) or "none"
        return f"{src}.{sport} > {dst}.{dport} TCP [{flags}] seq {seq}" + (f" ack {ack}" if off_flags & 0x10 else "")
    if proto == 17:
        if len(t) < 8:
            return f"{src} > {dst} UDP, truncated"
        sport, dport = struct.unpack_from("!HH", t)
        if dport in VXLAN_PORTS and len(t) >= 16 and t[8] & 0x08:
            vni = int.from_bytes(t[12:15], "big")
            return f"{src}.{sport} > {dst}.{dport} VXLAN vni {vni}: {_ethernet(t[16:])}"
        return f"{src}.{sport} > {dst}.{dport} UDP, {max(0, len(t) - 8)} bytes"
    return f"{src} > {dst} IP proto {proto}"


def _icmp(t: bytes, names: dict[int, str], what: str) -> str:
    if len(t) < 4:
        return f"{what}, truncated"
    kind, code = t[0], t[1]
    text = f"{what} {names.get(kind, f'type {kind}')}"
    if what == "ICMP" and kind == 3:
        text += f" ({UNREACHABLE.get(code, f'code {code}')})"
    if kind in ((0, 8) if what == "ICMP" else (128, 129)) and len(t) >= 8:
        ident, seq = struct.unpack_from("!HH", t, 4)
        text += f" id {ident} seq {seq}"
    if what == "ICMPv6" and kind in (135, 136) and len(t) >= 24:
        text += f" {ipaddress.IPv6Address(t[8:24])}"
    return text
