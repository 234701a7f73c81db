"""Read the forwarding sysctls of the namespace the calling thread is in.

IPv4's per-device knobs come from one netconf dump on the namespace's netlink
socket (``ip -j netconf``): opening ``/proc/sys`` files costs ~25 µs each, a
thousand of them on a host with 200 containers. Only the bridge's knob, which
netconf does not carry, is read from ``/proc/sys/net/bridge`` — a file that answers
for the namespace of the task that opens it, so a thread inside a namespace
(``backend.nsenter``) reads that namespace's value.
"""

from __future__ import annotations

import os
import socket
import struct

from backend.model import Sysctls
from backend.netlink import I32, NetlinkSocket, attrs, nla

RTM_GETNETCONF = 82
NETCONFA_IFINDEX, NETCONFA_FORWARDING, NETCONFA_RP_FILTER = 1, 2, 3
IFINDEX_ALL, IFINDEX_DEFAULT = -1, -2
ALL = struct.pack("=i", IFINDEX_ALL)


def _read_int(path: str) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return int(os.read(fd, 64))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def _netconf(nl: NetlinkSocket, family: int) -> tuple[dict[int, int], dict[int, int]]:
    """(forwarding, rp_filter) by ifindex (IFINDEX_ALL, IFINDEX_DEFAULT included) for one address family."""
    forwarding: dict[int, int] = {}
    rp_filter: dict[int, int] = {}
    for _kind, data, off, end in nl.dump(RTM_GETNETCONF, struct.pack("=Bxxx", family)):
        a = attrs(data, off + 4, end)
        if NETCONFA_IFINDEX not in a:
            continue
        index = I32.unpack_from(data, a[NETCONFA_IFINDEX][0])[0]
        if NETCONFA_FORWARDING in a:
            forwarding[index] = I32.unpack_from(data, a[NETCONFA_FORWARDING][0])[0]
        if NETCONFA_RP_FILTER in a:
            rp_filter[index] = I32.unpack_from(data, a[NETCONFA_RP_FILTER][0])[0]
    return forwarding, rp_filter


def _ip6_forwarding(nl: NetlinkSocket) -> int | None:
    """``net.ipv6.conf.all.forwarding`` by one netconf get (not a dump of every device); None without IPv6."""
    try:
        replies = nl.request(RTM_GETNETCONF, struct.pack("=Bxxx", socket.AF_INET6) + nla(NETCONFA_IFINDEX, ALL))
    except OSError:  # IPv6 disabled in the namespace
        return None
    for _kind, data, off, end in replies:
        a = attrs(data, off + 4, end)
        if NETCONFA_FORWARDING in a:
            return I32.unpack_from(data, a[NETCONFA_FORWARDING][0])[0]
    return None


def read_sysctls(nl: NetlinkSocket, names: dict[int, str]) -> Sysctls:
    """``names``: the namespace's devices by index, to key ``rp_filter`` by device name."""
    forwarding, rp_filter = _netconf(nl, socket.AF_INET)
    nf_call = _read_int("/proc/sys/net/bridge/bridge-nf-call-iptables")
    forward, forward6 = forwarding.get(IFINDEX_ALL), _ip6_forwarding(nl)
    return Sysctls(
        ip_forward=None if forward is None else bool(forward),
        rp_filter_all=rp_filter.get(IFINDEX_ALL),
        rp_filter_default=rp_filter.get(IFINDEX_DEFAULT),
        rp_filter={names[i]: v for i, v in rp_filter.items() if i in names},
        bridge_nf_call_iptables=None if nf_call is None else bool(nf_call),
        ip6_forward=None if forward6 is None else bool(forward6),
        accept_ra=_read_int("/proc/sys/net/ipv6/conf/all/accept_ra") if forward6 is not None else None,
    )
