"""Bridges, veths, macvlans, routes, neighbours and sysctls, read back from the kernel."""

from __future__ import annotations

import os
import time

from backend import codec
from backend.collect import collect
from backend.netns import NsHandle, Scope, open_handles

from conftest import Lab, sh


def _scope(lab: Lab, host: str) -> Scope:
    return Scope(host_netns=host, netns=(f"{lab.prefix}*",))


def _bridge_lab(lab: Lab) -> tuple[str, str, str]:
    host, c1, c2 = lab.netns("host"), lab.netns("c1"), lab.netns("c2")
    lab.ip(host, "link", "add", "br-test", "type", "bridge")
    lab.ip(host, "addr", "add", "172.30.0.1/24", "dev", "br-test")
    lab.ip(host, "link", "set", "br-test", "up")
    for i, ctr in enumerate((c1, c2), start=1):
        lab.veth(host, f"vh{i}", ctr, "eth0")
        lab.ip(host, "link", "set", f"vh{i}", "master", "br-test")
        lab.ip(ctr, "addr", "add", f"172.30.0.{i + 1}/24", "dev", "eth0")
        lab.ip(ctr, "route", "add", "default", "via", "172.30.0.1")
    return host, c1, c2


def test_bridge_ports_lead_to_veth_peers_in_container_namespaces(lab: Lab) -> None:
    host, c1, c2 = _bridge_lab(lab)
    snap = collect(_scope(lab, host), docker="none")
    ports = snap.namespace("host").bridges()["br-test"]
    assert [(p.name, p.peer.netns_name, p.peer.ifname) for p in ports] == [("vh1", c1, "eth0"), ("vh2", c2, "eth0")]
    assert len(snap.veth_pairs()) == 2
    c1_eth0 = snap.namespace(c1).link("eth0")
    assert (c1_eth0.peer.netns_name, c1_eth0.peer.ifname) == ("host", "vh1")


def test_routes_with_gateway_device_and_source_are_read(lab: Lab) -> None:
    host, c1, _ = _bridge_lab(lab)
    snap = collect(_scope(lab, host), docker="none")
    routes = {r.dst: r for r in snap.namespace(c1).routes}
    assert (routes["default"].gateway, routes["default"].device) == ("172.30.0.1", "eth0")
    assert (routes["172.30.0.0/24"].source, routes["172.30.0.0/24"].scope) == ("172.30.0.2", "link")


def test_neighbour_learned_by_real_ping_is_reachable(lab: Lab) -> None:
    host, c1, _ = _bridge_lab(lab)
    lab.run(c1, "ping", "-c", "1", "-W", "2", "172.30.0.3")
    snap = collect(_scope(lab, host), docker="none")
    neigh = next(n for n in snap.namespace(c1).neighbours if n.ip == "172.30.0.3")
    c2_mac = snap.namespace(f"{lab.prefix}c2").link("eth0").mac
    assert neigh.mac == c2_mac and neigh.state[0] in ("REACHABLE", "STALE", "DELAY")
    learned = [e for e in snap.namespace("host").fdb if e.mac == c2_mac and e.master == "br-test"]
    assert learned and learned[0].device == "vh2" and learned[0].state == "dynamic"


