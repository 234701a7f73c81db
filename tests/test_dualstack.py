"""Dual-stack networks (IPv4 and IPv6 subnets side by side) built by the operations, checked with real
``ping`` and ``ping -6`` between namespaces acting as hosts on an IPv4 underlay."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
from cluster import Cluster

from backend.codec import decode
from backend.lab import runner, spec
from backend.records import Endpoint, NetworkRecord
from backend.store.registry import open_store
from tui.cli import main

from conftest import Lab

VTEP = {"ha": "10.60.0.1", "hb": "10.60.0.2"}
MAC = {"vm3": "02:42:ac:15:00:01", "vm33": "02:42:ac:15:00:02"}


@pytest.fixture
def cluster(lab: Lab, tmp_path: Path) -> Cluster:
    return Cluster.build(lab, tmp_path, VTEP)


def _overlay(c: Cluster, *extra: str) -> None:
    c.ok("network", "create", "-d", "overlay", "prod", "--subnet", "172.21.0.0/16", "--subnet", "fd00:21::/64",
         "--gateway", "172.21.255.254", "--vni", "256", *extra)  # fmt: skip
    c.ok("container", "run", "vm3", "--host", "ha", "--net", "prod", "--ip", "172.21.0.1", "--ip6", "fd00:21::3")
    c.ok("container", "run", "vm33", "--host", "hb", "--net", "prod", "--ip", "172.21.0.2")  # IPv6: the first free


def test_dual_stack_overlay_gives_containers_ipv6_and_fdb_sync_makes_ping6_cross_hosts(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    c = cluster
    _overlay(c)
    vm3, vm33 = c.ctr("ha", "vm3"), c.ctr("hb", "vm33")
    assert "fd00:21::3/64" in c.lab.run(vm3, "ip", "-6", "addr", "show", "eth0").stdout
    # the gateway took fd00:21::1, the first address; vm33 the next free one
    assert "fd00:21::2/64" in c.lab.run(vm33, "ip", "-6", "addr", "show", "eth0").stdout
    assert "fd00:21::1/64" in c.lab.run(c.sandbox("ha"), "ip", "-6", "addr", "show", "br0").stdout
    assert not c.ping(vm33, "fd00:21::3"), "no multicast, no learning, no entries: must fail"
    capsys.readouterr()
    c.ok("fdb", "sync", "prod", "--dry-run")
    plan = capsys.readouterr().out
    assert "ip -6 neigh replace fd00:21::3 lladdr 02:42:ac:15:00:01 dev vxlan1 nud permanent" in plan
    assert not c.ping(vm33, "fd00:21::3"), "--dry-run changes nothing"
    c.ok("fdb", "sync", "prod")
    proxy = c.lab.run(c.sandbox("hb"), "ip", "-6", "neigh", "show", "dev", "vxlan1").stdout
    assert "fd00:21::3 lladdr 02:42:ac:15:00:01 PERMANENT" in proxy
    assert c.ping(vm33, "fd00:21::3") and c.ping(vm3, "fd00:21::2")
    assert c.ping(vm33, "172.21.0.1") and c.ping(vm3, "172.21.0.2")
    # the IPv6 proxy entry lost (plain ip, as a flush would): IPv4 still crosses, IPv6 not; repair puts it back
    c.lab.run(c.sandbox("hb"), "ip", "-6", "neigh", "del", "fd00:21::3", "dev", "vxlan1")
    c.lab.run(vm33, "ip", "-6", "neigh", "flush", "dev", "eth0")
    assert not c.ping(vm33, "fd00:21::3") and c.ping(vm33, "172.21.0.1")
    c.ok("network", "repair", "prod")
    assert c.ping(vm33, "fd00:21::3")


def test_arp_add_of_an_ipv6_address_writes_a_permanent_ndp_entry_that_carries_ping6(cluster: Cluster) -> None:
    c = cluster
    _overlay(c, "--static")
    vm3, vm33 = c.ctr("ha", "vm3"), c.ctr("hb", "vm33")
    c.ok("fdb", "add", MAC["vm3"], "--network", "prod", "dst", VTEP["ha"], "--host", "hb")
    c.ok("fdb", "add", MAC["vm33"], "--network", "prod", "dst", VTEP["hb"], "--host", "ha")
    assert not c.ping(vm33, "fd00:21::3"), "the neighbour solicitation has nobody to answer it"
    c.ok("arp", "add", "fd00:21::3", MAC["vm3"], "--container", "vm33")
    c.ok("arp", "add", "fd00:21:0::2", MAC["vm33"], "--container", "vm3")  # any spelling: the kernel's is kept
    assert "fd00:21::3 dev eth0 lladdr 02:42:ac:15:00:01 PERMANENT" in c.lab.run(vm33, "ip", "-6", "neigh").stdout
    assert c.ping(vm33, "fd00:21::3") and c.ping(vm3, "fd00:21::2")
    assert not c.ping(vm33, "172.21.0.1"), "NDP entries do nothing for IPv4: it still needs ARP"
    c.ok("arp", "del", "fd00:21::3", "--container", "vm33")
    assert "fd00:21::3 " not in c.lab.run(vm33, "ip", "-6", "neigh", "show", "nud", "permanent").stdout
    c.lab.run(vm33, "ip", "-6", "neigh", "flush", "dev", "eth0")
    assert not c.ping(vm33, "fd00:21::3")
    # the same entry in hb's sandbox, on vxlan1: its proxy answers vm33's neighbour solicitation
    c.ok("arp", "add", "fd00:21::3", MAC["vm3"], "--netns", c.sandbox("hb"), "dev", "vxlan1", "--host", "hb")
    assert c.ping(vm33, "fd00:21::3")


def test_dual_stack_bridge_routes_ipv6_off_the_host_through_its_gateway_and_masquerade(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    c = cluster
    for host, last in (("ha", "1"), ("hb", "2")):  # an IPv6 underlay beside the IPv4 one, for traffic off the bridge
        c.lab.ip(c.ns[host], "addr", "add", f"fd99::{last}/64", "dev", "eth0", "nodad")
    c.ok("network", "create", "br6", "--subnet", "10.88.0.0/24", "--subnet", "fd00:88::/64", "--gateway",
         "fd00:88::fffe", "--host", "ha", "-o", "bridge_name=br6")  # fmt: skip
    c.ok("container", "run", "w1", "--host", "ha", "--net", "br6")
    c.ok("container", "run", "w2", "--host", "ha", "--net", "br6", "--ip6", "fd00:88::99")
    w1 = c.ctr("ha", "w1")
    assert "default via fd00:88::fffe dev eth0" in c.lab.run(w1, "ip", "-6", "route").stdout
    assert c.lab.run(c.ns["ha"], "sysctl", "-n", "net.ipv6.conf.all.forwarding").stdout.strip() == "1"
    rules = c.lab.run(c.ns["ha"], "ip6tables-nft-save").stdout
    assert "-A POSTROUTING -s fd00:88::/64 ! -o br6 -j MASQUERADE" in rules
    assert c.ping(w1, "fd00:88::99") and c.ping(w1, "fd00:88::fffe")
    assert c.ping(w1, "fd99::2"), "forwarded by ha and masqueraded: hb needs no route back"
    capsys.readouterr()
    c.ok("host", "set", "ha", "ip6_forward=0")
    assert capsys.readouterr().out.strip() == "ha: sysctl -w net.ipv6.conf.all.forwarding=0"
    assert not c.ping(w1, "fd99::2") and c.ping(w1, "fd00:88::99"), "routed IPv6 stops, bridged IPv6 does not"
    c.ok("host", "set", "ha", "ip6_forward=1")
    assert c.ping(w1, "fd99::2")
    c.ok("network", "rm", "br6", "--force")
    assert "fd00:88::/64" not in c.lab.run(c.ns["ha"], "ip6tables-nft-save").stdout


def test_macvlan_containers_on_a_dual_stack_network_reach_each_other_over_ipv6(cluster: Cluster) -> None:
    c = cluster
    c.ok("network", "create", "-d", "macvlan", "mv6", "--subnet", "192.168.50.0/24", "--subnet", "fd00:50::/64",
         "--host", "ha", "-o", "parent=eth0")  # fmt: skip
    c.ok("container", "run", "m1", "--host", "ha", "--net", "mv6")
    c.ok("container", "run", "m2", "--host", "ha", "--net", "mv6")
    assert "fd00:50::3/64" in c.lab.run(c.ctr("ha", "m2"), "ip", "-6", "addr", "show", "eth0").stdout
    assert c.ping(c.ctr("ha", "m1"), "fd00:50::3") and c.ping(c.ctr("ha", "m2"), "fd00:50::2")


def _state(c: Cluster) -> tuple[object, ...]:
    """Everything a bad command could have touched: the store's keys and values, our namespaces, every link,
    address and neighbour in them."""
    store = open_store(c.store)
    items = {key: value for key, (value, _revision) in store.kv.items("").items()}  # a rollback writes back the same
    store.close()
    names = sorted(n for n in os.listdir("/run/netns") if n.startswith(c.lab.prefix))
    kernel = {n: [c.lab.run(n, *cmd).stdout for cmd in (("ip", "-br", "link"), ("ip", "-br", "addr"),
                                                         ("ip", "neigh"), ("ip", "-6", "neigh", "show", "nud",
                                                                           "permanent"))]
              for n in names}  # fmt: skip
    return items, names, kernel


BAD = [
    (["network", "create", "n6", "--subnet", "10.9.0.0/24", "--subnet", "fd00:9::/64", "--subnet", "fd00:9::/64",
      "--host", "ha"], "fd00:9::/64"),
    (["network", "create", "n6", "--subnet", "10.9.0.0/24", "--subnet", "fd00:9::1/128", "--host", "ha"],
     "fd00:9::1/128"),
    (["network", "create", "n6", "--subnet", "10.9.0.0/24", "--subnet", "fd00:9::/64", "--subnet", "fd00:9::/80",
      "--host", "ha"], "fd00:9::/80"),
    (["network", "create", "n6", "--subnet", "fd00:9::/64", "--host", "ha"], "IPv4"),
    (["network", "create", "n6", "--subnet", "10.9.0.0/24", "--subnet", "fe80::/64", "--host", "ha"], "fe80::/64"),
    (["network", "create", "n6", "--subnet", "10.9.0.0/24", "--subnet", "fd00:9::/64", "--gateway", "fd00:8::1",
      "--host", "ha"], "fd00:8::1"),
    (["network", "create", "n6", "--subnet", "10.9.0.0/24", "--subnet", "fd00:9::/64", "--host", "ha",
      "--gateway", "fd00:9::1", "--gateway", "fd00:9::2"], "fd00:9::2"),
    (["network", "create", "-d", "flannel", "f6", "--subnet", "10.70.0.0/16", "--subnet", "fd00:70::/64"],
     "fd00:70::/64"),
    (["network", "create", "-d", "overlay", "o6", "--subnet", "172.30.0.0/16", "--subnet", "fd00:21:0:0:1::/80"],
     "fd00:21::/64"),  # overlaps prod's IPv6 subnet: found in the store after the IPv4 subnet was claimed
    (["container", "run", "c9", "--host", "ha", "--net", "prod", "--ip6", "fd00:99::9"], "fd00:99::9"),
    (["container", "run", "c9", "--host", "ha", "--net", "prod", "--ip6", "fd00:21::"], "fd00:21::"),
    (["container", "run", "c9", "--host", "ha", "--net", "prod", "--ip6", "fd00:21::zz"], "fd00:21::zz"),
    (["container", "run", "c9", "--host", "ha", "--ip6", "fd00:21::9"], "--ip6"),
    (["container", "run", "c9", "--host", "ha", "--net", "prod", "--ip6", "fd00:21::3"], "fd00:21::3"),  # vm3's
    (["network", "connect", "v4only", "vm3", "--ip6", "fd00:21::9"], "v4only"),
    (["arp", "add", "fd00:21::g", MAC["vm3"], "--container", "vm33"], "fd00:21::g"),
    (["arp", "add", "ff02::1", MAC["vm3"], "--container", "vm33"], "ff02::1"),
    (["arp", "add", "fd00:77::1", MAC["vm3"], "--container", "vm33"], "fd00:77::1"),  # on no device's subnet
]  # fmt: skip


@pytest.mark.parametrize(("argv", "named"), BAD, ids=[f"{' '.join(a[:2])} {n}" for a, n in BAD])
def test_bad_dual_stack_input_is_one_line_naming_the_value_and_changes_nothing(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], argv: list[str], named: str
) -> None:
    c = cluster
    _overlay(c)
    c.ok("network", "create", "v4only", "--subnet", "10.44.0.0/24", "--host", "ha")
    before = _state(c)
    capsys.readouterr()
    assert c.vx(*argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vxray: ") and named in err[0], err
    assert _state(c) == before


def test_a_taken_ipv6_address_rolls_back_the_ipv4_claim_and_the_namespace(cluster: Cluster) -> None:
    c = cluster
    _overlay(c)
    assert c.vx("container", "run", "c9", "--host", "ha", "--net", "prod", "--ip", "172.21.0.9",
                "--ip6", "fd00:21::3") == 2  # fmt: skip
    assert not os.path.exists(f"/run/netns/{c.ctr('ha', 'c9')}")
    c.ok("container", "run", "c9", "--host", "ha", "--net", "prod", "--ip", "172.21.0.9", "--ip6", "fd00:21::9")
    c.ok("container", "rm", "c9")  # its addresses are free again
    c.ok("container", "run", "c10", "--host", "ha", "--net", "prod", "--ip", "172.21.0.9", "--ip6", "fd00:21::9")


def test_store_records_written_before_ipv6_decode_as_ipv4_only() -> None:
    old_net = b'{"name":"prod","id":"ab","driver":"overlay","subnet":"172.21.0.0/16","gateway":"172.21.255.254"}'
    net = decode(old_net, NetworkRecord, "store key networks/prod")
    assert (net.subnets6, net.gateways6) == ((), ())
    old_ep = (b'{"container":"vm3","network":"prod","host":"yy2","ifname":"eth0","mac":"02:42:ac:15:00:01",'
              b'"ip":"172.21.0.1","host_ifname":"vx1"}')  # fmt: skip
    assert decode(old_ep, Endpoint, "store key endpoints/prod/vm3").ip6 is None


def test_a_dual_stack_lab_file_round_trips_and_names_a_bad_ipv6_address_with_its_line() -> None:
    lab, _ = runner.load("overlay-dualstack")
    prod = lab.networks[0]
    assert (prod.subnet, prod.subnets6, prod.gateways6) == ("172.21.0.0/16", ("fd00:21::/64",), ("fd00:21::ffff",))
    assert [a.ip6 for c in lab.containers for a in c.networks] == ["fd00:21::1", "fd00:21::2"]
    assert spec.parse(spec.dump(lab)) == lab
    text = spec.dump(lab).replace('ip6 = "fd00:21::2"', 'ip6 = "fd00:22::2"')
    with pytest.raises(spec.VxrayError, match=r"lab.toml:\d+: containers\[1\].networks\[0\].ip6: .*fd00:22::2"):
        spec.parse(text)


LAB = """[lab]
name = "ds"
[[hosts]]
name = "h1"
underlay = "10.1.0.1/24"{engine}
[[networks]]
name = "n"
driver = "{driver}"
subnet = {subnet}
"""


@pytest.mark.parametrize(("driver", "subnet", "engine", "named"), [
    ("overlay", '["172.21.0.0/16", "fd00:21::/64", "fd00:21::/64"]', "", "fd00:21::/64 given twice"),
    ("overlay", '["172.21.0.0/16", "172.22.0.0/16"]', "", "exactly one IPv4 subnet"),
    ("flannel", '["172.21.0.0/16", "fd00:21::/64"]', "", "flannel networks are IPv4 only"),
    ("overlay", '["172.21.0.0/16", "fd00:21::/64"]', '\nengine = "docker"', "Docker hosts' networks are IPv4 only"),
    ("overlay", '["172.21.0.0/16", 7]', "", "expected a list of strings"),
])  # fmt: skip
def test_a_lab_file_names_a_bad_dual_stack_network_on_its_subnet_line(
    driver: str, subnet: str, engine: str, named: str
) -> None:
    with pytest.raises(spec.VxrayError, match=r"lab.toml:\d+: networks\[0\]\.subnet: ") as info:
        spec.parse(LAB.format(driver=driver, subnet=subnet, engine=engine))
    assert named in str(info.value)


def test_overlay_dualstack_scenario_is_healed_for_ping6_by_its_fix(lab: Lab, home: Path) -> None:
    name = f"{lab.prefix}ds"
    assert main(["lab", "up", "overlay-dualstack", "--name", name]) == 0
    ctx = runner.context(name)
    pairs = runner.targets(ctx, 6)
    assert {(a, b): ip for (a, b), (_, ip) in pairs.items()} == {("vm3", "vm33"): "fd00:21::2",
                                                                 ("vm33", "vm3"): "fd00:21::1"}  # fmt: skip
    assert runner.reachability6(ctx) == {"vm3": {"vm33": False}, "vm33": {"vm3": False}}
    spec_ = runner.built(name)
    for line in spec_.solution[:4]:  # the IPv4 half of the fix: ping works, ping -6 does not, not solved
        assert main(shlex.split(line)) == 0, line
    assert runner.reachability(ctx)["vm33"]["vm3"] and not runner.reachability6(ctx)["vm33"]["vm3"]
    assert runner.check(name) == [("vm33", "vm3"), ("vm3", "vm33")]
    for line in spec_.solution[4:]:
        assert main(shlex.split(line)) == 0, line
    assert runner.reachability6(ctx) == {"vm3": {"vm33": True}, "vm33": {"vm3": True}}
    assert runner.check(name) == []
    assert main(["lab", "down", name]) == 0
