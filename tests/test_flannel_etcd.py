"""flannel's own etcd layout as the desired state: the flannel-vxlan lab with ``-o etcd=`` pointing at a real
etcd cluster, flannel's keys written into it as flanneld writes them (``etcdctl`` over the v3 API: the network
config, and each node's lease bound to a 24 h etcd lease), the kernel broken with plain ``ip``/``bridge``, and
every finding's fix shown to heal real pings."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest
from etcd_cluster import EtcdCluster, have_etcd

from backend import nsenter
from backend.errors import VxrayError
from backend.lab import runner
from backend.store import flannel_layout
from tui.cli import main

from conftest import Lab, sh

SCENARIO = Path(__file__).parent.parent / "backend" / "lab" / "scenarios" / "flannel-vxlan.toml"
LEASES = 'options = { leases = "node1=172.21.31.0/24,node2=172.21.55.0/24" }'
VTEPS = {"node1": "192.168.0.11", "node2": "192.168.0.12"}
SUBNETS = {"node1": "172.21.31.0/24", "node2": "172.21.55.0/24"}
needs_etcd = pytest.mark.skipif(os.geteuid() != 0 or not have_etcd(), reason="needs root and /usr/bin/etcd")


class Flannel:
    """The lab, its etcd, and flanneld's writes."""

    def __init__(self, lab: Lab, home: Path) -> None:
        self.lab, self.etcd = lab, EtcdCluster(lab).start()
        self.name = f"{lab.prefix}fl"
        url = f"etcd://{self.etcd.endpoints}/coreos.com/network"
        topo = home / "flannel.toml"
        topo.write_text(SCENARIO.read_text().replace(LEASES, LEASES[:-2] + f', etcd = "{url}" }}'))
        assert main(["lab", "up", str(topo), "--name", self.name]) == 0
        self.macs = {n: self.mac(n) for n in VTEPS}
        store = runner.context(self.name).store
        self.ns = {c.name: c.netns for c in store.containers()}
        self.ip = {e.container: e.ip for e in store.endpoints()}

    def mac(self, node: str) -> str:
        return json.loads(sh("ip", "-n", f"{self.name}.{node}", "-j", "link", "show", "flannel.1").stdout)[0]["address"]

    def etcdctl(self, *words: str) -> str:
        eps = ",".join(f"http://{m.ip}:2379" for m in self.etcd.members)
        return self.lab.run(self.etcd.ul, "etcdctl", f"--endpoints={eps}", *words).stdout

    def lease(self, subnet: str, public_ip: str, mac: str) -> None:
        """A node's lease as flanneld writes it: under a 24 h etcd lease it keeps renewing."""
        ttl = self.etcdctl("lease", "grant", "86400").split()[1]
        value = {"PublicIP": public_ip, "PublicIPv6": None, "BackendType": "vxlan",
                 "BackendData": {"VNI": 1, "VtepMAC": mac}}  # fmt: skip
        key = f"/coreos.com/network/subnets/{subnet.replace('/', '-')}"
        self.etcdctl("put", f"--lease={ttl}", key, json.dumps(value, separators=(",", ":")))

    def publish(self) -> None:
        config = {"Network": "172.21.0.0/16", "SubnetLen": 24, "Backend": {"Type": "vxlan", "VNI": 1}}
        self.etcdctl("put", "/coreos.com/network/config", json.dumps(config))
        for node, subnet in SUBNETS.items():
            self.lease(subnet, VTEPS[node], self.macs[node])

    def reaches(self, src: str, dst: str) -> bool:
        return self.lab.run(self.ns[src], "ping", "-c", "1", "-W", "1", self.ip[dst], check=False).returncode == 0

    def doctor(self, capsys: pytest.CaptureFixture[str]) -> list[dict]:
        capsys.readouterr()
        with nsenter.named(self.etcd.ul):  # where etcd is reachable; the hosts are read through their namespaces
            main(["doctor", "--json"])
        return [f for f in json.loads(capsys.readouterr().out) if "flannel" in f["title"] and f["likelihood"] >= 0.5]

    def vxray(self, *words: str) -> None:
        with nsenter.named(self.etcd.ul):
            assert main(list(words)) == 0, words

    def native(self, fix: dict) -> None:
        """A finding's native command, run as printed (etcdctl from where etcd is reachable)."""
        argv = fix["native"]
        sh(*(["ip", "netns", "exec", self.etcd.ul, *argv] if argv[0] == "etcdctl" else argv))


@pytest.fixture
def flannel(lab: Lab, home: Path) -> Flannel:
    f = Flannel(lab, home)
    f.publish()
    yield f
    runner.down(f.name)


