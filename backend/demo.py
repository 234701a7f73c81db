"""The field notes' two-host overlay, built in namespaces on this machine.

yy2 (10.193.6.36) and yy3 (10.193.6.37) share an underlay bridge; each has the
libnetwork layout of overlay ``prod`` (VNI 256): a sandbox namespace ``1-<netid>``
holding ``br0`` 172.21.255.254/16 and ``vxlan1`` (created in the host namespace so
its UDP socket lives on the underlay, then moved in; nolearning proxy l2miss
l3miss, no multicast), and a veth to the container (vm3 172.21.0.1 on yy2, vm33
172.21.0.2 on yy3, MTU 1450). No static FDB/ARP entries: as in the notes, vm33
cannot ping vm3 yet. Every object lives in ``vxdemo-*`` namespaces.
"""

from __future__ import annotations

import os

from pyroute2 import IPRoute
from pyroute2 import netns as pr_netns

from backend.errors import NeedRoot, VxrayError
from backend.netns import RUN_NETNS, Scope

PREFIX = "vxdemo-"
NETID = "14ed035dc7"
VNI = 256
HOSTS = {
    "yy2": ("10.193.6.36", "vm3", "172.21.0.1", "02:42:ac:15:00:01"),
    "yy3": ("10.193.6.37", "vm33", "172.21.0.2", "02:42:ac:15:00:02"),
}


def netns_name(host: str, part: str = "", prefix: str = PREFIX) -> str:
    return f"{prefix}{host}" + (f"-{part}" if part else "")


def scope(host: str, prefix: str = PREFIX) -> Scope:
    """The namespaces that make up demo host ``host``."""
    return Scope(host_netns=netns_name(host, prefix=prefix), netns=(f"{netns_name(host, prefix=prefix)}-*",))


def _index(ipr: IPRoute, name: str) -> int:
    return ipr.link_lookup(ifname=name)[0]


def _up(ipr: IPRoute, name: str, address: str | None = None, prefixlen: int = 0, **extra: object) -> None:
    idx = _index(ipr, name)
    if address:
        ipr.addr("add", index=idx, address=address, prefixlen=prefixlen)
    ipr.link("set", index=idx, state="up", **extra)


def _host(prefix: str, name: str, underlay_ip: str, container: str, ip: str, mac: str) -> None:
    host, sandbox, ctr = (netns_name(name, part, prefix) for part in ("", f"1-{NETID}", container))
    underlay = f"{prefix}underlay"
    for ns in (host, sandbox, ctr):
        pr_netns.create(ns)
    with IPRoute(netns=host) as ipr:
        ipr.link("add", ifname="eth0", kind="veth", peer={"ifname": f"ul-{name}", "net_ns_fd": underlay})
        _up(ipr, "lo")
        _up(ipr, "eth0", underlay_ip, 24)
        ipr.link(
            "add", ifname="vxlan1", kind="vxlan", vxlan_id=VNI, vxlan_port=4789, vxlan_local=underlay_ip,
            vxlan_link=_index(ipr, "eth0"), vxlan_learning=0, vxlan_proxy=1, vxlan_l2miss=1, vxlan_l3miss=1,
        )  # fmt: skip
        ipr.link("set", index=_index(ipr, "vxlan1"), net_ns_fd=sandbox)
    with IPRoute(netns=underlay) as ipr:
        _up(ipr, f"ul-{name}", master=_index(ipr, "ul0"))
    with IPRoute(netns=sandbox) as ipr:
        ipr.link("add", ifname="br0", kind="bridge")
        ipr.link("add", ifname="veth2", kind="veth", mtu=1450, peer={"ifname": "eth0", "net_ns_fd": ctr})
        _up(ipr, "lo")
        _up(ipr, "br0", "172.21.255.254", 16)
        _up(ipr, "vxlan1", master=_index(ipr, "br0"))
        _up(ipr, "veth2", master=_index(ipr, "br0"))
    with IPRoute(netns=ctr) as ipr:
        ipr.link("set", index=_index(ipr, "eth0"), address=mac, mtu=1450)
        _up(ipr, "lo")
        _up(ipr, "eth0", ip, 16)


def up(prefix: str = PREFIX) -> None:
    """Build the demo, replacing any earlier one; on failure nothing is left behind."""
    if os.geteuid() != 0:
        raise NeedRoot("to build the demo")
    down(prefix)
    try:
        pr_netns.create(f"{prefix}underlay")
        with IPRoute(netns=f"{prefix}underlay") as ipr:
            ipr.link("add", ifname="ul0", kind="bridge")
            _up(ipr, "ul0")
        for name, spec in HOSTS.items():
            _host(prefix, name, *spec)
    except Exception as exc:
        down(prefix)
        raise VxrayError(f"demo build failed, rolled back: {exc}") from exc


def down(prefix: str = PREFIX) -> None:
    """Remove every namespace named ``prefix*`` (and with them every demo link)."""
    for name in sorted(os.listdir(RUN_NETNS)) if os.path.isdir(RUN_NETNS) else []:
        if name.startswith(prefix):
            pr_netns.remove(name)
