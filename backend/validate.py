"""Parse what an operator typed, or say in one line which value is wrong.

Every operation validates all of its input here before it changes anything, so
bad input never leaves a half-built network behind.
"""

from __future__ import annotations

import ipaddress
import re

from backend.errors import VxrayError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,15}$")
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
VNI_MAX = 16_777_215


def name(value: str, what: str = "name") -> str:
    if not _NAME.match(value):
        raise VxrayError(f"invalid {what} {value!r}: use letters, digits, '_', '.', '-' (at most 48)")
    return value


def ifname(value: str) -> str:
    if not _IFNAME.match(value) or value in (".", ".."):
        raise VxrayError(f"invalid device name {value!r}: at most 15 characters, no spaces or '/'")
    return value


def mac(value: str) -> str:
    if not _MAC.match(value):
        raise VxrayError(f"invalid MAC address {value!r}: expected six hex pairs like 02:42:ac:15:00:01")
    if int(value[:2], 16) & 1:
        raise VxrayError(f"invalid MAC address {value!r}: a multicast address cannot be a station")
    return value.lower()


def ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise VxrayError(f"invalid IPv4 address {value!r}") from None


def interface(value: str) -> ipaddress.IPv4Interface:
    """``ADDRESS/PREFIX`` as a device holds it: a unicast address that is not its subnet's network or broadcast."""
    if "/" not in value:
        raise VxrayError(f"invalid address {value!r}: expected ADDRESS/PREFIX like 10.0.0.1/24")
    try:
        iface = ipaddress.IPv4Interface(value)
    except ValueError as exc:
        raise VxrayError(f"invalid address {value!r}: {exc}") from None
    net = iface.network
    if (
        iface.ip.is_multicast
        or iface.ip.is_unspecified
        or iface.ip.is_loopback
        or (net.prefixlen < 31 and iface.ip in (net.network_address, net.broadcast_address))
    ):
        raise VxrayError(f"invalid address {value!r}: not a usable address of {net}")
    return iface


def cidr(value: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        raise VxrayError(f"invalid subnet {value!r}: {exc}") from None
    if net.prefixlen > 30:
        raise VxrayError(f"invalid subnet {value!r}: /{net.prefixlen} leaves no room for containers")
    return net


def _number(value: str | int, low: int, high: int, what: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise VxrayError(f"invalid {what} {value!r}: expected a number {low}-{high}") from None
    if not low <= number <= high:
        raise VxrayError(f"invalid {what} {value!r}: outside {low}-{high}")
    return number


def vni(value: str | int) -> int:
    return _number(value, 1, VNI_MAX, "VNI")


def mtu(value: str | int) -> int:
    return _number(value, 68, 65535, "MTU")


def port(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise VxrayError(f"invalid port {value!r}: expected 1-65535")
    return int(value)


def port_mapping(value: str) -> tuple[int, int, str]:
    """``HOSTPORT:PORT[/tcp|udp]`` as Docker's ``-p`` takes it."""
    spec, _, proto = value.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise VxrayError(f"invalid protocol {proto!r} in {value!r}: tcp or udp")
    host, sep, ctr = spec.partition(":")
    if not sep:
        raise VxrayError(f"invalid port mapping {value!r}: expected HOSTPORT:PORT[/tcp|udp]")
    return port(host), port(ctr), proto


def ipv6(value: str) -> str:
    """A unicast IPv6 address, in its canonical (compressed) text: the store's keys and the kernel's answers agree."""
    try:
        addr = ipaddress.IPv6Address(value)
    except ValueError:
        raise VxrayError(f"invalid IPv6 address {value!r}") from None
    if addr.is_multicast or addr.is_unspecified or addr.is_loopback:
        raise VxrayError(f"invalid IPv6 address {value!r}: not a unicast address")
    return str(addr)


def ip(value: str) -> str:
    """An IPv4 or IPv6 address (neighbour entries take either): canonical text."""
    return ipv6(value) if ":" in value else ipv4(value)


def subnet(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A network's subnet of either family: IPv4 as ``cidr``; IPv6 unicast, not link-local (the kernel's own
    fe80::/64 is on every device), at most /126 so a gateway and containers fit."""
    if ":" not in value:
        return cidr(value)
    try:
        net = ipaddress.IPv6Network(value, strict=True)
    except ValueError as exc:
        raise VxrayError(f"invalid subnet {value!r}: {exc}") from None
    if net.prefixlen > 126:
        raise VxrayError(f"invalid subnet {value!r}: /{net.prefixlen} leaves no room for containers")
    if net.is_multicast or net.is_link_local or net.is_loopback or net.is_unspecified:
        raise VxrayError(f"invalid subnet {value!r}: not a unicast subnet (multicast, link-local or loopback)")
    return net


def ip6_in(value: str, subnet: ipaddress.IPv6Network) -> str:
    """An IPv6 address of ``subnet`` a host may hold: not its Subnet-Router anycast address (all zeros)."""
    addr = ipaddress.IPv6Address(ipv6(value))
    if addr not in subnet or addr == subnet.network_address:
        raise VxrayError(f"IPv6 address {value} is not a usable address of subnet {subnet}")
    return str(addr)


def ip_in(value: str, subnet: ipaddress.IPv4Network) -> str:
    ip = ipaddress.IPv4Address(ipv4(value))
    if ip not in subnet or ip in (subnet.network_address, subnet.broadcast_address):
        raise VxrayError(f"IP {value} is not a usable address of subnet {subnet}")
    return str(ip)
