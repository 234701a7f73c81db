"""Send one real probe and watch for it at every device a trace says it crosses.

``vxray trace --live`` checks the simulation against the datapath: packet sockets
(``AF_PACKET``, opened inside each namespace and bound to one device) watch the
devices the simulated steps name, then a probe leaves the source namespace — an
ICMP echo with an identifier of its own, or a UDP datagram / TCP SYN from a
port of its own — and every frame carrying it is recognised, also inside VXLAN
(UDP 4789 or 8472, over IPv4 or IPv6), as the request or its reply. IPv6 probes are
ICMPv6 echoes (or UDP/TCP over IPv6), as ``ping -6`` sends them. Many probes can run at once:
each only recognises its own identifier.
"""

from __future__ import annotations

import os
import random
import select
import socket
import struct
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager, ExitStack, nullcontext, suppress
from dataclasses import dataclass

from backend import nsenter
from backend.errors import VxrayError

ETH_P_ALL, ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q = 0x0003, 0x0800, 0x86DD, 0x8100
VXLAN_PORTS = (4789, 8472)
IP_MTU_DISCOVER, IP_PMTUDISC_DO = 10, 2
IPV6_MTU_DISCOVER, IPV6_DONTFRAG = 23, 62
IPPROTO_FRAGMENT = 44
SO_TIMESTAMPNS = 35


@dataclass(frozen=True)
class Probe:
    src_netns: str
    dst: str
    proto: str = "icmp"
    dport: int | None = None
    size: int | None = None  # ICMP payload, as ping -s
    df: bool = False  # don't fragment, as ping -M do


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


def _innermost(frame: bytes) -> tuple[int, str, str, bytes] | None:
    """(protocol, src, dst, transport bytes) of the innermost IP packet, through VLAN tags and VXLAN."""
    off = 12
    while True:
        if len(frame) < off + 2:
            return None
        ethertype = struct.unpack_from("!H", frame, off)[0]
        if ethertype != ETH_P_8021Q:
            break
        off += 4
    ip = off + 2
    if ethertype == ETH_P_IPV6 and len(frame) >= ip + 40:
        found = _ipv6(frame, ip)
        if found is None:
            return None
        proto, src, dst, payload = found
    elif ethertype == ETH_P_IP and len(frame) >= ip + 20:
        ihl = (frame[ip] & 0x0F) * 4
        proto = frame[ip + 9]
        src, dst = socket.inet_ntoa(frame[ip + 12 : ip + 16]), socket.inet_ntoa(frame[ip + 16 : ip + 20])
        payload = frame[ip + ihl :]
    else:
        return None
    if proto == socket.IPPROTO_UDP and len(payload) >= 8 + 8 + 14:
        dport = struct.unpack_from("!H", payload, 2)[0]
        if dport in VXLAN_PORTS and payload[8] & 0x08:
            return _innermost(payload[16:])
    return proto, src, dst, payload


def _ipv6(frame: bytes, ip: int) -> tuple[int, str, str, bytes] | None:
    """An IPv6 packet's (next header, src, dst, transport bytes), past a fragment header when it is the first
    fragment (a later one carries no transport header: it cannot be told as the probe's)."""
    proto = frame[ip + 6]
    src = socket.inet_ntop(socket.AF_INET6, frame[ip + 8 : ip + 24])
    dst = socket.inet_ntop(socket.AF_INET6, frame[ip + 24 : ip + 40])
    payload = frame[ip + 40 :]
    if proto == IPPROTO_FRAGMENT:
        if len(payload) < 8 or struct.unpack_from("!H", payload, 2)[0] & 0xFFF8:
            return None
        proto, payload = payload[0], payload[8:]
    return proto, src, dst, payload


class _Watch:
    """Packet sockets on (namespace, device) pairs, opened before the probe leaves."""

    def __init__(self, points: Iterable[tuple[str, str]], stack: ExitStack) -> None:
        self.socks: dict[socket.socket, tuple[str, str]] = {}
        for netns, dev in sorted(set(points)):
            try:
                with _inside(netns):
                    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            except VxrayError:
                continue
            stack.callback(sock.close)
            try:
                sock.bind((dev, 0))
            except OSError:
                continue  # the device is gone: nothing can be seen there
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)  # when the kernel saw it: -w orders by it
            self.socks[sock] = (netns, dev)

    def frames(self, until: float) -> Iterable[tuple[str, str, int, bytes]]:
        """(namespace, device, the kernel's time of the frame in ns, frame) as they come, until ``until``."""
        while (left := until - time.monotonic()) > 0:
            ready, _, _ = select.select(list(self.socks), [], [], left)
            for sock in ready:
                try:
                    data, anc, _flags, _addr = sock.recvmsg(65535, socket.CMSG_SPACE(16))
                except BlockingIOError:
                    continue
                sec, nsec = struct.unpack("qq", anc[0][2]) if anc and len(anc[0][2]) == 16 else (0, time.time_ns())
                yield (*self.socks[sock], sec * 1_000_000_000 + nsec, data)


