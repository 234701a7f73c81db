"""The app's main screens rendered from a saved view (no kernel needed): rendering regressions show as SVG diffs.

The view file is the overlay-static lab as ``screenshots/make.py`` saved it; the
baselines live in ``tests/__snapshots__`` (``pytest --snapshot-update`` renews them).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from backend.model import FdbEntry, HostSnapshot, Namespace
from diagnostics.diff import diff
from tui.app import VxrayApp
from tui.messages import KernelChanged
from tui.source import from_file

VIEW = Path(__file__).parent / "fixtures" / "overlay-static.view.json"
SIZE = (120, 34)


def _app() -> VxrayApp:
    return VxrayApp(from_file(str(VIEW)))


def _on(tab: str, line: str | None = None) -> Any:
    async def run_before(pilot: Pilot[None]) -> None:
        app: VxrayApp = pilot.app  # type: ignore[assignment]
        while app.snapshot is None:
            await pilot.pause(0.05)
        if line:
            app.dispatch_line(line)
        app.action_show_tab(tab)
        await app.workers.wait_for_complete()  # the trace and the doctor are computed in workers
        await pilot.pause(0.2)

    return run_before


@pytest.mark.parametrize("tab", ["Topology", "Links", "Bridges", "VXLAN", "FDB", "Neighbours", "Firewall"])
def test_view_renders_the_saved_lab(tab: str, snap_compare: Any) -> None:
    assert snap_compare(_app(), terminal_size=SIZE, run_before=_on(tab))


def test_trace_view_shows_the_failing_step_in_red(snap_compare: Any) -> None:
    assert snap_compare(_app(), terminal_size=SIZE, run_before=_on("Trace", "trace vm33 vm3"))


def test_doctor_view_lists_the_findings(snap_compare: Any) -> None:
    assert snap_compare(_app(), terminal_size=SIZE, run_before=_on("Doctor"))


def test_changes_view_lists_the_kernel_changes_newest_first(snap_compare: Any) -> None:
    """The changes the monitor reported (here: the saved lab, then the same with vm33's MTU lowered and an FDB
    entry added in yy3's sandbox, as one wake-up), at a fixed local time."""
    view = from_file(str(VIEW)).read()[0]
    changed = _changed(view)
    at = time.mktime((2026, 1, 1, 3, 0, 0, 0, 0, -1))

    async def run_before(pilot: Pilot[None]) -> None:
        app: VxrayApp = pilot.app  # type: ignore[assignment]
        while app.snapshot is None:
            await pilot.pause(0.05)
        app.post_message(KernelChanged(diff(view, changed, app.labels), at))
        await _on("Changes")(pilot)

    assert snap_compare(_app(), terminal_size=SIZE, run_before=run_before)


def _changed(snap: HostSnapshot) -> HostSnapshot:
    def edit(ns: Namespace) -> Namespace:
        if ns.name.endswith("-vm33"):
            return replace(ns, links=tuple(replace(lk, mtu=1400) if lk.name == "eth0" else lk for lk in ns.links))
        if ns.name == "vxshot.yy3-1-415cb1946c":
            return replace(ns, fdb=(*ns.fdb, FdbEntry("02:42:ac:15:00:01", "vxlan1", dst="10.193.6.36",
                                                      state="permanent")))  # fmt: skip
        return ns

    return replace(snap, namespaces=tuple(edit(ns) for ns in snap.namespaces))


def test_the_app_fits_an_80_by_24_terminal(snap_compare: Any) -> None:
    assert snap_compare(_app(), terminal_size=(80, 24), run_before=_on("Links"))


def test_the_light_theme_renders_the_topology(snap_compare: Any) -> None:
    async def light(pilot: Pilot[None]) -> None:
        pilot.app.theme = "textual-light"
        await _on("Topology")(pilot)

    assert snap_compare(_app(), terminal_size=SIZE, run_before=light)