def test_sysctls_are_read_per_namespace(lab: Lab) -> None:
    host, c1, _ = _bridge_lab(lab)
    lab.run(host, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.vh1.rp_filter=2")
    lab.run(c1, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1")
    snap = collect(_scope(lab, host), docker="none")
    h, c = snap.namespace("host").sysctls, snap.namespace(c1).sysctls
    assert (h.ip_forward, h.rp_filter["vh1"]) == (True, 2)
    assert (c.ip_forward, c.rp_filter_all) == (False, 1)


def test_macvlan_parent_is_resolved_after_move_to_another_namespace(lab: Lab) -> None:
    host, ctr, peer = lab.netns("host"), lab.netns("mv"), lab.netns("peer")
    lab.veth(host, "eth1", peer, "p0")
    lab.ip(host, "link", "add", "mv0", "link", "eth1", "type", "macvlan", "mode", "bridge")
    lab.ip(host, "link", "set", "mv0", "netns", ctr)
    snap = collect(_scope(lab, host), docker="none")
    mv0 = snap.namespace(ctr).link("mv0")
    assert (mv0.kind, mv0.macvlan_mode) == ("macvlan", "bridge")
    assert (mv0.parent.netns_name, mv0.parent.ifname) == ("host", "eth1")


def test_namespace_held_only_by_a_process_is_found_and_labelled(lab: Lab) -> None:
    proc = lab.spawn("unshare", "--net", "sleep", "60")
    deadline = time.monotonic() + 5
    while os.stat(f"/proc/{proc.pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino:
        assert time.monotonic() < deadline, "unshare did not enter a new namespace"
        time.sleep(0.02)
    inode = os.stat(f"/proc/{proc.pid}/ns/net").st_ino
    snap = collect(Scope(), docker="none")
    ns = snap.namespace(f"net:[{inode}]")
    assert ns is not None and ns.kind == "process"
    assert ns.name == f"pid {proc.pid} (sleep)" and proc.pid in ns.pids
    assert ns.link("lo") is not None


def test_netns_dir_scope_finds_docker_style_bind_mounts(lab: Lab) -> None:
    host = lab.netns("host")
    src = lab.netns("sbx")
    directory = f"/run/{lab.prefix}exec/netns"
    os.makedirs(directory)
    sandbox = os.path.join(directory, "1-0123456789")
    open(sandbox, "w").close()
    lab.cleanups.append(("rm", "-rf", f"/run/{lab.prefix}exec"))
    lab.cleanups.append(("umount", sandbox))
    sh("mount", "--bind", f"/run/netns/{src}", sandbox)
    snap = collect(Scope(host_netns=host, netns_dirs=(directory,)), docker="none")
    assert [(ns.kind, ns.name) for ns in snap.namespaces] == [("host", "host"), ("overlay-sandbox", "1-0123456789")]


def test_json_round_trip_of_a_real_snapshot_is_lossless(lab: Lab) -> None:
    host, _, _ = _bridge_lab(lab)
    snap = collect(_scope(lab, host), docker="none")
    assert codec.loads(codec.dumps(snap)) == snap


def test_namespace_gone_before_it_could_be_opened_is_skipped_with_a_note(lab: Lab) -> None:
    ns = lab.netns("gone")
    handle = NsHandle(0, os.stat(f"/run/netns/{ns}").st_ino, "named", ns, paths=[f"/run/netns/{ns}"])
    sh("ip", "netns", "del", ns)
    notes: list[str] = []
    assert open_handles([handle], notes) == []
    assert notes == [f"namespace {ns} disappeared during the scan, skipped"]


def test_a_re_read_narrowed_to_changed_namespaces_keeps_the_others_tables(lab: Lab) -> None:
    host, c1, c2 = _bridge_lab(lab)
    first = collect(_scope(lab, host), docker="none")
    lab.ip(c1, "neigh", "add", "172.30.0.99", "lladdr", "02:00:00:00:00:99", "dev", "eth0", "nud", "permanent")
    lab.ip(c2, "neigh", "add", "172.30.0.98", "lladdr", "02:00:00:00:00:98", "dev", "eth0", "nud", "permanent")
    lab.ip(c2, "link", "set", "eth0", "mtu", "1400")
    second = collect(_scope(lab, host), docker="none", previous=first, changed={c1})
    assert "172.30.0.99" in {n.ip for n in second.namespace(c1).neighbours}, "c1 changed: read whole"
    assert "172.30.0.98" not in {n.ip for n in second.namespace(c2).neighbours}, "c2 said unchanged: table kept"
    assert second.namespace(c2).link("eth0").mtu == 1400, "links are always read: references must resolve"
    assert second.namespace("host").bridges() == collect(_scope(lab, host), docker="none").namespace("host").bridges()


def test_ipv6_forwarding_and_accept_ra_are_read_per_namespace(lab: Lab) -> None:
    on, off = lab.netns("v6on"), lab.netns("v6off")
    lab.run(on, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    lab.run(on, "sysctl", "-qw", "net.ipv6.conf.all.accept_ra=2")
    snap = collect(Scope(host_netns=on, netns=(off,)), docker="none")
    got = {ns.name: (ns.sysctls.ip6_forward, ns.sysctls.accept_ra) for ns in snap.namespaces}
    assert got == {"host": (True, 2), off: (False, 1)}
