"""Set a trace's steps against what a real probe was seen doing.

A step that names a device (``Step.dev``) is one a capture can confirm: the
packet should be seen there if, and only if, the simulation says it gets that
far. Decision steps (route, filter, sysctl …) have no device and are not
compared. The first step where simulation and datapath part ways is the one to
look at: either the kernel does something the model does not know, or the
state changed between the snapshot and the probe.
"""

from __future__ import annotations

from dataclasses import dataclass

from diagnostics.trace import Step, Trace


@dataclass(frozen=True)
class LiveStep:
    step: Step
    expected: bool | None  # None: not observable
    seen: bool | None

    @property
    def agrees(self) -> bool:
        return self.expected is None or self.expected == self.seen


def compare(
    t: Trace, seen: set[tuple[str, str, str]], directions: tuple[str, ...] = ("request", "reply")
) -> list[LiveStep]:
    rows = []
    for i, s in enumerate(t.steps):
        if not s.dev or s.direction not in directions:
            rows.append(LiveStep(s, None, None))
            continue
        expected = s.ok and (t.failed_step is None or i < t.failed_step)
        rows.append(LiveStep(s, expected, (s.netns, s.dev, s.direction) in seen))
    return rows


def first_disagreement(rows: list[LiveStep]) -> int | None:
    return next((i for i, r in enumerate(rows) if not r.agrees), None)


def watch_points(t: Trace) -> list[tuple[str, str]]:
    return sorted({(s.netns, s.dev) for s in t.steps if s.dev})
