"""A tcpdump filter expression, compiled by libpcap and attached to a packet socket.

vxray filters in the kernel, as tcpdump does: the expression is compiled by
libpcap (``libpcap.so.0.8``, which Debian's ``tcpdump`` brings) on a "dead"
handle of the device's link type, and the classic BPF program is attached to the
``AF_PACKET`` socket with ``SO_ATTACH_FILTER`` before the socket is bound, so no
frame the filter refuses ever reaches Python — the only way to keep up with a
flood. The expression is the user's, passed to libpcap as bytes, never to a shell.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
from functools import cache

from backend.errors import VxrayError

SO_ATTACH_FILTER = 26
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF
FILTER_MAX = 4096  # characters of an expression: tcpdump's longest useful ones are far shorter


class _Insn(ctypes.Structure):
    _fields_ = (("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32))


class _Program(ctypes.Structure):
    """libpcap's ``struct bpf_program``, and the kernel's ``struct sock_fprog``: the same layout."""

    _fields_ = (("len", ctypes.c_uint), ("insns", ctypes.POINTER(_Insn)))


class _Fprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Insn)))


@cache
def _libpcap() -> ctypes.CDLL:
    name = ctypes.util.find_library("pcap") or "libpcap.so.0.8"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        raise VxrayError("a capture filter needs libpcap (apt-get install libpcap0.8, which tcpdump brings)") from None
    lib.pcap_open_dead.restype = ctypes.c_void_p
    lib.pcap_open_dead.argtypes = (ctypes.c_int, ctypes.c_int)
    lib.pcap_compile.argtypes = (ctypes.c_void_p, ctypes.POINTER(_Program), ctypes.c_char_p, ctypes.c_int,
                                 ctypes.c_uint32)  # fmt: skip
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = (ctypes.c_void_p,)
    lib.pcap_freecode.argtypes = (ctypes.POINTER(_Program),)
    lib.pcap_close.argtypes = (ctypes.c_void_p,)
    return lib


@cache
def compile_filter(expression: str, linktype: int, snaplen: int = 262144) -> tuple[tuple[int, int, int, int], ...]:
    """The classic BPF instructions (code, jt, jf, k) of ``expression`` for ``linktype``; a ``VxrayError``
    naming the expression and libpcap's reason when it does not compile."""
    if len(expression) > FILTER_MAX or not expression.isprintable():
        raise VxrayError(f"bad filter {expression[:60]!r}: at most {FILTER_MAX} printable characters")
    lib = _libpcap()
    handle = lib.pcap_open_dead(linktype, snaplen)
    if not handle:
        raise VxrayError(f"libpcap cannot open a handle of link type {linktype}")
    prog = _Program()
    try:
        if lib.pcap_compile(handle, ctypes.byref(prog), expression.encode(), 1, PCAP_NETMASK_UNKNOWN) != 0:
            why = (lib.pcap_geterr(handle) or b"does not compile").decode(errors="replace")
            raise VxrayError(f"bad filter {expression!r}: {why}")
        insns = tuple((prog.insns[i].code, prog.insns[i].jt, prog.insns[i].jf, prog.insns[i].k)
                      for i in range(prog.len))  # fmt: skip
        lib.pcap_freecode(ctypes.byref(prog))
    finally:
        lib.pcap_close(handle)
    return insns


def attach(sock: socket.socket, insns: tuple[tuple[int, int, int, int], ...]) -> None:
    """Attach a compiled program to ``sock`` (before it is bound: no frame gets in unfiltered)."""
    array = (_Insn * len(insns))(*(_Insn(*i) for i in insns))
    fprog = _Fprog(len(insns), ctypes.cast(array, ctypes.POINTER(_Insn)))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))  # the kernel copies the program here
