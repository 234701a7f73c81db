"""What only the etcd back-end has: its URL (several members, a prefix, TLS files), fail-over past a dead member,
one clear line when nothing answers, etcd's users and passwords, and TLS with client certificates — each against
a real etcd (``tests/etcd_cluster.py``), the test's thread in the cluster's client namespace."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from etcd_cluster import CLIENT_IP, EtcdCluster, have_etcd, make_certs

from backend import inventory, nsenter
from backend.errors import VxrayError
from backend.store.registry import open_store, parse_url

from conftest import Lab

ROOT = Path(__file__).parent.parent
needs_etcd = pytest.mark.skipif(os.geteuid() != 0 or not have_etcd(), reason="needs root and /usr/bin/etcd")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("etcd://h1:2379,h1:2379", "the member 'h1:2379' is named twice"),
        ("etcd://root:pw@h1", "a password does not belong in the URL"),
        ("etcd://h1:0", "the port '0' is not a number 1-65535"),
        ("etcd://h1,,h2", "no host name"),
        ("etcd://h1?cert=/c.pem", "a client certificate needs both cert= and key="),
        ("etcd://h1?cert=/c.pem&key=/k.pem", "TLS needs cacert="),
        ("etcd://h1?cacert=ca.pem", "the option cacert takes an absolute path"),
        ("etcd://h1?cacert=-x", "starts with '-'"),
        ("etcd://h1?timeout=3", "unknown option 'timeout'"),
        ("etcd://h1/a/../b", "invalid key prefix"),
        ("etcd://h1\n", "control character"),
    ],
)
def test_a_bad_etcd_url_is_one_line_naming_it(url: str, why: str) -> None:
    with pytest.raises(VxrayError, match="invalid store URL") as err:
        parse_url(url)
    assert why in str(err.value) and repr(url) in str(err.value)


def test_an_etcd_url_names_every_member_its_prefix_user_and_tls_files() -> None:
    where = parse_url("etcd://root@10.0.0.1,[fd00::2]:2381,etcd3:2379/cluster/a?cacert=/ca.pem&cert=/c.pem&key=/k.pem")
    assert where.endpoints == (("10.0.0.1", 2379), ("fd00::2", 2381), ("etcd3", 2379))
    assert (where.prefix, where.user, where.tls.cacert, where.tls.key) == ("cluster/a", "root", "/ca.pem", "/k.pem")


@pytest.fixture
def single(lab: Lab) -> Iterator[EtcdCluster]:
    c = EtcdCluster(lab, size=1).start()
    with nsenter.named(c.ul):
        yield c


@needs_etcd
def test_nothing_answering_is_one_clear_line_before_anything_is_built(single: EtcdCluster) -> None:
    url = f"etcd://{CLIENT_IP}:2399,{CLIENT_IP}:2398/x"  # nothing listens there: refused at once
    started = time.monotonic()
    proc = subprocess.run(["ip", "netns", "exec", single.ul, sys.executable, "-m", "tui.cli", "--store", url,
                           "network", "create", "-d", "overlay", "n1", "--subnet", "10.70.0.0/24"],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"vxray: store {url} unreachable: {CLIENT_IP}:2399 unreachable")
    assert len(proc.stderr.splitlines()) == 1 and time.monotonic() - started < 10


@needs_etcd
def test_a_dead_member_named_first_is_failed_over(single: EtcdCluster) -> None:
    url = f"etcd://{CLIENT_IP}:2399,{single.members[0].ip}:2379/x"
    reg = open_store(url)
    assert reg.kv.put("k", b"v", cas=0) and reg.kv.get("k")[0] == b"v"


@needs_etcd
def test_etcd_users_need_their_password_and_a_wrong_one_is_refused_in_one_line(single: EtcdCluster) -> None:
    member = single.members[0]
    ctl = ["etcdctl", f"--endpoints={member.client_url}"]
    single.lab.run(single.ul, *ctl, "user", "add", "root", "--new-user-password=s3cret")
    single.lab.run(single.ul, *ctl, "auth", "enable")
    url = f"etcd://root@{member.ip}:2379/x"
    reg = open_store(url, token="s3cret")
    assert reg.kv.put("k", b"v", cas=0) and reg.kv.items("") == {"k": (b"v", reg.kv.get("k")[1])}
    with pytest.raises(VxrayError, match=r"refused user 'root'.*authentication failed"):
        open_store(url, token="wrong").kv.get("k")
    with pytest.raises(VxrayError, match="user root needs a password"):
        open_store(url, token=None)
    with pytest.raises(VxrayError, match=r"store etcd://\S+ refused the request: "):
        open_store(f"etcd://{member.ip}:2379/x").kv.get("k")  # no user at all: etcd says so


@needs_etcd
def test_tls_with_a_client_certificate(lab: Lab, tmp_path: Path) -> None:
    make_certs(str(tmp_path), ["10.250.0.11"])
    c = EtcdCluster(lab, size=1, tls=str(tmp_path)).start()
    files = f"cacert={tmp_path}/ca.pem&cert={tmp_path}/client.pem&key={tmp_path}/client-key.pem"
    with nsenter.named(c.ul):
        reg = open_store(f"etcd://10.250.0.11:2379/x?{files}")
        assert reg.kv.put("k", b"v", cas=0) and reg.kv.get("k")[0] == b"v"
        (tmp_path / "other").mkdir()
        make_certs(str(tmp_path / "other"), ["10.250.0.11"])  # a CA the member never heard of
        other = f"cacert={tmp_path}/other/ca.pem&cert={tmp_path}/client.pem&key={tmp_path}/client-key.pem"
        with pytest.raises(VxrayError, match=r"TLS with 10.250.0.11:2379 failed"):
            open_store(f"etcd://10.250.0.11:2379/x?{other}").kv.get("k")
    with pytest.raises(VxrayError, match=r"the cacert file /no/ca\.pem does not exist"):
        open_store("etcd://10.250.0.11:2379/x?cacert=/no/ca.pem")


def test_the_inventory_takes_an_etcd_store_and_names_a_bad_one_at_its_line() -> None:
    good = inventory.parse('store = "etcd://10.0.0.1:2379,10.0.0.2:2379/vxray"\n', "inv.toml")
    assert good.store == "etcd://10.0.0.1:2379,10.0.0.2:2379/vxray"
    with pytest.raises(VxrayError, match=r"inv\.toml:2: store: .*the member '10\.0\.0\.1:2379' is named twice"):
        inventory.parse('\nstore = "etcd://10.0.0.1,10.0.0.1:2379"\n', "inv.toml")
