"""`vxray graph`: one model for the drawing and the export; every built-in lab's DOT parses; hostile names stay text."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from backend import codec
from backend.lab import runner
from backend.merge import merge
from backend.model import FdbEntry, HostSnapshot, Labels
from backend.observe import observe
from diagnostics.graph import Graph, build, path
from diagnostics.trace import trace
from diagnostics.world import World
from tui.cli import main
from tui.graph_export import ON_PATH, STOPPED, to_dot, to_json, to_mermaid

from conftest import Lab, have

VIEW = Path(__file__).parent / "fixtures" / "overlay-static.view.json"
SANDBOX3 = "vxshot.yy3-1-415cb1946c"
NETNS_LABS = [n for n in runner.builtin_names() if not n.startswith("docker-")]


def _saved() -> tuple[HostSnapshot, Labels]:
    view = codec.load_view(VIEW.read_bytes(), str(VIEW))
    return view.snapshot, view.labels


def _with_fdb(snap: HostSnapshot, sandbox: str, dst: str) -> HostSnapshot:
    entry = FdbEntry(mac="02:42:ac:15:00:01", device="vxlan1", dst=dst, state="permanent")
    return replace(snap, namespaces=tuple(replace(ns, fdb=(*ns.fdb, entry)) if ns.name == sandbox else ns
                                          for ns in snap.namespaces))  # fmt: skip


def _dot_parses(text: str) -> None:
    proc = subprocess.run(["dot", "-Tcanon"], input=text, capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def _covers(snap: HostSnapshot, doc: dict) -> None:  # type: ignore[type-arg]
    """The JSON lists every namespace, every device but lo, every veth pair, bridge port and FDB tunnel the
    snapshot holds, and every edge joins two listed nodes."""
    nodes = {n["id"]: n for n in doc["nodes"]}
    assert {n["netns"] for n in nodes.values() if n["kind"] == "namespace"} == {ns.name for ns in snap.namespaces}
    devices = {(n["netns"], n["name"]) for n in nodes.values() if n["name"]}
    assert devices == {(ns.name, lk.name) for ns in snap.namespaces for lk in ns.links if lk.kind != "loopback"}
    assert all(e["a"] in nodes and e["b"] in nodes for e in doc["edges"])

    def ends(kind: str) -> set[frozenset[tuple[str, str]]]:
        return {frozenset({(nodes[e["a"]]["netns"], nodes[e["a"]]["name"]), (nodes[e["b"]]["netns"],
                nodes[e["b"]]["name"])}) for e in doc["edges"] if e["kind"] == kind}  # fmt: skip

    names = {ns.id: ns.name for ns in snap.namespaces}
    pairs = {frozenset({(p.a.netns_name, p.a.ifname), (names[p.b.netns], p.b.ifname)}) for p in snap.veth_pairs()
             if p.b.netns in names and p.b.ifname}  # fmt: skip
    assert ends("veth") == pairs
    ports = {frozenset({(ns.name, lk.name), (ns.name, lk.master)}) for ns in snap.namespaces for lk in ns.links
             if lk.master and ns.link(lk.master)}  # fmt: skip
    assert ends("port") == ports
    tunnels = {(nodes[e["a"]]["netns"], nodes[e["a"]]["name"], e["b_end"]) for e in doc["edges"]
               if e["kind"] == "tunnel"}  # fmt: skip
    programmed = {(ns.name, lk.name, e.dst) for ns in snap.namespaces for lk in ns.links if lk.vxlan
                  for e in ns.fdb if e.device == lk.name and e.dst and e.dst != "0.0.0.0"}  # fmt: skip
    assert tunnels == programmed


def test_the_json_lists_every_node_and_edge_of_the_saved_lab() -> None:
    snap, labels = _saved()
    snap = _with_fdb(_with_fdb(snap, SANDBOX3, "10.193.6.36"), SANDBOX3, "10.9.9.9")
    _covers(snap, json.loads(to_json(build(snap, labels))))


def test_one_fdb_entry_is_one_directed_tunnel_and_an_unknown_vtep_a_node_of_its_own() -> None:
    snap, labels = _saved()
    graph = build(_with_fdb(_with_fdb(snap, SANDBOX3, "10.193.6.36"), SANDBOX3, "10.9.9.9"), labels)
    tunnels = [e for e in graph.edges if e.kind == "tunnel"]
    assert [(graph.node(e.a).host, graph.node(e.b).host, e.a_end, e.b_end, e.vni) for e in tunnels] == [
        ("yy3", "yy2", "10.193.6.37", "10.193.6.36", 256), ("yy3", "", "10.193.6.37", "10.9.9.9", 256)]  # fmt: skip
    assert graph.node(tunnels[0].b).kind == "vxlan" and graph.node(tunnels[1].b).kind == "vtep"
    assert all(e.directed for e in tunnels)


def test_hosts_namespaces_and_devices_nest_and_veth_ends_carry_their_addresses() -> None:
    snap, labels = _saved()
    graph = build(snap, labels)
    assert [(h.label, h.kind, h.vtep) for h in graph.hosts()] == [
        ("yy2", "host", "10.193.6.36"), ("yy3", "host", "10.193.6.37"), ("underlay", "underlay", "")]  # fmt: skip
    vm33 = next(n for n in graph.nodes if n.kind == "namespace" and n.label == "vm33")
    assert (vm33.parent, vm33.role) == ("host:yy3", "container")
    [veth] = graph.touching(graph.inside(vm33.id)[0].id, "veth")
    assert "eth0 172.21.0.2/16" in (veth.a_end, veth.b_end)


def test_dot_and_mermaid_of_the_saved_lab_mark_a_traces_path_and_its_stop() -> None:
    snap, labels = _saved()
    graph = build(snap, labels)
    crossed = path(graph, trace(World([snap], labels), "vxshot.yy3-vm33", "172.21.0.1"))
    stop = graph.node(crossed.failed)
    assert stop.netns == "vxshot.yy3-vm33", "the unanswered ARP request is vm33's"
    dot = to_dot(graph, crossed)
    _dot_parses(dot)
    assert any(STOPPED in line and json.dumps(stop.id) in line for line in dot.splitlines())
    assert ON_PATH in dot
    mermaid = to_mermaid(graph, crossed)
    assert f"stroke:{STOPPED}" in mermaid and f"stroke:{ON_PATH}" in mermaid
    assert json.loads(to_json(graph, crossed))["trace"]["failed"] == stop.id


HOSTILE = ['a"b', "x\ny", "<script>{x}</script>", "back\\slash\\", "p$(id);|`[x](y)#z", "\\N\\l", "end\r}"]


def _hostile(snap: HostSnapshot, labels: Labels) -> tuple[HostSnapshot, Labels]:
    """The saved lab with its containers, namespaces and devices named as a stranger's machine may name them."""
    rename = {ns.name: f"{HOSTILE[i % len(HOSTILE)]}{i}" for i, ns in enumerate(snap.namespaces)}
    spaces = tuple(replace(ns, name=rename[ns.name], links=tuple(
        replace(lk, peer=replace(lk.peer, netns_name=rename.get(lk.peer.netns_name, lk.peer.netns_name))
                if lk.peer else None) for lk in ns.links)) for ns in snap.namespaces)  # fmt: skip
    containers = {rename[k]: f"{v}{HOSTILE[j % len(HOSTILE)]}" for j, (k, v) in enumerate(labels.containers.items())}
    return replace(snap, namespaces=spaces), Labels(
        hosts={rename.get(k, k): v for k, v in labels.hosts.items()}, containers=containers,
        networks={rename.get(k, k): v + '"}' for k, v in labels.networks.items()},
        host_netns={k: rename.get(v, v) for k, v in labels.host_netns.items()})  # fmt: skip


