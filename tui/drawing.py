"""The topology drawn in the terminal: a box per host, VXLAN tunnels as edges between them.

Pure: the topology's graph (``diagnostics.graph``, the model ``vxray graph`` exports
too) and (optionally) a trace in, lines of ``Span``s out. Each span that stands for
something carries a key — the label of the namespace it draws, or ``tunnel A B`` — so the app can colour a trace's path
and make a click on a node jump to its rows. Boxes sit side by side; below them
one lane per tunnel (host pair and VNI) joins the two boxes, with an arrow for
each direction some FDB entry programs. A one-way arrow, or no lane at all, is
often the whole story of a cross-host ping failure.
"""

from __future__ import annotations

from dataclasses import dataclass

from diagnostics.graph import UNDERLAY, Graph, Node, endpoints, path
from diagnostics.trace import Trace

BOX_WIDTH = 38  # two hosts fit an 80-column terminal


@dataclass(frozen=True)
class Span:
    text: str
    key: str = ""  # a namespace label, "tunnel A B", or "" for the frame
    view: str = ""  # the view a click on it opens


Line = list[Span]


@dataclass(frozen=True)
class Tunnel:
    a: str  # host names, in drawing order
    b: str
    vni: int
    forward: bool  # a's FDB sends to b
    back: bool

    @property
    def key(self) -> str:
        return f"tunnel {self.a} {self.b}"


def _ipv4(node: Node) -> str:
    return " ".join(c.split("/")[0] for c in node.addresses if ":" not in c)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _box(graph: Graph, host: Node) -> list[Line]:
    """The lines inside a host's box: each bridge with its ports, then what is on no bridge."""
    root = host.netns
    body: list[Line] = [[Span(f"{host.label}" + (f"  VTEP {host.vtep}" if host.vtep else ""), root, "Namespaces")]]
    if host.offline:  # what it last sent (if anything) follows, but first why it is not live
        body.append([Span(f"○ offline: {host.offline}", root, "Namespaces")])
    behind: set[str] = set()
    mine = graph.inside(host.id, "namespace")
    for ns in mine:
        where = ns.label if ns.role in ("container", "sandbox") else ""
        for br in graph.inside(ns.id, "bridge"):
            head = f"{where}: " if where else ""
            body.append([Span(f"{head}{br.name} {_ipv4(br)}".rstrip(), ns.netns, "Bridges")])
            ports = [graph.node(e.a) for e in graph.touching(br.id, "port") if e.b == br.id]
            for i, port in enumerate(ports):
                fork = "└" if i == len(ports) - 1 else "├"
                veth = graph.touching(port.id, "veth")
                if port.kind == "vxlan":
                    body.append([Span(f" {fork} "), Span(f"{port.name} VNI {port.vni}", ns.netns, "VXLAN")])
                elif veth:
                    other = graph.node(veth[0].b if veth[0].a == port.id else veth[0].a)
                    where_else = graph.node(other.parent)
                    behind.add(where_else.id)
                    who = where_else.label if where_else.role == "container" else where_else.netns
                    body.append([Span(f" {fork} {port.name} ─ "),
                                 Span(f"{who} {_ipv4(other)}".rstrip(), where_else.netns, "Links")])  # fmt: skip
                else:
                    body.append([Span(f" {fork} {port.name} ({port.kind})", ns.netns, "Bridges")])
        for vx in graph.inside(ns.id, "vxlan"):
            if not graph.touching(vx.id, "port"):  # flannel.1: routed, not on a bridge
                body.append([Span(f"{vx.name} VNI {vx.vni} (routed)", ns.netns, "VXLAN")])
    for ns in mine:  # containers on no bridge: host/none modes, macvlan
        if ns.role == "container" and ns.id not in behind:
            addr = " ".join(_ipv4(d) for d in graph.inside(ns.id)).strip() or "no address"
            body.append([Span(f"{ns.label} {addr}", ns.netns, "Links")])
    home = next((ns for ns in mine if ns.netns == root), None)
    if len(body) == 1 and home is not None:  # a router, a bare machine: its interfaces are what there is
        body += [[Span(f"{d.name} {_ipv4(d)}", root, "Links")] for d in graph.inside(home.id) if _ipv4(d)]
    return body


