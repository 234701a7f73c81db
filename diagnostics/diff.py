"""What changed between two snapshots: "what is different since it worked", at 3 a.m.

Pure: two snapshots (and the store's labels, when known) in, a list of ``Change``s
out, grouped by host and namespace with the likely-relevant first — overlay
sandboxes, then FDB and neighbour entries anywhere, then links, addresses, routes,
sysctls and rules, and last the counters that grew (a DROP rule or policy counting
is evidence; a counter alone never makes a snapshot "changed", see ``changed``).

Namespaces are matched by label (``overlay-static.yy3-vm33``, ``host``, a
container's name): an inode changes when a namespace is re-created, its label does
not. Devices are matched by name within their namespace; a device re-created under
the same name (a new ifindex) is one change that says so. Kernel-made multicast FDB
and neighbour entries (33:33:…, 01:00:5e:…), link-scope addresses and IPv6
link-local routes follow their devices and are left out: they bury the real
entries. Counters in nftables rule text (``counter packets N bytes M``) are not part
of a rule's identity.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import TypeVar

from backend.model import FdbEntry, HostSnapshot, Labels, Link, Namespace, Neighbour, Route, RuleSet, Sysctls

KINDS = ("namespace", "fdb", "neighbour", "link", "address", "route", "sysctl", "chain", "rule", "nft-chain",
         "nft-rule", "nft-set")  # fmt: skip
_COUNTER = re.compile(r"counter packets \d+ bytes \d+")
V = TypeVar("V")
_SANDBOX = re.compile(r"(^|[-:/.])1-[0-9a-f]{10}$")  # Docker's and vxray's overlay sandboxes: 1-<netid>


@dataclass(frozen=True)
class Change:
    """One difference: ``kind`` of object, ``change`` (appeared, disappeared, changed, grew, reset), the object's
    ``key`` within its namespace, and what it was and became (the fields that differ, for ``changed``)."""

    host: str
    netns: str  # the namespace's label
    who: str  # what operators call it: a container, "prod sandbox", "yy3 (host)", else its label
    kind: str
    change: str
    key: str
    before: str = ""
    after: str = ""
    sandbox: bool = False  # in an overlay's sandbox

    @property
    def rank(self) -> int:
        """Smaller first: an overlay sandbox's FDB/neighbour entries, anything in a sandbox, FDB/neighbour
        entries anywhere, the rest, counters last."""
        if self.change in ("grew", "reset"):
            return 4
        entries = self.kind in ("fdb", "neighbour")
        return 0 if self.sandbox and entries else 1 if self.sandbox else 2 if entries else 3

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "rank": self.rank}


_GROUP_BIT = frozenset("13579bdfBDF")  # a MAC's first octet is odd: a multicast group (33:33:…, 01:00:5e:…)
_IPV4_MULTICAST = tuple(f"{n}." for n in range(224, 240))


def _multicast_mac(mac: str | None) -> bool:
    return mac is not None and len(mac) > 1 and mac[1] in _GROUP_BIT


def _multicast_ip(ip: str) -> bool:
    return ip.startswith(("ff", "FF", *_IPV4_MULTICAST))


def _link_text(lk: Link) -> str:
    """A device as one line: kind, state, MTU, master, addresses, VXLAN attributes, peer."""
    parts = [lk.kind or "device", lk.operstate, f"mtu {lk.mtu}", *(a.cidr for a in lk.addresses if a.scope != "link")]
    parts += [f"master {lk.master}"] if lk.master else []
    parts += [f"mac {lk.mac}"] if lk.mac else []
    vx = lk.vxlan
    if vx is not None:
        parts += [f"vni {vx.vni}", f"dstport {vx.dstport}"] + ([f"local {vx.local}"] if vx.local else [])
        parts += [f"group {vx.group}"] if vx.group else []
    if lk.peer is not None:
        parts.append(f"peer {lk.peer.ifname}@{lk.peer.netns_name}")
    return " ".join(parts)


def _link_fields(lk: Link) -> dict[str, str]:
    """What a device's change is said in: each field an operator checks, as text."""
    vx = lk.vxlan
    found = {"kind": lk.kind or "device", "state": lk.operstate, "up": "UP" if lk.up else "down", "mtu": str(lk.mtu),
             "master": lk.master or "none", "mac": lk.mac or "none",
             "peer": f"{lk.peer.ifname}@{lk.peer.netns_name}" if lk.peer else "none",
             "port state": lk.bridge_port.state if lk.bridge_port else "none"}  # fmt: skip
    if vx is not None:
        found |= {"vni": str(vx.vni), "dstport": str(vx.dstport), "local": vx.local or "none",
                  "group": vx.group or "none", "learning": str(vx.learning), "proxy": str(vx.proxy),
                  "l2miss": str(vx.l2miss), "l3miss": str(vx.l3miss)}  # fmt: skip
    return found


