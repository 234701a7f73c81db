"""The few pcapng blocks a capture needs, written whole, one ``write`` each.

pcapng (draft-ietf-opsawg-pcapng) rather than pcap because one file holds
several interfaces, each with its own name and link type: a packet's journey
over a container's veth, a sandbox's ``vxlan1`` and the host's underlay reads
as one story in Wireshark. Written here rather than through a library because
four block types are all it takes — Section Header, Interface Description
(``if_name``, ``if_description``, nanosecond ``if_tsresol``), Enhanced Packet
(with ``epb_flags``: inbound or outbound) and Interface Statistics (what the
kernel received and dropped) — and each is written in one call, so a capture
ended by Ctrl-C leaves a file every reader opens.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import BinaryIO

from backend.errors import VxrayError

SHB, IDB, EPB, ISB = 0x0A0D0D0A, 0x00000001, 0x00000006, 0x00000005
BYTE_ORDER_MAGIC = 0x1A2B3C4D
LINKTYPE_ETHERNET, LINKTYPE_RAW = 1, 101
INBOUND, OUTBOUND = 1, 2  # epb_flags' direction bits
PADDING = (b"", b"\0", b"\0\0", b"\0\0\0")  # zeros after data of -len % 4: blocks end on 32-bit boundaries


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _options(options: list[tuple[int, bytes]]) -> bytes:
    if not options:
        return b""
    body = b"".join(struct.pack("<HH", code, len(value)) + _pad(value) for code, value in options)
    return body + struct.pack("<HH", 0, 0)  # opt_endofopt


def _block(kind: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


class Writer:
    """A pcapng file: interfaces first (``interface``), then packets and statistics of any of them."""

    def __init__(self, out: BinaryIO, application: str = "vxray") -> None:
        self.out = out
        self.interfaces = 0
        shb = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1)  # section length unknown: written as it goes
        self.out.write(_block(SHB, shb + _options([(4, application.encode())])))  # shb_userappl

    def interface(self, name: str, description: str, linktype: int = LINKTYPE_ETHERNET, snaplen: int = 262144) -> int:
        """An interface's number in this file: its ``if_name`` is what Wireshark shows as the interface."""
        opts = [(2, name.encode()), (3, description.encode()), (9, bytes([9]))]  # if_name, if_description, 1e-9 s
        self.out.write(_block(IDB, struct.pack("<HHI", linktype, 0, snaplen) + _options(opts)))
        self.interfaces += 1
        return self.interfaces - 1

    def packet(self, interface: int, ts_ns: int, data: bytes, orig_len: int | None = None, flags: int = 0) -> None:
        """One Enhanced Packet Block, packed in one go: a flood writes hundreds of thousands a second."""
        size, pad = len(data), -len(data) % 4
        total = 32 + size + pad + (12 if flags else 0)
        head = struct.pack("<7I", EPB, total, interface, ts_ns >> 32, ts_ns & 0xFFFFFFFF, size,
                           size if orig_len is None else orig_len)  # fmt: skip
        tail = struct.pack("<HHIHHI", 2, 4, flags, 0, 0, total) if flags else struct.pack("<I", total)  # epb_flags
        self.out.write(b"".join((head, data, PADDING[pad], tail)))

    def statistics(self, interface: int, ts_ns: int, received: int, dropped: int) -> None:
        """What the kernel counted on an interface (isb_ifrecv, isb_ifdrop): a reader sees whether it lost any."""
        opts = _options([(4, struct.pack("<Q", received)), (5, struct.pack("<Q", dropped))])
        self.out.write(_block(ISB, struct.pack("<III", interface, ts_ns >> 32, ts_ns & 0xFFFFFFFF) + opts))

    def flush(self) -> None:
        self.out.flush()


def save(path: str, interfaces: list[tuple[str, str]], frames: Iterable[tuple[int, int, bytes]]) -> None:
    """A capture taken whole before it is written (a live trace's probe): (name, description) per interface,
    then (interface, ts_ns, frame) in time order."""
    try:
        out = open(path, "wb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise VxrayError(f"cannot write {path}: {exc.strerror}") from None
    with out:
        writer = Writer(out)
        for name, description in interfaces:
            writer.interface(name, description)
        for interface, ts_ns, data in sorted(frames, key=lambda f: f[1]):
            writer.packet(interface, ts_ns, data)
