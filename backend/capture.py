"""Capture packets on devices of any namespaces: one packet socket per device, filtered in the kernel.

Each socket is created inside its device's namespace (``setns`` by the calling
thread, which returns at once) and stays bound to that namespace for its whole
life, so one thread reads the container's veth, the sandbox's ``vxlan1`` and
the host's underlay together. A namespace is opened by one of its files (a
``/run/netns`` name, Docker's bind mount, ``/proc/PID/ns/net``) and its inode
checked, so a name reused by another namespace meanwhile is never captured by
mistake. The tcpdump filter is compiled by libpcap and attached before the
socket is bound (``backend.bpf``); the kernel's own counters
(``PACKET_STATISTICS``) say how many frames passed the filter and how many it
dropped because the reader fell behind.
"""

from __future__ import annotations

import errno
import mmap
import os
import select
import socket
import struct
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import NamedTuple

from backend import bpf, nsenter
from backend.errors import VxrayError
from backend.pcapng import LINKTYPE_ETHERNET, LINKTYPE_RAW

ETH_P_ALL = 0x0003
SOL_PACKET, PACKET_RX_RING, PACKET_STATISTICS, PACKET_VERSION, TPACKET_V3 = 263, 5, 6, 10, 2
TP_STATUS_USER, TP_STATUS_VLAN_VALID, TP_STATUS_VLAN_TPID_VALID, PACKET_OUTGOING = 1, 0x10, 0x40, 4
VLAN_AT = 32  # tpacket3_hdr's hv1.tp_vlan_tci, then tp_vlan_tpid
PKTTYPE_AT = 48 + 10  # sockaddr_ll's sll_pkttype, after the 48-byte tpacket3_hdr
ARPHRD_ETHER, ARPHRD_LOOPBACK = 1, 772
SNAPLEN = 262144  # tcpdump's default: whole frames, GRO'd ones included
BLOCK_SIZE, BLOCKS, FRAME_SIZE = 2**20, 32, 2048  # a 32 MiB ring per device: room for a flood while the file is written
BLOCK_WAIT_MS = 20  # a block is handed over after this long even when not full: a trickle still shows at once


@dataclass(frozen=True)
class Point:
    """A device to capture on: ``name`` is how it is called (``dev@namespace@host``), ``paths`` its
    namespace's files (none: the namespace this process runs in), ``inode`` the namespace they must open."""

    dev: str
    name: str
    description: str = ""
    paths: tuple[str, ...] = ()
    inode: int | None = None


class Packet(NamedTuple):  # a tuple: a flood makes hundreds of thousands a second
    interface: int  # the point's position in the session
    ts_ns: int
    data: bytes
    orig_len: int
    outgoing: bool


def inode_of(ns_id: str) -> int | None:
    """The inode in a namespace id ``net:[4026531840]``."""
    digits = ns_id.removeprefix("net:[").removesuffix("]")
    return int(digits) if digits.isdigit() else None


@contextmanager
def inside(point: Point) -> Iterator[None]:
    """This thread inside the point's namespace for the block."""
    if not point.paths:
        yield
        return
    for path in point.paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if point.inode is not None and os.fstat(fd).st_ino != point.inode:
                continue  # the name now belongs to another namespace
            with nsenter.netns(fd):
                yield
            return
        finally:
            os.close(fd)
    raise VxrayError(f"{point.name}: its namespace is gone")