def _fields(before: dict[str, str], after: dict[str, str]) -> tuple[str, str]:
    """The fields that differ: ``mtu 1500, state UP`` before and after."""
    keys = [k for k in {**before, **after} if before.get(k) != after.get(k)]
    return (", ".join(f"{k} {before.get(k, 'none')}" for k in keys), ", ".join(f"{k} {after.get(k, 'none')}"
                                                                               for k in keys))  # fmt: skip


class _Namespace:
    """Builds the changes of one namespace (either side may be missing: it appeared or disappeared)."""

    def __init__(self, host: str, label: str, who: str, sandbox: bool) -> None:
        self.host, self.label, self.who, self.sandbox = host, label, who, sandbox
        self.out: list[Change] = []

    def add(self, kind: str, change: str, key: str, before: str = "", after: str = "") -> None:
        self.out.append(Change(self.host, self.label, self.who, kind, change, key, before, after, self.sandbox))

    def keyed(self, kind: str, old: Mapping[str, V], new: Mapping[str, V], text: Callable[[V], str] = str) -> None:
        """Objects by key: appeared, disappeared, or changed from one value to the other. Values compare as they
        are (tuples, in C: 10,000 entries a side in a few ms) and become ``text`` only when they are reported."""
        for key in sorted(old.keys() - new.keys()):
            self.add(kind, "disappeared", key, text(old[key]))
        for key in sorted(new.keys() - old.keys()):
            self.add(kind, "appeared", key, after=text(new[key]))
        for key in sorted(k for k in old.keys() & new.keys() if old[k] != new[k]):
            self.add(kind, "changed", key, text(old[key]), text(new[key]))

    def links(self, old: Namespace, new: Namespace) -> None:
        before = {lk.name: lk for lk in old.links}
        after = {lk.name: lk for lk in new.links}
        for name in sorted(before.keys() - after.keys()):
            self.add("link", "disappeared", name, _link_text(before[name]))
        for name in sorted(after.keys() - before.keys()):
            self.add("link", "appeared", name, after=_link_text(after[name]))
        for name in sorted(before.keys() & after.keys()):
            a, b = before[name], after[name]
            was, now = _fields(_link_fields(a), _link_fields(b))
            if a.index != b.index:  # deleted and added again: its FDB entries and routes went with it
                was, now = (
                    f"index {a.index}" + (f", {was}" if was else ""),
                    f"index {b.index} (re-created)" + (f", {now}" if now else ""),
                )
            if was or now:
                self.add("link", "changed", name, was, now)
        self.keyed("address", {f"{a.cidr} dev {lk.name}": "" for lk in old.links for a in lk.addresses
                               if a.scope != "link" and lk.name in after},
                   {f"{a.cidr} dev {lk.name}": "" for lk in new.links for a in lk.addresses
                    if a.scope != "link" and lk.name in before})  # fmt: skip

    def fdb(self, old: tuple[FdbEntry, ...], new: tuple[FdbEntry, ...]) -> None:
        if old != new:  # a namespace re-read for a link's change keeps its 10,000 entries: no table built
            self.keyed("fdb", _fdb(old), _fdb(new), _fdb_text)

    def neighbours(self, old: tuple[Neighbour, ...], new: tuple[Neighbour, ...]) -> None:
        if old == new:
            return

        def table(entries: Iterable[Neighbour]) -> dict[str, tuple[str | None, tuple[str, ...]]]:
            return {f"{n.ip} dev {n.device}": (n.mac, n.state) for n in entries if not _multicast_ip(n.ip)}

        self.keyed("neighbour", table(old), table(new), lambda v: f"lladdr {v[0] or 'none'} {'/'.join(v[1])}")

    def routes(self, old: Iterable[Route], new: Iterable[Route]) -> None:
        self.keyed("route", _routes(old), _routes(new))

    def sysctls(self, old: Sysctls, new: Sysctls) -> None:
        def flat(s: Sysctls) -> dict[str, str]:
            out = {f.name: str(getattr(s, f.name)) for f in fields(s) if f.name != "rp_filter"}
            return out | {f"rp_filter.{dev}": str(v) for dev, v in s.rp_filter.items()}

        a, b = flat(old), flat(new)
        for key in sorted(a.keys() | b.keys()):
            if a.get(key) != b.get(key) and not (key.startswith("rp_filter.") and (key not in a or key not in b)):
                self.add("sysctl", "changed", key, a.get(key, "none"), b.get(key, "none"))

    def netfilter(self, old: tuple[RuleSet, ...], new: tuple[RuleSet, ...]) -> None:
        """iptables per back-end: chains (policy), rules by their spec, and the packets they counted since."""
        chains_a, rules_a = _chains(old)
        chains_b, rules_b = _chains(new)
        self.keyed("chain", {k: v[0] for k, v in chains_a.items()}, {k: v[0] for k, v in chains_b.items()})
        for key in chains_a.keys() & chains_b.keys():
            self._counted(key, chains_a[key][1], chains_b[key][1], "chain")
        self.keyed("rule", {k: "" for k in rules_a}, {k: "" for k in rules_b})
        for key in sorted(rules_a.keys() & rules_b.keys()):
            self._counted(key, rules_a[key], rules_b[key])

    def nftables(self, old: Namespace, new: Namespace) -> None:
        """Native nftables: chains (hook, priority, policy), rules by their text, sets by their elements."""
        a, b = _nft(old), _nft(new)
        for kind in ("nft-chain", "nft-set"):
            self.keyed(kind, {k: v for (c, k), v in a[0].items() if c == kind},
                       {k: v for (c, k), v in b[0].items() if c == kind})  # fmt: skip
        self.keyed("nft-rule", {k: "" for k in a[1]}, {k: "" for k in b[1]})
        for key in sorted(a[1].keys() & b[1].keys()):
            self._counted(key, a[1][key], b[1][key], "nft-rule")

    def _counted(self, key: str, before: tuple[int, int], after: tuple[int, int], kind: str = "rule") -> None:
        if after[0] > before[0]:
            self.add(
                kind,
                "grew",
                key,
                f"{before[0]} packets",
                f"{after[0]} packets (+{after[0] - before[0]}, +{after[1] - before[1]} bytes)",
            )
        elif after[0] < before[0]:
            self.add(kind, "reset", key, f"{before[0]} packets", f"{after[0]} packets")


