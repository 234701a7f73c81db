"""Regenerate the pictures in this folder from a real demo lab.

    sudo /opt/vxray-venv/bin/python screenshots/make.py

Builds the field notes' overlay in ``vxshot-*`` namespaces, renders
``vxray snapshot`` of host yy3 before and after the static FDB/ARP fix as SVG,
and removes the namespaces again.
"""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from rich.console import Console  # noqa: E402
from rich.text import Text  # noqa: E402

from backend import demo  # noqa: E402
from backend.collect import collect  # noqa: E402
from tui.summary import snapshot_lines  # noqa: E402

PREFIX = "vxshot-"


def render(lines: list[str], title: str, path: str) -> None:
    console = Console(record=True, width=132, file=open(os.devnull, "w"))  # noqa: SIM115
    for line in lines:
        style = "bold cyan" if line.startswith("==") else "bold" if not line.startswith("    ") else ""
        console.print(Text(line, style=style), overflow="ellipsis", no_wrap=True, crop=True)
    console.save_svg(path, title=title)


def fix(prefix: str) -> None:
    """The notes' repair: ``bridge fdb add … dst`` in each sandbox, ``arp -s`` in each container."""
    for here, there in (("yy2", "yy3"), ("yy3", "yy2")):
        remote_ip, _, remote_cip, remote_mac = demo.HOSTS[there]
        sandbox = demo.netns_name(here, f"1-{demo.NETID}", prefix)
        container = demo.netns_name(here, demo.HOSTS[here][1], prefix)
        subprocess.run(["ip", "netns", "exec", sandbox, "bridge", "fdb", "add", remote_mac, "dev", "vxlan1",
                        "dst", remote_ip], check=True)  # fmt: skip
        subprocess.run(["ip", "-n", container, "neigh", "replace", remote_cip, "lladdr", remote_mac, "dev", "eth0",
                        "nud", "permanent"], check=True)  # fmt: skip


def main() -> None:
    demo.up(PREFIX)
    try:
        for stage in ("as-built", "fixed"):
            if stage == "fixed":
                fix(PREFIX)
            lines = list(snapshot_lines(collect(demo.scope("yy3", PREFIX), docker="none"), limit=6))
            path = os.path.join(ROOT, "screenshots", f"snapshot-yy3-{stage}.svg")
            render(lines, f"vxray snapshot — host yy3, {stage}", path)
            print("wrote", os.path.relpath(path, ROOT))
    finally:
        demo.down(PREFIX)


if __name__ == "__main__":
    main()
