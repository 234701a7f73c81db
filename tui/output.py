"""What commands print: tables, JSON, the doctor's findings, the names a trace calls namespaces by.

Every door prints the same way (bash, the shell, the app's log pane, an agent's
operation), so the formatting lives here once, below the commands.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, is_dataclass
from typing import TYPE_CHECKING, Any

from tui.trace_text import fix_lines

if TYPE_CHECKING:
    from diagnostics.doctor import Finding
    from diagnostics.world import World


def emit(args: argparse.Namespace, data: Any, text: str) -> int:
    if getattr(args, "json", False):
        print(json.dumps(asdict(data) if is_dataclass(data) else data, indent=2))
    elif text:
        print(text)
    return 0


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    """A table cell: ``-`` for nothing, a list (a dual-stack network's IPv6 subnets) as its items."""
    if value is None:
        return "-"
    return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def write_json(data: bytes) -> None:
    """Bytes straight to stdout: an 8 MB snapshot is not decoded to ``str`` only to be encoded again."""
    sys.stdout.flush()
    sys.stdout.buffer.write(data + b"\n")
    sys.stdout.buffer.flush()


def names(world: World) -> dict[str, str]:
    """What to call each namespace in a trace: its container, its overlay's sandbox, its host."""
    return {
        **{ns: f"{net} sandbox" for ns, net in world.labels.networks.items()},
        **{ns: f"{h} (host)" for h, ns in world.labels.host_netns.items()},
        **world.labels.containers,
    }


def doctor_lines(findings: list[Finding]) -> list[str]:
    """Findings as the doctor prints them."""
    lines = []
    for i, f in enumerate(findings, 1):
        lines.append(f"{i:2}. [{f.likelihood:.0%}] {f.host}: {f.title}")
        lines += [f"      evidence: {e}" for e in f.evidence]
        lines += [f"      {line}" for line in fix_lines(f.fix)] if f.fix else []
    return lines
