"""Every command vxray prints for a person to paste reads back, word for word, as the command it means.

Names are untrusted: the kernel accepts a namespace called ``qa;id`` and a device called
``p$(id)``, and a snapshot file holds whatever its author wrote. Every hostile name here
carries a canary (``>cN``, ``$(>cN)``, `` `>cN` ``) that creates the file ``cN`` in the
working directory of a shell that runs it instead of passing it on as one word.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Label, Static

from backend import codec
from backend.iptables import rule_from_args
from backend.merge import merge
from backend.model import Chain, FdbEntry, HostSnapshot, Labels, Namespace, Neighbour, Rule, RuleSet, Table
from backend.shellwords import shell_line
from diagnostics.desired import observed
from diagnostics.doctor import Finding, doctor
from diagnostics.netfilter import Decision
from diagnostics.trace import Fix, Trace, fix_in, trace
from diagnostics.world import World
from tui.app import Confirm, VxrayApp
from tui.output import doctor_lines
from tui.source import from_file
from tui.trace_text import trace_lines

from conftest import Lab, have, placeholders

VIEW = Path(__file__).parent / "fixtures" / "overlay-static.view.json"
VXRAY = os.path.join(os.path.dirname(sys.executable), "vxray")

# The saved overlay-static lab, renamed: every namespace, device, container, network and host hostile.
NS = "qa;>c1 $(>c2)`>c3`'\"\n."  # replaces the lab's namespace prefix "vxshot."
VX, ETH, VM33, VM3, NET, YY3, YY2 = (
    "p$(>c4)",
    "e;>c5",
    "vm33 `>c6`[b]",
    "vm3;>c7",
    "pr'od$(>c8)[b]",
    "yy3;>c9",
    "yy2 $(>c10)",
)
RENAMED = {"vxlan1": VX, "eth0": ETH, "vm33": VM33, "vm3": VM3, "prod": NET, "yy3": YY3, "yy2": YY2}
VM33_NS, SANDBOX3, HOST2, HOST3 = f"{NS}yy3-vm33", f"{NS}yy3-1-415cb1946c", f"{NS}yy2", f"{NS}yy3"
VM3_IP, VM3_MAC = "172.21.0.1", "02:42:ac:15:00:01"

Edits = dict[str, Callable[[Namespace], Namespace]]  # namespace -> how the scenario changes it


def _renamed(obj: Any) -> Any:
    """``obj`` (a snapshot, labels) with every name replaced by its hostile one, references included."""
    if isinstance(obj, str):
        text = obj.replace("vxshot.", NS)
        return RENAMED.get(text, text)
    if isinstance(obj, tuple):
        return tuple(_renamed(x) for x in obj)
    if isinstance(obj, dict):
        return {_renamed(k): _renamed(v) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return replace(obj, **{f.name: _renamed(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init})
    return obj


def _hostile(edits: Edits) -> tuple[HostSnapshot, Labels]:
    view = codec.load_view(VIEW.read_bytes(), str(VIEW))
    snap, labels = _renamed(view.snapshot), _renamed(view.labels)
    spaces = tuple(edits.get(ns.name, lambda ns: ns)(ns) for ns in snap.namespaces)
    return replace(snap, namespaces=spaces), labels


def _world(edits: Edits) -> World:
    snap, labels = _hostile(edits)
    return World([snap], labels)


def _link(name: str, **changes: Any) -> Callable[[Namespace], Namespace]:
    return lambda ns: replace(ns, links=tuple(replace(lk, **changes) if lk.name == name else lk for lk in ns.links))


def _proxied(ns: Namespace) -> Namespace:
    """vm3's ARP entry on yy3's VXLAN device: its ARP proxy answers for vm3."""
    return replace(ns, neighbours=(*ns.neighbours, Neighbour(VM3_IP, VX, VM3_MAC, ("PERMANENT",))))


def _tunnelled(ns: Namespace) -> Namespace:
    """And the FDB entry that sends vm3's MAC to yy2: the request leaves yy3."""
    return replace(_proxied(ns), fdb=(*ns.fdb, FdbEntry(VM3_MAC, VX, dst="10.193.6.36", state="permanent")))


def _drops_vxlan(ns: Namespace) -> Namespace:
    """An INPUT rule on yy2 that drops VXLAN arriving on the hostile underlay device, with a negation."""
    args = ["!", "-s", "10.9.9.9/32", "-i", ETH, "-p", "udp", "-m", "udp", "--dport", "4789", "-j", "DROP"]
    chain = Chain("INPUT", "ACCEPT", rules=(rule_from_args("INPUT", args),))
    return replace(ns, netfilter=(RuleSet("nft", (Table("filter", (chain,)),)),))


