"""The host snapshot: what one host's networking looks like at one instant.

Pure data, no I/O. Collectors in ``backend`` build it, ``diagnostics`` reasons over
it and ``tui`` renders it. Everything is frozen and made of tuples so a snapshot can
be shared between threads, hashed into caches and saved as a replayable fixture
(see ``backend.codec``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Address:
    """An address assigned to a link (``ip addr``)."""

    address: str
    prefixlen: int
    scope: str = "global"

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefixlen}"


@dataclass(frozen=True)
class LinkRef:
    """A link in some namespace, named the way an operator thinks of it.

    ``netns`` is the namespace id (``net:[inode]``); ``netns_name`` its label
    (container name, sandbox name, ``host``) so renderers need no second lookup.
    ``ifname`` is empty when the namespace is outside the snapshot's scope.
    """

    netns: str
    netns_name: str
    ifindex: int
    ifname: str = ""

    @property
    def namespace_only(self) -> bool:
        """A reference to a namespace, not to a device in it (``link_netns``)."""
        return self.ifindex == 0


@dataclass(frozen=True)
class VxlanInfo:
    """The VXLAN attributes that decide where encapsulated frames go."""

    vni: int
    dstport: int
    local: str | None = None
    group: str | None = None
    underlay: LinkRef | None = None
    learning: bool = True
    proxy: bool = False
    l2miss: bool = False
    l3miss: bool = False
    ageing: int = 300
    ttl: int = 0
    external: bool = False


@dataclass(frozen=True)
class BridgePort:
    """State of a link enslaved to a bridge: a blocked port drops everything."""

    state: str
    learning: bool = True
    unicast_flood: bool = True
    hairpin: bool = False


@dataclass(frozen=True)
class Link:
    """One network device (``ip -d link``)."""

    index: int
    name: str
    kind: str
    mac: str | None
    mtu: int
    operstate: str
    flags: tuple[str, ...] = ()
    master: str | None = None
    addresses: tuple[Address, ...] = ()
    parent: LinkRef | None = None
    peer: LinkRef | None = None
    vxlan: VxlanInfo | None = None
    bridge_port: BridgePort | None = None
    macvlan_mode: str | None = None
    vlan_id: int | None = None
    # The namespace the device's link lives in (IFLA_LINK_NETNSID; ifindex 0): a veth's peer's, or
    # the namespace a VXLAN device was created in, whose routes and sockets carry its UDP after the
    # device was moved into a sandbox (Docker's vxlan0 has no ``dev`` and no ``local``).
    link_netns: LinkRef | None = None

    @property
    def up(self) -> bool:
        return "UP" in self.flags


@dataclass(frozen=True)
class FdbEntry:
    """A forwarding-database entry (``bridge fdb``); ``dst`` is the remote VTEP."""

    mac: str
    device: str
    master: str | None = None
    dst: str | None = None
    vlan: int | None = None
    vni: int | None = None
    port: int | None = None
    flags: tuple[str, ...] = ()
    state: str = "dynamic"


@dataclass(frozen=True)
class Neighbour:
    """An ARP/NDP entry (``ip neigh``)."""

    ip: str
    device: str
    mac: str | None
    state: tuple[str, ...]
    router: bool = False


@dataclass(frozen=True)
class Route:
    """A route (``ip route``); ``dst`` is ``default`` or a CIDR."""

    dst: str
    device: str | None = None
    gateway: str | None = None
    source: str | None = None
    table: int = 254
    protocol: str = "boot"
    scope: str = "global"
    type: str = "unicast"
    metric: int | None = None


@dataclass(frozen=True)
class Sysctls:
    """The sysctls that decide whether a packet is forwarded or dropped.

    ``None`` means the knob does not exist in this namespace (for example
    ``bridge_nf_call_iptables`` when br_netfilter is not loaded).
    """

    ip_forward: bool | None = None
    rp_filter_all: int | None = None
    rp_filter_default: int | None = None
    rp_filter: dict[str, int] = field(default_factory=dict)
    bridge_nf_call_iptables: bool | None = None
    ip6_forward: bool | None = None  # net.ipv6.conf.all.forwarding (None: IPv6 disabled in the namespace)
    accept_ra: int | None = None  # net.ipv6.conf.all.accept_ra: 0 never, 1 unless forwarding, 2 even when forwarding


@dataclass(frozen=True)
class Rule:
    """One iptables rule, with the fields a packet trace matches on pulled out."""

    chain: str
    spec: str
    target: str | None = None
    packets: int = 0
    bytes: int = 0
    protocol: str | None = None
    source: str | None = None
    destination: str | None = None
    in_iface: str | None = None
    out_iface: str | None = None
    dport: str | None = None
    to: str | None = None


@dataclass(frozen=True)
class Chain:
    """An iptables chain; ``policy`` is ``None`` for user chains."""

    name: str
    policy: str | None = None
    packets: int = 0
    bytes: int = 0
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class Table:
    name: str
    chains: tuple[Chain, ...] = ()

    def chain(self, name: str) -> Chain | None:
        return next((c for c in self.chains if c.name == name), None)


@dataclass(frozen=True)
class RuleSet:
    """The rules one iptables back-end holds: ``legacy`` (x_tables) or ``nft``.

    Both can hold rules at once on one host; the kernel runs both, so both are kept.
    """

    backend: str
    tables: tuple[Table, ...] = ()

    def table(self, name: str) -> Table | None:
        return next((t for t in self.tables if t.name == name), None)


@dataclass(frozen=True)
class NftRule:
    """One native nftables rule: its handle, its text as ``nft -a list ruleset`` prints it, and its
    expressions as libnftables' JSON (``nft -j``) — the text for people, the expressions for the trace."""

    handle: int
    text: str
    expr: str = "[]"  # the rule's "expr" list, JSON text (libnftables' schema)
    packets: int = 0  # from its counter expression, when it has one
    bytes: int = 0
    comment: str = ""