FdbValue = tuple[str | None, str, tuple[str, ...], int | None]  # dst, state, flags, vni


def _fdb(entries: Iterable[FdbEntry]) -> dict[str, FdbValue]:
    """FDB entries by MAC and device (and VTEP, where one MAC has several: the all-zero flood entries)."""
    grouped: dict[str, list[FdbEntry]] = {}
    for e in entries:
        if not _multicast_mac(e.mac):
            where = f" master {e.master}" if e.master else ""
            vlan = f" vlan {e.vlan}" if e.vlan is not None else ""
            grouped.setdefault(f"{e.mac} dev {e.device}{where}{vlan}", []).append(e)
    return {key if len(found) == 1 else f"{key} dst {e.dst}": (e.dst, e.state, e.flags, e.vni)
            for key, found in grouped.items() for e in found}  # fmt: skip


def _fdb_text(value: FdbValue) -> str:
    dst, state, flags, vni = value
    return " ".join([*([f"dst {dst}"] if dst else []), state, *flags, *([f"vni {vni}"] if vni is not None else [])])


def _routes(routes: Iterable[Route]) -> dict[str, str]:
    out = {}
    for r in routes:
        if r.dst.startswith(("fe80::", "ff00::")):
            continue
        key = f"{r.dst} table {r.table}" + (f" metric {r.metric}" if r.metric is not None else "")
        out[key] = " ".join([*([r.type] if r.type != "unicast" else []), *([f"via {r.gateway}"] if r.gateway else []),
                             *([f"dev {r.device}"] if r.device else []), *([f"src {r.source}"] if r.source else []),
                             f"proto {r.protocol}", f"scope {r.scope}"])  # fmt: skip
    return out


def _chains(sets: tuple[RuleSet, ...]) -> tuple[dict[str, tuple[str, tuple[int, int]]], dict[str, tuple[int, int]]]:
    """Chains (policy text, policy counters) and rules (counters) by key; the n-th copy of a rule spec in a chain
    is ``#n``, so duplicated rules are told apart."""
    chains: dict[str, tuple[str, tuple[int, int]]] = {}
    rules: dict[str, tuple[int, int]] = {}
    for rs in sets:
        for table in rs.tables:
            for chain in table.chains:
                where = f"{rs.backend} {table.name} {chain.name}"
                chains[where] = (f"policy {chain.policy}" if chain.policy else "", (chain.packets, chain.bytes))
                seen: dict[str, int] = {}
                for r in chain.rules:
                    seen[r.spec] = seen.get(r.spec, 0) + 1
                    copy = f" #{seen[r.spec]}" if seen[r.spec] > 1 else ""
                    rules[f"{where}: {r.spec}{copy}"] = (r.packets, r.bytes)
    return chains, rules