def _wrong_arp(ns: Namespace) -> Namespace:
    return replace(ns, neighbours=(*ns.neighbours, Neighbour(VM3_IP, ETH, "02:42:ac:15:00:99", ("PERMANENT",))))


def _no_routes(ns: Namespace) -> Namespace:
    return replace(ns, routes=())


def _other_vni(ns: Namespace) -> Namespace:
    return replace(
        ns, links=tuple(replace(lk, vxlan=replace(lk.vxlan, vni=999)) if lk.vxlan else lk for lk in ns.links)
    )


SCENARIOS: dict[str, Edits] = {
    "unanswered-arp": {},
    "missing-fdb": {SANDBOX3: _proxied},
    "vxlan-dropped": {SANDBOX3: _tunnelled, HOST2: _drops_vxlan},
    "no-route": {VM33_NS: _no_routes},
    "vxlan-down": {SANDBOX3: _link(VX, flags=(), operstate="DOWN")},
    "wrong-arp": {SANDBOX3: _tunnelled, VM33_NS: _wrong_arp},
    "narrow-underlay": {SANDBOX3: _tunnelled, HOST3: _link(ETH, mtu=1400)},
    "wide-container": {VM33_NS: _link(ETH, mtu=1500)},
    "container-down": {VM33_NS: _link(ETH, flags=(), operstate="DOWN")},
    "vni-mismatch": {SANDBOX3: _other_vni},
}


def _in(netns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv]


def _argv(line: str) -> list[str]:
    return shlex.split(line, comments=True)


def _trace(edits: Edits, size: int | None = None) -> Trace:
    return trace(_world(edits), VM33_NS, VM3_IP, size=size, df=size is not None)


def _fix(t: Trace) -> Fix:
    assert t.failed_step is not None, "the trace stops"
    fix = t.steps[t.failed_step].fix
    assert fix is not None
    return fix


# -- the model ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "size", "vxray", "native"),
    [
        ("unanswered-arp", None, ["vxray", "fdb", "sync", NET],
         _in(SANDBOX3, "ip", "neigh", "replace", VM3_IP, "lladdr", VM3_MAC, "dev", VX, "nud", "permanent")),
        ("missing-fdb", None, ["vxray", "fdb", "add", VM3_MAC, "--network", NET, "dst", "10.193.6.36", "--host", YY3],
         _in(SANDBOX3, "bridge", "fdb", "replace", VM3_MAC, "dev", VX, "dst", "10.193.6.36")),
        ("vxlan-dropped", None, ["vxray", "host", "set", YY2, "udp.4789=accept"],
         _in(HOST2, "iptables-nft", "-D", "INPUT", "!", "-s", "10.9.9.9/32", "-i", ETH, "-p", "udp", "-m", "udp",
             "--dport", "4789", "-j", "DROP")),
        ("no-route", None, [], _in(VM33_NS, "ip", "route", "add", "172.21.0.0/16", "dev", ETH, "src", "172.21.0.2")),
        ("vxlan-down", None, [], _in(SANDBOX3, "ip", "link", "set", VX, "up")),  # the store's repair sets none up
        ("wrong-arp", None, ["vxray", "arp", "del", VM3_IP, "--container", VM33],
         _in(VM33_NS, "ip", "neigh", "del", VM3_IP, "dev", ETH)),
        ("narrow-underlay", 1400, ["vxray", "host", "set", YY3, f"mtu.{ETH}=1478"],
         _in(HOST3, "ip", "link", "set", ETH, "mtu", "1478")),
        ("container-down", None, [], _in(VM33_NS, "ip", "link", "set", ETH, "up")),
    ],
)  # fmt: skip
def test_a_trace_fix_reads_back_as_the_intended_words_whatever_the_names(
    scenario: str, size: int | None, vxray: list[str], native: list[str]
) -> None:
    t = _trace(SCENARIOS[scenario], size)
    fix = _fix(t)
    assert (list(fix.vxray), list(fix.native), fix.runnable) == (vxray, native, bool(vxray))
    printed = trace_lines(t, {}, "trace")  # what `vxray trace` prints
    shown = [line.removeprefix("  fix: ") for line in printed if line.startswith("  fix: ")]
    assert shown == [fix.vxray_line if vxray else f"none runnable — {fix.missing}"] and (vxray or fix.missing)
    assert [_argv(line.removeprefix("  or:  ")) for line in printed if line.startswith("  or:  ")] == [native]
    as_json = json.loads(json.dumps(t.as_dict()))["steps"][t.failed_step]["fix"]  # `vxray trace --json`
    assert (as_json["vxray"], as_json["native"], as_json["missing"]) == (vxray, native, fix.missing)
    assert (_argv(as_json["vxray_line"]), _argv(as_json["native_line"])) == (vxray, native)