@dataclass(frozen=True)
class NftChain:
    """A chain of an nftables table; a base chain has a type, a hook and a priority (and a device on netdev)."""

    name: str
    type: str | None = None  # filter | nat | route; None: a regular chain, reached by jump/goto only
    hook: str | None = None  # prerouting | input | forward | output | postrouting | ingress | egress
    priority: int | None = None
    policy: str | None = None  # accept | drop (base chains)
    device: str | None = None
    rules: tuple[NftRule, ...] = ()

    @property
    def base(self) -> bool:
        return self.hook is not None


@dataclass(frozen=True)
class NftSet:
    """A named set or map; ``elements`` as libnftables' JSON text (addresses, prefixes, ranges, verdicts)."""

    name: str
    kind: str  # set | map
    type: str  # ipv4_addr, inet_service, ifname … (a concatenation: "ipv4_addr . inet_service")
    elements: str = "[]"
    map_to: str | None = None  # a map's value type (verdict, ipv4_addr …)


@dataclass(frozen=True)
class NftTable:
    """A native nftables table, whichever tool wrote it (nft, firewalld, Docker 29, kube-proxy, iptables-nft)."""

    family: str  # ip | ip6 | inet | bridge | netdev | arp
    name: str
    chains: tuple[NftChain, ...] = ()
    sets: tuple[NftSet, ...] = ()

    def chain(self, name: str) -> NftChain | None:
        return next((c for c in self.chains if c.name == name), None)


@dataclass(frozen=True)
class ContainerInfo:
    """Docker's view of the container that owns a namespace."""

    name: str
    id: str
    networks: tuple[ContainerNetwork, ...] = ()


@dataclass(frozen=True)
class ContainerNetwork:
    network: str
    ip: str | None = None
    mac: str | None = None
    endpoint: str | None = None


@dataclass(frozen=True)
class DockerTask:
    """An endpoint of a Docker overlay as its Engine knows it, wherever it runs."""

    name: str
    ip: str
    mac: str  # what Docker derives from the address (02:42 + the IPv4 bytes)
    vtep: str  # the address of the host it runs on