@pytest.mark.skipif(not have("dot"), reason="needs Graphviz's dot")
def test_hostile_names_give_dot_that_parses_and_keeps_each_name_as_text() -> None:
    graph = build(*_hostile(*_saved()))
    dot = to_dot(graph)
    _dot_parses(dot)
    laid = json.loads(subprocess.run(["dot", "-Tjson"], input=dot, capture_output=True, text=True, check=True).stdout)
    labels = " ".join(o.get("label", "") for o in laid["objects"])
    assert 'a"b' in labels and "<script>{x}</script>" in labels
    assert "x\\\\x0ay" in labels, "a newline in a name is shown as \\x0a, never a line break nor a new statement"
    assert len([o for o in laid["objects"] if "nodes" not in o]) >= len([n for n in graph.nodes if n.name])


def test_hostile_names_stay_inside_mermaid_labels() -> None:
    graph = build(*_hostile(*_saved()))
    for line in to_mermaid(graph).splitlines()[1:]:
        outside = re.sub(r'"[^"]*"', "", line)  # the syntax left once every quoted label is taken out
        assert re.fullmatch(r"[ A-Za-z0-9\[\](){}|=.:,#%>-]*", outside), line
        for label in re.findall(r'"([^"]*)"', line):
            text = re.sub(r"#\d+;", "", label.replace("<br>", ""))  # entity codes and line breaks are Mermaid's
            assert not set(text) & set('"<>{}[]()|`\\;#$\n\r'), label


