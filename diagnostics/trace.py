"""Follow a packet hop by hop through the kernel's own tables, as they are in the snapshots.

``trace`` walks what the kernel would do with an IPv4 or IPv6 packet from a source
namespace: route lookup, neighbour lookup (and, without an entry, who would
answer the ARP request or the IPv6 neighbour solicitation: a namespace on the same
L2 domain, a VXLAN device's proxy from its neighbour table, or nobody), veth
crossings with their MTUs (IPv6: 1280 at least, and no router fragments — a packet
too big for the next link is answered with ICMPv6 "packet too big"), bridge FDB lookups and
flooding, VXLAN FDB lookups and encapsulation, the underlay's routes, netfilter's
FORWARD/INPUT and NAT hooks (ip6tables' and the ip6/inet families' for IPv6),
``ip_forward`` (``net.ipv6.conf.all.forwarding``) and ``rp_filter``, and on the far side
the UDP port and VNI that must match a VXLAN device before decapsulation. Then
the reply, which often fails differently. Every step names the table it
consulted, the entry that matched (or that none did) and its decision; a drop
carries the vxray command, and the ``ip``/``bridge``/``iptables`` command, that
fixes it. Pure: the input is a ``World`` of snapshots, nothing is read or sent.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from backend.model import Link, Namespace, Route, RuleSet
from backend.shellwords import shell_line
from diagnostics.netfilter import Decision, Flow, published_accept
from diagnostics.nftables import INET6_FAMILIES, NftDecision, nat_target, run_hook
from diagnostics.world import BROADCAST, ZERO_MAC, World, canon, is_ip6

VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
VXLAN6_OVERHEAD = 70  # … over an IPv6 underlay: its header is 40 bytes
ICMP_HEADER = 28  # IPv4 20 + ICMP 8: ping's -s is the payload
ICMP6_HEADER = 48  # IPv6 40 + ICMPv6 8
IPV6_MIN_MTU = 1280  # RFC 8200: a link narrower than this carries no IPv6 (the kernel takes IPv6 off it)
MAX_HOPS = 128  # nested transmissions before a path is taken for a loop
USABLE = {"PERMANENT", "NOARP", "REACHABLE", "STALE", "DELAY", "PROBE"}
ISOLATION = "DOCKER-ISOLATION-STAGE-"  # the chains where Docker (and vxray's bridges) keep networks apart


@dataclass(frozen=True)
class Fix:
    """What undoes a drop, as data: the argv of the vxray command (``vxray`` first), and of the ``ip``/``bridge``/
    ``iptables`` one as run on machine ``on`` (the namespace entered first). Argvs are run as they are, never
    through a shell, and printed through ``shell_line``: names come from the kernel, Docker, a snapshot file, and
    ``p$(id)`` is a device name the kernel accepts. A value vxray cannot know is never a placeholder word: the
    command that needs it is absent, and ``missing`` says in words what it would take."""

    vxray: tuple[str, ...] = ()
    native: tuple[str, ...] = ()
    missing: str = ""
    on: str = ""  # the machine ``native`` runs on when the snapshots are several machines' ("" : this one)

    @property
    def runnable(self) -> bool:
        return bool(self.vxray)

    @property
    def vxray_line(self) -> str:
        return shell_line(*self.vxray)

    @property
    def native_line(self) -> str:
        """``on HOST:`` is no word of the argv: it says where the line is pasted."""
        line = shell_line(*self.native)
        return f"on {shell_line(self.on)}: {line}" if line and self.on else line

    def as_dict(self) -> dict[str, Any]:
        return {"vxray": list(self.vxray), "native": list(self.native), "missing": self.missing, "on": self.on,
                "vxray_line": self.vxray_line, "native_line": self.native_line}  # fmt: skip


def fix_in(world: World, key: str, vxray: tuple[str, ...] = (), native: tuple[str, ...] = (),
           missing: str = "") -> Fix:  # fmt: skip
    """A fix whose native command acts on namespace ``key``: entered as that namespace is, on its machine."""
    if not native:
        return Fix(vxray, (), missing)
    return Fix(vxray, world.command_in(key, *native), missing, world.machine_of(key))


def nft_fix(world: World, key: str, decision: NftDecision) -> Fix:
    """The fix of a native nftables drop: ``vxray firewall delete|policy`` on its host (``--netns`` when it is
    not the host's own namespace), and ``nft`` itself in the namespace."""
    place = world.place(key)
    named = next((p.rsplit("/", 1)[1] for p in place.ns.paths if p.startswith("/run/netns/")), None)
    words: tuple[str, ...] = ("--host", place.host) if len(world.labels.host_netns) > 1 else ()
    if place.ns.kind != "host" and not world.is_host_ns(key):
        if named is None:
            return fix_in(world, key, native=decision.undo(), missing=f"vxray's firewall command enters only named "
                          f"namespaces, not {place.label}")  # fmt: skip
        words += ("--netns", named)
    if decision.rule is None:
        vxray = ("vxray", "firewall", "policy", decision.family, decision.table, decision.chain, "accept")
    else:
        vxray = ("vxray", "firewall", "delete", decision.family, decision.table, decision.rule_chain, "handle",
                 str(decision.rule.handle))  # fmt: skip
    return fix_in(world, key, (*vxray, *words), decision.undo())


@dataclass(frozen=True)
class Step:
    """One table consulted on the way: where, what matched, and what the kernel decides."""

    host: str
    netns: str
    table: str
    entry: str
    decision: str
    ok: bool = True
    fix: Fix | None = None
    direction: str = "request"
    dev: str = ""  # where a live probe can be watched at this step (a capture on this device); "" = a decision

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fix": self.fix.as_dict() if self.fix is not None else None}


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    proto: str = "icmp"
    dport: int | None = None
    size: int = 84  # IP total length
    df: bool = False
    reply: bool = False
    vni: int | None = None
    inner: Frame | None = None  # an encapsulated VXLAN packet carries a frame
    sport: int | None = None  # None: an ephemeral port (a request's); a reply's is the request's dport
    icmp_type: str | None = None  # an ICMPv6 type other than echo's: NDP's nd-neighbor-solicit/-advert

    @property
    def ip6(self) -> bool:
        return is_ip6(self.dst)


@dataclass(frozen=True)
class Frame:
    src_mac: str
    dst_mac: str
    packet: Packet | None = None  # None: an ARP request
    arp_for: str | None = None
    arp_from: str | None = None
    vlan: int | None = None

    @property
    def size(self) -> int:
        return self.packet.size if self.packet else 72 if self.ndp else 28  # an NS: IPv6 40 + ICMPv6 NS 32

    @property
    def ndp(self) -> bool:
        """A neighbour solicitation (an address request for an IPv6 address), not an ARP request."""
        return self.packet is None and is_ip6(self.arp_for or "")


@dataclass(frozen=True)
class Trace:
    src: str
    dst: str
    proto: str
    steps: tuple[Step, ...]
    delivered: bool  # the packet and its reply
    failed_step: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "steps": [s.as_dict() for s in self.steps]}


@dataclass
class _State:
    """What the kernel remembers between the request and its reply."""

    learned: dict[str, dict[str, str]] = field(default_factory=dict)  # ns key -> ip -> mac (from ARP requests)
    # (ns key, VXLAN device) -> inner source MAC -> outer source VTEP: what a device with learning on
    # remembers from what it decapsulated, so the reply needs no FDB entry
    vxlan_learned: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    unnat: dict[tuple[str, str], str] = field(default_factory=dict)  # (ns key, masqueraded src) -> original


