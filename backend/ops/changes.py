"""One kernel change to an FDB or neighbour table, with the iproute2 command an operator would type.

Shared by the store's overlays (``entries``) and Docker's (``docker_overlay``): both end
in the same netlink requests, in a named namespace or a bind-mounted one (Docker's).
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from typing import Any

from pyroute2 import NetlinkError

from backend.errors import VxrayError
from backend.hosts import Host, index_of
from backend.shellwords import shell_line

NUD_NOARP, NUD_PERMANENT = 0x40, 0x80
NTF_SELF = 0x02  # the VXLAN device's own table, where dst lives (not the bridge's: that is "master")
FLOOD_MAC = "00:00:00:00:00:00"


@dataclass(frozen=True)
class Change:
    """One kernel change, with the iproute2 command an operator would type for it."""

    host: str
    netns: str | None
    kind: str  # fdb | neigh
    action: str  # add | del | replace | append
    mac: str
    dev: str
    dst: str | None = None  # fdb: the remote VTEP
    ip: str | None = None  # neigh: the address, IPv4 (ARP) or IPv6 (NDP)

    @property
    def ipv6(self) -> bool:
        return ":" in (self.ip or "")

    @property
    def command(self) -> str:
        """Every word quoted: device names come from the kernel, and the kernel accepts ``p$(id)``."""
        if self.netns is None:
            where: list[str] = []
        elif self.netns.startswith("/"):  # Docker's sandboxes and containers: a bind mount, not a netns name
            where = ["nsenter", f"--net={self.netns}"]
        else:
            where = ["ip", "netns", "exec", self.netns]
        if self.kind == "fdb":
            words = ["bridge", "fdb", self.action, self.mac, "dev", self.dev, "dst", self.dst or ""]
        else:
            ip = ["ip", "-6", "neigh"] if self.ipv6 else ["ip", "neigh"]
            if self.action == "del":
                words = [*ip, "del", self.ip or "", "dev", self.dev]
            else:
                words = [*ip, self.action, self.ip or "", "lladdr", self.mac, "dev", self.dev, "nud", "permanent"]
        return shell_line(*where, *words)

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "netns": self.netns, "kind": self.kind, "action": self.action, "mac": self.mac,
                "dev": self.dev, "dst": self.dst, "ip": self.ip, "command": self.command}  # fmt: skip


def apply(h: Host, change: Change) -> None:
    where = change.netns or f"host {h.name}"
    with h.ipr(change.netns) as ipr:
        idx = index_of(ipr, change.dev, where)
        try:
            if change.kind == "fdb":
                ipr.fdb(change.action, ifindex=idx, lladdr=change.mac, dst=change.dst, flags=NTF_SELF,
                        state=NUD_NOARP | NUD_PERMANENT)  # fmt: skip
            else:
                state = {} if change.action == "del" else {"state": NUD_PERMANENT}
                family = socket.AF_INET6 if change.ipv6 else socket.AF_INET
                ipr.neigh(change.action, dst=change.ip, lladdr=change.mac, ifindex=idx, family=family, **state)
        except NetlinkError as exc:
            what = f"{change.kind} entry {change.mac} dev {change.dev} in {where}"
            if exc.code == errno.EEXIST:
                raise VxrayError(f"{what} already exists") from None
            if exc.code == errno.ENOENT:
                raise VxrayError(f"{what}: no such entry") from None
            raise VxrayError(f"{what}: {exc.args[1] if len(exc.args) > 1 else exc}") from None
