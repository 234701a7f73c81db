"""Native nftables evaluation over snapshots built from real ``nft -j -a list ruleset`` output.

``fixtures/nftables/ruleset.nft`` was loaded into a scratch namespace with nft 1.0.6;
``ruleset.json`` and ``ruleset.txt`` are what it printed back. The tables are built
here as the model holds them, so these tests need no kernel and no collector.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from backend.model import Chain, Namespace, NftChain, NftRule, NftSet, NftTable, RuleSet, Table
from diagnostics.netfilter import Decision, Flow
from diagnostics.nftables import NftDecision, base_chains, evaluate, run_hook

HERE = Path(__file__).parent / "fixtures" / "nftables"
PRIORITY = {"filter": 0, "dstnat": -100, "srcnat": 100}


def _texts() -> dict[tuple[str, str, int], str]:
    """Each rule's text by (family, table, handle), from ``nft -a list ruleset``."""
    texts, table = {}, ("", "")
    for line in (HERE / "ruleset.txt").read_text().splitlines():
        if m := re.match(r"table (\S+) (\S+) \{", line):
            table = (m[1], m[2])
        elif m := re.match(r"\s+(.*) # handle (\d+)$", line):
            texts[(*table, int(m[2]))] = m[1]
    return texts


def _tables() -> dict[str, NftTable]:
    """The fixture's tables as ``Namespace.nftables`` holds them, by "family name"."""
    objects = json.loads((HERE / "ruleset.json").read_text())["nftables"]
    texts = _texts()
    rules: dict[tuple[str, str, str], list[NftRule]] = {}
    for o in (o["rule"] for o in objects if "rule" in o):
        text = texts[(o["family"], o["table"], o["handle"])]
        rules.setdefault((o["family"], o["table"], o["chain"]), []).append(
            NftRule(o["handle"], text, json.dumps(o["expr"]))
        )
    out = {}
    for t in (o["table"] for o in objects if "table" in o):
        f, n = t["family"], t["name"]
        chains = tuple(
            NftChain(
                c["name"],
                c.get("type"),
                c.get("hook"),
                PRIORITY.get(c.get("prio"), c.get("prio")),
                c.get("policy"),
                "lo" if c.get("hook") == "ingress" else None,
                tuple(rules.get((f, n, c["name"]), ())),
            )
            for c in (o["chain"] for o in objects if "chain" in o)
            if (c["family"], c["table"]) == (f, n)
        )
        sets = tuple(
            NftSet(s["name"], kind, s["type"], json.dumps(s.get("elem", [])), s.get("map"))
            for kind in ("set", "map")
            for s in (o[kind] for o in objects if kind in o)
            if (s["family"], s["table"]) == (f, n)
        )
        out[f"{f} {n}"] = NftTable(f, n, chains, sets)
    return out


TABLES = _tables()


def ns_with(*names: str, netfilter: tuple[RuleSet, ...] = ()) -> Namespace:
    return Namespace("ns", "named", "ns", nftables=tuple(TABLES[n] for n in names), netfilter=netfilter)


def fw(flow: Flow) -> NftDecision:
    table = TABLES["inet fw"]
    return evaluate(ns_with("inet fw"), table, table.chain("forward"), flow)  # type: ignore[arg-type]


def tcp(src: str, dst: str, dport: int, iif: str = "eth1", oif: str = "eth2", **kw: object) -> Flow:
    return Flow(src, dst, "tcp", dport, iif, oif, **kw)  # type: ignore[arg-type]


