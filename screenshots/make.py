"""Regenerate the pictures in this folder from a real lab.

    sudo /opt/vxray-venv/bin/python screenshots/make.py

Builds the overlay-static lab (the field notes' overlay) under the name
``vxshot`` in a scratch state directory, renders ``vxray snapshot`` of host yy3
before and after the notes' static FDB/ARP fix as SVG and ``vxray graph`` of the
lab with the trace of vm33 -> vm3 marked (through Graphviz), then the app's main
screens (links, FDB, the trace of vm33 -> vm3 stopping and, after the fix
the trace suggests, delivering; the kernel changes the fix made; a capture of
the ping on the sandbox's vxlan1; the doctor), saves the lab as a view file
(``tests/fixtures/overlay-static.view.json``, which the app's snapshot tests
render; only when missing, so the baselines stay valid), and removes the lab.
Then the overlay-nft-broken lab: the Firewall view and the trace stopped by a
native nftables rule.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from rich.console import Console  # noqa: E402
from rich.text import Text  # noqa: E402

from backend.collect import collect  # noqa: E402
from backend.lab import runner  # noqa: E402
from tui.cli import main as vxray  # noqa: E402
from tui.summary import snapshot_lines  # noqa: E402

NAME = "vxshot"


def render(lines: list[str], title: str, path: str) -> None:
    console = Console(record=True, width=132, file=open(os.devnull, "w"))  # noqa: SIM115
    for line in lines:
        style = "bold cyan" if line.startswith("==") else "bold" if not line.startswith("    ") else ""
        console.print(Text(line, style=style), overflow="ellipsis", no_wrap=True, crop=True)
    console.save_svg(path, title=title)


APP_SIZE = (120, 34)


async def app_screens(view_path: str) -> None:
    """The app on the live lab: one SVG per main screen."""
    from tui.app import VxrayApp
    from tui.context import Invocation
    from tui.source import live

    app = VxrayApp(live(Invocation()), live=False)
    async with app.run_test(size=APP_SIZE) as pilot:
        while app.snapshot is None:
            await pilot.pause(0.1)
        for tab in ("Topology", "Links", "FDB"):
            app.action_show_tab(tab)
            await pilot.pause(0.5)
            save(app, f"app-{tab.lower()}")
        app.dispatch_line("trace vm33 vm3")
        await pilot.pause(0.2)
        save(app, "app-trace-dropped")
        app.action_show_tab("Doctor")
        await pilot.pause(0.2)
        save(app, "app-doctor")
        from tui.source import save as save_view

        if not os.path.exists(view_path):  # the snapshot tests' fixture: renewed only on purpose (delete it)
            save_view(view_path, app.snapshot, app.labels)
        await pilot.press("f", "y")
        while not (app.last_trace and app.last_trace[2].delivered):
            await pilot.pause(0.2)
        app.action_show_tab("Trace")
        await pilot.pause(0.2)
        save(app, "app-trace-delivered")
        sandbox = "vxlan1@prod@yy3"
        pinger = subprocess.Popen(["ip", "netns", "exec", f"{NAME}.yy3-vm33", "ping", "-i", "0.2", "172.21.0.1"],
                                  stdout=subprocess.DEVNULL)  # fmt: skip
        try:
            app.dispatch_line(f"capture {sandbox}")
            await pilot.pause(3)
            save(app, "app-capture")
            await pilot.press("escape")
        finally:
            pinger.terminate()
            pinger.wait()
        await pilot.resize_terminal(170, 40)  # wide: the steps beside the drawing, the path in green
        await pilot.pause(0.5)
        save(app, "app-trace-wide")


async def changes_screen(solution: tuple[str, ...]) -> None:
    """The live app's Changes view while the scenario's fix runs: what it wrote, as the netlink monitor saw it."""
    from tui.app import VxrayApp
    from tui.context import Invocation
    from tui.source import live

    app = VxrayApp(live(Invocation()))
    async with app.run_test(size=APP_SIZE) as pilot:
        while app.snapshot is None:
            await pilot.pause(0.1)
        app.action_show_tab("Changes")
        await pilot.pause(1.0)  # the monitor arms after the first snapshot
        await asyncio.to_thread(lambda: [vxray(shlex.split(line)) for line in solution])
        while app.query_one("#changes").row_count < 4:
            await pilot.pause(0.2)
        await pilot.pause(1.0)
        save(app, "app-changes")


async def remote_screen(ctx: object) -> None:
    """The app on three machines given as snapshot files (what `-H file://…` opens): one is missing, so offline."""
    import json
    from dataclasses import replace

    from backend.netns import Scope
    from backend.observe import labels_for
    from backend.remote import Reading, machine
    from tui.app import VxrayApp
    from tui.source import remote

    folder = tempfile.mkdtemp(prefix="vxshot-files-")
    machines = []
    for host in ("yy2", "yy3"):
        ns = f"{NAME}.{host}"
        snap = collect(Scope(ns, (f"{ns}-*",)), docker="none")
        labels = replace(labels_for(ctx, snap), offline={})  # type: ignore[arg-type]
        path = os.path.join(folder, f"{host}.json")
        with open(path, "w") as f:
            json.dump(Reading(snap, labels, "host").as_data(), f)
        machines.append(machine(host, f"file://{path}"))
    machines.append(machine("yy4", f"file://{folder}/yy4.json"))
    app = VxrayApp(remote(machines))
    async with app.run_test(size=APP_SIZE) as pilot:
        while len(app.badges) < 3:
            await pilot.pause(0.1)
        app.action_show_tab("Topology")
        await pilot.pause(0.5)
        save(app, "app-remote")


async def firewall_screens() -> None:
    """The overlay-nft-broken lab: a native nftables table dropping the VXLAN port, and what the app shows of it."""
    from tui.app import VxrayApp
    from tui.context import Invocation
    from tui.source import live

    app = VxrayApp(live(Invocation()), live=False)
    async with app.run_test(size=APP_SIZE) as pilot:
        while app.snapshot is None:
            await pilot.pause(0.1)
        app.host = "yy3"  # the host whose nftables tables break the overlay
        app.render_tables()
        app.action_show_tab("Firewall")
        await pilot.pause(0.5)
        save(app, "app-firewall")
        app.dispatch_line("trace vm33 vm3")
        while not app.last_trace:
            await pilot.pause(0.2)
        await pilot.pause(0.3)
        save(app, "app-trace-nft")


def save(app: object, name: str) -> None:
    path = app.save_screenshot(f"{name}.svg", os.path.join(ROOT, "screenshots"))  # type: ignore[attr-defined]
    print("wrote", os.path.relpath(path, ROOT))


def main() -> None:
    os.environ["VXRAY_HOME"] = tempfile.mkdtemp(prefix="vxshot-")
    spec, text = runner.load("overlay-static", NAME)
    ctx = runner.up(spec, text)
    try:
        for stage in ("as-built", "fixed"):
            if stage == "fixed":
                asyncio.run(changes_screen(spec.solution))
            lines = list(snapshot_lines(collect(ctx.host("yy3").scope(), docker="none"), limit=6))
            path = os.path.join(ROOT, "screenshots", f"snapshot-yy3-{stage}.svg")
            render(lines, f"vxray snapshot — host yy3, {stage}", path)
            print("wrote", os.path.relpath(path, ROOT))
            if stage == "as-built":
                graph = os.path.join(ROOT, "screenshots", "graph-overlay-static.svg")
                vxray(["graph", "--format", "svg", "--trace", "vm33", "vm3", "-o", graph])
                print("wrote", os.path.relpath(graph, ROOT))
    finally:
        runner.down(NAME)
    ctx = runner.up(spec, text)
    try:
        asyncio.run(remote_screen(ctx))
        asyncio.run(app_screens(os.path.join(ROOT, "tests", "fixtures", "overlay-static.view.json")))
    finally:
        runner.down(NAME)
    spec, text = runner.load("overlay-nft-broken", NAME)
    runner.up(spec, text)
    try:
        asyncio.run(firewall_screens())
    finally:
        runner.down(NAME)


if __name__ == "__main__":
    main()
