"""A lab's topology file (TOML) as pure data, with errors that name the line and field.

A topology file may come from anyone, and a lab is built in the kernel step by
step, so everything is checked here before the first namespace exists: every
field's type, names (a segment is a device: 15 characters), addresses, subnets,
MACs, numbers and every reference (a container's host, an attachment's network).
What is left to the build is what only the kernel or an engine can refuse.
tomllib gives no positions, so an error is placed by ``tomlfile.Locator`` at the
table it belongs to (the n-th ``[[containers]]``, ``[exercise]`` …) and the key's
line within it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Network
from typing import Any, TypeVar

from backend import validate
from backend.errors import VxrayError
from backend.ops.containers import MODES
from backend.ops.networks import DRIVERS, DUAL_STACK, MACVLAN_MODES, OPTIONS, SPANNING, plan_subnets
from backend.store.flannel_layout import check_url
from backend.tomlfile import Locator, loads, shown


@dataclass(frozen=True)
class HostSpec:
    name: str
    underlay: str  # address/prefix on the underlay segment, also the host's VTEP
    segment: str | None = None  # None: the first segment (or the lab's single implicit one)
    gateway: str | None = None  # None: the router on its segment, if there is exactly one
    engine: str = "netns"  # "docker": a real Docker Engine runs in the host and builds its networks and containers


@dataclass(frozen=True)
class RouterPort:
    segment: str
    address: str


@dataclass(frozen=True)
class RouterSpec:
    """A namespace that forwards between underlay segments, as the swarm example's router does."""

    name: str
    interfaces: tuple[RouterPort, ...]


FAULT_FIELDS = {  # kind -> the fields it needs, beyond ``kind``
    "fdb-remove": ("host", "network", "container"),
    "stale-fdb": ("host", "network", "container", "dst"),
    "wrong-vni": ("host", "network", "vni"),
    "mtu": ("host", "mtu"),
    "ip-forward-off": ("host",),
    "forward-drop": ("host",),
    "udp-drop": ("host",),
    # native nftables, written with `nft` in the host's namespace (or a network's sandbox there): see NFT_FAULTS
    "nft-udp-drop": ("host",),
    "nft-forward-drop": ("host",),
    "nft-reply-drop": ("host",),
    "nft-bridge-drop": ("host",),
    "nft-ingress-drop": ("host",),
    # Docker hosts: faults injected with plain ip/bridge/iptables into what Docker programmed
    "proxy-arp-remove": ("host", "network", "container"),
    "link-down": ("host", "network"),
    "wrong-arp": ("container", "dst"),
    "port-accept-remove": ("host", "container"),
}
NFT_FAULTS = {  # kind -> (the families it may be written in, the first is the default; its default priority)
    "nft-udp-drop": (("inet", "ip", "ip6"), 0),  # an input chain dropping UDP `port` (VXLAN's)
    "nft-forward-drop": (("inet", "ip", "ip6"), -10),  # a forward chain dropping all, before iptables' filter (0)
    "nft-reply-drop": (("inet", "ip", "ip6"), 0),  # a forward chain, policy drop, accepting only `ct state new`
    "nft-bridge-drop": (("bridge",), 0),  # a bridge forward chain dropping bridged IPv4 (of `network`'s sandbox)
    "nft-ingress-drop": (("netdev",), 0),  # an ingress chain on `device` dropping UDP `port`
}
DOCKER_FAULTS = ("fdb-remove", "stale-fdb", "proxy-arp-remove", "udp-drop", "link-down", "wrong-arp",
                 "port-accept-remove")  # fmt: skip
DOCKER_ONLY = ("proxy-arp-remove", "link-down", "wrong-arp", "port-accept-remove")
NETNS_FAULTS = tuple(kind for kind in FAULT_FIELDS if kind not in DOCKER_ONLY)
LAB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,23}$")  # no dots: `lab down` sweeps the namespaces `NAME.*`
LAB_NAME_RULE = "letters, digits, '_', '-' (at most 24)"


