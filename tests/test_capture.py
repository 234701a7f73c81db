"""``vxray capture`` and ``trace --live -w`` with real packets, read back by Debian's ``tshark``.

The overlay lab (overlay-static, its FDB and ARP entries synced) carries a real
ping from vm33 to vm3; the capture takes it on vm33's veth, yy3's sandbox
``vxlan1`` and yy3's underlay at once, into one pcapng file whose interfaces
``tshark`` must name ``dev@namespace@host`` with VNI 256 on the underlay. The
same over SSH, where each machine's agent captures and streams. Bad devices,
namespaces and filters are one line and exit 2; the protocol's ``packets``
events from a stranger are checked frame by frame.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sshd import Servers, vxray_command

from backend import codec, nsenter
from backend.capture import Point, Session
from backend.errors import VxrayError
from backend.lab import runner
from backend.pcapng import Writer
from backend.protocol import ProtocolError, packets_event, parse_message, parse_request
from diagnostics.devices import resolve
from diagnostics.packets import summary
from diagnostics.world import World
from tui.capture import split_words
from tui.cli import main

from conftest import Lab, sh

REPO = Path(__file__).resolve().parent.parent
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")


def _frame(vni: int = 256) -> bytes:
    """vm33 -> vm3 as yy3's underlay carries it: outer Ethernet, IPv4, UDP 4789, VXLAN, then the inner echo."""
    inner_ip = bytes.fromhex("45000054abcd400040010000") + bytes([172, 21, 0, 2, 172, 21, 0, 1])
    icmp = bytes([8, 0, 0, 0, 0x12, 0x34, 0, 1]) + b"x" * 56
    inner = bytes.fromhex("0242ac1500010242ac1500020800") + inner_ip + icmp
    vxlan = bytes([0x08, 0, 0, 0]) + vni.to_bytes(3, "big") + b"\0"
    udp = (55555).to_bytes(2, "big") + (4789).to_bytes(2, "big") + (8 + 8 + len(inner)).to_bytes(2, "big") + b"\0\0"
    outer_ip = bytes.fromhex("450000000000400040110000") + bytes([10, 193, 6, 37, 10, 193, 6, 36])
    return bytes.fromhex("4eae38df94b41ee22f4be7980800") + outer_ip + udp + vxlan + inner


def test_a_vxlan_frame_reads_as_its_vteps_vni_and_inner_packet() -> None:
    line = summary(_frame())
    assert "10.193.6.37.55555 > 10.193.6.36.4789 VXLAN vni 256" in line
    assert "02:42:ac:15:00:02 > 02:42:ac:15:00:01, 172.21.0.2 > 172.21.0.1 ICMP echo request id 4660 seq 1" in line
    arp = bytes.fromhex("ffffffffffff" "0242ac150002" "0806" "0001080006040001" "0242ac150002") + bytes(
        [172, 21, 0, 2]) + bytes(6) + bytes([172, 21, 0, 1])  # fmt: skip
    assert "ARP who-has 172.21.0.1 tell 172.21.0.2" in summary(arp)
    assert summary(b"\x01\x02") == "truncated frame (2 bytes), length 2"


@pytest.fixture
def world() -> World:
    view = codec.load_view(codec.read_file(str(REPO / "tests/fixtures/overlay-static.view.json")), "fixture")
    return World([view.snapshot], view.labels)


def test_devices_resolve_by_container_network_label_and_host_and_print_back_the_same(world: World) -> None:
    assert resolve(world, "eth0@vm33").name == "eth0@vm33@yy3"
    sandbox = resolve(world, "vxlan1@prod@yy3")
    assert sandbox.name == "vxlan1@vxshot.yy3-1-415cb1946c@yy3"
    assert resolve(world, sandbox.name) == sandbox  # what the file calls a device, capture takes back
    assert resolve(world, "eth0@host@yy2").name == "eth0@host@yy2"
    assert resolve(world, "eth0@vxshot.yy2").name == "eth0@host@yy2"


@pytest.mark.parametrize(("spec", "why"), [
    ("vxlan1@prod", r"'prod' in 'vxlan1@prod' is several namespaces \(vxshot.yy2-1-415cb1946c@yy2, "
                    r"vxshot.yy3-1-415cb1946c@yy3\): say DEV@NAMESPACE@HOST"),
    ("eth0@vm33@yy2", r"unknown namespace 'vm33' in 'eth0@vm33@yy2' on yy2"),
    ("eth1@vm33", r"no device 'eth1' in namespace vxshot.yy3-vm33 \(it has lo, eth0\)"),
    ("@vm33", r"bad device '' in '@vm33'"),
    ("averyveryverylongname@vm33", r"bad device 'averyveryverylongname'"),
])  # fmt: skip
def test_a_device_that_is_not_one_says_why_in_one_line(world: World, spec: str, why: str) -> None:
    with pytest.raises(VxrayError, match=why):
        resolve(world, spec)