def test_the_fixture_was_read_whole() -> None:
    assert set(TABLES) == {"inet fw", "ip early", "ip late", "ip natives", "ip filter", "bridge b", "netdev n"}
    assert len(TABLES["inet fw"].chain("forward").rules) == 14  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("flow", "verdict", "handle"),
    [
        # meta iifname/oifname (with !=), a named interval set, an anonymous set of a value and a range
        (tcp("10.2.3.4", "10.9.0.1", 85, "br0", "eth1"), "accept", 9),
        (tcp("192.168.1.5", "10.9.0.1", 22, "br0", "eth1"), "accept", 9),
        # the ports do not match, or oifname is excluded: on through the tcp jump to sub2, back, then the policy
        (tcp("192.168.1.5", "10.9.0.1", 91, "br0", "eth1"), "drop", None),
        (tcp("192.168.1.5", "10.9.0.1", 22, "br0", "eth0"), "drop", None),
        # udp dport (its implicit meta l4proto: a tcp packet to 4789 is not udp's)
        (Flow("1.1.1.1", "2.2.2.2", "udp", 4789, "eth1", "eth2"), "drop", 10),
        # a named verdict map on iifname
        (Flow("1.1.1.1", "2.2.2.2", "icmp", None, "eth8", "eth2"), "accept", 12),
        (Flow("1.1.1.1", "2.2.2.2", "icmp", None, "eth9", "eth2"), "drop", 12),
        # a concatenation against an anonymous set
        (tcp("172.16.0.1", "2.2.2.2", 443), "accept", 15),
        # ether saddr, meta mark
        (Flow("1.1.1.1", "2.2.2.2", "icmp", None, "eth1", "eth2", src_mac="02:42:ac:11:00:02"), "drop", 16),
        (Flow("1.1.1.1", "2.2.2.2", "icmp", None, "eth1", "eth2", mark=16), "accept", 17),
        # ip protocol with a prefix; limit and log do not decide
        (Flow("1.1.1.1", "172.20.0.1", "icmp", None, "eth1", "eth2"), "accept", 18),
        # != against a range
        (tcp("172.16.9.9", "2.2.2.2", 8443), "accept", 19),
        # an interface wildcard
        (Flow("1.1.1.1", "192.0.2.7", "icmp", None, "veth12", "eth2"), "accept", 20),
        # ct direction and a < comparison
        (tcp("1.1.1.1", "198.51.100.1", 443), "accept", 21),
        # an anonymous verdict map whose tcp element jumps to sub2, which rejects
        (tcp("1.1.1.1", "2.2.2.2", 25), "reject", 27),
    ],
)
def test_each_expression_kind_decides_as_the_kernel_would(flow: Flow, verdict: str, handle: int | None) -> None:
    decision = fw(flow)
    assert (decision.verdict, decision.rule.handle if decision.rule else None) == (verdict, handle)


def test_jump_return_and_goto() -> None:
    # jump sub; sub returns for 10.1.2.3: back in forward, where the policy drops an icmp packet
    back = fw(Flow("1.1.1.1", "10.1.2.3", "icmp", None, "eth1", "eth2"))
    assert (back.verdict, back.rule) == ("drop", None)
    inside = fw(Flow("1.1.1.1", "10.1.2.4", "icmp", None, "eth1", "eth2"))
    assert (inside.verdict, inside.rule_chain, inside.rule.handle) == ("accept", "sub", 25)  # type: ignore[union-attr]
    # goto sub2, whose drop of 10/8 decides; the undo deletes that rule in its own chain
    gone = fw(Flow("10.7.7.7", "10.1.9.9", "icmp", None, "eth1", "eth2"))
    assert (gone.verdict, gone.rule_chain) == ("drop", "sub2")
    assert gone.undo() == ("nft", "delete", "rule", "inet", "fw", "sub2", "handle", "28")
    assert "chain sub2 rule handle 28: ip saddr 10.0.0.0/8 drop" in gone.describe()


def test_a_policy_drop_is_undone_by_an_accept_policy() -> None:
    decision = fw(Flow("1.1.1.1", "2.2.2.2", "icmp", None, "eth1", "eth2"))
    assert (decision.verdict, decision.rule) == ("drop", None)
    assert decision.undo() == ("nft", "chain", "inet", "fw", "forward", "{ policy accept; }")
    assert decision.describe() == "priority -10: policy drop"


def test_a_reply_of_an_allowed_flow_is_established() -> None:
    assert fw(Flow("2.2.2.2", "1.1.1.1", "icmp", None, "eth2", "eth1", reply=True)).rule.handle == 7  # type: ignore[union-attr]


