"""``container run|rm|ls|inspect`` and ``network connect|disconnect``.

A lab container is a network namespace (no image) on a host. Attaching it to a
network makes a veth pair — ``eth<n>`` inside, a deterministic ``vx<hash>`` on
the bridge side (the host's bridge, or ``br0`` in the overlay's sandbox) — or, on
a macvlan network, a macvlan device on the parent. Addresses come from the
store; a MAC not given is derived from the IP as Docker does (02:42:<ip>).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from pyroute2 import NetlinkError

from backend import netlink, rtnl_edit, validate
from backend.errors import VxrayError
from backend.hosts import Host, index_of, kernel_error
from backend.netns import RUN_NETNS
from backend.ops import flannel
from backend.ops.context import Context
from backend.ops.ports import unpublish_all
from backend.ops.sandbox import SANDBOX_BRIDGE, delete_link, ensure_sandbox
from backend.ops.txn import Undo
from backend.records import ContainerRecord, Endpoint, NetworkRecord

MODES = ("bridge", "host", "none")


def mac_for(ip: str) -> str:
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


def host_ifname(container: str, network: str) -> str:
    """The bridge-side name: stable for (container, network), unique enough, 10 characters."""
    return "vx" + hashlib.sha1(f"{container}/{network}".encode()).hexdigest()[:8]


def run(
    ctx: Context,
    name: str,
    host: str | None = None,
    net: str | None = None,
    ip: str | None = None,
    mac: str | None = None,
    mode: str = "bridge",
    ip6: str | None = None,
) -> ContainerRecord:
    validate.name(name, "container name")
    h = ctx.host(host)
    shared = None
    if mode.startswith("container:"):
        other = mode.split(":", 1)[1]
        shared = ctx.container(other)
        if shared.netns is None or shared.host != h.name:
            raise VxrayError(f"cannot join container {other}: it has no namespace of its own on host {h.name}")
    elif mode not in MODES:
        raise VxrayError(f"invalid network mode {mode!r}: bridge, host, none or container:NAME")
    if net and mode != "bridge":
        raise VxrayError(f"--net {net} needs network mode bridge, not {mode}")
    if (ip or mac or ip6) and not net:
        raise VxrayError("--ip/--ip6/--mac need --net")
    if ctx.store.container(name) is not None:
        raise VxrayError(f"container {name} already exists")
    network = _check_attach(ctx, h, net, ip, mac, ip6) if net else None
    if mode in ("bridge", "none") and h.has_netns(h.ns_name(name)):
        raise VxrayError(f"namespace {h.ns_name(name)} already exists on host {h.name}")

    with Undo() as undo:
        netns = None if mode == "host" else (shared.netns if shared else h.add_netns(name))
        if mode in ("bridge", "none"):
            undo.push(h.remove_netns, netns)
        rec = ContainerRecord(name, h.name, netns, mode)
        ctx.store.add_container(rec)
        undo.push(ctx.store.remove_container, name)
        if network:
            _attach(ctx, h, rec, network, ip, mac, undo, ip6=ip6)
    return rec


def _check_attach(
    ctx: Context, h: Host, net: str, ip: str | None, mac: str | None, ip6: str | None = None
) -> NetworkRecord:
    network = ctx.network(net)
    if network.host and network.host != h.name:
        raise VxrayError(f"network {net} is local to host {network.host}, not {h.name}")
    if ip:
        validate.ip_in(ip, _subnet_on(network, h.name)[0])
    if ip6:
        _subnet6_of(network, ip6)
    if mac:
        validate.mac(mac)
    return network


def _subnet6_of(net: NetworkRecord, ip6: str | None) -> tuple[ipaddress.IPv6Network, str] | None:
    """The IPv6 subnet (and its gateway) a container's address comes from: the one holding ``ip6``, else the
    network's first; None on an IPv4-only network (where ``ip6`` is an error)."""
    subnets = [(ipaddress.IPv6Network(s), g) for s, g in zip(net.subnets6, net.gateways6, strict=True)]
    if ip6 is None:
        return subnets[0] if subnets else None
    if not subnets:
        raise VxrayError(f"--ip6 {ip6}: network {net.name} has no IPv6 subnet")
    addr = ipaddress.IPv6Address(validate.ipv6(ip6))
    held = next(((n, g) for n, g in subnets if addr in n), None)
    if held is None:
        raise VxrayError(f"IPv6 address {ip6} is in none of network {net.name}'s subnets ({', '.join(net.subnets6)})")
    validate.ip6_in(ip6, held[0])
    return held


