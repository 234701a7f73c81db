"""Regenerate the pictures in this folder from a real lab.

    sudo /opt/vxray-venv/bin/python screenshots/make.py

Builds the overlay-static lab (the field notes' overlay) under the name
``vxshot`` in a scratch state directory, renders ``vxray snapshot`` of host yy3
before and after the notes' static FDB/ARP fix as SVG, and removes the lab.
"""

from __future__ import annotations

import os
import shlex
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


def main() -> None:
    os.environ["VXRAY_HOME"] = tempfile.mkdtemp(prefix="vxshot-")
    spec, text = runner.load("overlay-static", NAME)
    ctx = runner.up(spec, text)
    try:
        for stage in ("as-built", "fixed"):
            if stage == "fixed":
                for line in spec.solution:
                    vxray(shlex.split(line))
            lines = list(snapshot_lines(collect(ctx.host("yy3").scope(), docker="none"), limit=6))
            path = os.path.join(ROOT, "screenshots", f"snapshot-yy3-{stage}.svg")
            render(lines, f"vxray snapshot — host yy3, {stage}", path)
            print("wrote", os.path.relpath(path, ROOT))
    finally:
        runner.down(NAME)


if __name__ == "__main__":
    main()
