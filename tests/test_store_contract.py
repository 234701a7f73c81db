"""One contract, both stores: the embedded SQLite file and consul (via its KV API stand-in)."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from consul_standin import ConsulStandin

from backend.errors import VxrayError
from backend.records import HostRecord, NetworkRecord
from backend.store.registry import Registry, open_store

TOKEN = "s3cr3t-acl-token"


@pytest.fixture(params=["embedded", "consul"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "embedded":
        yield f"file://{tmp_path}/store.db"
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
