"""`vxray diff` and `snapshot --watch`: what changed between two snapshots, the likely-relevant first; a lab's fault
diffed against the lab before it names exactly the fault's entries, in the real kernel."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable

from backend import codec
from backend.lab import runner
from backend.lab.spec import FaultSpec
from backend.model import (
    Address,
    Chain,
    FdbEntry,
    HostSnapshot,
    Labels,
    Namespace,
    Neighbour,
    NftChain,
    NftRule,
    NftTable,
    Rule,
    RuleSet,
    Table,
)
from backend.observe import observe
from diagnostics.diff import Change, changed, diff
from tui.app import VxrayApp
from tui.cli import main
from tui.context import Invocation
from tui.source import live

from conftest import Lab, sh

VIEW = Path(__file__).parent / "fixtures" / "overlay-static.view.json"
SANDBOX3 = "vxshot.yy3-1-415cb1946c"
ROOT = Path(__file__).resolve().parent.parent


def _saved() -> tuple[HostSnapshot, Labels]:
    view = codec.load_view(VIEW.read_bytes(), str(VIEW))
    return view.snapshot, view.labels


def _edit(snap: HostSnapshot, name: str, **fields: object) -> HostSnapshot:
    return replace(snap, namespaces=tuple(replace(ns, **fields) if ns.name == name else ns  # type: ignore[arg-type]
                                          for ns in snap.namespaces))  # fmt: skip


def _ns(snap: HostSnapshot, name: str) -> Namespace:
    found = snap.namespace(name)
    assert found is not None
    return found


def _said(changes: list[Change]) -> list[tuple[str, str, str, str]]:
    return [(c.who, c.kind, c.change, c.key) for c in changes]


def _firewall(policy: str, packets: int, rules: tuple[Rule, ...] = ()) -> tuple[RuleSet, ...]:
    return (RuleSet("nft", (Table("filter", (Chain("FORWARD", policy, packets, packets * 84, rules),)),)),)


def test_the_same_snapshot_has_no_changes() -> None:
    snap, labels = _saved()
    assert diff(snap, snap, labels) == []


def test_each_change_is_named_once_with_what_it_was_and_became() -> None:
    snap, labels = _saved()
    vm33 = _ns(snap, "vxshot.yy3-vm33")
    sandbox = _ns(snap, SANDBOX3)
    eth0 = vm33.link("eth0")
    assert eth0 is not None
    links = tuple(replace(lk, mtu=1400, operstate="DOWN", flags=(), addresses=(*lk.addresses, Address("10.9.0.1", 24)))
                  if lk.name == "eth0" else lk for lk in vm33.links)  # fmt: skip
    after = _edit(snap, "vxshot.yy3-vm33", links=links, routes=vm33.routes[1:])
    entry = FdbEntry("02:42:ac:15:00:01", "vxlan1", dst="10.193.6.36", state="permanent")
    arp = Neighbour("172.21.0.1", "vxlan1", "02:42:ac:15:00:01", ("PERMANENT",))
    snap = _edit(snap, SANDBOX3, neighbours=(*sandbox.neighbours, arp))
    wrong = replace(arp, mac="02:00:00:00:00:09")
    after = _edit(after, SANDBOX3, fdb=(*sandbox.fdb, entry), neighbours=(*sandbox.neighbours, wrong))
    changes = diff(snap, after, labels)
    said = _said(changes)
    assert said[0] == ("prod sandbox", "fdb", "appeared", "02:42:ac:15:00:01 dev vxlan1"), "a sandbox's FDB first"
    assert ("vm33", "link", "changed", "eth0") in said
    assert ("vm33", "address", "appeared", "10.9.0.1/24 dev eth0") in said
    assert said[-1][:3] == ("vm33", "route", "disappeared")
    link = next(c for c in changes if c.kind == "link")
    assert (link.before, link.after) == ("state UP, up UP, mtu 1450", "state DOWN, up down, mtu 1400")
    neigh = next(c for c in changes if c.kind == "neighbour")
    assert neigh.change == "changed" and "lladdr 02:00:00:00:00:09" in neigh.after
    assert len(said) == len(set(said)) == 5, said


def test_a_recreated_device_says_so_and_kernel_made_multicast_entries_are_left_out() -> None:
    snap, labels = _saved()
    sandbox = _ns(snap, SANDBOX3)
    links = tuple(replace(lk, index=lk.index + 40) if lk.name == "vxlan1" else lk for lk in sandbox.links)
    noise = FdbEntry("33:33:00:00:00:01", "br0", master="br0", state="permanent", flags=("self",))
    [change] = diff(snap, _edit(snap, SANDBOX3, links=links, fdb=(*sandbox.fdb, noise)), labels)
    assert change.kind == "link" and change.after.endswith("(re-created)")


def test_a_namespace_that_appeared_or_disappeared_is_one_line_each() -> None:
    snap, labels = _saved()
    gone = replace(snap, namespaces=tuple(ns for ns in snap.namespaces if ns.name != "vxshot.yy3-vm33"))
    assert _said(diff(snap, gone, labels)) == [("vm33", "namespace", "disappeared", "vxshot.yy3-vm33")]
    assert _said(diff(gone, snap, labels)) == [("vm33", "namespace", "appeared", "vxshot.yy3-vm33")]


def test_rules_and_policies_by_identity_their_counters_growth_last_and_never_alone_a_change() -> None:
    snap, labels = _saved()
    drop = Rule("FORWARD", "-A FORWARD -p udp --dport 4789 -j DROP", "DROP")
    quiet = _edit(snap, "vxshot.yy3", netfilter=_firewall("ACCEPT", 10, (replace(drop, packets=1),)))
    counted = _edit(snap, "vxshot.yy3", netfilter=_firewall("ACCEPT", 15, (replace(drop, packets=9),)))
    grew = diff(quiet, counted, labels)
    assert [(c.kind, c.change, c.key) for c in grew] == [
        ("chain", "grew", "nft filter FORWARD"), ("rule", "grew", f"nft filter FORWARD: {drop.spec}")]  # fmt: skip
    assert grew[1].after == "9 packets (+8, +0 bytes)" and not changed(grew)
    policy = diff(quiet, _edit(quiet, "vxshot.yy3", netfilter=_firewall("DROP", 10, (replace(drop, packets=1),))),
                  labels)  # fmt: skip
    assert [(c.kind, c.change, c.before, c.after) for c in policy] == [
        ("chain", "changed", "policy ACCEPT", "policy DROP")]  # fmt: skip
    assert changed(policy)
    moved = _edit(
        snap, SANDBOX3, fdb=(*_ns(snap, SANDBOX3).fdb, FdbEntry("02:42:ac:15:00:09", "vxlan1", dst="1.2.3.4"))
    )
    order = [c.kind for c in diff(quiet, _edit(counted, SANDBOX3, fdb=_ns(moved, SANDBOX3).fdb), labels)]
    assert order == ["fdb", "chain", "rule"], "the sandbox's FDB before the host's counters"


def test_an_nft_rule_is_the_same_rule_whatever_its_counter_says() -> None:
    snap, labels = _saved()

    def table(packets: int) -> tuple[NftTable, ...]:
        text = f"udp dport 4789 counter packets {packets} bytes {packets * 50} drop"
        chain = NftChain("input", "filter", "input", 0, "accept", rules=(NftRule(7, text, packets=packets),))
        return (NftTable("inet", "fw", (chain,)),)

    changes = diff(_edit(snap, "vxshot.yy2", nftables=table(1)), _edit(snap, "vxshot.yy2", nftables=table(5)), labels)
    assert [(c.kind, c.change, c.key) for c in changes] == [
        ("nft-rule", "grew", "inet fw input: udp dport 4789 counter drop")]  # fmt: skip


def test_diff_of_two_files_prints_by_host_and_namespace_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snap, labels = _saved()
    sandbox = _ns(snap, SANDBOX3)
    after = _edit(snap, SANDBOX3, fdb=(*sandbox.fdb, FdbEntry("02:42:ac:15:00:01", "vxlan1", dst="10.193.6.36",
                                                              state="permanent")))  # fmt: skip
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_bytes(codec.dump_view(codec.View(snap, labels)))
    new.write_bytes(codec.dumps(after))
    assert main(["diff", str(old), str(new)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "yy3: prod sandbox (vxshot.yy3-1-415cb1946c)",
        "  + fdb       02:42:ac:15:00:01 dev vxlan1  dst 10.193.6.36 permanent",
        "1 changes in 1 namespaces",
    ]
    assert main(["diff", str(old), str(new), "--json"]) == 1
    [change] = json.loads(capsys.readouterr().out)
    assert (change["host"], change["kind"], change["change"], change["rank"]) == ("yy3", "fdb", "appeared", 0)
    assert main(["diff", str(old), str(old)]) == 0
    assert capsys.readouterr().out.strip() == "no changes"


def test_a_bad_file_or_a_file_pair_with_machines_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "vxray-snapshot/1", "host": 3}')
    assert main(["diff", str(bad), str(VIEW)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"vxray: {bad}") and "\n" not in err
    assert main(["diff", str(tmp_path / "missing.json"), str(VIEW)]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["-H", f"file://{VIEW}", "diff", str(VIEW), str(VIEW)]) == 2
    assert "with --host the machines are NEW" in capsys.readouterr().err


def test_a_file_diffed_against_machines_over_host(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-H", f"file://{VIEW}", "diff", str(VIEW)]) == 0
    assert capsys.readouterr().out.strip() == "no changes"


# Injected one after another into a healthy overlay-fdb-broken (its control plane's entries in place); each diff is
# against the state just before, and must name exactly this: (host, who, kind, change, key). None: checked below.
FAULTS: list[tuple[FaultSpec, set[tuple[str, str, str, str, str]] | None]] = [
    (FaultSpec("fdb-remove", host="yy3", network="prod", container="vm3"),
     {("yy3", "prod sandbox", "fdb", "disappeared", "02:42:ac:15:00:01 dev vxlan1")}),
    (FaultSpec("stale-fdb", host="yy2", network="prod", container="vm33", dst="10.193.6.99"),
     {("yy2", "prod sandbox", "fdb", "changed", "02:42:ac:15:00:02 dev vxlan1")}),
    (FaultSpec("wrong-vni", host="yy3", network="prod", vni=257), None),
    (FaultSpec("mtu", host="yy3", mtu=1400), {("yy3", "yy3 (host)", "link", "changed", "eth0")}),
    (FaultSpec("udp-drop", host="yy2"), None),
    (FaultSpec("forward-drop", host="yy2"), None),
]  # fmt: skip


def test_diff_of_a_lab_before_and_after_each_fault_names_exactly_the_faults_entries(lab: Lab, home: Path) -> None:
    name = f"{lab.prefix}diff"
    spec, text = runner.load("overlay-fdb-broken", name)
    runner.up(replace(spec, faults=()), text)
    try:
        ctx = runner.context(name)
        before = observe(ctx, f"{name}.ul")
        assert runner._ping(f"{name}.yy3-vm33", "172.21.0.1"), "healthy: vm33 reaches vm3"
        before = observe(ctx, f"{name}.ul")  # the ping's ARP and learnt entries are not the fault's
        for fault, expected in FAULTS:
            runner.inject(ctx, fault)
            after = observe(ctx, f"{name}.ul")
            changes = diff(before[0], after[0], after[1])
            said = {(c.host, c.who, c.kind, c.change, c.key) for c in changes}
            if fault.kind == "fdb-remove":
                assert not runner._ping(f"{name}.yy3-vm33", "172.21.0.1"), "the entry named is the one that mattered"
                arp = ("ip", "-n", f"{name}.yy3-vm33", "neigh", "show", "172.21.0.1")
                _wait_for(lambda arp=arp: "INCOMPLETE" not in sh(*arp).stdout)  # its ARP request given up: FAILED
                after = observe(ctx, f"{name}.ul")  # the failed ping's neighbour entries are the ping's
            if expected is not None:
                assert said == expected, fault.kind
            elif fault.kind == "wrong-vni":
                links = {c.key: c for c in changes if c.kind == "link"}
                vxlan = links.pop("vxlan1")  # re-created with the wrong VNI: its entries went with the old one
                assert vxlan.host == "yy3" and "vni 256" in vxlan.before and "vni 257 " not in vxlan.after
                assert "(re-created)" in vxlan.after and vxlan.after.endswith("vni 257")
                assert all(k == "br0" and c.before.startswith("mac ") for k, c in links.items()), "br0 took its MAC"
                assert {c.who for c in changes} == {"prod sandbox"}
                assert {c.kind for c in changes} <= {"link", "fdb", "neighbour"}
                assert ("yy3", "prod sandbox", "neighbour", "disappeared", "172.21.0.1 dev vxlan1") in said
                assert ("yy3", "prod sandbox", "fdb", "disappeared", "02:42:ac:15:00:01 dev vxlan1") not in said
            elif fault.kind == "udp-drop":
                [rule] = [c for c in changes if c.kind == "rule"]
                assert rule.change == "appeared" and "INPUT" in rule.key and "4789" in rule.key and "DROP" in rule.key
                assert {(c.host, c.who) for c in changes} == {("yy2", "yy2 (host)")}
                assert {c.kind for c in changes} <= {"rule", "chain"}, "the filter table it created, at most"
            else:
                [policy] = [c for c in changes if c.change != "appeared"]
                assert (policy.host, policy.kind, policy.before, policy.after) == (
                    "yy2", "chain", "policy ACCEPT", "policy DROP")  # fmt: skip
                assert policy.key.endswith("filter FORWARD") and len(changes) == 1
            before = after
    finally:
        runner.down(name)


def test_snapshot_watch_keeps_a_file_only_when_the_state_changed_and_ctrl_c_ends_it(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = lab.netns("wa"), lab.netns("wb")
    lab.veth(a, "va", b, "vb")
    for ns, dev in ((a, "va"), (b, "vb")):  # carrier comes a moment later: a change of its own
        _wait_for(lambda ns=ns, dev=dev: "state UP" in sh("ip", "-n", ns, "link", "show", dev).stdout)
    out = tmp_path / "snaps"
    out.mkdir()
    argv = [sys.executable, "-m", "tui.cli", "snapshot", "--watch", "--every", "0.2", "-w", str(out),
            "--host-netns", a, "--netns", b, "--docker", "none"]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: len(list(out.glob("*.json"))) == 1)
        time.sleep(1.0)  # several reads of an unchanged state keep no file
        assert len(list(out.glob("*.json"))) == 1
        lab.ip(b, "link", "set", "vb", "mtu", "1400")
        _wait_for(lambda: len(list(out.glob("*.json"))) == 2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "stopped: 2 snapshots kept" in stderr and "Traceback" not in stderr
    assert "(1 changes)" in stdout.splitlines()[-1]
    first, second = sorted(out.glob("*.json"))
    assert not list(out.glob("*.tmp")), "no file half-written"
    assert main(["diff", str(first), str(second)]) == 1
    text = capsys.readouterr().out
    assert "~ link      vb  mtu 1500 -> mtu 1400" in text and "1 changes in 1 namespaces" in text


def _wait_for(condition: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_watch_refuses_a_nonpositive_interval_and_a_missing_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if os.geteuid() != 0:
        pytest.skip("reads namespaces")
    assert main(["snapshot", "--watch", "--every", "0", "-w", str(tmp_path)]) == 2
    assert "invalid --every 0.0" in capsys.readouterr().err
    assert main(["snapshot", "--watch", "-w", str(tmp_path / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_the_apps_changes_view_lists_what_the_monitor_saw_newest_first(lab: Lab, home: Path) -> None:
    """An FDB entry added and an MTU lowered from outside with plain bridge/ip: both listed, the later first."""
    name = f"{lab.prefix}chg"
    assert main(["lab", "up", "overlay-static", "--name", name]) == 0
    sandbox = f"{name}.yy2-1-{runner.context(name).store.networks()[0].short_id}"

    def rows(app: VxrayApp) -> list[str]:
        table = app.query_one("#changes", DataTable)
        return [" ".join(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]

    async def run() -> None:
        app = VxrayApp(live(Invocation()))
        async with app.run_test(size=(160, 48)) as pilot:
            while app.snapshot is None:
                await pilot.pause(0.1)
            await pilot.press("k")
            assert app.active_view() == "Changes"  # may already list what the lab's own traffic changed since
            vm3 = f"{name}.yy2-vm3"
            for mtu in range(1449, 1439, -1):  # the monitor arms a moment after the first snapshot: nudge till it sees
                sh("ip", "-n", vm3, "link", "set", "eth0", "mtu", str(mtu))
                if await _until_async(pilot, lambda: any("vm3 ~ link eth0 mtu" in r for r in rows(app)), 2, fail=False):
                    break
            sh("bridge", "-n", sandbox, "fdb", "add", "02:42:ac:15:00:77", "dev", "vxlan1", "dst", "10.193.6.37")
            await _until_async(pilot, lambda: any("02:42:ac:15:00:77" in r for r in rows(app)))
            sh("ip", "-n", f"{name}.yy3-vm33", "link", "set", "eth0", "mtu", "1400")
            await _until_async(pilot, lambda: any("-> mtu 1400" in r for r in rows(app)))
            found = rows(app)
            mtu = next(i for i, r in enumerate(found) if "vm33 ~ link eth0 mtu 1450 -> mtu 1400" in r)
            fdb = next(i for i, r in enumerate(found) if "prod sandbox + fdb 02:42:ac:15:00:77 dev vxlan1" in r)
            assert mtu < fdb, "newest first"
            assert fdb < max(i for i, r in enumerate(found) if "vm3 ~ link eth0 mtu" in r), "the oldest last"

    try:
        asyncio.run(run())
    finally:
        runner.down(name)


async def _until_async(pilot: Pilot[None], ready: Callable[[], bool], seconds: float = 15.0, fail: bool = True) -> bool:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            assert not fail, "the app never showed it"
            return False
        await pilot.pause(0.1)
    return True
