"""Every namespace of every host involved, indexed once so a trace is dictionary lookups.

A trace crosses namespaces (veth peers, a VXLAN device's underlay) and hosts
(the underlay). ``World`` takes host snapshots and builds, once, the tables a
packet walk consults: links by name and index, who owns an address or a MAC,
bridge and VXLAN FDBs by MAC, neighbours by IP, routes by prefix length. On the
scale workload (10,000 FDB entries, 10,000 neighbours) that turns each lookup
into a dict hit, which is what keeps a trace within milliseconds.

Namespace ids (``net:[inode]``) are unique on one machine; snapshots of several
machines are told apart by the host name in the key. ``Labels`` say, for a
namespace, which vxray host, container or overlay network it belongs to, so a
verdict can name the command that fixes it.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from backend.errors import VxrayError
from backend.model import FdbEntry, HostSnapshot, Labels, Link, LinkRef, Namespace, Neighbour, Route
from backend.netns import RUN_NETNS

BROADCAST = "ff:ff:ff:ff:ff:ff"
ZERO_MAC = "00:00:00:00:00:00"


@dataclass(frozen=True)
class Place:
    """One namespace of the world, and the host it belongs to."""

    key: str
    host: str
    ns: Namespace

    @property
    def label(self) -> str:
        return self.ns.name


@dataclass
class _Routes:
    """A namespace's main table as (network, route), longest prefix first: IPv4's, and IPv6's apart."""

    entries: list[tuple[ipaddress.IPv4Network, Route]]
    entries6: list[tuple[ipaddress.IPv6Network, Route]] = field(default_factory=list)

    def lookup(self, ip: str) -> Route | None:
        if ":" in ip:
            addr6 = ipaddress.IPv6Address(ip)
            return next((r for net, r in self.entries6 if addr6 in net), None)
        addr = ipaddress.IPv4Address(ip)
        return next((r for net, r in self.entries if addr in net), None)


def canon(ip: str) -> str:
    """An address as the kernel prints it: IPv6 compressed (``fd00:0::2`` is ``fd00::2``), IPv4 as it is."""
    return ipaddress.IPv6Address(ip).compressed if ":" in ip else ip


def is_ip6(ip: str) -> bool:
    return ":" in ip


def _is_v6_route(r: Route) -> bool:
    """An IPv6 route: its destination, or for ``default`` (what older snapshots say for ``::/0`` too) its gateway."""
    return ":" in r.dst or (r.dst == "default" and ":" in (r.gateway or ""))