def _inside(netns: str) -> AbstractContextManager[object]:
    """``host`` is the namespace the process runs in (an agent's machine); others are named."""
    return nullcontext() if netns == "host" else nsenter.named(netns)


def _send(p: Probe, ident: int, stack: ExitStack) -> None:
    ip6 = ":" in p.dst
    family = socket.AF_INET6 if ip6 else socket.AF_INET
    with _inside(p.src_netns):
        if p.proto == "icmp":
            sock = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_ICMPV6 if ip6 else socket.IPPROTO_ICMP)
        else:
            kind = socket.SOCK_DGRAM if p.proto == "udp" else socket.SOCK_STREAM
            sock = socket.socket(family, kind)
            sock.bind(("::" if ip6 else "0.0.0.0", ident))
    stack.callback(sock.close)
    if p.proto == "icmp":
        payload = b"vxray-probe" + os.urandom(5) + b"\0" * max(0, (56 if p.size is None else p.size) - 16)
        if p.df and ip6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IP_PMTUDISC_DO)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_DONTFRAG, 1)
        elif p.df:
            sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        # A second echo gets past a neighbour entry an earlier attempt left FAILED — but not a large IPv6 one: the
        # first one's "packet too big" teaches the sender the path's MTU, and the second would pass in fragments.
        for seq in (1,) if ip6 and p.size is not None else (1, 2):
            kind = 128 if ip6 else 8  # ICMPv6's checksum is the kernel's (it covers the addresses)
            header = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
            packet = struct.pack("!BBHHH", kind, 0, 0 if ip6 else _checksum(header + payload), ident, seq) + payload
            try:
                sock.sendto(packet, (p.dst, 0))
            except OSError:
                return  # "message too long", "network unreachable": nothing leaves, as the trace says
            time.sleep(0.3)
    elif p.proto == "udp":
        try:
            sock.sendto(b"vxray-probe", (p.dst, p.dport or 0))
        except OSError:
            return
    else:
        sock.setblocking(False)
        with suppress(BlockingIOError, OSError):
            sock.connect((p.dst, p.dport or 0))


def _direction(p: Probe, ident: int, proto: int, payload: bytes) -> str | None:
    if p.proto == "icmp" and proto in (socket.IPPROTO_ICMP, socket.IPPROTO_ICMPV6) and len(payload) >= 8:
        kind, _code, _sum, got = struct.unpack_from("!BBHH", payload)
        if got == ident:
            return {8: "request", 0: "reply", 128: "request", 129: "reply"}.get(kind)
        return None
    wanted = socket.IPPROTO_UDP if p.proto == "udp" else socket.IPPROTO_TCP
    if proto != wanted or len(payload) < 4:
        return None
    sport, dport = struct.unpack_from("!HH", payload)
    if (sport, dport) == (ident, p.dport):
        return "request"
    if (sport, dport) == (p.dport, ident):
        return "reply"
    return None


class Capture:
    """Packet sockets opened now, read later: a machine watches while another one sends (``--host``)."""

    def __init__(self, p: Probe, ident: int, points: Iterable[tuple[str, str]]) -> None:
        self.p, self.ident = p, ident
        self.stack = ExitStack()
        self.watch = _Watch(points, self.stack)
        self.frames: list[tuple[str, str, int, bytes]] = []  # the probe's own: (namespace, device, ns, frame)

    def collect(self, wait: float) -> set[tuple[str, str, str]]:
        """Where the probe was seen within ``wait`` seconds: (namespace, device, request|reply)."""
        seen: set[tuple[str, str, str]] = set()
        with self.stack:
            for netns, dev, ts, frame in self.watch.frames(time.monotonic() + wait):
                inner = _innermost(frame)
                direction = _direction(self.p, self.ident, inner[0], inner[3]) if inner else None
                if direction:
                    seen.add((netns, dev, direction))
                    self.frames.append((netns, dev, ts, frame))
        return seen


def send(p: Probe, ident: int) -> None:
    with ExitStack() as stack:
        _send(p, ident, stack)


def new_ident() -> int:
    return random.randint(20000, 60000)


def run(p: Probe, points: Iterable[tuple[str, str]], wait: float = 1.5,
        frames: list[tuple[str, str, int, bytes]] | None = None) -> set[tuple[str, str, str]]:  # fmt: skip
    """Send ``p`` and return where it was seen: (namespace, device, request|reply); ``frames`` gets the probe's
    frames as they were seen (``trace --live -w``)."""
    ident = new_ident()
    capture = Capture(p, ident, points)
    with ExitStack() as stack:
        _send(p, ident, stack)
        seen = capture.collect(wait)
    if frames is not None:
        frames.extend(capture.frames)
    return seen