class _Sim:
    def __init__(self, world: World, state: _State, direction: str) -> None:
        self.w = world
        self.state = state
        self.direction = direction
        self.steps: list[Step] = []
        self.depth = 0
        self.arrived: Packet | None = None  # as delivered: after NAT on the way
        self.used_neigh: tuple[str, str, str] | None = None  # (ns key, device, ip) of the last entry used

    # -- steps and fixes ---------------------------------------------------------------------------

    def step(self, key: str, table: str, entry: str, decision: str, ok: bool = True, fix: Fix | None = None,
             dev: str = "") -> None:  # fmt: skip
        place = self.w.place(key)
        self.steps.append(Step(place.host, place.label, table, entry, decision, ok, fix, self.direction, dev))

    def fail(self, key: str, table: str, entry: str, decision: str, fix: Fix | None = None, dev: str = "") -> None:
        self.step(key, table, entry, decision, ok=False, fix=fix, dev=dev)

    def _fix(self, key: str, vxray: tuple[str, ...] = (), native: tuple[str, ...] = (), missing: str = "") -> Fix:
        return fix_in(self.w, key, vxray, native, missing)

    def _host_fix(self, key: str, setting: str, native: tuple[str, ...]) -> Fix:
        return self._fix(key, ("vxray", "host", "set", self.w.place(key).host, setting), native)

    def _down_end(self, key: str, dev: Link) -> tuple[str, Link]:
        """The end that is down: ``dev``, or its veth peer (an end whose peer is down has no carrier, and a
        bridge disables it as a port)."""
        peer = self.w.link_at(key, dev.peer) if dev.up and dev.peer is not None else None
        return peer if peer is not None and not peer[1].up else (key, dev)

    def _link_up_fix(self, key: str, dev: Link) -> Fix:
        """Set up the end that is down. ``vxray network repair`` sets devices up only in Docker's overlay
        sandboxes (programming again what a VXLAN device set up again has lost); elsewhere only ``ip`` does."""
        key, dev = self._down_end(key, dev)
        native = ("ip", "link", "set", dev.name, "up")
        if (net := self.w.docker_network(key)) is not None:
            return self._fix(key, ("vxray", "network", "repair", net), native)
        return self._fix(key, native=native, missing=f"vxray has no command that sets {dev.name} up")

    def _store_network(self, key: str, dev: Link) -> str | None:
        """The vxray network ``dev`` is on (a sandbox's, a container's endpoint's): the one whose
        ``vxray network repair`` resets its MTU and re-creates its VXLAN device."""
        label = self.w.place(key).label
        mine = self.w.labels.endpoints.get(label, {})
        return self.w.labels.networks.get(label) or next((mine[a.address] for a in dev.addresses
                                                          if a.address in mine), None)  # fmt: skip

    # -- layer 3 -----------------------------------------------------------------------------------

    def ip_output(self, key: str, pkt: Packet, in_dev: Link | None) -> str | None:
        """The packet in namespace ``key`` (arriving on ``in_dev``, or sent from here): where it ends up."""
        if self.depth > MAX_HOPS:
            self.fail(key, "loop", "-", "the packet goes round in circles (routing or bridging loop)")
            return None
        self.depth += 1
        try:
            return self._ip(key, pkt, in_dev)
        finally:
            self.depth -= 1

    def _ip(self, key: str, pkt: Packet, in_dev: Link | None) -> str | None:
        if in_dev is not None:
            orig = self.state.unnat.get((key, pkt.dst))
            if orig is not None and pkt.reply:
                self.step(key, "conntrack", f"{pkt.dst} -> {orig}", "reply to a masqueraded connection: un-NAT")
                pkt = replace(pkt, dst=orig)
            found = self._prerouting(key, pkt, in_dev)
            if found is None:
                return None
            pkt = found
        local = self.w.local(key, pkt.dst)
        if local is not None:
            return self._deliver_local(key, pkt, in_dev, local)
        route = self.w.routes[key].lookup(pkt.dst)
        if route is None or route.type in ("unreachable", "blackhole", "prohibit"):
            self._no_route(key, pkt, route)
            return None
        out = self.w.links.get((key, route.device or ""))
        if out is None:
            self.fail(key, "route", _route_text(route), f"route points at device {route.device}, which is gone")
            return None
        via = f" via {route.gateway}" if route.gateway else ""
        self.step(key, "route", _route_text(route), f"out {out.name}{via}")
        if in_dev is not None and not self._forward(key, pkt, in_dev, out):
            return None
        if in_dev is None and not self._filter(key, "OUTPUT", pkt, None, out.name):
            return None
        found = self._postrouting(key, pkt, in_dev, out)
        if found is None:
            return None
        pkt = found
        if not out.up:
            self.fail(key, "link", f"{out.name} state {out.operstate}", f"{out.name} is down",
                      self._link_up_fix(key, out))  # fmt: skip
            return None
        if pkt.ip6 and out.mtu < IPV6_MIN_MTU:
            self.fail(key, "mtu", f"{out.name} mtu {out.mtu}", f"IPv6 needs an MTU of {IPV6_MIN_MTU} at least: the "
                      f"kernel takes IPv6 off {out.name}", self._mtu_fix(key, out, IPV6_MIN_MTU))  # fmt: skip
            return None
        if pkt.size > out.mtu and pkt.ip6 and (pkt.df or in_dev is not None):
            self._too_big(key, out, pkt, in_dev is None)
            return None
        if pkt.size > out.mtu:
            if pkt.df:
                how = "ping: local error: message too long" if in_dev is None else "ICMP 'fragmentation needed'"
                fix = self._mtu_fix(key, out, pkt.size)
                if fix is None:
                    how += f" (the path carries at most {out.mtu} bytes: ping -s {out.mtu - ICMP_HEADER} or less)"
                self.fail(key, "mtu", f"{out.name} mtu {out.mtu}", f"{pkt.size}-byte packet with DF set: {how}",
                          fix)  # fmt: skip
                return None
            pkt = replace(pkt, size=out.mtu)  # as fragments (IPv6: by the sender only); the first is the largest
        nexthop = route.gateway or pkt.dst
        mac = self.resolve(key, out, nexthop, pkt.src)
        if mac is None:
            return None
        return self.l2_send(key, out, Frame(out.mac or "", mac, pkt))

    def _too_big(self, key: str, out: Link, pkt: Packet, sender: bool) -> None:
        """An IPv6 packet wider than the link it leaves by: no router fragments it (RFC 8200); the sender learns the
        MTU from ICMPv6 'packet too big' and sends smaller — the packet itself is lost. Its sender fragments only
        what it sends itself, and not with ``ping -M do``."""
        how = (f"ping: local error: message too long, mtu={out.mtu}" if sender else
               f"IPv6 routers never fragment: ICMPv6 'packet too big' (mtu {out.mtu}) back to {pkt.src}, and the "
               "packet is dropped")  # fmt: skip
        fix = self._mtu_fix(key, out, pkt.size)
        if fix is None:
            how += f" (the path carries at most {out.mtu} bytes: ping -6 -s {out.mtu - ICMP6_HEADER} or less)"
        self.fail(key, "mtu", f"{out.name} mtu {out.mtu}", f"{pkt.size}-byte IPv6 packet too big: {how}", fix)

    def _deliver_local(self, key: str, pkt: Packet, in_dev: Link | None, local: Link) -> str | None:
        if in_dev is not None and not self._filter(key, "INPUT", pkt, in_dev.name, None):
            return None
        if pkt.inner is not None:
            return self.vxlan_rcv(key, pkt)
        who = self.w.container(key) or self.w.place(key).label
        via = local.name if in_dev is not None else "lo"  # to one of its own addresses: over loopback
        self.step(key, "local", f"{pkt.dst} on {local.name}", f"delivered to {who}", dev=via)
        self.arrived = pkt
        return key

    def _flow(self, key: str, pkt: Packet, in_iface: str | None, out_iface: str | None) -> Flow:
        return Flow(pkt.src, pkt.dst, _l4(pkt), pkt.dport, in_iface, out_iface, pkt.reply,
                    self.w.local(key, pkt.dst) is not None, pkt.sport, l3="ip6" if pkt.ip6 else "ip",
                    icmp_type=pkt.icmp_type)  # fmt: skip

    @staticmethod
    def _iptables(ns: Namespace, pkt: Packet) -> tuple[RuleSet, ...]:
        """The iptables rule sets a packet meets: ip6tables' for IPv6."""
        return ns.netfilter6 if pkt.ip6 else ns.netfilter

    def _prerouting(self, key: str, pkt: Packet, in_dev: Link) -> Packet | None:
        """The prerouting hook: iptables' nat PREROUTING (its DNAT for published ports) and every native base
        chain there, in priority order; a DNAT moves the destination, a drop ends the packet (None)."""
        ns = self.w.place(key).ns
        if not self._iptables(ns, pkt) and not ns.nftables:
            return pkt
        natting = pkt.proto in ("tcp", "udp") and not pkt.reply and self._iptables(ns, pkt)
        flow = self._flow(key, pkt, in_dev.name, None)
        for decision in run_hook(ns, "prerouting", flow, (("nat", "PREROUTING"),) if natting else ()):
            to = nat_target(decision, flow)
            moved = f"DNAT {pkt.dst}:{pkt.dport} -> {to[0]}:{to[1] or pkt.dport}" if to else ""
            if isinstance(decision, Decision):
                if to is not None:
                    self.step(key, "nat PREROUTING", decision.describe(), moved)
            elif decision.verdict == "redirect":
                to = (_first_ip(in_dev, pkt.ip6), pkt.dport)
                moved = f"redirect {pkt.dst} -> {to[0]} (the address of {in_dev.name})"
            if isinstance(decision, NftDecision) and not self._nft_step(key, decision, _what(pkt), moved):
                return None
            if to is not None:
                pkt = replace(pkt, dst=to[0], dport=to[1] or pkt.dport)
        return pkt

    def _postrouting(self, key: str, pkt: Packet, in_dev: Link | None, out: Link) -> Packet | None:
        """The postrouting hook: iptables' nat POSTROUTING and every native base chain there, in priority order;
        MASQUERADE/SNAT (remembered for the reply's un-NAT) move the source, a drop ends the packet (None)."""
        ns = self.w.place(key).ns
        if not self._iptables(ns, pkt) and not ns.nftables:
            return pkt
        iptables = (("nat", "POSTROUTING"),) if self._iptables(ns, pkt) and not pkt.reply else ()
        flow = self._flow(key, pkt, in_dev.name if in_dev else None, out.name)
        for decision in run_hook(ns, "postrouting", flow, iptables):
            new = self._new_source(decision, out, pkt.ip6)
            text = f"{_verdict(decision)}: source {pkt.src} -> {new}" if new else ""
            if isinstance(decision, Decision) and new:
                self.step(key, "nat POSTROUTING", decision.describe(), text)
            if isinstance(decision, NftDecision) and not self._nft_step(key, decision, _what(pkt), text):
                return None
            if new:
                self.state.unnat[key, new] = pkt.src
                pkt = replace(pkt, src=new)
        return pkt

    @staticmethod
    def _new_source(decision: Decision | NftDecision, out: Link, ip6: bool) -> str:
        """The source MASQUERADE (``out``'s address) or SNAT gives the packet; "" when it does not NAT."""
        if isinstance(decision, Decision):
            if decision.rule is None or decision.target not in ("MASQUERADE", "SNAT"):
                return ""
            if decision.target == "SNAT":
                return (decision.rule.to or "").removeprefix("[").split("]")[0] if ip6 else (
                    decision.rule.to or "").split(":")[0]  # fmt: skip
            return _first_ip(out, ip6)
        if decision.verdict == "masquerade":
            return _first_ip(out, ip6)
        return decision.to[0] if decision.verdict == "snat" and decision.to else ""

    def _nft_step(self, key: str, decision: NftDecision, what: str, text: str = "") -> bool:
        """The step of one native base chain; what could not be evaluated is said, never guessed."""
        uncertain = f" (uncertain: {'; '.join(decision.notes)})" if decision.notes else ""
        if decision.accepted:
            self.step(key, decision.where, decision.describe(), f"{text or 'accepted'}{uncertain}")
            return True
        self.fail(key, decision.where, decision.describe(),
                  f"{what} {'dropped' if decision.verdict == 'drop' else decision.verdict + 'ed'} by nftables"
                  f"{uncertain}", nft_fix(self.w, key, decision))  # fmt: skip
        return False

    def _forward(self, key: str, pkt: Packet, in_dev: Link, out: Link) -> bool:
        ns = self.w.place(key).ns
        if pkt.ip6:  # IPv6 has no rp_filter: only forwarding, then the filter hooks
            if ns.sysctls.ip6_forward is False:
                self.fail(key, "sysctl", "net.ipv6.conf.all.forwarding = 0",
                          f"{in_dev.name} -> {out.name} is forwarding: dropped (the namespace is an IPv6 host, not a "
                          "router)", self._fix(key, native=("sysctl", "-w", "net.ipv6.conf.all.forwarding=1"),
                                               missing="vxray has no command that sets IPv6 forwarding"))  # fmt: skip
                return False
            return self._filter(key, "FORWARD", pkt, in_dev.name, out.name)
        if ns.sysctls.ip_forward is False:
            self.fail(key, "sysctl", "net.ipv4.ip_forward = 0", f"{in_dev.name} -> {out.name} is forwarding: dropped",
                      self._host_fix(key, "ip_forward=1", ("sysctl", "-w", "net.ipv4.ip_forward=1")))  # fmt: skip
            return False
        mode = max(ns.sysctls.rp_filter_all or 0, ns.sysctls.rp_filter.get(in_dev.name, 0))
        if mode:
            back = self.w.routes[key].lookup(pkt.src)
            if back is None or (mode == 1 and back.device != in_dev.name):
                via = "no route back" if back is None else f"the route back leaves by {back.device}"
                self.fail(key, "sysctl", f"rp_filter = {mode} on {in_dev.name}",
                          f"source {pkt.src} arrived on {in_dev.name} but {via}: dropped as spoofed",
                          self._host_fix(key, "rp_filter=2",
                                         ("sysctl", "-w", "net.ipv4.conf.all.rp_filter=2")))  # fmt: skip
                return False
        return self._filter(key, "FORWARD", pkt, in_dev.name, out.name)

    def _filter(self, key: str, chain: str, pkt: Packet, in_iface: str | None, out_iface: str | None) -> bool:
        """The filter hook ``chain`` (FORWARD, INPUT, OUTPUT): iptables' filter table of every back-end and
        every native base chain there, in priority order; the first refusal drops the packet."""
        ns = self.w.place(key).ns
        iptables = self._iptables(ns, pkt)
        if not iptables and not ns.nftables:
            return True
        flow = self._flow(key, pkt, in_iface, out_iface)
        table = f"ip6 filter {chain}" if pkt.ip6 else f"filter {chain}"
        for decision in run_hook(ns, chain.lower(), flow, (("filter", chain),) if iptables else ()):
            if isinstance(decision, NftDecision):
                if not self._nft_step(key, decision, _what(pkt)):
                    return False
                continue
            if decision.accepted:
                if decision.rule is not None or (decision.chain == chain and chain != "OUTPUT"):
                    self.step(key, table, decision.describe(), "accepted")
                continue
            self.fail(key, table, decision.describe(), f"{_what(pkt)} dropped",
                      self._filter_fix(key, chain, decision, pkt, out_iface))  # fmt: skip
            return False
        return True

    def _filter_fix(self, key: str, chain: str, decision: Decision, pkt: Packet, out_iface: str | None) -> Fix:
        rule = decision.rule
        ns = self.w.place(key).ns
        if pkt.ip6 and (rule is None or not rule.chain.startswith(ISOLATION)):  # vxray's settings are iptables'
            return self._fix(key, native=decision.undo(), missing=f"vxray has no command that changes ip6tables' "
                             f"{chain} chain")  # fmt: skip
        if chain == "FORWARD" and pkt.dport and out_iface and (accept := published_accept(
                ns, decision.backend, pkt.dst, pkt.proto, pkt.dport, out_iface)):  # fmt: skip
            return self._fix(key, native=accept, missing="vxray has no command that writes a published port's "
                             "ACCEPT rule back")  # fmt: skip
        if rule is None and chain == "FORWARD":
            return self._host_fix(key, "forward_policy=ACCEPT", decision.undo())
        if rule is not None and chain == "INPUT" and pkt.proto == "udp" and rule.dport and rule.target == "DROP":
            return self._host_fix(key, f"udp.{rule.dport}=accept", decision.undo())
        if rule is not None and rule.chain.startswith(ISOLATION):
            return self._connect_fix(next((k for k, _ in self.w.owners(pkt.src) if self.w.container(k)), None),
                                     pkt.dst)  # fmt: skip
        return self._fix(key, native=decision.undo(), missing=f"vxray has no command that deletes a {chain} rule")

    def _connect_fix(self, sender: str | None, dst: str) -> Fix:
        """Connect the sending container (namespace ``sender``) to the network ``dst`` is on: containers of two
        networks talk through an interface on the same one — Docker's isolation of networks stays as it is."""
        ctr = self.w.container(sender) if sender is not None else None
        if sender is None or ctr is None:
            return Fix(missing=f"which container to connect to the network of {dst}: the sender is no container")
        owner = next((k for k, _ in self.w.owners(dst) if self.w.container(k)), None)
        net = self.w.networks_of(owner).get(dst) if owner is not None else None
        if net is None:
            return Fix(missing=f"which network to connect {ctr} to: the snapshots do not say which network {dst} is on")
        docker = self.w.place(sender).ns.container
        if docker is not None:  # Docker's container: its Engine connects it, on its machine
            return Fix((), ("docker", "network", "connect", net, docker.name),
                       f"vxray has no command that connects Docker's container {docker.name}",
                       self.w.machine_of(sender))  # fmt: skip
        return Fix(("vxray", "network", "connect", net, ctr))

    def _no_route(self, key: str, pkt: Packet, route: Route | None) -> None:
        """No route, or one that refuses (``unreachable``, ``blackhole``, ``prohibit``: delete it). No route: a
        device set down took its routes with it; else a device on the destination's subnet lost the route the
        kernel made for it; else a container to connect to a network of the container it wants to reach; else
        a route, through a gateway the snapshots do not name."""
        decision = f"no route to {pkt.dst}: the kernel answers 'Network is unreachable'"
        if route is not None:
            self.fail(key, "route", f"{route.type} {route.dst}", decision,
                      self._fix(key, native=("ip", "route", "del", route.type, route.dst),
                                missing="vxray has no command that deletes a route"))  # fmt: skip
            return
        owner = next((self.w.container(k) for k, _ in self.w.owners(pkt.dst) if self.w.container(k)), None)
        ctr = self.w.container(key)
        on_link = self._on_link(key, pkt.dst)
        if on_link is not None and not on_link[0].up:
            self.fail(key, "route", "no route", f"{decision}; {on_link[0].name} is down, and its routes went with it",
                      self._link_up_fix(key, on_link[0]))  # fmt: skip
        elif on_link is not None:
            dev, cidr = on_link
            subnet, src = str(ipaddress.ip_interface(cidr).network), cidr.split("/")[0]
            self.fail(key, "route", "no route", f"{decision}; {dev.name} holds {cidr}, but its route to {subnet} is "
                      "gone", self._fix(key, native=("ip", "route", "add", subnet, "dev", dev.name, "src", src),
                                        missing="vxray has no command that adds a route"))  # fmt: skip
        elif pkt.ip6 and (narrow := self._narrow(key)) is not None:
            self.fail(key, "route", "no route", f"{decision}; {narrow.name} has mtu {narrow.mtu}, below IPv6's "
                      f"{IPV6_MIN_MTU}: the kernel took IPv6 (its addresses and routes) off it — once the MTU is "
                      "raised, its IPv6 addresses are to be added again",
                      self._mtu_fix(key, narrow, IPV6_MIN_MTU))  # fmt: skip
        elif (down := self._down_uplink(key, pkt.ip6)) is not None:
            fix = self._link_up_fix(key, down)
            gone = f"then the default route that went with {down.name}: the snapshots do not say through which gateway"
            fix = replace(fix, missing=f"{fix.missing}; {gone}" if fix.missing else gone)
            self.fail(key, "route", "no route", f"{decision}; {down.name} is down, and the routes through it (the "
                      "default route too) went with it", fix)  # fmt: skip
        elif ctr and owner:
            self.fail(key, "route", "no route", f"{decision}; {pkt.dst} is {owner}'s: connect {ctr} to a network "
                      f"{owner} is on", self._connect_fix(key, pkt.dst))  # fmt: skip
        else:
            self.fail(key, "route", "no route", decision,
                      Fix(missing=f"which gateway leads to {pkt.dst}: the snapshots do not say"))  # fmt: skip

    def _on_link(self, key: str, dst: str) -> tuple[Link, str] | None:
        """A device holding an address on ``dst``'s subnet (and that address), one that is down first: setting a
        device down removes the route the kernel made for its address, and setting it up brings it back."""
        addr = ipaddress.ip_address(dst)
        found = [(lk, a.cidr) for lk in self.w.place(key).ns.links for a in lk.addresses
                 if (":" in a.address) == (addr.version == 6) and a.scope != "link"
                 and addr in ipaddress.ip_network(a.cidr, strict=False)]  # fmt: skip
        return min(found, key=lambda f: f[0].up, default=None)

    def _down_uplink(self, key: str, ip6: bool = False) -> Link | None:
        """In a namespace left without a default route, a device that is down and holds a global address:
        what the default route most likely left by before it went down and took the route with it."""
        if self.w.routes[key].lookup("::" if ip6 else "0.0.0.0") is not None:
            return None
        return next((lk for lk in self.w.place(key).ns.links if not lk.up and lk.kind != "loopback"
                     and any(a.scope == "global" and (":" in a.address) == ip6 for a in lk.addresses)),
                    None)  # fmt: skip

    def _narrow(self, key: str) -> Link | None:
        """A device that is up but narrower than IPv6 allows: the kernel removed its IPv6 addresses and routes."""
        return next((lk for lk in self.w.place(key).ns.links if lk.up and lk.kind != "loopback"
                     and lk.mtu < IPV6_MIN_MTU), None)  # fmt: skip

    def _mtu_fix(self, key: str, dev: Link, size: int) -> Fix | None:
        """Raise the MTU that is too small — never a container's or sandbox's above what its overlay
        carries: a packet bigger than that is too big for the path, and only a smaller one fits."""
        if not self.w.is_host_ns(key) and (cap := self.w.overlay_capacity(key, dev)) is not None and size > cap:
            return None
        native = ("ip", "link", "set", dev.name, "mtu", str(size))
        if self.w.is_host_ns(key):
            return self._host_fix(key, f"mtu.{dev.name}={size}", native)
        if (net := self._store_network(key, dev)) is not None:
            return self._fix(key, ("vxray", "network", "repair", net), native)
        where = self.w.container(key) or self.w.place(key).label
        return self._fix(key, native=native, missing=f"which vxray network {dev.name} of {where} is on: the store "
                         "names none")  # fmt: skip

    # -- neighbours and ARP ------------------------------------------------------------------------

    def resolve(self, key: str, dev: Link, ip: str, src_ip: str) -> str | None:
        entry = self.w.neigh.get((key, dev.name), {}).get(ip)
        if entry is not None and entry.mac and USABLE & set(entry.state):
            self.used_neigh = (key, dev.name, ip)
            self.step(key, "neigh", f"{ip} lladdr {entry.mac} {'/'.join(entry.state)}", f"next hop {entry.mac}",
                      dev=dev.name)  # fmt: skip
            return entry.mac
        learned = self.state.learned.get(key, {}).get(ip)
        if learned:
            self.step(key, "neigh", f"{ip} lladdr {learned} (learnt from its ARP request)", f"next hop {learned}",
                      dev=dev.name)  # fmt: skip
            return learned
        if "NOARP" in dev.flags:
            self.fail(key, "neigh", f"no entry for {ip} on {dev.name} (NOARP device)", "no MAC for the next hop")
            return None
        state = f" ({'/'.join(entry.state)})" if entry is not None else ""
        ip6 = is_ip6(ip)
        if ip6 and self.w.local(key, src_ip) is not dev:  # an NS leaves from the packet's source only when dev has it
            src_ip = self._link_local(dev) or src_ip
        mark = len(self.steps)
        answer = self.l2_send(key, dev, Frame(dev.mac or "", BROADCAST, None, ip, src_ip))
        if answer is not None and ip6:  # the advertisement comes back through this namespace's hooks
            advert = Packet(ip, src_ip, "icmp", icmp_type="nd-neighbor-advert", size=72, reply=True)
            answer = answer if self._ndp_in(key, dev, advert) else None
        reasons = self.steps[mark:]
        del self.steps[mark:]
        request = "neighbour solicitation" if ip6 else "ARP request"
        if answer is None:
            why = "; ".join(s.decision for s in reasons if not s.ok) or "nobody on this L2 domain owns it"
            fix = next((s.fix for s in reasons if s.fix is not None), None)
            self.fail(key, "neigh", f"no entry for {ip} on {dev.name}{state}", f"{request} unanswered: {why}", fix,
                      dev=dev.name)  # fmt: skip
            return None
        who = next((s.decision for s in reasons if s.table in ("arp", "ndp")), f"answered by {answer}")
        self.step(key, "neigh", f"no entry for {ip} on {dev.name}{state}", f"{'NDP' if ip6 else 'ARP'}: {who}",
                  dev=dev.name)  # fmt: skip
        return answer

    def _ndp_in(self, key: str, dev: Link, pkt: Packet) -> bool:
        """An NDP message arriving on ``dev``: the prerouting chains (firewalld's IPv6 rpfilter sits there) and
        the input hook see it, as any packet for the namespace."""
        flow = self._flow(key, pkt, dev.name, None)
        return self._native(key, "prerouting", flow, INET6_FAMILIES) and self._filter(key, "INPUT", pkt, dev.name, None)

    @staticmethod
    def _link_local(dev: Link) -> str | None:
        return next((canon(a.address) for a in dev.addresses if a.address.lower().startswith("fe80:")), None)

    # -- layer 2 -----------------------------------------------------------------------------------

    def l2_send(self, key: str, dev: Link, frame: Frame) -> str | None:
        """Transmit ``frame`` on ``dev``; for IP frames where the packet ends up, for ARP the answering MAC."""
        if self.depth > MAX_HOPS:
            return None
        self.depth += 1
        try:
            return self._l2(key, dev, frame)
        finally:
            self.depth -= 1

    def _l2(self, key: str, dev: Link, frame: Frame) -> str | None:
        if dev.kind == "bridge":
            return self.bridge(key, dev, None, frame)
        if dev.vxlan is not None:
            return self.vxlan_xmit(key, dev, frame)
        if dev.kind == "veth" and dev.peer is not None:
            found = self.w.link_at(key, dev.peer)
            if found is not None:
                peer_key, peer = found
                there = self.w.container(peer_key) or self.w.place(peer_key).label
                if not peer.up:
                    self.fail(key, "veth", f"{dev.name} <-> {peer.name} in {there}: {peer.name} state "
                              f"{peer.operstate}", f"{peer.name} is down: the veth carries nothing",
                              self._link_up_fix(peer_key, peer))  # fmt: skip
                    return None
                self.step(key, "veth", f"{dev.name} mtu {dev.mtu} <-> {peer.name} mtu {peer.mtu} in {there}",
                          "to the peer")  # fmt: skip
                return self.l2_receive(peer_key, peer, frame)
        if dev.kind == "macvlan" and dev.parent is not None:
            return self._macvlan_xmit(key, dev, frame)
        if dev.kind == "vlan" and dev.parent is not None:
            found = self.w.link_at(key, dev.parent)
            if found is not None:
                return self.l2_send(found[0], found[1], replace(frame, vlan=dev.vlan_id))
        return self._wire(key, dev, frame)

    def _fits(self, key: str, dev: Link, frame: Frame, where: str) -> bool:
        """is_skb_forwardable(): a frame longer than the device's MTU plus headers is dropped."""
        if frame.packet is None or frame.size <= dev.mtu + 4:
            return True
        self.fail(key, "mtu", f"{dev.name} mtu {dev.mtu}", f"{frame.size}-byte packet dropped {where} {dev.name}",
                  self._mtu_fix(key, dev, frame.size), dev=dev.name if where == "entering" else "")  # fmt: skip
        return False

    def l2_receive(self, key: str, dev: Link, frame: Frame) -> str | None:
        if not self._fits(key, dev, frame, "entering") or not self._ingress(key, dev, frame):
            return None
        if frame.vlan is not None:
            child = next((lk for k, lk in self.w.children.get((key, dev.index), []) if lk.vlan_id == frame.vlan), None)
            if child is None:
                return None
            return self.l2_receive(key, child, replace(frame, vlan=None))
        for child_key, child in self.w.children.get((key, dev.index), []):
            if child.kind == "macvlan" and frame.dst_mac in (child.mac, BROADCAST):
                got = self.l2_receive_l3(child_key, child, frame)
                if got is not None or frame.dst_mac != BROADCAST:
                    return got
        if dev.master:
            bridge = self.w.links.get((key, dev.master))
            if bridge is None:
                return None
            if dev.bridge_port is not None and dev.bridge_port.state not in ("forwarding", "learning"):
                self.fail(key, "bridge port", f"{dev.name} state {dev.bridge_port.state}", "port blocks all traffic")
                return None
            return self.bridge(key, bridge, dev, frame)
        return self.l2_receive_l3(key, dev, frame)

    def l2_receive_l3(self, key: str, dev: Link, frame: Frame) -> str | None:
        if frame.dst_mac not in (dev.mac, BROADCAST) or not dev.up:
            return None
        if frame.packet is None:
            return self._arp_answer(key, dev, frame)
        self.step(key, "link", f"{dev.name} ({dev.kind or 'device'}) {dev.mac}", "frame received", dev=dev.name)
        return self.ip_output(key, frame.packet, dev)

    def _arp_answer(self, key: str, dev: Link, frame: Frame) -> str | None:
        """Who owns the address asked for answers: any local address for ARP (arp_ignore 0), for a neighbour
        solicitation only one on the device it arrived on — and past that namespace's input hook (NDP is
        ICMPv6, untracked by conntrack)."""
        if frame.arp_for is None or self.w.local(key, frame.arp_for) is None:
            return None
        if frame.ndp:
            if not any(canon(a.address) == frame.arp_for for a in dev.addresses):
                return None
            solicit = Packet(frame.arp_from or "::", _solicited(frame.arp_for), "icmp", size=72,
                             icmp_type="nd-neighbor-solicit")  # fmt: skip
            if not self._ndp_in(key, dev, solicit):
                return None
        if frame.arp_from:
            self.state.learned.setdefault(key, {})[frame.arp_from] = frame.src_mac
        who = self.w.container(key) or self.w.place(key).label
        self.step(key, "ndp" if frame.ndp else "arp", f"{frame.arp_for} on {dev.name}",
                  f"answered by {who} ({dev.name} {dev.mac})")  # fmt: skip
        return dev.mac

    def bridge(self, key: str, br: Link, in_port: Link | None, frame: Frame) -> str | None:
        ports = self.w.ports.get((key, br.name), [])
        if in_port is not None and not self._bridge_hook(key, "prerouting", frame, in_port, None):
            return None
        if frame.dst_mac != BROADCAST:
            if frame.dst_mac == br.mac and in_port is not None:
                return self._bridge_l3(key, br, in_port, frame)
            entry = self.w.bridge_fdb.get((key, br.name), {}).get(frame.dst_mac)
            if entry is not None and entry.device == br.name and in_port is not None:
                return self._bridge_l3(key, br, in_port, frame)
            if not self._bridged_filter(key, br, in_port, frame):
                return None
            port = next((p for p in ports if entry is not None and p.name == entry.device), None)
            if port is not None:
                if entry is not None and entry.state == "permanent" and port.mac == frame.dst_mac:
                    return self.l2_receive_l3(key, br, replace(frame, dst_mac=br.mac or ""))
                if in_port is not None and port.name == in_port.name:
                    self.fail(key, "bridge fdb", f"{frame.dst_mac} dev {port.name} master {br.name}",
                              "destination is behind the port it came from: dropped")  # fmt: skip
                    return None
                mark = len(self.steps)
                self.step(key, "bridge fdb", f"{frame.dst_mac} dev {port.name} master {br.name} {entry.state}",
                          f"forward to {port.name}", dev=port.name)  # fmt: skip
                if not self._port_open(key, port) or not self._fits(key, port, frame, "leaving by"):
                    return None
                if not self._bridge_out(key, frame, in_port, port):
                    self.steps[mark] = replace(self.steps[mark], dev="")  # dropped before it leaves by the port
                    return None
                return self.l2_send(key, port, frame)
            self.step(key, "bridge fdb", f"no entry for {frame.dst_mac} on {br.name}", "unknown unicast: flood")
        candidates = [p for p in ports if in_port is None or p.name != in_port.name]
        refused: list[Step] = []
        if frame.dst_mac == BROADCAST and in_port is not None:
            mark = len(self.steps)
            got = self._bridge_l3(key, br, in_port, frame)
            if got is not None:
                return got
            refused = self.steps[mark:]  # the bridge's own refusal counts only if no port answers either
            del self.steps[mark:]
        got = self._flood(key, candidates, frame, in_port)
        if got is None:
            self.steps.extend(refused)
        return got

    def _bridge_out(self, key: str, frame: Frame, in_port: Link | None, port: Link) -> bool:
        """A frame leaving by ``port``: the bridge family's forward (output, for the bridge's own) and
        postrouting hooks."""
        return self._bridge_hook(key, "forward" if in_port else "output", frame, in_port, port) and self._bridge_hook(
            key, "postrouting", frame, in_port, port)  # fmt: skip

    def _ingress(self, key: str, dev: Link, frame: Frame) -> bool:
        """The ingress hook of ``dev``: netdev chains (and inet ones for IP) see every frame entering it,
        before any bridge or routing decision."""
        ns = self.w.place(key).ns
        if not any(c.hook == "ingress" and c.device == dev.name for t in ns.nftables for c in t.chains):
            return True
        families = ("netdev", "inet") if frame.packet is not None or frame.ndp else ("netdev",)
        return self._native(key, "ingress", _frame_flow(frame, dev.name, None), families, dev.name)

    def _bridge_hook(self, key: str, hook_name: str, frame: Frame, in_port: Link | None,
                     out_port: Link | None) -> bool:  # fmt: skip
        """A bridge-family hook (prerouting, input, forward, output): what nft's bridge tables do to frames the
        bridge handles, iifname/oifname being its ports."""
        if not any(t.family == "bridge" for t in self.w.place(key).ns.nftables):
            return True
        flow = _frame_flow(frame, in_port.name if in_port else None, out_port.name if out_port else None)
        return self._native(key, hook_name, flow, ("bridge",))

    def _native(self, key: str, hook_name: str, flow: Flow, families: tuple[str, ...], device: str | None = None
                ) -> bool:  # fmt: skip
        what = f"ARP who-has {flow.dst}" if flow.l3 == "arp" else f"{flow.proto} {flow.src} -> {flow.dst}"
        what = f"neighbour solicitation from {flow.src}" if flow.icmp_type == "nd-neighbor-solicit" else what
        for decision in run_hook(self.w.place(key).ns, hook_name, flow, (), families, device):
            if isinstance(decision, NftDecision) and not self._nft_step(key, decision, what):
                return False
        return True

    def _bridge_l3(self, key: str, br: Link, in_port: Link, frame: Frame) -> str | None:
        """A frame for the bridge's own address goes up through the bridge family's input hook."""
        if not self._bridge_hook(key, "input", frame, in_port, None):
            return None
        return self.l2_receive_l3(key, br, frame)

    def _bridged_filter(self, key: str, br: Link, in_port: Link | None, frame: Frame) -> bool:
        """With br_netfilter (``bridge-nf-call-iptables = 1``) a packet bridged from port to port crosses
        the filter FORWARD chain as ``-i BRIDGE -o BRIDGE`` — where Docker drops traffic between the
        containers of ``docker_gwbridge`` and of networks created with icc off."""
        if frame.packet is None or in_port is None or not self.w.place(key).ns.sysctls.bridge_nf_call_iptables:
            return True
        return self._filter(key, "FORWARD", frame.packet, br.name, br.name)

    def _port_open(self, key: str, port: Link) -> bool:
        """A port whose device is down is ``disabled``: the bridge sends nothing through it."""
        if port.up and (port.bridge_port is None or port.bridge_port.state in ("forwarding", "learning")):
            return True
        state = port.bridge_port.state if port.bridge_port else port.operstate
        down_key, down = self._down_end(key, port)
        there = self.w.container(down_key) or self.w.place(down_key).label
        why = f"{port.name} is down" if down is port else f"{port.name}'s peer {down.name} in {there} is down"
        self.fail(key, "bridge port", f"{port.name} state {state}", f"{why}: the bridge drops the frame",
                  self._link_up_fix(key, port))  # fmt: skip
        return False

    def _flood(self, key: str, ports: list[Link], frame: Frame, in_port: Link | None = None) -> str | None:
        failures: list[list[Step]] = []
        for port in ports:
            if port.bridge_port is not None and frame.dst_mac != BROADCAST and not port.bridge_port.unicast_flood:
                continue
            mark = len(self.steps)
            ok = self._port_open(key, port) and self._fits(key, port, frame, "leaving by")
            ok = ok and self._bridge_out(key, frame, in_port, port)
            got = self.l2_send(key, port, frame) if ok else None
            if got is not None:
                return got
            failures.append(self.steps[mark:])
            del self.steps[mark:]
        deepest = max(failures, key=len, default=[])
        self.steps.extend(deepest)
        return None

    def _macvlan_xmit(self, key: str, dev: Link, frame: Frame) -> str | None:
        assert dev.parent is not None
        found = self.w.link_at(key, dev.parent)
        if found is None:
            return None
        parent_key, parent = found
        for sib_key, sib in self.w.children.get((parent_key, parent.index), []):
            if sib is not dev and sib.kind == "macvlan" and frame.dst_mac in (sib.mac, BROADCAST):
                got = self.l2_receive_l3(sib_key, sib, frame)
                if got is not None:
                    return got
        return self.l2_send(parent_key, parent, frame)

    def _wire(self, key: str, dev: Link, frame: Frame) -> str | None:
        """A device whose other end is outside the snapshots: the physical network delivers to
        whichever known host owns the destination (or, for ARP, the address asked for)."""
        wanted = frame.arp_for if frame.packet is None else None
        mine = {id(lk) for _, lk in self.w.children.get((key, dev.index), [])}
        for other_key, lk in self.w.owners(wanted) if wanted else self.w.macs.get(frame.dst_mac, []):
            if id(lk) in mine and lk.kind == "macvlan":
                there = self.w.container(other_key) or self.w.place(other_key).label
                self.fail(key, "macvlan", f"{lk.name} of {there} is a macvlan on {dev.name}",
                          f"a macvlan's parent never delivers to its own macvlans: {there} is not reachable "
                          f"through {dev.name}")  # fmt: skip
                continue
            if other_key != key:
                self.step(key, "wire", f"{dev.name} -> {self.w.place(other_key).label} {lk.name}",
                          "crosses the physical network (not in any snapshot)")  # fmt: skip
                return self.l2_receive(other_key, lk, frame)
        return None

    # -- VXLAN -------------------------------------------------------------------------------------

    def vxlan_xmit(self, key: str, vx: Link, frame: Frame) -> str | None:
        info = vx.vxlan
        assert info is not None
        fdb = self.w.vxlan_fdb.get((key, vx.name), {})
        if info.external:
            self.fail(key, "vxlan", f"{vx.name} external (collect_metadata)",
                      f"{vx.name} sends only packets that carry tunnel metadata (set by a route's encap, tc or OVS), "
                      f"which a snapshot does not show: a bridged frame has none and is dropped")  # fmt: skip
            return None
        if frame.packet is None and info.proxy:
            what = "neighbour solicitations" if frame.ndp else "ARP"
            entry = self.w.neigh.get((key, vx.name), {}).get(frame.arp_for or "")
            if entry is not None and entry.mac and USABLE & set(entry.state):
                self.step(key, "ndp" if frame.ndp else "arp", f"{frame.arp_for} lladdr {entry.mac} on {vx.name}",
                          f"answered by {vx.name}'s {'NDP' if frame.ndp else 'ARP'} proxy from the neighbour "
                          "table")  # fmt: skip
                return entry.mac
            self.fail(key, "vxlan proxy", f"no neighbour entry for {frame.arp_for} on {vx.name}",
                      f"{vx.name} answers {what} only from its neighbour table (proxy"
                      f"{', l3miss: only a notification' if info.l3miss else ''})",
                      self._overlay_fix(key, frame.arp_for or "", "arp", vx.name))  # fmt: skip
            return None
        entries = fdb.get(frame.dst_mac, []) if frame.dst_mac != BROADCAST else []
        how = f"{frame.dst_mac} dst {entries[0].dst}" if entries else ""
        learnt = self.state.vxlan_learned.get((key, vx.name), {}).get(frame.dst_mac)
        if not entries and learnt is not None:
            self.step(key, "vxlan fdb", f"{frame.dst_mac} dst {learnt} (learnt from the request it decapsulated)",
                      f"encapsulate in VNI {info.vni}, UDP {info.dstport}", dev=vx.name)  # fmt: skip
            return self._encapsulate(key, vx, frame, learnt, info.vni, info.dstport)
        if not entries:
            entries = fdb.get(ZERO_MAC, [])
            how = f"{ZERO_MAC} (flood) dst " + ", ".join(e.dst or "?" for e in entries) if entries else ""
        if not entries and info.group:
            return self._vxlan_multicast(key, vx, frame)
        if not entries and not self.w.macs.get(frame.dst_mac) and frame.packet is not None and self.used_neigh:
            n_key, n_dev, n_ip = self.used_neigh  # nobody has this MAC: the sender's ARP entry is wrong
            right = next((lk.mac for _, lk in self.w.owners(n_ip) if lk.mac), None)
            ctr = self.w.container(n_key)
            fix = self._fix(n_key, ("vxray", "arp", "del", n_ip, "--container", ctr) if ctr else (),
                            ("ip", "neigh", "del", n_ip, "dev", n_dev),
                            "" if ctr else f"vxray has no command that changes {self.w.place(n_key).label}'s entries: "
                            "it is no container")  # fmt: skip
            self.fail(key, "vxlan fdb", f"no entry for {frame.dst_mac} on {vx.name}",
                      f"{frame.dst_mac} is no device's MAC: the ARP entry {n_ip} lladdr {frame.dst_mac} in "
                      f"{ctr or self.w.place(n_key).label} is wrong{f' ({n_ip} is behind {right})' if right else ''}",
                      fix)  # fmt: skip
            return None
        if not entries:
            miss = " (l2miss: only a notification)" if info.l2miss else ""
            self.fail(key, "vxlan fdb", f"no entry for {frame.dst_mac} on {vx.name}",
                      f"no remote VTEP for the MAC and no flood entry or multicast group{miss}: dropped",
                      self._overlay_fix(key, frame.dst_mac, "fdb", vx.name))  # fmt: skip
            return None
        self.step(key, "vxlan fdb", how, f"encapsulate in VNI {info.vni}, UDP {info.dstport}", dev=vx.name)
        for entry in entries:
            got = self._encapsulate(key, vx, frame, entry.dst or "", entry.vni or info.vni, entry.port or info.dstport)
            if got is not None:
                return got
        return None

    def _vxlan_multicast(self, key: str, vx: Link, frame: Frame) -> str | None:
        info = vx.vxlan
        assert info is not None
        self.step(key, "vxlan fdb", f"no entry for {frame.dst_mac}", f"to multicast group {info.group}")
        for other_key, other in self.w.vxlans:
            if other is not vx and other.vxlan and other.vxlan.group == info.group and other.vxlan.vni == info.vni:
                got = self._decapsulated(other_key, other, frame)
                if got is not None:
                    return got
        return None

    def _encapsulate(self, key: str, vx: Link, frame: Frame, dst: str, vni: int, port: int) -> str | None:
        info = vx.vxlan
        assert info is not None
        under_key = self.w.vxlan_home(key, vx)
        src = canon(info.local) if info.local else self.w.source_ip(under_key, dst)
        overhead = VXLAN6_OVERHEAD if is_ip6(dst) else VXLAN_OVERHEAD
        outer = Packet(src, dst, "udp", port, frame.size + overhead, df=False, vni=vni, inner=frame)
        route = self.w.routes[under_key].lookup(dst)
        out = self.w.links.get((under_key, route.device or "")) if route else None
        inner = frame.packet
        if out is not None and outer.size > out.mtu and inner is not None and (inner.df or inner.ip6):
            why, answer = ("is IPv6, which is never fragmented on the way", "ICMPv6 'packet too big'") if inner.ip6 \
                else ("has DF set", "'fragmentation needed'")  # fmt: skip
            self.fail(under_key, "mtu", f"{out.name} mtu {out.mtu}",
                      f"encapsulated {outer.size} bytes exceed the underlay MTU; the inner packet {why}, so "
                      f"{vx.name} answers {answer} (mtu {out.mtu - overhead}) to its source",
                      self._mtu_fix(under_key, out, outer.size))  # fmt: skip
            return None
        mark = len(self.steps)
        got = self.ip_output(under_key, outer, None)
        drop = next((i for i in range(len(self.steps) - 1, mark - 1, -1) if not self.steps[i].ok), None)
        if got is None and drop is not None and not self.w.owners(dst):
            step = self.steps[drop]  # where the packet dies; the reason is back on the VXLAN device
            self.steps[drop] = replace(step, decision=f"{step.decision} — VTEP {dst} is no host's: the FDB entry "
                                       f"{frame.dst_mac} dst {dst} on {vx.name} ({self.w.place(key).label}) is stale",
                                       fix=self._overlay_fix(key, frame.dst_mac, "fdb", vx.name))  # fmt: skip
        return got

    def vxlan_rcv(self, key: str, pkt: Packet) -> str | None:
        """An encapsulated packet arrived at a VTEP address: the device on that port with that VNI takes it."""
        listening = [(k, lk) for k, lk in self.w.vxlans if lk.vxlan and lk.vxlan.dstport == pkt.dport
                     and self.w.vxlan_home(k, lk) == key and lk.vxlan.local in (None, pkt.dst)]  # fmt: skip
        match = next(((k, lk) for k, lk in listening if lk.vxlan and lk.vxlan.vni == pkt.vni), None)
        match = match or next(((k, lk) for k, lk in listening if lk.vxlan and lk.vxlan.external), None)  # any VNI
        if match is None:
            have = ", ".join(f"{lk.name} VNI {lk.vxlan.vni}" for _, lk in listening if lk.vxlan) or "none"
            reason = "VNI mismatch" if listening else f"no VXLAN device on UDP {pkt.dport}"
            fix = None
            if listening:
                k, dev = listening[0]  # a device's VNI is set when it is created: the repair re-creates it
                net = self._store_network(k, dev)
                fix = Fix(("vxray", "network", "repair", net) if net else (), (), "" if net else
                          f"which vxray network {dev.name} serves, to re-create it with VNI {pkt.vni}: the store "
                          "names none")  # fmt: skip
            self.fail(key, "vxlan", f"VNI {pkt.vni} on UDP {pkt.dport}; devices here: {have}",
                      f"{reason}: the packet is dropped", fix)  # fmt: skip
            return None
        vx_key, vx = match
        assert pkt.inner is not None
        learnt = ""
        if vx.vxlan is not None and vx.vxlan.learning and pkt.inner.src_mac:
            self.state.vxlan_learned.setdefault((vx_key, vx.name), {})[pkt.inner.src_mac] = pkt.src
            learnt = f"; learns {pkt.inner.src_mac} is behind {pkt.src}"
        self.step(vx_key, "vxlan", f"{vx.name} VNI {pkt.vni} UDP {pkt.dport}", f"decapsulated{learnt}", dev=vx.name)
        return self._decapsulated(vx_key, vx, pkt.inner)

    def _decapsulated(self, key: str, vx: Link, frame: Frame) -> str | None:
        if vx.master:
            bridge = self.w.links.get((key, vx.master))
            return self.bridge(key, bridge, vx, frame) if bridge is not None else None
        return self.l2_receive_l3(key, vx, frame)

    def _overlay_fix(self, key: str, what: str, kind: str, dev: str) -> Fix:
        """The entry a VXLAN device lacks: ``vxray fdb add`` when the network and VTEP are known, else ``fdb sync``
        of its network; the ``ip``/``bridge`` command when the MAC (for ARP) or VTEP (for the FDB) is known."""
        net = self.w.network(key)
        unknown = [] if net else [f"which network {dev} serves"]
        if kind == "arp":
            mac = next((lk.mac for _, lk in self.w.owners(what) if lk.mac), None)
            native = ("ip", "neigh", "replace", what, "lladdr", mac, "dev", dev, "nud", "permanent") if mac else ()
            unknown += [] if mac else [f"the MAC behind {what}: no device in the snapshots holds {what}"]
        else:
            owner_keys = [k for k, _ in self.w.macs.get(what, [])]
            vtep = self._vtep_of(owner_keys[0]) if owner_keys else None
            native = ("bridge", "fdb", "replace", what, "dev", dev, "dst", vtep) if vtep else ()
            unknown += [] if vtep else [f"the VTEP behind {what}: no host in the snapshots holds {what}"]
            if net and vtep:
                on = ("--host", self.w.place(key).host) if len(self.w.labels.host_netns) > 1 else ()
                return self._fix(key, ("vxray", "fdb", "add", what, "--network", net, "dst", vtep, *on), native)
        return self._fix(key, ("vxray", "fdb", "sync", net) if net else (), native, "; ".join(unknown))

    def _vtep_of(self, key: str) -> str | None:
        """The VTEP of the host a namespace belongs to: where a VXLAN device there sends from."""
        host = self.w.place(key).host
        return next((vtep for k, lk in self.w.vxlans if self.w.place(k).host == host
                     and (vtep := self.w.vtep(k, lk))), None)  # fmt: skip


