"""The Textual app against a real lab: views fill, kernel changes appear, commands run, the trace finds and fixes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.style import Style
from rich.text import Text
from textual.command import CommandList
from textual.pilot import Pilot
from textual.widgets import DataTable, Label, RichLog, Select, Static

from backend.lab import runner
from backend.model import HostSnapshot, Labels
from tui.app import Confirm, VxrayApp
from tui.cli import main
from tui.completer import VxrayCompleter
from tui.context import Invocation
from tui.registry import LINE_WORDS, SHELL_WORDS
from tui.source import Source, from_file, live

from conftest import Lab, sh


@pytest.fixture
def seed(lab: Lab, home: Path) -> str:
    name = f"{lab.prefix}app"
    assert main(["lab", "up", "overlay-static", "--name", name]) == 0
    yield name
    runner.down(name)


def _cells(app: VxrayApp, table_id: str) -> list[str]:
    table = app.query_one(table_id, DataTable)
    return [" ".join(str(c) for c in table.get_row_at(i)) for i in range(table.row_count)]


async def _until(pilot: Pilot[None], ready: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, "the app never showed it"
        await pilot.pause(0.1)


async def _command(pilot: Pilot[None], line: str) -> None:
    await pilot.press("colon")
    for ch in line:
        await pilot.press("space" if ch == " " else ch)
    await pilot.press("enter")


def test_views_fill_and_follow_the_kernel(seed: str) -> None:
    async def run() -> None:
        app = VxrayApp(live(Invocation()))
        async with app.run_test(size=(160, 48)) as pilot:
            await _until(pilot, lambda: app.snapshot is not None)
            app.action_show_tab("Links")
            await _until(pilot, lambda: any("vxlan1" in r for r in _cells(app, "#table-Links")))
            hosts = [item.name for item in app.query_one("#hosts").children]
            assert hosts[:2] == ["yy2", "yy3"]
            assert any("vm3" in r for r in _cells(app, "#table-Links")), "containers are named, not just netns"
            sandbox = next(ns for ns in runner.context(seed).store.networks())
            netns = f"{seed}.yy2-1-{sandbox.short_id}"
            app.action_show_tab("FDB")
            sh("bridge", "-n", netns, "fdb", "add", "02:42:ac:15:00:77", "dev", "vxlan1", "dst", "10.193.6.37")
            await _until(pilot, lambda: any("02:42:ac:15:00:77" in r for r in _cells(app, "#table-FDB")), 10)

    asyncio.run(run())


def test_the_command_line_creates_a_network_and_the_view_shows_it(seed: str) -> None:
    async def run() -> None:
        app = VxrayApp(live(Invocation()))
        async with app.run_test(size=(160, 48)) as pilot:
            await _until(pilot, lambda: app.snapshot is not None)
            app.action_show_tab("Links")
            await _command(pilot, "network create n2 --subnet 10.77.0.0/24 --host yy2")
            await _until(pilot, lambda: any("10.77.0.1/24" in r for r in _cells(app, "#table-Links")))

    asyncio.run(run())


def test_trace_highlights_the_failing_step_and_its_fix_makes_the_next_trace_deliver(seed: str) -> None:
    async def run() -> None:
        app = VxrayApp(live(Invocation()))
        async with app.run_test(size=(160, 48)) as pilot:
            await _until(pilot, lambda: app.snapshot is not None)
            await _command(pilot, "trace vm33 vm3")
            await _until(pilot, lambda: app.last_trace is not None)
            result = app.last_trace[2]
            assert not result.delivered
            table = app.query_one("#trace", DataTable)
            assert table.cursor_row == result.failed_step
            verdict = str(app.query_one("#verdict", Static).render())
            assert "DROPPED" in verdict and "vxray fdb sync prod" in verdict
            await pilot.press("f")
            await pilot.press("y")
            await _until(pilot, lambda: app.last_trace is not None and app.last_trace[2].delivered, 20)

    asyncio.run(run())


def test_the_command_line_suggests_from_the_same_names_as_the_shell(seed: str) -> None:
    async def run() -> None:
        app = VxrayApp(live(Invocation()))
        async with app.run_test(size=(160, 48)) as pilot:
            await _until(pilot, lambda: app.snapshot is not None and app.vocabulary.networks)
            await pilot.press("colon")
            for key in "network insp":
                await pilot.press("space" if key == " " else key)
            box = app.query_one("#command")
            await _until(pilot, lambda: box._suggestion == "network inspect")
            await pilot.press("right", "space", "p")
            await _until(pilot, lambda: box._suggestion == "network inspect prod")

    asyncio.run(run())


def test_enter_on_a_mac_jumps_to_its_neighbours_and_names_its_owner(seed: str) -> None:
    async def run() -> None:
        app = VxrayApp(live(Invocation()))
        async with app.run_test(size=(160, 48)) as pilot:
            await _until(pilot, lambda: app.snapshot is not None)
            app.action_show_tab("Links")
            await _until(pilot, lambda: any("02:42:ac:15:00:01" in r for r in _cells(app, "#table-Links")))
            table = app.query_one("#table-Links", DataTable)
            row = next(i for i, r in enumerate(_cells(app, "#table-Links")) if "02:42:ac:15:00:01" in r)
            table.focus()
            table.move_cursor(row=row)
            await pilot.press("enter")
            await _until(pilot, lambda: app.text == "02:42:ac:15:00:01")
            assert app.active_view() == "Neighbours"
            assert [name for name, lk in app._owners("02:42:ac:15:00:01")] == ["vm3"]
            await pilot.press("question_mark")
            assert type(app.screen).__name__ == "Help"

    asyncio.run(run())


def _labels(node: object) -> list[str]:
    out = []
    for child in node.children:  # type: ignore[attr-defined]
        out.append(str(child.label))
        out += _labels(child)
    return out


def test_topology_shows_bridges_containers_and_the_tunnels_fdb_sync_programs(seed: str) -> None:
    async def run() -> None:
        app = VxrayApp(live(Invocation()))
        async with app.run_test(size=(160, 48)) as pilot:
            await _until(pilot, lambda: app.snapshot is not None)
            app.action_show_tab("Topology")
            tree = app.query_one("#topology")
            await _until(pilot, lambda: any("yy3  VTEP 10.193.6.37" in t for t in _labels(tree.root)))
            labels = _labels(tree.root)
            assert any(t.startswith("prod sandbox: br0 bridge 172.21.255.254/16") for t in labels)
            assert any("⇄ vm33 eth0 02:42:ac:15:00:02 172.21.0.2/16" in t for t in labels)
            assert any("no tunnel" in t for t in labels), "the field notes' case: vxlan1 knows no VTEP"
            drawing = app.query_one("#drawing", Static)
            assert "no tunnel: no VXLAN FDB entry names a remote VTEP" in str(drawing.render())
            await _command(pilot, "fdb sync prod")
            await _until(pilot, lambda: any("⇄ tunnel to 10.193.6.36 (yy2)" in t for t in _labels(tree.root)), 20)
            assert "◀ VNI 256 ▶" in str(drawing.render()), "the tunnel is drawn as an edge, both ways"

    asyncio.run(run())


def _styled(text: Text, part: str) -> Style:
    """The colours the drawing gives to the node whose text starts with ``part``."""
    at = text.plain.index(part)
    return next(s.style for s in text.spans if s.start <= at < s.end and isinstance(s.style, Style) and s.style.bgcolor)


def test_picking_both_ends_traces_and_colours_the_path_in_the_drawing(seed: str) -> None:
    async def run() -> None:
        app = VxrayApp(live(Invocation()))
        async with app.run_test(size=(160, 48)) as pilot:
            await _until(pilot, lambda: app.snapshot is not None and app.ends == ["vm3", "vm33"])
            app.action_show_tab("Trace")
            app.query_one("#src", Select).value = "vm33"
            app.query_one("#dst", Select).value = "vm3"
            await _until(pilot, lambda: app.last_trace is not None)
            assert app.last_trace[:2] == ("vm33", "vm3") and not app.last_trace[2].delivered
            drawing = app.query_one("#trace-drawing", Static).content
            assert isinstance(drawing, Text)
            assert _styled(drawing, "vm33 172.21.0.2").bgcolor.name == "red", "the stop: vm33's unanswered ARP"
            await _command(pilot, "fdb sync prod")
            await _until(pilot, lambda: app.last_trace is not None and app.last_trace[2].delivered, 20)
            drawing = app.query_one("#trace-drawing", Static).content
            assert isinstance(drawing, Text)
            assert _styled(drawing, "vm3 172.21.0.1").bgcolor.name == "green"
            assert _styled(drawing, "●══").bgcolor.name == "green", "the tunnel the packet took"

    asyncio.run(run())


def test_the_command_palette_offers_every_action_and_a_trace_per_pair(seed: str) -> None:
    async def run() -> None:
        app = VxrayApp(live(Invocation()))
        async with app.run_test(size=(160, 48)) as pilot:
            await _until(pilot, lambda: app.snapshot is not None and app.ends)
            titles = [c.title for c in app.get_system_commands(app.screen)]
            for title in ("Command", "Filter", "Show FDB", "Show Topology", "Apply fix", "Trace vm33 -> vm3"):
                assert title in titles
            await pilot.press("ctrl+p")
            for ch in "Trace vm33 -> vm3":
                await pilot.press({" ": "space", ">": "greater_than_sign", "-": "minus"}.get(ch, ch))

            def offered() -> bool:
                palette = app.screen.query_one(CommandList)
                return palette.option_count > 0 and "Trace vm33 -> vm3" in str(palette.get_option_at_index(0).prompt)

            await _until(pilot, offered)
            await pilot.press("enter")
            await _until(pilot, lambda: app.last_trace is not None)
            assert app.last_trace[:2] == ("vm33", "vm3") and app.active_view() == "Trace"

    asyncio.run(run())


def test_a_host_whose_namespace_is_gone_is_offline_and_the_others_stay_live(seed: str) -> None:
    async def run() -> None:
        app = VxrayApp(live(Invocation()))
        async with app.run_test(size=(160, 48)) as pilot:
            await _until(pilot, lambda: app.snapshot is not None)
            assert app.badges[:2] == [("yy2", False), ("yy3", False)]
            sh("ip", "netns", "del", f"{seed}.yy3")
            app.action_refresh()
            await _until(pilot, lambda: ("yy3", True) in app.badges)
            assert app.labels.offline["yy3"] == f"its namespace {seed}.yy3 is gone"
            await _until(pilot, lambda: any("○ yy3 offline" in str(lb.render()) for lb in app.query("#hosts Label")))
            app.action_show_tab("Links")
            app.host = "yy2"
            app.render_tables()
            await _until(pilot, lambda: any("vxlan1" in r for r in _cells(app, "#table-Links")))

    asyncio.run(run())


def test_the_palette_the_line_and_the_shell_offer_the_same_commands(seed: str) -> None:
    async def run() -> None:
        app = VxrayApp(live(Invocation()))
        async with app.run_test(size=(160, 48)) as pilot:
            await _until(pilot, lambda: app.snapshot is not None)
            palette = {c.title.removesuffix(" …") for c in app.get_system_commands(app.screen) if c.title.endswith("…")}
            line = {c for c, _ in VxrayCompleter(lambda: app.vocabulary, lambda: None, "line").candidates([], "")}
            shell = {c for c, _ in VxrayCompleter(lambda: app.vocabulary, lambda: None, "shell").candidates([], "")}
            assert palette == line - set(LINE_WORDS) == shell - set(SHELL_WORDS)
            assert {"network", "fdb", "trace", "doctor", "lab"} <= palette
            assert not {"use", "help", "exit", "app", "shell", "agent"} & line, "the line offers only what it runs"

    asyncio.run(run())


def test_network_rm_on_the_line_asks_first_and_no_keeps_the_network(seed: str) -> None:
    async def run() -> None:
        app = VxrayApp(live(Invocation()))
        async with app.run_test(size=(160, 48)) as pilot:
            await _until(pilot, lambda: app.snapshot is not None)
            app.dispatch_line("network rm prod --force")
            await _until(pilot, lambda: isinstance(app.screen, Confirm) and bool(app.screen.query("#question")))
            assert "vxray network rm prod --force" in str(app.screen.query_one("#question", Label).render())
            await pilot.press("n")
            await _until(pilot, lambda: any("not confirmed: vxray network rm prod --force" in s for s in _log(app)))
            app.dispatch_line("network ls")
            await _until(pilot, lambda: any("prod" in line and "overlay" in line for line in _log(app)))

    asyncio.run(run())


def test_the_line_runs_commands_in_process_and_shows_their_errors_in_red(seed: str) -> None:
    async def run() -> None:
        app = VxrayApp(live(Invocation()))
        async with app.run_test(size=(160, 48)) as pilot:
            await _until(pilot, lambda: app.snapshot is not None)
            app.dispatch_line("network inspect nonet")
            await _until(pilot, lambda: any("nonet" in line for line in _log(app)))
            red = [s for s in app.query_one("#log", RichLog).lines if "exit 2" in s.text]
            assert red and any(seg.style and seg.style.color and seg.style.color.name == "red" for seg in red[0])
            app.dispatch_line("use lab x")
            await _until(pilot, lambda: any("'use' is not a command of the app's line" in line for line in _log(app)))

    asyncio.run(run())


def test_a_failing_worker_is_one_red_line_and_a_notification(tmp_path: Path) -> None:
    view = Path(__file__).parent / "fixtures" / "overlay-static.view.json"
    saved = from_file(str(view))
    reads = iter([saved.read(), None])

    def read(*_: object) -> tuple[HostSnapshot, Labels]:
        got = next(reads)
        if got is None:  # the second read: a bug in a reader, not an operator's mistake
            raise RuntimeError("the reader broke")
        return got

    async def run() -> None:
        app = VxrayApp(Source(read, None, "breaking"))
        async with app.run_test(size=(160, 48)) as pilot:
            await _until(pilot, lambda: app.snapshot is not None)
            app.action_refresh()
            await _until(pilot, lambda: any("collect failed: RuntimeError: the reader broke" in s for s in _log(app)))
            assert any("the reader broke" in n.message for n in app._notifications)
            assert app.snapshot is not None, "the app goes on with what it showed"

    asyncio.run(run())


def _log(app: VxrayApp) -> list[str]:
    return [strip.text for strip in app.query_one("#log", RichLog).lines]
