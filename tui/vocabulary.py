"""The names the shell completes, read from the store and a snapshot, refreshed between commands.

Completion must answer within a keystroke (under 50 ms, even with 10,000 FDB
entries), so nothing is read while completing: after every command the shell
rebuilds this vocabulary once, and completers only filter it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from backend.model import HostSnapshot, Labels
from backend.records import Endpoint
from backend.store.registry import Registry
from tui import tables


@dataclass
class Vocabulary:
    hosts: list[str] = field(default_factory=list)
    vteps: dict[str, str] = field(default_factory=dict)  # host -> VTEP
    networks: dict[str, str] = field(default_factory=dict)  # network -> driver
    containers: list[str] = field(default_factory=list)
    endpoints: list[Endpoint] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    devices: dict[str, list[str]] = field(default_factory=dict)  # namespace label or container -> devices
    fdb_macs: list[str] = field(default_factory=list)  # every MAC in the FDB tables (for fdb del)
    labs: list[str] = field(default_factory=list)
    builtin: list[str] = field(default_factory=list)
    sandboxes: dict[str, str] = field(default_factory=dict)  # network -> a sandbox namespace label

    def remote_endpoints(self, host: str | None) -> list[Endpoint]:
        """The endpoints on other hosts than ``host`` (all of them when no host is chosen)."""
        return [e for e in self.endpoints if host is None or e.host != host]


def build(store: Registry, snap: HostSnapshot | None, labels: Labels | None, labs: list[str],
          builtin: list[str]) -> Vocabulary:  # fmt: skip
    """``snap``/``labels``: what ``backend.observe`` read (None: not read)."""
    hosts = store.hosts()
    v = Vocabulary(
        hosts=sorted(h.name for h in hosts),
        vteps={h.name: h.vtep for h in hosts if h.vtep},
        networks={n.name: n.driver for n in store.networks()},
        containers=sorted(c.name for c in store.containers()),
        endpoints=sorted(store.endpoints(), key=lambda e: (e.container, e.network)),
        labs=labs,
        builtin=builtin,
    )
    if snap is None or labels is None:
        return v
    return _kernel_names(v, snap, labels)


def from_machines(snap: HostSnapshot, labels: Labels) -> Vocabulary:
    """Machines read over ``--host``: no local store; names come from what they sent, as each machine
    calls them (``yy3:1-ab…`` is ``1-ab…`` to a command that runs on yy3)."""
    v = Vocabulary(
        hosts=sorted(labels.host_netns),
        networks=dict.fromkeys(sorted(set(labels.networks.values())), ""),
        containers=sorted(set(labels.containers.values())),
        vteps={host: address for address, host in tables.vteps(snap, labels).items()},
    )
    return _kernel_names(v, snap, labels, lambda name: name.split(":", 1)[-1])


def _kernel_names(v: Vocabulary, snap: HostSnapshot, labels: Labels,
                  local: Callable[[str], str] = lambda name: name) -> Vocabulary:  # fmt: skip
    by_container = labels.containers
    macs: set[str] = set()
    for ns in snap.namespaces:
        v.namespaces.append(local(ns.name))
        devices = sorted(lk.name for lk in ns.links)
        v.devices[local(ns.name)] = devices
        if ns.name in by_container:
            v.devices[by_container[ns.name]] = devices
        if ns.name in labels.networks:
            v.sandboxes.setdefault(labels.networks[ns.name], local(ns.name))
        macs.update(e.mac for e in ns.fdb if e.mac)
    v.fdb_macs = sorted(macs)
    v.namespaces.sort()
    return v
