"""``show links|bridges|veths|fdb|neigh|routes|nat|netns [dev DEV] [netns NS] [TEXT]``: the tables the app shows.

Pure: a snapshot (and the store's labels) in, rows out. ``dev`` and ``netns`` keep
the rows of one device or namespace; any other word keeps rows containing it
(``show neigh 172.21.`` lists the overlay's neighbours).
"""

from __future__ import annotations

from collections.abc import Iterator

from backend.errors import VxrayError
from backend.model import HostSnapshot, Labels, Namespace
from tui.summary import ref

TABLES = ("links", "bridges", "veths", "fdb", "neigh", "routes", "nat", "netns")
Row = tuple[str, str, str]  # namespace label, device ("" when none), text


def _rows(snap: HostSnapshot, labels: Labels, what: str) -> Iterator[Row]:
    name = {**labels.containers}
    for ns in snap.namespaces:
        label = ns.name
        if what == "netns":
            who = name.get(label) or labels.networks.get(label, "")
            yield label, "", f"{ns.kind:<16} {ns.id:<20} {len(ns.links):>3} links  {labels.hosts.get(label, '')} {who}"
        elif what == "links":
            for lk in ns.links:
                addrs = " ".join(a.cidr for a in lk.addresses if a.scope != "link")
                yield label, lk.name, (f"{lk.name:<16} {lk.kind or 'device':<8} {lk.operstate:<8} mtu {lk.mtu:<5} "
                                       f"{lk.master or '-':<10} {lk.mac or '-':<17} {addrs}")  # fmt: skip
        elif what == "bridges":
            yield from _bridges(ns, name)
        elif what == "veths":
            for lk in ns.links:
                if lk.kind == "veth":
                    peer = ref(lk.peer) if lk.peer else "-"
                    owner = name.get(lk.peer.netns_name, "") if lk.peer else ""
                    yield label, lk.name, f"{lk.name:<16} <-> {peer:<40} {owner}"
        elif what == "fdb":
            for e in ns.fdb:
                where = f"dst {e.dst}" if e.dst else f"master {e.master}" if e.master else ""
                yield label, e.device, f"{e.mac} dev {e.device} {where} {' '.join(e.flags)} {e.state}"
        elif what == "neigh":
            for n in ns.neighbours:
                yield label, n.device, f"{n.ip} dev {n.device} lladdr {n.mac or '-'} {'/'.join(n.state)}"
        elif what == "routes":
            for r in ns.routes:
                via = f" via {r.gateway}" if r.gateway else ""
                yield label, r.device or "", f"{r.dst}{via} dev {r.device or '-'} table {r.table} proto {r.protocol}"
        elif what == "nat":
            for rs in ns.netfilter:
                for table in rs.tables:
                    for chain in table.chains:
                        policy = f" policy {chain.policy}" if chain.policy else ""
                        yield label, "", f"{rs.backend} {table.name} :{chain.name}{policy} [{chain.packets} packets]"
                        for r in chain.rules:
                            yield label, "", f"{rs.backend} {table.name} -A {chain.name} {r.spec} [{r.packets}]"


def _bridges(ns: Namespace, name: dict[str, str]) -> Iterator[Row]:
    for br, ports in ns.bridges().items():
        for p in ports:
            peer = f" <-> {ref(p.peer)}" if p.peer else ""
            owner = f" ({name[p.peer.netns_name]})" if p.peer and p.peer.netns_name in name else ""
            state = p.bridge_port.state if p.bridge_port else "-"
            yield ns.name, p.name, f"{br:<12} port {p.name:<16} {state:<10}{peer}{owner}"


def show(snap: HostSnapshot, labels: Labels, words: list[str], host: str | None = None) -> list[str]:
    """The table ``words[0]`` for the host in use (or every host), filtered by the rest."""
    if not words or words[0] not in TABLES:
        raise VxrayError(f"show what? one of {', '.join(TABLES)}" + (f" (not {words[0]!r})" if words else ""))
    what, rest = words[0], words[1:]
    dev = netns = None
    text: list[str] = []
    i = 0
    while i < len(rest):
        if rest[i] in ("dev", "netns") and i + 1 < len(rest):
            dev, netns = (rest[i + 1], netns) if rest[i] == "dev" else (dev, rest[i + 1])
            i += 2
            continue
        text.append(rest[i])
        i += 1
    out = []
    names = labels.containers
    for label, device, line in _rows(snap, labels, what):
        if host is not None and labels.hosts.get(label) not in (host, None) and label != "host":
            continue
        if dev is not None and device != dev:
            continue
        if netns is not None and netns not in (label, names.get(label)):
            continue
        row = f"{names.get(label, label):<28} {line}"
        if all(t in row for t in text):
            out.append(row)
    return out or ["(no rows)"]
