"""The topology as a tree: hosts, their bridges, the ports on them and what is behind each port.

Pure: a snapshot and the store's labels in, nested ``Node``s out. A bridge port
that is a veth leads to the container (or namespace) at its other end; a VXLAN
port lists the tunnels its FDB programs — the remote VTEPs and the host that owns
each. Every node carries the text the app filters by when it is selected, so a
node jumps to its rows in the detail views.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backend.model import HostSnapshot, Labels, Link, Namespace
from tui.tables import hosts, vteps


@dataclass
class Node:
    label: str
    jump: str = ""  # the filter that shows this node's rows
    view: str = "Links"
    children: list[Node] = field(default_factory=list)


def _addresses(lk: Link) -> str:
    return " ".join(a.cidr for a in lk.addresses if a.scope != "link" and ":" not in a.address)


def _port(snap: HostSnapshot, labels: Labels, ns: Namespace, port: Link, owners: dict[str, str]) -> Node:
    if port.vxlan is not None:
        dsts = sorted({e.dst for e in ns.fdb if e.device == port.name and e.dst})
        node = Node(f"{port.name} VXLAN VNI {port.vxlan.vni} UDP {port.vxlan.dstport}", port.name, "VXLAN")
        node.children = [Node(f"⇄ tunnel to {dst} ({owners.get(dst, 'no known host')})", dst, "FDB") for dst in dsts]
        if not dsts:
            node.children = [Node("no tunnel: no FDB entry with a remote VTEP", port.name, "FDB")]
        return node
    if port.peer is not None:
        other = next((n for n in snap.namespaces if n.id == port.peer.netns), None)
        peer = other.link(port.peer.ifname) if other and port.peer.ifname else None
        who = labels.containers.get(port.peer.netns_name, port.peer.netns_name)
        detail = f" {peer.mac} {_addresses(peer)}" if peer else ""
        return Node(f"{port.name} ⇄ {who} {port.peer.ifname}{detail}", who)
    return Node(f"{port.name} ({port.kind or 'device'})", port.name)


def tree(snap: HostSnapshot, labels: Labels) -> list[Node]:
    """One node per host: its namespaces' bridges with their ports, and its VXLAN tunnels."""
    owners = vteps(snap, labels)
    out = []
    for host in hosts(labels, snap):
        mine = [ns for ns in snap.namespaces if labels.hosts.get(ns.name) == host]
        vtep = next((a for a, h in owners.items() if h == host), "")
        node = Node(f"{host}" + (f"  VTEP {vtep}" if vtep else ""), host, "Namespaces")
        for ns in mine:
            where = labels.containers.get(ns.name) or (f"{labels.networks[ns.name]} sandbox"
                                                        if ns.name in labels.networks else ns.name)  # fmt: skip
            for br, ports in ns.bridges().items():
                bridge = ns.link(br)
                text = f"{br} bridge {_addresses(bridge) if bridge else ''}".rstrip()
                node.children.append(Node(f"{where}: {text}", br, "Bridges",
                                          [_port(snap, labels, ns, p, owners) for p in ports]))  # fmt: skip
            for lk in ns.links:
                if lk.vxlan is not None and not lk.master:  # flannel.1: routed, not on a bridge
                    node.children.append(_port(snap, labels, ns, lk, owners))
        out.append(node)
    return out
