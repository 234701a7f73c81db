"""``show links|bridges|veths|vxlan|fdb|neigh|routes|firewall|netns [dev DEV] [netns NS] [TEXT]``: the app's tables.

The rows are the app's own (``tui.tables``), printed as text. ``dev`` keeps the
rows of one device, ``netns`` those of one namespace (its name, or what the
tables call it: a container, ``prod sandbox``); any other word keeps rows
containing it (``show neigh 172.21.`` lists the overlay's neighbours).
"""

from __future__ import annotations

from backend.errors import VxrayError
from backend.model import HostSnapshot, Labels
from tui.tables import VIEWS, rows

VIEW_OF = {"links": "Links", "bridges": "Bridges", "veths": "Veths", "vxlan": "VXLAN", "fdb": "FDB",
           "neigh": "Neighbours", "routes": "Routes", "firewall": "Firewall", "netns": "Namespaces"}  # fmt: skip
TABLES = tuple(VIEW_OF)
VIEW_OF["nat"] = "Firewall"  # the view's name before it held nftables too: still understood, no longer offered
DEVICE_COLUMNS = ("link", "port", "end", "device")
WIDEST = 48


def show(snap: HostSnapshot, labels: Labels, words: list[str], host: str | None = None) -> list[str]:
    """The table ``words[0]`` for the host in use (or every host), filtered by the rest."""
    if not words or words[0] not in VIEW_OF:
        raise VxrayError(f"show what? one of {', '.join(TABLES)}" + (f" (not {words[0]!r})" if words else ""))
    view, rest = VIEW_OF[words[0]], words[1:]
    dev = netns = None
    text: list[str] = []
    i = 0
    while i < len(rest):
        if rest[i] in ("dev", "netns") and i + 1 < len(rest):
            dev, netns = (rest[i + 1], netns) if rest[i] == "dev" else (dev, rest[i + 1])
            i += 2
            continue
        text.append(rest[i])
        i += 1
    columns = VIEWS[view]
    device = next((columns.index(c) for c in DEVICE_COLUMNS if c in columns), None)
    ns_id = next((ns.id for ns in snap.namespaces if ns.name == netns), None)
    kept = [
        cells for key, cells in rows(snap, labels, view, host)
        if (dev is None or (device is not None and cells[device] == dev))
        and (netns is None or cells[0] == netns or key.split("/")[0] == ns_id)
        and all(any(t in c for c in cells) for t in text)
    ]  # fmt: skip
    if not kept:
        return ["(no rows)"]
    widths = [min(WIDEST, max(len(r[c]) for r in [columns, *kept])) for c in range(len(columns))]
    return ["  ".join(cell[:WIDEST].ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
            for r in [columns, *kept]]  # fmt: skip
