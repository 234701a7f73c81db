"""The field notes' overlay (the overlay-static lab), built for real: what the snapshot sees, checked by ping."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.collect import collect
from backend.lab import runner
from backend.ops.containers import host_ifname
from backend.ops.context import Context
from backend.ops.sandbox import sandbox_name

from conftest import Lab


@pytest.fixture
def overlay(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Context]:
    monkeypatch.setenv("VXRAY_HOME", str(tmp_path))
    name = f"{lab.prefix}ov"
    return name, runner.up(*runner.load("overlay-static", name))


def _sandbox(name: str, ctx: Context, host: str) -> str:
    return f"{name}.{host}-{sandbox_name(ctx.network('prod'))}"


def _ping(lab: Lab, src: str, ip: str) -> bool:
    return lab.run(src, "ping", "-c", "3", "-i", "0.2", "-W", "1", ip, check=False).returncode == 0


def test_overlay_sandbox_vxlan_is_seen_with_underlay_across_namespaces(overlay: tuple[str, Context]) -> None:
    name, ctx = overlay
    snap = collect(ctx.host("yy2").scope(), docker="none")
    sandbox = snap.namespace(_sandbox(name, ctx, "yy2"))
    vx = sandbox.link("vxlan1").vxlan
    assert (vx.vni, vx.dstport, vx.local) == (256, 4789, "10.193.6.36")
    assert (vx.learning, vx.proxy, vx.l2miss, vx.l3miss) == (False, True, True, True)
    assert vx.group is None
    assert (vx.underlay.netns_name, vx.underlay.ifname) == ("host", "eth0")
    ports = sandbox.bridges()["br0"]
    assert [p.name for p in ports] == ["vxlan1", host_ifname("vm3", "prod")]
    assert all(p.bridge_port and p.bridge_port.state == "forwarding" for p in ports)
    assert [a.cidr for a in sandbox.link("br0").addresses if a.scope == "global"] == ["172.21.255.254/16"]


def test_veth_pair_ends_are_named_with_their_namespaces(overlay: tuple[str, Context]) -> None:
    name, ctx = overlay
    snap = collect(ctx.host("yy3").scope(), docker="none")
    ends = {frozenset({(p.a.netns_name, p.a.ifname), (p.b.netns_name, p.b.ifname)}) for p in snap.veth_pairs()}
    assert frozenset({(_sandbox(name, ctx, "yy3"), host_ifname("vm33", "prod")), (f"{name}.yy3-vm33", "eth0")}) in ends
    # the host's underlay veth leads to the underlay namespace, outside this host's scope
    assert snap.namespace("host").link("eth0").peer.netns_name == "(outside scope)"


def test_static_fdb_and_permanent_arp_entries_appear_and_make_ping_work(lab: Lab, overlay: tuple[str, Context]) -> None:
    name, ctx = overlay
    vm3, vm33 = f"{name}.yy2-vm3", f"{name}.yy3-vm33"
    assert not _ping(lab, vm33, "172.21.0.1"), "no multicast, no entries: the notes say this ping fails"
    for here, remote_ip, remote_cip, remote_mac, ctr in (
        ("yy2", "10.193.6.37", "172.21.0.2", "02:42:ac:15:00:02", vm3),
        ("yy3", "10.193.6.36", "172.21.0.1", "02:42:ac:15:00:01", vm33),
    ):  # the notes' commands, typed by hand with iproute2
        lab.run(_sandbox(name, ctx, here), "bridge", "fdb", "add", remote_mac, "dev", "vxlan1", "dst", remote_ip)
        lab.ip(ctr, "neigh", "replace", remote_cip, "lladdr", remote_mac, "dev", "eth0", "nud", "permanent")
    assert _ping(lab, vm33, "172.21.0.1") and _ping(lab, vm3, "172.21.0.2")

    snap = collect(ctx.host("yy3").scope(), docker="none")
    fdb = snap.namespace(_sandbox(name, ctx, "yy3")).fdb
    entry = next(e for e in fdb if e.mac == "02:42:ac:15:00:01" and e.device == "vxlan1" and e.dst)
    assert (entry.dst, entry.state, "self" in entry.flags) == ("10.193.6.36", "permanent", True)
    neigh = next(n for n in snap.namespace(vm33).neighbours if n.ip == "172.21.0.1")
    assert (neigh.mac, neigh.state) == ("02:42:ac:15:00:01", ("PERMANENT",))
