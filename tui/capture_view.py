"""The app's capture panel: packets on devices as they come, one line each, VXLAN decoded.

``c`` on a link, a bridge port, a veth end or a trace step opens it (``:capture DEV… [FILTER]`` too); a thread
worker reads the devices' packet sockets (``backend.capture``) and hands the
lines to the screen; ``w`` writes what it holds to a pcapng file in the current
directory and ``o`` opens that file in termshark, the app suspended meanwhile
(Textual's ``App.suspend``); Esc stops the capture and closes the panel.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import threading
import time
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, RichLog, Static
from textual.worker import get_current_worker

from backend.capture import Packet, Point, Session
from backend.errors import VxrayError, one_line
from backend.pcapng import INBOUND, OUTBOUND, Writer
from diagnostics.devices import Target
from tui.capture import line

KEPT = 200_000  # frames held for `w`: the newest, so a long capture does not grow without bound
SHOWN = 200  # lines added per batch: a flood scrolls by, the file (`w`) has every frame kept


class CaptureScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("w", "save", "Save", tooltip="write the frames captured so far to a pcapng file here"),
        Binding("o", "open", "termshark", tooltip="save, then open the file in termshark (the app waits)"),
        Binding("escape,q", "close", "Stop", tooltip="stop the capture and close the panel"),
    ]

    def __init__(self, targets: list[Target], points: list[Point], expression: str = "") -> None:
        super().__init__()
        self.targets, self.points, self.expression = targets, points, expression
        self.frames: collections.deque[Packet] = collections.deque(maxlen=KEPT)
        self.lock = threading.Lock()
        self.linktypes = [1] * len(points)

    def compose(self) -> ComposeResult:
        what = self.targets[0].description if len(self.targets) == 1 else ", ".join(t.name for t in self.targets)
        how = f", filter {self.expression!r}" if self.expression else ""
        yield Static(f"capturing on {what}{how} — w: save, o: termshark, Esc: stop", id="capture-title")
        yield RichLog(id="capture-log", max_lines=5000, wrap=False)
        yield Footer()

    def on_mount(self) -> None:
        self.capture()

    @work(thread=True, exclusive=True, group="capture", exit_on_error=False)
    def capture(self) -> None:
        worker = get_current_worker()
        try:
            session = Session(self.points, self.expression)
        except VxrayError as exc:
            self.app.call_from_thread(self.say, f"vxray: {one_line(exc)}")
            return
        self.linktypes = [tap.linktype for tap in session.taps]
        try:
            while not worker.is_cancelled:
                frames = session.read(0.2)
                if not frames:
                    continue
                with self.lock:
                    self.frames.extend(frames)
                shown = [line(self.targets[p.interface].name, p, self.linktypes[p.interface]) for p in frames[-SHOWN:]]
                skipped = len(frames) - len(shown)
                self.app.call_from_thread(self.say, *([f"… {skipped} more"] if skipped else []), *shown)
        finally:
            session.close()

    def say(self, *lines: str) -> None:
        log = self.query_one("#capture-log", RichLog)
        for text in lines:
            log.write(text)

    def action_save(self) -> str | None:
        """The frames so far, into ``vxray-DEV-YYYYmmdd-HHMMSS.pcapng`` in the current directory."""
        with self.lock:
            frames = list(self.frames)
        path = os.path.abspath(f"vxray-{self.points[0].dev}-{time.strftime('%Y%m%d-%H%M%S')}.pcapng")
        try:
            with open(path, "wb") as out:
                writer = Writer(out)
                for t, linktype in zip(self.targets, self.linktypes, strict=True):
                    writer.interface(t.name, t.description, linktype)
                for p in frames:
                    writer.packet(p.interface, p.ts_ns, p.data, p.orig_len, OUTBOUND if p.outgoing else INBOUND)
        except OSError as exc:
            self.notify(f"cannot write {path}: {exc.strerror}", severity="error")
            return None
        self.notify(f"{len(frames)} frames saved to {path}")
        return path

    def action_open(self) -> None:
        """termshark on the saved file, the app suspended until it quits."""
        if shutil.which("termshark") is None:
            self.notify("termshark is not installed (apt-get install termshark); `w` saves the file", severity="error")
            return
        path = self.action_save()
        if path is None:
            return
        with self.app.suspend():
            subprocess.run(["termshark", "-r", path], check=False)

    def action_close(self) -> None:
        self.workers.cancel_group(self, "capture")
        self.app.pop_screen()
