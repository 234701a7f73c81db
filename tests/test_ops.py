"""Operations through the command language, on namespaces acting as hosts on a shared underlay."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from cluster import Cluster

from backend.ops.containers import host_ifname
from tui.cli import main

from conftest import Lab, sh

VTEP = {"ha": "10.50.0.1", "hb": "10.50.0.2"}


@pytest.fixture
def cluster(lab: Lab, tmp_path: Path) -> Cluster:
    return Cluster.build(lab, tmp_path, VTEP)


def _overlay(c: Cluster, *extra: str) -> None:
    c.ok("network", "create", "-d", "overlay", "prod", "--subnet", "172.21.0.0/16", "--gateway", "172.21.255.254",
         "--vni", "256", *extra)  # fmt: skip
    c.ok("container", "run", "vm3", "--host", "ha", "--net", "prod", "--ip", "172.21.0.1")
    c.ok("container", "run", "vm33", "--host", "hb", "--net", "prod", "--ip", "172.21.0.2")


def test_overlay_with_static_entries_pings_only_after_vxray_fdb_and_arp_add(cluster: Cluster) -> None:
    c = cluster
    _overlay(c, "--static")
    vm3, vm33 = c.ctr("ha", "vm3"), c.ctr("hb", "vm33")
    assert not c.ping(vm33, "172.21.0.1"), "no multicast, no learning, no entries: must fail"
    c.ok("fdb", "add", "02:42:ac:15:00:01", "--network", "prod", "dst", VTEP["ha"], "--host", "hb")
    c.ok("fdb", "add", "02:42:ac:15:00:02", "--network", "prod", "dst", VTEP["hb"], "--host", "ha")
    c.ok("arp", "add", "172.21.0.1", "02:42:ac:15:00:01", "--container", "vm33")
    c.ok("arp", "add", "172.21.0.2", "02:42:ac:15:00:02", "--container", "vm3")
    assert c.ping(vm33, "172.21.0.1") and c.ping(vm3, "172.21.0.2")


def test_overlay_sandbox_has_the_libnetwork_layout(cluster: Cluster) -> None:
    from backend.collect import collect
    from backend.netns import Scope

    c = cluster
    _overlay(c)
    snap = collect(Scope(host_netns=c.ns["ha"], netns=(f"{c.ns['ha']}-*",)), docker="none")
    sandbox = next(ns for ns in snap.namespaces if ns.name.startswith(f"{c.ns['ha']}-1-"))
    vx = sandbox.link("vxlan1")
    assert (vx.vxlan.vni, vx.vxlan.dstport, vx.vxlan.local, vx.mtu) == (256, 4789, VTEP["ha"], 1450)
    assert (vx.vxlan.learning, vx.vxlan.proxy, vx.vxlan.l2miss, vx.vxlan.l3miss) == (False, True, True, True)
    assert (vx.vxlan.underlay.netns_name, vx.vxlan.underlay.ifname) == ("host", "eth0")
    assert [a.cidr for a in sandbox.link("br0").addresses if a.scope == "global"] == ["172.21.255.254/16"]
    assert [p.name for p in sandbox.bridges()["br0"]] == ["vxlan1", host_ifname("vm3", "prod")]


def test_fdb_sync_makes_the_overlay_work_in_one_command_and_dry_run_changes_nothing(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    c = cluster
    _overlay(c)
    capsys.readouterr()
    c.ok("fdb", "sync", "prod", "--dry-run")
    plan = capsys.readouterr().out
    assert "bridge fdb replace 02:42:ac:15:00:02 dev vxlan1 dst 10.50.0.2" in plan
    assert "ip neigh replace 172.21.0.1 lladdr 02:42:ac:15:00:01 dev vxlan1 nud permanent" in plan
    assert not c.ping(c.ctr("hb", "vm33"), "172.21.0.1")
    c.ok("fdb", "sync", "prod")
    assert c.ping(c.ctr("hb", "vm33"), "172.21.0.1") and c.ping(c.ctr("ha", "vm3"), "172.21.0.2")


def test_learning_overlay_floods_to_every_vtep_after_sync(cluster: Cluster) -> None:
    c = cluster
    _overlay(c, "--learning")
    c.ok("fdb", "sync", "prod")
    sandbox = c.sandbox("ha")
    flood = c.lab.run(sandbox, "bridge", "fdb", "show", "dev", "vxlan1").stdout
    assert f"00:00:00:00:00:00 dst {VTEP['hb']}" in flood
    assert c.ping(c.ctr("ha", "vm3"), "172.21.0.2")


def test_bridge_network_with_published_port_is_reached_from_another_namespace(cluster: Cluster) -> None:
    c = cluster
    c.ok("network", "create", "-d", "bridge", "bridge1", "--subnet", "172.17.0.0/16", "--host", "ha",
         "-o", "bridge_name=docker0")  # fmt: skip
    c.ok("container", "run", "web1", "--host", "ha", "--net", "bridge1")
    c.ok("port", "add", "web1", "8081:80")
    server = subprocess.Popen(["ip", "netns", "exec", c.ctr("ha", "web1"), "nc", "-l", "-p", "80"],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    c.lab.procs.append(server)
    deadline = time.monotonic() + 5
    while c.lab.run(c.ns["hb"], "sh", "-c", "echo hello | nc -w 1 -q 1 10.50.0.1 8081", check=False).returncode:
        assert time.monotonic() < deadline, "10.50.0.1:8081 never reached web1:80"
        time.sleep(0.1)
    assert server.communicate(timeout=5)[0].strip() == "hello"
    rules = c.lab.run(c.ns["ha"], "iptables-nft-save").stdout
    assert "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8081 -j DNAT --to-destination 172.17.0.2:80" in rules
    assert "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE" in rules


def test_macvlan_containers_on_one_parent_reach_each_other(cluster: Cluster) -> None:
    c = cluster
    c.ok("network", "create", "-d", "macvlan", "mv", "--subnet", "192.168.50.0/24", "--host", "ha",
         "-o", "parent=eth0")  # fmt: skip
    c.ok("container", "run", "m1", "--host", "ha", "--net", "mv")
    c.ok("container", "run", "m2", "--host", "ha", "--net", "mv")
    kind = c.lab.run(c.ctr("ha", "m1"), "ip", "-d", "link", "show", "eth0").stdout
    assert "macvlan mode bridge" in kind
    assert c.ping(c.ctr("ha", "m1"), "192.168.50.3")


def _kernel_has_vlan(lab: Lab) -> bool:
    probe = lab.netns("vlanprobe")
    lab.veth(probe, "p0", probe, "p1")
    return sh("ip", "-n", probe, "link", "add", "link", "p0", "name", "p0.7", "type", "vlan", "id", "7",
              check=False).returncode == 0  # fmt: skip


def test_macvlan_on_a_vlan_sub_interface_creates_it_when_asked(cluster: Cluster) -> None:
    c = cluster
    if not _kernel_has_vlan(c.lab):
        pytest.skip("this kernel has no 802.1Q support (CONFIG_VLAN_8021Q)")
    c.ok("network", "create", "-d", "macvlan", "mv10", "--subnet", "192.168.10.0/24", "--host", "ha",
         "-o", "parent=eth0.10")  # fmt: skip
    c.ok("container", "run", "v1", "--host", "ha", "--net", "mv10")
    assert "vlan protocol 802.1Q id 10" in c.lab.run(c.ns["ha"], "ip", "-d", "link", "show", "eth0.10").stdout
    c.ok("network", "rm", "mv10", "--force")
    assert c.lab.run(c.ns["ha"], "ip", "link", "show", "eth0.10", check=False).returncode != 0


def test_failure_half_way_rolls_back_namespace_store_and_address(cluster: Cluster) -> None:
    c = cluster
    c.ok("network", "create", "br1", "--subnet", "10.77.0.0/24", "--host", "ha")
    # occupy the bridge-side veth name: the run fails after its namespace and address were made
    c.lab.ip(c.ns["ha"], "link", "add", host_ifname("web9", "br1"), "type", "bridge")
    assert c.vx("container", "run", "web9", "--host", "ha", "--net", "br1") == 2
    assert not os.path.exists(f"/run/netns/{c.ctr('ha', 'web9')}")
    assert c.vx("container", "inspect", "web9") == 2
    c.lab.ip(c.ns["ha"], "link", "del", host_ifname("web9", "br1"))
    c.ok("container", "run", "web9", "--host", "ha", "--net", "br1", "--ip", "10.77.0.2")  # the address is free


def test_network_rm_refuses_while_endpoints_exist_unless_forced(cluster: Cluster) -> None:
    c = cluster
    _overlay(c)
    assert c.vx("network", "rm", "prod") == 2
    c.ok("network", "rm", "prod", "--force")
    sandboxes = tuple(f"{ns}-1-" for ns in c.ns.values())
    assert not [n for n in os.listdir("/run/netns") if n.startswith(sandboxes)]
    c.ok("network", "create", "-d", "overlay", "again", "--subnet", "172.21.0.0/16", "--vni", "256")


def test_network_modes_none_host_and_container_share_as_docker_does(cluster: Cluster) -> None:
    c = cluster
    c.ok("network", "create", "br1", "--subnet", "10.77.0.0/24", "--host", "ha")
    c.ok("container", "run", "c1", "--host", "ha", "--net", "br1")
    c.ok("container", "run", "joined", "--host", "ha", "--network-mode", "container:c1")
    c.ok("container", "run", "alone", "--host", "ha", "--network-mode", "none")
    c.ok("container", "run", "hostnet", "--host", "ha", "--network-mode", "host")
    links = c.lab.run(c.ctr("ha", "alone"), "ip", "-br", "link").stdout.split()
    assert links[0] == "lo" and "eth0" not in " ".join(links)
    assert c.vx("container", "rm", "c1") == 2  # joined still uses its namespace
    c.ok("container", "rm", "joined")
    c.ok("container", "rm", "c1")
    assert not os.path.exists(f"/run/netns/{c.ctr('ha', 'c1')}")


def test_user_bridges_are_isolated_until_connect_gives_a_second_interface(cluster: Cluster) -> None:
    c = cluster
    c.ok("network", "create", "a", "--subnet", "10.77.1.0/24", "--host", "ha")
    c.ok("network", "create", "b", "--subnet", "10.77.2.0/24", "--host", "ha")
    c.ok("container", "run", "x", "--host", "ha", "--net", "a")
    c.ok("container", "run", "y", "--host", "ha", "--net", "b")
    assert c.ping(c.ctr("ha", "x"), "10.77.1.1"), "its own gateway answers"
    assert not c.ping(c.ctr("ha", "x"), "10.77.2.2"), "DOCKER-ISOLATION drops bridge-to-bridge traffic"
    c.ok("network", "connect", "b", "x", "--ip", "10.77.2.9")
    assert "10.77.2.9/24" in c.lab.run(c.ctr("ha", "x"), "ip", "-br", "addr", "show", "eth1").stdout
    assert c.ping(c.ctr("ha", "x"), "10.77.2.2")
    c.ok("network", "disconnect", "b", "x")
    assert c.lab.run(c.ctr("ha", "x"), "ip", "link", "show", "eth1", check=False).returncode != 0
    c.ok("network", "connect", "b", "x")
    c.ok("network", "disconnect", "a", "x")
    c.ok("network", "connect", "a", "x")  # eth0 is free again, eth1 is taken: no name clash
    assert "10.77.1." in c.lab.run(c.ctr("ha", "x"), "ip", "-br", "addr", "show", "eth0").stdout


def _ours(c: Cluster) -> list[str]:
    """This test's namespaces (other runs on the machine may add theirs meanwhile)."""
    return sorted(n for n in os.listdir("/run/netns") if n.startswith(c.lab.prefix))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BAD = [
    (["network", "create", "n1", "--subnet", "10.0.0.0/33", "--host", "ha"], "10.0.0.0/33"),
    (["network", "create", "n1", "--subnet", "10.0.0.1/24", "--host", "ha"], "10.0.0.1/24"),
    (["network", "create", "bad name", "--subnet", "10.0.0.0/24", "--host", "ha"], "bad name"),
    (["network", "create", "-d", "overlay", "n1", "--subnet", "10.9.0.0/24", "--vni", "0"], "'0'"),
    (["network", "create", "-d", "overlay", "n1", "--subnet", "10.9.0.0/24", "--vni", "16777216"], "16777216"),
    (["network", "create", "n1", "--subnet", "10.9.0.0/24", "--gateway", "10.8.0.1", "--host", "ha"], "10.8.0.1"),
    (["network", "create", "prod", "--subnet", "10.9.0.0/24", "--host", "ha"], "prod"),
    (["network", "create", "-d", "overlay", "n1", "--subnet", "172.21.3.0/24"], "172.21.0.0/16"),
    (["network", "create", "n1", "--subnet", "10.9.0.0/24", "--host", "nohost"], "nohost"),
    (["network", "create", "-d", "macvlan", "n1", "--subnet", "10.9.0.0/24", "--host", "ha", "-o", "parent=nic9"],
     "nic9"),
    (["container", "run", "vm9", "--host", "ha", "--net", "prod", "--ip", "10.1.1.1"], "10.1.1.1"),
    (["container", "run", "vm9", "--host", "ha", "--net", "prod", "--ip", "172.21.0.1"], "172.21.0.1"),
    (["container", "run", "vm9", "--host", "ha", "--net", "prod", "--mac", "02:42:zz:00:00:01"], "02:42:zz:00:00:01"),
    (["container", "run", "vm9", "--host", "ha", "--net", "nonet"], "nonet"),
    (["container", "run", "vm3", "--host", "ha"], "vm3"),
    (["fdb", "add", "02:42:ac:15:00:0g", "--network", "prod", "dst", "10.50.0.2", "--host", "ha"], "02:42:ac:15:00:0g"),
    (["fdb", "add", "02:42:ac:15:00:09", "--network", "prod", "dst", "10.50.0.300", "--host", "ha"], "10.50.0.300"),
    (["fdb", "add", "02:42:ac:15:00:09", "dev", "vxlan9", "dst", "10.50.0.2", "--host", "ha"], "vxlan9"),
    (["fdb", "add", "02:42:ac:15:00:09", "dev", "eth0", "dst", "10.50.0.2", "--netns", "nons", "--host", "ha"],
     "nons"),
    (["arp", "add", "172.21.0.9", "02:42:ac:15:00:09", "--container", "ghost"], "ghost"),
    (["arp", "add", "172.21.0.300", "02:42:ac:15:00:09", "--container", "vm3"], "172.21.0.300"),
    (["port", "add", "vm3", "80:99999"], "99999"),
    (["port", "add", "vm3", "8080"], "8080"),
    (["host", "set", "ha", "ip_forward=2"], "'2'"),
    (["host", "set", "ha", "ip_forward=1", "udp.99999=drop"], "99999"),
    (["host", "set", "ha", "mtu.eth9=1400"], "eth9"),
    (["host", "set", "ha", "colour=blue"], "colour"),
    (["host", "set", "ha", "forward_policy=REJECT"], "REJECT"),
    (["network", "repair", "nonet"], "nonet"),
    (["network", "create", "n1", "--subnet", "10.9.0.0/24", "--host", "ha", "-o", "nic=eth7"], "eth7"),
    (["network", "create", "-d", "flannel", "f1", "--subnet", "10.70.0.0/16", "-o", "leases=ha=10.80.0.0/24"],
     "10.80.0.0/24"),
    (["network", "create", "-d", "flannel", "f1", "--subnet", "10.70.0.0/16", "-o", "leases=hz=10.70.1.0/24"],
     "hz"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "named"), BAD, ids=[" ".join(a[:2]) + f" {n}" for a, n in BAD])
def test_bad_input_is_one_line_naming_the_value_and_changes_nothing(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], argv: list[str], named: str
) -> None:
    c = cluster
    _overlay(c)
    from backend.store.registry import open_store

    store = open_store(c.store)
    before_store = store.kv.items("")
    before_ns = _ours(c)
    before_links = {h: c.lab.run(ns, "ip", "-br", "link").stdout for h, ns in c.ns.items()}
    capsys.readouterr()
    assert c.vx(*argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0], err
    assert store.kv.items("") == before_store
    assert _ours(c) == before_ns
    assert {h: c.lab.run(ns, "ip", "-br", "link").stdout for h, ns in c.ns.items()} == before_links
    store.close()


def test_unreachable_store_is_a_clear_error_and_nothing_is_built(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"consul://127.0.0.1:{_closed_port()}"
    before = _ours(cluster)
    assert main(["--store", url, "network", "create", "n1", "--subnet", "10.9.0.0/24", "--host", "ha"]) == 2
    assert capsys.readouterr().err.strip() == f"vxray: store {url} unreachable: ConnectionError"
    assert _ours(cluster) == before
