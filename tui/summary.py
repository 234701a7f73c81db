"""The readable text form of a snapshot, as ``vxray snapshot`` prints it.

Pure: a snapshot in, lines out. Columns follow ``ip``/``bridge``/``iptables-save``
so an operator reads it without learning a new notation.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TypeVar

from backend.model import FdbEntry, HostSnapshot, Link, LinkRef, Namespace, Neighbour, NftTable, Route, RuleSet


def ref(r: LinkRef | None) -> str:
    if r is None:
        return "-"
    return f"{r.ifname or f'if{r.ifindex}'}@{r.netns_name}"


def _link(lk: Link) -> str:
    parts = [f"{lk.index:>4} {lk.name:<16} {lk.kind:<9} {lk.operstate:<8} mtu {lk.mtu:<5}"]
    if lk.mac:
        parts.append(lk.mac)
    if lk.master:
        parts.append(f"master {lk.master}")
    if lk.peer:
        parts.append(f"peer {ref(lk.peer)}")
    if lk.parent:
        parts.append(f"parent {ref(lk.parent)}")
    if lk.macvlan_mode:
        parts.append(f"mode {lk.macvlan_mode}")
    parts.extend(a.cidr for a in lk.addresses if a.scope != "link")
    return "  ".join(parts)


def _vxlan(lk: Link) -> str:
    vx = lk.vxlan
    assert vx is not None
    flags = [
        "learning" if vx.learning else "nolearning",
        *(name for name, on in (("proxy", vx.proxy), ("l2miss", vx.l2miss), ("l3miss", vx.l3miss)) if on),
    ]
    return (
        f"{lk.name} vni {vx.vni} dstport {vx.dstport} local {vx.local or '-'} "
        f"group {vx.group or '-'} dev {ref(vx.underlay)}{_home(lk)} ageing {vx.ageing} {' '.join(flags)} mtu {lk.mtu}"
    )


def _home(lk: Link) -> str:
    """Where a VXLAN device without ``dev`` sends from: the namespace it was created in (Docker's vxlan0)."""
    if lk.vxlan is None or lk.vxlan.underlay is not None or lk.link_netns is None:
        return ""
    return f" link-netns {lk.link_netns.netns_name}"


def multicast(entry: FdbEntry | Neighbour | Route) -> bool:
    """Kernel-made multicast entries (33:33:…, 01:00:5e:…, ff02::…, fe80::/64) that bury the real ones."""
    if isinstance(entry, FdbEntry):
        return bool(entry.mac) and int(entry.mac[:2], 16) & 1 == 1
    if isinstance(entry, Neighbour):
        return entry.ip.startswith("ff") or (entry.ip[:3].isdigit() and 224 <= int(entry.ip.split(".")[0]) <= 239)
    return entry.dst.startswith(("fe80::", "ff00::"))


def _limited(title: str, rows: list[str], limit: int, hidden: int = 0) -> Iterator[str]:
    if not rows and not hidden:
        return
    yield f"  {title} ({len(rows)})" + (f" +{hidden} multicast hidden (--all shows them)" if hidden else "")
    shown = rows if limit <= 0 else rows[:limit]
    yield from (f"    {r}" for r in shown)
    if len(shown) < len(rows):
        yield f"    … {len(rows) - len(shown)} more (--limit 0 shows all)"


def _rules(rs: RuleSet, limit: int, family: str = "") -> Iterator[str]:
    for table in rs.tables:
        what = "nat" if table.name == "nat" else "filter, FORWARD and INPUT paths"
        what = f"{family} {what}" if family else what
        rows = []
        for chain in table.chains:
            policy = chain.policy or "-"
            rows.append(f":{chain.name} {policy} [{chain.packets}:{chain.bytes}]")
            rows.extend(f"  [{r.packets}:{r.bytes}] -A {r.chain} {r.spec}" for r in chain.rules)
        yield from _limited(f"{what} [{rs.backend}]", rows, limit)


def _nftables(tables: tuple[NftTable, ...], limit: int) -> Iterator[str]:
    """Each nftables table with its chains (hook, priority, policy) and rule counts; the rules are the app's."""
    rows = []
    for t in tables:
        sets = f", {len(t.sets)} sets/maps" if t.sets else ""
        rows.append(f"table {t.family} {t.name}: {sum(len(c.rules) for c in t.chains)} rules{sets}")
        for c in t.chains:
            where = f" {c.type} hook {c.hook}" + (f" device {c.device}" if c.device else "") if c.base else ""
            place = f" priority {c.priority} policy {c.policy}" if c.base else ""
            rows.append(f"  chain {c.name}{where}{place} ({len(c.rules)} rules)")
    yield from _limited("nftables", rows, limit)


Entry = TypeVar("Entry", FdbEntry, Neighbour, Route)


def _split(entries: tuple[Entry, ...], show_all: bool) -> tuple[list[Entry], int]:
    shown = [e for e in entries if show_all or not multicast(e)]
    return shown, len(entries) - len(shown)


def namespace_lines(ns: Namespace, limit: int = 25, show_all: bool = False) -> Iterator[str]:
    label = f" container {ns.container.name}" if ns.container else ""
    yield f"== {ns.name} [{ns.kind}{label}] {ns.id}" + (f" pids {','.join(map(str, ns.pids[:5]))}" if ns.pids else "")
    s = ns.sysctls
    nf = "" if s.bridge_nf_call_iptables is None else f"  bridge-nf-call-iptables={int(s.bridge_nf_call_iptables)}"
    fwd = "?" if s.ip_forward is None else int(s.ip_forward)
    fwd6 = "" if s.ip6_forward is None else f"  ipv6 forwarding={int(s.ip6_forward)} accept_ra={s.accept_ra}"
    yield f"  sysctl  ip_forward={fwd}  rp_filter all={s.rp_filter_all} default={s.rp_filter_default}{fwd6}{nf}"
    yield from _limited("links", [_link(lk) for lk in ns.links], limit)
    bridges = [
        f"{br}: " + (", ".join(f"{p.name}({p.bridge_port.state if p.bridge_port else '?'})"
                              + (f"→{ref(p.peer)}" if p.peer else "") for p in ports) or "no ports")
        for br, ports in ns.bridges().items()
    ]  # fmt: skip
    yield from _limited("bridges", bridges, limit)
    yield from _limited("vxlan", [_vxlan(lk) for lk in ns.links if lk.vxlan], limit)
    fdb_entries, fdb_hidden = _split(ns.fdb, show_all)
    fdb = [
        f"{e.mac} dev {e.device}" + (f" vlan {e.vlan}" if e.vlan else "") + (f" dst {e.dst}" if e.dst else "")
        + (f" vni {e.vni}" if e.vni else "") + (f" master {e.master}" if e.master else "")
        + "".join(f" {f}" for f in e.flags) + f" {e.state}"
        for e in fdb_entries
    ]  # fmt: skip
    yield from _limited("fdb", fdb, limit, fdb_hidden)
    neighbours, neigh_hidden = _split(ns.neighbours, show_all)
    neigh = [f"{n.ip} dev {n.device} lladdr {n.mac or '-'} {' '.join(n.state)}" for n in neighbours]
    yield from _limited("neigh", neigh, limit, neigh_hidden)
    route_entries, routes_hidden = _split(ns.routes, show_all)
    routes = [
        f"{r.dst}" + (f" via {r.gateway}" if r.gateway else "") + (f" dev {r.device}" if r.device else "")
        + (f" src {r.source}" if r.source else "") + (f" table {r.table}" if r.table != 254 else "")
        + (f" {r.type}" if r.type != "unicast" else "")
        for r in route_entries
    ]  # fmt: skip
    yield from _limited("routes", routes, limit, routes_hidden)
    for rs in ns.netfilter:
        yield from _rules(rs, limit)
    for rs in ns.netfilter6:
        yield from _rules(rs, limit, "ip6tables")
    yield from _nftables(ns.nftables, limit)


def snapshot_lines(snap: HostSnapshot, limit: int = 25, show_all: bool = False) -> Iterator[str]:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snap.taken_at))
    yield f"host {snap.host}  kernel {snap.kernel}  taken {when}  {len(snap.namespaces)} namespaces"
    pairs = snap.veth_pairs()
    if pairs:
        yield f"veth pairs ({len(pairs)})"
        shown = pairs if limit <= 0 else pairs[:limit]
        yield from (f"  {ref(p.a)} <-> {ref(p.b)}" for p in shown)
        if len(shown) < len(pairs):
            yield f"  … {len(pairs) - len(shown)} more (--limit 0 shows all)"
    for ns in snap.namespaces:
        yield from namespace_lines(ns, limit, show_all)
    if snap.notes:
        yield "notes"
        yield from (f"  - {n}" for n in snap.notes)
