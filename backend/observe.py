"""One snapshot of every host a context knows, with the store's names for its namespaces.

Hosts that are namespaces on this machine (labs, tests) are read in one pass —
each host's namespace and its ``<netns>-*`` namespaces — so veth pairs between
hosts and an underlay namespace resolve as on any single machine. The local
machine, when it is a host, is read whole. Labels come from the store: which
host, container or overlay network each namespace belongs to.
"""

from __future__ import annotations

import os

from backend.collect import collect
from backend.lab import engines
from backend.merge import merge
from backend.model import HostSnapshot, Labels
from backend.netns import RUN_NETNS, Scope
from backend.ops.context import Context
from backend.ops.sandbox import sandbox_name


def scope_of(ctx: Context, underlay: str | None = None) -> Scope:
    """The namespaces of every host the context knows (the whole machine when it is one of them)."""
    hosts = ctx.store.hosts()
    # A host whose namespace is gone is left out (the labels say it is offline); its `-*` glob may match nothing.
    globs = [g for h in hosts if h.netns for g in (h.netns, f"{h.netns}-*")
             if g.endswith("*") or os.path.exists(os.path.join(RUN_NETNS, g))]  # fmt: skip
    if any(h.netns is None for h in hosts) or not hosts:
        return Scope()
    return Scope(host_netns=underlay, netns=tuple(globs))


def observe(ctx: Context, underlay: str | None = None, previous: HostSnapshot | None = None,
            changed: set[str] | None = None) -> tuple[HostSnapshot, Labels]:  # fmt: skip
    """``underlay``: a namespace that joins the hosts (a lab's ``<lab>.ul``), read as the snapshot's root.

    ``previous``/``changed``: only the namespaces in ``changed`` are read whole (see ``collect``).
    """
    running = {h.name for h in ctx.store.hosts() if h.netns and engines.runs_engine(h.netns)}
    if running:
        return _observe_engines(ctx, running)
    scope = scope_of(ctx, underlay)
    local = scope.whole_machine
    snap = collect(scope, docker="none", previous=previous, changed=changed)
    return snap, labels_for(ctx, snap, underlay if not local else None)


def engine_scope(netns: str) -> tuple[Scope, str]:
    """What to read for a lab host running a Docker Engine: its namespace, the sandboxes under the
    engine's exec-root; and the engine to label them by."""
    return Scope(host_netns=netns, netns_dirs=(engines.sandboxes(netns),)), engines.socket_url(netns)


def _observe_engines(ctx: Context, running: set[str]) -> tuple[HostSnapshot, Labels]:
    """Hosts that run real Docker Engines, each read as its own machine — its namespace, Docker's
    sandboxes under the engine's exec-root, labelled by the engine — and merged as ``HOST:name``,
    as machines read over ``--host`` are; routers too, so the underlay between them can be followed."""
    parts = []
    for h in ctx.store.hosts():
        if not h.netns or not os.path.exists(os.path.join(RUN_NETNS, h.netns)):
            continue
        if h.name in running:
            snap = collect(*engine_scope(h.netns))
        else:
            snap = collect(Scope(host_netns=h.netns), docker="none")
        parts.append((h.name, snap, Labels(), "host"))
    return merge(parts)


def labels_for(ctx: Context, snap: HostSnapshot, underlay: str | None = None) -> Labels:
    """The store's names for a snapshot's namespaces: host, container (and the network of each of its
    addresses), overlay network; offline hosts."""
    hosts = ctx.store.hosts()
    owner = {h.netns or "host": h.name for h in hosts}
    labels = Labels(host_netns={h.name: h.netns or "host" for h in hosts})
    for ns in snap.namespaces:
        host = owner.get(ns.name) or next((n for pre, n in owner.items() if ns.name.startswith(f"{pre}-")), None)
        if ns.name == "host" and underlay:
            host = "underlay"
        if host is not None:
            labels.hosts[ns.name] = host
        if ns.container is not None:
            labels.containers[ns.name] = ns.container.name
    present = {ns.name for ns in snap.namespaces}
    for h in hosts:
        if h.netns and h.netns not in present:
            labels.offline[h.name] = f"its namespace {h.netns} is gone"
    netns = {c.name: c.netns for c in ctx.store.containers() if c.netns}
    for name, ns_name in netns.items():
        labels.containers.setdefault(ns_name, name)
    for e in ctx.store.endpoints():
        if e.container in netns:
            labels.endpoints.setdefault(netns[e.container], {})[e.ip] = e.network
    for net in ctx.store.networks():
        if net.driver == "overlay":
            for h in hosts:
                labels.networks[ctx.host(h.name).ns_name(sandbox_name(net))] = net.name
    return labels
