"""Native nftables tables of every family, read into the snapshot with counters from real packets."""

from __future__ import annotations

import json
import re

import pytest

from backend import codec, nftables
from backend.collect import collect
from backend.model import NftChain, NftTable, RuleSet
from backend.netns import Scope
from backend.nftables import decode, priority

from conftest import Lab, have

needs_nft = pytest.mark.skipif(not have("nft"), reason="needs nft (apt install nftables)")

RULESET = """
table ip vxt {
    set friends { type ipv4_addr; elements = { 10.1.0.2 }; }
    map ports { type inet_service : verdict; elements = { 22 : accept, 8080 : drop }; }
    chain input {
        type filter hook input priority filter - 10; policy drop;
        ct state established,related accept
        iifname "lo" accept
        ip saddr @friends jump counted comment "from a friend"
    }
    chain counted {
        tcp dport vmap @ports
    }
}
table ip6 vxt6 {
    chain out {
        type filter hook output priority 5; policy accept;
        meta l4proto ipv6-icmp counter
    }
}
table inet vxtinet {
    chain forward {
        type filter hook forward priority mangle; policy accept;
        meta l4proto tcp counter
    }
}
table bridge vxtbr {
    chain forward {
        type filter hook forward priority filter; policy accept;
        ether type ip counter
    }
}
table netdev vxtdev {
    chain ingress {
        type filter hook ingress device "va" priority -500; policy accept;
        counter
    }
}
"""


def _pair(lab: Lab) -> tuple[str, str]:
    """a (10.1.0.1, device va) -- b (10.1.0.2, device vb)."""
    a, b = lab.netns("a"), lab.netns("b")
    lab.veth(a, "va", b, "vb")
    lab.ip(a, "addr", "add", "10.1.0.1/24", "dev", "va")
    lab.ip(b, "addr", "add", "10.1.0.2/24", "dev", "vb")
    return a, b


def _table(tables: tuple[NftTable, ...], family: str, name: str) -> NftTable:
    return next(t for t in tables if (t.family, t.name) == (family, name))


def _chain(tables: tuple[NftTable, ...], family: str, name: str, chain: str) -> NftChain:
    found = _table(tables, family, name).chain(chain)
    assert found is not None, (family, name, chain)
    return found


@needs_nft
def test_every_family_is_read_with_hooks_priorities_sets_and_counters(lab: Lab) -> None:
    a, b = _pair(lab)
    lab.run(a, "bash", "-c", f"nft -f - <<'EOF'\n{RULESET}\nEOF")  # lab.run passes no stdin
    echoed = lab.run(a, "nft", "-e", "-a", "add", "rule", "ip", "vxt", "counted", "icmp", "type", "echo-request",
                     "counter", "accept").stdout  # fmt: skip
    handle = int(re.search(r"# handle (\d+)", echoed)[1])  # type: ignore[index]
    lab.run(b, "ping", "-c", "3", "-i", "0.2", "-W", "2", "10.1.0.1")  # accepted only through the jump

    snap = collect(Scope(host_netns=a), docker="none")
    tables = snap.namespace("host").nftables
    assert {(t.family, t.name) for t in tables} == {
        ("ip", "vxt"), ("ip6", "vxt6"), ("inet", "vxtinet"), ("bridge", "vxtbr"), ("netdev", "vxtdev"),
    }  # fmt: skip
    assert not [n for n in snap.notes if "nft" in n], snap.notes

    vxt = _table(tables, "ip", "vxt")
    base = _chain(tables, "ip", "vxt", "input")
    assert (base.type, base.hook, base.priority, base.policy, base.base) == ("filter", "input", -10, "drop", True)
    jump = base.rules[2]
    assert jump.text == 'ip saddr @friends jump counted comment "from a friend"'
    assert jump.comment == "from a friend" and {"jump": {"target": "counted"}} in json.loads(jump.expr)
    counted = _chain(tables, "ip", "vxt", "counted")
    assert (counted.hook, counted.priority, counted.policy, counted.base) == (None, None, None, False)
    vmap, echo = counted.rules
    assert vmap.text == "tcp dport vmap @ports"
    assert echo.handle == handle and echo.text.startswith("icmp type echo-request counter packets ")
    assert echo.text.endswith(" accept") and echo.packets >= 1 and echo.bytes >= 84  # the rest: ct established

    sets = {s.name: s for s in vxt.sets}
    assert (sets["friends"].kind, sets["friends"].type, json.loads(sets["friends"].elements)) == (
        "set", "ipv4_addr", ["10.1.0.2"],
    )  # fmt: skip
    assert (sets["ports"].kind, sets["ports"].map_to) == ("map", "verdict")
    assert json.loads(sets["ports"].elements) == [[22, {"accept": None}], [8080, {"drop": None}]]

    out6 = _chain(tables, "ip6", "vxt6", "out")
    assert (out6.hook, out6.priority, out6.policy) == ("output", 5, "accept")
    fwd = _chain(tables, "inet", "vxtinet", "forward")
    assert (fwd.hook, fwd.priority, fwd.rules[0].text) == (
        "forward",
        -150,
        "meta l4proto tcp counter packets 0 bytes 0",
    )
    assert _chain(tables, "bridge", "vxtbr", "forward").priority == -200  # bridge's own "filter"
    ingress = _chain(tables, "netdev", "vxtdev", "ingress")
    assert (ingress.hook, ingress.device, ingress.priority) == ("ingress", "va", -500)
    assert ingress.rules[0].packets >= 3 and ingress.rules[0].text.startswith("counter packets ")

    assert codec.loads(codec.dumps(snap), "nft") == snap  # a ticket's file holds every table exactly


