"""The app's tables, as rows of strings: pure functions of a snapshot and the store's labels.

Each view has its columns and a row key (stable across refreshes, so the app can
tell which rows are new and highlight them). The namespace column carries the
container's name wherever a namespace belongs to one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from backend.model import HostSnapshot, Labels, Namespace, NftChain
from diagnostics.graph import machines, vtep_owners
from diagnostics.world import World
from tui.summary import multicast, ref

Row = tuple[str, tuple[str, ...]]  # key, cells

VIEWS: dict[str, tuple[str, ...]] = {
    "Namespaces": ("namespace", "kind", "id", "links", "host", "belongs to"),
    "Links": ("namespace", "link", "kind", "state", "mtu", "master", "mac", "addresses"),
    "Bridges": ("namespace", "bridge", "port", "state", "peer", "container"),
    "Veths": ("namespace", "end", "peer end", "peer namespace"),
    "VXLAN": ("namespace", "device", "vni", "local", "dstport", "flags", "underlay", "fdb entries"),
    "FDB": ("namespace", "mac", "device", "dst / master", "state", "owner"),
    "Neighbours": ("namespace", "ip", "device", "lladdr", "state"),
    "Routes": ("namespace", "dst", "gateway", "device", "table", "proto"),
    "Firewall": ("namespace", "backend", "family", "table", "chain", "rule", "packets"),
}


def _who(labels: Labels, ns: Namespace) -> str:
    """What an operator calls a namespace: its container, its overlay's sandbox, its host, else its name."""
    if ns.name in labels.containers:
        return labels.containers[ns.name]
    if ns.name in labels.networks:
        return f"{labels.networks[ns.name]} sandbox"
    host = next((h for h, label in labels.host_netns.items() if label == ns.name), None)
    return f"{host} (host)" if host else labels.hosts.get(ns.name, ns.name) if ns.name == "host" else ns.name


def _namespaces(ns: Namespace, labels: Labels, owners: dict[str, str]) -> Iterator[Row]:
    belongs = labels.containers.get(ns.name) or (f"{labels.networks[ns.name]} sandbox"
                                                 if ns.name in labels.networks else "")  # fmt: skip
    yield ns.id, (ns.name, ns.kind, ns.id, str(len(ns.links)), labels.hosts.get(ns.name, ""), belongs)


def _links(ns: Namespace, labels: Labels, owners: dict[str, str]) -> Iterator[Row]:
    for lk in ns.links:
        addrs = " ".join(a.cidr for a in lk.addresses if a.scope != "link")
        yield f"{ns.id}/{lk.index}", (_who(labels, ns), lk.name, lk.kind or "device", lk.operstate, str(lk.mtu),
                                      lk.master or "", lk.mac or "", addrs)  # fmt: skip


def _bridges(ns: Namespace, labels: Labels, owners: dict[str, str]) -> Iterator[Row]:
    for br, ports in ns.bridges().items():
        for p in ports:
            peer = ref(p.peer) if p.peer else ""
            ctr = labels.containers.get(p.peer.netns_name, "") if p.peer else ""
            state = p.bridge_port.state if p.bridge_port else ""
            yield f"{ns.id}/{p.index}", (_who(labels, ns), br, p.name, state, peer, ctr)


def _veths(ns: Namespace, labels: Labels, owners: dict[str, str]) -> Iterator[Row]:
    for lk in ns.links:
        if lk.kind == "veth":
            where = labels.containers.get(lk.peer.netns_name, lk.peer.netns_name) if lk.peer else ""
            yield f"{ns.id}/{lk.index}", (_who(labels, ns), lk.name, ref(lk.peer), where)


def _vxlan(ns: Namespace, labels: Labels, owners: dict[str, str]) -> Iterator[Row]:
    for lk in ns.links:
        vx = lk.vxlan
        if vx is None:
            continue
        flags = " ".join(n for n, on in (("learning", vx.learning), ("proxy", vx.proxy), ("l2miss", vx.l2miss),
                                         ("l3miss", vx.l3miss)) if on)  # fmt: skip
        entries = sum(1 for e in ns.fdb if e.device == lk.name and e.dst)
        yield f"{ns.id}/{lk.index}", (_who(labels, ns), lk.name, str(vx.vni), vx.local or "", str(vx.dstport),
                                      flags, ref(vx.underlay) if vx.underlay or lk.link_netns is None
                                      else f"netns {lk.link_netns.netns_name}", str(entries))  # fmt: skip


def _fdb(ns: Namespace, labels: Labels, owners: dict[str, str]) -> Iterator[Row]:
    for e in ns.fdb:
        if multicast(e):
            continue
        where = f"dst {e.dst}" if e.dst else f"master {e.master}" if e.master else ""
        yield f"{ns.id}/{e.device}/{e.mac}/{e.dst}", (_who(labels, ns), e.mac, e.device, where, e.state,
                                                      owners.get(e.mac, ""))  # fmt: skip


