"""``vxray graph``: the topology graph as Graphviz DOT, Mermaid, JSON or SVG, for a ticket or a wiki.

Pure renderers of ``diagnostics.graph.Graph`` — the model the app draws from — plus
the one call to Graphviz's ``dot`` that makes SVG. Names are untrusted (the kernel
accepts a namespace called ``a"b`` and a container called ``x}<y``), so every
name is escaped for the format it goes into: DOT's quoted strings, Mermaid's
entity codes; ids in Mermaid are generated (``n0``, ``n1`` …), never names.

Hosts are clusters holding their namespaces' clusters, which hold the devices;
the underlay (a lab's segments) and routers are hosts of their own kind. Edges:
veth pairs (undirected, each end's device and addresses), bridge ports (dashed,
with the port's STP state), a macvlan/VLAN's parent and a VXLAN device's underlay
device (dotted), and tunnels (bold, one arrow per FDB-programmed direction, VNI
and both VTEPs). A trace's path is green, its stop red.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict
from typing import TYPE_CHECKING

from backend.errors import VxrayError

if TYPE_CHECKING:  # loaded by the command that draws: `vxray snapshot` starts without the diagnostics
    from diagnostics.graph import Edge, Graph, Node, Path

FORMATS = ("dot", "mermaid", "json", "svg")
ON_PATH, STOPPED = "#2e9e44", "#d62728"


def _dot(text: str) -> str:
    """A DOT quoted string: backslashes and quotes escaped, control characters (a newline in a name) shown as
    ``\\xNN`` so no name can end the string, start a new statement, or turn into a label escape."""
    out = []
    for ch in text:
        if ch in '\\"':
            out.append("\\" + ch)
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _node_text(n: Node) -> list[str]:
    """What a node says, line by line: its name, then what matters about it (its namespace's own name, VNI,
    addresses, MAC, MTU, state, VTEP). A line may hold any character: each format escapes it."""
    lines = [n.label]
    if n.kind == "namespace" and n.netns != n.label:
        lines.append(n.netns)
    if n.kind == "vxlan":
        lines.append(f"VXLAN VNI {n.vni} UDP {n.dstport}")
    elif n.kind not in ("namespace", "host", "router", "underlay", "vtep"):
        lines.append(n.kind)
    lines += list(n.addresses)
    if n.mac or n.mtu is not None:
        lines.append(" ".join(x for x in (n.mac, f"mtu {n.mtu}" if n.mtu is not None else "", n.state) if x))
    if n.vtep and n.kind != "vtep":
        lines.append(f"VTEP {n.vtep}")
    if n.offline:
        lines.append(f"offline: {n.offline}")
    return lines


def _edge_text(e: Edge) -> list[str]:
    if e.kind == "tunnel":
        return [e.label, f"{e.a_end or '?'} → {e.b_end}"]
    if e.kind == "port":
        return [e.label]
    return [e.label] if e.label else [e.a_end, e.b_end]


def _dot_label(lines: list[str]) -> str:
    """A label whose line breaks are DOT's: each line escaped on its own, joined with ``\\n``."""
    return '"' + "\\n".join(_dot(line)[1:-1] for line in lines) + '"'


EDGE_STYLE = {"veth": "dir=none", "port": "dir=none, style=dashed", "lower": "dir=none, style=dotted",
              "underlay": "dir=none, style=dotted", "tunnel": "style=bold, color=\"#1f77b4\""}  # fmt: skip