@needs_nft
def test_a_namespace_without_tables_runs_no_nft(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[list[str]] = []
    real = nftables._start
    monkeypatch.setattr(nftables, "_start", lambda argv: started.append(argv) or real(argv))
    bare, ruled = lab.netns("bare"), lab.netns("ruled")
    assert collect(Scope(host_netns=bare), docker="none").namespace("host").nftables == ()
    assert started == []
    lab.run(ruled, "nft", "add", "table", "inet", "t")
    assert [t.name for t in collect(Scope(host_netns=ruled), docker="none").namespace("host").nftables] == ["t"]
    assert started == [["nft", "-a", "-t", "list", "ruleset"]]  # the JSON comes from libnftables, in-process


@needs_nft
def test_libnftables_in_process_reads_what_nft_j_reads(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = lab.netns("lib")
    for line in ("add table inet fw", "add chain inet fw ffwd { type filter hook forward priority filter - 10; }",
                 "add rule inet fw ffwd udp dport 4789 counter drop", "add table bridge b",
                 "add set inet fw ports { type inet_service; elements = { 22, 80 }; }",
                 "add rule inet fw ffwd tcp dport @ports accept"):  # fmt: skip
        lab.run(ns, "nft", *line.split())
    in_process = collect(Scope(host_netns=ns), docker="none").namespace("host").nftables
    monkeypatch.setattr(nftables.Libnft, "library", classmethod(lambda cls: None))  # a machine with only nft
    assert collect(Scope(host_netns=ns), docker="none").namespace("host").nftables == in_process
    assert [t.name for t in in_process] == ["fw", "b"]


@needs_nft
def test_tables_without_nft_installed_are_a_note(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = lab.netns("nonft")
    lab.run(ns, "nft", "add", "table", "bridge", "t")
    monkeypatch.setattr(nftables.shutil, "which", lambda name: None)
    snap = collect(Scope(host_netns=ns), docker="none")
    assert snap.namespace("host").nftables == ()
    assert "host: nftables tables (bridge t) exist but nft is not installed" in snap.notes


@pytest.mark.skipif(not (have("nft") and have("iptables-nft")), reason="needs nft and iptables-nft")
def test_iptables_nft_tables_are_read_once_as_iptables_rules_and_native_ones_beside_them(lab: Lab) -> None:
    a, b = _pair(lab)
    lab.run(a, "iptables-nft", "-A", "INPUT", "-s", "10.1.0.2", "-p", "icmp", "-m", "comment", "--comment", "pings",
            "-m", "conntrack", "--ctstate", "NEW", "-j", "ACCEPT")  # fmt: skip
    lab.run(a, "iptables-nft", "-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", "22,80", "-j", "DROP")
    lab.run(b, "ping", "-c", "2", "-i", "0.2", "-W", "2", "10.1.0.1")
    host = collect(Scope(host_netns=a), docker="none").namespace("host")
    ruleset = next(rs for rs in host.netfilter if rs.backend == "nft")
    assert ruleset.table("filter").chain("INPUT").rules[0].packets >= 1  # type: ignore[union-attr]
    assert host.nftables == (), "iptables-nft's filter is read once, as iptables rules, and runs no nft"
    lab.run(a, "nft", "add table inet fw; add chain inet fw input { type filter hook input priority 10; }")
    host = collect(Scope(host_netns=a), docker="none").namespace("host")
    assert [(t.family, t.name) for t in host.nftables] == [("inet", "fw")]
    assert next(rs for rs in host.netfilter if rs.backend == "nft").table("filter") is not None


@pytest.mark.skipif(not (have("iptables-legacy") and have("iptables-nft")), reason="needs both iptables")
def test_one_iptables_rule_reads_the_same_from_legacy_and_nft(lab: Lab) -> None:
    rule = ["-t", "nat", "-A", "PREROUTING", "!", "-i", "br0", "-p", "tcp", "-m", "tcp", "--dport", "8081",
            "-m", "comment", "--comment", "web", "-j", "DNAT", "--to-destination", "172.17.0.2:80"]  # fmt: skip
    read: dict[str, RuleSet] = {}
    for backend in ("legacy", "nft"):
        ns = lab.netns(backend)
        lab.run(ns, f"iptables-{backend}", *rule)
        read[backend] = next(rs for rs in collect(Scope(host_netns=ns), docker="none").namespace("host").netfilter
                             if rs.backend == backend)  # fmt: skip
    legacy, nft = (read[b].table("nat").chain("PREROUTING").rules[0] for b in ("legacy", "nft"))  # type: ignore[union-attr]
    assert legacy == nft
    assert (nft.target, nft.in_iface, nft.protocol, nft.dport, nft.to) == (
        "DNAT",
        "!br0",
        "tcp",
        "8081",
        "172.17.0.2:80",
    )
    assert (
        nft.spec
        == "! -i br0 -p tcp -m tcp --dport 8081 -m comment --comment web -j DNAT --to-destination 172.17.0.2:80"
    )


# Pure decoding: what `nft -j` says is untrusted.


@pytest.mark.parametrize(
    "document",
    [b"{not json", b'{"nftables": {}}', b'{"nftables": [{"rule": {"family": "ip"}}]}',
     b'{"nftables": [{"chain": {"family": "ip", "table": "t", "name": 7}}]}',
     b'{"nftables": [{"rule": {"family": "ip", "table": "t", "chain": "c", "handle": 1, '
     b'"expr": [{"counter": {"packets": "x"}}]}}]}'],
)  # fmt: skip
def test_malformed_nft_json_is_one_line_note(document: bytes) -> None:
    tables, notes = decode(document)
    assert tables == () and len(notes) == 1 and "\n" not in notes[0]
    assert notes[0].startswith("nft -j output not understood: ")


def test_priorities_by_name_and_number() -> None:
    assert [priority(p, "ip") for p in (-10, "raw", "mangle", "dstnat", "filter", "security", "srcnat")] == [
        -10, -300, -150, -100, 0, 50, 100,
    ]  # fmt: skip
    assert [priority(p, "bridge") for p in ("dstnat", "filter", "out", "srcnat")] == [-300, -200, 100, 300]
    assert (priority("filter - 10", "inet"), priority("srcnat + 5", "ip"), priority("-500", "netdev")) == (
        -10,
        105,
        -500,
    )
    with pytest.raises(ValueError, match="unknown chain priority 'out'"):
        priority("out", "ip")


def test_an_unknown_priority_is_a_note_and_the_rest_is_kept() -> None:
    doc = {"nftables": [{"metainfo": {"version": "9"}}, {"table": {"family": "ip", "name": "t", "handle": 1}},
                        {"chain": {"family": "ip", "table": "t", "name": "c", "hook": "input", "prio": "later"}},
                        {"flowtable": {"name": "f"}}]}  # fmt: skip
    tables, notes = decode(json.dumps(doc).encode())
    assert tables == (NftTable("ip", "t", (NftChain("c", hook="input"),)),)
    assert notes == ["nft table ip t chain c: unknown chain priority 'later' in family ip"]
