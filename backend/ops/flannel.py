"""``network create -d flannel``: flannel's vxlan backend, programmed as flannel programs it.

Each host leases a /24 of the network (``-o leases=node1=172.21.31.0/24,…``, or
the next free one) and gets a bridge (``cni0``) holding the lease's first address,
and a VXLAN device ``flannel.<VNI>`` (UDP 8472, no learning) addressed with the
lease's network address. For every other host it gets what flanneld writes: a
route to that host's lease via its ``flannel.<VNI>`` address (onlink), a permanent
neighbour entry giving that address the remote device's MAC, and an FDB entry
sending the MAC to the remote VTEP. Packets are routed, not bridged, between
hosts — so ``ip_forward`` and the FORWARD chain decide, as in the field notes.

With ``-o etcd=etcd://HOST:2379[,…]/coreos.com/network`` the network's desired
state is flannel's own: the leases flanneld keeps in etcd
(``backend.store.flannel_layout``), which ``fdb sync`` programs and the doctor
checks the hosts against; without it, the leases vxray gave (``layout``).
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Any

from pyroute2 import NetlinkError

from backend import validate
from backend.errors import VxrayError
from backend.hosts import Host, index_of, kernel_error
from backend.ops.changes import Change, apply
from backend.ops.context import Context
from backend.ops.hostops import enable_forwarding
from backend.ops.rules import Rules
from backend.ops.sandbox import delete_link
from backend.ops.txn import Undo
from backend.records import HostRecord, NetworkRecord
from backend.shellwords import shell_line
from backend.store import flannel_layout
from backend.store.flannel_layout import Layout, Lease

FLANNEL_PORT = 8472  # the kernel's default VXLAN port, which flannel keeps
LEASE_PREFIX = 24
NUD_PERMANENT, NTF_SELF, NUD_NOARP = 0x80, 0x02, 0x40
RTNH_F_ONLINK = 4


def device(rec: NetworkRecord) -> str:
    return f"flannel.{rec.vni}"


def parse_leases(value: str, subnet: ipaddress.IPv4Network) -> dict[str, ipaddress.IPv4Network]:
    """``node1=172.21.31.0/24,node2=…`` -> {host: lease}, each inside ``subnet``."""
    leases = {}
    for item in filter(None, value.split(",")):
        host, eq, cidr = item.partition("=")
        if not eq:
            raise VxrayError(f"invalid lease {item!r}: HOST=CIDR")
        lease = validate.cidr(cidr)
        if not lease.subnet_of(subnet):
            raise VxrayError(f"lease {lease} of host {host} is not inside {subnet}")
        leases[host] = lease
    return leases


def leases(rec: NetworkRecord) -> dict[str, ipaddress.IPv4Network]:
    return parse_leases(rec.options.get("leases", ""), ipaddress.IPv4Network(rec.subnet))


def host_subnet(rec: NetworkRecord, host: str) -> tuple[ipaddress.IPv4Network, str]:
    """The lease of ``host`` and its gateway (the bridge's address)."""
    lease = leases(rec).get(host)
    if lease is None:
        raise VxrayError(f"host {host} has no lease on flannel network {rec.name}")
    return lease, str(lease.network_address + 1)


def vtep_mac(rec: NetworkRecord, host: str) -> str:
    """A stable, locally administered MAC for ``flannel.<VNI>`` on ``host`` (flanneld keeps it in its lease)."""
    raw = bytearray(hashlib.sha1(f"{rec.id}/{host}".encode()).digest()[:6])
    raw[0] = (raw[0] & 0xFE) | 0x02
    return raw.hex(":")


def plan_leases(ctx: Context, rec: NetworkRecord, wanted: str) -> dict[str, ipaddress.IPv4Network]:
    """Every host with a VTEP gets its wanted lease or the next free /24 of the network."""
    subnet = ipaddress.IPv4Network(rec.subnet)
    hosts = sorted(h.name for h in ctx.store.hosts() if h.vtep)
    chosen = parse_leases(wanted, subnet)
    for name in chosen:
        if name not in hosts:
            raise VxrayError(f"lease for {name!r}: no such host with a VTEP address")
    if not hosts:
        raise VxrayError("a flannel network needs hosts with VTEP addresses (`vxray host add … --vtep IP`)")
    free = (s for s in subnet.subnets(new_prefix=max(LEASE_PREFIX, subnet.prefixlen))
            if not any(s.overlaps(c) for c in chosen.values()))  # fmt: skip
    for name in hosts:
        if name not in chosen:
            lease = next(free, None)
            if lease is None:
                raise VxrayError(f"flannel network {rec.name}: no /{LEASE_PREFIX} left in {subnet} for host {name}")
            chosen[name] = lease
    return dict(sorted(chosen.items()))


def build(ctx: Context, rec: NetworkRecord, undo: Undo) -> None:
    """Every host's bridge, VXLAN device and rules, then each host's routes/ARP/FDB to the others."""
    all_leases = leases(rec)
    for name, lease in all_leases.items():
        _build_host(ctx.host(name), rec, lease, undo)
    for name in all_leases:
        h = ctx.host(name)
        with h.ipr() as ipr:
            dev = index_of(ipr, device(rec), h.name)
            for other, lease in all_leases.items():
                if other == name:
                    continue
                via, mac = str(lease.network_address), vtep_mac(rec, other)
                vtep = ctx.host(other).record.vtep
                try:
                    ipr.neigh("replace", dst=via, lladdr=mac, ifindex=dev, state=NUD_PERMANENT)
                    ipr.fdb("replace", ifindex=dev, lladdr=mac, dst=vtep, flags=NTF_SELF,
                            state=NUD_PERMANENT | NUD_NOARP)  # fmt: skip
                    ipr.route("replace", dst=str(lease), gateway=via, oif=dev, flags=RTNH_F_ONLINK)
                except NetlinkError as exc:
                    raise kernel_error(exc, f"cannot program the route to {lease} on host {name}") from None


def _rules(rec: NetworkRecord) -> list[tuple[str, str, list[str]]]:
    """flanneld's: forward the network's traffic, masquerade what leaves it."""
    net = rec.subnet
    return [
        ("filter", "FORWARD", ["-s", net, "-j", "ACCEPT"]),
        ("filter", "FORWARD", ["-d", net, "-j", "ACCEPT"]),
        ("nat", "POSTROUTING", ["-s", net, "!", "-d", net, "-j", "MASQUERADE"]),
    ]


def _build_host(h: Host, rec: NetworkRecord, lease: ipaddress.IPv4Network, undo: Undo) -> None:
    vtep, br, dev = h.record.vtep, rec.options["bridge_name"], device(rec)
    with h.ipr() as ipr:
        underlay = next((a.get("index") for a in ipr.get_addr(address=vtep)), None)
        if underlay is None:
            raise VxrayError(f"VTEP address {vtep} of host {h.name} is on none of its devices")
        for name in (br, dev):
            if ipr.link_lookup(ifname=name):
                raise VxrayError(f"device {name} already exists on host {h.name}")
        try:
            ipr.link("add", ifname=br, kind="bridge")
            undo.push(delete_link, h, br, None)
            ipr.link("add", ifname=dev, kind="vxlan", vxlan_id=rec.vni, vxlan_port=FLANNEL_PORT, vxlan_local=vtep,
                     vxlan_link=underlay, vxlan_learning=0)  # fmt: skip
            undo.push(delete_link, h, dev, None)
        except NetlinkError as exc:
            raise kernel_error(exc, f"cannot create {br}/{dev} on host {h.name}") from None
        b, d = index_of(ipr, br, h.name), index_of(ipr, dev, h.name)
        ipr.link("set", index=b, mtu=rec.mtu, state="up")
        ipr.addr("add", index=b, address=str(lease.network_address + 1), prefixlen=lease.prefixlen)
        ipr.link("set", index=d, address=vtep_mac(rec, h.name), mtu=rec.mtu, state="up")
        ipr.addr("add", index=d, address=str(lease.network_address), prefixlen=32)
    rules = Rules(h, undo)
    for table, chain, spec in _rules(rec):
        rules.add(table, chain, spec)
    enable_forwarding(h, undo)


def remove(ctx: Context, rec: NetworkRecord) -> None:
    for name in leases(rec):
        if ctx.store.host(name) is None:
            continue
        h = ctx.host(name)
        rules = Rules(h, Undo())
        for table, chain, spec in _rules(rec):
            rules.delete(table, chain, spec)
        delete_link(h, device(rec), None)
        delete_link(h, rec.options["bridge_name"], None)


def layout(rec: NetworkRecord, hosts: list[HostRecord]) -> Layout:
    """The network as flannel keeps it: read from flannel's etcd when the network names one (``-o etcd=``),
    else the leases vxray gave, each with its host's VTEP and the MAC vxray gave its ``flannel.<VNI>``."""
    if "etcd" in rec.options:
        return flannel_layout.read(rec.name, rec.options["etcd"])
    vteps = {h.name: h.vtep for h in hosts}
    found = tuple(Lease(str(lease), vtep, vtep_mac(rec, host), f"leases={host}")
                  for host, lease in leases(rec).items() if (vtep := vteps.get(host)))  # fmt: skip
    return Layout(rec.name, "", rec.subnet, rec.vni or 1, FLANNEL_PORT, found)


@dataclass(frozen=True)
class RouteChange:
    """flanneld's route to a remote lease: via the lease's network address, onlink, on ``flannel.<VNI>``."""

    host: str
    dst: str
    via: str
    dev: str
    netns: str | None = None
    kind: str = "route"

    @property
    def command(self) -> str:
        return shell_line("ip", "route", "replace", self.dst, "via", self.via, "dev", self.dev, "onlink")

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "netns": None, "kind": "route", "action": "replace", "dst": self.dst,
                "via": self.via, "dev": self.dev, "command": self.command}  # fmt: skip


