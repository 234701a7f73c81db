"""IPv6 traces held against real ``ping -6`` and ``nc -6``: a routed pair and a VXLAN overlay between two
"hosts" (an IPv4 underlay and an IPv6 one), built in namespaces, broken with plain ``ip``, ``sysctl``,
``ip6tables`` (both back-ends) and ``nft``; the trace's verdict, the step it stops at and its fix must agree
with what the kernel does, and the fix, run as its argv, must heal the ping."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from backend import probe
from backend.collect import collect
from backend.iptables import parse_save
from backend.lab import runner
from backend.model import Namespace, NftChain, NftRule, NftTable, RuleSet
from backend.netns import Scope
from backend.probe import Probe
from backend.protocol import ProtocolError, parse_request
from diagnostics.live import compare, first_disagreement, watch_points
from diagnostics.netfilter import Flow, hook
from diagnostics.nftables import owned_by_iptables, run_hook
from diagnostics.trace import Trace, trace
from diagnostics.world import World
from tui.cli import main

from conftest import Lab, have, placeholders

C1, C2 = "fd01::2", "fd02::2"  # the routed pair's addresses; the router is fd01::1 and fd02::1
V1, V2 = "fd00:42::1", "fd00:42::2"  # the overlay's containers
MAC1, MAC2 = "02:00:00:00:42:01", "02:00:00:00:42:02"


# -- pure: the evaluators over IPv6 flows, no kernel ------------------------------------------------------------

ECHO6 = Flow("fd01::2", "fd02::2", "icmpv6", None, "r1", "r2", l3="ip6")
SOLICIT = Flow("fd01::2", "ff02::1:ff00:1", "icmpv6", None, "r1", None, l3="ip6", icmp_type="nd-neighbor-solicit")
SAVE6 = """*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
[0:0] -A INPUT -m conntrack --ctstate UNTRACKED -j ACCEPT
[0:0] -A FORWARD -s fd01::/64 -p ipv6-icmp -m icmp6 --icmpv6-type echo-request -j ACCEPT
COMMIT
"""


def _nft_rule(handle: int, text: str, expr: list[dict[str, object]]) -> NftRule:
    return NftRule(handle, text, json.dumps(expr))


def test_ip6tables_rules_match_ipv6_flows_by_prefix_icmpv6_type_and_untracked_ndp() -> None:
    ns = Namespace("ns", "named", "ns", netfilter6=(RuleSet("nft", parse_save(SAVE6)),))
    assert hook(ns, "filter", "FORWARD", ECHO6).rule is not None  # echo-request from fd01::/64: accepted by rule
    reply = Flow("fd02::2", "fd01::2", "icmpv6", None, "r2", "r1", reply=True, l3="ip6")
    dropped = hook(ns, "filter", "FORWARD", reply)
    assert (dropped.target, dropped.rule, dropped.family) == ("DROP", None, "ip6")
    assert dropped.undo() == ("ip6tables-nft", "-P", "FORWARD", "ACCEPT")
    assert hook(ns, "filter", "INPUT", SOLICIT).rule is not None, "NDP is untracked"
    assert hook(ns, "filter", "FORWARD", Flow("10.1.0.2", "10.2.0.2", "icmp", None, "r1", "r2")).rule is None


def test_nft_ip6_and_inet_chains_see_ipv6_and_ip_chains_do_not() -> None:
    drop6 = _nft_rule(2, "ip6 saddr fd01::/64 icmpv6 type echo-request drop", [
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "saddr"}},
                   "right": {"prefix": {"addr": "fd01::", "len": 64}}}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "icmpv6", "field": "type"}}, "right": "echo-request"}},
        {"drop": None}])  # fmt: skip
    v4only = _nft_rule(3, "meta nfproto ipv4 drop", [
        {"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv4"}}, {"drop": None}])  # fmt: skip
    tables = (NftTable("ip6", "six", (NftChain("fwd", "filter", "forward", 10, "accept", None, (drop6,)),)),
              NftTable("inet", "both", (NftChain("fwd", "filter", "forward", -5, "accept", None, (v4only,)),)),
              NftTable("ip", "four", (NftChain("fwd", "filter", "forward", 0, "drop"),)))  # fmt: skip
    ns = Namespace("ns", "named", "ns", nftables=tables)
    decisions = run_hook(ns, "forward", ECHO6)
    assert [(d.family, d.verdict) for d in decisions] == [("inet", "accept"), ("ip6", "drop")]  # type: ignore[union-attr]
    reply = Flow("fd02::2", "fd01::2", "icmpv6", None, "r2", "r1", reply=True, l3="ip6")
    assert all(d.accepted for d in run_hook(ns, "forward", reply))


def test_ip6tables_nft_tables_are_owned_per_family() -> None:
    filt = NftTable("ip6", "filter")
    v4 = Namespace("ns", "named", "ns", netfilter=(RuleSet("nft", parse_save(SAVE6)),))
    v6 = Namespace("ns", "named", "ns", netfilter6=(RuleSet("nft", parse_save(SAVE6)),))
    assert not owned_by_iptables(v4, filt) and owned_by_iptables(v6, filt)


def test_an_agent_takes_an_ipv6_probe_and_still_refuses_what_is_no_address() -> None:
    ok = parse_request('{"id": 1, "op": "send", "args": {"probe": {"src_netns": "c1", "dst": "fd02::2"}, "ident": 7}}')
    assert ok.args["probe"]["dst"] == "fd02::2"
    with pytest.raises(ProtocolError, match=r"send\.probe"):
        parse_request('{"id": 2, "op": "send", "args": {"probe": {"src_netns": "c1", "dst": "fd02::zz"}, "ident": 7}}')


# -- real namespaces ------------------------------------------------------------------------------------------


def _netns(lab: Lab, name: str) -> str:
    """A namespace whose devices skip duplicate address detection: their link-local addresses are usable at once,
    as a ping right after building needs (a tentative one answers no neighbour solicitation)."""
    ns = lab.netns(name)
    lab.run(ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
    return ns


def _addr(lab: Lab, ns: str, cidr: str, dev: str) -> None:
    lab.ip(ns, "-6", "addr", "add", cidr, "dev", dev, "nodad")  # no duplicate address detection: usable at once


def _router6(lab: Lab) -> tuple[str, str, str]:
    """c1 (fd01::2) -- r (forwarding, fd01::1 / fd02::1) -- c2 (fd02::2); c1's default route goes through the
    router's link-local fe80::1. Dual stack: 10.1.0.2 -- 10.1.0.1 / 10.2.0.1 -- 10.2.0.2 beside."""
    c1, r, c2 = _netns(lab, "c1"), _netns(lab, "r"), _netns(lab, "c2")
    lab.veth(c1, "eth0", r, "r1")
    lab.veth(r, "r2", c2, "eth0")
    _addr(lab, c1, f"{C1}/64", "eth0")
    _addr(lab, r, "fd01::1/64", "r1")
    _addr(lab, r, "fe80::1/64", "r1")
    _addr(lab, r, "fd02::1/64", "r2")
    _addr(lab, c2, f"{C2}/64", "eth0")
    lab.ip(c1, "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0")
    lab.ip(c2, "-6", "route", "add", "default", "via", "fd02::1")
    lab.run(r, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", "net.ipv4.ip_forward=1")
    for ns, dev, cidr in ((c1, "eth0", "10.1.0.2/24"), (r, "r1", "10.1.0.1/24"), (r, "r2", "10.2.0.1/24"),
                          (c2, "eth0", "10.2.0.2/24")):  # fmt: skip
        lab.ip(ns, "addr", "add", cidr, "dev", dev)
    lab.ip(c1, "route", "add", "default", "via", "10.1.0.1")
    lab.ip(c2, "route", "add", "default", "via", "10.2.0.1")
    return c1, r, c2


def _overlay6(lab: Lab, underlay6: bool = False) -> tuple[str, str, str, str]:
    """Two hosts h1, h2 on an underlay (10.0.0.0/24, or fd99::/64), each a bridge br0 with a VXLAN device (VNI 42,
    learning off, proxy on) and a container on a veth: v1 (fd00:42::1) on h1, v2 (fd00:42::2) on h2. Each
    VXLAN device knows the other container from a static FDB entry and an IPv6 neighbour entry its proxy answers
    neighbour solicitations from."""
    h1, h2, v1, v2 = _netns(lab, "h1"), _netns(lab, "h2"), _netns(lab, "v1"), _netns(lab, "v2")
    lab.veth(h1, "eth0", h2, "eth0")
    under = ("fd99::1", "fd99::2") if underlay6 else ("10.0.0.1", "10.0.0.2")
    for host, ctr, mine, other, mac, ip in ((h1, v1, under[0], under[1], MAC1, V1), (h2, v2, under[1], under[0],
                                                                                       MAC2, V2)):  # fmt: skip
        if underlay6:
            _addr(lab, host, f"{mine}/64", "eth0")
        else:
            lab.ip(host, "addr", "add", f"{mine}/24", "dev", "eth0")
        lab.ip(host, "link", "add", "br0", "type", "bridge")
        lab.ip(host, "link", "add", "vxlan1", "type", "vxlan", "id", "42", "dstport", "4789", "local", mine,
               "dev", "eth0", "nolearning", "proxy")  # fmt: skip
        lab.ip(host, "link", "set", "vxlan1", "master", "br0", "mtu", "1430" if underlay6 else "1450")
        lab.ip(host, "link", "set", "vxlan1", "up")
        lab.ip(host, "link", "set", "br0", "up")
        lab.veth(host, "p0", ctr, "eth0")
        lab.ip(host, "link", "set", "p0", "master", "br0")
        lab.ip(ctr, "link", "set", "eth0", "address", mac, "mtu", "1430" if underlay6 else "1450")
        _addr(lab, ctr, f"{ip}/64", "eth0")
        peer_mac, peer_ip = (MAC2, V2) if mac == MAC1 else (MAC1, V1)
        lab.run(host, "bridge", "fdb", "append", peer_mac, "dev", "vxlan1", "dst", other)
        lab.ip(host, "-6", "neigh", "add", peer_ip, "lladdr", peer_mac, "dev", "vxlan1", "nud", "permanent")
    return h1, h2, v1, v2


def _nft(ns: str, ruleset: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=ruleset, text=True, check=True)


def _ping(lab: Lab, ns: str, ip: str, *opts: str) -> bool:
    return lab.run(ns, "ping", "-6", "-c", "1", "-W", "1", *opts, ip, check=False).returncode == 0


def _tcp(lab: Lab, src: str, dst_ns: str, ip: str, port: int = 8080) -> bool:
    """A real TCP connection over IPv6: nc -6 listening in ``dst_ns``, connecting from ``src``."""
    server = lab.spawn("ip", "netns", "exec", dst_ns, "nc", "-6", "-l", "-p", str(port))
    for _ in range(50):
        if f":{port:04X}" in lab.run(dst_ns, "cat", "/proc/net/tcp6").stdout:
            break
        time.sleep(0.02)
    ok = lab.run(src, "nc", "-6", "-z", "-w", "2", ip, str(port), check=False).returncode == 0
    server.kill()
    return ok


def _trace(lab: Lab, src: str, dst: str, **kw: object) -> Trace:
    snap = collect(Scope(netns=tuple(lab.namespaces)), docker="none")
    return trace(World([snap]), src, dst, **kw)  # type: ignore[arg-type]


def _stop(t: Trace) -> tuple[str, str, str]:
    assert t.failed_step is not None, t
    s = t.steps[t.failed_step]
    assert s.fix is None or not placeholders(s.fix), s.fix
    return s.netns, s.table, s.direction


def _heal(t: Trace) -> None:
    """Run the failing step's native fix as its argv, no shell."""
    assert t.failed_step is not None
    fix = t.steps[t.failed_step].fix
    assert fix is not None and fix.native, t.steps[t.failed_step]
    subprocess.run(fix.native, check=True)


def _live_agrees(lab: Lab, t: Trace, src: str, dst: str, size: int | None = None) -> bool:
    """A real probe along the trace (``--live``) is seen exactly at the steps the trace says it reaches."""
    seen = probe.run(Probe(src, dst, size=size, df=size is not None), watch_points(t))
    return first_disagreement(compare(t, seen)) is None


def test_ipv6_ping_through_a_router_with_a_link_local_next_hop_is_delivered(lab: Lab) -> None:
    c1, _r, _c2 = _router6(lab)
    t = _trace(lab, c1, C2)
    assert t.delivered and _ping(lab, c1, C2), t
    neigh = next(s for s in t.steps if s.table == "neigh")
    assert neigh.netns == c1 and "fe80::1" in neigh.entry and neigh.decision.startswith("NDP: answered by")
    assert {s.direction for s in t.steps} == {"request", "reply"}
    assert _live_agrees(lab, t, c1, C2)


def test_trace_stops_where_ipv6_forwarding_is_off_and_its_fix_heals_the_ping(lab: Lab) -> None:
    c1, r, _c2 = _router6(lab)
    lab.run(r, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=0")
    t = _trace(lab, c1, C2)
    assert not t.delivered and not _ping(lab, c1, C2)
    assert _stop(t) == (r, "sysctl", "request")
    assert t.steps[t.failed_step or 0].entry == "net.ipv6.conf.all.forwarding = 0"
    assert _live_agrees(lab, t, c1, C2)
    _heal(t)
    assert _ping(lab, c1, C2) and _trace(lab, c1, C2).delivered


@pytest.mark.parametrize("tool", ["ip6tables-legacy", "ip6tables-nft"])
def test_trace_names_the_ip6tables_forward_drop_of_either_backend(lab: Lab, tool: str) -> None:
    if not have(tool):
        pytest.skip(f"needs {tool}")
    c1, r, _c2 = _router6(lab)
    lab.run(r, tool, "-P", "FORWARD", "DROP")
    lab.run(r, tool, "-A", "FORWARD", "-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type", "echo-reply", "-j",
            "ACCEPT")  # fmt: skip
    t = _trace(lab, c1, C2)
    assert not t.delivered and not _ping(lab, c1, C2)
    assert _stop(t) == (r, "ip6 filter FORWARD", "request")
    step = t.steps[t.failed_step or 0]
    assert step.entry == f"{tool.split('-')[1]} ip6tables FORWARD policy DROP"
    assert step.fix is not None and step.fix.native[-4:] == (tool, "-P", "FORWARD", "ACCEPT")
    _heal(t)
    assert _ping(lab, c1, C2) and _trace(lab, c1, C2).delivered


def test_legacy_and_nft_ip6tables_read_the_same_rule_alike(lab: Lab) -> None:
    if not (have("ip6tables-legacy") and have("ip6tables-nft")):
        pytest.skip("needs both ip6tables back-ends")
    ns = lab.netns("fw")
    rule = ("-s", "fd01::/64", "-d", "fd02::5/128", "-i", "r1", "-p", "ipv6-icmp", "-m", "icmp6", "--icmpv6-type",
            "128", "-j", "DROP")  # fmt: skip
    for tool in ("ip6tables-legacy", "ip6tables-nft"):
        lab.run(ns, tool, "-A", "FORWARD", *rule)
    got = collect(Scope(netns=(ns,)), docker="none").namespace(ns)
    assert got is not None
    read = {rs.backend: rs.table("filter").chain("FORWARD").rules for rs in got.netfilter6}  # type: ignore[union-attr]
    assert set(read) == {"legacy", "nft"} and read["legacy"] == read["nft"], read
    assert not any(t.family == "ip6" and t.name == "filter" for t in got.nftables), "read once, as ip6tables rules"


def test_nft_inet_forward_drop_stops_ipv6_but_not_ipv4(lab: Lab) -> None:
    c1, r, _c2 = _router6(lab)
    _nft(r, "table inet fw { chain forward_ { type filter hook forward priority -10; policy accept; meta nfproto "
         "ipv6 drop; }; }")  # fmt: skip
    t = _trace(lab, c1, C2)
    assert not t.delivered and not _ping(lab, c1, C2)
    assert _stop(t) == (r, "nft inet fw forward_", "request")
    assert t.steps[t.failed_step or 0].decision == "icmpv6 fd01::2 -> fd02::2 dropped by nftables"
    assert _ping(lab, c1, "fd01::1"), "what the router receives itself passes no forward hook"
    assert (
        _trace(lab, c1, "10.2.0.2").delivered
        and lab.run(c1, "ping", "-c1", "-W1", "10.2.0.2", check=False).returncode == 0
    )
    _heal(t)
    assert _ping(lab, c1, C2) and _trace(lab, c1, C2).delivered


def test_an_ip6_drop_at_a_later_priority_drops_what_an_earlier_chain_accepted(lab: Lab) -> None:
    c1, r, _c2 = _router6(lab)
    _nft(r, "table inet early { chain forward_ { type filter hook forward priority -100; policy accept; ip6 daddr "
         "fd02::/64 accept; }; }")  # fmt: skip
    _nft(r, "table ip6 late { chain forward_ { type filter hook forward priority 10; policy accept; ip6 saddr "
         "fd01::/64 icmpv6 type echo-request drop; }; }")  # fmt: skip
    t = _trace(lab, c1, C2)
    assert not t.delivered and not _ping(lab, c1, C2)
    assert _stop(t) == (r, "nft ip6 late forward_", "request")
    assert any(s.table == "nft inet early forward_" and s.ok for s in t.steps)
    _heal(t)
    assert _ping(lab, c1, C2)


def test_ct_state_established_on_the_reply_path_lets_the_reply_through_but_not_a_new_flow(lab: Lab) -> None:
    c1, r, c2 = _router6(lab)
    _nft(r, 'table ip6 fw { chain forward_ { type filter hook forward priority 0; policy drop; ct state '
         'established,related accept; iifname "r1" accept; }; }')  # fmt: skip
    t = _trace(lab, c1, C2)
    assert t.delivered and _ping(lab, c1, C2), t
    back = _trace(lab, c2, C1)
    assert not back.delivered and not _ping(lab, c2, C1)
    assert _stop(back) == (r, "nft ip6 fw forward_", "request")
    assert _tcp(lab, c1, c2, C2) and _trace(lab, c1, C2, proto="tcp", dport=8080).delivered
    assert not _tcp(lab, c2, c1, C1, 8081) and not _trace(lab, c2, C1, proto="tcp", dport=8081).delivered


def test_an_input_policy_that_drops_ndp_leaves_the_neighbour_unresolved(lab: Lab) -> None:
    c1, r, _c2 = _router6(lab)
    _nft(r, "table ip6 fw { chain input_ { type filter hook input priority 0; policy drop; ct state established "
         "accept; }; }")  # fmt: skip
    t = _trace(lab, c1, C2)
    assert not t.delivered and not _ping(lab, c1, C2)
    step = t.steps[t.failed_step or 0]
    assert _stop(t) == (c1, "neigh", "request") and "neighbour solicitation unanswered" in step.decision
    assert "conntrack leaves it untracked" in step.decision
    assert step.fix is not None and "input_" in step.fix.native


def test_udp_over_ipv6_is_traced_like_nc(lab: Lab) -> None:
    c1, r, _c2 = _router6(lab)
    lab.run(r, "ip6tables-nft", "-A", "FORWARD", "-p", "udp", "--dport", "5353", "-j", "DROP")
    t = _trace(lab, c1, C2, proto="udp", dport=5353)
    assert not t.delivered and _stop(t) == (r, "ip6 filter FORWARD", "request")
    assert "--dport 5353 -j DROP" in t.steps[t.failed_step or 0].entry
    assert _trace(lab, c1, C2, proto="udp", dport=5354).delivered


def test_a_router_does_not_fragment_ipv6_it_says_packet_too_big_with_the_mtu(lab: Lab) -> None:
    """The trace follows the first packet: the router drops it and answers "packet too big"; from then on the
    sender knows the path's MTU (ping without ``-M do`` then fragments), and ``-M do`` fails at the sender."""
    c1, r, c2 = _router6(lab)
    lab.ip(r, "link", "set", "r2", "mtu", "1300")
    lab.ip(c2, "link", "set", "eth0", "mtu", "1300")
    t = _trace(lab, c1, C2, size=1400)
    assert not t.delivered and _stop(t) == (r, "mtu", "request")
    step = t.steps[t.failed_step or 0]
    assert "packet too big" in step.decision and "mtu 1300" in step.decision
    assert _live_agrees(lab, t, c1, C2, 1400), "the first 1400-byte echo dies at the router"
    assert not _ping(lab, c1, C2, "-s", "1400", "-M", "do")
    assert _trace(lab, c1, C2, size=1200).delivered and _ping(lab, c1, C2, "-s", "1200")


def test_a_link_narrower_than_1280_carries_no_ipv6(lab: Lab) -> None:
    c1, r, _c2 = _router6(lab)
    lab.ip(r, "link", "set", "r2", "mtu", "1200")
    t = _trace(lab, c1, C2)
    assert not t.delivered and not _ping(lab, c1, C2)
    assert _stop(t) == (r, "route", "request")
    assert "below IPv6's 1280" in t.steps[t.failed_step or 0].decision


@pytest.mark.parametrize("underlay6", [False, True], ids=["ipv4-underlay", "ipv6-underlay"])
def test_ipv6_overlay_over_vxlan_is_delivered_through_the_ndp_proxy(lab: Lab, underlay6: bool) -> None:
    _h1, _h2, v1, _v2 = _overlay6(lab, underlay6)
    t = _trace(lab, v1, V2)
    assert t.delivered and _ping(lab, v1, V2), t
    assert any(s.table == "ndp" and "NDP proxy" in s.decision for s in t.steps) or any(
        "NDP proxy" in s.decision for s in t.steps
    )
    assert any(s.table == "vxlan fdb" for s in t.steps)
    assert _live_agrees(lab, t, v1, V2)


def test_trace_stops_at_the_missing_ipv6_proxy_entry_and_its_fix_heals_the_ping(lab: Lab) -> None:
    h1, _h2, v1, _v2 = _overlay6(lab)
    lab.ip(h1, "-6", "neigh", "del", V2, "dev", "vxlan1")
    t = _trace(lab, v1, V2)
    assert not t.delivered and not _ping(lab, v1, V2)
    assert _stop(t) == (v1, "neigh", "request")
    step = t.steps[t.failed_step or 0]
    assert "neighbour solicitations only from its neighbour table" in step.decision
    assert step.fix is not None and step.fix.native[-10:] == ("ip", "neigh", "replace", V2, "lladdr", MAC2, "dev",
                                                              "vxlan1", "nud", "permanent")  # fmt: skip
    _heal(t)
    # -w: v1's solicitation for V2 is still being retransmitted (once a second) from the failed ping; the kernel
    # sends the next one, which the proxy now answers, when that timer fires
    assert _ping(lab, v1, V2, "-w", "4") and _trace(lab, v1, V2).delivered


def test_an_ipv6_packet_too_big_for_the_underlay_is_answered_packet_too_big(lab: Lab) -> None:
    h1, _h2, v1, _v2 = _overlay6(lab)
    lab.ip(h1, "link", "set", "eth0", "mtu", "1400")
    t = _trace(lab, v1, V2, size=1380)
    assert not t.delivered and not _ping(lab, v1, V2, "-s", "1380")
    assert _stop(t) == (h1, "mtu", "request")
    assert "packet too big" in t.steps[t.failed_step or 0].decision
    assert _trace(lab, v1, V2, size=1200).delivered and _ping(lab, v1, V2, "-s", "1200")


def test_vxray_trace_takes_an_ipv6_destination_or_a_namespace_with_dash_6(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VXRAY_HOME", str(tmp_path))
    monkeypatch.delenv("VXRAY_STORE", raising=False)
    c1, r, c2 = _router6(lab)
    lab.run(r, "ip6tables-nft", "-A", "FORWARD", "-p", "tcp", "--dport", "22", "-j", "REJECT")
    for argv in ([c1, C2], [c1, c2, "-6"]):
        capsys.readouterr()
        assert main(["trace", *argv, "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["dst"] == C2 and out["delivered"]
    assert main(["trace", c1, C2, "--proto", "tcp", "--dport", "22"]) == 1
    text = capsys.readouterr().out
    assert "ip6 filter FORWARD" in text and "ip6tables-nft -D FORWARD -p tcp -m tcp --dport 22 -j REJECT" in text
    assert main(["trace", c1, C2, "--live"]) == 0


@pytest.mark.parametrize(
    ("underlay6", "ruleset", "where"),
    [
        (False, "table bridge f { chain forward_ { type filter hook forward priority -200; policy accept; meta "
         "protocol ip6 drop; }; }", "nft bridge f forward_"),
        (True, "table netdev f { chain ingress_ { type filter hook ingress device eth0 priority 0; policy accept; "
         "udp dport 4789 drop; }; }", "nft netdev f ingress_"),
    ],
    ids=["bridge-family-drops-ipv6-frames", "netdev-drops-vxlan-over-an-ipv6-underlay"],
)  # fmt: skip
def test_bridge_and_netdev_chains_on_the_receiving_host_stop_the_ipv6_overlay(
    lab: Lab, underlay6: bool, ruleset: str, where: str
) -> None:
    _h1, h2, v1, _v2 = _overlay6(lab, underlay6)
    _nft(h2, ruleset)
    t = _trace(lab, v1, V2)
    assert not t.delivered and not _ping(lab, v1, V2)
    assert _stop(t) == (h2, where, "request")
    assert _live_agrees(lab, t, v1, V2)
    _heal(t)
    assert _ping(lab, v1, V2) and _trace(lab, v1, V2).delivered


def test_trace_dash_6_in_the_dual_stack_lab_stops_at_the_missing_ndp_proxy_entry_and_fdb_sync_heals_it(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VXRAY_HOME", str(tmp_path))
    monkeypatch.delenv("VXRAY_STORE", raising=False)
    name = f"{lab.prefix}ds"
    assert main(["lab", "up", "overlay-dualstack", "--name", name]) == 0
    try:
        capsys.readouterr()
        assert main(["trace", "vm33", "vm3", "-6", "--json"]) == 1
        t = json.loads(capsys.readouterr().out)
        step = t["steps"][t["failed_step"]]
        assert t["dst"] == "fd00:21::1" and (step["host"], step["table"]) == ("yy3", "neigh")
        assert "neighbour solicitation unanswered" in step["decision"]
        assert step["fix"]["vxray"] == ["vxray", "fdb", "sync", "prod"]
        assert main(step["fix"]["vxray"][1:]) == 0  # the fix programs IPv6 proxy entries too
        capsys.readouterr()
        assert main(["trace", "vm33", "vm3", "-6", "--json"]) == 0
        t = json.loads(capsys.readouterr().out)
        neigh = next(s for s in t["steps"] if s["table"] == "neigh")
        assert neigh["decision"] == "NDP: answered by vxlan1's NDP proxy from the neighbour table"
        assert runner.reachability6(runner.context(name)) == {"vm3": {"vm33": True}, "vm33": {"vm3": True}}
        for line in runner.load("overlay-dualstack")[0].solution:  # the exercise's own way: static NDP entries
            assert main(shlex.split(line)) == 0, line
        capsys.readouterr()
        assert main(["trace", "vm33", "vm3", "-6", "--json"]) == 0
        t = json.loads(capsys.readouterr().out)
        neigh = next(s for s in t["steps"] if s["table"] == "neigh")
        assert "fd00:21::1 lladdr 02:42:ac:15:00:01 PERMANENT" in neigh["entry"]
    finally:
        runner.down(name)


def test_firewalld_ipv6_rpfilter_is_evaluated_and_drops_solicitations_without_a_route_back(lab: Lab) -> None:
    c1, r, _c2 = _router6(lab)
    _nft(r, "table inet firewalld { chain filter_PREROUTING { type filter hook prerouting priority -290; policy "
         "accept; meta nfproto ipv6 fib saddr . mark . iif oif missing drop; }; }")  # fmt: skip
    t = _trace(lab, c1, C2)
    assert t.delivered and _ping(lab, c1, C2), t
    assert not any("uncertain" in s.decision for s in t.steps), "fib saddr . mark . iif oif is evaluated"
    lab.ip(r, "-6", "route", "del", "fd01::/64", "dev", "r1")  # the route back to c1 now leaves by r2
    lab.ip(r, "-6", "route", "add", "fd01::/64", "via", C2, "dev", "r2")
    lab.ip(c1, "-6", "neigh", "flush", "dev", "eth0")
    t = _trace(lab, c1, C2)
    assert not t.delivered and not _ping(lab, c1, C2)
    step = t.steps[t.failed_step or 0]
    assert _stop(t) == (c1, "neigh", "request") and "neighbour solicitation unanswered" in step.decision
    assert step.fix is not None and "filter_PREROUTING" in step.fix.native
    assert _live_agrees(lab, t, c1, C2)