@dataclass(frozen=True)
class DockerNetwork:
    """What a Docker Engine says of one of its overlays (``network inspect --verbose``): which hosts
    have it and every endpoint with its host — what each host's sandbox should be programmed for,
    including hosts that were not read."""

    name: str
    id: str
    vni: int | None = None
    subnet: str | None = None
    local_vtep: str | None = None  # this node's address in the swarm
    peers: tuple[str, ...] = ()  # addresses of the nodes that have the network
    tasks: tuple[DockerTask, ...] = ()
    vips: tuple[str, ...] = ()  # swarm services' virtual IPs on it (load-balanced by IPVS)


@dataclass(frozen=True)
class Namespace:
    """A network namespace and everything the kernel holds in it.

    ``kind`` is one of ``host``, ``named``, ``docker`` (a container's), ``overlay-sandbox``,
    ``docker-ingress`` (swarm's ``ingress_sbox``), ``docker-lb`` (an overlay's load-balancer
    sandbox ``lb_<netid>``), ``bind-mount`` or ``process``; ``name`` is the label operators read.
    """

    id: str
    kind: str
    name: str
    paths: tuple[str, ...] = ()
    pids: tuple[int, ...] = ()
    container: ContainerInfo | None = None
    network: str | None = None  # Docker's name of the network an overlay or load-balancer sandbox serves
    links: tuple[Link, ...] = ()
    fdb: tuple[FdbEntry, ...] = ()
    neighbours: tuple[Neighbour, ...] = ()
    routes: tuple[Route, ...] = ()
    sysctls: Sysctls = field(default_factory=Sysctls)
    netfilter: tuple[RuleSet, ...] = ()
    nftables: tuple[NftTable, ...] = ()  # every nftables table of every family, as the kernel holds it
    netfilter6: tuple[RuleSet, ...] = ()  # ip6tables' rules of both back-ends (nftables' ip6 tables are above)

    def link(self, name: str) -> Link | None:
        return next((lk for lk in self.links if lk.name == name), None)

    def bridges(self) -> dict[str, tuple[Link, ...]]:
        """Each bridge with the links enslaved to it, in index order."""
        return {
            br.name: tuple(lk for lk in self.links if lk.master == br.name) for br in self.links if br.kind == "bridge"
        }


@dataclass(frozen=True)
class VethPair:
    """Both ends of a veth pair, each named with its namespace."""

    a: LinkRef
    b: LinkRef


@dataclass(frozen=True)
class HostSnapshot:
    """Every namespace of one host; ``notes`` say what could not be read and why."""

    host: str
    taken_at: float
    kernel: str
    namespaces: tuple[Namespace, ...] = ()
    notes: tuple[str, ...] = ()
    docker: tuple[DockerNetwork, ...] = ()  # the overlays the host's Docker Engine reported

    def namespace(self, key: str) -> Namespace | None:
        """Find a namespace by id or label."""
        return next((ns for ns in self.namespaces if key in (ns.id, ns.name)), None)

    def veth_pairs(self) -> tuple[VethPair, ...]:
        """Every veth pair once, with both ends resolved across namespaces."""
        seen: set[tuple[str, int]] = set()
        pairs = []
        for ns in self.namespaces:
            for lk in ns.links:
                if lk.kind != "veth" or lk.peer is None or (ns.id, lk.index) in seen:
                    continue
                seen.add((lk.peer.netns, lk.peer.ifindex))
                pairs.append(VethPair(LinkRef(ns.id, ns.name, lk.index, lk.name), lk.peer))
        return tuple(pairs)


@dataclass(frozen=True)
class Labels:
    """What the cluster store says about namespaces, by namespace label.

    A snapshot knows devices and tables; which vxray host, container or overlay
    network a namespace belongs to is the store's knowledge. Diagnostics need both
    to name a fix (``vxray host set yy3 …``, ``vxray fdb sync prod``).
    """

    hosts: dict[str, str] = field(default_factory=dict)  # namespace -> vxray host
    containers: dict[str, str] = field(default_factory=dict)  # namespace -> container
    networks: dict[str, str] = field(default_factory=dict)  # overlay sandbox namespace -> network
    host_netns: dict[str, str] = field(default_factory=dict)  # vxray host -> its own namespace label
    offline: dict[str, str] = field(default_factory=dict)  # vxray host -> why it could not be read
    # container namespace -> its address -> the network it is on: which network to connect another to
    endpoints: dict[str, dict[str, str]] = field(default_factory=dict)
