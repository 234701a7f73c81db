"""Every built-in scenario: its reachability matrix from real pings, before and after its exercise's fix."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from backend import codec
from backend.collect import collect
from backend.lab import engines, runner
from backend.observe import engine_scope
from tui.cli import main

from conftest import Lab, have, sh

OVERLAY_BROKEN = ("vm33>vm34 vm34>vm33", "vm3>vm33 vm3>vm34 vm33>vm3 vm33>vm34 vm34>vm3 vm34>vm33")
SWARM_OK = "web1>web2 web2>web1 web1>db2 db2>web1 web2>db2 db2>web2 db1>db2 db2>db1"

# scenario -> (pairs that reach each other as built, after the exercise's solution); None: no solution
SWARM_ALL = "vm3>vm33 vm3>vm4 vm33>vm3 vm33>vm4 vm4>vm3 vm4>vm33"  # real Docker Engines
SWARM_LOST_VM3_VM33 = "vm3>vm4 vm33>vm4 vm4>vm3 vm4>vm33"
EXPECTED: dict[str, tuple[str, str | None]] = {
    "overlay-static": ("", "vm3>vm33 vm33>vm3"),
    "overlay-dualstack": ("", "vm3>vm33 vm33>vm3"),  # and ping -6 the same (tests/test_dualstack.py)
    "docker-modes": ("c1>web1 web1>c1 joined>c1 joined>web1", None),
    "bridge-isolation": ("", "a>b b>a"),
    "macvlan-vlan": ("a1>a2 a2>a1 b1>b2 b2>b1", None),
    "flannel-vxlan": ("a1>a2 a1>b1 a2>a1 a2>b1 b1>a1 b1>a2", None),
    "flannel-vxlan-broken": ("b1>b2 b2>b1", "a1>b1 a1>b2 b1>a1 b1>b2 b2>a1 b2>b1"),
    "custom-bridge-nic": ("c1>c2 c1>c3 c2>c1 c2>c3 c3>c1 c3>c2 d1>c1 d1>c2 d1>c3", None),
    "swarm-routed": (SWARM_OK, None),
    "swarm-routed-broken": ("web2>db2 db2>web2", SWARM_OK),
    "overlay-fdb-broken": OVERLAY_BROKEN,
    "overlay-stale-broken": OVERLAY_BROKEN,
    "overlay-vni-broken": OVERLAY_BROKEN,
    "overlay-mtu-broken": OVERLAY_BROKEN,
    "overlay-firewall-broken": OVERLAY_BROKEN,
    "overlay-nft-broken": (OVERLAY_BROKEN[0], OVERLAY_BROKEN[1] + " web1>web2 web2>web1"),
    # real Docker Engines (skipped without docker.io)
    "docker-swarm": (SWARM_ALL, None),
    "docker-bridge": ("a1>c1 b1>c1 c1>a1 c1>b1 m1>m2 m2>m1", None),
    "docker-swarm-fw-broken": ("vm3>vm4 vm4>vm3", SWARM_ALL),
    "docker-swarm-arp-broken": (SWARM_LOST_VM3_VM33, SWARM_ALL),
    "docker-swarm-broken": (SWARM_LOST_VM3_VM33, SWARM_ALL),
    "docker-swarm-routed": ("db1>db2 db2>db1 db2>web1 db2>web2 web1>db2 web1>web2 web2>db2 web2>web1", None),
}


def _reaching(matrix: dict[str, dict[str, bool]]) -> set[str]:
    return {f"{a}>{b}" for a, row in matrix.items() for b, ok in row.items() if ok}


def _has_8021q(lab: Lab) -> bool:
    ns = lab.netns("vlanprobe")
    lab.ip(ns, "link", "add", "p0", "type", "veth", "peer", "name", "p1")
    return sh("ip", "-n", ns, "link", "add", "link", "p0", "name", "p0.1", "type", "vlan", "id", "1",
              check=False).returncode == 0  # fmt: skip


def _every_snapshot_round_trips(name: str) -> None:
    """Each host's snapshot survives ``vxray snapshot --json`` and ``--load`` exactly: a file attached to a ticket
    is the host as it was, down to the last counter and flag."""
    ctx = runner.context(name)
    for host in ctx.store.hosts():
        engine = bool(host.netns) and engines.runs_engine(host.netns or "")
        snap = collect(*(engine_scope(host.netns or "") if engine else (ctx.host(host.name).scope(), "none")))
        assert snap.namespaces and codec.loads(codec.dumps(snap), host.name) == snap, host.name


def test_every_builtin_scenario_has_an_expected_matrix() -> None:
    assert sorted(EXPECTED) == runner.builtin_names()
    broken = [n for n in runner.builtin_names() if n.endswith("-broken")]
    assert len(broken) >= 3
    for name in broken:
        spec, _ = runner.load(name)
        assert spec.faults and spec.solution and spec.goal, name


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_scenario_matrix_before_and_after_its_fix(scenario: str, lab: Lab, home: Path) -> None:
    if scenario.startswith("docker-") and not (have("dockerd") and os.path.exists("/bin/busybox")):
        pytest.skip("needs docker.io and busybox-static")
    if scenario == "macvlan-vlan" and not _has_8021q(lab):
        pytest.skip("this kernel has no 802.1Q support (CONFIG_VLAN_8021Q)")
    before, after = EXPECTED[scenario]
    name = f"{lab.prefix}{len(scenario)}"
    assert main(["lab", "up", scenario, "--name", name]) == 0
    spec = runner.built(name)
    _every_snapshot_round_trips(name)
    assert _reaching(runner.status(name)["reachability"]) == set(before.split())
    if after is None:
        assert runner.check(name) == [], "a scenario without a fix is solved as built"
    else:
        assert runner.check(name) != []
        for line in spec.solution:
            assert main(shlex.split(line)) == 0, line
        assert _reaching(runner.status(name)["reachability"]) == set(after.split())
        assert runner.check(name) == []
    assert main(["lab", "down", name]) == 0


def test_removing_a_nic_bridge_gives_the_host_its_address_back(lab: Lab, home: Path) -> None:
    name = f"{lab.prefix}nic"
    assert main(["lab", "up", "custom-bridge-nic", "--name", name]) == 0
    host1 = f"{name}.host1"
    assert "10.20.0.11/24" in sh("ip", "-n", host1, "-br", "addr", "show", "br0").stdout
    assert main(["network", "rm", "lan", "--force"]) == 0
    assert "10.20.0.11/24" in sh("ip", "-n", host1, "-br", "addr", "show", "eth0").stdout
    assert sh("ip", "-n", host1, "link", "show", "br0", check=False).returncode != 0
    assert "master" not in sh("ip", "-n", host1, "link", "show", "eth0").stdout
    assert lab.run(f"{name}.host2", "ping", "-c", "1", "-W", "1", "10.20.0.11", check=False).returncode == 0
    runner.down(name)


def test_removing_a_flannel_network_takes_its_devices_and_rules_from_every_host(lab: Lab, home: Path) -> None:
    name = f"{lab.prefix}fl"
    assert main(["lab", "up", "flannel-vxlan", "--name", name]) == 0
    node1 = f"{name}.node1"
    assert "172.21.55.0/24 via 172.21.55.0 dev flannel.1" in sh("ip", "-n", node1, "route").stdout
    assert main(["network", "rm", "flannel", "--force"]) == 0
    for host in ("node1", "node2"):
        links = sh("ip", "-n", f"{name}.{host}", "-br", "link").stdout
        assert "flannel.1" not in links and "cni0" not in links
        rules = sh("ip", "netns", "exec", f"{name}.{host}", "iptables-nft-save").stdout
        assert "172.21.0.0/16" not in rules
    runner.down(name)
