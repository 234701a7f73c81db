"""``host add|rm|ls|set``: the machines the store knows, and the host settings overlays depend on.

``host set`` changes what a host decides about forwarded and tunnelled packets —
the usual culprits when containers on two hosts cannot ping each other:
``ip_forward``, ``rp_filter``, the FORWARD policy, an INPUT rule dropping VXLAN's
UDP port, a device's MTU. Every value is validated before anything changes, and
a failure half-way undoes what was already set.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any

from backend import validate
from backend.errors import VxrayError
from backend.hosts import Host, NetnsHost, index_of
from backend.netns import RUN_NETNS
from backend.ops.context import Context
from backend.ops.rules import Rules
from backend.ops.txn import Undo
from backend.records import HostRecord
from backend.shellwords import shell_line

SETTINGS = ("ip_forward=0|1", "ip6_forward=0|1", "rp_filter=0|1|2", "forward_policy=ACCEPT|DROP",
            "udp.PORT=drop|accept", "mtu.DEV=N")  # fmt: skip


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


def _drop_rule(port: int) -> list[str]:
    return ["-p", "udp", "--dport", str(port), "-j", "DROP"]


def _parse_setting(item: str) -> tuple[str, str, str | int]:
    """``KEY=VALUE`` -> (kind, argument, value), or a one-line error naming the bad part."""
    key, eq, value = item.partition("=")
    if not eq:
        raise VxrayError(f"invalid setting {item!r}: KEY=VALUE, one of {', '.join(SETTINGS)}")
    if key in SYSCTLS:
        allowed = ("0", "1", "2") if key == "rp_filter" else ("0", "1")
        if value not in allowed:
            raise VxrayError(f"invalid {key} {value!r}: {' or '.join(allowed)}")
        return "sysctl", key, value
    if key == "forward_policy":
        if value.upper() not in ("ACCEPT", "DROP"):
            raise VxrayError(f"invalid forward_policy {value!r}: ACCEPT or DROP")
        return "policy", "FORWARD", value.upper()
    kind, dot, arg = key.partition(".")
    if dot and kind == "udp":
        if value not in ("drop", "accept"):
            raise VxrayError(f"invalid {key} {value!r}: drop or accept")
        return "udp", str(validate.port(arg)), value
    if dot and kind == "mtu":
        return "mtu", validate.ifname(arg), validate.mtu(value)
    raise VxrayError(f"unknown setting {key!r}: one of {', '.join(SETTINGS)}")


SYSCTLS = {  # setting -> its sysctl; ip6_forward: dual-stack bridges route IPv6 only with it
    "ip_forward": "net.ipv4.ip_forward",
    "ip6_forward": "net.ipv6.conf.all.forwarding",
    "rp_filter": "net.ipv4.conf.all.rp_filter",
}


def _sysctl_path(key: str) -> str:
    return "/proc/sys/" + SYSCTLS[key].replace(".", "/")


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def set_(ctx: Context, name: str, items: list[str]) -> list[str]:
    """Apply ``KEY=VALUE`` settings on host ``name``; what changed, as the commands an operator would type."""
    if not items:
        raise VxrayError(f"host set needs KEY=VALUE: one of {', '.join(SETTINGS)}")
    h = ctx.host(name)
    parsed = [(item, *_parse_setting(item)) for item in items]
    for _item, kind, arg, _value in parsed:
        if kind == "mtu":
            with h.ipr() as ipr:
                index_of(ipr, str(arg), f"host {h.name}")
    done = []
    with Undo() as undo:
        for item, kind, arg, value in parsed:
            done.append(_apply(h, kind, str(arg), value, undo) or f"{item} (already)")
    return done


def _apply(h: Host, kind: str, arg: str, value: str | int, undo: Undo) -> str | None:
    """One setting; the equivalent command, or None when the host already had it."""
    if kind == "sysctl":
        path = _sysctl_path(arg)
        old = h.call_in(lambda: _read(path))
        if old == value:
            return None
        h.call_in(lambda: _write(path, str(value)))
        undo.push(lambda: h.call_in(lambda: _write(path, old)))
        return shell_line("sysctl", "-w", f"{SYSCTLS[arg]}={value}")
    rules = Rules(h, undo)
    if kind == "policy":
        if rules.policy("filter", arg) == value:
            return None
        rules.set_policy("filter", arg, str(value))
        return shell_line(rules.cmd, "-P", arg, str(value))
    if kind == "udp":
        spec = _drop_rule(int(arg))
        if (value == "drop") == rules.exists("filter", "INPUT", spec):
            return None
        if value == "drop":
            rules.add("filter", "INPUT", spec, insert=True)
            return shell_line(rules.cmd, "-I", "INPUT", *spec)
        rules.delete("filter", "INPUT", spec)
        return shell_line(rules.cmd, "-D", "INPUT", *spec)
    with h.ipr() as ipr:
        idx = index_of(ipr, arg, f"host {h.name}")
        old = ipr.get_links(idx)[0].get("mtu")
        if old == value:
            return None
        ipr.link("set", index=idx, mtu=value)
        undo.push(lambda: _set_mtu(h, arg, old))
    return shell_line("ip", "link", "set", arg, "mtu", str(value))


def _set_mtu(h: Host, ifname: str, mtu: int) -> None:
    with h.ipr() as ipr:
        ipr.link("set", index=index_of(ipr, ifname, f"host {h.name}"), mtu=mtu)


def enable_forwarding(h: Host, undo: Undo, ipv6: bool = False) -> None:
    """Containers behind a bridge reach other hosts only if the host forwards (Docker and flannel set it too);
    ``ipv6``: IPv6 forwarding as well, for a dual-stack bridge (Docker sets it when a network has IPv6)."""
    _apply(h, "sysctl", "ip_forward", "1", undo)
    if ipv6:
        _apply(h, "sysctl", "ip6_forward", "1", undo)