@needs_etcd
def test_flannels_leases_in_etcd_match_a_healthy_lab(flannel: Flannel, capsys: pytest.CaptureFixture[str]) -> None:
    assert flannel.doctor(capsys) == []
    with nsenter.named(flannel.etcd.ul):
        capsys.readouterr()
        assert main(["fdb", "sync", "flannel", "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert f"node1: bridge fdb replace {flannel.macs['node2']} dev flannel.1 dst 192.168.0.12" in plan
    assert "node2: ip route replace 172.21.31.0/24 via 172.21.31.0 dev flannel.1 onlink" in plan
    assert flannel.reaches("a1", "b1") and flannel.reaches("b1", "a1")


@needs_etcd
def test_a_host_missing_a_leases_fdb_entry_is_named_and_fdb_sync_heals_it(
    flannel: Flannel, capsys: pytest.CaptureFixture[str]
) -> None:
    sh("bridge", "-n", f"{flannel.name}.node1", "fdb", "del", flannel.macs["node2"], "dev", "flannel.1",
       "dst", "192.168.0.12")  # fmt: skip
    assert not flannel.reaches("a1", "b1")
    (top,) = flannel.doctor(capsys)
    assert top["host"] == "node1" and "lacks flannel's FDB entry for lease 172.21.55.0/24 of node2" in top["title"]
    assert top["fix"]["vxray"] == ["vxray", "fdb", "sync", "flannel"]
    flannel.vxray(*top["fix"]["vxray"][1:])
    assert flannel.reaches("a1", "b1") and flannel.reaches("b1", "a1")
    assert flannel.doctor(capsys) == []


@needs_etcd
def test_a_lease_whose_vtep_mac_no_host_has_is_named_and_its_fix_heals_it(
    flannel: Flannel, capsys: pytest.CaptureFixture[str]
) -> None:
    sh("ip", "-n", f"{flannel.name}.node2", "link", "set", "flannel.1", "address", "02:00:00:aa:bb:cc")
    assert not flannel.reaches("a1", "b1")
    top, flushed = flannel.doctor(capsys)
    assert (
        top["host"] == "node2"
        and f"says VtepMAC {flannel.macs['node2']}, which no host's flannel.1 has" in (top["title"])
    )
    # a new MAC flushes the device's neighbour table, permanent entries too: node1's lease lost its ARP entry
    assert flushed["host"] == "node2" and "lacks flannel's ARP entry for lease 172.21.31.0/24" in flushed["title"]
    flannel.native(top["fix"])
    assert flannel.doctor(capsys) == [flushed]
    flannel.vxray(*flushed["fix"]["vxray"][1:])
    assert flannel.reaches("a1", "b1") and flannel.reaches("b1", "a1")
    assert flannel.doctor(capsys) == []


@needs_etcd
def test_a_stale_lease_is_named_and_renewing_it_then_fdb_sync_heals_it(
    flannel: Flannel, capsys: pytest.CaptureFixture[str]
) -> None:
    # node2's lease still carries the address it had before (flanneld there did not renew it), and node1's
    # flanneld programmed it; a node that is gone left its lease behind too
    flannel.lease("172.21.55.0/24", "192.168.0.99", flannel.macs["node2"])
    flannel.lease("172.21.77.0/24", "192.168.0.77", "02:00:00:00:00:77")
    flannel.vxray("fdb", "sync", "flannel")
    assert not flannel.reaches("a1", "b1")
    moved, gone = flannel.doctor(capsys)
    assert (
        moved["host"] == "node2" and "stale flannel lease 172.21.55.0/24: its PublicIP 192.168.0.99" in (moved["title"])
    )
    assert "stale flannel lease 172.21.77.0/24: no host has its PublicIP 192.168.0.77" in gone["title"]
    assert shlex.join(gone["fix"]["native"]).endswith("del /coreos.com/network/subnets/172.21.77.0-24")
    flannel.native(moved["fix"])
    flannel.vxray("fdb", "sync", "flannel")
    assert flannel.reaches("a1", "b1") and flannel.reaches("b1", "a1")
    flannel.native(gone["fix"])
    assert flannel.doctor(capsys) == []


def test_flannels_keys_are_decoded_as_a_strangers_and_a_bad_lease_is_a_note() -> None:
    keys = {
        "/coreos.com/network/config": b'{"Network": "172.21.0.0/16", "Backend": {"Type": "vxlan", "VNI": 4}}',
        "/coreos.com/network/subnets/172.21.31.0-24": b'{"PublicIP": "192.168.0.11", "BackendType": "vxlan", '
        b'"BackendData": {"VNI": 4, "VtepMAC": "02:00:00:00:00:01"}}',
        "/coreos.com/network/subnets/172.21.32.0-24": b'{"PublicIP": "300.1.1.1"}',
        "/coreos.com/network/subnets/10.9.0.0-24": b'{"PublicIP": "192.168.0.12"}',
    }
    lay = flannel_layout.parse("fl", "etcd://e1/coreos.com/network", "coreos.com/network", keys)
    assert (lay.subnet, lay.vni, lay.port, lay.device) == ("172.21.0.0/16", 4, 8472, "flannel.4")
    assert [(x.subnet, x.public_ip, x.vtep_mac) for x in lay.leases] == [
        ("172.21.31.0/24", "192.168.0.11", "02:00:00:00:00:01")
    ]
    assert len(lay.notes) == 2 and "10.9.0.0-24 does not decode: 10.9.0.0/24 is not inside" in lay.notes[0]
    with pytest.raises(VxrayError, match="uses backend 'host-gw', not vxlan"):
        flannel_layout.parse(
            "fl", "u", "p", {"/p/config": b'{"Network": "10.0.0.0/8", "Backend": {"Type": "host-gw"}}'}
        )
    with pytest.raises(VxrayError, match="no /p/config in u"):
        flannel_layout.parse("fl", "u", "p", {})
    with pytest.raises(VxrayError, match="flannel keeps its leases in etcd"):
        flannel_layout.check_url("consul://h1:8500/coreos.com/network")
