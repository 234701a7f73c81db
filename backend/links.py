"""Turn raw links into model links, resolving references across namespaces.

A veth's peer, a macvlan's parent and a moved VXLAN device's underlay are given
by the kernel as (ifindex, nsid), where the nsid only means something inside the
namespace that reports it. For veths both ends name each other's ifindex, which
narrows the peer to one or two candidates, and one RTM_GETNSID request confirms
it; for one-way references (underlays, parents) vxray asks the namespace for the
nsid of every other namespace in scope, once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from backend import nsenter
from backend.model import Address, Link, LinkRef
from backend.netlink import NetlinkSocket
from backend.netns import NsHandle
from backend.rtnl import RawLink, nsid_of


@dataclass
class NsLinks:
    """One namespace's raw links, with the handle that names and enters it."""

    handle: NsHandle
    links: list[RawLink] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.handle.name

    def by_index(self, index: int) -> RawLink | None:
        return next((lk for lk in self.links if lk.index == index), None)


class Resolver:
    """Resolves (namespace, nsid, ifindex) references to ``LinkRef``s."""

    def __init__(self, namespaces: list[NsLinks]) -> None:
        self.namespaces = namespaces
        self._nsids: dict[int, dict[int, NsLinks]] = {}
        self._veths: dict[int, list[tuple[NsLinks, RawLink]]] = {}
        self._pairs: dict[tuple[int, int], LinkRef] = {}
        for ns in namespaces:
            for lk in ns.links:
                if lk.kind == "veth":
                    self._veths.setdefault(lk.index, []).append((ns, lk))

    def _nsid_map(self, ns: NsLinks) -> dict[int, NsLinks]:
        """Every nsid ``ns`` has assigned to a namespace in scope (asked once per namespace)."""
        if ns.handle.inode not in self._nsids:
            mapping = {}
            with nsenter.netns(ns.handle.fd), NetlinkSocket() as nl:
                for other in self.namespaces:
                    if other is not ns and (nsid := nsid_of(nl, other.handle.fd)) is not None:
                        mapping[nsid] = other
            self._nsids[ns.handle.inode] = mapping
        return self._nsids[ns.handle.inode]

    def ref(self, ns: NsLinks, index: int | None, nsid: int | None) -> LinkRef | None:
        """The link ``index`` in the namespace ``nsid`` names from ``ns`` (``ns`` itself if None)."""
        if not index:
            return None
        target = ns if nsid is None else self._nsid_map(ns).get(nsid)
        if target is None:
            return LinkRef(f"nsid:{nsid}", "(outside scope)", index)
        lk = target.by_index(index)
        return LinkRef(target.handle.id, target.name, index, lk.name if lk else "")

    def netns_ref(self, ns: NsLinks, nsid: int) -> LinkRef:
        """The namespace ``ns`` calls ``nsid``, as a namespace-only reference (ifindex 0)."""
        target = self._nsid_map(ns).get(nsid)
        if target is None:
            return LinkRef(f"nsid:{nsid}", "(outside scope)", 0)
        return LinkRef(target.handle.id, target.name, 0)

    def _confirms(self, ns: NsLinks, other: NsLinks, nsid: int) -> bool:
        """Whether ``ns`` calls ``other`` by ``nsid`` (one RTM_GETNSID inside ``ns``)."""
        if ns.handle.inode in self._nsids:
            return self._nsids[ns.handle.inode].get(nsid) is other
        with nsenter.netns(ns.handle.fd), NetlinkSocket() as nl:
            return nsid_of(nl, other.handle.fd) == nsid

    def veth_peer(self, ns: NsLinks, lk: RawLink) -> LinkRef | None:
        """The other end: matched by the ifindexes both ends name, confirmed by nsid.

        Index matching alone can be fooled when the true peer is outside the scope
        and another veth happens to have the same indexes, hence the confirmation.
        """
        if lk.link_netnsid is None:
            return self.ref(ns, lk.link_index, None)
        if (ns.handle.inode, lk.index) in self._pairs:  # confirmed from the other end already
            return self._pairs[ns.handle.inode, lk.index]
        for other, peer in self._veths.get(lk.link_index or 0, []):
            if (
                other is not ns
                and peer.link_index == lk.index
                and peer.link_netnsid is not None
                and self._confirms(ns, other, lk.link_netnsid)
            ):
                self._pairs[other.handle.inode, peer.index] = LinkRef(ns.handle.id, ns.name, lk.index, lk.name)
                return LinkRef(other.handle.id, other.name, peer.index, peer.name)
        return self.ref(ns, lk.link_index, lk.link_netnsid)

    def links(self, ns: NsLinks, addresses: dict[int, list[Address]]) -> tuple[Link, ...]:
        names = {lk.index: lk.name for lk in ns.links}
        return tuple(self._link(ns, lk, names, addresses.get(lk.index, [])) for lk in ns.links)

    def _link(self, ns: NsLinks, lk: RawLink, names: dict[int, str], addresses: list[Address]) -> Link:
        vxlan = lk.vxlan and replace(lk.vxlan, underlay=self.ref(ns, lk.vxlan_underlay_index, lk.link_netnsid))
        peer = self.veth_peer(ns, lk) if lk.kind == "veth" else None
        link_netns = None
        if lk.link_netnsid is not None:  # a veth's is its peer's namespace, known without asking the kernel
            link_netns = (LinkRef(peer.netns, peer.netns_name, 0) if peer is not None
                          else self.netns_ref(ns, lk.link_netnsid))  # fmt: skip
        return Link(
            index=lk.index,
            name=lk.name,
            kind=lk.kind,
            mac=lk.mac,
            mtu=lk.mtu,
            operstate=lk.operstate,
            flags=lk.flags,
            master=names.get(lk.master_index or 0),
            addresses=tuple(addresses),
            parent=self.ref(ns, lk.link_index, lk.link_netnsid) if lk.kind in ("macvlan", "macvtap", "vlan") else None,
            peer=peer,
            vxlan=vxlan,
            bridge_port=lk.bridge_port,
            macvlan_mode=lk.macvlan_mode,
            vlan_id=lk.vlan_id,
            link_netns=link_netns,
        )