def _attach(
    ctx: Context, h: Host, rec: ContainerRecord, net: NetworkRecord, ip: str | None, mac: str | None, undo: Undo,
    taken: frozenset[str] = frozenset(), ip6: str | None = None,
) -> Endpoint:  # fmt: skip
    """Give ``rec`` an interface on ``net``: the lowest ``eth<n>`` not in ``taken`` (its other interfaces);
    on a dual-stack network an IPv6 address too (``ip6``, or the first free of its first IPv6 subnet)."""
    if rec.netns is None:
        raise VxrayError(f"container {rec.name} uses the host's network: it cannot join network {net.name}")
    subnet, gateway = _subnet_on(net, h.name)
    ip = ctx.store.claim_ip(replace(net, subnet=str(subnet)), rec.name, ip)
    undo.push(ctx.store.release_ip, net.name, ip)
    v6 = _subnet6_of(net, ip6)
    if v6 is not None:
        ip6 = ctx.store.claim_ip(replace(net, subnet=str(v6[0])), rec.name, ip6 and validate.ipv6(ip6))
        undo.push(ctx.store.release_ip, net.name, ip6)
    mac = validate.mac(mac) if mac else mac_for(ip)
    ifname = next(f"eth{n}" for n in range(len(taken) + 1) if f"eth{n}" not in taken)
    outside = host_ifname(rec.name, net.name)
    if net.driver == "macvlan":
        _macvlan(h, rec, net, outside, ifname, undo)
    else:
        if net.driver == "overlay":
            side_ns, bridge = ensure_sandbox(h, net, undo), SANDBOX_BRIDGE
        else:
            side_ns, bridge = None, net.options["bridge_name"]
        _veth(h, rec, net, side_ns, bridge, outside, ifname, undo)
    prefix = subnet.prefixlen
    with h.netlink(rec.netns) as nl, _kernel(f"cannot configure {ifname} in {rec.netns}"):
        idx = rtnl_edit.index_or_error(nl, ifname, rec.netns)
        rtnl_edit.set_link(nl, idx, mac=mac, mtu=net.mtu, up=True)
        rtnl_edit.add_address(nl, idx, ip, prefix)
        if net.driver in ("bridge", "flannel") and not net.internal and not rtnl_edit.has_default_route(nl):
            rtnl_edit.add_route(nl, "0.0.0.0", 0, gateway)  # the first network's gateway, as Docker
        if v6 is not None and ip6 is not None:
            rtnl_edit.add_address(nl, idx, ip6, v6[0].prefixlen)
            if net.driver == "bridge" and not net.internal and not rtnl_edit.has_default_route(nl, ipv6=True):
                rtnl_edit.add_route(nl, "::", 0, v6[1])
    ep = Endpoint(rec.name, net.name, h.name, ifname, mac, ip, outside, ip6 if v6 is not None else None)
    ctx.store.add_endpoint(ep)
    undo.push(ctx.store.remove_endpoint, net.name, rec.name)
    return ep


def _subnet_on(net: NetworkRecord, host: str) -> tuple[ipaddress.IPv4Network, str]:
    """Where a container on ``host`` takes its address: the network, or the host's flannel lease."""
    if net.driver == "flannel":
        return flannel.host_subnet(net, host)
    return ipaddress.IPv4Network(net.subnet), net.gateway


@contextmanager
def _kernel(what: str) -> Iterator[None]:
    """Turn a refusal of the kernel into a one-line error saying what was being done."""
    try:
        yield
    except netlink.NetlinkError as exc:
        raise VxrayError(f"{what}: {exc.strerror}") from None


def _veth(
    h: Host, rec: ContainerRecord, net: NetworkRecord, side_ns: str | None, bridge: str, outside: str,
    ifname: str, undo: Undo,
) -> None:  # fmt: skip
    where = side_ns or f"host {h.name}"
    with h.netlink(side_ns) as nl:
        if rtnl_edit.link_index(nl, outside) is not None:
            raise VxrayError(f"device {outside} already exists in {where}")
        fd = os.open(os.path.join(RUN_NETNS, rec.netns), os.O_RDONLY | os.O_CLOEXEC)
        try:
            with _kernel(f"cannot create veth {outside} in {where}"):
                rtnl_edit.add_veth(nl, outside, ifname, fd)
        finally:
            os.close(fd)
        undo.push(delete_link, h, outside, side_ns)
        with _kernel(f"cannot attach {outside} to {bridge} in {where}"):
            idx = rtnl_edit.index_or_error(nl, outside, where)
            rtnl_edit.set_link(nl, idx, mtu=net.mtu, master=rtnl_edit.index_or_error(nl, bridge, where), up=True)


