"""The acceptance test of ``vxray trace``: its verdict must agree with real pings.

For every built-in scenario (as built, and after its exercise's fix) and for each
fault the labs can inject, on three healthy bases, every ordered pair of
containers is traced over a snapshot taken first, probed live along the trace
(``--live``), then pinged for real. A case agrees when the simulated verdict
(packet and reply delivered, or not) is what the ping saw, and the live probe
was seen exactly at the steps the simulation says it reaches — so a drop is
placed at the right step. Both figures are printed at the end of the run. And
no fix a trace or the doctor gives holds a placeholder for a value it lacks.
"""

from __future__ import annotations

import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from backend import probe
from backend.lab import runner
from backend.lab.spec import FaultSpec, LabSpec, dump
from backend.observe import observe
from backend.probe import Probe
from diagnostics.doctor import Desired, doctor
from diagnostics.live import compare, first_disagreement, watch_points
from diagnostics.trace import Trace, trace
from diagnostics.world import World
from tui.cli import main

from conftest import ACCURACY, LIVE, Lab, placeholders

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
    # native nftables, written with `nft`: all five families, a drop before and one after iptables' filter,
    # ct state on the reply (and VXLAN's outer packets, new flows both ways, which it lets through)
    (OVERLAY, FaultSpec("nft-udp-drop", host="yy2", family="inet"), None),
    (OVERLAY, FaultSpec("nft-ingress-drop", host="yy3", family="netdev"), None),
    (OVERLAY, FaultSpec("nft-bridge-drop", host="yy3", network="prod", family="bridge"), None),
    (FLANNEL, FaultSpec("nft-forward-drop", host="node1", family="inet", priority=-10), None),
    (FLANNEL, FaultSpec("nft-forward-drop", host="node1", family="ip6"), None),
    (FLANNEL, FaultSpec("nft-udp-drop", host="node2", family="ip", port=8472), None),
    (FLANNEL, FaultSpec("nft-reply-drop", host="node2", family="inet"), None),
    (FLANNEL, FaultSpec("nft-bridge-drop", host="node1", family="bridge"), None),
    (SWARM, FaultSpec("nft-forward-drop", host="r1", family="ip", priority=10), None),
    (SWARM, FaultSpec("nft-reply-drop", host="r1", family="ip"), None),
]
# faults on the dual-stack overlay, its static entries in place: every pair is pinged with ping and ping -6
DUAL = "overlay-dualstack"
DUAL_FAULTS: list[tuple[FaultSpec, int | None]] = [
    (FaultSpec("nft-bridge-drop", host="yy3", network="prod", family="bridge"), None),  # IPv4 only: IPv6 passes
    (FaultSpec("nft-udp-drop", host="yy2", family="inet"), None),  # the IPv4 underlay: both stacks lost
    (FaultSpec("mtu", host="yy2", mtu=1400), 1380),  # IPv6: "packet too big" from vxlan1, IPv4: DF
    (FaultSpec("udp-drop", host="yy3"), None),  # iptables drops VXLAN: both stacks lost
]
# no 802.1Q in every kernel; Docker's labs have their own matrix (tests/test_docker_labs.py)
SCENARIOS = [n for n in runner.builtin_names()
             if n != "macvlan-vlan" and all(h.engine == "netns" for h in runner.load(n)[0].hosts)]  # fmt: skip


def _live(t: Trace, underlay: str, netns: str, ip: str, size: int | None) -> int | None:
    """Send a real probe along the trace; the first step where capture and simulation differ."""
    real = {"host": underlay}
    seen = probe.run(
        Probe(netns, ip, size=size, df=size is not None), [(real.get(n, n), dev) for n, dev in watch_points(t)]
    )
    seen = {("host" if n == underlay else n, dev, d) for n, dev, d in seen}
    return first_disagreement(compare(t, seen))


