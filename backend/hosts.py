"""Hosts that operations act on, behind one interface.

A host is a root namespace plus the namespaces that belong to it. Today a host is
the local machine or a network namespace on it acting as one (labs); a remote
host over SSH will implement the same ``Host`` interface without touching the
operations. Namespaces a host owns are named ``<host netns>-<local name>``, so a
host's scope is its namespace plus ``<host netns>-*``.
"""

from __future__ import annotations

import os
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TypeVar

from pyroute2 import IPRoute, NetlinkError

from backend import namedns, nsenter, rtnl_edit
from backend.errors import VxrayError
from backend.netlink import NetlinkSocket
from backend.netns import RUN_NETNS, Scope
from backend.records import HostRecord

T = TypeVar("T")


class Host(ABC):
    def __init__(self, record: HostRecord) -> None:
        self.record = record

    @property
    def name(self) -> str:
        return self.record.name

    @abstractmethod
    def ns_name(self, local: str) -> str:
        """The machine-wide name of the host's namespace ``local`` (a container, a sandbox)."""

    @abstractmethod
    def ipr(self, netns: str | None = None) -> AbstractContextManager[IPRoute]:
        """A netlink handle in the host's own namespace, or in one of its namespaces, for one block."""

    @abstractmethod
    def netlink(self, netns: str | None = None) -> AbstractContextManager[NetlinkSocket]:
        """A raw netlink socket for ``backend.rtnl_edit``'s fast writes, like ``ipr``."""

    @abstractmethod
    def add_netns(self, local: str) -> str:
        """Create a namespace belonging to the host; its machine-wide name."""

    @abstractmethod
    def remove_netns(self, name: str) -> None: ...

    @abstractmethod
    def has_netns(self, name: str) -> bool: ...

    @abstractmethod
    def run(self, argv: Sequence[str], netns: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a program (never through a shell) in the host's namespace or one of its namespaces."""

    @abstractmethod
    def call_in(self, fn: Callable[[], T], netns: str | None = None) -> T:
        """Call ``fn`` with the thread inside the host's namespace (or one of its namespaces)."""

    @abstractmethod
    def scope(self) -> Scope:
        """What ``vxray snapshot`` reads for this host."""


class NetnsHost(Host):
    """The local machine (``record.netns`` None) or a named namespace acting as a machine."""

    def ns_name(self, local: str) -> str:
        return f"{self.record.netns}-{local}" if self.record.netns else local

    @contextmanager
    def ipr(self, netns: str | None = None) -> Iterator[IPRoute]:
        """The handle's socket is opened with the thread inside the namespace: no helper process.

        pyroute2 opens a socket per thread on first use, so the thread stays inside
        for the whole block; a handle must not outlive it.
        """
        with _entered(netns or self.record.netns), IPRoute() as ipr:
            yield ipr

    @contextmanager
    def netlink(self, netns: str | None = None) -> Iterator[NetlinkSocket]:
        with _entered(netns or self.record.netns):
            nl = NetlinkSocket()  # bound to the namespace it is created in, for its whole life
        with nl:
            yield nl

    def add_netns(self, local: str) -> str:
        name = self.ns_name(local)
        if self.has_netns(name):
            raise VxrayError(f"namespace {name} already exists on host {self.name}")
        namedns.create(name)
        with self.netlink(name) as nl:
            rtnl_edit.set_link(nl, rtnl_edit.index_or_error(nl, "lo", name), up=True)
        return name

    def remove_netns(self, name: str) -> None:
        if self.has_netns(name):
            namedns.remove(name)

    def has_netns(self, name: str) -> bool:
        return os.path.exists(os.path.join(RUN_NETNS, name))

    def run(self, argv: Sequence[str], netns: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.call_in(lambda: subprocess.run(list(argv), capture_output=True, text=True), netns)

    def call_in(self, fn: Callable[[], T], netns: str | None = None) -> T:
        with _entered(netns or self.record.netns):
            return fn()

    def scope(self) -> Scope:
        if not self.record.netns:
            return Scope()
        return Scope(host_netns=self.record.netns, netns=(f"{self.record.netns}-*",))


@contextmanager
def _entered(netns: str | None) -> Iterator[None]:
    if netns is None:
        yield
        return
    with nsenter.named(netns):
        yield


def index_of(ipr: IPRoute, ifname: str, where: str) -> int:
    """The ifindex of ``ifname``, or a one-line error naming it and where it was looked for."""
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise VxrayError(f"no device {ifname} in {where}")
    return found[0]


def kernel_error(exc: NetlinkError, what: str) -> VxrayError:
    return VxrayError(f"{what}: {exc.args[1] if len(exc.args) > 1 else exc}")