def test_devices_come_first_then_the_filter() -> None:
    assert split_words(["eth0@vm33", "vxlan1@prod@yy3", "udp", "port", "4789"]) == (
        ["eth0@vm33", "vxlan1@prod@yy3"], "udp port 4789")  # fmt: skip
    assert split_words(["eth0", "icmp"]) == (["eth0"], "icmp")
    assert split_words(["eth0", "eth1@host", "--", "host", "a@b"]) == (["eth0", "eth1@host"], "host a@b")


@needs_tshark
def test_a_written_pcapng_opens_in_tshark_with_its_interface_names(tmp_path: Path) -> None:
    path = tmp_path / "one.pcapng"
    with open(path, "wb") as out:
        w = Writer(out)
        w.interface("eth0@host@yy3", "eth0 in namespace x on yy3")
        w.interface("vxlan1@prod@yy3", "the sandbox's vxlan1")
        w.packet(0, 1_700_000_000_123_456_789, _frame(), flags=2)
        for size in (61, 62, 63, 64):  # every padding to 32 bits
            w.packet(1, 1_700_000_000_200_000_000, bytes(size), orig_len=size + 100)
        w.statistics(0, 1_700_000_001_000_000_000, 1, 0)
    got = _fields(path, "frame.interface_name", "vxlan.vni", "frame.time_epoch", "frame.cap_len", "frame.len")
    assert got[0] == ["eth0@host@yy3", "256", "1700000000.123456789", "148", "148"]
    assert [row[3:] for row in got[1:]] == [[str(n), str(n + 100)] for n in (61, 62, 63, 64)]
    assert {row[0] for row in got[1:]} == {"vxlan1@prod@yy3"}


def test_a_bad_filter_is_one_line_naming_it(lab: Lab) -> None:
    a, b = lab.netns("a"), lab.netns("b")
    lab.veth(a, "v0", b, "v1")
    with pytest.raises(VxrayError, match=r"bad filter 'icmpp or': .*syntax error"):
        Session([Point("v0", "v0@a@me", paths=(f"/run/netns/{a}",))], "icmpp or")
    with pytest.raises(VxrayError, match=r"no device 'v9'"):
        Session([Point("v9", "v9@a@me", paths=(f"/run/netns/{a}",))])


def test_a_vlan_tag_the_kernel_took_off_is_put_back_in_the_frame(lab: Lab) -> None:
    a, b = lab.netns("a"), lab.netns("b")
    lab.veth(a, "v0", b, "v1")
    session = Session([Point("v1", "v1@b@me", paths=(f"/run/netns/{b}",))], "arp")  # not the link's IPv6 chatter
    try:
        with nsenter.named(a):
            tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        with tx:
            tx.bind(("v0", 0))
            arp = bytes.fromhex("00010800060400010200000000010a0000010000000000000a000002")
            tx.send(bytes.fromhex("ffffffffffff0200000000018100000a0806") + arp)
        frames = session.read(1.0)
    finally:
        session.close()
    assert [summary(p.data) for p in frames] == [
        "02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff vlan 10, ARP who-has 10.0.0.2 tell 10.0.0.1, length 46"
    ]


def test_an_agents_packets_event_is_checked_frame_by_frame() -> None:
    good = parse_message(packets_event(3, [(0, 5, b"abc", 60, True)]))
    assert good.capture == 3 and good.packets[0].data == b"abc" and good.packets[0].outgoing  # type: ignore[union-attr]
    for frames, why in (([[0, 1, 2, True, base64.b64encode(b"abc").decode()]], "3 bytes of a frame 2 bytes long"),
                        ([[0, 1, 60, True, "a$b="]], "not base64"), ([[0, -1, 60, True, ""]], "bad frame"),
                        ([[0, 1, 60, "out", ""]], "bad frame")):  # fmt: skip
        with pytest.raises(ProtocolError, match=why):
            parse_message(json.dumps({"event": "packets", "capture": 1, "packets": frames}))
    with pytest.raises(ProtocolError, match=r"capture\.filter"):
        parse_request(json.dumps({"id": 1, "op": "capture", "args": {"points": [["host", "eth0"]], "filter": "\x1b"}}))
    with pytest.raises(ProtocolError, match=r"capture\.points"):
        parse_request(json.dumps({"id": 1, "op": "capture", "args": {"points": []}}))


