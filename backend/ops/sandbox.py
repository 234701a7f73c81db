"""The overlay's sandbox: the libnetwork layout on one host, built on first use.

A sandbox namespace ``1-<netid>`` per overlay network holds ``br0`` with the
gateway address and a VXLAN device created in the host's namespace — so its UDP
socket lives on the underlay — then moved in and named ``vxlan1``; dstport 4789,
proxy/l2miss/l3miss as Docker sets them, learning only when asked for.
"""

from __future__ import annotations

import ipaddress

from pyroute2 import NetlinkError

from backend import netlink, rtnl_edit
from backend.errors import VxrayError
from backend.hosts import Host, index_of, kernel_error
from backend.ops.txn import Undo
from backend.records import NetworkRecord
from backend.rtnl import read_links
from backend.shellwords import shell_line

VXLAN_PORT = 4789
SANDBOX_BRIDGE, SANDBOX_VXLAN = "br0", "vxlan1"


def sandbox_name(net: NetworkRecord) -> str:
    """The sandbox's local name, as Docker names it under ``<exec-root>/netns``."""
    return f"1-{net.short_id}"


def delete_link(h: Host, ifname: str, netns: str | None) -> None:
    with h.ipr(netns) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if found:
            ipr.link("del", index=found[0])


def ensure_sandbox(h: Host, rec: NetworkRecord, undo: Undo) -> str:
    """The overlay's sandbox on host ``h``, built on first use; its namespace name."""
    sandbox = h.ns_name(sandbox_name(rec))
    if h.has_netns(sandbox):
        return sandbox
    underlay = _underlay_index(h)
    h.add_netns(sandbox_name(rec))
    undo.push(h.remove_netns, sandbox)
    prefix = ipaddress.IPv4Network(rec.subnet).prefixlen
    with h.ipr(sandbox) as ipr:
        ipr.link("add", ifname=SANDBOX_BRIDGE, kind="bridge")
        br = index_of(ipr, SANDBOX_BRIDGE, sandbox)
        ipr.link("set", index=br, mtu=rec.mtu)
        ipr.addr("add", index=br, address=rec.gateway, prefixlen=prefix)
        ipr.link("set", index=br, state="up")
    add_gateways6(h, sandbox, br, rec)
    _add_vxlan(h, rec, rec.vni, underlay, sandbox, undo)
    return sandbox


def add_gateways6(h: Host, netns: str | None, index: int, rec: NetworkRecord) -> None:
    """A dual-stack network's IPv6 gateways on its bridge (``nodad``: the store made them unique). Undone
    with the bridge they are on."""
    with h.netlink(netns) as nl:
        for subnet, gateway in zip(rec.subnets6, rec.gateways6, strict=True):
            try:
                rtnl_edit.add_address(nl, index, gateway, ipaddress.IPv6Network(subnet).prefixlen)
            except netlink.NetlinkError as exc:
                where = netns or f"host {h.name}"
                raise VxrayError(f"cannot add IPv6 gateway {gateway} in {where}: {exc.strerror}") from None


def _underlay_index(h: Host) -> int:
    vtep = h.record.vtep
    if not vtep:
        raise VxrayError(
            f"host {h.name} has no VTEP address: `{shell_line('vxray', 'host', 'add', h.name, '--vtep', 'IP')}`"
        )
    with h.ipr() as ipr:
        underlay = next((a.get("index") for a in ipr.get_addr(address=vtep)), None)
    if underlay is None:
        raise VxrayError(f"VTEP address {vtep} of host {h.name} is on none of its devices")
    return underlay


def _add_vxlan(h: Host, rec: NetworkRecord, vni: int, underlay: int, sandbox: str, undo: Undo) -> None:
    """Create the VXLAN device in the host's namespace, move it into the sandbox as ``vxlan1`` on ``br0``."""
    temp = f"vx-{rec.short_id[:8]}"
    with h.ipr() as ipr:
        try:
            ipr.link(
                "add", ifname=temp, kind="vxlan", vxlan_id=vni, vxlan_port=VXLAN_PORT, vxlan_local=h.record.vtep,
                vxlan_link=underlay, vxlan_learning=int(rec.learning), vxlan_proxy=1, vxlan_l2miss=1,
                vxlan_l3miss=1,
            )  # fmt: skip
        except NetlinkError as exc:
            raise kernel_error(exc, f"cannot create VXLAN device (VNI {vni}) on host {h.name}") from None
        undo.push(delete_link, h, temp, None)
        ipr.link("set", index=index_of(ipr, temp, h.name), net_ns_fd=sandbox)
    with h.ipr(sandbox) as ipr:
        vx = index_of(ipr, temp, sandbox)
        ipr.link("set", index=vx, ifname=SANDBOX_VXLAN, mtu=rec.mtu)
        ipr.link("set", index=vx, master=index_of(ipr, SANDBOX_BRIDGE, sandbox), state="up")


def set_vni(h: Host, rec: NetworkRecord, vni: int) -> None:
    """Give the host's ``vxlan1`` another VNI; the kernel cannot change it in place, so it is re-created.

    Its FDB entries go with the old device: ``fdb sync`` programs them again.
    """
    sandbox = h.ns_name(sandbox_name(rec))
    if not h.has_netns(sandbox):
        raise VxrayError(f"host {h.name} has no sandbox for network {rec.name}")
    underlay, old = _underlay_index(h), vxlan_vni(h, sandbox) or rec.vni
    with Undo() as undo:
        delete_link(h, SANDBOX_VXLAN, sandbox)
        undo.push(_add_vxlan, h, rec, old, underlay, sandbox, Undo())
        _add_vxlan(h, rec, vni, underlay, sandbox, undo)


def vxlan_vni(h: Host, sandbox: str) -> int | None:
    """The VNI of the sandbox's ``vxlan1`` as the kernel has it (None: no such device)."""
    with h.netlink(sandbox) as nl:
        return next((lk.vxlan.vni for lk in read_links(nl) if lk.name == SANDBOX_VXLAN and lk.vxlan), None)
