"""``vxray doctor`` against native nftables rules written with plain ``nft`` in lab namespaces.

For each way a native rule breaks container traffic — a base chain in another table
refusing what flannel's iptables rules accept (firewalld's case), a forward policy drop,
VXLAN's UDP port dropped at a netdev ingress hook or in an output chain, a bridge table dropping bridged
frames, an ip6 forward drop on a dual-stack router — a real ping fails, the doctor
names the rule first (family, table, chain, priority, handle), and its fix heals the
ping. The ``overlay-nft-broken`` lab: both of its rules named, both fixes heal it. And
``vxray firewall`` refuses bad words with one line, changing nothing.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from backend.collect import collect
from backend.errors import VxrayError
from backend.lab import runner
from backend.lab.spec import FaultSpec, dump, parse
from backend.netns import Scope
from backend.ops.sandbox import sandbox_name
from diagnostics.doctor import Desired, doctor
from diagnostics.world import World
from tui.cli import main

from conftest import Lab, have, sh

pytestmark = pytest.mark.skipif(not have("nft"), reason="needs nft")

FIREWALLD = """table inet firewalld {
  chain filter_FORWARD {
    type filter hook forward priority filter + 10; policy accept;
    ct state established,related accept
    reject with icmpx type admin-prohibited
  }
}
"""
POLICY_DROP = "table ip fw {\n chain forward {\n  type filter hook forward priority 0; policy drop;\n }\n}\n"
INGRESS_8472 = """table netdev edge {
  chain underlay_in {
    type filter hook ingress device eth0 priority -500; policy accept;
    udp dport 8472 drop
  }
}
"""
OUTPUT_8472 = """table inet out {
  chain output {
    type filter hook output priority 0; policy accept;
    udp dport 8472 drop
  }
}
"""
BRIDGE_WEB2 = """table bridge l2 {
  chain l2_forward {
    type filter hook forward priority 0; policy accept;
    ip daddr 10.0.0.4 drop
  }
}
"""

# case -> (built-in lab, machine whose namespace gets the rules, None: that machine's own / a network: its
# sandbox there, ruleset, src container, dst container, words of the first finding's title, its vxray fix)
CASES = {
    "firewalld-forward-after-flannels-accept": (
        "flannel-vxlan", "node1", None, FIREWALLD, "a1", "b1",
        "nft inet firewalld filter_FORWARD at priority 10, after iptables' filter FORWARD, whose rule accepts it",
        "vxray firewall delete inet firewalld filter_FORWARD handle 3 --host node1",
    ),
    "forward-policy-drop": (
        "swarm-routed", "r1", None, POLICY_DROP, "web1", "web2",
        "r1 drops forwarded traffic from eth0 to eth1 (nft ip fw forward at priority 0",
        "vxray firewall policy ip fw forward accept --host r1",
    ),
    "netdev-ingress-vxlan-port": (
        "flannel-vxlan", "node2", None, INGRESS_8472, "a1", "b1",
        "node2 drops VXLAN: UDP 8472 from node1 (192.168.0.11) is refused by nft netdev edge underlay_in at "
        "priority -500",
        "vxray firewall delete netdev edge underlay_in handle 2 --host node2",
    ),
    "output-chain-vxlan-port": (
        "flannel-vxlan", "node1", None, OUTPUT_8472, "a1", "b1",
        "node1 drops the VXLAN it sends: UDP 8472 to node2 (192.168.0.12) is refused by nft inet out output at "
        "priority 0",
        "vxray firewall delete inet out output handle 2 --host node1",
    ),
    "bridge-table-in-an-overlay-sandbox": (
        "swarm-routed", "node2", "ov", BRIDGE_WEB2, "web1", "web2",
        "nft bridge l2 l2_forward at priority 0 drops frames br0 bridges from",
        "vxray firewall delete bridge l2 l2_forward handle 2 --host node2 --netns {sandbox}",
    ),
}  # fmt: skip


def _nft(ns: str, ruleset: str) -> None:
    """Rules as an operator or firewalld writes them: plain ``nft -f`` in the namespace."""
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=ruleset, text=True, check=True)


def _ping(ns: str, ip: str, *flags: str) -> bool:
    return sh("ip", "netns", "exec", ns, "ping", *flags, "-c", "3", "-i", "0.2", "-W", "1", "-q", ip,
              check=False).returncode == 0  # fmt: skip


def _doctor(capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict]]:
    capsys.readouterr()
    code = main(["doctor", "--json"])
    return code, json.loads(capsys.readouterr().out)


def _pair(name: str, src: str, dst: str) -> tuple[str, str]:
    """The source container's namespace and the address it pings ``dst`` at."""
    return runner.targets(runner.context(name))[src, dst]