@dataclass(frozen=True)
class FaultSpec:
    """A fault injected after the build, through the operations, for an exercise to find."""

    kind: str
    host: str | None = None  # a host or a router
    network: str | None = None
    container: str | None = None
    dst: str | None = None  # stale-fdb: the wrong VTEP; wrong-arp: the container whose ARP entry goes wrong
    vni: int | None = None  # wrong-vni: the VNI the host's VXLAN device gets
    mtu: int | None = None  # mtu: the host's underlay MTU
    device: str = "eth0"  # mtu: which device (link-down: vxlan0 of the network's sandbox)
    port: int = 4789  # udp-drop: which UDP port the host's INPUT drops (nft-udp-drop, nft-ingress-drop too)
    family: str | None = None  # nft-*: the table's family (None: the kind's default, NFT_FAULTS)
    priority: int | None = None  # nft-*: the base chain's priority (None: the kind's default)


@dataclass(frozen=True)
class Attachment:
    network: str
    ip: str | None = None
    mac: str | None = None
    ip6: str | None = None  # dual-stack networks: None takes the first free IPv6 address


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    driver: str
    subnet: str
    gateway: str | None = None
    vni: int | None = None
    mtu: int | None = None
    learning: bool = False
    internal: bool = False
    host: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    sync: bool = False  # overlays: program every host's FDB/ARP after the build (`fdb sync`), as a control plane
    # dual stack: ``subnet = ["172.21.0.0/16", "fd00:21::/64", …]`` (``gateway`` likewise may list one per subnet)
    subnets6: tuple[str, ...] = ()
    gateways6: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    host: str
    networks: tuple[Attachment, ...] = ()
    mode: str = "bridge"
    ports: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabSpec:
    name: str
    description: str
    hosts: tuple[HostSpec, ...]
    networks: tuple[NetworkSpec, ...] = ()
    containers: tuple[ContainerSpec, ...] = ()
    goal: tuple[tuple[str, str], ...] = ()
    solution: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()  # underlay L2 segments; none declared: one segment ``ul0``
    routers: tuple[RouterSpec, ...] = ()
    faults: tuple[FaultSpec, ...] = ()
    size: int | None = None  # ICMP payload of the reachability pings (DF set); None: ping's default

    def segment_of(self, host: HostSpec) -> str:
        return host.segment or (self.segments[0] if self.segments else "ul0")


TOP_KEYS = ("lab", "segments", "routers", "hosts", "networks", "containers", "faults", "exercise")
ENGINES = ("netns", "docker")
DOCKER_DRIVERS = ("overlay", "bridge", "macvlan")
OPTION_CHECKS: dict[str, Callable[[str], object]] = {
    "bridge_name": validate.ifname, "nic": validate.ifname, "parent": validate.ifname, "leases": str,
    "etcd": check_url,
    "macvlan_mode": lambda mode: _one_of(mode, MACVLAN_MODES, "macvlan_mode"),
}  # fmt: skip
_MISSING = object()
T = TypeVar("T")


def _one_of(value: str, allowed: tuple[str, ...], what: str = "value") -> str:
    if value not in allowed:
        raise VxrayError(f"unknown {what} {value!r} (one of {', '.join(allowed)})")
    return value


