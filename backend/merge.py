"""Snapshots of several machines as one: every namespace named ``HOST:name``, so nothing collides.

Pure. Two machines both have a ``host`` namespace, often the same overlay sandbox
``1-<netid>`` and the same namespace inodes; prefixing names, ids and every
reference to them (veth peers, macvlan parents, VXLAN underlays) makes one
snapshot in which each namespace is unique and references stay within their own
machine. A veth whose peer is on no snapshot keeps pointing nowhere, so the trace
crosses the physical network there (its "wire" model) — as between real machines.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass, replace
from typing import Any

from backend.model import HostSnapshot, Labels, Link, LinkRef, Namespace


def _ref(host: str, ref: LinkRef) -> LinkRef:
    return replace(ref, netns=f"{host}:{ref.netns}", netns_name=f"{host}:{ref.netns_name}")


def _refs(host: str, obj: Any) -> Any:
    """``obj`` with every LinkRef inside it prefixed (Link, VxlanInfo: a few levels deep)."""
    if isinstance(obj, LinkRef):
        return _ref(host, obj)
    if is_dataclass(obj) and not isinstance(obj, type):
        changed = {f.name: _refs(host, getattr(obj, f.name)) for f in fields(obj)
                   if isinstance(getattr(obj, f.name), LinkRef) or is_dataclass(getattr(obj, f.name))}  # fmt: skip
        return replace(obj, **changed) if changed else obj
    return obj


def _namespace(host: str, ns: Namespace) -> Namespace:
    links: tuple[Link, ...] = tuple(_refs(host, lk) for lk in ns.links)
    return replace(ns, id=f"{host}:{ns.id}", name=f"{host}:{ns.name}", links=links)


def merge(parts: list[tuple[str, HostSnapshot, Labels, str]]) -> tuple[HostSnapshot, Labels]:
    """(host, its snapshot, its labels, its own namespace's label) each -> one snapshot and its labels."""
    spaces: list[Namespace] = []
    labels = Labels()
    notes: list[str] = []
    for host, snap, own, root in parts:
        spaces += [_namespace(host, ns) for ns in snap.namespaces]
        notes += [f"{host}: {n}" for n in snap.notes]
        labels.host_netns[host] = f"{host}:{root}"
        labels.hosts.update({f"{host}:{ns.name}": host for ns in snap.namespaces})
        present = {ns.name for ns in snap.namespaces}  # a shared store names other machines' namespaces too
        labels.containers.update({f"{host}:{k}": v for k, v in own.containers.items() if k in present})
        labels.networks.update({f"{host}:{k}": v for k, v in own.networks.items() if k in present})
        labels.endpoints.update({f"{host}:{k}": v for k, v in own.endpoints.items() if k in present})
    taken = max((s.taken_at for _, s, _, _ in parts), default=0.0)
    kernel = ", ".join(sorted({s.kernel for _, s, _, _ in parts}))
    docker = tuple(n for _, snap, _, _ in parts for n in snap.docker)  # each says whose it is (local_vtep)
    return HostSnapshot("+".join(h for h, *_ in parts), taken, kernel, tuple(spaces), tuple(notes), docker), labels
