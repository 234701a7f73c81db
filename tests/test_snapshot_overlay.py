"""The field notes' overlay, built for real: what the snapshot sees, checked by ping."""

from __future__ import annotations

import os

from backend import demo
from backend.collect import collect

from conftest import Lab


def _ping(lab: Lab, src: str, ip: str) -> bool:
    return lab.run(src, "ping", "-c", "1", "-W", "1", ip, check=False).returncode == 0


def test_overlay_sandbox_vxlan_is_seen_with_underlay_across_namespaces(lab: Lab) -> None:
    demo.up(lab.prefix)
    snap = collect(demo.scope("yy2", lab.prefix), docker="none")

    sandbox = snap.namespace(demo.netns_name("yy2", f"1-{demo.NETID}", lab.prefix))
    assert sandbox is not None
    vxlan = sandbox.link("vxlan1")
    assert vxlan is not None and vxlan.vxlan is not None
    vx = vxlan.vxlan
    assert (vx.vni, vx.dstport, vx.local) == (256, 4789, "10.193.6.36")
    assert (vx.learning, vx.proxy, vx.l2miss, vx.l3miss) == (False, True, True, True)
    assert vx.group is None
    assert vx.underlay is not None and (vx.underlay.netns_name, vx.underlay.ifname) == ("host", "eth0")

    assert [p.name for p in sandbox.bridges()["br0"]] == ["vxlan1", "veth2"]
    assert all(p.bridge_port and p.bridge_port.state == "forwarding" for p in sandbox.bridges()["br0"])
    br0 = sandbox.link("br0")
    assert br0 is not None and [a.cidr for a in br0.addresses if a.scope == "global"] == ["172.21.255.254/16"]


def test_veth_pair_ends_are_named_with_their_namespaces(lab: Lab) -> None:
    demo.up(lab.prefix)
    snap = collect(demo.scope("yy3", lab.prefix), docker="none")
    sandbox = demo.netns_name("yy3", f"1-{demo.NETID}", lab.prefix)
    ends = {frozenset({(p.a.netns_name, p.a.ifname), (p.b.netns_name, p.b.ifname)}) for p in snap.veth_pairs()}
    assert frozenset({(sandbox, "veth2"), (demo.netns_name("yy3", "vm33", lab.prefix), "eth0")}) in ends
    # the host's underlay veth leads to the underlay namespace, outside this host's scope
    host_eth0 = snap.namespace("host").link("eth0")
    assert host_eth0.peer is not None and host_eth0.peer.netns_name == "(outside scope)"


def test_static_fdb_and_permanent_arp_entries_appear_and_make_ping_work(lab: Lab) -> None:
    demo.up(lab.prefix)
    ns = {h: {p: demo.netns_name(h, p, lab.prefix) for p in ("", f"1-{demo.NETID}", c)} for h, (_, c, _, _) in
          demo.HOSTS.items()}  # fmt: skip
    vm3, vm33 = ns["yy2"]["vm3"], ns["yy3"]["vm33"]
    assert not _ping(lab, vm33, "172.21.0.1"), "no multicast, no entries: the notes say this ping fails"

    for here, there in (("yy2", "yy3"), ("yy3", "yy2")):
        remote_ip, _, remote_cip, remote_mac = demo.HOSTS[there]
        sandbox = ns[here][f"1-{demo.NETID}"]
        container = ns[here][demo.HOSTS[here][1]]
        lab.run(sandbox, "bridge", "fdb", "add", remote_mac, "dev", "vxlan1", "dst", remote_ip)
        lab.ip(container, "neigh", "replace", remote_cip, "lladdr", remote_mac, "dev", "eth0", "nud", "permanent")
    assert _ping(lab, vm33, "172.21.0.1")
    assert _ping(lab, vm3, "172.21.0.2")

    snap = collect(demo.scope("yy3", lab.prefix), docker="none")
    sandbox = snap.namespace(ns["yy3"][f"1-{demo.NETID}"])
    entry = next(e for e in sandbox.fdb if e.mac == "02:42:ac:15:00:01" and e.device == "vxlan1" and e.dst)
    assert (entry.dst, entry.state, "self" in entry.flags) == ("10.193.6.36", "permanent", True)
    neigh = next(n for n in snap.namespace(vm33).neighbours if n.ip == "172.21.0.1")
    assert (neigh.mac, neigh.state) == ("02:42:ac:15:00:01", ("PERMANENT",))


def test_demo_down_removes_every_namespace_it_made(lab: Lab) -> None:
    demo.up(lab.prefix)
    demo.down(lab.prefix)
    assert not [n for n in os.listdir("/run/netns") if n.startswith(lab.prefix)]