def test_what_cannot_be_evaluated_is_said_and_taken_as_not_matching() -> None:
    decision = fw(Flow("1.1.1.1", "2.2.2.2", "icmp", None, "eth1", "eth2"))
    assert decision.notes == ("cannot evaluate meta cpu in inet fw forward rule handle 13: taken as not matching",)
    queued = NftTable("inet", "q", (NftChain("c", "filter", "forward", 0, "accept", rules=(
        NftRule(1, "queue num 1", '[{"queue": {"num": 1}}]'),)),))  # fmt: skip
    decision = evaluate(Namespace("n", "named", "n"), queued, queued.chains[0], tcp("1.1.1.1", "2.2.2.2", 1))
    assert (decision.verdict, decision.notes) == ("accept", ("cannot evaluate queue in inet q c rule handle 1: "
                                                             "taken as not matching",))  # fmt: skip


def test_fib_daddr_type_local_comes_from_the_namespace() -> None:
    table = TABLES["inet fw"]
    flow = Flow("1.1.1.1", "10.0.0.2", "udp", 8472, "eth0", None, dst_local=True)
    assert evaluate(ns_with("inet fw"), table, table.chain("input"), flow).verdict == "drop"  # type: ignore[arg-type]
    flow = replace(flow, dst_local=False)
    assert evaluate(ns_with("inet fw"), table, table.chain("input"), flow).verdict == "accept"  # type: ignore[arg-type]


def test_base_chains_run_in_priority_order_and_an_accept_ends_only_its_own_chain() -> None:
    ns = ns_with("ip late", "ip early")
    flow = Flow("1.1.1.1", "10.50.0.9", "icmp", None, "eth1", "eth2")
    decisions = run_hook(ns, "forward", flow)
    assert [(d.table, d.verdict) for d in decisions] == [("early", "accept"), ("late", "drop")]  # type: ignore[union-attr]


def test_iptables_tables_run_among_native_chains_and_iptables_nft_own_tables_are_skipped() -> None:
    drop_all = RuleSet("nft", (Table("filter", (Chain("FORWARD", "DROP"),)),))
    ns = ns_with("ip early", "ip filter", "ip late", netfilter=(drop_all,))
    flow = Flow("1.1.1.1", "10.50.0.9", "icmp", None, "eth1", "eth2")
    decisions = run_hook(ns, "forward", flow, (("filter", "FORWARD"),))
    assert isinstance(decisions[0], NftDecision) and decisions[0].table == "early"
    assert isinstance(decisions[1], Decision) and decisions[1].target == "DROP" and len(decisions) == 2
    assert [t.name for t, _ in base_chains(ns, ("ip",), "forward")] == ["early", "late"]  # "ip filter" is iptables'


def test_dnat_moves_the_flow_for_the_chains_after_it_and_a_reply_skips_nat() -> None:
    ns = ns_with("ip natives")
    flow = tcp("1.1.1.1", "10.0.0.2", 8080, "eth0", None)
    nat, filt = run_hook(ns, "prerouting", flow)
    assert (nat.verdict, nat.to) == ("dnat", ("172.17.0.2", 80))  # type: ignore[union-attr]
    assert (filt.verdict, filt.rule.handle) == ("drop", 6)  # type: ignore[union-attr]
    reply = run_hook(ns, "prerouting", tcp("172.17.0.2", "1.1.1.1", 80, "eth0", None, reply=True))
    assert [d.chain for d in reply] == ["filt"]  # type: ignore[union-attr]
    (post,) = run_hook(ns, "postrouting", tcp("172.17.0.2", "1.1.1.1", 80, "br0", "eth0"))
    assert post.verdict == "masquerade"  # type: ignore[union-attr]


def test_bridge_and_netdev_families_see_only_their_hooks() -> None:
    ns = ns_with("bridge b", "netdev n", "inet fw")
    icmp = Flow("1.1.1.1", "2.2.2.2", "icmp", None, "vethA", "vethB")
    (bridged,) = run_hook(ns, "forward", icmp, families=("bridge",))
    assert (bridged.verdict, bridged.family) == ("drop", "bridge")  # type: ignore[union-attr]
    arp = replace(icmp, proto="arp", l3="arp")
    assert run_hook(ns, "forward", arp, families=("bridge",))[0].verdict == "accept"  # type: ignore[union-attr]
    spoofed = Flow("1.2.3.4", "2.2.2.2", "icmp", None, "lo", None)
    (ingress,) = run_hook(ns, "ingress", spoofed, families=("netdev",), device="lo")
    assert ingress.verdict == "drop"  # type: ignore[union-attr]
    assert run_hook(ns, "ingress", spoofed, families=("netdev",), device="eth0") == []
