"""``network create|ls|inspect|rm``: bridge, overlay and macvlan networks.

Bridge and macvlan networks live on one host; an overlay spans every host with
an endpoint on it, where ``backend.ops.sandbox`` builds its sandbox on first use.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import asdict, replace
from typing import Any

from pyroute2 import NetlinkError

from backend import validate
from backend.errors import VxrayError
from backend.hosts import Host, index_of, kernel_error
from backend.ops.containers import disconnect
from backend.ops.context import Context
from backend.ops.rules import Rules
from backend.ops.sandbox import delete_link, sandbox_name
from backend.ops.txn import Undo
from backend.records import NetworkRecord

DRIVERS = ("bridge", "overlay", "macvlan")
OPTIONS = {"bridge": {"bridge_name"}, "overlay": set(), "macvlan": {"parent", "macvlan_mode"}}
MACVLAN_MODES = ("bridge", "private", "vepa", "passthru")


def create(
    ctx: Context,
    name: str,
    driver: str,
    subnet: str,
    gateway: str | None = None,
    vni: str | None = None,
    mtu: str | None = None,
    learning: bool = False,
    internal: bool = False,
    options: dict[str, str] | None = None,
    host: str | None = None,
) -> NetworkRecord:
    """Validate everything, then claim in the store and build in the kernel — or nothing at all."""
    validate.name(name, "network name")
    if driver not in DRIVERS:
        raise VxrayError(f"invalid driver {driver!r}: one of {', '.join(DRIVERS)}")
    options = dict(options or {})
    unknown = set(options) - OPTIONS[driver]
    if unknown:
        raise VxrayError(f"unknown option {sorted(unknown)[0]!r} for driver {driver}")
    net = validate.cidr(subnet)
    gw = validate.ip_in(gateway, net) if gateway else str(next(net.hosts()))
    if vni is not None and driver != "overlay":
        raise VxrayError(f"--vni {vni} is only for overlay networks")
    wanted_vni = validate.vni(vni) if vni is not None else None
    the_mtu = validate.mtu(mtu) if mtu is not None else (1450 if driver == "overlay" else 1500)
    if ctx.store.network(name) is not None:
        raise VxrayError(f"network {name} already exists")
    h = None if driver == "overlay" else ctx.host(host)
    if driver == "bridge" and options.get("bridge_name"):
        _check_free_device(h, validate.ifname(options["bridge_name"]))
    if driver == "macvlan":
        _check_macvlan_options(h, options)

    net_id = secrets.token_hex(32)
    if driver == "bridge" and not options.get("bridge_name"):
        options["bridge_name"] = f"br-{net_id[:12]}"
    with Undo() as undo:
        ctx.store.claim_subnet(net, name, "overlay" if driver == "overlay" else h.name)
        undo.push(ctx.store.release_subnet, name)
        the_vni = None
        if driver == "overlay":
            the_vni = ctx.store.claim_vni(wanted_vni, name)
            undo.push(ctx.store.release_vni, the_vni)
        rec = NetworkRecord(
            name, net_id, driver, str(net), gw, host=h.name if h else None, vni=the_vni, mtu=the_mtu,
            internal=internal, learning=learning, options=options,
        )  # fmt: skip
        ctx.store.claim_ip(rec, "gateway", gw)
        undo.push(ctx.store.release_all_ips, name)
        ctx.store.add_network(rec)
        undo.push(ctx.store.remove_network, name)
        if driver == "bridge":
            _build_bridge(h, rec, undo)
        elif driver == "macvlan":
            rec = _build_macvlan_parent(ctx, h, rec, undo)
    return rec


def _check_free_device(h: Host, ifname: str | None) -> None:
    if ifname:
        with h.ipr() as ipr:
            if ipr.link_lookup(ifname=ifname):
                raise VxrayError(f"device {ifname} already exists on host {h.name}")


def _check_macvlan_options(h: Host, options: dict[str, str]) -> None:
    parent = options.get("parent")
    if not parent:
        raise VxrayError("macvlan needs -o parent=DEV[.VLAN]")
    mode = options.setdefault("macvlan_mode", "bridge")
    if mode not in MACVLAN_MODES:
        raise VxrayError(f"invalid macvlan_mode {mode!r}: one of {', '.join(MACVLAN_MODES)}")
    base, dot, vlan = parent.partition(".")
    validate.ifname(parent)
    if dot and not (vlan.isdigit() and 1 <= int(vlan) <= 4094):
        raise VxrayError(f"invalid VLAN id {vlan!r} in parent {parent!r}: 1-4094")
    with h.ipr() as ipr:
        if not ipr.link_lookup(ifname=parent):
            if not dot:
                raise VxrayError(f"no device {parent} on host {h.name}")
            if not ipr.link_lookup(ifname=base):
                raise VxrayError(f"no device {base} on host {h.name} (parent of {parent})")


def _build_macvlan_parent(ctx: Context, h: Host, rec: NetworkRecord, undo: Undo) -> NetworkRecord:
    """Create the VLAN sub-interface ``DEV.VLAN`` when it does not exist yet, and remember that we did."""
    parent = rec.options["parent"]
    base, dot, vlan = parent.partition(".")
    with h.ipr() as ipr:
        if not dot or ipr.link_lookup(ifname=parent):
            return rec
        try:
            ipr.link("add", ifname=parent, kind="vlan", link=index_of(ipr, base, h.name), vlan_id=int(vlan))
        except NetlinkError as exc:
            raise kernel_error(exc, f"cannot create VLAN sub-interface {parent} on host {h.name}") from None
        idx = index_of(ipr, parent, h.name)
        undo.push(delete_link, h, parent, None)
        ipr.link("set", index=idx, state="up")
    updated = replace(rec, options={**rec.options, "created_parent": "1"})
    ctx.store.update_network(updated)
    return updated


ISOLATION_1, ISOLATION_2 = "DOCKER-ISOLATION-STAGE-1", "DOCKER-ISOLATION-STAGE-2"


def _bridge_rules(rec: NetworkRecord) -> list[tuple[str, str, list[str]]]:
    """The rules Docker writes for a bridge network.

    The isolation rules are inserted at the top of their chains: a packet that
    enters from one user bridge and leaves by another is dropped, which is why
    containers on two bridges cannot talk until ``network connect``.
    """
    br, subnet = rec.options["bridge_name"], rec.subnet
    if rec.internal:
        return [
            ("filter", "FORWARD", ["-i", br, "!", "-o", br, "-j", "DROP"]),
            ("filter", "FORWARD", ["!", "-i", br, "-o", br, "-j", "DROP"]),
        ]
    return [
        ("filter", ISOLATION_1, ["-i", br, "!", "-o", br, "-j", ISOLATION_2]),
        ("filter", ISOLATION_2, ["-o", br, "-j", "DROP"]),
        ("nat", "POSTROUTING", ["-s", subnet, "!", "-o", br, "-j", "MASQUERADE"]),
        ("filter", "FORWARD", ["-o", br, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"]),
        ("filter", "FORWARD", ["-o", br, "-j", "DOCKER"]),
        ("filter", "FORWARD", ["-i", br, "!", "-o", br, "-j", "ACCEPT"]),
        ("filter", "FORWARD", ["-i", br, "-o", br, "-j", "ACCEPT"]),
    ]


def _build_bridge(h: Host, rec: NetworkRecord, undo: Undo) -> None:
    br = rec.options["bridge_name"]
    prefix = ipaddress.IPv4Network(rec.subnet).prefixlen
    with h.ipr() as ipr:
        try:
            ipr.link("add", ifname=br, kind="bridge")
        except NetlinkError as exc:
            raise kernel_error(exc, f"cannot create bridge {br} on host {h.name}") from None
        undo.push(delete_link, h, br, None)
        idx = index_of(ipr, br, h.name)
        ipr.link("set", index=idx, mtu=rec.mtu)
        ipr.addr("add", index=idx, address=rec.gateway, prefixlen=prefix)
        ipr.link("set", index=idx, state="up")
    _set_ip_forward(h, undo)
    rules = Rules(h, undo)
    if not rec.internal:
        for chain in ("DOCKER", ISOLATION_1, ISOLATION_2):
            rules.ensure_chain("filter", chain)
        rules.ensure("filter", "FORWARD", ["-j", ISOLATION_1], insert=True)
    for table, chain, spec in _bridge_rules(rec):
        rules.add(table, chain, spec, insert=chain.startswith("DOCKER-ISOLATION"))


def _set_ip_forward(h: Host, undo: Undo) -> None:
    """Containers behind a bridge reach the world only if the host forwards (Docker sets it too)."""
    path = "/proc/sys/net/ipv4/ip_forward"

    def read() -> str:
        with open(path) as f:
            return f.read().strip()

    def write(value: str) -> None:
        with open(path, "w") as f:
            f.write(value)

    old = h.call_in(read)
    if old != "1":
        h.call_in(lambda: write("1"))
        undo.push(lambda: h.call_in(lambda: write(old)))


def network_list(ctx: Context) -> list[dict[str, Any]]:
    return [
        {"name": n.name, "id": n.id[:12], "driver": n.driver, "subnet": n.subnet, "gateway": n.gateway,
         "vni": n.vni, "mtu": n.mtu, "host": n.host}
        for n in sorted(ctx.store.networks(), key=lambda n: n.name)
    ]  # fmt: skip


def inspect(ctx: Context, name: str) -> dict[str, Any]:
    rec = ctx.network(name)
    endpoints: dict[str, list[dict[str, str]]] = {}
    for ep in sorted(ctx.store.endpoints(name), key=lambda e: e.container):
        endpoints.setdefault(ep.host, []).append(
            {"container": ep.container, "interface": ep.ifname, "mac": ep.mac, "ip": ep.ip}
        )
    return {**asdict(rec), "endpoints": endpoints}


def remove(ctx: Context, name: str, force: bool = False) -> None:
    """Remove a network; refuses while endpoints exist unless ``force`` (then they are disconnected)."""
    rec = ctx.network(name)
    endpoints = ctx.store.endpoints(name)
    if endpoints and not force:
        names = ", ".join(sorted(e.container for e in endpoints))
        raise VxrayError(f"network {name} has endpoints ({names}): disconnect them or use --force")
    for ep in endpoints:
        disconnect(ctx, name, ep.container)
    if rec.driver == "overlay":
        for host in ctx.store.hosts():
            h = ctx.host(host.name)
            h.remove_netns(h.ns_name(sandbox_name(rec)))
    elif rec.driver == "bridge":
        h = ctx.host(rec.host)
        rules = Rules(h, Undo())
        for table, chain, spec in _bridge_rules(rec):
            rules.delete(table, chain, spec)
        delete_link(h, rec.options["bridge_name"], None)
    elif rec.options.get("created_parent"):
        delete_link(ctx.host(rec.host), rec.options["parent"], None)
    ctx.store.release_all_ips(name)
    if rec.vni:
        ctx.store.release_vni(rec.vni)
    ctx.store.release_subnet(name)
    ctx.store.remove_network(name)
