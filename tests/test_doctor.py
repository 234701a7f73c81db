"""``vxray doctor``: the injected fault of every broken lab comes first, healthy labs come out clean."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from backend.lab import runner
from tui.cli import main

from conftest import Lab, sh

# scenario -> (host, words of the top finding, its vxray fix)
BROKEN = {
    "overlay-static": ("yy2", "knows no remote MAC", "vxray fdb sync prod"),
    "overlay-fdb-broken": ("yy3", "knows no remote MAC", "vxray fdb sync prod"),
    "overlay-stale-broken": ("yy3", "stale FDB entry on yy3: 02:42:ac:15:00:01 -> 10.193.6.99",
                             "vxray network repair prod"),
    "overlay-vni-broken": ("yy3", "VNI mismatch", "vxray network repair prod --host yy3"),
    "overlay-mtu-broken": ("yy3", "MTU mismatch", "vxray host set yy3 mtu.eth0=1500"),
    "overlay-firewall-broken": ("yy3", "drops VXLAN: UDP 4789", "vxray host set yy3 udp.4789=accept"),
    "flannel-vxlan-broken": ("node2", "ip_forward is off", "vxray host set node2 ip_forward=1"),
    "swarm-routed-broken": ("r1", "drops forwarded traffic", "vxray host set r1 forward_policy=ACCEPT"),
}  # fmt: skip
HEALTHY = ["docker-modes", "bridge-isolation", "flannel-vxlan", "custom-bridge-nic", "swarm-routed"]


def _doctor(capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict]]:
    capsys.readouterr()
    code = main(["doctor", "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("scenario", sorted(BROKEN))
def test_doctor_ranks_the_injected_fault_first_and_is_clean_after_the_fix(
    scenario: str, lab: Lab, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host, words, fix = BROKEN[scenario]
    name = f"{lab.prefix}{len(scenario)}"
    assert main(["lab", "up", scenario, "--name", name]) == 0
    code, findings = _doctor(capsys)
    top = findings[0]
    assert code == 1
    assert top["host"] == host and words in top["title"] and top["fix"]["vxray"] == shlex.split(fix), top
    assert top["fix"]["vxray_line"] == fix
    assert top["evidence"], "every finding shows its evidence"
    for line in runner.load(scenario)[0].solution:
        assert main(shlex.split(line)) == 0
    code, findings = _doctor(capsys)
    assert code == 0 and [f for f in findings if f["likelihood"] >= 0.5] == []
    runner.down(name)


@pytest.mark.parametrize("scenario", HEALTHY)
def test_doctor_finds_nothing_likely_in_a_healthy_lab(
    scenario: str, lab: Lab, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"{lab.prefix}{len(scenario)}"
    assert main(["lab", "up", scenario, "--name", name]) == 0
    code, findings = _doctor(capsys)
    assert code == 0, findings
    runner.down(name)


def test_doctor_names_a_duplicate_address(lab: Lab, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = f"{lab.prefix}dup"
    assert main(["lab", "up", "bridge-isolation", "--name", name]) == 0
    a = runner.context(name).container("a")
    b_ip = next(e.ip for e in runner.context(name).store.endpoints() if e.container == "b")
    sh("ip", "-n", a.netns or "", "addr", "add", f"{b_ip}/32", "dev", "eth0")
    capsys.readouterr()
    assert main(["doctor"]) == 1
    assert f"duplicate IP {b_ip}: a, b" in capsys.readouterr().out
    runner.down(name)


def test_doctor_finds_a_static_arp_entry_left_behind_by_a_mac_change(
    lab: Lab, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"{lab.prefix}mac"
    assert main(["lab", "up", "overlay-static", "--name", name]) == 0
    for line in runner.load("overlay-static")[0].solution:
        assert main(shlex.split(line)) == 0
    vm3 = runner.context(name).container("vm3").netns or ""
    sh("ip", "-n", vm3, "link", "set", "eth0", "address", "02:42:ac:15:00:99")
    capsys.readouterr()
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert (
        "stale static ARP entry in vm33: 172.21.0.1 lladdr 02:42:ac:15:00:01, but 172.21.0.1 is now behind "
        "02:42:ac:15:00:99" in out
    )
    assert "fix: vxray arp add 172.21.0.1 02:42:ac:15:00:99 --container vm33" in out
    runner.down(name)
