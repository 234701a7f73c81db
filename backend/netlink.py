"""A minimal netlink client: dump requests and attribute walking, nothing more.

pyroute2 decodes every attribute of every message into Python objects; on a host
with 10,000 FDB and neighbour entries that takes over a second, thirty times what
``ip -j neigh`` needs. The snapshot reads only the attributes the model holds, so
it walks raw buffers with ``struct`` here. Most writes stay with pyroute2; the few
that building a container repeats go through ``backend.rtnl_edit`` on this socket.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator

NETLINK_ROUTE = 0
NETLINK_NETFILTER = 12

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
NLMSG_ERROR = 2
NLMSG_DONE = 3

NLMSG = struct.Struct("=IHHII")
NLA = struct.Struct("=HH")
U32 = struct.Struct("=I")
I32 = struct.Struct("=i")
U16 = struct.Struct("=H")
BE16 = struct.Struct("!H")

Attrs = dict[int, tuple[int, int]]


class NetlinkError(OSError):
    pass


def attrs(data: bytes, off: int, end: int) -> Attrs:
    """Map attribute type -> (start, end) of its payload, for attributes in data[off:end]."""
    out: Attrs = {}
    unpack = NLA.unpack_from
    while off + 4 <= end:
        length, kind = unpack(data, off)
        if length < 4:
            break
        out[kind & 0x3FFF] = (off + 4, off + length)
        off += (length + 3) & ~3
    return out


def u32(data: bytes, span: tuple[int, int]) -> int:
    return U32.unpack_from(data, span[0])[0]


def u8(data: bytes, span: tuple[int, int]) -> int:
    return data[span[0]]


def cstr(data: bytes, span: tuple[int, int]) -> str:
    return data[span[0] : span[1]].split(b"\0", 1)[0].decode(errors="replace")


def mac(data: bytes, span: tuple[int, int]) -> str:
    return data[span[0] : span[1]].hex(":")


def ip(data: bytes, span: tuple[int, int]) -> str:
    raw = data[span[0] : span[1]]
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


class NetlinkSocket:
    """One netlink socket, created in the calling thread's current namespace."""

    def __init__(self, protocol: int = NETLINK_ROUTE) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, 0))
        self.seq = 0
        self.buf = bytearray(1 << 16)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> NetlinkSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, msgtype: int, flags: int, payload: bytes) -> int:
        self.seq += 1
        self.sock.send(NLMSG.pack(NLMSG.size + len(payload), msgtype, flags, self.seq, 0) + payload)
        return self.seq

    def _replies(self, seq: int) -> Iterator[tuple[int, bytes, int, int]]:
        """Yield (type, buffer, payload start, message end) until DONE or an error."""
        view = memoryview(self.buf)
        while True:
            n = self.sock.recv_into(self.buf)
            data = bytes(view[:n])
            off = 0
            while off + NLMSG.size <= n:
                length, kind, _flags, mseq, _pid = NLMSG.unpack_from(data, off)
                if length < NLMSG.size:
                    return
                if mseq == seq:
                    if kind == NLMSG_DONE:
                        return
                    if kind == NLMSG_ERROR:
                        code = -I32.unpack_from(data, off + NLMSG.size)[0]
                        if code:
                            raise NetlinkError(code, os.strerror(code))
                        return
                    yield kind, data, off + NLMSG.size, off + length
                off += (length + 3) & ~3

    def dump(self, msgtype: int, header: bytes) -> Iterator[tuple[int, bytes, int, int]]:
        """Send a dump request and yield every reply message."""
        yield from self._replies(self._send(msgtype, NLM_F_REQUEST | NLM_F_DUMP, header))

    def request(self, msgtype: int, payload: bytes, flags: int = 0) -> list[tuple[int, bytes, int, int]]:
        """Send one request and collect its replies (``flags``: NLM_F_CREATE, NLM_F_EXCL …)."""
        seq = self._send(msgtype, NLM_F_REQUEST | NLM_F_ACK | flags, payload)
        return list(self._replies(seq))


def nla(kind: int, payload: bytes) -> bytes:
    """Encode one attribute, padded to 4 bytes."""
    raw = NLA.pack(4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)