def sync_plan(ctx: Context, rec: NetworkRecord) -> list[Change | RouteChange]:
    """What flanneld programs on every host of the network for every other host's lease: the ARP entry of the
    lease's network address, the FDB entry of its VtepMAC, the route to its subnet."""
    own = {host: str(lease) for host, lease in leases(rec).items()}
    hosts = [h for h in ctx.store.hosts() if h.vtep and h.name in own]
    want = layout(rec, ctx.store.hosts())
    plan: list[Change | RouteChange] = []
    for h in sorted(hosts, key=lambda h: h.name):
        for lease in want.leases:  # its own lease is the host's, whatever PublicIP a stale copy in etcd says
            if lease.public_ip == h.vtep or lease.subnet == own[h.name] or lease.vtep_mac is None:
                continue
            via = str(ipaddress.IPv4Network(lease.subnet).network_address)
            plan += [Change(h.name, None, "neigh", "replace", lease.vtep_mac, want.device, ip=via),
                     Change(h.name, None, "fdb", "replace", lease.vtep_mac, want.device, dst=lease.public_ip),
                     RouteChange(h.name, lease.subnet, via, want.device)]  # fmt: skip
    return plan


def sync(ctx: Context, rec: NetworkRecord, dry_run: bool = False) -> list[Change | RouteChange]:
    """``fdb sync`` on a flannel network: the plan, applied unless ``dry_run``."""
    plan = sync_plan(ctx, rec)
    for change in [] if dry_run else plan:
        h = ctx.host(change.host)
        if isinstance(change, Change):
            apply(h, change)
            continue
        with h.ipr() as ipr:
            try:
                ipr.route("replace", dst=change.dst, gateway=change.via, oif=index_of(ipr, change.dev, h.name),
                          flags=RTNH_F_ONLINK)  # fmt: skip
            except NetlinkError as exc:
                raise kernel_error(exc, f"cannot program the route to {change.dst} on host {h.name}") from None
    return plan
