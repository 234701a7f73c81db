"""``host add|rm|ls``: the machines the store knows, with their VTEP addresses."""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any

from backend import validate
from backend.errors import VxrayError
from backend.hosts import NetnsHost
from backend.netns import RUN_NETNS
from backend.ops.context import Context
from backend.records import HostRecord


def add(ctx: Context, name: str, netns: str | None = None, vtep: str | None = None) -> HostRecord:
    validate.name(name, "host name")
    if netns is not None and not os.path.exists(os.path.join(RUN_NETNS, netns)):
        raise VxrayError(f"no such network namespace: {netns}")
    rec = HostRecord(name, validate.ipv4(vtep) if vtep else None, netns)
    if vtep:
        with NetnsHost(rec).ipr() as ipr:
            if not ipr.get_addr(address=rec.vtep):
                raise VxrayError(f"VTEP address {vtep} is on none of host {name}'s devices")
    ctx.store.add_host(rec)
    return rec


def remove(ctx: Context, name: str) -> None:
    if ctx.store.host(name) is None:
        raise VxrayError(f"unknown host {name!r}")
    busy = sorted(c.name for c in ctx.store.containers() if c.host == name)
    if busy:
        raise VxrayError(f"host {name} still has containers ({', '.join(busy)})")
    ctx.store.remove_host(name)


def host_list(ctx: Context) -> list[dict[str, Any]]:
    return [asdict(h) for h in sorted(ctx.store.hosts(), key=lambda h: h.name)]
