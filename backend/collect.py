"""Collect a ``HostSnapshot``: discover namespaces, read each, resolve, label.

Namespaces are read in parallel threads, each entering its namespace with setns
and opening one netlink socket there for all five dumps; the kernel does the
dumping while the GIL is released, so the threads overlap. References across
namespaces are resolved only once everything is read.
"""

from __future__ import annotations

import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from backend import nsenter
from backend.docker_engine import DockerLabels, engine_url, read_labels
from backend.heap import acyclic_build
from backend.links import NsLinks, Resolver
from backend.model import (
    Address,
    ContainerInfo,
    DockerNetwork,
    FdbEntry,
    HostSnapshot,
    Namespace,
    Neighbour,
    NftTable,
    Route,
    RuleSet,
    Sysctls,
)
from backend.netfilter import Rulesets
from backend.netlink import NetlinkSocket
from backend.netns import NsHandle, Scope, discover
from backend.rtnl import read_addresses, read_fdb, read_links, read_neighbours, read_routes
from backend.sysctl import read_sysctls


@dataclass
class NsRead:
    """Everything read inside one namespace, before cross-namespace resolution."""

    links: NsLinks
    addresses: dict[int, list[Address]]
    routes: list[Route]
    neighbours: list[Neighbour]
    fdb: list[FdbEntry]
    sysctls: Sysctls
    netfilter: tuple[RuleSet, ...]
    nftables: tuple[NftTable, ...] = ()
    notes: list[str] = field(default_factory=list)
    netfilter6: tuple[RuleSet, ...] = ()


def read_namespace(handle: NsHandle, kept: Namespace | None = None) -> NsRead:
    """Read one namespace; the calling thread enters it for the duration.

    With ``kept`` (the namespace as an earlier snapshot has it, and nothing
    changed there since) only links and addresses are read again — cross-namespace
    references need them — and the big tables are taken from ``kept``.
    """
    with nsenter.netns(handle.fd):
        if kept is not None:
            with NetlinkSocket() as nl:
                links = read_links(nl)
                return NsRead(NsLinks(handle, links), read_addresses(nl), list(kept.routes), list(kept.neighbours),
                              list(kept.fdb), kept.sysctls, kept.netfilter, kept.nftables,
                              netfilter6=kept.netfilter6)  # fmt: skip
        with Rulesets() as rules, NetlinkSocket() as nl:
            links = read_links(nl)
            names = {lk.index: lk.name for lk in links}
            addresses = read_addresses(nl)
            routes = read_routes(nl, names)
            neighbours = read_neighbours(nl, names)
            fdb = read_fdb(nl, names)
            sysctls = read_sysctls(nl, names)
            netfilter, nftables, notes = rules.result()
    return NsRead(
        NsLinks(handle, links), addresses, routes, neighbours, fdb, sysctls, netfilter, nftables,
        [f"{handle.name}: {n}" for n in notes], rules.netfilter6,
    )  # fmt: skip


def _label(handles: list[NsHandle], labels: DockerLabels) -> tuple[dict[int, ContainerInfo], dict[int, str]]:
    """Containers for docker sandboxes (never for the host, which host-mode containers share),
    and the network each overlay and load-balancer sandbox serves."""
    containers, networks = {}, {}
    for h in handles:
        container = labels.containers.get(h.inode)
        if container and h.kind != "host":
            h.kind, h.name = "docker", container.name
            containers[h.inode] = container
        elif h.kind in ("overlay-sandbox", "docker-lb") and (net := labels.sandbox_network(h.name)):
            h.name = f"{h.name} ({net})"
            networks[h.inode] = net
    return containers, networks


