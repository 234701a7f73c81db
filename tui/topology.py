"""The topology as a tree: hosts, their bridges, the ports on them and what is behind each port.

Pure: the topology's graph (``diagnostics.graph``, which the drawing and ``vxray
graph`` draw from too) in, nested ``Node``s out. A bridge port that is a veth leads
to the container (or namespace) at its other end; a VXLAN port lists the tunnels
its FDB programs — the remote VTEPs and the host that owns each. Every node carries
the text the app filters by when it is selected, so a node jumps to its rows in the
detail views.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from diagnostics import graph as topo


@dataclass
class Node:
    label: str
    jump: str = ""  # the filter that shows this node's rows
    view: str = "Links"
    children: list[Node] = field(default_factory=list)


def _addresses(dev: topo.Node) -> str:
    return " ".join(c for c in dev.addresses if ":" not in c)


def _port(graph: topo.Graph, port: topo.Node) -> Node:
    if port.kind == "vxlan":
        node = Node(f"{port.name} VXLAN VNI {port.vni} UDP {port.dstport}", port.name, "VXLAN")
        tunnels = [e for e in graph.touching(port.id, "tunnel") if e.a == port.id]
        node.children = [Node(f"⇄ tunnel to {e.b_end} ({graph.node(e.b).host or 'no known host'})", e.b_end, "FDB")
                         for e in tunnels]  # fmt: skip
        if not tunnels:
            node.children = [Node("no tunnel: no FDB entry with a remote VTEP", port.name, "FDB")]
        return node
    veth = graph.touching(port.id, "veth")
    if veth:
        peer = graph.node(veth[0].b if veth[0].a == port.id else veth[0].a)
        ns = graph.node(peer.parent)
        who = ns.label if ns.role == "container" else ns.netns
        return Node(f"{port.name} ⇄ {who} {peer.name} {peer.mac} {_addresses(peer)}", who)
    return Node(f"{port.name} ({port.kind})", port.name)


def tree(graph: topo.Graph) -> list[Node]:
    """One node per host: its namespaces' bridges with their ports, and its VXLAN tunnels."""
    out = []
    for host in graph.hosts():
        node = Node(f"{host.label}" + (f"  VTEP {host.vtep}" if host.vtep else ""), host.label, "Namespaces")
        for ns in graph.inside(host.id, "namespace"):
            where = ns.label if ns.role in ("container", "sandbox") else ns.netns
            for br in graph.inside(ns.id, "bridge"):
                text = f"{br.name} bridge {_addresses(br)}".rstrip()
                ports = [graph.node(e.a) for e in graph.touching(br.id, "port") if e.b == br.id]
                node.children.append(Node(f"{where}: {text}", br.name, "Bridges", [_port(graph, p) for p in ports]))
            for vx in graph.inside(ns.id, "vxlan"):
                if not graph.touching(vx.id, "port"):  # flannel.1: routed, not on a bridge
                    node.children.append(_port(graph, vx))
        out.append(node)
    return out
