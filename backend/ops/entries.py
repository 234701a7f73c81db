"""Static FDB and ARP/NDP entries: the field notes' repair, by hand or for a whole overlay.

``bridge fdb add <remote mac> dev vxlan1 dst <remote host ip>`` in the sandbox and
``arp -s <remote ip> <remote mac>`` in the container make a cross-host ping work
when the underlay has no multicast. ``fdb sync`` programs, on every host, what the
store's endpoints call for — the remote MACs on ``vxlan1`` with their VTEP, and
their IPs in the sandbox's neighbour table where the VXLAN device's ARP proxy
answers from — which is what Docker's overlay driver does by itself. On a
dual-stack overlay the same proxy answers IPv6 neighbour solicitations from the
IPv6 entries (``ip -6 neigh``) beside them.
"""

from __future__ import annotations

import ipaddress
import socket

from backend import validate
from backend.errors import VxrayError
from backend.hosts import Host, NetnsHost, index_of
from backend.ops import docker_overlay, flannel
from backend.ops.changes import FLOOD_MAC, Change, apply
from backend.ops.context import LOCAL, Context
from backend.ops.sandbox import SANDBOX_VXLAN, sandbox_name


def resolve_netns(ctx: Context, h: Host, netns: str | None) -> str | None:
    """``--netns``: a container's name, a namespace of the host, or a machine-wide netns name."""
    if netns is None:
        return None
    rec = ctx.store.container(netns)
    if rec is not None and rec.host == h.name:
        return rec.netns
    for candidate in (h.ns_name(netns), netns):
        if h.has_netns(candidate):
            return candidate
    raise VxrayError(f"unknown namespace {netns!r} on host {h.name}")


def fdb(
    ctx: Context, action: str, mac: str, dst: str, dev: str | None = None, netns: str | None = None,
    network: str | None = None, host: str | None = None,
) -> Change:  # fmt: skip
    if action not in ("add", "del"):
        raise VxrayError(f"invalid fdb action {action!r}: add or del")
    mac, dst = validate.mac(mac), validate.ipv4(dst)
    action = "replace" if action == "add" else action  # a static entry takes the place of a learnt or stale one
    if network is not None and ctx.store.network(network) is None:  # a Docker network, by its name or id
        engine, path, vxlan = docker_overlay.network_sandbox(ctx, network, host)
        change = Change(engine.name, path, "fdb", action, mac, validate.ifname(dev or vxlan), dst=dst)
        apply(docker_host(ctx, engine), change)
        return change
    h = ctx.host(host)
    if network is not None:
        net = ctx.network(network)
        if net.driver != "overlay":
            raise VxrayError(f"network {network} is a {net.driver} network: FDB entries with dst are for overlays")
        ns = h.ns_name(sandbox_name(net))
        if not h.has_netns(ns):
            raise VxrayError(f"host {h.name} has no sandbox for network {network} (no endpoint there yet)")
        dev = dev or SANDBOX_VXLAN
    else:
        if dev is None:
            raise VxrayError("fdb needs `dev DEV` or `--network NET`")
        ns = resolve_netns(ctx, h, netns)
    change = Change(h.name, ns, "fdb", action, mac, validate.ifname(dev), dst=dst)
    apply(h, change)
    return change


def arp(
    ctx: Context, action: str, ip: str, mac: str | None, container: str | None = None, netns: str | None = None,
    dev: str | None = None, host: str | None = None,
) -> Change:  # fmt: skip
    if action not in ("add", "del"):
        raise VxrayError(f"invalid arp action {action!r}: add or del")
    ip = validate.ip(ip)
    if action == "add" and mac is None:
        raise VxrayError("arp add needs a MAC address")
    mac = validate.mac(mac) if mac else "00:00:00:00:00:00"
    if container is not None and ctx.store.container(container) is None:  # a Docker container
        engine, ns = docker_overlay.container_netns(ctx, container)
        h = docker_host(ctx, engine)
    elif container is not None:
        rec = ctx.container(container)
        h, ns = ctx.host(rec.host), rec.netns
    else:
        h = ctx.host(host)
        ns = resolve_netns(ctx, h, netns)
    dev = validate.ifname(dev) if dev else _device_for(h, ns, ip)
    change = Change(h.name, ns, "neigh", "replace" if action == "add" else "del", mac, dev, ip=ip)
    apply(h, change)
    return change


