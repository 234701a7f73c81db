"""The store and the hosts an operation acts on."""

from __future__ import annotations

from dataclasses import dataclass

from backend.errors import VxrayError
from backend.hosts import Host, NetnsHost
from backend.records import ContainerRecord, HostRecord, NetworkRecord
from backend.store.registry import Registry

LOCAL = HostRecord("local")


@dataclass
class Context:
    store: Registry

    def host(self, name: str | None = None) -> Host:
        """``--host NAME``; without it the only registered host, or the local machine."""
        if name is not None:
            record = self.store.host(name)
            if record is None:
                raise VxrayError(f"unknown host {name!r} (see `vxray host ls`)")
            return NetnsHost(record)
        hosts = self.store.hosts()
        if len(hosts) > 1:
            raise VxrayError(f"several hosts known ({', '.join(h.name for h in hosts)}): pick one with --host")
        return NetnsHost(hosts[0] if hosts else LOCAL)

    def network(self, name: str) -> NetworkRecord:
        net = self.store.network(name)
        if net is None:
            raise VxrayError(f"unknown network {name!r}")
        return net

    def container(self, name: str) -> ContainerRecord:
        rec = self.store.container(name)
        if rec is None:
            raise VxrayError(f"unknown container {name!r}")
        return rec