def test_hostile_names_round_trip_through_the_json() -> None:
    graph = build(*_hostile(*_saved()))
    doc = json.loads(to_json(graph))
    assert {n["label"] for n in doc["nodes"]} == {n.label for n in graph.nodes}


def test_svg_without_graphviz_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.setenv("PATH", "/nonexistent")
    assert main(["-H", f"file://{VIEW}", "graph", "--format", "svg"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vxray: --format svg needs Graphviz's dot") and "\n" not in err


def test_a_bad_format_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-H", f"file://{VIEW}", "graph", "--format", "png"]) == 2
    assert "invalid --format 'png'" in capsys.readouterr().err


@pytest.mark.skipif(not have("dot"), reason="needs Graphviz's dot")
def test_svg_with_a_trace_is_written_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "lab.svg"
    assert main(["-H", f"file://{VIEW}", "graph", "--format", "svg", "--trace", "vm33", "vm3", "-o", str(out)]) == 0
    svg = out.read_text()
    assert "<svg" in svg and STOPPED in svg and "vm33" in svg


def _graph_of_lab(name: str) -> tuple[HostSnapshot, Graph]:
    snap, labels = observe(runner.context(name), f"{name}.ul")
    return snap, build(snap, labels)


@pytest.mark.skipif(not have("dot"), reason="needs Graphviz's dot")
@pytest.mark.parametrize("scenario", NETNS_LABS)
def test_dot_parses_the_graph_of_every_builtin_lab(scenario: str, lab: Lab, home: Path) -> None:
    name = f"{lab.prefix}g{len(scenario)}"
    spec, text = runner.load(scenario, name)
    try:
        runner.up(spec, text)
    except Exception as exc:  # macvlan-vlan on a kernel without 802.1Q: nothing to draw
        if scenario == "macvlan-vlan":
            pytest.skip(f"the lab does not build here: {exc}")
        raise
    try:
        snap, graph = _graph_of_lab(name)
        _dot_parses(to_dot(graph))
        _covers(snap, json.loads(to_json(graph)))
        kinds = {n.kind for n in graph.nodes}
        assert "underlay" in kinds and {h.label for h in graph.hosts()} >= {h.name for h in spec.hosts}
        if spec.routers:
            assert {h.label for h in graph.hosts() if h.kind == "router"} == {r.name for r in spec.routers}
        if any((n.driver == "overlay" and n.sync) or n.driver == "flannel" for n in spec.networks):
            assert any(e.kind == "tunnel" for e in graph.edges), "a programmed overlay draws tunnels"
    finally:
        runner.down(name)


@pytest.mark.skipif(not have("dot"), reason="needs Graphviz's dot")
def test_machines_read_over_host_are_one_graph_whose_names_say_the_machine(tmp_path: Path) -> None:
    """Two machines' files (`-H a=file://… -H b=file://…`): every namespace HOST:name, each machine a host."""
    snap, labels = _saved()
    merged, names = merge([("a", snap, labels, "host"), ("b", snap, labels, "host")])
    graph = build(merged, names)
    assert [h.label for h in graph.hosts()] == ["a", "b"]
    assert {n.netns.split(":")[0] for n in graph.nodes if n.kind == "namespace"} == {"a", "b"}
    _covers(merged, json.loads(to_json(graph)))
    _dot_parses(to_dot(graph))
