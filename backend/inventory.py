"""The hosts an operator saved (``vxray hosts add``), and the store that may discover more.

A TOML file, ``$VXRAY_INVENTORY`` or ``~/.config/vxray/inventory.toml``::

    store = "consul://10.193.6.1:8500"   # optional: agents registered there are offered too

    [[hosts]]
    name = "yy2"
    url = "ssh://root@10.193.6.36"

Read with ``tomllib``; written by hand (names and URLs only, quoted as JSON
strings, which TOML accepts), so no TOML writer is needed.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field

from backend.errors import VxrayError
from backend.remote import parse

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class Entry:
    name: str
    url: str
    source: str = "inventory"  # or "consul": discovered, not saved


@dataclass
class Inventory:
    hosts: list[Entry] = field(default_factory=list)
    store: str | None = None

    def find(self, name: str) -> Entry | None:
        return next((h for h in self.hosts if h.name == name), None)


def path() -> str:
    return os.environ.get("VXRAY_INVENTORY") or os.path.join(os.path.expanduser("~"), ".config", "vxray",
                                                             "inventory.toml")  # fmt: skip


def load(file: str | None = None) -> Inventory:
    file = file or path()
    try:
        with open(file, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return Inventory()
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise VxrayError(f"cannot read the inventory {file}: {exc}") from None
    try:
        hosts = [Entry(str(h["name"]), str(h["url"])) for h in data.get("hosts", [])]
    except (KeyError, TypeError):
        raise VxrayError(f"bad inventory {file}: every [[hosts]] needs name and url") from None
    return Inventory(hosts, data.get("store"))


def save(inv: Inventory, file: str | None = None) -> None:
    file = file or path()
    os.makedirs(os.path.dirname(file) or ".", exist_ok=True)
    lines = [f"store = {json.dumps(inv.store)}", ""] if inv.store else []
    for h in inv.hosts:
        lines += ["[[hosts]]", f"name = {json.dumps(h.name)}", f"url = {json.dumps(h.url)}", ""]
    tmp = f"{file}.tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines))
    os.replace(tmp, file)  # a crash mid-write leaves the old file, never half of one


def add(name: str, url: str, file: str | None = None) -> Inventory:
    """Validated before anything is written: a bad name or URL changes nothing."""
    if not NAME.match(name):
        raise VxrayError(f"bad host name {name!r}: letters, digits, '.', '_', '-'")
    parse(url)
    inv = load(file)
    if inv.find(name):
        raise VxrayError(f"host {name} is already in the inventory (`vxray hosts rm {name}` first)")
    inv.hosts.append(Entry(name, url))
    save(inv, file)
    return inv


def remove(name: str, file: str | None = None) -> Inventory:
    inv = load(file)
    if not inv.find(name):
        raise VxrayError(f"no host {name!r} in the inventory {file or path()}")
    inv.hosts = [h for h in inv.hosts if h.name != name]
    save(inv, file)
    return inv
