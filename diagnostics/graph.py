"""The topology as a graph: the one model behind the app's drawing, its tree, and ``vxray graph``.

Pure: a snapshot and the store's labels in, a ``Graph`` of frozen nodes and edges
out. Nodes are the hosts (machines, routers, the lab's underlay), their namespaces
(containers, overlay sandboxes, the hosts' own) and every device in them but
``lo``; edges are what joins devices: veth pairs (both ends, each with its
addresses), bridge ports, a macvlan or VLAN on its parent, a VXLAN device on its
underlay device, and the tunnels VXLAN FDB entries program — one directed edge per
(device, remote VTEP), so a tunnel programmed one way only is one edge, as the app
draws it. A remote VTEP no host owns becomes a node of its own: that dangling edge
is often the whole story (a stale FDB entry).

Every renderer (``tui.drawing``, ``tui.topology``, ``tui.graph_export``) draws from
this one value, so the picture in the app and the file in a ticket agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise

from backend.model import HostSnapshot, Labels, Link, Namespace
from diagnostics.trace import Trace
from diagnostics.world import World

UNDERLAY = "underlay"  # the host the store's labels give a lab's underlay namespace
HOST_KINDS = ("host", "router", "underlay")


@dataclass(frozen=True)
class Node:
    """A host, a namespace or a device. ``parent`` is the node it sits in (a device's namespace, a namespace's
    host); ``netns`` the namespace's label, which trace steps and the app's filters use."""

    id: str
    kind: str  # host | router | underlay | namespace | vtep | a device's kind: bridge, veth, vxlan, macvlan, device …
    label: str
    parent: str = ""
    host: str = ""
    netns: str = ""
    role: str = ""  # namespaces: container | sandbox | host | namespace
    name: str = ""  # devices: the interface name
    addresses: tuple[str, ...] = ()  # CIDRs, link-scope ones left out
    mac: str = ""
    mtu: int | None = None
    state: str = ""
    vni: int | None = None
    dstport: int | None = None
    vtep: str = ""  # hosts: the address their VXLAN devices send from
    offline: str = ""  # hosts: why they could not be read


@dataclass(frozen=True)
class Edge:
    """What joins two nodes; ``a_end``/``b_end`` say what is at each end (a device and its addresses, a VTEP)."""

    id: str
    kind: str  # veth | port | lower | underlay | tunnel
    a: str
    b: str
    a_end: str = ""
    b_end: str = ""
    label: str = ""
    directed: bool = False  # tunnels: a's FDB sends to b
    vni: int | None = None


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]

    # Indexes built once per graph (renderers look nodes up per edge, a drawing walks every namespace)
    @cached_property
    def _by_id(self) -> dict[str, Node]:
        return {n.id: n for n in self.nodes}

    @cached_property
    def _children(self) -> dict[str, list[Node]]:
        found: dict[str, list[Node]] = {}
        for n in self.nodes:
            found.setdefault(n.parent, []).append(n)
        return found

    @cached_property
    def _touching(self) -> dict[tuple[str, str], list[Edge]]:
        found: dict[tuple[str, str], list[Edge]] = {}
        for e in self.edges:
            found.setdefault((e.a, e.kind), []).append(e)
            if e.b != e.a:
                found.setdefault((e.b, e.kind), []).append(e)
        return found

    def node(self, node_id: str) -> Node:
        return self._by_id[node_id]

    def inside(self, parent: str, *kinds: str) -> list[Node]:
        """The nodes sitting in ``parent`` (of ``kinds``, when given), in snapshot order."""
        return [n for n in self._children.get(parent, ()) if not kinds or n.kind in kinds]

    def touching(self, node_id: str, kind: str) -> list[Edge]:
        """The edges of ``kind`` with ``node_id`` at one end, in order."""
        return self._touching.get((node_id, kind), [])

    def hosts(self) -> list[Node]:
        return [n for n in self.nodes if n.kind in HOST_KINDS]


def machines(snap: HostSnapshot, labels: Labels) -> list[str]:
    """Hosts in the order the app lists them: the store's, then any host of a namespace (the underlay), then
    those never reached (listed, badged offline); a snapshot without labels is its one machine."""
    names = list(labels.host_netns)
    names += sorted({h for h in labels.hosts.values() if h not in names})
    names += [h for h in labels.offline if h not in names]
    return names or [snap.host]


def vtep_owners(world: World) -> dict[str, str]:
    """VTEP address -> the host whose VXLAN device sends from it (namespaces of no known host left out); a
    VTEP without ``local`` (Docker's) is where the kernel sends from."""
    labels = world.labels
    return {vtep: labels.hosts[world.place(k).label] for k, lk in world.vxlans
            if world.place(k).label in labels.hosts and (vtep := world.vtep(k, lk))}  # fmt: skip


def _cidrs(lk: Link) -> tuple[str, ...]:
    return tuple(a.cidr for a in lk.addresses if a.scope != "link")


def _end(lk: Link) -> str:
    return " ".join((lk.name, *_cidrs(lk)))


def _device_kind(lk: Link) -> str:
    return "vxlan" if lk.vxlan is not None else lk.kind or "device"


def _role(world: World, key: str, ns: Namespace, host: str) -> tuple[str, str]:
    """What a namespace is and what operators call it: a container, an overlay's sandbox, a host's own."""
    if (container := world.container(key)) is not None:
        return "container", container
    if (network := world.network(key)) is not None:
        return "sandbox", f"{network} sandbox"
    if world.labels.host_netns.get(host) == ns.name or (ns.kind == "host" and not world.labels.hosts):
        return "host", f"{host} (host)"
    return "namespace", ns.name


def _host_kind(name: str, own: Namespace | None, vtep: str) -> str:
    """A lab's underlay, a router (forwards, no VTEP, several addressed devices), or a host."""
    if name == UNDERLAY:
        return "underlay"
    addressed = [lk for lk in own.links if lk.name != "lo" and _cidrs(lk)] if own else []
    forwarding = own is not None and own.sysctls.ip_forward
    return "router" if forwarding and not vtep and len(addressed) >= 2 else "host"


def build(snap: HostSnapshot, labels: Labels, world: World | None = None) -> Graph:
    """The graph of one snapshot (several machines' merged are one snapshot too); ``world``: the snapshot's, when
    the caller has it indexed already (the app does: on 10,000 FDB entries that is most of the cost)."""
    world = World([snap], labels) if world is None else world
    alone = not labels.hosts  # no store: the machine is the one host, every namespace is its
    owners = vtep_owners(world) if not alone else {v: snap.host for k, lk in world.vxlans if (v := world.vtep(k, lk))}
    local = {host: address for address, host in owners.items()}
    host_of = {ns.id: snap.host if alone else labels.hosts.get(ns.name, "") for ns in snap.namespaces}
    by_label = {ns.name: ns for ns in snap.namespaces}
    nodes: list[Node] = []
    for h in machines(snap, labels):
        root = labels.host_netns.get(h, "host" if alone else "")  # named even when it is gone (offline)
        vtep = local.get(h, "")
        nodes.append(Node(f"host:{h}", _host_kind(h, by_label.get(root), vtep), h, host=h, netns=root, vtep=vtep,
                          offline=labels.offline.get(h, "")))  # fmt: skip
    known = {n.host for n in nodes}
    devices: dict[tuple[str, str], str] = {}  # (namespace id, device) -> node id
    for ns in snap.namespaces:
        host = host_of[ns.id]
        role, label = _role(world, ns.id, ns, host)
        nodes.append(Node(f"ns:{ns.id}", "namespace", label, f"host:{host}" if host in known else "", host, ns.name,
                          role))  # fmt: skip
        for lk in ns.links:
            if lk.kind == "loopback" or lk.name == "lo":
                continue
            node_id = devices[ns.id, lk.name] = f"dev:{ns.id}/{lk.name}"
            vx = lk.vxlan
            nodes.append(Node(node_id, _device_kind(lk), lk.name, f"ns:{ns.id}", host, ns.name, name=lk.name,
                              addresses=_cidrs(lk), mac=lk.mac or "", mtu=lk.mtu, state=lk.operstate,
                              vni=vx.vni if vx else None, dstport=vx.dstport if vx else None))  # fmt: skip
    edges = _edges(snap, world, devices, owners, nodes)
    return Graph(tuple(nodes), tuple(edges))


def _edges(snap: HostSnapshot, world: World, devices: dict[tuple[str, str], str], owners: dict[str, str],
           nodes: list[Node]) -> list[Edge]:  # fmt: skip
    """Veth pairs once, bridge ports, parents, underlays, then the tunnels every VXLAN FDB programs."""
    edges: list[Edge] = []
    ids = {ns.id: ns for ns in snap.namespaces}
    seen: set[str] = set()
    for ns in snap.namespaces:
        for lk in ns.links:
            here = devices.get((ns.id, lk.name))
            if here is None:
                continue
            if lk.master and (br := devices.get((ns.id, lk.master))):
                state = lk.bridge_port.state if lk.bridge_port else ""
                edges.append(Edge(f"port:{here}", "port", here, br, lk.name, lk.master, state))
            for ref, kind in ((lk.peer, "veth"), (lk.parent, "lower")):
                if ref is None or ref.netns not in ids:
                    continue
                other_lk = world.by_index.get((ref.netns, ref.ifindex))  # one snapshot: its keys are the ids
                there = devices.get((ref.netns, other_lk.name)) if other_lk else None
                if there is None or other_lk is None or (kind == "veth" and there in seen):
                    continue
                seen.add(here)  # a veth pair is one edge: its other end is skipped
                edges.append(Edge(f"{kind}:{here}", kind, here, there, _end(lk), _end(other_lk)))
            vx = lk.vxlan
            if vx is not None and vx.underlay is not None and vx.underlay.netns in ids:
                under = devices.get((vx.underlay.netns, vx.underlay.ifname))
                if under is not None:
                    edges.append(Edge(f"underlay:{here}", "underlay", here, under, lk.name, vx.underlay.ifname,
                                      f"dev {vx.underlay.ifname}"))  # fmt: skip
    vxlans = {(n.host, n.vni): n.id for n in nodes if n.kind == "vxlan"}
    strays: dict[str, Node] = {}
    for key, lk in world.vxlans:
        ns, vx = world.place(key).ns, lk.vxlan
        assert vx is not None  # world.vxlans holds VXLAN devices only
        here, src = devices[ns.id, lk.name], world.vtep(key, lk) or ""
        for dst in sorted({e.dst for e in ns.fdb if e.device == lk.name and e.dst and e.dst != "0.0.0.0"}):
            owner = owners.get(dst)
            if owner is None:
                strays.setdefault(dst, Node(f"vtep:{dst}", "vtep", f"{dst} (no known host)", vtep=dst))
                there = f"vtep:{dst}"
            else:
                there = vxlans.get((owner, vx.vni), f"host:{owner}")
            edges.append(Edge(f"tunnel:{here}>{dst}", "tunnel", here, there, src, dst, f"VNI {vx.vni}", True,
                              vx.vni))  # fmt: skip
    nodes += strays.values()
    return edges


def endpoints(graph: Graph, edge: Edge) -> tuple[str, str]:
    """The hosts a tunnel joins ("" for a VTEP no host owns)."""
    return graph.node(edge.a).host, graph.node(edge.b).host


@dataclass(frozen=True)
class Path:
    """What a trace crosses in a graph: its namespaces and devices, the edges between them, and where it stops."""

    nodes: frozenset[str]
    edges: frozenset[str]
    failed: str = ""  # the node of the failing step ("" when delivered)


def path(graph: Graph, result: Trace) -> Path:
    """The nodes and edges of ``graph`` a trace passes through: every namespace and device a step names, the
    veths and ports between two of them, the tunnels it is carried in."""
    by_netns = {n.netns: n.id for n in graph.nodes if n.kind == "namespace"}
    by_dev = {(n.netns, n.name): n.id for n in graph.nodes if n.name}
    on: set[str] = set()
    for s in result.steps:
        on |= {i for i in (by_netns.get(s.netns), by_dev.get((s.netns, s.dev))) if i}
    for e in graph.edges:  # a veth the packet left by one end and whose other end's namespace it reached
        ends = (graph.node(e.a), graph.node(e.b))
        if e.kind == "veth" and (e.a in on or e.b in on) and all(n.parent in on for n in ends):
            on |= {e.a, e.b}
    edges = {e.id for e in graph.edges if e.kind in ("veth", "port") and e.a in on and e.b in on}
    vx = [s for s in result.steps if s.table.startswith("vxlan")]
    for out, into in pairwise(vx):
        if out.table == "vxlan fdb" and into.table == "vxlan" and out.host != into.host:
            for e in graph.edges:
                if e.kind == "tunnel" and endpoints(graph, e) == (out.host, into.host):
                    edges.add(e.id)
                    on |= {e.a, e.b}
    failed = ""
    if result.failed_step is not None:
        s = result.steps[result.failed_step]
        failed = by_dev.get((s.netns, s.dev)) or by_netns.get(s.netns, "")
    return Path(frozenset(on), frozenset(edges), failed)
