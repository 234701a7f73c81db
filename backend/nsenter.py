"""Run a block of code with the calling thread inside another network namespace.

setns(2) on a network namespace moves only the calling thread, and every socket,
``/proc/sys/net`` file and child process created meanwhile belongs to the target
namespace. That makes entering a namespace cost microseconds instead of the fork
that ``ip netns exec`` or pyroute2's ``NetNS`` pay, which is what lets a snapshot
of hundreds of namespaces beat iproute2 (see ``benchmarks/snapshot.py``).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager

from backend.errors import NeedRoot, VxrayError
from backend.netns import RUN_NETNS

CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        if err == 1:
            raise NeedRoot("setns")
        raise OSError(err, os.strerror(err))


@contextmanager
def restore_after() -> Iterator[None]:
    """Bring this thread back to its current namespace after the block, whatever it entered."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield
    finally:
        try:
            _setns(home)
        except OSError as exc:  # a thread stuck in a foreign namespace must not go on
            raise VxrayError(f"cannot return to the original namespace: {exc}") from exc
        finally:
            os.close(home)


@contextmanager
def netns(fd: int) -> Iterator[None]:
    """Enter the namespace open at ``fd`` for the duration of the block (this thread only)."""
    with restore_after():
        _setns(fd)
        yield


@contextmanager
def named(name: str) -> Iterator[None]:
    """Enter /run/netns/NAME for the duration of the block (this thread only)."""
    try:
        fd = os.open(os.path.join(RUN_NETNS, name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise VxrayError(f"no such network namespace: {name}") from None
    try:
        with netns(fd):
            yield
    finally:
        os.close(fd)