@pytest.mark.parametrize("case", sorted(CASES))
def test_doctor_names_a_native_nft_drop_first_and_its_fix_heals_ping(
    case: str, lab: Lab, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, machine, network, ruleset, src, dst, words, fix = CASES[case]
    name = f"{lab.prefix}n"
    assert main(["lab", "up", base, "--name", name]) == 0
    ctx = runner.context(name)
    h = ctx.host(machine)
    ns = h.ns_name(sandbox_name(ctx.network(network))) if network else f"{name}.{machine}"
    pair = _pair(name, src, dst)
    assert _ping(*pair)
    _nft(ns, ruleset)
    assert not _ping(*pair)
    code, findings = _doctor(capsys)
    top = findings[0]
    assert code == 1 and top["host"] == machine and words in top["title"], findings[:2]
    assert top["fix"]["vxray_line"] == fix.format(sandbox=ns), top["fix"]
    assert top["fix"]["native"][:4] == ["ip", "netns", "exec", ns] and top["fix"]["native"][4] == "nft"
    assert main(top["fix"]["vxray"][1:]) == 0
    assert _ping(*pair)
    code, findings = _doctor(capsys)
    assert code == 0, [f["title"] for f in findings if f["likelihood"] >= 0.5]
    runner.down(name)


def test_doctor_names_an_ip6_forward_drop_on_a_dual_stack_router(lab: Lab) -> None:
    c1, r, c2 = lab.router()
    for ns, dev, addr in ((c1, "eth0", "fd00:1::2/64"), (r, "r1", "fd00:1::1/64"), (r, "r2", "fd00:2::1/64"),
                          (c2, "eth0", "fd00:2::2/64")):  # fmt: skip
        lab.ip(ns, "-6", "addr", "add", addr, "dev", dev, "nodad")
    lab.ip(c1, "-6", "route", "add", "default", "via", "fd00:1::1")
    lab.ip(c2, "-6", "route", "add", "default", "via", "fd00:2::1")
    lab.run(r, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    # the link-local addresses NDP answers from are tentative for a second (DAD) after the links came up
    assert any(_ping(c1, "fd00:2::2", "-6") for _ in range(4)) and _ping(c1, "10.2.0.2")
    _nft(r, "table ip6 fw {\n chain forward {\n  type filter hook forward priority 0; policy accept;\n"
         "  ip6 daddr fd00:2::/64 drop\n }\n}\n")  # fmt: skip
    assert not _ping(c1, "fd00:2::2", "-6") and _ping(c1, "10.2.0.2")
    snap = collect(Scope(netns=tuple(lab.namespaces)), docker="none")
    world = World([snap], replace(World([snap]).labels, host_netns={"r": r}))
    top = doctor(world, Desired())[0]
    assert "r drops forwarded IPv6 traffic from r1 to r2, while IPv4 passes (nft ip6 fw forward at priority 0" in (
        top.title
    ), top
    assert top.fix is not None and top.fix.vxray == ("vxray", "firewall", "delete", "ip6", "fw", "forward", "handle",
                                                     "2", "--netns", r)  # fmt: skip
    sh(*top.fix.native)
    assert _ping(c1, "fd00:2::2", "-6")


def test_overlay_nft_broken_lab_names_both_rules_and_their_fixes_heal_it(
    lab: Lab, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"{lab.prefix}s"
    assert main(["lab", "up", "overlay-nft-broken", "--name", name]) == 0
    cross, bridged = _pair(name, "vm33", "vm3"), _pair(name, "web1", "web2")
    assert not _ping(*cross) and not _ping(*bridged)
    code, findings = _doctor(capsys)
    likely = [f for f in findings if f["likelihood"] >= 0.5]
    assert code == 1 and len(likely) == 2, [f["title"] for f in findings]
    udp, forward = likely
    assert udp["title"] == ("yy3 drops VXLAN: UDP 4789 from yy2 (10.193.6.36) is refused by nft inet vx_udp input "
                            "at priority 0")  # fmt: skip
    assert udp["evidence"][0].startswith("priority 0: rule handle 2: udp dport 4789")
    assert udp["fix"]["vxray_line"] == "vxray firewall delete inet vx_udp input handle 2 --host yy3"
    assert "drops the traffic docker1 bridges from web1" in forward["title"], forward
    assert "nft inet vx_forward forward at priority -10, before iptables' filter FORWARD" in forward["title"]
    assert forward["fix"]["vxray_line"] == "vxray firewall delete inet vx_forward forward handle 2 --host yy3"
    assert [shlex.join(f["fix"]["vxray"][1:]) for f in likely] == list(runner.load("overlay-nft-broken")[0].solution)
    assert main(udp["fix"]["vxray"][1:]) == 0
    assert _ping(*cross) and not _ping(*bridged)
    assert main(forward["fix"]["vxray"][1:]) == 0
    assert _ping(*cross) and _ping(*bridged)
    assert _doctor(capsys)[0] == 0
    runner.down(name)


def test_firewall_refuses_bad_words_with_one_line_and_changes_nothing(
    lab: Lab, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = lab.netns("fw")
    _nft(ns, "table inet t {\n chain c {\n  type filter hook input priority 0; policy drop;\n  udp dport 4789 drop\n"
         " }\n chain plain {\n }\n}\n")  # fmt: skip
    before = sh("ip", "netns", "exec", ns, "nft", "list", "ruleset").stdout
    for argv, says in (
        (["firewall", "delete", "ipx", "t", "c", "handle", "2"], "invalid nftables family 'ipx'"),
        (["firewall", "delete", "inet", "t;x", "c", "handle", "2"], "invalid nftables table name 't;x'"),
        (["firewall", "delete", "inet", "t", "c", "handle", "-2"], "invalid rule handle '-2'"),
        (["firewall", "delete", "inet", "t", "c", "hndl", "2"], "expected `handle N` after the chain, got 'hndl'"),
        (["firewall", "delete", "inet", "t", "c", "handle", "99"], "no rule with handle 99 in chain inet t c"),
        (["firewall", "delete", "inet", "t", "nochain", "handle", "2"], "no chain inet t nochain"),
        (["firewall", "policy", "inet", "t", "c", "maybe"], "invalid policy 'maybe': accept or drop"),
        (["firewall", "policy", "inet", "t", "plain", "accept"], "chain inet t plain on host local is no base chain"),
    ):
        capsys.readouterr()
        assert main([*argv, "--netns", ns]) == 2, argv
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1, err
    assert sh("ip", "netns", "exec", ns, "nft", "list", "ruleset").stdout == before
    assert main(["firewall", "policy", "inet", "t", "c", "accept", "--netns", ns]) == 0
    assert main(["firewall", "delete", "inet", "t", "c", "handle", "3", "--netns", ns]) == 0
    after = sh("ip", "netns", "exec", ns, "nft", "list", "chain", "inet", "t", "c").stdout
    assert "policy accept" in after and "4789" not in after


def test_nft_faults_are_checked_with_their_line_and_survive_a_dump() -> None:
    head = '[lab]\nname = "l"\n[[hosts]]\nname = "h"\nunderlay = "10.0.0.1/24"\n[[faults]]\n'
    for body, says in (
        ('kind = "nft-bridge-drop"\nhost = "h"\nfamily = "inet"\n', "lab.toml:9: faults[0].family: unknown family"),
        ('kind = "udp-drop"\nhost = "h"\npriority = 5\n', "only the nft-* faults take 'priority'"),
        ('kind = "nft-forward-drop"\nhost = "h"\npriority = 4294967296\n', "a signed 32-bit number"),
        ('kind = "nft-udp-drop"\nhost = "h"\nfamily = 4\n', "expected a string, got 4"),
    ):
        with pytest.raises(VxrayError) as err:
            parse(head + body)
        assert says in str(err.value), str(err.value)
    spec = parse(head + 'kind = "nft-forward-drop"\nhost = "h"\nfamily = "ip6"\npriority = -10\n')
    assert spec.faults == (FaultSpec("nft-forward-drop", host="h", family="ip6", priority=-10),)
    assert parse(dump(spec)) == spec
    assert runner.nft_ruleset(spec.faults[0]) == (
        "ip6",
        "vx_forward",
        "forward",
        "{ type filter hook forward priority -10; policy accept; }",
        ("counter drop",),
    )
