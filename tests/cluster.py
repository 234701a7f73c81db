"""Two vxray hosts in namespaces on one underlay bridge, sharing a file store: what the operations tests drive."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tui.cli import main

from conftest import Lab


@dataclass
class Cluster:
    lab: Lab
    store: str
    ns: dict[str, str]

    @classmethod
    def build(cls, lab: Lab, tmp_path: Path, vteps: dict[str, str]) -> Cluster:
        """One namespace per host (its ``eth0`` on the underlay bridge with its VTEP address), added to the store."""
        underlay = lab.netns("ul")
        lab.ip(underlay, "link", "add", "ul0", "type", "bridge")
        lab.ip(underlay, "link", "set", "ul0", "up")
        ns = {}
        for host, vtep in vteps.items():
            ns[host] = lab.netns(host)
            lab.veth(ns[host], "eth0", underlay, f"ul-{host}")
            lab.ip(underlay, "link", "set", f"ul-{host}", "master", "ul0")
            lab.ip(ns[host], "addr", "add", f"{vtep}/24", "dev", "eth0")
        c = cls(lab, f"file://{tmp_path}/store.db", ns)
        for host, vtep in vteps.items():
            c.ok("host", "add", host, "--netns", ns[host], "--vtep", vtep)
        return c

    def vx(self, *args: str) -> int:
        return main(["--store", self.store, *args])

    def ok(self, *args: str) -> None:
        assert self.vx(*args) == 0, f"vxray {' '.join(args)} failed"

    def ctr(self, host: str, name: str) -> str:
        return f"{self.ns[host]}-{name}"

    def ping(self, netns: str, ip: str) -> bool:
        """ping picks ICMPv6 by itself for an IPv6 address, as ``ping -6`` does."""
        return self.lab.run(netns, "ping", "-c", "3", "-i", "0.2", "-W", "1", ip, check=False).returncode == 0

    def sandbox(self, host: str) -> str:
        """The overlay sandbox namespace of ``host`` (the first, when several)."""
        return next(n for n in os.listdir("/run/netns") if n.startswith(f"{self.ns[host]}-1-"))
