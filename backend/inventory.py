"""The hosts an operator saved (``vxray hosts add``), and the store that may discover more.

A TOML file, ``$VXRAY_INVENTORY`` or ``~/.config/vxray/inventory.toml``::

    store = "consul://10.193.6.1:8500"   # optional: agents registered there are offered too

    [[hosts]]
    name = "yy2"
    url = "ssh://root@10.193.6.36"

Read as a stranger's file (``backend.tomlfile``: bounded, UTF-8, every error at
its line, every URL checked as ``-H`` checks it); written by hand (names and URLs
only, quoted as JSON strings, which TOML accepts), so no TOML writer is needed.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from backend import env, remote, tomlfile
from backend.errors import VxrayError

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
    return env.path("VXRAY_INVENTORY", os.path.join(os.path.expanduser("~"), ".config", "vxray", "inventory.toml"))


def check_name(name: str) -> None:
    if not NAME.match(name):
        raise VxrayError(f"bad host name {name!r}: letters, digits, '.', '_', '-'")


def check_entry(name: str, url: str) -> None:
    """A machine as an inventory may hold it: a plain name and a URL ``remote.parse`` accepts."""
    check_name(name)
    remote.parse(url)


def load(file: str | None = None) -> Inventory:
    """The saved machines (none when there is no file yet); anything wrong names the file and the line."""
    file = file or path()
    if not os.path.lexists(file):
        return Inventory()
    return parse(tomlfile.read(file, "inventory"), file)


def parse(text: str, source: str) -> Inventory:
    doc = tomlfile.loads(text, source)
    loc = tomlfile.Locator(text, source)
    for key in doc:
        if key not in ("store", "hosts"):
            raise loc.error(None, None, key, "unknown key (an inventory has store and [[hosts]])")
    hosts = doc.get("hosts", [])
    if not isinstance(hosts, list):
        raise loc.error(None, None, "hosts", f"expected [[hosts]] tables, got {tomlfile.shown(hosts)}")
    entries = [_entry(loc, i, h) for i, h in enumerate(hosts)]
    for i, e in enumerate(entries):
        if e.name in {h.name for h in entries[:i]}:
            raise loc.error("hosts", i, "name", f"{e.name!r} is saved twice")
    return Inventory(entries, _store(loc, doc.get("store")))


def _entry(loc: tomlfile.Locator, i: int, table: object) -> Entry:
    if not isinstance(table, dict):
        raise loc.error("hosts", i, None, f"expected a table with name and url, got {tomlfile.shown(table)}")
    for key in table:
        if key not in ("name", "url"):
            raise loc.error("hosts", i, key, "unknown key (a host has name and url)")
    name, url = (_text(loc, i, table, key) for key in ("name", "url"))
    for key, value, check in (("name", name, check_name), ("url", url, remote.parse)):
        try:
            check(value)
        except VxrayError as exc:
            raise loc.error("hosts", i, key, str(exc)) from None
    return Entry(name, url)


def _text(loc: tomlfile.Locator, i: int, table: dict[str, object], key: str) -> str:
    value = table.get(key)
    if value is None:
        raise loc.error("hosts", i, None, f"missing {key!r}")
    if not isinstance(value, str):
        raise loc.error("hosts", i, key, f"expected a string, got {tomlfile.shown(value)}")
    return value


def _store(loc: tomlfile.Locator, url: object) -> str | None:
    """The cluster store that discovers more machines: checked here, opened only when discovery asks."""
    if url is None:
        return None
    if not isinstance(url, str):
        raise loc.error(None, None, "store", f"expected a store URL, got {tomlfile.shown(url)}")
    from backend.store.registry import parse_url  # the consul client is imported only by who uses a store

    try:
        parse_url(url)
    except VxrayError as exc:
        raise loc.error(None, None, "store", str(exc)) from None
    return url


def save(inv: Inventory, file: str | None = None) -> None:
    file = file or path()
    lines = [f"store = {json.dumps(inv.store)}", ""] if inv.store else []
    for h in inv.hosts:
        lines += ["[[hosts]]", f"name = {json.dumps(h.name)}", f"url = {json.dumps(h.url)}", ""]
    tmp = f"{file}.tmp"
    try:
        os.makedirs(os.path.dirname(file) or ".", exist_ok=True)
        with open(tmp, "w") as f:
            f.write("\n".join(lines))
        os.replace(tmp, file)  # a crash mid-write leaves the old file, never half of one
    except OSError as exc:
        raise VxrayError(f"cannot write the inventory {file}: {exc.strerror}") from None


def add(name: str, url: str, file: str | None = None) -> Inventory:
    """Validated before anything is written: a bad name or URL changes nothing."""
    check_entry(name, url)
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