class World:
    def __init__(self, snapshots: Sequence[HostSnapshot], labels: Labels | None = None) -> None:
        self.labels = labels or Labels()
        shared = len(snapshots) <= 1  # one machine: namespace ids are unique and veths may cross "hosts"
        self.places: dict[str, Place] = {}
        self.links: dict[tuple[str, str], Link] = {}
        self.by_index: dict[tuple[str, int], Link] = {}
        self.addresses: dict[str, list[tuple[str, Link, int]]] = {}  # ip -> (key, link, prefixlen), no link-local
        self.linklocal: dict[str, list[tuple[str, Link]]] = {}  # fe80::… -> (key, link): one per link, not global
        self.macs: dict[str, list[tuple[str, Link]]] = {}
        self.bridge_fdb: dict[tuple[str, str], dict[str, FdbEntry]] = {}  # (key, bridge) -> mac -> entry
        self.vxlan_fdb: dict[tuple[str, str], dict[str, list[FdbEntry]]] = {}  # (key, dev) -> mac -> entries
        self.neigh: dict[tuple[str, str], dict[str, Neighbour]] = {}  # (key, dev) -> ip -> entry
        self.routes: dict[str, _Routes] = {}
        self.ports: dict[tuple[str, str], list[Link]] = {}
        self.children: dict[tuple[str, int], list[tuple[str, Link]]] = {}  # parent (key, index) -> macvlan/vlan
        self.vxlans: list[tuple[str, Link]] = []
        self.docker = tuple(n for snap in snapshots for n in snap.docker)  # what Docker Engines said of overlays
        for snap in snapshots:
            for ns in snap.namespaces:
                key = ns.id if shared else f"{snap.host}|{ns.id}"
                host = self.labels.hosts.get(ns.name, snap.host)
                self.places[key] = Place(key, host, ns)
                self._index(key, ns)
        self._shared = shared
        for snap in snapshots:
            for ns in snap.namespaces:
                key = ns.id if shared else f"{snap.host}|{ns.id}"
                for lk in ns.links:
                    if lk.parent is not None:
                        parent = self.ref_key(key, lk.parent)
                        self.children.setdefault((parent, lk.parent.ifindex), []).append((key, lk))

    def _index(self, key: str, ns: Namespace) -> None:
        for lk in ns.links:
            self.links[key, lk.name] = lk
            self.by_index[key, lk.index] = lk
            for a in lk.addresses:
                if ":" not in a.address:
                    self.addresses.setdefault(a.address, []).append((key, lk, a.prefixlen))
                elif a.address.lower().startswith("fe80:"):
                    self.linklocal.setdefault(canon(a.address), []).append((key, lk))
                else:
                    self.addresses.setdefault(canon(a.address), []).append((key, lk, a.prefixlen))
            if lk.mac:
                self.macs.setdefault(lk.mac, []).append((key, lk))
            if lk.master:
                self.ports.setdefault((key, lk.master), []).append(lk)
            if lk.vxlan is not None:
                self.vxlans.append((key, lk))
        for e in ns.fdb:
            if e.dst is not None or ("self" in e.flags and e.master is None):
                self.vxlan_fdb.setdefault((key, e.device), {}).setdefault(e.mac, []).append(e)
            elif e.master:
                self.bridge_fdb.setdefault((key, e.master), {})[e.mac] = e
        for n in ns.neighbours:
            self.neigh.setdefault((key, n.device), {})[canon(n.ip) if ":" in n.ip else n.ip] = n
        main = [r for r in ns.routes if r.table == 254 and "?" not in r.dst]
        table = [(ipaddress.IPv4Network("0.0.0.0/0" if r.dst == "default" else r.dst, strict=False), r)
                 for r in main if not _is_v6_route(r)]  # fmt: skip
        table.sort(key=lambda item: (-item[0].prefixlen, item[1].metric or 0))
        table6 = [(ipaddress.IPv6Network("::/0" if r.dst == "default" else r.dst, strict=False), r)
                  for r in main if _is_v6_route(r)]  # fmt: skip
        table6.sort(key=lambda item: (-item[0].prefixlen, item[1].metric or 0))
        self.routes[key] = _Routes(table, table6)

    def ref_key(self, key: str, ref: LinkRef) -> str:
        """The key of the namespace a ``LinkRef`` found in namespace ``key`` points at."""
        if self._shared:
            return ref.netns
        return f"{key.split('|', 1)[0]}|{ref.netns}"

    def link_at(self, key: str, ref: LinkRef) -> tuple[str, Link] | None:
        target = self.ref_key(key, ref)
        lk = self.by_index.get((target, ref.ifindex))
        return (target, lk) if lk is not None else None

    def place(self, key: str) -> Place:
        return self.places[key]

    def find(self, label: str) -> Place | None:
        """A namespace by label (``overlay-static.yy3-vm33``, ``host``) or id."""
        return next((p for p in self.places.values() if label in (p.label, p.ns.id, p.key)), None)

    def container_place(self, container: str) -> Place | None:
        """The namespace of a container, by the store's name for it."""
        label = next((ns for ns, c in self.labels.containers.items() if c == container), None)
        return self.find(label) if label else None

    def place_of(self, word: str) -> Place | None:
        """A trace end as typed: a container's name (the store's or Docker's, bare or ``HOST:name``),
        or a namespace's label or id. A bare name on several machines is an error asking for ``HOST:name``."""
        found = self.container_place(word) or self.find(word)
        if found is not None:
            return found
        matches = {p.key: p for p in self.places.values()
                   if p.label.endswith(f":{word}") or self.container(p.key) == word}  # fmt: skip
        if len(matches) > 1:
            names = ", ".join(sorted(p.label for p in matches.values()))
            raise VxrayError(f"{word!r} is on several machines ({names}): say HOST:{word}")
        return next(iter(matches.values()), None)

    def address_of(self, word: str, src: Place | None = None, ip6: bool = False) -> str:
        """A destination as typed: a container's IPv4 address (``ip6``: its global IPv6 one; the one on a subnet
        ``src`` shares, when it has several), else ``word`` itself, which must then be an IPv4 or IPv6 address."""
        if _is_ip(word):
            return canon(word)
        place = self.place_of(word)
        if place is None:
            raise VxrayError(f"unknown container, HOST:PORT, namespace or address {word!r}")
        found = [a for lk in place.ns.links if lk.name != "lo" for a in lk.addresses
                 if a.scope != "link" and (":" in a.address) == ip6]  # fmt: skip
        if not found:
            raise VxrayError(f"{word} has no {'IPv6' if ip6 else 'IPv4'} address to trace to")
        docker = {n.ip for n in place.ns.container.networks if n.ip} if place.ns.container else set()
        found = [a for a in found if a.address in docker] or found  # Docker's DNS never answers docker_gwbridge's
        if src is not None:
            mine = [ipaddress.ip_network(a.cidr, strict=False) for lk in src.ns.links if lk.name != "lo"
                    for a in lk.addresses if (":" in a.address) == ip6 and a.scope != "link"]  # fmt: skip
            found = [a for a in found if any(ipaddress.ip_address(a.address) in net for net in mine)] or found
        return canon(found[0].address)

    def endpoint_of(self, word: str, src: Place | None = None) -> tuple[str, int | None]:
        """A destination as typed, with ``HOST:PORT`` (a machine's published port: its address, or an
        IP and a port) besides what ``address_of`` takes; (address, port or None)."""
        if _is_ip(word):  # an IPv6 address ends in ":digits" too
            return canon(word), None
        if word.startswith("[") and "]:" in word:  # [IPv6]:PORT
            host, port = word[1:].split("]:", 1)
            if not (_is_ip(host) and port.isdigit() and 0 < int(port) < 65536):
                raise VxrayError(f"invalid [IPv6]:PORT {word!r}")
            return canon(host), int(port)
        host, colon, port = word.rpartition(":")
        if not (colon and port.isdigit()):
            return self.address_of(word, src), None
        if not 0 < int(port) < 65536:
            raise VxrayError(f"invalid port {port!r} in {word!r}: 1-65535")
        if _is_ipv4(host):
            return host, int(port)
        home = self.find(f"{host}:host") or self.find(self.labels.host_netns.get(host, "\0"))
        address = self.machine_address(home.key) if home is not None else None
        if address is None:
            raise VxrayError(f"unknown machine {host!r} in {word!r} (HOST:PORT names a machine and a published port)")
        return address, int(port)

    def machine_address(self, key: str) -> str | None:
        """Where others reach a machine: the VTEP of its VXLAN devices, else the first global IPv4 address
        of a device of its own namespace that is up, no bridge and no bridge port."""
        host = self.places[key].host
        vtep = next((v for v, h in self.host_vteps().items() if h == host), None)
        if vtep is not None:
            return vtep
        return next((a.address for lk in self.places[key].ns.links if lk.up and lk.kind not in ("bridge", "loopback")
                     and lk.master is None for a in lk.addresses if a.scope == "global" and ":" not in a.address),
                    None)  # fmt: skip

    def local(self, key: str, ip: str) -> Link | None:
        """The link of namespace ``key`` holding ``ip`` (any local address answers, as arp_ignore=0)."""
        if ip.startswith("127.") or ip == "::1":
            return self.links.get((key, "lo"))
        if ip.startswith("fe80:"):
            return next((lk for k, lk in self.linklocal.get(ip, ()) if k == key), None)
        return next((lk for k, lk, _ in self.addresses.get(ip, ()) if k == key), None)

    def owners(self, ip: str) -> list[tuple[str, Link]]:
        if ip.startswith("fe80:"):
            return list(self.linklocal.get(ip, ()))
        return [(k, lk) for k, lk, _ in self.addresses.get(ip, ())]

    def machine_of(self, key: str) -> str:
        """The machine a command for namespace ``key`` runs on when the snapshots are several machines'
        (its namespaces are named ``HOST:name``), "" when they are one machine's: this one."""
        place = self.places[key]
        return place.host if place.ns.name.startswith(f"{place.host}:") else ""

    def command_in(self, key: str, *words: str) -> tuple[str, ...]:
        """``words`` as an operator runs them in namespace ``key``, on that namespace's machine (``machine_of``):
        in the machine's own namespace as they are, in a named one through ``ip netns exec``, in any other
        (Docker's sandboxes and containers) through ``nsenter`` on its bind mount or a process in it. An argv,
        for ``subprocess`` or an agent on that machine; ``shell_line`` quotes it for a person to paste."""
        place = self.places[key]
        ns = place.ns
        machine = self.machine_of(key)
        local = ns.name.removeprefix(f"{machine}:") if machine else ns.name
        named = next((p for p in ns.paths if p.startswith(f"{RUN_NETNS}/")), None)
        if ns.kind == "host" or local == "host":
            enter: tuple[str, ...] = ()
        elif named is not None:
            enter = ("ip", "netns", "exec", os.path.basename(named))
        elif ns.paths:
            enter = ("nsenter", f"--net={ns.paths[0]}")
        elif ns.pids:
            enter = ("nsenter", "-t", str(ns.pids[0]), "-n")
        else:
            enter = ("ip", "netns", "exec", local)
        return (*enter, *words)

    def container(self, key: str) -> str | None:
        """The container a namespace is: the store's name for it, else Docker's."""
        ns = self.places[key].ns
        return self.labels.containers.get(ns.name) or (ns.container.name if ns.container else None)

    def network(self, key: str) -> str | None:
        """The network an overlay sandbox serves: the store's name for it, else Docker's."""
        ns = self.places[key].ns
        return self.labels.networks.get(ns.name) or ns.network

    def docker_network(self, key: str) -> str | None:
        """The Docker overlay whose sandbox ``key`` is, when the store names it no network of its own: the
        networks whose ``vxray network repair`` sets their sandboxes' devices up."""
        ns = self.places[key].ns
        return ns.network if ns.network and ns.name not in self.labels.networks else None

    def networks_of(self, key: str) -> dict[str, str]:
        """A container's addresses -> the network each is on: the store's endpoints, else what Docker says."""
        ns = self.places[key].ns
        docker = {n.ip: n.network for n in ns.container.networks if n.ip} if ns.container else {}
        return self.labels.endpoints.get(ns.name) or docker

    def vxlan_home(self, key: str, vx: Link) -> str:
        """The namespace whose routes and UDP socket carry a VXLAN device's packets: its underlay
        device's, else the namespace it was created in (its link namespace: Docker's ``vxlan0``,
        moved into a sandbox, has no ``dev``), else its own."""
        info = vx.vxlan
        if info is not None and info.underlay is not None:
            found = self.link_at(key, info.underlay)
            if found is not None:
                return found[0]
        if vx.link_netns is not None:
            home = self.ref_key(key, vx.link_netns)
            if home in self.places:
                return home
        return key

    def source_ip(self, key: str, dst: str) -> str:
        """The address the kernel picks in namespace ``key`` to send to ``dst`` (the route's ``src``, else
        the out device's address on dst's subnet, else its first); ``0.0.0.0`` without a route."""
        route = self.routes[key].lookup(dst)
        dev = self.links.get((key, route.device or "")) if route else None
        if dev is None:
            return "0.0.0.0"
        if route is not None and route.source:
            return route.source
        if ":" in dst:  # a global address for a global destination, the link's own for a link-local one
            wanted = "link" if dst.startswith("fe80:") else "global"
            v6 = [a for a in dev.addresses if ":" in a.address and (a.scope == "link") == (wanted == "link")]
            on_link = [a for a in v6 if ipaddress.IPv6Address(dst) in ipaddress.IPv6Network(a.cidr, strict=False)]
            return canon((on_link or v6)[0].address) if v6 else "::"
        v4 = [a for a in dev.addresses if ":" not in a.address]
        on_link = [a for a in v4 if ipaddress.IPv4Address(dst) in ipaddress.IPv4Network(a.cidr, strict=False)]
        return (on_link or v4)[0].address if v4 else "0.0.0.0"

    def vtep(self, key: str, vx: Link) -> str | None:
        """The address a VXLAN device's packets leave from: ``local``, else what the kernel picks in its
        home namespace towards the VTEPs its FDB names (Docker sets no ``local``)."""
        info = vx.vxlan
        if info is None:
            return None
        if info.local:
            return info.local
        home = self.vxlan_home(key, vx)
        peers = [e.dst for es in self.vxlan_fdb.get((key, vx.name), {}).values() for e in es if e.dst]
        for peer in [*peers, info.group or ""]:
            if _is_ip(peer) and (src := self.source_ip(home, peer)) not in ("0.0.0.0", "::"):
                return src
        up = [a.address for lk in self.places[home].ns.links if lk.up and lk.kind not in ("loopback", "bridge")
              and lk.vxlan is None for a in lk.addresses if ":" not in a.address and a.scope == "global"]  # fmt: skip
        return up[0] if up else None

    def overlay_capacity(self, key: str, dev: Link) -> int | None:
        """The largest packet the overlay behind ``dev`` carries (the MTU of the VXLAN device on the
        bridge ``dev`` or its veth peer is a port of), or None when no overlay is behind it."""
        here = [(key, dev)]
        if dev.peer is not None and (found := self.link_at(key, dev.peer)) is not None:
            here.append(found)
        for k, lk in here:
            bridge = lk.name if lk.kind == "bridge" else lk.master
            vxlans = [p.mtu for p in self.ports.get((k, bridge or ""), []) if p.vxlan is not None]
            if vxlans:
                return min(vxlans)
        return None

    def host_vteps(self) -> dict[str, str]:
        """VTEP address -> the host whose VXLAN devices send from it."""
        return {vtep: self.places[k].host for k, lk in self.vxlans if (vtep := self.vtep(k, lk))}

    def is_host_ns(self, key: str) -> bool:
        place = self.places[key]
        return self.labels.host_netns.get(place.host) == place.label


def _is_ip(word: str) -> bool:
    try:
        ipaddress.ip_address(word)
    except ValueError:
        return False
    return True


def _is_ipv4(word: str) -> bool:
    try:
        ipaddress.IPv4Address(word)
    except ValueError:
        return False
    return True
