"""One contract, every store: the embedded SQLite file, consul (via its KV API stand-in) and etcd (a real
three-member cluster in the test's namespaces, ``tests/etcd_cluster.py``; the test runs with its thread inside
the cluster's client namespace, and so do the threads it starts)."""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from consul_standin import ConsulStandin
from etcd_cluster import EtcdCluster, have_etcd

from backend import nsenter
from backend.errors import VxrayError
from backend.records import HostRecord, NetworkRecord
from backend.store.registry import Registry, open_store

from conftest import Lab

TOKEN = "s3cr3t-acl-token"
_prefixes = itertools.count()


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdCluster]:
    """One real cluster for the module; every test keeps to a key prefix of its own."""
    if os.geteuid() != 0 or not have_etcd():
        pytest.skip("needs root and /usr/bin/etcd")
    lab = Lab()
    try:
        yield EtcdCluster(lab).start()
    finally:
        lab.close()


@pytest.fixture(params=["embedded", "consul", "etcd"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "embedded":
        yield f"file://{tmp_path}/store.db"
    elif request.param == "etcd":
        cluster = request.getfixturevalue("etcd")
        with nsenter.named(cluster.ul):
            yield cluster.url(f"t{next(_prefixes)}")
    else:
        standin = ConsulStandin(token=TOKEN).start()
        try:
            yield standin.url
        finally:
            standin.stop()


@pytest.fixture
def store(store_url: str) -> Iterator[Registry]:
    reg = open_store(store_url, token=TOKEN)
    yield reg
    reg.close()


def _net(name: str, subnet: str = "172.21.0.0/16") -> NetworkRecord:
    return NetworkRecord(name, f"{name}-id", "overlay", subnet, "172.21.255.254", vni=256)


def test_cas_zero_creates_only_when_absent(store: Registry) -> None:
    assert store.kv.put("k", b"1", cas=0)
    assert not store.kv.put("k", b"2", cas=0)
    assert store.kv.get("k")[0] == b"1"


def test_cas_write_succeeds_only_at_the_current_index(store: Registry) -> None:
    store.kv.put("k", b"1")
    _, index = store.kv.get("k")
    assert store.kv.put("k", b"2", cas=index)
    assert not store.kv.put("k", b"3", cas=index)
    assert store.kv.get("k")[0] == b"2"
    assert not store.kv.delete("k", cas=index)
    assert store.kv.delete("k", cas=store.kv.get("k")[1])
    assert store.kv.get("k") == (None, 0)


def test_items_lists_a_prefix_only(store: Registry) -> None:
    for key in ("a/1", "a/2", "ab/3", "b/4"):
        store.kv.put(key, key.encode())
    assert sorted(store.kv.items("a/")) == ["a/1", "a/2"]


def test_records_round_trip_and_names_are_unique(store: Registry) -> None:
    store.add_network(_net("prod"))
    assert store.network("prod") == _net("prod")
    with pytest.raises(VxrayError, match="network prod already exists"):
        store.add_network(_net("prod"))
    store.add_host(HostRecord("yy2", "10.193.6.36", "lab-yy2"))
    assert [h.name for h in store.hosts()] == ["yy2"]


def test_vni_allocation_starts_at_256_and_never_repeats(store: Registry) -> None:
    assert store.claim_vni(None, "a") == 256
    assert store.claim_vni(None, "b") == 257
    assert store.claim_vni(300, "c") == 300
    with pytest.raises(VxrayError, match="VNI 300 is already used by network c"):
        store.claim_vni(300, "d")


def test_concurrent_ip_claims_never_hand_out_the_same_address(store_url: str) -> None:
    net = _net("prod", "10.9.0.0/27")

    def claim(i: int) -> str:
        reg = open_store(store_url, token=TOKEN)
        try:
            return reg.claim_ip(net, f"c{i}")
        finally:
            reg.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        ips = list(pool.map(claim, range(24)))
    assert len(set(ips)) == 24


def test_concurrent_vni_claims_are_distinct(store_url: str) -> None:
    def claim(i: int) -> int:
        reg = open_store(store_url, token=TOKEN)
        try:
            return reg.claim_vni(None, f"n{i}")
        finally:
            reg.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        vnis = list(pool.map(claim, range(12)))
    assert sorted(vnis) == list(range(256, 268))


def test_overlapping_subnets_are_refused_within_a_scope(store: Registry) -> None:
    store.claim_subnet(ipaddress.IPv4Network("172.21.0.0/16"), "prod", "overlay")
    with pytest.raises(VxrayError, match=re.escape("subnet 172.21.5.0/24 overlaps 172.21.0.0/16 of network prod")):
        store.claim_subnet(ipaddress.IPv4Network("172.21.5.0/24"), "other", "yy2")
    store.claim_subnet(ipaddress.IPv4Network("172.17.0.0/16"), "bridge-a", "yy2")
    store.claim_subnet(ipaddress.IPv4Network("172.17.0.0/16"), "bridge-b", "yy3")  # another host: fine
    store.release_subnet("prod")
    store.claim_subnet(ipaddress.IPv4Network("172.21.5.0/24"), "other", "yy2")


def test_ip_taken_is_refused_with_its_holder(store: Registry) -> None:
    net = _net("prod")
    assert store.claim_ip(net, "vm3", "172.21.0.1") == "172.21.0.1"
    with pytest.raises(VxrayError, match=re.escape("IP 172.21.0.1 is already taken on network prod by vm3")):
        store.claim_ip(net, "vm33", "172.21.0.1")


def test_consul_without_the_token_is_refused_in_one_line() -> None:
    standin = ConsulStandin(token=TOKEN).start()
    try:
        reg = open_store(standin.url, token="wrong")
        with pytest.raises(VxrayError, match="ACL permission denied"):
            reg.networks()
    finally:
        standin.stop()


def test_unreachable_consul_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    reg = open_store(f"consul://127.0.0.1:{port}", token=None)
    with pytest.raises(VxrayError, match=rf"store consul://127.0.0.1:{port} unreachable"):
        reg.network("prod")


def test_the_loser_of_a_name_race_rolls_back_without_touching_the_winners_claims(store_url: str) -> None:
    """Two hosts create network prod at once: both pass the "exists?" check; the loser fails at its first claim,
    so nothing of the winner's (released by name) is released by the loser."""
    winner, loser = open_store(store_url, token=TOKEN), open_store(store_url, token=TOKEN)
    try:
        net = _net("prod", "10.9.0.0/24")
        winner.claim_subnet(ipaddress.IPv4Network(net.subnet), "prod", "overlay")
        winner.claim_ip(net, "gateway", "10.9.0.254")
        with pytest.raises(VxrayError, match="network prod already exists"):
            loser.claim_subnet(ipaddress.IPv4Network("10.10.0.0/24"), "prod", "overlay")
        assert winner.kv.get("alloc/ip/prod/10.9.0.254")[0] == b"gateway"
        with pytest.raises(VxrayError, match=re.escape("overlaps 10.9.0.0/24 of network prod")):
            loser.claim_subnet(ipaddress.IPv4Network("10.9.0.0/25"), "other", "overlay")
        winner.release_subnet("prod")  # `network rm`: the name is free again
        loser.claim_subnet(ipaddress.IPv4Network("10.10.0.0/24"), "prod", "overlay")
    finally:
        winner.close()
        loser.close()