def _nft(ns: Namespace) -> tuple[dict[tuple[str, str], str], dict[str, tuple[int, int]]]:
    objects: dict[tuple[str, str], str] = {}
    rules: dict[str, tuple[int, int]] = {}
    for t in ns.nftables:
        for c in t.chains:
            where = f"{t.family} {t.name} {c.name}"
            hooked = f"type {c.type} hook {c.hook} priority {c.priority} policy {c.policy}" if c.base else "regular"
            objects["nft-chain", where] = hooked + (f" device {c.device}" if c.device else "")
            seen: dict[str, int] = {}
            for r in c.rules:
                text = _COUNTER.sub("counter", r.text)
                seen[text] = seen.get(text, 0) + 1
                rules[f"{where}: {text}" + (f" #{seen[text]}" if seen[text] > 1 else "")] = (r.packets, r.bytes)
        for s in t.sets:
            objects["nft-set", f"{t.family} {t.name} {s.name}"] = f"{s.kind} {s.type} {s.elements}"
    return objects, rules


def _who(labels: Labels, ns: Namespace) -> str:
    """What operators call a namespace: its container (the store's name, else Docker's), its overlay's sandbox,
    its host, else its label."""
    container = labels.containers.get(ns.name) or (ns.container.name if ns.container else None)
    network = labels.networks.get(ns.name) or ns.network
    host = next((h for h, label in labels.host_netns.items() if label == ns.name), None)
    return container or (f"{network} sandbox" if network else f"{host} (host)" if host else ns.name)


def _is_sandbox(labels: Labels, ns: Namespace) -> bool:
    return ns.name in labels.networks or ns.kind == "overlay-sandbox" or bool(_SANDBOX.search(ns.name))


def _compare(space: _Namespace, old: Namespace, new: Namespace) -> None:
    space.links(old, new)
    space.fdb(old.fdb, new.fdb)
    space.neighbours(old.neighbours, new.neighbours)
    space.routes(old.routes, new.routes)
    space.sysctls(old.sysctls, new.sysctls)
    space.netfilter(old.netfilter, new.netfilter)
    space.nftables(old, new)


def diff(old: HostSnapshot, new: HostSnapshot, labels: Labels | None = None,
         only: set[str] | None = None) -> list[Change]:  # fmt: skip
    """Every change from ``old`` to ``new``, grouped by host and namespace, the likely-relevant first. ``only``:
    compare just these namespaces (those the netlink monitor named) besides any that appeared or disappeared."""
    labels = labels or Labels()
    before = {ns.name: ns for ns in old.namespaces}
    after = {ns.name: ns for ns in new.namespaces}
    out: list[Change] = []
    for name in [*before, *(n for n in after if n not in before)]:
        a, b = before.get(name), after.get(name)
        if only is not None and a is not None and b is not None and name not in only:
            continue
        ns = b or a
        assert ns is not None  # the name came from one side
        host = labels.hosts.get(name) or (new.host if b is not None else old.host)
        space = _Namespace(host, name, _who(labels, ns), _is_sandbox(labels, ns))
        if a is None or b is None:
            text = f"{ns.kind}, {len(ns.links)} links, {len(ns.fdb)} FDB, {len(ns.neighbours)} neighbours"
            space.add("namespace", "appeared" if a is None else "disappeared", name, *(("", text) if a is None
                                                                                         else (text, "")))  # fmt: skip
        else:
            _compare(space, a, b)
        out += space.out
    return ordered(out)


def ordered(changes: list[Change]) -> list[Change]:
    """Grouped by (host, namespace), groups by their most relevant change, then within a group by relevance,
    kind and key."""
    best: dict[tuple[str, str], int] = {}
    for c in changes:
        best[c.host, c.netns] = min(best.get((c.host, c.netns), 9), c.rank)
    return sorted(changes, key=lambda c: (best[c.host, c.netns], c.host, c.netns, c.rank, KINDS.index(c.kind), c.key))


def changed(changes: Iterable[Change]) -> bool:
    """Whether the kernel's state changed, not only its counters: what makes ``snapshot --watch`` keep a file."""
    return any(c.change not in ("grew", "reset") for c in changes)