def _route_text(route: Any) -> str:
    parts = [route.dst]
    if route.gateway:
        parts.append(f"via {route.gateway}")
    if route.device:
        parts.append(f"dev {route.device}")
    return " ".join(parts)


def _what(pkt: Packet) -> str:
    if pkt.icmp_type and pkt.icmp_type.startswith("nd-"):
        kind = "neighbour solicitation" if pkt.icmp_type == "nd-neighbor-solicit" else "neighbour advertisement"
        return f"{kind} {pkt.src} -> {pkt.dst} (NDP: conntrack leaves it untracked)"
    return f"{_l4(pkt)} {pkt.src} -> {pkt.dst}"


def _frame_flow(frame: Frame, in_iface: str | None, out_iface: str | None) -> Flow:
    """What bridge and netdev chains match on: the frame's MACs, and its IP packet or ARP request."""
    pkt = frame.packet
    if pkt is None and frame.ndp:  # a neighbour solicitation is an ICMPv6 packet to a solicited-node address
        return Flow(frame.arp_from or "::", _solicited(frame.arp_for or "::"), "icmpv6", None, in_iface,
                    out_iface, l3="ip6", src_mac=frame.src_mac, dst_mac=frame.dst_mac,
                    icmp_type="nd-neighbor-solicit")  # fmt: skip
    if pkt is None:
        return Flow(frame.arp_from or "0.0.0.0", frame.arp_for or "0.0.0.0", "arp", None, in_iface, out_iface,
                    l3="arp", src_mac=frame.src_mac, dst_mac=frame.dst_mac)  # fmt: skip
    return Flow(pkt.src, pkt.dst, _l4(pkt), pkt.dport, in_iface, out_iface, pkt.reply, sport=pkt.sport,
                l3="ip6" if pkt.ip6 else "ip", src_mac=frame.src_mac, dst_mac=frame.dst_mac,
                icmp_type=pkt.icmp_type)  # fmt: skip