@pytest.fixture
def overlay(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """overlay-static with its entries synced: vm33 reaches vm3 across the tunnel."""
    monkeypatch.setenv("VXRAY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VXRAY_STORE", raising=False)
    name = f"{lab.prefix}cap"
    assert main(["lab", "up", "overlay-static", "--name", name]) == 0
    try:
        assert main(["fdb", "sync", "prod"]) == 0
        yield name
    finally:
        runner.down(name)


def _fields(path: Path, *fields: str) -> list[list[str]]:
    argv = ["tshark", "-r", str(path), "-T", "fields", *(w for f in fields for w in ("-e", f))]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


@contextlib.contextmanager
def _pinging(ns: str) -> Iterator[None]:
    """vm33 pings vm3 every 0.3 s for the block: however long the capture takes to open its sockets, the echoes
    it takes are whole ones (each crosses every device within a millisecond)."""
    proc = subprocess.Popen(["ip", "netns", "exec", ns, "ping", "-i", "0.3", "-w", "60", "172.21.0.1"],
                            stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        yield
    finally:
        proc.terminate()
        proc.wait()


def _ping_soon(ns: str, delay: float) -> threading.Thread:
    """Two echoes from ``ns`` to vm3 once the capture had time to open its sockets."""

    def ping() -> None:
        time.sleep(delay)
        sh("ip", "netns", "exec", ns, "ping", "-c", "2", "-i", "0.3", "172.21.0.1")

    thread = threading.Thread(target=ping)
    thread.start()
    return thread


@needs_tshark
def test_a_ping_across_the_overlay_is_one_file_with_veth_vxlan1_and_underlay(overlay: str, tmp_path: Path) -> None:
    path = tmp_path / "overlay.pcapng"
    sandbox = next(n for n in os.listdir("/run/netns") if n.startswith(f"{overlay}.yy3-1-"))
    with _pinging(f"{overlay}.yy3-vm33"):
        status = main(["capture", "eth0@vm33", f"vxlan1@{sandbox}", "eth0@host@yy3", "-w", str(path), "-c", "12",
                       "--seconds", "15", "icmp", "or", "udp", "port", "4789"])  # fmt: skip
    assert status == 0
    rows = _fields(path, "frame.interface_name", "vxlan.vni", "icmp.type")
    assert len(rows) == 12
    assert {r[0] for r in rows} == {"eth0@vm33@yy3", f"vxlan1@{sandbox}@yy3", "eth0@host@yy3"}
    assert {r[1] for r in rows if r[0] == "eth0@host@yy3"} == {"256"}  # the underlay carries VNI 256
    assert sorted(r[2].split(",")[-1] for r in rows if r[0] == "eth0@vm33@yy3") == ["0", "0", "8", "8"]


def test_capture_prints_one_line_per_packet_with_vxlan_decoded(overlay: str, capsys: pytest.CaptureFixture) -> None:
    with _pinging(f"{overlay}.yy3-vm33"):
        assert main(["capture", "eth0@host@yy3", "-c", "2", "--seconds", "15", "udp", "port", "4789"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert "eth0@host@yy3 Out" in lines[0] and "10.193.6.37" in lines[0] and "VXLAN vni 256" in lines[0]
    assert "172.21.0.2 > 172.21.0.1 ICMP echo request" in lines[0]
    assert "172.21.0.1 > 172.21.0.2 ICMP echo reply" in lines[1]


@pytest.mark.parametrize(("words", "why"), [
    (["eth0@nosuch"], "unknown namespace 'nosuch'"),
    (["eth9@vm33"], "no device 'eth9' in namespace"),
    (["eth0@vm33", "icmpp"], "bad filter 'icmpp'"),
    (["a/b@vm33"], "bad device 'a/b'"),
    (["eth0@vm33@nohost"], "unknown namespace 'vm33'.* on nohost"),
    (["eth0", "-c", "0"], "invalid -c 0"),
])  # fmt: skip
def test_bad_devices_namespaces_and_filters_are_one_line_and_exit_2(
    overlay: str, words: list[str], why: str, capsys: pytest.CaptureFixture
) -> None:
    assert main(["capture", *words, "--seconds", "1"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("vxray: ")
    assert re.search(why, err), err


@needs_tshark
def test_ctrl_c_ends_a_capture_with_the_file_whole(overlay: str, tmp_path: Path) -> None:
    path = tmp_path / "cut.pcapng"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "tui.cli", "capture", "eth0@vm33", "-w", str(path), "icmp"], env=env,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stderr is not None
    assert "capturing on eth0@vm33@yy3" in proc.stderr.readline()
    sh("ip", "netns", "exec", f"{overlay}.yy3-vm33", "ping", "-c", "2", "-i", "0.3", "172.21.0.1")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0
    assert "4 packets captured" in proc.stderr.read()
    types = [r[1] for r in _fields(path, "frame.interface_name", "icmp.type") if r[1]]
    assert types == ["8", "0", "8", "0"]


@needs_tshark
def test_trace_live_writes_the_probes_frames_at_every_step(overlay: str, tmp_path: Path) -> None:
    path = tmp_path / "trace.pcapng"
    assert main(["trace", "vm33", "vm3", "--live", "-w", str(path)]) == 0
    rows = _fields(path, "frame.interface_name", "vxlan.vni", "icmp.type")
    names = [r[0] for r in rows]
    assert names[0] == "eth0@vm33@yy3"  # in the kernel's order: the request leaves vm33 first …
    assert {"eth0@host@yy3", "eth0@host@yy2", "eth0@vm3@yy2"} <= set(names)  # … crosses both underlays to vm3
    assert {r[1] for r in rows if r[0] == "eth0@host@yy2"} == {"256"}
    assert {r[2].split(",")[-1] for r in rows if r[0] == "eth0@vm3@yy2"} == {"8", "0"}  # requests and replies
    assert main(["trace", "vm33", "vm3", "-w", str(path)]) == 2  # -w without --live: nothing to write


@needs_tshark
def test_a_remote_capture_streams_from_the_agents_into_one_file(
    overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    servers = Servers(tmp_path / "ssh", f"{overlay}.yy3", {"VXRAY_HOME": os.environ["VXRAY_HOME"]})
    monkeypatch.setenv("VXRAY_SSH_CONFIG", servers.config)
    monkeypatch.setenv("VXRAY_REMOTE_COMMAND", vxray_command())
    monkeypatch.setenv("VXRAY_INVENTORY", str(tmp_path / "inventory.toml"))
    try:
        for host, address in (("yy2", "10.193.6.36"), ("yy3", "10.193.6.37")):
            servers.start(host, f"{overlay}.{host}", address)
            url = f"ssh://root@{address}?netns={overlay}.{host}-*&host_netns={overlay}.{host}"
            assert main(["hosts", "add", host, url]) == 0
        path = tmp_path / "remote.pcapng"  # for a time, not -c: a count could fill up from the first agent alone
        with _pinging(f"{overlay}.yy3-vm33"):
            status = main(["-H", "yy2", "-H", "yy3", "capture", "eth0@host@yy3", "eth0@host@yy2", "-w", str(path),
                           "--seconds", "4", "udp", "port", "4789"])  # fmt: skip
        assert status == 0
        rows = _fields(path, "frame.interface_name", "vxlan.vni", "icmp.type")
        assert {r[0] for r in rows} == {"eth0@host@yy3", "eth0@host@yy2"}
        assert {r[1] for r in rows} == {"256"}
        assert main(["-H", "yy3", "capture", "eth9@host@yy3", "--seconds", "1"]) == 2  # the agent's one line
        traced = tmp_path / "remote-trace.pcapng"  # the agents answer the probe's frames with where they saw it
        assert main(["-H", "yy2", "-H", "yy3", "trace", "--live", "vm33", "vm3", "-w", str(traced)]) == 0
        names = [r[0] for r in _fields(traced, "frame.interface_name")]
        assert names[0] == "eth0@vm33@yy3"
        assert {"eth0@host@yy3", "eth0@host@yy2", "eth0@vm3@yy2"} <= set(names)
    finally:
        servers.stop()


@needs_tshark
def test_c_in_the_app_captures_the_links_packets_and_w_saves_them(
    overlay: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from textual.widgets import DataTable, RichLog

    from tui.app import VxrayApp
    from tui.capture_view import CaptureScreen
    from tui.context import Invocation
    from tui.source import live

    monkeypatch.chdir(tmp_path)

    async def run() -> None:
        app = VxrayApp(live(Invocation()))
        async with app.run_test(size=(160, 48)) as pilot:
            while app.snapshot is None:
                await pilot.pause(0.1)
            app.host = "yy3"  # vm33's machine, as a click in the hosts list picks it
            app.render_tables()
            app.action_show_tab("Links")
            await pilot.pause(0.3)
            table = app.query_one("#table-Links", DataTable)
            cells = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
            table.move_cursor(row=next(i for i, row in enumerate(cells) if row[:2] == ["vm33", "eth0"]))
            table.focus()
            await pilot.press("c")
            assert isinstance(app.screen, CaptureScreen)
            assert [t.name for t in app.screen.targets] == ["eth0@vm33@yy3"]
            await pilot.pause(0.5)
            pinger = _ping_soon(f"{overlay}.yy3-vm33", delay=0)
            log = app.screen.query_one("#capture-log", RichLog)
            deadline = time.monotonic() + 15
            while sum("ICMP echo reply" in s.text for s in log.lines) < 2:
                assert time.monotonic() < deadline, "the panel never showed the replies"
                await pilot.pause(0.1)
            pinger.join()
            await pilot.press("w")
            await pilot.press("escape")
            assert not isinstance(app.screen, CaptureScreen)
            app.show_trace("vm33", "vm3")  # a trace step that names a device is captured on too
            while app.last_trace is None:
                await pilot.pause(0.1)
            steps = app.last_trace[2].steps
            at = next(i for i, step in enumerate(steps) if step.dev == "vxlan1")
            app.action_show_tab("Trace")
            app.query_one("#trace", DataTable).move_cursor(row=at)
            app.query_one("#trace", DataTable).focus()
            await pilot.press("c")
            assert isinstance(app.screen, CaptureScreen)
            name = app.screen.targets[0].name
            assert name.startswith("vxlan1@") and name.endswith("@yy3")
            await pilot.press("escape")
            app.dispatch_line("capture eth0@vm33 vxlan1@prod@yy3 icmp")  # the line opens the panel too
            assert isinstance(app.screen, CaptureScreen)
            assert len(app.screen.targets) == 2 and app.screen.expression == "icmp"
            await pilot.press("escape")
            app.dispatch_line("capture eth9@vm33")
            assert not isinstance(app.screen, CaptureScreen)
            assert "no device 'eth9'" in app.query_one("#log", RichLog).lines[-1].text

    asyncio.run(run())
    (saved,) = tmp_path.glob("vxray-eth0-*.pcapng")
    rows = _fields(saved, "frame.interface_name", "icmp.type")
    assert {r[0] for r in rows} == {"eth0@vm33@yy3"}
    assert [r[1] for r in rows if r[1]] == ["8", "0", "8", "0"]


@pytest.mark.skipif(not all(shutil.which(t) for t in ("tmux", "termshark", "tshark")), reason="needs tmux, termshark")
def test_o_in_the_capture_panel_opens_termshark_on_the_saved_file_and_the_app_comes_back(
    overlay: str, tmp_path: Path
) -> None:
    """In a real terminal (tmux): the app suspends itself for termshark, which reads the file the panel saved."""
    session = f"{overlay}-tsk"

    def pane() -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout

    def until(ready: Callable[[], bool], what: str, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while not ready():
            assert time.monotonic() < deadline, f"never {what}:\n{pane()}"
            time.sleep(0.2)

    def keys(*words: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", session, *words], check=True)

    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "48", "-c", str(tmp_path),
                    "-e", f"VXRAY_HOME={os.environ['VXRAY_HOME']}", vxray_command(), "app"], check=True)  # fmt: skip
    try:
        subprocess.run(["tmux", "resize-window", "-t", session, "-x", "160", "-y", "48"], check=True)
        until(lambda: "snapshot of" in pane(), "showed the app")
        time.sleep(1)  # keys typed while the app still mounts its views are lost
        keys(":")
        time.sleep(0.5)
        keys("capture eth0@vm33", "Enter")
        until(lambda: "capturing on eth0" in pane(), "opened the panel")
        with _pinging(f"{overlay}.yy3-vm33"):
            until(lambda: "02:42:ac:15:00:01 > 02:42:ac:15:00:02" in pane(), "showed the ping's replies")
        keys("o")
        until(lambda: "termshark" in pane() and "172.21.0.1" in pane(), "showed termshark")
        [saved] = list(tmp_path.glob("vxray-eth0-*.pcapng"))
        assert any(row[0] == "eth0@vm33@yy3" for row in _fields(saved, "frame.interface_name", "icmp.type"))
        keys("q")
        time.sleep(0.5)
        keys("Enter")  # termshark asks before it quits
        until(lambda: "capturing on eth0" in pane() and "termshark 2" not in pane(), "came back to the app")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
