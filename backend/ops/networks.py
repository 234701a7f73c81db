"""``network create|ls|inspect|rm|repair``: bridge, overlay, macvlan and flannel networks.

Bridge and macvlan networks live on one host (a bridge may enslave the host's NIC,
``-o nic=eth0``, putting containers on the host's LAN); an overlay spans every
host with an endpoint on it, where ``backend.ops.sandbox`` builds its sandbox on
first use; a flannel network (``backend.ops.flannel``) spans every host at once.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

from pyroute2 import NetlinkError

from backend import rtnl_edit, validate
from backend.errors import VxrayError
from backend.hosts import Host, index_of, kernel_error
from backend.ops import docker_overlay, entries, flannel
from backend.ops.containers import disconnect
from backend.ops.context import Context
from backend.ops.hostops import enable_forwarding
from backend.ops.rules import Rules
from backend.ops.sandbox import add_gateways6, delete_link, sandbox_name, set_vni, vxlan_vni
from backend.ops.txn import Undo
from backend.records import Endpoint, NetworkRecord
from backend.rtnl import read_links
from backend.store.flannel_layout import check_url

DRIVERS = ("bridge", "overlay", "macvlan", "flannel")
OPTIONS = {"bridge": {"bridge_name", "nic"}, "overlay": set(), "macvlan": {"parent", "macvlan_mode"},
           "flannel": {"bridge_name", "leases", "etcd"}}  # fmt: skip
SPANNING = ("overlay", "flannel")  # on every host, not one
MACVLAN_MODES = ("bridge", "private", "vepa", "passthru")
DUAL_STACK = ("bridge", "overlay", "macvlan")  # flannel's vxlan backend leases IPv4 only, as flanneld's default


def create(
    ctx: Context,
    name: str,
    driver: str,
    subnet: str | Sequence[str],
    gateway: str | Sequence[str] | None = None,
    vni: str | None = None,
    mtu: str | None = None,
    learning: bool = False,
    internal: bool = False,
    options: dict[str, str] | None = None,
    host: str | None = None,
) -> NetworkRecord:
    """Validate everything, then claim in the store and build in the kernel — or nothing at all.

    ``subnet`` is one IPv4 subnet, or that and IPv6 subnets beside it (``--subnet`` repeated, as
    ``docker network create --ipv6``); ``gateway`` one or more addresses, each in one of them."""
    validate.name(name, "network name")
    if driver not in DRIVERS:
        raise VxrayError(f"invalid driver {driver!r}: one of {', '.join(DRIVERS)}")
    options = dict(options or {})
    unknown = set(options) - OPTIONS[driver]
    if unknown:
        raise VxrayError(f"unknown option {sorted(unknown)[0]!r} for driver {driver}")
    net, gw, v6 = plan_subnets(
        [subnet] if isinstance(subnet, str) else list(subnet),
        [] if gateway is None else [gateway] if isinstance(gateway, str) else list(gateway),
    )
    if v6 and driver not in DUAL_STACK:
        raise VxrayError(f"IPv6 subnet {v6[0][0]}: {driver} networks are IPv4 only ({', '.join(DUAL_STACK)} take IPv6)")
    if v6 and "nic" in options:
        raise VxrayError(f"IPv6 subnet {v6[0][0]}: a bridge on -o nic= takes over the NIC's IPv4 addresses only")
    if vni is not None and driver not in SPANNING:
        raise VxrayError(f"--vni {vni} is only for overlay and flannel networks")
    wanted_vni = validate.vni(vni) if vni is not None else (1 if driver == "flannel" else None)
    the_mtu = validate.mtu(mtu) if mtu is not None else (1450 if driver in SPANNING else 1500)
    if ctx.store.network(name) is not None:
        raise VxrayError(f"network {name} already exists")
    h = None if driver in SPANNING else ctx.host(host)
    if driver == "bridge" and options.get("bridge_name"):
        _check_free_device(h, validate.ifname(options["bridge_name"]))
    if driver == "bridge" and "nic" in options:
        _check_nic(h, options["nic"])
    if driver == "macvlan":
        _check_macvlan_options(h, options)

    net_id = secrets.token_hex(32)
    if driver == "bridge" and not options.get("bridge_name"):
        options["bridge_name"] = f"br-{net_id[:12]}"
    if driver == "flannel":
        options.setdefault("bridge_name", "cni0")
        validate.ifname(options["bridge_name"])
        if "etcd" in options:  # flannel's own leases in etcd are then the desired state (fdb sync, doctor)
            check_url(options["etcd"])
        chosen = flannel.plan_leases(ctx, NetworkRecord(name, net_id, driver, str(net), gw), options.get("leases", ""))
        options["leases"] = ",".join(f"{host}={lease}" for host, lease in chosen.items())
    with Undo() as undo:
        scope = "overlay" if driver in SPANNING else h.name
        ctx.store.claim_subnet(net, name, scope)
        undo.push(ctx.store.release_subnet, name)  # all of the network's claims, the IPv6 ones below too
        for n, _ in v6:
            ctx.store.claim_subnet(n, name, scope)
        the_vni = None
        if driver in SPANNING:
            the_vni = ctx.store.claim_vni(wanted_vni, name)
            undo.push(ctx.store.release_vni, the_vni)
        rec = NetworkRecord(
            name, net_id, driver, str(net), gw, host=h.name if h else None, vni=the_vni, mtu=the_mtu,
            internal=internal, learning=learning, options=options, subnets6=tuple(str(n) for n, _ in v6),
            gateways6=tuple(g for _, g in v6),
        )  # fmt: skip
        undo.push(ctx.store.release_all_ips, name)
        if driver == "flannel":  # each lease: its network address on flannel.<VNI>, its first on the bridge
            for host, lease in flannel.leases(rec).items():
                ctx.store.claim_ip(rec, f"{flannel.device(rec)} {host}", str(lease.network_address))
                ctx.store.claim_ip(rec, f"gateway {host}", str(lease.network_address + 1))
        else:
            ctx.store.claim_ip(rec, "gateway", gw)
        for n, g in v6:
            ctx.store.claim_ip(replace(rec, subnet=str(n)), "gateway", g)
        for ip in _nic_addresses(h, rec):  # the host keeps its own address on the LAN
            if ipaddress.IPv4Address(ip) in net and ip != gw:
                ctx.store.claim_ip(rec, f"host {h.name}", ip)
        ctx.store.add_network(rec)
        undo.push(ctx.store.remove_network, name)
        if driver == "bridge":
            _build_bridge(h, rec, undo)
        elif driver == "macvlan":
            rec = _build_macvlan_parent(ctx, h, rec, undo)
        elif driver == "flannel":
            flannel.build(ctx, rec, undo)
    return rec


Subnet = ipaddress.IPv4Network | ipaddress.IPv6Network


def plan_subnets(
    subnets: list[str], gateways: list[str]
) -> tuple[ipaddress.IPv4Network, str, list[tuple[ipaddress.IPv6Network, str]]]:
    """The IPv4 subnet and its gateway, and each IPv6 subnet with its gateway (default: the subnet's first
    address, as Docker's). One IPv4 subnet is required — the model's addresses, MACs and routes start from
    it — and IPv6 subnets may not repeat or overlap; each gateway belongs to exactly one subnet."""
    nets: list[Subnet] = []
    for text in subnets:
        n = validate.subnet(text)
        for other in nets:
            if other.version == n.version and other.overlaps(n):  # type: ignore[arg-type]
                raise VxrayError(f"subnet {n} given twice" if other == n else f"subnet {n} overlaps {other}")
        nets.append(n)
    v4 = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
    if len(v4) != 1:
        given = ", ".join(map(str, v4)) or "none"
        raise VxrayError(f"a network takes exactly one IPv4 subnet, beside any IPv6 ones (given: {given})")
    chosen: dict[Subnet, str] = {}
    for text in gateways:
        owner = next((n for n in nets if _holds(n, text)), None)
        if owner is None:
            raise VxrayError(f"gateway {text} is not a usable address of any subnet ({', '.join(map(str, nets))})")
        if owner in chosen:
            raise VxrayError(f"subnet {owner} has two gateways: {chosen[owner]} and {text}")
        chosen[owner] = validate.ip_in(text, owner) if owner.version == 4 else validate.ip6_in(text, owner)
    first = {n: chosen.get(n) or str(next(n.hosts())) for n in nets}
    return v4[0], first[v4[0]], [(n, first[n]) for n in nets if isinstance(n, ipaddress.IPv6Network)]


def _holds(net: Subnet, address: str) -> bool:
    try:
        return ipaddress.ip_address(address) in net
    except ValueError:
        raise VxrayError(f"invalid gateway address {address!r}") from None


def _check_free_device(h: Host, ifname: str | None) -> None:
    if ifname:
        with h.ipr() as ipr:
            if ipr.link_lookup(ifname=ifname):
                raise VxrayError(f"device {ifname} already exists on host {h.name}")


def _check_nic(h: Host, nic: str) -> None:
    with h.ipr() as ipr:
        link = ipr.get_links(index_of(ipr, validate.ifname(nic), f"host {h.name}"))[0]
        if link.get("master"):
            raise VxrayError(f"device {nic} on host {h.name} is already enslaved to a bridge")


def _nic_addresses(h: Host | None, rec: NetworkRecord) -> list[str]:
    if h is None or "nic" not in rec.options:
        return []
    with h.ipr() as ipr:
        return [a.get("address") for a in ipr.get_addr(index=index_of(ipr, rec.options["nic"], h.name), family=2)]


def _move_ip(h: Host, src: str, dst: str, undo: Undo) -> None:
    """Move every IPv4 address and gateway route of device ``src`` to ``dst`` (the host stays reachable)."""
    with h.ipr() as ipr:
        a, b = index_of(ipr, src, h.name), index_of(ipr, dst, h.name)
        addrs = [(x.get("address"), x["prefixlen"]) for x in ipr.get_addr(index=a, family=2)]
        routes = [(r["dst_len"], r.get("dst"), r.get("gateway")) for r in ipr.get_routes(family=2, table=254, oif=a)
                  if r.get("gateway")]  # fmt: skip
        for ip, prefix in addrs:
            ipr.addr("del", index=a, address=ip, prefixlen=prefix)
            undo.push(_readd_addr, h, src, ip, prefix)
            ipr.addr("add", index=b, address=ip, prefixlen=prefix)
        for dst_len, dst_ip, gateway in routes:
            ipr.route("add", dst=f"{dst_ip or '0.0.0.0'}/{dst_len}", gateway=gateway, oif=b)
            undo.push(_readd_route, h, src, f"{dst_ip or '0.0.0.0'}/{dst_len}", gateway)


def _readd_addr(h: Host, dev: str, ip: str, prefix: int) -> None:
    with h.ipr() as ipr:
        ipr.addr("add", index=index_of(ipr, dev, h.name), address=ip, prefixlen=prefix)


def _readd_route(h: Host, dev: str, dst: str, gateway: str) -> None:
    with h.ipr() as ipr:
        ipr.route("replace", dst=dst, gateway=gateway, oif=index_of(ipr, dev, h.name))


def _enslave_nic(h: Host, rec: NetworkRecord, undo: Undo) -> None:
    """The bridge takes the NIC's MAC and addresses, then the NIC: containers join the host's LAN."""
    br, nic = rec.options["bridge_name"], rec.options["nic"]
    with h.ipr() as ipr:
        b, n = index_of(ipr, br, h.name), index_of(ipr, nic, h.name)
        ipr.link("set", index=b, address=ipr.get_links(n)[0].get("address"))
        ipr.link("set", index=n, master=b, state="up")
        undo.push(_nomaster, h, nic)
    _move_ip(h, nic, br, undo)


def _nomaster(h: Host, nic: str) -> None:
    with h.ipr() as ipr:
        ipr.link("set", index=index_of(ipr, nic, h.name), master=0)


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


def _bridge_rules(rec: NetworkRecord, ipv6: bool = False) -> list[tuple[str, str, list[str]]]:
    """The rules Docker writes for a bridge network (``ipv6``: the ip6tables twins for its IPv6 subnets).

    The isolation rules are inserted at the top of their chains: a packet that
    enters from one user bridge and leaves by another is dropped, which is why
    containers on two bridges cannot talk until ``network connect``.
    """
    br = rec.options["bridge_name"]
    if rec.internal:
        return [
            ("filter", "FORWARD", ["-i", br, "!", "-o", br, "-j", "DROP"]),
            ("filter", "FORWARD", ["!", "-i", br, "-o", br, "-j", "DROP"]),
        ]
    return [
        ("filter", ISOLATION_1, ["-i", br, "!", "-o", br, "-j", ISOLATION_2]),
        ("filter", ISOLATION_2, ["-o", br, "-j", "DROP"]),
        *(
            ("nat", "POSTROUTING", ["-s", subnet, "!", "-o", br, "-j", "MASQUERADE"])
            for subnet in (rec.subnets6 if ipv6 else (rec.subnet,))
        ),
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
        if "nic" not in rec.options:
            ipr.addr("add", index=idx, address=rec.gateway, prefixlen=prefix)
        ipr.link("set", index=idx, state="up")
    if "nic" in rec.options:
        _enslave_nic(h, rec, undo)
        return  # containers sit on the LAN itself: no NAT, nothing to forward
    add_gateways6(h, None, idx, rec)
    enable_forwarding(h, undo, ipv6=bool(rec.subnets6))
    for ipv6 in (False, True) if rec.subnets6 else (False,):
        rules = Rules(h, undo, ipv6)
        if not rec.internal:
            for chain in ("DOCKER", ISOLATION_1, ISOLATION_2):
                rules.ensure_chain("filter", chain)
            rules.ensure("filter", "FORWARD", ["-j", ISOLATION_1], insert=True)
        for table, chain, spec in _bridge_rules(rec, ipv6):
            rules.add(table, chain, spec, insert=chain.startswith("DOCKER-ISOLATION"))


def network_list(ctx: Context) -> list[dict[str, Any]]:
    return [
        {"name": n.name, "id": n.id[:12], "driver": n.driver, "subnet": n.subnet, "gateway": n.gateway,
         "vni": n.vni, "mtu": n.mtu, "host": n.host, "subnets6": list(n.subnets6), "gateways6": list(n.gateways6)}
        for n in sorted(ctx.store.networks(), key=lambda n: n.name)
    ]  # fmt: skip


def inspect(ctx: Context, name: str) -> dict[str, Any]:
    rec = ctx.network(name)
    endpoints: dict[str, list[dict[str, str]]] = {}
    for ep in sorted(ctx.store.endpoints(name), key=lambda e: e.container):
        endpoints.setdefault(ep.host, []).append(
            {"container": ep.container, "interface": ep.ifname, "mac": ep.mac, "ip": ep.ip, "ip6": ep.ip6}
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
        if "nic" in rec.options:
            _move_ip(h, rec.options["bridge_name"], rec.options["nic"], Undo())
            _nomaster(h, rec.options["nic"])
        else:
            for ipv6 in (False, True) if rec.subnets6 else (False,):
                rules = Rules(h, Undo(), ipv6)
                for table, chain, spec in _bridge_rules(rec, ipv6):
                    rules.delete(table, chain, spec)
        delete_link(h, rec.options["bridge_name"], None)
    elif rec.driver == "flannel":
        flannel.remove(ctx, rec)
    elif rec.options.get("created_parent"):
        delete_link(ctx.host(rec.host), rec.options["parent"], None)
    ctx.store.release_all_ips(name)
    if rec.vni:
        ctx.store.release_vni(rec.vni)
    ctx.store.release_subnet(name)
    ctx.store.remove_network(name)


def repair(ctx: Context, name: str, host: str | None = None) -> list[str]:
    """Make the kernel match the store for network ``name`` (on one host, or all): what was fixed.

    A VXLAN device whose VNI differs from the network's is re-created, interface
    MTUs that differ from the network's are reset, the containers' route caches
    are flushed, and for overlays ``fdb sync`` programs every remote MAC and IP
    again — overwriting stale entries.
    """
    if ctx.store.network(name) is None:  # Docker's network: its sandboxes' devices up, its entries programmed
        fixed = []
        for engine, path, dev in docker_overlay.up_plan(ctx, name):
            if host is None or engine.host == host:
                docker_overlay.set_up(path, dev)
                fixed.append(f"{engine.name}: {dev} in {path} was down, set up")
        changes = entries.sync(ctx, name)
        return [*fixed, f"fdb sync {name}: {len(changes)} FDB/neighbour entries programmed (from Docker's Engine)"]
    rec = ctx.network(name)
    if host is not None:
        ctx.host(host)
    endpoints = [e for e in ctx.store.endpoints(name) if host is None or e.host == host]
    fixed = []
    if rec.driver == "overlay":
        for hn in sorted({e.host for e in endpoints}):
            h = ctx.host(hn)
            sandbox = h.ns_name(sandbox_name(rec))
            vni = vxlan_vni(h, sandbox) if h.has_netns(sandbox) else rec.vni
            if vni != rec.vni:
                set_vni(h, rec, rec.vni)
                fixed.append(f"{hn}: vxlan1 had VNI {vni}, re-created with VNI {rec.vni}")
    for ep in sorted(endpoints, key=lambda e: e.container):
        fixed += _repair_mtu(ctx, rec, ep)
        _flush_route_cache(ctx, ep)
    if endpoints:
        fixed.append(f"route cache flushed in {len(endpoints)} container(s): path MTUs learnt while broken are gone")
    if rec.driver == "overlay":
        changes = entries.sync(ctx, name)
        fixed.append(f"fdb sync {name}: {len(changes)} FDB/neighbour entries programmed")
    return fixed


def _flush_route_cache(ctx: Context, ep: Endpoint) -> None:
    """``ip route flush cache`` in the container: a path MTU learnt from an ICMP "fragmentation
    needed" while the underlay MTU was wrong would otherwise outlive the fix by ten minutes."""
    netns = ctx.container(ep.container).netns
    families = ("ipv4", "ipv6") if ep.ip6 else ("ipv4",)  # IPv6 keeps its path MTUs in its own cache

    def flush() -> None:
        for family in families:
            with open(f"/proc/sys/net/{family}/route/flush", "w") as f:
                f.write("1")

    ctx.host(ep.host).call_in(flush, netns)


def _repair_mtu(ctx: Context, rec: NetworkRecord, ep: Endpoint) -> list[str]:
    h = ctx.host(ep.host)
    container = ctx.container(ep.container)
    side = h.ns_name(sandbox_name(rec)) if rec.driver == "overlay" else None
    fixed = []
    for netns, ifname in ((container.netns, ep.ifname), (side, ep.host_ifname)):
        if rec.driver == "macvlan" and ifname == ep.host_ifname:
            continue
        with h.netlink(netns) as nl:
            index = rtnl_edit.link_index(nl, ifname)
            mtu = next((lk.mtu for lk in read_links(nl) if lk.index == index), rec.mtu)
            if index is not None and mtu != rec.mtu:
                rtnl_edit.set_link(nl, index, mtu=rec.mtu)
                fixed.append(f"{ep.host}: {ifname} of {ep.container} had MTU {mtu}, set to {rec.mtu}")
    return fixed