def _solicited(ip: str) -> str:
    """The solicited-node multicast address a neighbour solicitation for ``ip`` is sent to (ff02::1:ffXX:XXXX)."""
    low = int(ipaddress.IPv6Address(ip)) & 0xFFFFFF
    return str(ipaddress.IPv6Address((0xFF02 << 112) | (1 << 32) | (0xFF << 24) | low))


def _verdict(decision: Decision | NftDecision) -> str:
    return decision.target if isinstance(decision, Decision) else decision.verdict


def _first_ip(link: Link, ip6: bool = False) -> str:
    """The address MASQUERADE and redirect take: the link's first of the family (a global one for IPv6)."""
    return next((canon(a.address) for a in link.addresses
                 if (":" in a.address) == ip6 and not (ip6 and a.scope == "link")), "")  # fmt: skip


def _l4(pkt: Packet) -> str:
    """The protocol netfilter sees: an IPv6 ping is ICMPv6."""
    return "icmpv6" if pkt.ip6 and pkt.proto == "icmp" else pkt.proto


def trace(world: World, src: str, dst: str, proto: str = "icmp", dport: int | None = None,
          size: int | None = None, df: bool = False) -> Trace:  # fmt: skip
    """Trace a packet from namespace ``src`` (label or key) to ``dst`` (an IPv4 or IPv6 address), and its reply.

    ``size`` is the ICMP payload as ``ping -s`` (ping's 56 bytes without it); ``df``
    forbids fragmentation as ``ping -M do``. Without it a packet wider than a link is
    sent as fragments, as a real ``ping -s 8000`` across a 1450-byte overlay is — by
    the sender alone for IPv6: a router answers ICMPv6 "packet too big" instead.
    """
    place = world.find(src)
    if place is None:
        raise ValueError(f"no namespace {src!r} in the snapshots")
    dst = canon(dst)
    state = _State()
    sim = _Sim(world, state, "request")
    ip_size = (56 if size is None else size) + (ICMP6_HEADER if is_ip6(dst) else ICMP_HEADER)
    pkt = Packet(world.source_ip(place.key, dst), dst, proto, dport, ip_size, df=df)
    reached = sim.ip_output(place.key, pkt, None)
    steps = list(sim.steps)
    if reached is not None:
        back = _Sim(world, state, "reply")
        arrived = sim.arrived or pkt
        reply = Packet(arrived.dst, arrived.src, proto, None, ip_size, df=df, reply=True, sport=arrived.dport)
        home = back.ip_output(reached, reply, None)
        steps += back.steps
        if home is not None and home != place.key:
            steps.append(Step(world.place(home).host, world.place(home).label, "local", reply.dst,
                              "the reply reached another namespace than the sender", False, None, "reply"))  # fmt: skip
            home = None
        reached = home
    failed = next((i for i, s in enumerate(steps) if not s.ok), None)
    if reached is None and failed is None:
        steps.append(Step(place.host, place.label, "end", dst, "nothing delivered the packet", False))
        failed = len(steps) - 1
    return Trace(src, dst, proto, tuple(steps), reached is not None, failed if reached is None else None)
