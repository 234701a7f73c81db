"""The topology drawn in the terminal: a box per host, VXLAN tunnels as edges between them.

Pure: a snapshot, the store's labels and (optionally) a trace in, lines of
``Span``s out. Each span that stands for something carries a key — the label of
the namespace it draws, or ``tunnel A B`` — so the app can colour a trace's path
and make a click on a node jump to its rows. Boxes sit side by side; below them
one lane per tunnel (host pair and VNI) joins the two boxes, with an arrow for
each direction some FDB entry programs. A one-way arrow, or no lane at all, is
often the whole story of a cross-host ping failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from backend.model import HostSnapshot, Labels, Link
from diagnostics.trace import Trace
from tui.tables import hosts, vteps

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


def _ipv4(lk: Link | None) -> str:
    return " ".join(a.address for a in lk.addresses if a.scope != "link" and ":" not in a.address) if lk else ""


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _box(snap: HostSnapshot, labels: Labels, host: str, vtep: str) -> list[Line]:
    """The lines inside a host's box: each bridge with its ports, then what is on no bridge."""
    alone = not labels.hosts  # no store: the machine is the one host, every namespace is its
    mine = [ns for ns in snap.namespaces if alone or labels.hosts.get(ns.name) == host]
    by_id = {ns.id: ns for ns in snap.namespaces}
    root = labels.host_netns.get(host, "host" if alone else "")
    body: list[Line] = [[Span(f"{host}" + (f"  VTEP {vtep}" if vtep else ""), root, "Namespaces")]]
    if host in labels.offline:  # what it last sent (if anything) follows, but first why it is not live
        body.append([Span(f"○ offline: {labels.offline[host]}", root, "Namespaces")])
    behind: set[str] = set()
    for ns in mine:
        where = labels.containers.get(ns.name) or (f"{labels.networks[ns.name]} sandbox"
                                                    if ns.name in labels.networks else "")  # fmt: skip
        for br, ports in ns.bridges().items():
            head = f"{where}: " if where else ""
            body.append([Span(f"{head}{br} {_ipv4(ns.link(br))}".rstrip(), ns.name, "Bridges")])
            for i, port in enumerate(ports):
                fork = "└" if i == len(ports) - 1 else "├"
                if port.vxlan is not None:
                    body.append([Span(f" {fork} "), Span(f"{port.name} VNI {port.vxlan.vni}", ns.name, "VXLAN")])
                elif port.peer is not None and port.peer.netns in by_id:
                    other = by_id[port.peer.netns]
                    behind.add(other.name)
                    who = labels.containers.get(other.name, other.name)
                    addr = _ipv4(other.link(port.peer.ifname or ""))
                    body.append([Span(f" {fork} {port.name} ─ "), Span(f"{who} {addr}".rstrip(), other.name, "Links")])
                else:
                    body.append([Span(f" {fork} {port.name} ({port.kind or 'device'})", ns.name, "Bridges")])
        for lk in ns.links:
            if lk.vxlan is not None and not lk.master:  # flannel.1: routed, not on a bridge
                body.append([Span(f"{lk.name} VNI {lk.vxlan.vni} (routed)", ns.name, "VXLAN")])
    for ns in mine:  # containers on no bridge: host/none modes, macvlan
        if ns.name in labels.containers and ns.name not in behind:
            addr = " ".join(_ipv4(lk) for lk in ns.links if lk.name != "lo").strip() or "no address"
            body.append([Span(f"{labels.containers[ns.name]} {addr}", ns.name, "Links")])
    home = next((ns for ns in mine if ns.name == root), None)
    if len(body) == 1 and home is not None:  # a router, a bare machine: its interfaces are what there is
        body += [[Span(f"{lk.name} {_ipv4(lk)}", root, "Links")] for lk in home.links if _ipv4(lk) and lk.name != "lo"]
    return body


def tunnels(snap: HostSnapshot, labels: Labels, order: list[str],
            owners: dict[str, str] | None = None) -> tuple[list[Tunnel], list[str]]:  # fmt: skip
    """The host pairs some VXLAN FDB joins, and the remote VTEPs no known host owns (``owners``: the
    hosts' VTEPs, when the caller has them already)."""
    owners = vteps(snap, labels) if owners is None else owners
    edges: dict[tuple[str, str, int], set[str]] = {}
    strays: list[str] = []
    for ns in snap.namespaces:
        src = labels.hosts.get(ns.name, "")
        for lk in ns.links:
            if lk.vxlan is None or src not in order:
                continue
            for dst in sorted({e.dst for e in ns.fdb if e.device == lk.name and e.dst and e.dst != "0.0.0.0"}):
                other = owners.get(dst, "")
                if other not in order or other == src:
                    strays.append(f"{src} {lk.name} → {dst} (no known host)")
                    continue
                a, b = sorted((src, other), key=order.index)
                edges.setdefault((a, b, lk.vxlan.vni), set()).add(src)
    found = [Tunnel(a, b, vni, a in who, b in who) for (a, b, vni), who in sorted(edges.items(),
             key=lambda kv: (order.index(kv[0][0]), order.index(kv[0][1]), kv[0][2]))]  # fmt: skip
    return found, strays


def draw(snap: HostSnapshot, labels: Labels) -> list[Line]:
    """Host boxes side by side, then one lane per tunnel between the boxes it joins."""
    order = [h for h in hosts(labels, snap) if h != "underlay"]
    owners = vteps(snap, labels)  # derived once per drawing: without ``local`` it takes a World
    local = {host: address for address, host in owners.items()}
    boxes = [_box(snap, labels, h, local.get(h, "")) for h in order]
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
    found, strays = tunnels(snap, labels, order, owners)
    centre = {h: i * (BOX_WIDTH + 2) + BOX_WIDTH // 2 for i, h in enumerate(order)}
    for n, t in enumerate(found):
        lines.append(_lane(t, centre, found[n + 1 :]))
    if not found and any(lk.vxlan for ns in snap.namespaces for lk in ns.links):
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


def on_path(result: Trace) -> tuple[set[str], str]:
    """The keys a trace passes through, and the one where it stops ("" when it is delivered)."""
    keys = {s.netns for s in result.steps}
    vx = [s for s in result.steps if s.table.startswith("vxlan")]
    for out, into in pairwise(vx):
        if out.table == "vxlan fdb" and into.table == "vxlan" and out.host != into.host:
            keys |= {f"tunnel {out.host} {into.host}", f"tunnel {into.host} {out.host}"}
    failed = "" if result.failed_step is None else result.steps[result.failed_step].netns
    return keys, failed