def _neighbours(ns: Namespace, labels: Labels, owners: dict[str, str]) -> Iterator[Row]:
    for n in ns.neighbours:
        if ":" in n.ip and n.ip.lower().startswith(("fe80", "ff")):  # the kernel's own link-local/multicast NDP
            continue  # global IPv6 entries stay: the NDP entries `arp add` and `fdb sync` write on dual stack
        yield f"{ns.id}/{n.device}/{n.ip}", (_who(labels, ns), n.ip, n.device, n.mac or "", "/".join(n.state))


def _routes(ns: Namespace, labels: Labels, owners: dict[str, str]) -> Iterator[Row]:
    for r in ns.routes:
        if ":" in r.dst:
            continue
        yield f"{ns.id}/{r.table}/{r.dst}", (_who(labels, ns), r.dst, r.gateway or "", r.device or "", str(r.table),
                                             r.protocol)  # fmt: skip


FAMILY_ORDER = ("ip", "ip6", "inet", "arp", "bridge", "netdev")


def _hooked(chain: NftChain) -> str:
    """A base chain's place: ``hook input priority -10 policy drop`` (a regular chain has none)."""
    if not chain.base:
        return ""
    device = f" device {chain.device}" if chain.device else ""
    return f"{chain.type} hook {chain.hook}{device} priority {chain.priority} policy {chain.policy}"


def _firewall(ns: Namespace, labels: Labels, owners: dict[str, str]) -> Iterator[Row]:
    """The iptables rule sets (family ip, per back-end), ip6tables' (ip6), then every nftables table by family:
    chains, then rules."""
    who = _who(labels, ns)
    for family, rs in [("ip", rs) for rs in ns.netfilter] + [("ip6", rs) for rs in ns.netfilter6]:
        base = f"{ns.id}/{rs.backend}" if family == "ip" else f"{ns.id}/{rs.backend}6"
        for table in rs.tables:
            for chain in table.chains:
                policy = f"policy {chain.policy}" if chain.policy else ""
                yield (
                    f"{base}/{table.name}/{chain.name}",
                    (who, rs.backend, family, table.name, chain.name, policy, str(chain.packets)),
                )
                for i, r in enumerate(chain.rules):
                    yield (
                        f"{base}/{table.name}/{chain.name}/{i}",
                        (who, rs.backend, family, table.name, chain.name, r.spec, str(r.packets)),
                    )
    rank = {f: i for i, f in enumerate(FAMILY_ORDER)}
    for t in sorted(ns.nftables, key=lambda t: rank.get(t.family, len(rank))):
        key = f"{ns.id}/nftables/{t.family}/{t.name}"
        for chain in t.chains:
            yield f"{key}/{chain.name}", (who, "nftables", t.family, t.name, chain.name, _hooked(chain), "")
            for r in chain.rules:
                yield (
                    f"{key}/{chain.name}/{r.handle}",
                    (who, "nftables", t.family, t.name, chain.name, r.text, str(r.packets)),
                )


ROWS: dict[str, Callable[[Namespace, Labels, dict[str, str]], Iterator[Row]]] = {
    "Namespaces": _namespaces, "Links": _links, "Bridges": _bridges, "Veths": _veths, "VXLAN": _vxlan,
    "FDB": _fdb, "Neighbours": _neighbours, "Routes": _routes, "Firewall": _firewall,
}  # fmt: skip


def rows(snap: HostSnapshot, labels: Labels, view: str, host: str | None = None, text: str = "") -> list[Row]:
    """The rows of ``view`` for namespaces of ``host`` (all when None) containing ``text``."""
    owners = {lk.mac: labels.containers[ns.name] for ns in snap.namespaces if ns.name in labels.containers
              for lk in ns.links if lk.mac}  # fmt: skip
    out = []
    for ns in snap.namespaces:
        if host is not None and labels.hosts.get(ns.name) != host:
            continue
        for key, cells in ROWS[view](ns, labels, owners):
            if not text or any(text in c for c in cells):
                out.append((key, cells))
    return out


def hosts(labels: Labels, snap: HostSnapshot) -> list[str]:
    """Hosts in the order the app lists them (the topology graph's order: the store's, then the underlay)."""
    return machines(snap, labels)


def vteps(snap: HostSnapshot, labels: Labels) -> dict[str, str]:
    """VTEP address -> the host whose VXLAN device sends from it (namespaces of no known host left out)."""
    return vtep_owners(World([snap], labels))


def trace_ends(snap: HostSnapshot, labels: Labels) -> list[str]:
    """What the trace's pickers offer: every container by the store's name or Docker's — as ``HOST:name``
    where the same name runs on several machines."""
    found: dict[str, list[str]] = {}
    for ns in snap.namespaces:
        name = labels.containers.get(ns.name) or (ns.container.name if ns.container else None)
        if name:
            found.setdefault(name, []).append(ns.name)
    return sorted(name if len(where) == 1 else label for name, where in found.items() for label in where)