def _agreement(name: str, size: int | None) -> list[str]:
    """Trace every pair over a snapshot, probe it live, then ping it; the pairs where they disagree, and the
    fixes (the traces', the doctor's) that hold a placeholder."""
    ctx = runner.context(name)
    snap, labels = observe(ctx, f"{name}.ul")
    world = World([snap], labels)
    # every ordered pair over IPv4, and (a dual-stack lab) over IPv6 too: (a, b, "" or " over IPv6")
    pairs = {(a, b, ""): p for (a, b), p in runner.targets(ctx).items()}
    pairs |= {(a, b, " over IPv6"): p for (a, b), p in runner.targets(ctx, 6).items()}
    predicted = {pair: trace(world, netns, ip, size=size, df=size is not None) for pair, (netns, ip) in pairs.items()}
    want = Desired(tuple(ctx.store.hosts()), tuple(ctx.store.networks()), tuple(ctx.store.endpoints()))
    fixes = [s.fix for t in predicted.values() for s in t.steps if s.fix]
    fixes += [f.fix for f in doctor(world, want) if f.fix]
    with ThreadPoolExecutor(max_workers=16) as pool:
        live = dict(zip(pairs, pool.map(lambda p: _live(predicted[p], f"{name}.ul", *pairs[p], size), pairs),
                        strict=True))  # fmt: skip
    real = {"": runner.reachability(ctx, size), " over IPv6": runner.reachability6(ctx, size)}
    wrong = [f"a fix holds {placeholders(f)}: {f}" for f in fixes if placeholders(f)]
    for (a, b, v6), t in predicted.items():
        pinged = real[v6][a][b]
        ACCURACY[0] += t.delivered == pinged
        ACCURACY[1] += 1
        LIVE[0] += live[a, b, v6] is None
        LIVE[1] += 1
        if t.delivered != pinged:
            why = t.steps[t.failed_step].decision if t.failed_step is not None else "delivered"
            wrong.append(f"{a} -> {b}{v6}: trace says {why!r}, ping says {'ok' if pinged else 'lost'}")
        if live[a, b, v6] is not None:
            step = t.steps[live[a, b, v6]]
            wrong.append(f"{a} -> {b}{v6}: live probe disagrees at step {live[a, b, v6] + 1} ({step.host} {step.dev} "
                         f"{step.table}: {step.decision})")  # fmt: skip
    return wrong


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


def _fault_id(base: str, fault: FaultSpec) -> str:
    return f"{base}+{fault.kind}{'.' + fault.family if fault.family else ''}@{fault.host}"


@pytest.mark.parametrize(("base", "fault", "size"), FAULTS, ids=[_fault_id(b, f) for b, f, _ in FAULTS])
def test_trace_verdicts_agree_with_pings_for_each_injectable_fault(
    base: str, fault: FaultSpec, size: int | None, lab: Lab, home: Path
) -> None:
    healthy = replace(runner.load(base)[0], faults=(), solution=(), size=size)
    spec = _up(replace(healthy, faults=(fault,)), f"{lab.prefix}f")
    wrong = _agreement(spec.name, size)
    runner.down(spec.name)
    assert wrong == []


@pytest.mark.parametrize(("fault", "size"), DUAL_FAULTS, ids=[_fault_id(DUAL, f) for f, _ in DUAL_FAULTS])
def test_dual_stack_verdicts_agree_with_ping_and_ping6_for_each_fault(
    fault: FaultSpec, size: int | None, lab: Lab, home: Path
) -> None:
    spec = _up(replace(runner.load(DUAL)[0], faults=(fault,), size=size), f"{lab.prefix}d")
    for line in spec.solution:
        assert main(shlex.split(line)) == 0, line
    ctx = runner.context(spec.name)
    assert runner.targets(ctx, 6), "the dual-stack lab has IPv6 pairs"
    wrong = _agreement(spec.name, size)
    runner.down(spec.name)
    assert wrong == []
