"""Wake up when the kernel changes a link, address, route, neighbour or FDB entry in a scope.

The app must show a kernel change within a second without polling: one netlink
socket per namespace, subscribed to the link, neighbour (FDB entries arrive
there too), address and route groups, and one ``select`` over all of them. The
thread waiting costs nothing while nothing changes. Namespaces created later
are picked up when the caller builds a new monitor after its next snapshot.
"""

from __future__ import annotations

import select
import socket

from backend import nsenter
from backend.netlink import NETLINK_ROUTE
from backend.netns import Scope, discover

RTMGRP_LINK, RTMGRP_NEIGH, RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE = 0x1, 0x4, 0x10, 0x40
GROUPS = RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE


class Monitor:
    def __init__(self, scope: Scope) -> None:
        handles, _notes = discover(scope)
        self.socks: dict[socket.socket, str] = {}
        try:
            for h in handles:
                with nsenter.netns(h.fd):
                    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
                sock.bind((0, GROUPS))
                sock.setblocking(False)
                self.socks[sock] = h.name
        finally:
            for h in handles:
                h.close()

    def wait(self, timeout: float | None) -> set[str]:
        """Block until something changes (or ``timeout``); the namespaces that changed, drained."""
        ready, _, _ = select.select(list(self.socks), [], [], timeout)
        changed = set()
        for sock in ready:
            changed.add(self.socks[sock])
            while True:
                try:
                    sock.recv(65536)
                except (BlockingIOError, OSError):
                    break
        return changed

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.socks.clear()
