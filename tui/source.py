"""Where the app's data comes from: the current context (live, watched), or a saved file (fixed).

A saved view — a snapshot and the store's labels in one JSON file — makes the
app's screens reproducible: snapshot tests and screenshots render it without a
kernel, and an operator can open what a colleague captured.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from backend import codec
from backend.fleet import Fleet
from backend.model import HostSnapshot, Labels
from backend.netns import Scope
from backend.ops.context import Context
from backend.remote import Machine
from tui.context import Invocation


@dataclass
class Source:
    read: Callable[..., tuple[HostSnapshot, Labels]]  # (previous, changed) narrow a re-read to what changed
    scope: Callable[[], Scope] | None = None  # what the monitor watches; None: nothing changes (a file)
    name: str = ""
    context: Callable[[], Context] | None = None  # the store, for names and the doctor; None: a saved view
    # remote machines: blocks until stopped(), calling changed() whenever read() would return something new
    follow: Callable[[Callable[[], None], Callable[[], bool]], None] | None = None
    flags: list[str] = field(default_factory=list)  # global flags the app's commands run with (--host …)


def remote(machines: list[Machine], read_only: bool = False) -> Source:
    """Machines over SSH or from files, each followed by its own thread (``backend.fleet``)."""
    fleet = Fleet(machines)

    def follow(changed: Callable[[], None], stopped: Callable[[], bool]) -> None:
        fleet.changed = changed
        fleet.start()
        try:
            while not stopped():
                time.sleep(0.2)
        finally:
            fleet.stop()

    flags = [f for m in machines for f in ("--host", f"{m.name}={m.address.url}")] + (
        ["--read-only"] if read_only else []
    )
    return Source(lambda *_: fleet.view(), None, ", ".join(m.name for m in machines), None, follow, flags)


def live(inv: Invocation) -> Source:
    """The current lab (or store) as the shell and the CLI see it."""
    from backend.observe import observe, scope_of

    def read(previous: HostSnapshot | None = None, changed: set[str] | None = None) -> tuple[HostSnapshot, Labels]:
        ctx, underlay = inv.current()
        return observe(ctx, underlay, previous, changed)

    def scope() -> Scope:
        ctx, underlay = inv.current()
        return scope_of(ctx, underlay)

    underlay = inv.current()[1]
    name = f"lab {underlay.removesuffix('.ul')}" if underlay else "local machine"
    return Source(read, scope, name, inv.context, flags=inv.flags())


def save(path: str, snap: HostSnapshot, labels: Labels) -> None:
    with open(path, "wb") as f:
        f.write(codec.dump_view(codec.View(snap, labels)))


def from_file(path: str) -> Source:
    view = codec.load_view(codec.read_file(path), path)
    return Source(lambda *_: (view.snapshot, view.labels), None, os.path.basename(path))
