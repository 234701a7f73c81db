"""``vxray trace``: where and why a packet stops in each broken lab, and the command that fixes it."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from backend.lab import runner
from tui.cli import main
from tui.trace_text import fix_lines

from conftest import Lab, placeholders


def _up(lab: Lab, scenario: str) -> str:
    name = f"{lab.prefix}{len(scenario)}"
    assert main(["lab", "up", scenario, "--name", name]) == 0
    return name


def _trace(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["trace", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def _failed(t: dict) -> dict:
    assert not t["delivered"] and t["failed_step"] is not None
    return t["steps"][t["failed_step"]]


def test_trace_of_the_field_notes_overlay_stops_at_the_unanswered_arp_then_passes_after_the_fix(
    lab: Lab, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _up(lab, "overlay-static")
    code, t = _trace(capsys, "vm33", "vm3")
    step = _failed(t)
    assert code == 1
    assert (step["host"], step["table"], step["netns"]) == ("yy3", "neigh", f"{name}.yy3-vm33")
    assert "ARP request unanswered" in step["decision"] and "neighbour table" in step["decision"]
    assert step["fix"]["vxray"] == ["vxray", "fdb", "sync", "prod"]
    for line in runner.load("overlay-static")[0].solution:
        assert main(shlex.split(line)) == 0
    code, t = _trace(capsys, "vm33", "vm3")
    assert code == 0 and t["delivered"] and t["failed_step"] is None
    assert {s["direction"] for s in t["steps"]} == {"request", "reply"}
    runner.down(name)


def test_trace_stops_at_missing_fdb_entry_and_names_the_entry_to_add(
    lab: Lab, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _up(lab, "overlay-fdb-broken")
    _, t = _trace(capsys, "vm33", "vm3")
    step = _failed(t)
    assert (step["host"], step["table"]) == ("yy3", "vxlan fdb")
    assert step["entry"] == "no entry for 02:42:ac:15:00:01 on vxlan1"
    assert step["fix"]["vxray"] == shlex.split(
        "vxray fdb add 02:42:ac:15:00:01 --network prod dst 10.193.6.36 --host yy3"
    )
    assert step["fix"]["native"][-8:] == shlex.split("bridge fdb replace 02:42:ac:15:00:01 dev vxlan1 dst 10.193.6.36")
    _, t = _trace(capsys, "vm3", "vm33")
    assert _failed(t)["direction"] == "reply", "the request gets through; the reply has no entry on yy3"
    runner.down(name)


def test_trace_names_the_vni_mismatch_on_the_receiving_host(
    lab: Lab, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _up(lab, "overlay-vni-broken")
    _, t = _trace(capsys, "vm3", "vm33")
    step = _failed(t)
    assert (step["host"], step["table"]) == ("yy3", "vxlan")
    assert step["decision"].startswith("VNI mismatch") and "vxlan1 VNI 257" in step["entry"]
    assert step["fix"]["vxray_line"] == "vxray network repair prod"
    runner.down(name)


def test_trace_finds_the_input_rule_dropping_vxlan_and_the_setting_that_removes_it(
    lab: Lab, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _up(lab, "overlay-firewall-broken")
    _, t = _trace(capsys, "vm3", "vm33")
    step = _failed(t)
    assert (step["host"], step["table"]) == ("yy3", "filter INPUT")
    assert "--dport 4789 -j DROP" in step["entry"]
    assert step["fix"]["vxray_line"] == "vxray host set yy3 udp.4789=accept"
    runner.down(name)


def test_trace_blames_the_routers_forward_policy(lab: Lab, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = _up(lab, "swarm-routed-broken")
    _, t = _trace(capsys, "web1", "web2")
    step = _failed(t)
    assert (step["host"], step["table"], step["entry"]) == ("r1", "filter FORWARD", "nft FORWARD policy DROP")
    assert step["fix"]["vxray_line"] == "vxray host set r1 forward_policy=ACCEPT"
    runner.down(name)


def test_trace_reports_ip_forward_off_where_flannel_routes(
    lab: Lab, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _up(lab, "flannel-vxlan-broken")
    _, t = _trace(capsys, "a1", "b1")
    step = _failed(t)
    assert (step["host"], step["table"], step["entry"]) == ("node2", "sysctl", "net.ipv4.ip_forward = 0")
    assert step["fix"]["vxray_line"] == "vxray host set node2 ip_forward=1"
    runner.down(name)


def test_trace_with_a_size_finds_the_underlay_mtu_that_drops_full_size_packets(
    lab: Lab, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _up(lab, "overlay-mtu-broken")
    code, t = _trace(capsys, "vm33", "vm3")
    assert code == 0, "small pings pass"
    _, t = _trace(capsys, "vm3", "vm33", "--size", "1422", "--df")
    step = _failed(t)
    assert (step["host"], step["table"], step["entry"]) == ("yy3", "mtu", "eth0 mtu 1400")
    assert step["fix"]["vxray_line"] == "vxray host set yy3 mtu.eth0=1500"
    runner.down(name)


def test_trace_follows_a_published_port_through_dnat(lab: Lab, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = _up(lab, "docker-modes")
    code, t = _trace(capsys, f"{name}.client", "host1:8081")
    assert code == 0, t
    dnat = next(s for s in t["steps"] if s["table"] == "nat PREROUTING")
    assert dnat["host"] == "host1" and dnat["decision"].endswith("-> 172.17.0.3:80")
    assert any(s["decision"] == "delivered to web1" for s in t["steps"])
    runner.down(name)


def test_trace_text_tells_the_story_and_exits_like_ping(
    lab: Lab, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _up(lab, "overlay-fdb-broken")
    capsys.readouterr()
    assert main(["trace", "vm33", "vm3"]) == 1
    out = capsys.readouterr().out
    assert "DROPPED at step" in out and "fix: vxray fdb add 02:42:ac:15:00:01" in out
    assert main(["trace", "vm33", "vm34"]) == 0
    assert capsys.readouterr().out.strip().endswith("DELIVERED: the packet and its reply get through.")
    assert main(["trace", "vm33", "nowhere"]) == 2
    assert capsys.readouterr().err.strip() == "vxray: unknown container, HOST:PORT, namespace or address 'nowhere'"
    runner.down(name)


def test_trace_live_sees_the_probe_where_the_simulation_says_and_not_beyond_the_drop(
    lab: Lab, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _up(lab, "swarm-routed-broken")
    capsys.readouterr()
    assert main(["trace", "web1", "web2", "--live", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["first_disagreement"] is None
    watched = [(s, live) for s, live in zip(out["steps"], out["live"], strict=True) if live["expected"] is not None]
    assert any(live["seen"] for _, live in watched), "the probe was captured on its way"
    assert [s["host"] for s, live in watched if live["seen"]][-1] == "r1", "last seen arriving at the router"
    assert main(["trace", "web1", "web2", "--live"]) == 1
    assert "agrees with the simulation at every step it could watch" in capsys.readouterr().out
    runner.down(name)


def test_trace_stops_at_an_external_vxlan_device_that_a_bridged_frame_cannot_use(lab: Lab) -> None:
    from backend.collect import collect
    from backend.netns import Scope
    from diagnostics.trace import trace
    from diagnostics.world import World

    host, ctr = lab.netns("ext-host"), lab.netns("ext-ctr")
    lab.veth(ctr, "eth0", host, "vp0")
    lab.ip(ctr, "addr", "add", "10.9.9.1/24", "dev", "eth0")
    lab.ip(ctr, "neigh", "replace", "10.9.9.2", "lladdr", "02:42:0a:09:09:02", "dev", "eth0", "nud", "permanent")
    lab.ip(host, "link", "add", "br0", "type", "bridge")
    lab.ip(host, "link", "add", "vx0", "type", "vxlan", "external", "dstport", "4789")
    for dev in ("vp0", "vx0"):
        lab.ip(host, "link", "set", dev, "master", "br0", "up")
    lab.ip(host, "link", "set", "br0", "up")
    assert lab.run(ctr, "ping", "-c", "1", "-W", "1", "10.9.9.2", check=False).returncode != 0
    world = World([collect(Scope(netns=(host, ctr)), docker="none")])
    t = trace(world, ctr, "10.9.9.2")
    step = t.steps[t.failed_step]
    assert not t.delivered and step.table == "vxlan" and "tunnel metadata" in step.decision


def test_trace_fix_for_isolated_bridges_is_network_connect(
    lab: Lab, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _up(lab, "bridge-isolation")
    assert runner.check(name) == [("a", "b"), ("b", "a")], "Docker's isolation chains keep the bridges apart"
    code, t = _trace(capsys, "a", "b")
    step = _failed(t)
    assert code == 1 and step["table"] == "filter FORWARD" and "DOCKER-ISOLATION-STAGE-2" in step["entry"]
    (solution,) = runner.load("bridge-isolation")[0].solution  # network connect net192 a
    assert step["fix"]["vxray"] == ["vxray", *shlex.split(solution)]
    assert step["fix"]["native"] == [], "never delete Docker's isolation rule"
    assert main(step["fix"]["vxray"][1:]) == 0
    assert runner.check(name) == []
    assert _trace(capsys, "a", "b")[0] == 0
    runner.down(name)


def _pair(lab: Lab) -> tuple[str, str]:
    """Two namespaces joined by a veth (veth1 in the first, veth2 in the second) on 10.96.0.0/24."""
    a, b = lab.netns("pair-a"), lab.netns("pair-b")
    lab.veth(a, "veth1", b, "veth2")
    lab.ip(a, "addr", "add", "10.96.0.1/24", "dev", "veth1")
    lab.ip(b, "addr", "add", "10.96.0.2/24", "dev", "veth2")
    return a, b


def _pings(lab: Lab, src: str, dst: str) -> bool:
    """Any of three probes answered: a device just set up answers once its carrier is up."""
    return lab.run(src, "ping", "-c", "3", "-i", "0.2", "-W", "1", dst, check=False).returncode == 0


@pytest.mark.parametrize("end", ["sender's", "receiver's"])
def test_trace_fix_for_a_down_veth_is_link_up(lab: Lab, end: str) -> None:
    from backend.collect import collect
    from backend.netns import Scope
    from diagnostics.trace import trace
    from diagnostics.world import World

    a, b = _pair(lab)
    assert _pings(lab, a, "10.96.0.2")
    ns, dev = (a, "veth1") if end == "sender's" else (b, "veth2")
    lab.ip(ns, "link", "set", dev, "down")  # broken with plain ip: the sender's end takes its route with it
    assert not _pings(lab, a, "10.96.0.2")
    t = trace(World([collect(Scope(netns=(a, b)), docker="none")]), a, "10.96.0.2")
    fix = t.steps[t.failed_step or 0].fix
    assert not t.delivered and fix is not None
    assert fix.native == ("ip", "netns", "exec", ns, "ip", "link", "set", dev, "up")
    assert fix.vxray == () and not fix.runnable and "no command" in fix.missing, "vxray manages no such link"
    subprocess.run(fix.native, check=True)  # the argv as it is, no shell
    assert _pings(lab, a, "10.96.0.2")


def test_fix_with_an_unknown_value_is_not_runnable(lab: Lab) -> None:
    from backend.collect import collect
    from backend.model import Labels
    from backend.netns import Scope
    from diagnostics.trace import trace
    from diagnostics.world import World

    a, b = _pair(lab)
    lab.ip(b, "link", "add", "blue0", "type", "bridge")
    lab.ip(b, "addr", "add", "10.95.0.2/24", "dev", "blue0")
    lab.ip(b, "link", "set", "blue0", "up")
    snap = collect(Scope(netns=(a, b)), docker="none")
    containers = {a: "ca", b: "cb"}
    cases = [  # a has no route to b's other address: through which gateway, onto which network, is not known
        (Labels(), "which gateway leads to 10.95.0.2: the snapshots do not say"),
        (Labels(containers=containers), "which network to connect ca to: the snapshots do not say which network "
                                        "10.95.0.2 is on"),
    ]  # fmt: skip
    for labels, missing in cases:
        t = trace(World([snap], labels), a, "10.95.0.2")
        fix = t.steps[t.failed_step or 0].fix
        assert fix is not None and not fix.runnable and fix.missing == missing
        assert (fix.vxray, fix.native, placeholders(fix)) == ((), (), [])
        assert fix_lines(fix) == [f"fix: none runnable — {missing}"]
    known = Labels(containers=containers, endpoints={b: {"10.95.0.2": "blue"}})  # the store says which
    t = trace(World([snap], known), a, "10.95.0.2")
    fix = t.steps[t.failed_step or 0].fix
    assert fix is not None and fix.vxray == ("vxray", "network", "connect", "blue", "ca") and fix.runnable