def _macvlan(h: Host, rec: ContainerRecord, net: NetworkRecord, outside: str, ifname: str, undo: Undo) -> None:
    parent = net.options["parent"]
    with h.ipr() as ipr:
        try:
            ipr.link(
                "add", ifname=outside, kind="macvlan", link=index_of(ipr, parent, h.name),
                macvlan_mode=net.options.get("macvlan_mode", "bridge"),
            )  # fmt: skip
        except NetlinkError as exc:
            raise kernel_error(exc, f"cannot create macvlan on {parent} of host {h.name}") from None
        undo.push(delete_link, h, outside, None)
        ipr.link("set", index=index_of(ipr, outside, h.name), net_ns_fd=rec.netns)
    with h.ipr(rec.netns) as ipr:
        ipr.link("set", index=index_of(ipr, outside, rec.netns), ifname=ifname)


def connect(
    ctx: Context, net: str, container: str, ip: str | None = None, mac: str | None = None, ip6: str | None = None
) -> Endpoint:
    rec = ctx.container(container)
    h = ctx.host(rec.host)
    if any(e.container == container for e in ctx.store.endpoints(net)):
        raise VxrayError(f"container {container} is already connected to network {net}")
    network = _check_attach(ctx, h, net, ip, mac, ip6)
    with Undo() as undo:
        taken = frozenset(e.ifname for e in ctx.store.endpoints() if e.container == container)
        return _attach(ctx, h, rec, network, ip, mac, undo, taken, ip6)


def disconnect(ctx: Context, net: str, container: str) -> None:
    ep = next((e for e in ctx.store.endpoints(net) if e.container == container), None)
    if ep is None:
        raise VxrayError(f"container {container} is not connected to network {net}")
    rec = ctx.container(container)
    if rec.ports and ctx.network(net).driver == "bridge":
        unpublish_all(ctx, rec)  # published through this bridge: the rules would point nowhere
    h = ctx.host(rec.host)
    if rec.netns and h.has_netns(rec.netns):
        delete_link(h, ep.ifname, rec.netns)
    ctx.store.release_ip(net, ep.ip)
    if ep.ip6:
        ctx.store.release_ip(net, ep.ip6)
    ctx.store.remove_endpoint(net, container)


def remove(ctx: Context, name: str) -> None:
    rec = ctx.container(name)
    dependants = [c.name for c in ctx.store.containers() if c.mode == f"container:{name}"]
    if dependants:
        raise VxrayError(f"container {name} is shared by {', '.join(sorted(dependants))}: remove them first")
    unpublish_all(ctx, rec)
    for ep in ctx.store.endpoints():
        if ep.container == name:
            disconnect(ctx, ep.network, name)
    h = ctx.host(rec.host)
    if rec.mode in ("bridge", "none") and rec.netns:
        h.remove_netns(rec.netns)
    ctx.store.remove_container(name)


def address_seen_from(endpoints: list[Endpoint], target: str, source: str | None) -> str | None:
    """The address ``source`` reaches ``target`` at: on a network both share, else the target's first —
    as a name resolves in Docker's embedded DNS. None: the target has no address."""
    eps = sorted((e for e in endpoints if e.container == target), key=lambda e: e.ifname)
    mine = {e.network for e in endpoints if e.container == source}
    return next((e.ip for e in eps if e.network in mine), eps[0].ip if eps else None)


def address6_seen_from(endpoints: list[Endpoint], target: str, source: str) -> str | None:
    """The IPv6 address ``source`` reaches ``target`` at: on a dual-stack network both are on (None: none).
    Unlike IPv4 there is no fallback to another network: a container that has no IPv6 address itself has
    no IPv6 route to anywhere."""
    mine = {e.network for e in endpoints if e.container == source and e.ip6}
    eps = sorted((e for e in endpoints if e.container == target and e.ip6 and e.network in mine), key=_by_ifname)
    return eps[0].ip6 if eps else None


def _by_ifname(ep: Endpoint) -> str:
    return ep.ifname


def container_list(ctx: Context) -> list[dict[str, Any]]:
    eps = ctx.store.endpoints()
    return [
        {"name": c.name, "host": c.host, "mode": c.mode, "netns": c.netns,
         "networks": {e.network: e.ip for e in eps if e.container == c.name},
         "networks6": {e.network: e.ip6 for e in eps if e.container == c.name and e.ip6}}
        for c in sorted(ctx.store.containers(), key=lambda c: c.name)
    ]  # fmt: skip


def inspect(ctx: Context, name: str) -> dict[str, Any]:
    rec = ctx.container(name)
    return {
        "name": rec.name, "host": rec.host, "netns": rec.netns, "mode": rec.mode,
        "ports": [f"{p.host_port}:{p.port}/{p.proto}" for p in rec.ports],
        "networks": {
            e.network: {"interface": e.ifname, "mac": e.mac, "ip": e.ip, "ip6": e.ip6, "bridge_side": e.host_ifname}
            for e in ctx.store.endpoints() if e.container == name
        },
    }  # fmt: skip
