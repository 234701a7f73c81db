"""Native nftables faults made with plain ``nft`` in real namespaces: the trace's verdict and failing step
agree with a real ping, the printed native fix (run as its argv) heals the ping, and the doctor names it."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from backend.collect import collect
from backend.lab import runner
from backend.lab.spec import dump
from backend.netns import Scope
from backend.observe import observe
from diagnostics.doctor import Desired, doctor
from diagnostics.trace import Trace, trace
from diagnostics.world import World

from conftest import Lab, have

pytestmark = pytest.mark.skipif(not have("nft"), reason="needs nft")


def _router(lab: Lab) -> tuple[str, str, str]:
    """c1 -- r -- c2 (``Lab.router``), with iptables-nft's FORWARD accepting everything."""
    c1, r, c2 = lab.router()
    if have("iptables-nft"):
        lab.run(r, "iptables-nft", "-A", "FORWARD", "-j", "ACCEPT")
    return c1, r, c2


def _nft(lab: Lab, ns: str, ruleset: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=ruleset, text=True, check=True)


def _ping(lab: Lab, ns: str, ip: str) -> bool:
    return lab.run(ns, "ping", "-c", "1", "-W", "1", ip, check=False).returncode == 0


def _trace(lab: Lab, src: str, dst: str) -> Trace:
    snap = collect(Scope(netns=tuple(lab.namespaces)), docker="none")
    return trace(World([snap]), src, dst)


def _heal(t: Trace) -> None:
    """Run the failing step's native fix as its argv, no shell."""
    assert t.failed_step is not None
    fix = t.steps[t.failed_step].fix
    assert fix is not None and fix.native, t.steps[t.failed_step]
    subprocess.run(fix.native, check=True)


@pytest.mark.parametrize(
    ("ruleset", "table", "direction", "native"),
    [
        # an inet forward chain before iptables' filter (priority 0), firewalld's case
        (
            "table inet fw {\n chain fw_forward {\n type filter hook forward priority -10; policy accept;\n"
            " ip daddr 10.2.0.0/24 drop\n }\n}\n",
            "nft inet fw fw_forward",
            "request",
            ("delete", "rule"),
        ),
        # a policy drop at the forward hook that lets only new connections out: the reply dies
        (
            "table ip fw {\n chain fw_forward {\n type filter hook forward priority 0; policy drop;\n"
            " ct state new accept\n }\n}\n",
            "nft ip fw fw_forward",
            "reply",
            ("chain", "ip"),
        ),
        # netdev ingress on the router's interface toward c2: every reply entering r2 is dropped
        (
            "table netdev edge {\n chain edge_in {\n type filter hook ingress device r2 priority 0; policy accept;\n"
            " ip saddr 10.2.0.2 drop\n }\n}\n",
            "nft netdev edge edge_in",
            "reply",
            ("delete", "rule"),
        ),
    ],
    ids=["inet-forward-drop", "ct-reply-only", "netdev-ingress"],
)
def test_trace_agrees_with_ping_and_its_native_fix_heals(
    lab: Lab, ruleset: str, table: str, direction: str, native: tuple[str, ...]
) -> None:
    c1, r, _ = _router(lab)
    assert _ping(lab, c1, "10.2.0.2")
    _nft(lab, r, ruleset)
    t = _trace(lab, c1, "10.2.0.2")
    assert not _ping(lab, c1, "10.2.0.2") and not t.delivered
    step = t.steps[t.failed_step]  # type: ignore[index]
    assert (step.netns, step.table, step.direction) == (r, table, direction), step
    assert step.fix is not None and step.fix.native[5:7] == native
    _heal(t)
    assert _ping(lab, c1, "10.2.0.2") and _trace(lab, c1, "10.2.0.2").delivered


def test_doctor_names_a_native_forward_drop_first(lab: Lab) -> None:
    c1, r, _ = _router(lab)
    _nft(lab, r, "table inet firewalld {\n chain filter_FORWARD {\n"
         " type filter hook forward priority 10; policy drop;\n }\n}\n")  # fmt: skip
    snap = collect(Scope(netns=tuple(lab.namespaces)), docker="none")
    world = World([snap], replace(World([snap]).labels, host_netns={"r": r}))
    found = doctor(world, Desired())
    assert found and "nft inet firewalld filter_FORWARD" in found[0].title, found
    assert found[0].fix is not None
    subprocess.run(found[0].fix.native, check=True)
    assert _ping(lab, c1, "10.2.0.2")


@pytest.fixture
def overlay(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The overlay lab, healthy: vm33/vm34 on yy3, vm3 on yy2, VXLAN between the hosts' namespaces."""
    monkeypatch.setenv("VXRAY_HOME", str(tmp_path))
    monkeypatch.delenv("VXRAY_STORE", raising=False)
    spec = replace(runner.load("overlay-fdb-broken")[0], faults=(), solution=(), name=f"{lab.prefix}o")
    runner.up(spec, dump(spec))
    yield spec.name
    runner.down(spec.name)


def _overlay_world(name: str) -> tuple[World, Desired]:
    ctx = runner.context(name)
    snap, labels = observe(ctx, f"{name}.ul")
    return World([snap], labels), Desired(tuple(ctx.store.hosts()), tuple(ctx.store.networks()),
                                          tuple(ctx.store.endpoints()))  # fmt: skip


def _sandbox(name: str, host: str) -> str:
    return next(n for n in sorted(os.listdir("/run/netns")) if n.startswith(f"{name}.{host}-1-"))


@pytest.mark.parametrize("fault", ["udp-4789-input", "bridge-forward"])
def test_overlay_faults_in_other_families(lab: Lab, overlay: str, fault: str) -> None:
    src, dst = f"{overlay}.yy3-vm33", "172.21.0.1"
    assert _ping(lab, src, dst)
    if fault == "udp-4789-input":
        ns = f"{overlay}.yy2"
        _nft(lab, ns, "table ip guard {\n chain input {\n type filter hook input priority 0; policy accept;\n"
             " udp dport 4789 drop\n }\n}\n")  # fmt: skip
    else:
        ns = _sandbox(overlay, "yy2")
        _nft(lab, ns, "table bridge l2 {\n chain fw_forward {\n type filter hook forward priority 0; policy accept;\n"
             " ip protocol icmp ip daddr 172.21.0.1 drop\n }\n}\n")  # fmt: skip
    world, want = _overlay_world(overlay)
    t = trace(world, src, dst)
    assert not _ping(lab, src, dst) and not t.delivered
    step = t.steps[t.failed_step]  # type: ignore[index]
    assert step.netns == ns and step.table.startswith("nft "), step
    if fault == "udp-4789-input":
        first = doctor(world, want)[0]
        assert "drops VXLAN" in first.title and "nft ip guard input" in first.title, first
    _heal(t)
    assert _ping(lab, src, dst)
