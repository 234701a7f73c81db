"""The topology drawing from a saved lab: boxes that line up, tunnels as lanes, a trace's path and stop."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from backend import codec
from backend.model import FdbEntry, Labels, Neighbour
from diagnostics.graph import build
from diagnostics.trace import trace
from diagnostics.world import World
from tui.drawing import BOX_WIDTH, draw, on_path, tunnels

VIEW = Path(__file__).parent / "fixtures" / "overlay-static.view.json"


def _saved() -> tuple[object, Labels]:
    view = codec.load_view(VIEW.read_bytes(), str(VIEW))
    return view.snapshot, view.labels


def _text(lines: list) -> list[str]:
    return ["".join(s.text for s in line) for line in lines]


def _with_fdb(snap, sandbox: str, dst: str, mac: str = "02:42:ac:15:00:01", ip: str = ""):  # type: ignore[no-untyped-def]
    """The saved lab with a static FDB entry on ``sandbox``'s vxlan1 (and, with ``ip``, the proxy's ARP entry)."""
    entry = FdbEntry(mac=mac, device="vxlan1", dst=dst, state="permanent")
    neigh = (Neighbour(ip, "vxlan1", mac, ("PERMANENT",)),) if ip else ()
    spaces = tuple(replace(ns, fdb=(*ns.fdb, entry), neighbours=(*ns.neighbours, *neigh)) if ns.name == sandbox
                   else ns for ns in snap.namespaces)  # fmt: skip
    return replace(snap, namespaces=spaces)


def test_hosts_are_boxes_side_by_side_with_their_bridges_and_containers() -> None:
    snap, labels = _saved()
    text = _text(draw(build(snap, labels)))
    assert text[0].startswith("┌ yy2  VTEP 10.193.6.36") and "┌ yy3  VTEP 10.193.6.37" in text[0]
    box_rows = [t for t in text if t.startswith(("┌", "│", "└"))]
    assert len({len(t) for t in box_rows}) == 1 and len(box_rows[0]) == 2 * BOX_WIDTH + 2, "the boxes line up"
    assert any("prod sandbox: br0 172.21.255.254" in t for t in text)
    assert any("─ vm33 172.21.0.2" in t for t in text) and any("─ vm3 172.21.0.1" in t for t in text)


def test_a_static_overlay_without_fdb_entries_draws_no_tunnel() -> None:
    snap, labels = _saved()
    text = _text(draw(build(snap, labels)))
    assert any(t.startswith("no tunnel: no VXLAN FDB entry names a remote VTEP") for t in text)


def test_one_fdb_entry_draws_a_one_way_tunnel_both_draw_it_both_ways() -> None:
    snap, labels = _saved()
    one_way = _with_fdb(snap, "vxshot.yy3-1-415cb1946c", "10.193.6.36")
    [lane] = tunnels(build(one_way, labels), ["yy2", "yy3"])[0]
    assert (lane.a, lane.b, lane.vni, lane.forward, lane.back) == ("yy2", "yy3", 256, False, True)
    assert any("◀ VNI 256 ═" in t for t in _text(draw(build(one_way, labels))))
    both = _with_fdb(one_way, "vxshot.yy2-1-415cb1946c", "10.193.6.37")
    assert any("◀ VNI 256 ▶" in t for t in _text(draw(build(both, labels))))


def test_an_fdb_entry_to_an_unknown_vtep_is_named_not_drawn() -> None:
    snap, labels = _saved()
    stray = _with_fdb(snap, "vxshot.yy3-1-415cb1946c", "10.9.9.9")
    assert "yy3 vxlan1 → 10.9.9.9 (no known host)" in _text(draw(build(stray, labels)))


def test_the_trace_path_covers_both_containers_and_stops_where_the_trace_does() -> None:
    snap, labels = _saved()
    world = World([snap], labels)
    dropped = trace(world, "vxshot.yy3-vm33", "172.21.0.1")
    path, failed = on_path(build(snap, labels), dropped)
    assert failed == "vxshot.yy3-vm33", "the unanswered ARP is in vm33"
    fixed = _with_fdb(snap, "vxshot.yy3-1-415cb1946c", "10.193.6.36", "02:42:ac:15:00:01", "172.21.0.1")
    fixed = _with_fdb(fixed, "vxshot.yy2-1-415cb1946c", "10.193.6.37", "02:42:ac:15:00:02", "172.21.0.2")
    delivered = trace(World([fixed], labels), "vxshot.yy3-vm33", "172.21.0.1")
    assert delivered.delivered
    path, failed = on_path(build(fixed, labels), delivered)
    assert failed == "" and {"vxshot.yy3-vm33", "vxshot.yy2-vm3", "tunnel yy3 yy2"} <= path


def test_an_offline_host_gets_a_box_that_says_why() -> None:
    snap, labels = _saved()
    labels = replace(labels, offline={"yy4": "no answer from root@10.193.6.38 within 20 s"})
    text = _text(draw(build(snap, labels)))
    assert "┌ yy4 " in text[0]
    assert any("│ ○ offline: no answer from root@" in t for t in text), "clipped to the box"