def _vip_notes(overlays: tuple[DockerNetwork, ...]) -> list[str]:
    """Swarm services' virtual IPs are load-balanced by IPVS, which vxray does not follow: say so, and
    say when the kernel cannot do it at all (no ip_vs), rather than trace such traffic wrongly."""
    ipvs = os.path.isdir("/proc/sys/net/ipv4/vs")
    why = "which vxray does not trace" if ipvs else "which this kernel lacks (no ip_vs): the routing mesh cannot work"
    return [
        f"docker network {n.name}: service VIP(s) {', '.join(n.vips)} are load-balanced by IPVS, {why}"
        for n in overlays
        if n.vips
    ]


def collect(
    scope: Scope = Scope(), docker: str | None = None, workers: int | None = None,
    previous: HostSnapshot | None = None, changed: set[str] | None = None,
) -> HostSnapshot:  # fmt: skip
    """Snapshot every namespace of the host in ``scope``.

    ``docker``: Engine URL to label containers (default: DOCKER_HOST or the
    default socket when it exists; ``none`` to skip). ``workers``: threads, one
    per core by default — parsing holds the GIL, so more only add contention
    (measured on the 2-core scale workload: 1 or 2 threads ~160 ms, 4 threads ~175 ms).
    ``previous`` and ``changed``: a netlink monitor said only the namespaces named
    in ``changed`` changed since ``previous`` was taken; the others' tables are kept.
    """
    with acyclic_build():
        return _collect(scope, docker, workers, previous, changed)


def _collect(
    scope: Scope, docker: str | None, workers: int | None,
    previous: HostSnapshot | None, changed: set[str] | None,
) -> HostSnapshot:  # fmt: skip
    workers = workers or os.cpu_count() or 2
    handles, notes = discover(scope)
    try:
        containers: dict[int, ContainerInfo] = {}
        sandboxes: dict[int, str] = {}
        overlays: tuple[DockerNetwork, ...] = ()
        url = None if docker == "none" else engine_url(docker)
        if url:
            try:
                labels = read_labels(url)
                containers, sandboxes = _label(handles, labels)
                overlays = labels.overlays
                notes += _vip_notes(overlays)
            except Exception as exc:  # noqa: BLE001 - any Engine failure: unlabelled, with a note
                notes.append(f"docker engine at {url} not readable, containers unlabelled: {exc}")
        reads: list[NsRead] = []
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(handles)))) as pool:
            kept = {ns.id: ns for ns in previous.namespaces} if previous is not None and changed is not None else {}

            def read(h: NsHandle) -> NsRead | str:
                return _try_read(h, kept.get(h.id) if h.name not in (changed or ()) else None)

            for handle, result in zip(handles, pool.map(read, handles), strict=True):
                if isinstance(result, NsRead):
                    reads.append(result)
                    notes.extend(result.notes)
                else:
                    notes.append(f"namespace {handle.name} skipped: {result}")
        resolver = Resolver([r.links for r in reads])
        namespaces = tuple(
            Namespace(
                id=r.links.handle.id,
                kind=r.links.handle.kind,
                name=r.links.handle.name,
                paths=tuple(r.links.handle.paths),
                pids=tuple(sorted(r.links.handle.pids)),
                container=containers.get(r.links.handle.inode),
                network=sandboxes.get(r.links.handle.inode),
                links=resolver.links(r.links, r.addresses),
                fdb=tuple(r.fdb),
                neighbours=tuple(r.neighbours),
                routes=tuple(r.routes),
                sysctls=r.sysctls,
                netfilter=r.netfilter,
                nftables=r.nftables,
                netfilter6=r.netfilter6,
            )
            for r in reads
        )
    finally:
        for h in handles:
            h.close()
    return HostSnapshot(
        host=os.path.basename(scope.host_netns) if scope.host_netns else socket.gethostname(),
        taken_at=time.time(),
        kernel=os.uname().release,
        namespaces=namespaces,
        notes=tuple(notes),
        docker=overlays,
    )


def _try_read(handle: NsHandle, kept: Namespace | None = None) -> NsRead | str:
    try:
        return read_namespace(handle, kept)
    except OSError as exc:
        return str(exc)