def tunnels(graph: Graph, order: list[str]) -> tuple[list[Tunnel], list[str]]:
    """The host pairs the graph's tunnels join, one lane per pair and VNI with an arrow per direction programmed,
    and the remote VTEPs no known host owns."""
    edges: dict[tuple[str, str, int], set[str]] = {}
    strays: list[str] = []
    for e in graph.edges:
        if e.kind != "tunnel" or e.vni is None:
            continue
        src, other = endpoints(graph, e)
        if src not in order:
            continue
        if other not in order or other == src:
            strays.append(f"{src} {graph.node(e.a).name} → {e.b_end} (no known host)")
            continue
        a, b = sorted((src, other), key=order.index)
        edges.setdefault((a, b, e.vni), set()).add(src)
    found = [Tunnel(a, b, vni, a in who, b in who) for (a, b, vni), who in sorted(edges.items(),
             key=lambda kv: (order.index(kv[0][0]), order.index(kv[0][1]), kv[0][2]))]  # fmt: skip
    return found, strays


def draw(graph: Graph) -> list[Line]:
    """Host boxes side by side, then one lane per tunnel between the boxes it joins."""
    order = [h for h in graph.hosts() if h.label != UNDERLAY]
    boxes = [_box(graph, h) for h in order]
    inner = BOX_WIDTH - 4
    height = max((len(b) for b in boxes), default=0)
    lines: list[Line] = [[] for _ in range(height + 2)]
    for col, body in enumerate(boxes):
        gap = [Span("  ")] if col else []
        title = body[0][0]
        lines[0] += [*gap, Span("┌ "), Span(_clip(title.text, inner), title.key, title.view),
                     Span(" " + "─" * (inner - len(_clip(title.text, inner))) + "┐")]  # fmt: skip
        for row in range(1, height):
            spans, used = [Span("│ ")], 0
            for s in body[row] if row < len(body) else []:
                text = _clip(s.text, inner - used)
                spans.append(Span(text, s.key, s.view))
                used += len(text)
            lines[row] += [*gap, *spans, Span(" " * (inner - used) + " │")]
        lines[height] += [*gap, Span("└" + "─" * (BOX_WIDTH - 2) + "┘")]
    lines.pop()
    names = [h.label for h in order]
    found, strays = tunnels(graph, names)
    centre = {h: i * (BOX_WIDTH + 2) + BOX_WIDTH // 2 for i, h in enumerate(names)}
    for n, t in enumerate(found):
        lines.append(_lane(t, centre, found[n + 1 :]))
    if not found and any(n.kind == "vxlan" for n in graph.nodes):
        lines.append([Span("no tunnel: no VXLAN FDB entry names a remote VTEP")])
    lines += [[Span(s)] for s in strays]
    return lines


def _lane(t: Tunnel, centre: dict[str, int], below: list[Tunnel]) -> Line:
    """``●══◀ VNI 256 ▶══●`` from one box's centre to the other's; ``│`` where later lanes pass."""
    a, b = centre[t.a], centre[t.b]
    label = f"{'◀' if t.back else '═'} VNI {t.vni} {'▶' if t.forward else '═'}"
    inside = b - a - 1
    pad = max(inside - len(label), 0)
    edge = "═" * (pad // 2) + label[:inside] + "═" * (pad - pad // 2)
    down = {c for u in below for c in (centre[u.a], centre[u.b])}
    left = "".join("│" if x in down else " " for x in range(a))
    right_end = max(down, default=b)
    right = "".join("│" if x in down else " " for x in range(b + 1, right_end + 1))
    return [Span(left), Span("●" + edge + "●", t.key, "FDB"), Span(right)]


def on_path(graph: Graph, result: Trace) -> tuple[set[str], str]:
    """The keys a trace passes through (namespaces, tunnels both ways), and the one where it stops ("" when it
    is delivered): the graph's path of the trace, in the drawing's keys."""
    crossed = path(graph, result)
    keys = {n.netns for n in graph.nodes if n.id in crossed.nodes and n.netns}
    for e in graph.edges:
        if e.id in crossed.edges and e.kind == "tunnel":
            a, b = endpoints(graph, e)
            keys |= {f"tunnel {a} {b}", f"tunnel {b} {a}"}
    return keys, graph.node(crossed.failed).netns if crossed.failed else ""
