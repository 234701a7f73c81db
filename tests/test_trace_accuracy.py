"""The acceptance test of ``vxray trace``: its verdict must agree with real pings.

For every built-in scenario (as built, and after its exercise's fix) and for each
fault the labs can inject, on three healthy bases, every ordered pair of
containers is traced over a snapshot taken first, then pinged for real. A case
agrees when the simulated verdict (packet and reply delivered, or not) is what
the ping saw. The figure is printed at the end of the run.
"""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

import pytest

from backend.lab import runner
from backend.lab.spec import FaultSpec, LabSpec, dump
from backend.observe import observe
from diagnostics.trace import trace
from diagnostics.world import World
from tui.cli import main

from conftest import ACCURACY, Lab

OVERLAY, FLANNEL, SWARM = "overlay-fdb-broken", "flannel-vxlan", "swarm-routed"
FAULTS: list[tuple[str, FaultSpec, int | None]] = [
    (OVERLAY, FaultSpec("fdb-remove", host="yy3", network="prod", container="vm3"), None),
    (OVERLAY, FaultSpec("stale-fdb", host="yy2", network="prod", container="vm34", dst="10.193.6.99"), None),
    (OVERLAY, FaultSpec("wrong-vni", host="yy2", network="prod", vni=300), None),
    (OVERLAY, FaultSpec("mtu", host="yy2", mtu=1400), 1422),
    (OVERLAY, FaultSpec("udp-drop", host="yy2"), None),
    (OVERLAY, FaultSpec("ip-forward-off", host="yy3"), None),
    (OVERLAY, FaultSpec("forward-drop", host="yy3"), None),
    (FLANNEL, FaultSpec("ip-forward-off", host="node1"), None),
    (FLANNEL, FaultSpec("forward-drop", host="node2"), None),
    (FLANNEL, FaultSpec("udp-drop", host="node2", port=8472), None),
    (FLANNEL, FaultSpec("mtu", host="node1", mtu=1400), 1422),
    (SWARM, FaultSpec("ip-forward-off", host="r1"), None),
    (SWARM, FaultSpec("forward-drop", host="r1"), None),
    (SWARM, FaultSpec("udp-drop", host="node1"), None),
    (SWARM, FaultSpec("stale-fdb", host="node2", network="ov", container="web1", dst="192.168.1.99"), None),
]
SCENARIOS = [n for n in runner.builtin_names() if n != "macvlan-vlan"]  # no 802.1Q in every kernel


def _agreement(name: str, size: int | None) -> list[str]:
    """Trace every pair over a snapshot, then ping it; the pairs where they disagree."""
    ctx = runner.context(name)
    snap, labels = observe(ctx, f"{name}.ul")
    world = World([snap], labels)
    pairs = runner.targets(ctx)
    predicted = {pair: trace(world, netns, ip, size=size) for pair, (netns, ip) in pairs.items()}
    real = runner.reachability(ctx, size)
    wrong = []
    for (a, b), t in predicted.items():
        ACCURACY[0] += t.delivered == real[a][b]
        ACCURACY[1] += 1
        if t.delivered != real[a][b]:
            why = t.steps[t.failed_step].decision if t.failed_step is not None else "delivered"
            wrong.append(f"{a} -> {b}: trace says {why!r}, ping says {'ok' if real[a][b] else 'lost'}")
    return wrong


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VXRAY_HOME", str(tmp_path))
    monkeypatch.delenv("VXRAY_STORE", raising=False)
    return tmp_path


def _up(spec: LabSpec, name: str) -> LabSpec:
    spec = replace(spec, name=name)
    runner.up(spec, dump(spec))
    return spec


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_trace_verdicts_agree_with_pings_before_and_after_the_fix(scenario: str, lab: Lab, home: Path) -> None:
    spec = _up(runner.load(scenario)[0], f"{lab.prefix}{len(scenario)}")
    wrong = _agreement(spec.name, spec.size)
    for line in spec.solution:
        assert main(shlex.split(line)) == 0, line
    if spec.solution:
        wrong += ["after the fix: " + w for w in _agreement(spec.name, spec.size)]
    runner.down(spec.name)
    assert wrong == []


@pytest.mark.parametrize(("base", "fault", "size"), FAULTS, ids=[f"{b}+{f.kind}@{f.host}" for b, f, _ in FAULTS])
def test_trace_verdicts_agree_with_pings_for_each_injectable_fault(
    base: str, fault: FaultSpec, size: int | None, lab: Lab, home: Path
) -> None:
    healthy = replace(runner.load(base)[0], faults=(), solution=(), size=size)
    spec = _up(replace(healthy, faults=(fault,)), f"{lab.prefix}f")
    wrong = _agreement(spec.name, size)
    runner.down(spec.name)
    assert wrong == []
