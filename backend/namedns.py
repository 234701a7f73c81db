"""Create and remove named network namespaces (``/run/netns/NAME``) without forking.

``ip netns add`` unshares and bind-mounts in its own process; pyroute2 forks a
helper to do the same. A thread can do it itself: unshare(CLONE_NEWNET) moves
only the calling thread, the bind mount of ``/proc/thread-self/ns/net`` keeps the
namespace alive, and setns brings the thread back. That is what lets a lab of a
hundred containers build in a fraction of the time of a script of ``ip`` commands
(see ``benchmarks/lab_up.py``). The layout is iproute2's, so ``ip netns`` sees
these namespaces and can remove them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os

from backend.errors import NeedRoot, VxrayError
from backend.netns import RUN_NETNS
from backend.nsenter import CLONE_NEWNET, restore_after

MS_BIND, MS_REC, MS_SHARED = 0x1000, 0x4000, 1 << 20
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
_libc.unshare.argtypes = (ctypes.c_int,)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        if err == errno.EPERM:
            raise NeedRoot(what)
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _shared_run_dir() -> None:
    """Make /run/netns a shared mount, as iproute2 does, so the bind mounts propagate."""
    os.makedirs(RUN_NETNS, mode=0o755, exist_ok=True)
    run = RUN_NETNS.encode()
    if _libc.mount(b"", run, b"none", MS_SHARED | MS_REC, None) == 0:
        return
    if ctypes.get_errno() != errno.EINVAL:
        _check(-1, f"mount --make-rshared {RUN_NETNS}")
    _check(_libc.mount(run, run, b"none", MS_BIND | MS_REC, None), f"mount --bind {RUN_NETNS}")
    _check(_libc.mount(b"", run, b"none", MS_SHARED | MS_REC, None), f"mount --make-rshared {RUN_NETNS}")


def create(name: str) -> str:
    """A new, empty network namespace at /run/netns/NAME; its path."""
    _shared_run_dir()
    path = os.path.join(RUN_NETNS, name)
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    except FileExistsError:
        raise VxrayError(f"network namespace {name} already exists") from None
    try:
        with restore_after():
            _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
            _check(_libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", MS_BIND, None),
                   f"mount --bind {path}")  # fmt: skip
    except BaseException:
        os.unlink(path)
        raise
    return path


def remove(name: str) -> None:
    """Unmount and delete /run/netns/NAME; the namespace goes when nothing else holds it."""
    path = os.path.join(RUN_NETNS, name)
    if _libc.umount2(path.encode(), MNT_DETACH) != 0 and ctypes.get_errno() not in (errno.EINVAL, errno.ENOENT):
        _check(-1, f"umount {path}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