class _Tap:
    """One device's packet socket, bound in its namespace, reading through a TPACKET_V3 ring: the kernel fills
    whole blocks of frames in shared memory and one ``poll`` hands over hundreds, with no call per frame."""

    def __init__(self, point: Point, expression: str, snaplen: int) -> None:
        self.point = point
        with inside(point):
            sock = self._open(socket.SOCK_RAW)
            try:
                hatype = sock.getsockname()[3]
                if hatype not in (ARPHRD_ETHER, ARPHRD_LOOPBACK):  # a tunnel, wireguard, tun: IP without a header
                    sock.close()
                    sock = self._open(socket.SOCK_DGRAM)
            except OSError:
                sock.close()
                raise
        self.sock = sock
        self.linktype = LINKTYPE_ETHERNET if hatype in (ARPHRD_ETHER, ARPHRD_LOOPBACK) else LINKTYPE_RAW
        self.received = self.dropped = 0
        self.block = 0
        self.ring: mmap.mmap | None = None
        try:
            if expression:
                bpf.attach(sock, bpf.compile_filter(expression, self.linktype, snaplen))
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            sock.setsockopt(
                SOL_PACKET,
                PACKET_RX_RING,
                struct.pack(
                    "IIIIIII", BLOCK_SIZE, BLOCKS, FRAME_SIZE, BLOCK_SIZE * BLOCKS // FRAME_SIZE, BLOCK_WAIT_MS, 0, 0
                ),
            )
            self.ring = mmap.mmap(sock.fileno(), BLOCK_SIZE * BLOCKS, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE)  # fmt: skip
            sock.bind((point.dev, ETH_P_ALL))  # from here on frames arrive, filtered
        except BaseException:
            self.close()
            raise

    def _open(self, kind: int) -> socket.socket:
        """Bound with protocol 0: nothing is delivered yet, but the device is checked and its type known."""
        sock = socket.socket(socket.AF_PACKET, kind, 0)
        try:
            sock.bind((self.point.dev, 0))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.ENODEV:
                raise VxrayError(f"no device {self.point.dev!r} in the namespace of {self.point.name}") from None
            raise VxrayError(f"{self.point.name}: cannot capture: {exc.strerror}") from None
        return sock

    def take(self, index: int, snaplen: int, out: list[Packet]) -> None:
        """Every frame of every block the kernel has handed over, each block given back once read."""
        ring = self.ring
        assert ring is not None  # mapped in __init__
        while True:
            base = self.block * BLOCK_SIZE
            _version, _priv, status, count, first = struct.unpack_from("<IIIII", ring, base)
            if not status & TP_STATUS_USER:
                return
            off = base + first
            for _ in range(count):
                step, sec, nsec, caplen, length, flags, mac = struct.unpack_from("<IIIIIIH", ring, off)
                start = off + mac
                data = ring[start : start + min(caplen, snaplen)]
                if flags & TP_STATUS_VLAN_VALID and self.linktype == LINKTYPE_ETHERNET:
                    data, length = self._tagged(data, off, flags), length + 4
                out.append(Packet(index, sec * 1_000_000_000 + nsec, data, length,
                                  ring[off + PKTTYPE_AT] == PACKET_OUTGOING))  # fmt: skip
                off += step
            struct.pack_into("<I", ring, base + 8, 0)  # TP_STATUS_KERNEL: the kernel may fill it again
            self.block = (self.block + 1) % BLOCKS

    def _tagged(self, data: bytes, off: int, flags: int) -> bytes:
        """The 802.1Q tag the kernel took off the frame (and keeps beside it), put back as it was on the wire."""
        tci, tpid = struct.unpack_from("<IH", self.ring, off + VLAN_AT)
        tpid = tpid if flags & TP_STATUS_VLAN_TPID_VALID and tpid else 0x8100
        return data[:12] + struct.pack("!HH", tpid, tci & 0xFFFF) + data[12:]

    def counters(self) -> tuple[int, int]:
        """Frames the kernel passed to this socket, and those it dropped (it resets them on each read)."""
        got, lost, _frozen = struct.unpack("III", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12))
        self.received += got
        self.dropped += lost
        return self.received, self.dropped

    def close(self) -> None:
        if self.ring is not None:
            self.ring.close()
        self.sock.close()


class Session:
    """Packet sockets on every point, open from construction to ``close``; a bad device or filter is one
    ``VxrayError`` and nothing stays open."""

    def __init__(self, points: list[Point], expression: str = "", snaplen: int = SNAPLEN) -> None:
        self.snaplen = snaplen
        self.taps: list[_Tap] = []
        with ExitStack() as undo:
            undo.callback(self.close)
            for point in points:
                self.taps.append(_Tap(point, expression, snaplen))
            undo.pop_all()
        self.by_fd = {tap.sock.fileno(): (i, tap) for i, tap in enumerate(self.taps)}
        self.poll = select.poll()
        for fd in self.by_fd:
            self.poll.register(fd, select.POLLIN)

    def read(self, timeout: float) -> list[Packet]:
        """The frames that arrive within ``timeout`` seconds (all that are waiting, once one is)."""
        out: list[Packet] = []
        for fd, events in self.poll.poll(max(0, int(timeout * 1000))):
            index, tap = self.by_fd[fd]
            if events & select.POLLERR:  # the device went down or away (ENETDOWN): taken, or poll would spin
                tap.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # it resumes if the device comes back up
            tap.take(index, self.snaplen, out)
        return out

    def counters(self) -> list[tuple[int, int]]:
        """Per point: frames the kernel passed the filter, and frames it dropped."""
        return [tap.counters() for tap in self.taps]

    def close(self) -> None:
        for tap in self.taps:
            tap.close()
