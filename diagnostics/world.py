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
from collections.abc import Sequence
from dataclasses import dataclass

from backend.model import FdbEntry, HostSnapshot, Labels, Link, LinkRef, Namespace, Neighbour, Route

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
    """A namespace's main table as (network, route), longest prefix first."""

    entries: list[tuple[ipaddress.IPv4Network, Route]]

    def lookup(self, ip: str) -> Route | None:
        addr = ipaddress.IPv4Address(ip)
        return next((r for net, r in self.entries if addr in net), None)


class World:
    def __init__(self, snapshots: Sequence[HostSnapshot], labels: Labels | None = None) -> None:
        self.labels = labels or Labels()
        shared = len(snapshots) <= 1  # one machine: namespace ids are unique and veths may cross "hosts"
        self.places: dict[str, Place] = {}
        self.links: dict[tuple[str, str], Link] = {}
        self.by_index: dict[tuple[str, int], Link] = {}
        self.addresses: dict[str, list[tuple[str, Link, int]]] = {}  # ip -> (key, link, prefixlen)
        self.macs: dict[str, list[tuple[str, Link]]] = {}
        self.bridge_fdb: dict[tuple[str, str], dict[str, FdbEntry]] = {}  # (key, bridge) -> mac -> entry
        self.vxlan_fdb: dict[tuple[str, str], dict[str, list[FdbEntry]]] = {}  # (key, dev) -> mac -> entries
        self.neigh: dict[tuple[str, str], dict[str, Neighbour]] = {}  # (key, dev) -> ip -> entry
        self.routes: dict[str, _Routes] = {}
        self.ports: dict[tuple[str, str], list[Link]] = {}
        self.children: dict[tuple[str, int], list[tuple[str, Link]]] = {}  # parent (key, index) -> macvlan/vlan
        self.vxlans: list[tuple[str, Link]] = []
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
            if ":" not in n.ip:
                self.neigh.setdefault((key, n.device), {})[n.ip] = n
        table = [
            (ipaddress.IPv4Network("0.0.0.0/0" if r.dst == "default" else r.dst, strict=False), r)
            for r in ns.routes
            if r.table == 254 and ":" not in r.dst
        ]
        table.sort(key=lambda item: (-item[0].prefixlen, item[1].metric or 0))
        self.routes[key] = _Routes(table)

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
        """A trace end as typed without a store: a container's name, or a namespace's label or id."""
        found = self.container_place(word) or self.find(word)
        if found is None:  # machines read over --host name namespaces HOST:name; the bare name is enough
            matches = [p for p in self.places.values() if p.label.endswith(f":{word}")]
            found = matches[0] if len(matches) == 1 else None
        return found

    def address_of(self, word: str) -> str:
        """A destination as typed without a store: a container's first IPv4 address, else ``word`` (an IP)."""
        place = self.container_place(word)
        found = [a.address for lk in place.ns.links if lk.name != "lo" for a in lk.addresses
                 if a.scope != "link" and ":" not in a.address] if place else []  # fmt: skip
        return found[0] if found else word

    def local(self, key: str, ip: str) -> Link | None:
        """The link of namespace ``key`` holding ``ip`` (any local address answers, as arp_ignore=0)."""
        if ip.startswith("127."):
            return self.links.get((key, "lo"))
        return next((lk for k, lk, _ in self.addresses.get(ip, ()) if k == key), None)

    def owners(self, ip: str) -> list[tuple[str, Link]]:
        return [(k, lk) for k, lk, _ in self.addresses.get(ip, ())]

    def container(self, key: str) -> str | None:
        return self.labels.containers.get(self.places[key].label)

    def network(self, key: str) -> str | None:
        return self.labels.networks.get(self.places[key].label)

    def is_host_ns(self, key: str) -> bool:
        place = self.places[key]
        return self.labels.host_netns.get(place.host) == place.label