def to_dot(graph: Graph, path: Path | None = None) -> str:
    """Graphviz DOT: a digraph with a cluster per host and per namespace."""
    out = [
        "digraph vxray {",
        '  graph [rankdir=LR, fontname="Helvetica", compound=true];',
        '  node [shape=box, fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    clusters = {n.id: i for i, n in enumerate(graph.nodes) if n.kind in ("host", "router", "underlay", "namespace")}

    def mark(node_id: str) -> str:
        if path is None:
            return ""
        if node_id == path.failed:
            return f', color="{STOPPED}", penwidth=3, fontcolor="{STOPPED}"'
        return f', color="{ON_PATH}", penwidth=3' if node_id in path.nodes else ""

    def emit(parent: str, indent: str) -> None:
        for n in graph.inside(parent):
            if n.id in clusters:
                out.append(f"{indent}subgraph {_dot(f'cluster_{clusters[n.id]}')} {{")
                out.append(f"{indent}  label={_dot_label(_node_text(n))}; style=rounded{mark(n.id).replace(',', ';')};")
                out.append(f"{indent}  {_dot(n.id)} [label={_dot(n.label)}, shape=point, style=invis];")
                emit(n.id, indent + "  ")
                out.append(f"{indent}}}")
            else:
                shape = {"bridge": "box3d", "vxlan": "hexagon", "vtep": "octagon"}.get(n.kind, "box")
                out.append(f"{indent}{_dot(n.id)} [label={_dot_label(_node_text(n))}, shape={shape}{mark(n.id)}];")

    emit("", "  ")
    for e in graph.edges:
        style = EDGE_STYLE[e.kind]
        if path is not None and e.id in path.edges:
            style += f', color="{ON_PATH}", penwidth=3'
        ends = f", taillabel={_dot(e.a_end)}, headlabel={_dot(e.b_end)}" if e.kind == "veth" else ""
        if e.b in clusters:  # a tunnel to a host whose VXLAN device is not in the snapshot: to its box
            ends += f", lhead={_dot(f'cluster_{clusters[e.b]}')}"
        label = _edge_text(e) if e.kind != "veth" else []
        out.append(f"  {_dot(e.a)} -> {_dot(e.b)} [{style}, label={_dot_label(label)}{ends}];")
    out.append("}")
    return "\n".join(out) + "\n"


SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:/@_-+=→")


def _mermaid(lines: list[str]) -> str:
    """Mermaid label text in quotes: every character outside a small safe set as an entity code (``#34;``), so
    quotes, brackets, ``<>``, ``{}``, ``|``, backticks and line breaks in a name stay text; lines join with
    ``<br>``."""
    return '"' + "<br>".join("".join(c if c in SAFE else f"#{ord(c)};" for c in line) for line in lines) + '"'


def to_mermaid(graph: Graph, path: Path | None = None) -> str:
    """A Mermaid flowchart: a subgraph per host and per namespace; ids are generated, names are labels."""
    ids = {n.id: f"n{i}" for i, n in enumerate(graph.nodes)}
    out = ["flowchart LR"]

    def emit(parent: str, indent: str) -> None:
        for n in graph.inside(parent):
            if n.kind in ("host", "router", "underlay", "namespace"):
                out.append(f"{indent}subgraph {ids[n.id]} [{_mermaid(_node_text(n))}]")
                emit(n.id, indent + "  ")
                out.append(f"{indent}end")
            else:
                shape = "{{%s}}" if n.kind == "vxlan" else "[[%s]]" if n.kind == "bridge" else "[%s]"
                out.append(f"{indent}{ids[n.id]}{shape % _mermaid(_node_text(n))}")

    emit("", "  ")
    arrow = {"veth": "---", "port": "-.-", "lower": "-.-", "underlay": "-.-", "tunnel": "==>"}
    for e in graph.edges:
        label = _edge_text(e) if e.kind != "veth" else [e.a_end, e.b_end]
        out.append(f"  {ids[e.a]} {arrow[e.kind]}|{_mermaid(label)}| {ids[e.b]}")
    if path is not None:
        for n in graph.nodes:
            if n.id == path.failed:
                out.append(f"  style {ids[n.id]} stroke:{STOPPED},stroke-width:3px")
            elif n.id in path.nodes:
                out.append(f"  style {ids[n.id]} stroke:{ON_PATH},stroke-width:3px")
        for i, e in enumerate(graph.edges):
            if e.id in path.edges:
                out.append(f"  linkStyle {i} stroke:{ON_PATH},stroke-width:3px")
    return "\n".join(out) + "\n"


def to_json(graph: Graph, path: Path | None = None) -> str:
    """Every node and edge with all its fields; with a trace, its path (node and edge ids) and its stop."""
    doc: dict[str, object] = {"nodes": [asdict(n) for n in graph.nodes], "edges": [asdict(e) for e in graph.edges]}
    if path is not None:
        doc["trace"] = {"nodes": sorted(path.nodes), "edges": sorted(path.edges), "failed": path.failed or None}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def to_svg(graph: Graph, path: Path | None = None) -> str:
    """The DOT laid out by Graphviz's ``dot`` (Debian's graphviz package); one line when it is missing."""
    dot = shutil.which("dot")
    if dot is None:
        raise VxrayError("--format svg needs Graphviz's dot (apt-get install graphviz); --format dot writes the "
                         "source for another machine")  # fmt: skip
    try:
        proc = subprocess.run([dot, "-Tsvg"], input=to_dot(graph, path).encode(), capture_output=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise VxrayError("dot took over 300 s to lay the graph out; --format dot writes the source") from None
    if proc.returncode != 0:
        why = proc.stderr.decode(errors="replace").strip().splitlines() or [f"exit status {proc.returncode}"]
        raise VxrayError(f"dot failed: {why[-1]}")
    return proc.stdout.decode(errors="replace")


RENDER = {"dot": to_dot, "mermaid": to_mermaid, "json": to_json, "svg": to_svg}