def _device_for(h: Host, ns: str | None, ip: str) -> str:
    """The device whose subnet holds ``ip`` — where the kernel would ARP (or solicit, for IPv6) for it."""
    addr = ipaddress.ip_address(ip)
    with h.ipr(ns) as ipr:
        for a in ipr.get_addr(family=socket.AF_INET6 if addr.version == 6 else socket.AF_INET):
            net = ipaddress.ip_network(f"{a.get('address')}/{a['prefixlen']}", strict=False)
            if addr in net and not (addr.version == 6 and net.is_link_local):  # fe80::/64 is on every device
                return ipr.get_links(a["index"])[0].get("ifname")
    raise VxrayError(f"no device in {ns or f'host {h.name}'} has a subnet holding {ip}: give `dev DEV`")


def sync_plan(ctx: Context, network: str) -> list[Change]:
    """What every host's sandbox needs for ``network``: remote MACs with their VTEP, and their IPs."""
    net = ctx.network(network)
    if net.driver != "overlay":
        raise VxrayError(f"network {network} is a {net.driver} network: fdb sync is for overlays")
    endpoints = ctx.store.endpoints(network)
    hosts = sorted({e.host for e in endpoints})
    vteps = {name: ctx.host(name).record.vtep for name in hosts}
    plan = []
    for name in hosts:
        h = ctx.host(name)
        ns = h.ns_name(sandbox_name(net))
        if net.learning:
            plan += [Change(name, ns, "fdb", "append", FLOOD_MAC, SANDBOX_VXLAN, dst=vteps[o])
                     for o in hosts if o != name]  # fmt: skip
        for ep in sorted(endpoints, key=lambda e: e.container):
            if ep.host != name:
                plan.append(Change(name, ns, "fdb", "replace", ep.mac, SANDBOX_VXLAN, dst=vteps[ep.host]))
                plan.append(Change(name, ns, "neigh", "replace", ep.mac, SANDBOX_VXLAN, ip=ep.ip))
                if ep.ip6:
                    plan.append(Change(name, ns, "neigh", "replace", ep.mac, SANDBOX_VXLAN, ip=ep.ip6))
    return plan


def docker_host(ctx: Context, engine: docker_overlay.Engine) -> Host:
    """The host a Docker Engine serves: a lab host, or this machine."""
    return ctx.host(engine.host) if engine.host else NetnsHost(LOCAL)


def sync(ctx: Context, network: str, dry_run: bool = False) -> list[Change]:
    """Program every host's sandbox for ``network`` (the store's; else Docker's, from its Engine API); on a flannel
    network, every host's routes, ARP and FDB entries for the other hosts' leases (``flannel.sync``)."""
    rec = ctx.store.network(network)
    if rec is not None and rec.driver == "flannel":
        return flannel.sync(ctx, rec, dry_run)  # type: ignore[return-value]  # its routes print as Changes do
    docker = rec is None
    plan = docker_overlay.sync_plan(ctx, network) if docker else sync_plan(ctx, network)
    engines = {e.name: e for e in docker_overlay.engines(ctx)} if docker else {}
    if not dry_run:
        for change in plan:
            h = docker_host(ctx, engines[change.host]) if docker else ctx.host(change.host)
            if change.action == "append" and _has_flood_entry(h, change):
                continue
            apply(h, change)
    return plan


def _has_flood_entry(h: Host, change: Change) -> bool:
    with h.ipr(change.netns) as ipr:
        idx = index_of(ipr, change.dev, change.netns or h.name)
        return any(
            e.get("lladdr") == FLOOD_MAC and e.get("dst") == change.dst
            for e in ipr.fdb("dump", ifindex=idx)
        )  # fmt: skip
