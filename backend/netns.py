"""Find every network namespace of a host, including those ``ip netns list`` misses.

Sources, in the order their labels win:
- the host's own namespace (ours, or ``--host-netns``);
- nsfs bind mounts in /proc/self/mountinfo — /run/netns, but also Docker's
  ``<exec-root>/netns/<sandbox>`` files and its overlay sandboxes ``1-<netid>``;
- namespaces held only by a process (/proc/<pid>/ns/net).
Namespaces are told apart by (device, inode), the identity the kernel gives them.
Each one found is opened at once: holding the fd keeps it alive and stable for
the rest of the scan, and one that vanished before that is skipped with a note.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field

from backend.errors import NeedRoot, VxrayError

RUN_NETNS = "/run/netns"
# Docker's 1-<netid> (swarm ids are base 36: 1-sf555zazvg), or a lab host's <host>-1-<netid>
OVERLAY_SANDBOX = re.compile(r"(^|-)\d+-[0-9a-z]{10}$")
LB_SANDBOX = re.compile(r"^lb_[0-9a-z]{9,}$")  # an overlay's load-balancer sandbox (service VIPs, IPVS)
CONTAINER_SANDBOX = re.compile(r"^[0-9a-f]{12}$")  # <exec-root>/netns/<first 12 of the sandbox id>
LABEL_RANK = {"host": 0, "overlay-sandbox": 1, "docker": 2, "docker-ingress": 3, "docker-lb": 4, "named": 5,
              "bind-mount": 6, "process": 7}  # fmt: skip


@dataclass(frozen=True)
class Scope:
    """Which namespaces belong to the host being snapshotted.

    ``host_netns``: a named netns (or path) to treat as the host's own namespace.
    ``netns``: names, glob patterns or paths; ``netns_dirs``: directories of nsfs
    files. When either is given only those (and the host) belong to the host;
    when only ``host_netns`` is given, the host is that one namespace; otherwise
    every namespace on the machine belongs to it.
    """

    host_netns: str | None = None
    netns: tuple[str, ...] = ()
    netns_dirs: tuple[str, ...] = ()

    @property
    def whole_machine(self) -> bool:
        return not (self.host_netns or self.netns or self.netns_dirs)


@dataclass
class NsHandle:
    """A namespace found on the machine, held open by ``fd`` until ``close``."""

    dev: int
    inode: int
    kind: str
    name: str
    paths: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    fd: int = -1

    @property
    def id(self) -> str:
        return f"net:[{self.inode}]"

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _unescape(path: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), path)


def nsfs_mounts(mountinfo: str) -> list[str]:
    """Mount points of network-namespace files in a /proc/*/mountinfo text."""
    out = []
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        if right.split()[:1] == ["nsfs"] and len(fields) >= 5 and fields[3].startswith("net:["):
            out.append(_unescape(fields[4]))
    return out


def label_path(path: str) -> tuple[str, str]:
    """(kind, name) for a namespace known by a bind-mount path."""
    parent, name = os.path.split(path.rstrip("/"))
    if OVERLAY_SANDBOX.search(name):
        return "overlay-sandbox", name
    if parent == RUN_NETNS:
        return "named", name
    if os.path.basename(parent) == "netns":  # Docker's <exec-root>/netns, wherever the exec-root is
        if name == "ingress_sbox":
            return "docker-ingress", name
        if LB_SANDBOX.match(name):
            return "docker-lb", name
        if "docker" in parent or CONTAINER_SANDBOX.match(name):
            return "docker", name
    return "bind-mount", path


def _resolve_named(spec: str) -> str:
    return spec if "/" in spec else os.path.join(RUN_NETNS, spec)


def _scoped_paths(scope: Scope) -> list[str]:
    """Paths of the namespaces ``--netns`` / ``--netns-dir`` name (globs expanded)."""
    paths = []
    for spec in scope.netns:
        if any(ch in spec for ch in "*?["):
            base = os.path.dirname(spec) if "/" in spec else RUN_NETNS
            pattern = os.path.basename(spec)
            matched = sorted(os.path.join(base, n) for n in _listdir(base) if fnmatch.fnmatch(n, pattern))
            paths.extend(matched)
        else:
            path = _resolve_named(spec)
            if not os.path.exists(path):
                raise VxrayError(f"no such network namespace: {spec}")
            paths.append(path)
    for directory in scope.netns_dirs:
        if not os.path.isdir(directory):
            raise VxrayError(f"no such directory: {directory}")
        paths.extend(sorted(os.path.join(directory, n) for n in _listdir(directory)))
    return paths


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _process_namespaces() -> dict[tuple[int, int], list[tuple[int, str]]]:
    out: dict[tuple[int, int], list[tuple[int, str]]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry.name}/ns/net")
            with open(f"/proc/{entry.name}/comm") as f:
                comm = f.read().strip()
        except OSError:  # exited meanwhile, or a kernel thread
            continue
        out.setdefault((st.st_dev, st.st_ino), []).append((int(entry.name), comm))
    return out


def discover(scope: Scope = Scope()) -> tuple[list[NsHandle], list[str]]:
    """Open every namespace of the host in ``scope``: (handles, notes). Host first."""
    if os.geteuid() != 0:
        raise NeedRoot("to enter network namespaces")
    notes: list[str] = []
    found: dict[tuple[int, int], NsHandle] = {}

    def add(path: str, kind: str, name: str, pid: int | None = None) -> None:
        try:
            st = os.stat(path)
        except OSError:
            notes.append(f"namespace {name} disappeared during the scan, skipped")
            return
        key = (st.st_dev, st.st_ino)
        handle = found.get(key)
        if handle is None:
            handle = found[key] = NsHandle(st.st_dev, st.st_ino, kind, name)
        elif LABEL_RANK[kind] < LABEL_RANK[handle.kind]:
            handle.kind, handle.name = kind, name
        if pid is None:
            handle.paths.append(path)
        else:
            handle.pids.append(pid)

    host_path = _resolve_named(scope.host_netns) if scope.host_netns else "/proc/self/ns/net"
    if not os.path.exists(host_path):
        raise VxrayError(f"no such network namespace: {scope.host_netns}")
    add(host_path, "host", "host")
    host_key = next(iter(found))

    if scope.whole_machine:
        with open("/proc/self/mountinfo") as f:
            for path in nsfs_mounts(f.read()):
                add(path, *label_path(path))
        for key, procs in _process_namespaces().items():
            pid, comm = procs[0]
            kind, name = ("host", "host") if key == host_key else ("process", f"pid {pid} ({comm})")
            for pid, _comm in procs:
                add(f"/proc/{pid}/ns/net", kind, name, pid)
    else:
        for path in _scoped_paths(scope):
            add(path, *label_path(path))

    return open_handles(list(found.values()), notes), notes


def open_handles(handles: list[NsHandle], notes: list[str]) -> list[NsHandle]:
    """Open each namespace by any of its paths, checking the inode is still the one found."""
    opened = []
    for handle in handles:
        sources = handle.paths + [f"/proc/{pid}/ns/net" for pid in handle.pids]
        for path in sources:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            if os.fstat(fd).st_ino == handle.inode:
                handle.fd = fd
                break
            os.close(fd)
        if handle.fd >= 0:
            opened.append(handle)
        else:
            notes.append(f"namespace {handle.name} disappeared during the scan, skipped")
    return opened
