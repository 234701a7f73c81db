"""``vxray trace`` as a short story an operator can follow: one line per table consulted."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only types: the commands that print no trace start without the diagnostics
    from diagnostics.trace import Fix, Trace

ENTRY_WIDTH = 52


def trace_lines(t: Trace, names: dict[str, str], header: str) -> list[str]:
    """``names``: namespace label -> what to call it (the container's name)."""
    where = [names.get(s.netns, s.netns) for s in t.steps]
    w_host = max((len(s.host) for s in t.steps), default=0)
    w_ns = min(max((len(n) for n in where), default=0), 30)
    w_table = max((len(s.table) for s in t.steps), default=0)
    lines, direction = [header], ""
    for i, (s, ns) in enumerate(zip(t.steps, where, strict=True), 1):
        if s.direction != direction:
            direction = s.direction
            lines.append(f" {direction}")
        entry = s.entry if len(s.entry) <= ENTRY_WIDTH else s.entry[: ENTRY_WIDTH - 1] + "…"
        mark = "  " if s.ok else "✗ "
        lines.append(f"{i:3}  {s.host:<{w_host}}  {ns[-w_ns:]:<{w_ns}}  {s.table:<{w_table}}  "
                     f"{entry:<{ENTRY_WIDTH}}  {mark}{s.decision}")  # fmt: skip
    if t.delivered:
        return [*lines, "DELIVERED: the packet and its reply get through."]
    if t.failed_step is None:
        return [*lines, "DROPPED"]
    s = t.steps[t.failed_step]
    lines.append(f"DROPPED at step {t.failed_step + 1} ({s.direction}; host {s.host}, {where[t.failed_step]}): "
                 f"{s.decision}")  # fmt: skip
    return [*lines, *(f"  {line}" for line in fix_lines(s.fix))] if s.fix is not None else lines


def fix_lines(fix: Fix) -> list[str]:
    """A fix as every view prints it, from its argv: the vxray command (or, when vxray has none, what it
    lacks, so nobody pastes a guess), then the native one. The first line alone is the fix in a sentence."""
    first = f"fix: {fix.vxray_line}" if fix.runnable else f"fix: none runnable — {fix.missing}"
    return [first, f"or:  {fix.native_line}"] if fix.native else [first]