def _finding(scenario: str, words: str) -> Finding:
    w = _world(SCENARIOS[scenario])
    return next(f for f in doctor(w, observed(w)) if words in f.title)


@pytest.mark.parametrize(
    ("scenario", "words", "vxray", "native"),
    [
        ("unanswered-arp", f"{VX} on {YY3} knows no remote MAC", ["vxray", "fdb", "sync", NET],
         _in(SANDBOX3, "bridge", "fdb", "add", VM3_MAC, "dev", VX, "dst", "10.193.6.36")),
        ("vxlan-dropped", "drops VXLAN", ["vxray", "host", "set", YY2, "udp.4789=accept"],
         _in(HOST2, "iptables-nft", "-D", "INPUT", "!", "-s", "10.9.9.9/32", "-i", ETH, "-p", "udp", "-m", "udp",
             "--dport", "4789", "-j", "DROP")),
        ("vxlan-down", "is down", [], _in(SANDBOX3, "ip", "link", "set", VX, "up")),
        ("wrong-arp", "stale static ARP", ["vxray", "arp", "add", VM3_IP, VM3_MAC, "--container", VM33],
         _in(VM33_NS, "ip", "neigh", "replace", VM3_IP, "lladdr", VM3_MAC, "dev", ETH, "nud", "permanent")),
        ("narrow-underlay", "MTU mismatch", ["vxray", "host", "set", YY3, f"mtu.{ETH}=1500"],
         _in(HOST3, "ip", "link", "set", ETH, "mtu", "1500")),
        ("wide-container", "has MTU 1500", ["vxray", "network", "repair", NET],
         _in(VM33_NS, "ip", "link", "set", ETH, "mtu", "1450")),
        ("vni-mismatch", "VNI mismatch", ["vxray", "network", "repair", NET, "--host", YY3], []),
    ],
)  # fmt: skip
def test_a_doctor_fix_reads_back_as_the_intended_words_whatever_the_names(
    scenario: str, words: str, vxray: list[str], native: list[str]
) -> None:
    found = _finding(scenario, words)
    fix = found.fix
    assert fix is not None
    assert (list(fix.vxray), list(fix.native), fix.runnable) == (vxray, native, bool(vxray))
    printed = doctor_lines([found])  # what `vxray doctor` prints
    assert f"      fix: {fix.vxray_line if vxray else f'none runnable — {fix.missing}'}" in printed
    assert [_argv(line.removeprefix("      or:  ")) for line in printed if line.startswith("      or:  ")] == (
        [native] if native else []
    )
    as_json = json.loads(json.dumps(found.as_dict()))["fix"]  # `vxray doctor --json`
    assert (as_json["vxray"], as_json["native"], as_json["missing"]) == (vxray, native, fix.missing)


def _fixes() -> list[Fix]:
    """Every fix a trace (with and without DF) or the doctor gives, in every scenario."""
    fixes = []
    for edits in SCENARIOS.values():
        w = _world(edits)
        fixes += [s.fix for size in (None, 1400) for s in _trace(edits, size).steps if s.fix]
        fixes += [f.fix for f in doctor(w, observed(w)) if f.fix]
    return fixes


def _printed_commands() -> list[str]:
    """Every command a trace or the doctor names, in every scenario."""
    lines = [c for fix in _fixes() for c in (fix.vxray_line, fix.native_line)]
    return sorted({c for c in lines if c.startswith(("vxray ", "ip "))})


def test_no_fix_holds_a_placeholder_and_one_vxray_cannot_run_says_why() -> None:
    for fix in _fixes():
        assert placeholders(fix) == [] and (fix.runnable or fix.missing), fix


