"""The rtnetlink writes that attaching a container repeats: veth, link settings, address, route.

pyroute2 spends over a millisecond of asyncio and encoding per request, so a lab
of a hundred containers (about ten requests each) took longer than a shell script
of ``ip`` commands. These few messages, packed with ``struct`` on a
``NetlinkSocket`` opened in the right namespace, cost tens of microseconds (see
``benchmarks/lab_up.py``). Everything rarer — VXLAN devices, FDB entries, bridges —
stays with pyroute2.
"""

from __future__ import annotations

import errno
import socket
import struct

from backend.errors import VxrayError
from backend.netlink import NLM_F_CREATE, NLM_F_EXCL, NetlinkError, NetlinkSocket, nla
from backend.rtnl import (
    IFINFOMSG,
    IFLA_ADDRESS,
    IFLA_IFNAME,
    IFLA_INFO_DATA,
    IFLA_INFO_KIND,
    IFLA_LINKINFO,
    IFLA_MASTER,
    IFLA_MTU,
    RTM_GETLINK,
    RTM_NEWLINK,
    RTMSG,
    read_routes,
)

RTM_NEWADDR, RTM_NEWROUTE = 20, 24
IFLA_NET_NS_FD = 28
VETH_INFO_PEER = 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFA_F_NODAD = 0x02
RTA_DST, RTA_GATEWAY = 1, 5
IFF_UP = 0x1
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1


def _ifinfo(index: int = 0, up: bool | None = None) -> bytes:
    flags = IFF_UP if up else 0
    change = IFF_UP if up is not None else 0
    return IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change)


def _name(ifname: str) -> bytes:
    return nla(IFLA_IFNAME, ifname.encode() + b"\0")


def link_index(nl: NetlinkSocket, ifname: str) -> int | None:
    """The ifindex of ``ifname`` in the socket's namespace, or None."""
    try:
        replies = nl.request(RTM_GETLINK, _ifinfo() + _name(ifname))
    except NetlinkError as exc:
        if exc.errno == errno.ENODEV:
            return None
        raise
    return next((IFINFOMSG.unpack_from(data, off)[2] for kind, data, off, _ in replies if kind == RTM_NEWLINK), None)


def add_veth(nl: NetlinkSocket, ifname: str, peer: str, peer_netns_fd: int) -> None:
    """``ip link add IFNAME type veth peer name PEER netns FD``; fails if IFNAME exists."""
    peer_msg = _ifinfo() + _name(peer) + nla(IFLA_NET_NS_FD, struct.pack("=I", peer_netns_fd))
    info = nla(IFLA_INFO_KIND, b"veth\0") + nla(IFLA_INFO_DATA, nla(VETH_INFO_PEER, peer_msg))
    nl.request(RTM_NEWLINK, _ifinfo() + _name(ifname) + nla(IFLA_LINKINFO, info), NLM_F_CREATE | NLM_F_EXCL)


def set_link(
    nl: NetlinkSocket, index: int, *, mtu: int | None = None, master: int | None = None, mac: str | None = None,
    up: bool | None = None,
) -> None:  # fmt: skip
    """``ip link set`` of the given settings, in one message."""
    body = _ifinfo(index, up)
    if mtu is not None:
        body += nla(IFLA_MTU, struct.pack("=I", mtu))
    if master is not None:
        body += nla(IFLA_MASTER, struct.pack("=I", master))
    if mac is not None:
        body += nla(IFLA_ADDRESS, bytes.fromhex(mac.replace(":", "")))
    nl.request(RTM_NEWLINK, body)


def _family(ip: str) -> tuple[int, bytes]:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    return family, socket.inet_pton(family, ip)


def add_address(nl: NetlinkSocket, index: int, ip: str, prefixlen: int) -> None:
    """``ip addr add IP/PREFIX dev INDEX``; an IPv6 address ``nodad``, as Docker adds it: the store already
    made it unique, and a tentative address would drop the first seconds of traffic."""
    family, raw = _family(ip)
    flags = IFA_F_NODAD if family == socket.AF_INET6 else 0
    body = struct.pack("=BBBBI", family, prefixlen, flags, RT_SCOPE_UNIVERSE, index)
    nl.request(RTM_NEWADDR, body + nla(IFA_LOCAL, raw) + nla(IFA_ADDRESS, raw), NLM_F_CREATE | NLM_F_EXCL)


def add_route(nl: NetlinkSocket, dst: str, prefixlen: int, gateway: str) -> None:
    """``ip route add DST/PREFIX via GATEWAY`` in the main table (``ip -6 route`` for an IPv6 gateway)."""
    family, via = _family(gateway)
    body = RTMSG.pack(family, prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
    if prefixlen:
        body += nla(RTA_DST, socket.inet_pton(family, dst))
    nl.request(RTM_NEWROUTE, body + nla(RTA_GATEWAY, via), NLM_F_CREATE | NLM_F_EXCL)


def has_default_route(nl: NetlinkSocket, ipv6: bool = False) -> bool:
    """Whether the main table has a default route of the family (the container's first network gave it one)."""
    return any(
        r.dst == "default" and r.table == RT_TABLE_MAIN and (":" in (r.gateway or "")) == ipv6
        for r in read_routes(nl, {})
    )


def index_or_error(nl: NetlinkSocket, ifname: str, where: str) -> int:
    index = link_index(nl, ifname)
    if index is None:
        raise VxrayError(f"no device {ifname} in {where}")
    return index