class _Table:
    """One table of the file (``hosts[2]``, ``[exercise]``, ``routers[0].interfaces[1]``): its fields typed and
    checked, every error placed at the field's line and named by its path."""

    def __init__(self, loc: Locator, section: str | None, index: int | None, data: Any, keys: tuple[str, ...],
                 parent: tuple[str, str] | None = None) -> None:  # fmt: skip
        self.loc, self.section, self.index, self.parent = loc, section, index, parent
        if not isinstance(data, dict):
            raise self.fail(None, f"expected a table, got {shown(data)}")
        for key in data:
            if key not in keys:
                raise self.fail(key, f"unknown field (expected one of {', '.join(sorted(keys))})")
        self.data: dict[str, Any] = data

    def fail(self, key: str | None, message: str) -> VxrayError:
        if self.parent is None:
            return self.loc.error(self.section, self.index, key, message)
        field, sub = self.parent  # a table inline in a list: located at its list's line
        return self.loc.error(self.section, self.index, field, message, sub + (f".{key}" if key else ""))

    def value(self, key: str, kind: type[T], what: str, required: bool = False) -> T | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self.fail(None, f"missing {key!r}")
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(key, f"expected {what}, got {shown(value)}")
        return value

    def text(self, key: str, required: bool = False) -> str | None:
        value = self.value(key, str, "a string", required)
        if value is not None and not value.isprintable():
            raise self.fail(key, f"{shown(value)} holds a control character")
        return value

    def required(self, key: str) -> str:
        return self.text(key, required=True) or ""

    def flag(self, key: str) -> bool:
        return bool(self.value(key, bool, "true or false"))

    def one_or_more(self, key: str) -> tuple[str, ...]:
        """A string, or a list of strings (``subnet``/``gateway`` of a dual-stack network)."""
        value = self.data.get(key)
        return (self.text(key) or "",) if isinstance(value, str) else self.texts(key)

    def texts(self, key: str) -> tuple[str, ...]:
        values = self.value(key, list, "a list of strings") or []
        bad = next((v for v in values if not isinstance(v, str) or not v.isprintable()), _MISSING)
        if bad is not _MISSING:
            raise self.fail(key, f"expected a list of strings, got {shown(bad)} in it")
        return tuple(values)

    def tables(self, key: str, keys: tuple[str, ...]) -> list[_Table]:
        """The inline tables of list ``key`` (``networks = [{ network = "prod", ip = "…" }]``)."""
        items = self.value(key, list, "a list of { … } tables") or []
        return [_Table(self.loc, self.section, self.index, item, keys, (key, f"[{j}]")) for j, item in enumerate(items)]

    def checked(self, key: str, check: Callable[[Any], T], value: Any) -> T:
        """``value`` through one of ``backend.validate``'s checks, its error placed at ``key``."""
        try:
            return check(value)
        except VxrayError as exc:
            raise self.fail(key, str(exc)) from None

    def name(self, what: str) -> str:
        return self.checked("name", lambda v: validate.name(v, what), self.required("name"))

    def choice(self, key: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.text(key)
        return default if value is None else self.checked(key, lambda v: _one_of(v, allowed, key), value)


def _sections(top: _Table, section: str, keys: tuple[str, ...]) -> list[_Table]:
    """Every ``[[section]]`` of the file."""
    items = top.value(section, list, f"[[{section}]] tables") or []
    return [_Table(top.loc, section, i, item, keys) for i, item in enumerate(items)]


def _unique(tables: list[_Table], names: list[str], what: str, taken: frozenset[str] = frozenset()) -> None:
    seen = set(taken)
    for table, name in zip(tables, names, strict=True):
        if name in seen:
            raise table.fail("name", f"{name!r} is already the name of another {what}")
        seen.add(name)


def parse(text: str, source: str = "lab.toml") -> LabSpec:
    """The lab in ``text`` with every field checked — types, names, addresses, references — so a lab that parses
    fails to build only where the kernel or an engine refuses; each error names ``source``, the line and the field."""
    loc = Locator(text, source)
    top = _Table(loc, None, None, loads(text, source), TOP_KEYS)
    lab = _Table(loc, "lab", None, top.data.get("lab", {}), ("name", "description"))
    name = lab.checked("name", _lab_name, lab.required("name"))
    segments = _segments(top)
    routers = _routers(top, set(segments) or {"ul0"})
    hosts = _hosts(top, segments, routers)
    docker = hosts[0].engine == "docker"
    networks = _networks(top, {h.name for h in hosts}, docker)
    containers = _containers(top, {h.name for h in hosts}, {n.name: _subnets(n) for n in networks})
    machines = {h.name for h in hosts} | {r.name for r in routers}
    faults = tuple(_fault(t, machines, {n.name for n in networks}, {c.name for c in containers}, docker)
                   for t in _sections(top, "faults", tuple(FaultSpec.__dataclass_fields__)))  # fmt: skip
    exercise = _Table(loc, "exercise", None, top.data.get("exercise", {}), ("goal", "solution", "size"))
    return LabSpec(name, lab.text("description") or "", hosts, networks, containers,
                   _goal(exercise, {c.name for c in containers}), exercise.texts("solution"), segments, routers,
                   faults, _size(exercise))  # fmt: skip


def _lab_name(name: str) -> str:
    if not LAB_NAME.match(name):
        raise VxrayError(f"invalid lab name {name!r}: {LAB_NAME_RULE}")
    return name


def _segments(top: _Table) -> tuple[str, ...]:
    tables = _sections(top, "segments", ("name",))
    names = [t.checked("name", _segment_name, t.required("name")) for t in tables]
    _unique(tables, names, "segment")
    return tuple(names)


def _segment_name(name: str) -> str:
    """A bridge in the underlay namespace, beside ``lo`` and the ``ul-…`` ends of the machines' veths."""
    if name == "lo" or name.startswith("ul-"):
        raise VxrayError(f"invalid segment name {name!r}: 'lo' and 'ul-…' are taken in the underlay namespace")
    return validate.ifname(name)


def _routers(top: _Table, segments: set[str]) -> tuple[RouterSpec, ...]:
    tables = _sections(top, "routers", ("name", "interfaces"))
    routers = tuple(RouterSpec(t.name("router name"), _ports(t, segments)) for t in tables)
    _unique(tables, [r.name for r in routers], "router")
    return routers


def _ports(router: _Table, segments: set[str]) -> tuple[RouterPort, ...]:
    return tuple(_port(p, segments) for p in router.tables("interfaces", ("segment", "address")))


def _port(table: _Table, segments: set[str]) -> RouterPort:
    segment = table.required("segment")
    if segment not in segments:
        raise table.fail("segment", f"unknown segment {segment!r}")
    address = table.required("address")
    table.checked("address", validate.interface, address)
    return RouterPort(segment, address)


def _hosts(top: _Table, segments: tuple[str, ...], routers: tuple[RouterSpec, ...]) -> tuple[HostSpec, ...]:
    tables = _sections(top, "hosts", ("name", "underlay", "segment", "gateway", "engine"))
    if not tables:
        raise top.loc.error("lab", None, None, "a lab needs at least one [[hosts]] entry")
    hosts = tuple(_host(t, segments or ("ul0",), routers) for t in tables)
    for t, h in zip(tables, hosts, strict=True):
        if h.engine != hosts[0].engine:
            raise t.fail("engine", "every host of a lab runs the same engine (netns or docker)")
    _unique(tables, [h.name for h in hosts], "host or router", frozenset(r.name for r in routers))
    return hosts


def _host(table: _Table, segments: tuple[str, ...], routers: tuple[RouterSpec, ...]) -> HostSpec:
    name, underlay = table.name("host name"), table.required("underlay")
    iface = table.checked("underlay", validate.interface, underlay)
    segment = table.text("segment")
    if segment is not None and segment not in segments:
        raise table.fail("segment", f"unknown segment {segment!r}")
    gateway = table.text("gateway")
    if gateway is not None:
        table.checked("gateway", lambda gw: validate.ip_in(gw, iface.network), gateway)
    else:  # the one router on the segment, if there is one: it must be on the host's subnet
        ports = [p.address for r in routers for p in r.interfaces if p.segment == (segment or segments[0])]
        if len(ports) == 1 and ipaddress.IPv4Interface(ports[0]).ip not in iface.network:
            raise table.fail("underlay", f"{underlay!r}: the segment's router {ports[0]} is not on {iface.network}")
    return HostSpec(name, underlay, segment, gateway, table.choice("engine", ENGINES, "netns"))


def _networks(top: _Table, hosts: set[str], docker: bool) -> tuple[NetworkSpec, ...]:
    tables = _sections(top, "networks", ("name", "driver", "subnet", "gateway", "vni", "mtu", "learning", "static",
                                         "internal", "host", "options", "sync"))  # fmt: skip
    networks = tuple(_network(t, hosts, docker) for t in tables)
    _unique(tables, [n.name for n in networks], "network")
    return networks


def _network(table: _Table, hosts: set[str], docker: bool) -> NetworkSpec:
    name = table.name("network name")
    driver = table.choice("driver", DOCKER_DRIVERS if docker else DRIVERS, "bridge")
    subnets = table.one_or_more("subnet")
    if not subnets:
        raise table.fail(None, "missing 'subnet'")
    table.checked("subnet", lambda s: _plan(s, (), driver, docker), subnets)
    gateways = table.one_or_more("gateway")
    net, gateway, subnets6, gateways6 = table.checked("gateway", lambda g: _plan(subnets, g, driver, docker), gateways)
    vni, mtu = table.value("vni", int, "a whole number"), table.value("mtu", int, "a whole number")
    if vni is not None:
        table.checked("vni", validate.vni, vni)
        if driver not in SPANNING:
            raise table.fail("vni", f"a VNI is only for {' and '.join(SPANNING)} networks")
    if mtu is not None:
        table.checked("mtu", validate.mtu, mtu)
    host = table.text("host")
    if host is not None and host not in hosts:
        raise table.fail("host", f"unknown host {host!r}")
    table.flag("static")  # accepted and unused, as before: overlay-static.toml says `static = true`
    return NetworkSpec(name, driver, str(net), gateway, vni, mtu, table.flag("learning"), table.flag("internal"), host,
                       _options(table, driver), table.flag("sync"), subnets6, gateways6)  # fmt: skip


def _plan(subnets: tuple[str, ...], gateways: tuple[str, ...], driver: str,
          docker: bool) -> tuple[IPv4Network, str | None, tuple[str, ...], tuple[str, ...]]:  # fmt: skip
    """The operations' own checks of a network's subnets and gateways (one IPv4 subnet, IPv6 ones beside it):
    (IPv4 subnet, its gateway if given, IPv6 subnets, IPv6 gateways given)."""
    net, gw4, v6 = plan_subnets(list(subnets), list(gateways))
    if v6 and (docker or driver not in DUAL_STACK):
        where = "Docker hosts' networks" if docker else f"{driver} networks"
        raise VxrayError(f"IPv6 subnet {v6[0][0]}: {where} are IPv4 only in a lab")
    given = {str(ipaddress.ip_address(g)) for g in gateways}
    return net, gw4 if gw4 in given else None, tuple(str(n) for n, _ in v6), tuple(g for _, g in v6 if g in given)


def _subnets(n: NetworkSpec) -> tuple[IPv4Network, tuple[ipaddress.IPv6Network, ...]]:
    return validate.cidr(n.subnet), tuple(ipaddress.IPv6Network(s) for s in n.subnets6)


def _options(table: _Table, driver: str) -> dict[str, str]:
    options = table.value("options", dict, "a table of options") or {}
    for key, value in options.items():
        if key not in OPTIONS[driver]:
            raise table.fail("options", f"unknown option {key!r} for driver {driver} "
                             f"({', '.join(sorted(OPTIONS[driver])) or 'it takes none'})")  # fmt: skip
        if not isinstance(value, str):
            raise table.fail("options", f"{key}: expected a string, got {shown(value)}")
        table.checked("options", OPTION_CHECKS[key], value)
    return dict(options)


Subnets = tuple[IPv4Network, tuple[ipaddress.IPv6Network, ...]]  # a network's IPv4 subnet and its IPv6 ones


def _containers(top: _Table, hosts: set[str], subnets: dict[str, Subnets]) -> tuple[ContainerSpec, ...]:
    tables = _sections(top, "containers", ("name", "host", "networks", "mode", "ports"))
    containers: list[ContainerSpec] = []
    for t in tables:
        containers.append(_container(t, hosts, subnets, containers))
    _unique(tables, [c.name for c in containers], "container")
    return tuple(containers)


def _container(table: _Table, hosts: set[str], subnets: dict[str, Subnets],
               before: list[ContainerSpec]) -> ContainerSpec:  # fmt: skip
    name, host = table.name("container name"), table.required("host")
    if host not in hosts:
        raise table.fail("host", f"unknown host {host!r}")
    attachments = tuple(_attachment(a, subnets) for a in table.tables("networks", ("network", "ip", "ip6", "mac")))
    mode = table.text("mode")
    mode = "bridge" if mode is None else mode
    other = mode.removeprefix("container:")
    if mode != other and not any(c.name == other and c.host == host for c in before):
        raise table.fail("mode", f"{mode!r}: no container {other!r} on host {host} before this one")
    if mode == other and mode not in MODES:
        raise table.fail("mode", f"invalid network mode {mode!r}: {', '.join(MODES)} or container:NAME")
    if mode != "bridge" and attachments:
        raise table.fail("mode", f"networks need network mode bridge, not {mode}")
    ports = table.texts("ports")
    for mapping in ports:
        table.checked("ports", validate.port_mapping, mapping)
    return ContainerSpec(name, host, attachments, mode, ports)


def _attachment(table: _Table, subnets: dict[str, Subnets]) -> Attachment:
    network, ip, mac, ip6 = table.required("network"), table.text("ip"), table.text("mac"), table.text("ip6")
    if network not in subnets:
        raise table.fail("network", f"unknown network {network!r}")
    v4, v6 = subnets[network]
    if ip is not None:
        table.checked("ip", lambda i: validate.ip_in(i, v4), ip)
    if mac is not None:
        table.checked("mac", validate.mac, mac)
    if ip6 is not None:
        ip6 = table.checked("ip6", lambda i: _ip6_of(i, network, v6), ip6)
    return Attachment(network, ip, mac, ip6)


def _ip6_of(ip6: str, network: str, subnets: tuple[ipaddress.IPv6Network, ...]) -> str:
    addr = ipaddress.IPv6Address(validate.ipv6(ip6))
    held = next((n for n in subnets if addr in n), None)
    if held is None:
        raise VxrayError(f"IPv6 address {ip6} is in none of network {network}'s IPv6 subnets "
                         f"({', '.join(map(str, subnets)) or 'it has none'})")  # fmt: skip
    return validate.ip6_in(ip6, held)


def _fault(table: _Table, machines: set[str], nets: set[str], ctrs: set[str], docker: bool) -> FaultSpec:
    kind = table.required("kind")
    if kind not in FAULT_FIELDS:
        raise table.fail("kind", f"unknown fault {kind!r} (one of {', '.join(FAULT_FIELDS)})")
    if kind not in (DOCKER_FAULTS if docker else NETNS_FAULTS):
        raise table.fail("kind", f"fault {kind} is not injected into {'Docker' if docker else 'netns'} hosts")
    for key in FAULT_FIELDS[kind]:
        if key not in table.data:
            raise table.fail(None, f"fault {kind} needs {key!r}")
    for key, known in (("host", machines), ("network", nets), ("container", ctrs)):
        if table.text(key) is not None and table.data[key] not in known:
            raise table.fail(key, f"unknown {key} {table.data[key]!r}")
    dst = table.text("dst")
    if dst is not None:  # wrong-arp: the container whose entry goes wrong; stale-fdb: the wrong VTEP
        check = (lambda d: _one_of(d, tuple(sorted(ctrs)), "container")) if kind == "wrong-arp" else validate.ipv4
        table.checked("dst", check, dst)
    numbers = {key: table.value(key, int, "a whole number") for key in ("vni", "mtu", "port")}
    for key, check in (("vni", validate.vni), ("mtu", validate.mtu), ("port", lambda p: validate.port(str(p)))):
        if numbers[key] is not None:
            table.checked(key, check, numbers[key])
    device = table.text("device")
    if device is not None:
        table.checked("device", validate.ifname, device)
    _nft_fields(table, kind)
    fields = {k: table.data[k] for k in ("host", "network", "container", "dst", "vni", "mtu", "device", "port",
                                         "family", "priority") if k in table.data}  # fmt: skip
    return FaultSpec(kind, **fields)


def _nft_fields(table: _Table, kind: str) -> None:
    """``family`` and ``priority`` belong to the nft-* kinds: a family the kind's chain can live in, a priority
    the kernel takes (a signed 32-bit number)."""
    family, priority = table.text("family"), table.value("priority", int, "a whole number")
    if kind not in NFT_FAULTS:
        for key in ("family", "priority"):
            if key in table.data:
                raise table.fail(key, f"only the nft-* faults take {key!r}")
        return
    if family is not None:
        table.checked("family", lambda f: _one_of(f, NFT_FAULTS[kind][0], "family"), family)
    if priority is not None and not -(2**31) <= priority < 2**31:
        raise table.fail("priority", f"{priority!r}: a base chain's priority is a signed 32-bit number")


def _goal(exercise: _Table, ctrs: set[str]) -> tuple[tuple[str, str], ...]:
    goal = []
    for pair in exercise.texts("goal"):
        src, arrow, dst = (w.strip() for w in pair.partition("->"))
        if not arrow or src not in ctrs or dst not in ctrs:
            raise exercise.fail("goal", f"{shown(pair)}: expected 'CONTAINER -> CONTAINER' of this lab")
        goal.append((src, dst))
    return tuple(goal)


def _size(exercise: _Table) -> int | None:
    size = exercise.value("size", int, "a whole number")
    if size is not None and not 0 <= size <= 65507:
        raise exercise.fail("size", f"{size!r}: an ICMP payload size in bytes (0-65507)")
    return size


def _toml(value: Any) -> str:
    """One TOML value: the few kinds a topology file holds."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items() if v is not None) + " }"
    return "[" + ", ".join(_toml(v) for v in value) + "]"


def _table(header: str, fields: dict[str, Any]) -> list[str]:
    return [header, *(f"{k} = {_toml(v)}" for k, v in fields.items() if v not in (None, {}, (), [], False)), ""]


def dump(spec: LabSpec) -> str:
    """The topology file of ``spec``; ``parse(dump(s)) == s``."""
    lines = _table("[lab]", {"name": spec.name, "description": spec.description})
    for seg in spec.segments:
        lines += _table("[[segments]]", {"name": seg})
    for r in spec.routers:
        ports = [{"segment": p.segment, "address": p.address} for p in r.interfaces]
        lines += _table("[[routers]]", {"name": r.name, "interfaces": ports})
    for h in spec.hosts:
        engine = h.engine if h.engine != "netns" else None
        lines += _table("[[hosts]]", {"name": h.name, "underlay": h.underlay, "segment": h.segment,
                                      "gateway": h.gateway, "engine": engine})  # fmt: skip
    for n in spec.networks:
        subnet = [n.subnet, *n.subnets6] if n.subnets6 else n.subnet
        gateways = [g for g in (n.gateway, *n.gateways6) if g]
        gateway = gateways if n.gateways6 else n.gateway
        lines += _table("[[networks]]", {
            "name": n.name, "driver": n.driver, "subnet": subnet, "gateway": gateway, "vni": n.vni,
            "mtu": n.mtu, "learning": n.learning, "internal": n.internal, "host": n.host, "options": n.options,
            "sync": n.sync,
        })  # fmt: skip
    for c in spec.containers:
        nets = [{"network": a.network, "ip": a.ip, "ip6": a.ip6, "mac": a.mac} for a in c.networks]
        mode = c.mode if c.mode != "bridge" else None
        lines += _table("[[containers]]", {"name": c.name, "host": c.host, "networks": nets, "mode": mode,
                                            "ports": list(c.ports)})  # fmt: skip
    for f in spec.faults:
        defaults = FaultSpec(f.kind)
        lines += _table("[[faults]]", {k: v for k, v in asdict(f).items() if k == "kind" or v != getattr(defaults, k)})
    if spec.goal or spec.solution or spec.size is not None:
        lines += _table("[exercise]", {"goal": [f"{a} -> {b}" for a, b in spec.goal], "solution": list(spec.solution),
                                       "size": spec.size})  # fmt: skip
    return "\n".join(lines)