def test_bash_reads_every_printed_fix_as_shlex_does_and_runs_nothing_a_name_holds(tmp_path: Path) -> None:
    commands = _printed_commands()
    seen: set[str] = set()
    for line in commands:
        proc = subprocess.run(["bash", "-c", f"printf '%s\\0' {line}"], capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split("\0")[:-1] == _argv(line), line
        seen.update(_argv(line))
    assert os.listdir(tmp_path) == [], "a name ran as shell code"
    assert {NS + "yy3-vm33", SANDBOX3, HOST2, HOST3, VX, ETH, VM33, NET, YY2, YY3} <= seen, "every name was printed"


def test_a_command_in_another_machines_sandbox_quotes_its_bind_mount_and_the_machine() -> None:
    path = "/run/docker/netns/1-a b;>c1"
    sandbox = Namespace("net:[9]", "overlay-sandbox", "1-a b;>c1 (prod)", paths=(path,))
    merged, labels = merge([("dh;2", HostSnapshot("dh;2", 0.0, "6", (sandbox,)), Labels(), "host")])
    w = World([merged], labels)
    key = next(k for k, p in w.places.items() if p.ns.kind == "overlay-sandbox")
    argv = ("nsenter", f"--net={path}", "ip", "neigh", "del", VM3_IP, "dev", VX)  # run on that machine as it is
    assert (w.command_in(key, *argv[2:]), w.machine_of(key)) == (argv, "dh;2")
    line = fix_in(w, key, native=argv[2:]).native_line  # the machine is said before the line, no word of it
    assert line.startswith("on 'dh;2': ") and _argv(line.removeprefix("on 'dh;2': ")) == list(argv)


def test_an_iptables_rule_no_shell_could_read_is_deleted_word_by_word() -> None:
    rule = Rule("FORWARD", '-i "x;>c1 -j DROP', target="DROP")
    argv = Decision("DROP", "legacy", "FORWARD", rule).undo()
    assert list(argv) == _argv(shell_line(*argv)) == ["iptables-legacy", "-D", "FORWARD", "-i", '"x;>c1', "-j", "DROP"]


def test_ordinary_words_and_iptables_negation_print_as_always() -> None:
    words = ["ip", "netns", "exec", "vxshot.yy3-1-415cb1946c", "ip", "neigh", "replace", VM3_IP, "lladdr", VM3_MAC,
             "dev", "vxlan1", "nud", "permanent"]  # fmt: skip
    assert shell_line(*words) == " ".join(words)
    assert shell_line("iptables-nft", "-D", "FORWARD", "!", "-i", "br0", "-j", "DROP") == (
        "iptables-nft -D FORWARD ! -i br0 -j DROP"
    )
    assert shell_line("vxray", "host", "set", "yy3", "mtu.eth0=1500") == "vxray host set yy3 mtu.eth0=1500"


def test_the_app_shows_the_fixes_as_printed_and_asks_before_running_the_one_it_would(tmp_path: Path) -> None:
    snap, labels = _hostile(
        SCENARIOS["wrong-arp"]
    )  # a saved view: the doctor has no store, a stale ARP entry needs none
    view = tmp_path / "hostile.view.json"
    view.write_bytes(codec.dump_view(codec.View(snap, labels)))
    fix = _fix(_trace(SCENARIOS["wrong-arp"]))

    async def run() -> None:
        app = VxrayApp(from_file(str(view)))
        async with app.run_test(size=(160, 48)) as pilot:
            while app.world is None:
                await pilot.pause(0.05)
            app.show_trace(VM33_NS, VM3_IP)
            await app.workers.wait_for_complete()  # traced off the screen's thread, then shown
            await pilot.pause(0.1)
            assert f"fix ([f] applies it): {fix.vxray_line}" in str(app.query_one("#verdict", Static).render())
            app.action_show_tab("Doctor")
            await app.workers.wait_for_complete()
            await pilot.pause(0.1)
            stale = next(i for i, f in enumerate(app.findings) if "stale static ARP" in f.title)
            app.query_one("#doctor", DataTable).move_cursor(row=stale)
            await pilot.pause(0.2)
            shown = app.findings[stale].fix
            assert shown is not None and f"fix: {shown.vxray_line}" in str(app.query_one("#evidence", Static).render())
            await pilot.press("f")
            await pilot.pause(0.2)
            assert isinstance(app.screen, Confirm)
            question = str(app.screen.query_one("#question", Label).render())
            assert question.startswith(f"Run `{fix.vxray_line}` and trace") and question.endswith("[y] yes   [n] no")
            await pilot.press("n")

    asyncio.run(run())


# -- the kernel --------------------------------------------------------------------------------------

HOSTILE_NS = "h;>c1 $(>c2)'\"`>c3`"  # no `*?[`: the store finds a host's namespaces by the glob NAME-*
BRIDGE, LEFT, RIGHT = "br;>c4", "p$(>c5)", "q`>c6`"  # devices: at most 15 characters, no blanks, no '/'


def _ends(lab: Lab, routed: bool) -> tuple[str, str, str, str]:
    """Namespaces ``NAME-a`` and ``NAME-b`` joined through ``NAME`` (a vxray host): bridged by ``BRIDGE``, or
    routed; (host, a, b, b's address)."""
    host, a, b = lab.netns(HOSTILE_NS), lab.netns(f"{HOSTILE_NS}-a"), lab.netns(f"{HOSTILE_NS}-b")
    lab.veth(a, "eth0", host, LEFT)
    lab.veth(b, "eth0", host, RIGHT)
    if routed:
        for ns, dev, net in ((a, LEFT, "10.98.1"), (b, RIGHT, "10.98.2")):
            lab.ip(host, "addr", "add", f"{net}.1/24", "dev", dev)
            lab.ip(ns, "addr", "add", f"{net}.2/24", "dev", "eth0")
            lab.ip(ns, "route", "add", "default", "via", f"{net}.1")
        lab.run(host, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        return host, a, b, "10.98.2.2"
    lab.ip(host, "link", "add", BRIDGE, "type", "bridge")
    lab.ip(host, "link", "set", BRIDGE, "up")
    for port in (LEFT, RIGHT):
        lab.ip(host, "link", "set", port, "master", BRIDGE)
    lab.ip(a, "addr", "add", "10.99.0.1/24", "dev", "eth0")
    lab.ip(b, "addr", "add", "10.99.0.2/24", "dev", "eth0")
    return host, a, b, "10.99.0.2"


def _vxray(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VXRAY_HOME": str(home), "VXRAY_STORE": f"file://{home}/store.db"}  # not the machine's
    return subprocess.run([VXRAY, *args], capture_output=True, text=True, env=env)


def _printed_fix(home: Path, src: str, dst: str) -> str:
    """The ``ip …`` line `vxray trace` prints under ``or:``."""
    proc = _vxray(home, "trace", src, dst)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return next(line.removeprefix("  or:  ") for line in proc.stdout.splitlines() if line.startswith("  or:  "))


def _pings(lab: Lab, src: str, dst: str) -> bool:
    return lab.run(src, "ping", "-c", "1", "-W", "2", dst, check=False).returncode == 0


def _run_pasted(line: str, cwd: Path) -> None:
    """The line as an operator pastes it into bash; nothing but that one command may run."""
    cwd.mkdir()
    proc = subprocess.run(["bash", "-c", line], capture_output=True, text=True, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(cwd) == [], "a name ran as shell code"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def test_the_printed_fix_for_a_bridge_port_named_like_shell_code_runs_pasted_and_brings_it_up(
    lab: Lab, home: Path, tmp_path: Path
) -> None:
    host, a, _, dst = _ends(lab, routed=False)
    assert _pings(lab, a, dst)
    assert _vxray(home, "host", "add", "h1", "--netns", host).returncode == 0
    lab.ip(host, "link", "set", RIGHT, "down")  # broken with plain ip
    assert not _pings(lab, a, dst)
    line = _printed_fix(home, a, dst)
    assert _argv(line) == _in(host, "ip", "link", "set", RIGHT, "up")
    _run_pasted(line, tmp_path / "cwd")
    assert _pings(lab, a, dst)
    assert _vxray(home, "trace", a, dst).returncode == 0


@pytest.mark.skipif(not have("iptables-nft"), reason="needs iptables-nft")
def test_the_printed_fix_for_a_drop_rule_on_devices_named_like_shell_code_deletes_exactly_that_rule(
    lab: Lab, home: Path, tmp_path: Path
) -> None:
    host, a, _, dst = _ends(lab, routed=True)
    assert _pings(lab, a, dst)
    lab.run(host, "iptables-nft", "-A", "FORWARD", "-i", LEFT, "-o", RIGHT, "-j", "DROP")
    lab.run(host, "iptables-nft", "-A", "FORWARD", "-i", RIGHT, "-j", "ACCEPT")  # must stay
    assert _vxray(home, "host", "add", "h1", "--netns", host).returncode == 0
    assert not _pings(lab, a, dst)
    line = _printed_fix(home, a, dst)
    assert _argv(line) == _in(host, "iptables-nft", "-D", "FORWARD", "-i", LEFT, "-o", RIGHT, "-j", "DROP")
    _run_pasted(line, tmp_path / "cwd")
    assert _pings(lab, a, dst)
    rules = lab.run(host, "iptables-nft", "-S", "FORWARD").stdout.splitlines()
    assert rules == ["-P FORWARD ACCEPT", f"-A FORWARD -i {RIGHT} -j ACCEPT"]
    assert _vxray(home, "trace", a, dst).returncode == 0
