"""NAT and FORWARD rules from both iptables back-ends, with counters from real packets."""

from __future__ import annotations

import time

import pytest

from backend.collect import collect
from backend.model import HostSnapshot, RuleSet
from backend.netns import Scope

from conftest import Lab, have

pytestmark = pytest.mark.skipif(not (have("iptables-legacy") and have("iptables-nft")), reason="needs both iptables")


def _ruleset(snap: HostSnapshot, ns: str, backend: str) -> RuleSet:
    return next(rs for rs in snap.namespace(ns).netfilter if rs.backend == backend)


def test_rules_from_legacy_and_nft_both_appear_labelled_with_counters(lab: Lab) -> None:
    c1, r, c2 = lab.router(route_back=False)
    lab.run(r, "iptables-nft", "-t", "nat", "-A", "POSTROUTING", "-s", "10.1.0.0/24", "-o", "r2", "-j", "MASQUERADE")
    lab.run(r, "iptables-legacy", "-t", "nat", "-A", "PREROUTING", "-i", "r1", "-p", "tcp", "--dport", "8081",
            "-j", "DNAT", "--to-destination", "10.2.0.2:80")  # fmt: skip
    lab.spawn("ip", "netns", "exec", c2, "nc", "-lk", "80")
    lab.run(c1, "ping", "-c", "1", "-W", "2", "10.2.0.2")  # works only through MASQUERADE
    deadline = time.monotonic() + 5
    while lab.run(c1, "nc", "-z", "-w", "1", "10.1.0.1", "8081", check=False).returncode != 0:
        assert time.monotonic() < deadline, "DNAT 8081 -> 10.2.0.2:80 never answered"
        time.sleep(0.1)

    snap = collect(Scope(host_netns=r), docker="none")
    assert [rs.backend for rs in snap.namespace("host").netfilter] == ["legacy", "nft"]

    masq = _ruleset(snap, "host", "nft").table("nat").chain("POSTROUTING").rules[0]
    assert (masq.target, masq.source, masq.out_iface) == ("MASQUERADE", "10.1.0.0/24", "r2")
    assert masq.packets >= 1

    dnat = _ruleset(snap, "host", "legacy").table("nat").chain("PREROUTING").rules[0]
    assert (dnat.target, dnat.protocol, dnat.dport, dnat.to, dnat.in_iface) == (
        "DNAT", "tcp", "8081", "10.2.0.2:80", "r1",
    )  # fmt: skip
    assert dnat.spec == "-i r1 -p tcp -m tcp --dport 8081 -j DNAT --to-destination 10.2.0.2:80"
    assert dnat.packets >= 1


def test_same_rule_reads_identically_from_both_backends(lab: Lab) -> None:
    ns = {b: lab.netns(b) for b in ("legacy", "nft")}
    rule = ["-t", "nat", "-A", "POSTROUTING", "-s", "172.17.0.0/16", "!", "-o", "docker0", "-j", "MASQUERADE"]
    forward = ["-A", "FORWARD", "-o", "docker0", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"]
    for backend, name in ns.items():
        lab.run(name, f"iptables-{backend}", *rule)
        lab.run(name, f"iptables-{backend}", *forward)
        lab.run(name, f"iptables-{backend}", "-P", "FORWARD", "DROP")
    read = {b: _ruleset(collect(Scope(host_netns=n), docker="none"), "host", b) for b, n in ns.items()}
    assert read["legacy"].tables == read["nft"].tables
    assert read["nft"].table("filter").chain("FORWARD").policy == "DROP"
    masq = read["nft"].table("nat").chain("POSTROUTING").rules[0]
    assert (masq.out_iface, masq.spec) == ("!docker0", "-s 172.17.0.0/16 ! -o docker0 -j MASQUERADE")


def test_filter_table_keeps_only_chains_reachable_from_forward_and_input(lab: Lab) -> None:
    r = lab.netns("fw")
    for args in (["-N", "DOCKER-USER"], ["-N", "UNRELATED"], ["-A", "FORWARD", "-j", "DOCKER-USER"],
                 ["-A", "DOCKER-USER", "-j", "RETURN"], ["-A", "OUTPUT", "-j", "UNRELATED"]):  # fmt: skip
        lab.run(r, "iptables-nft", *args)
    filt = _ruleset(collect(Scope(host_netns=r), docker="none"), "host", "nft").table("filter")
    assert [c.name for c in filt.chains] == ["FORWARD", "INPUT", "DOCKER-USER"]


def test_reading_a_namespace_without_rules_creates_no_legacy_table(lab: Lab) -> None:
    ns = lab.netns("bare")
    snap = collect(Scope(host_netns=ns), docker="none")
    assert snap.namespace("host").netfilter == ()
    names = lab.run(ns, "cat", "/proc/net/ip_tables_names", check=False).stdout
    assert names.strip() == ""
    assert "Warning" not in lab.run(ns, "iptables-nft-save").stderr
