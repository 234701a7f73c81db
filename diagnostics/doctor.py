"""Check every host against what the store says should be there, and rank what is wrong.

``trace`` answers for one pair; ``doctor`` looks at all hosts at once and lists
the faults that break cross-host traffic, most likely first, each with the
evidence from the snapshot and the command that fixes it: missing or stale FDB
and proxy-ARP entries, VNI mismatches, VXLAN devices nothing tells where remote
MACs are (the field notes' case), MTUs that do not leave room for the 50 bytes
of encapsulation, hosts that must forward but do not, FORWARD policies and INPUT
rules that drop the traffic, duplicate addresses, static ARP entries left
behind by a MAC change (a bridge's, a container's), and the sysctls
(br_netfilter, rp_filter) that silently change the rules. The rules are every
base chain at a hook, native nftables of every family beside iptables, in
priority order: an iptables ACCEPT (Docker's, flannel's) does not save a packet a
chain in another table drops — firewalld's case — so each drop found is named by
family, table, chain, priority and rule handle. Pure: the world is a snapshot,
the desired state the store's records.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from backend.model import Link, Namespace
from backend.records import Endpoint, HostRecord, NetworkRecord
from backend.store.flannel_layout import Layout, Lease
from diagnostics.netfilter import Decision, Flow, dnat_to, hook, published, published_accept
from diagnostics.nftables import NftDecision, base_chains, run_hook
from diagnostics.trace import USABLE, VXLAN_OVERHEAD, Fix, fix_in, nft_fix
from diagnostics.world import ZERO_MAC, World

FLANNEL_PREFIX = "flannel."
OUTSIDE = "198.51.100.1"  # a client somewhere else (TEST-NET-2): what a published port is for


@dataclass(frozen=True)
class Desired:
    """What the store says should exist."""

    hosts: tuple[HostRecord, ...] = ()
    networks: tuple[NetworkRecord, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()
    flannel: tuple[Layout, ...] = ()  # flannel networks as flannel keeps them (``backend.ops.flannel.layout``)


@dataclass(frozen=True)
class Finding:
    likelihood: float  # how likely this breaks traffic, 0..1
    host: str
    title: str
    evidence: tuple[str, ...] = ()
    fix: Fix | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fix": self.fix.as_dict() if self.fix is not None else None}


@dataclass
class _Doctor:
    w: World
    want: Desired
    found: list[Finding] = field(default_factory=list)

    def add(self, likelihood: float, host: str, title: str, evidence: Iterable[str], fix: Fix | None = None) -> None:
        self.found.append(Finding(likelihood, host, title, tuple(evidence), fix))

    def _fix(self, key: str, vxray: tuple[str, ...] = (), native: tuple[str, ...] = (), missing: str = "") -> Fix:
        return fix_in(self.w, key, vxray, native, missing)

    def _undo(self, key: str, decision: Decision | NftDecision, vxray: tuple[str, ...]) -> Fix:
        """The fix of a refusal: vxray's own setting for iptables' (it writes iptables rules, which cannot
        outvote a native nftables drop: that one is taken away by ``vxray firewall``), else the iptables
        command that takes the refusal away."""
        if isinstance(decision, NftDecision):
            return nft_fix(self.w, key, decision)
        if vxray:
            return self._fix(key, vxray, decision.undo())
        return self._fix(key, native=decision.undo(), missing=f"vxray has no command that deletes a {decision.chain} "
                         "rule")  # fmt: skip

    def host_key(self, host: str) -> str | None:
        label = self.w.labels.host_netns.get(host)
        place = self.w.find(label) if label else None
        return place.key if place else None

    # -- overlays ----------------------------------------------------------------------------------

    def overlays(self) -> None:
        vteps = {h.name: h.vtep for h in self.want.hosts if h.vtep}
        read = {p.host for p in self.w.places.values()}
        sandboxes = {(p.host, self.w.network(p.key)): p.key for p in self.w.places.values() if self.w.network(p.key)
                     and any(lk.vxlan for lk in p.ns.links)}  # fmt: skip
        for net in (n for n in self.want.networks if n.driver == "overlay"):
            eps = [e for e in self.want.endpoints if e.network == net.name]
            for host in sorted({e.host for e in eps} & read):  # a host not read is only a peer here
                key = sandboxes.get((host, net.name))
                vx = next((lk for lk in self.w.place(key).ns.links if lk.vxlan), None) if key else None
                if key is None or vx is None or vx.vxlan is None:
                    self.add(
                        0.9,
                        host,
                        f"network {net.name} has endpoints on {host} but no sandbox or VXLAN device",
                        [f"endpoints: {', '.join(e.container for e in eps if e.host == host)}"],
                        Fix(("vxray", "network", "repair", net.name, "--host", host)),
                    )
                    continue
                if vx.vxlan.vni != net.vni:
                    self.add(
                        0.95,
                        host,
                        f"VNI mismatch: {vx.name} of network {net.name} on {host} has VNI "
                        f"{vx.vxlan.vni}, the other hosts use {net.vni}",
                        [f"{self.w.place(key).label}: {vx.name} vxlan id {vx.vxlan.vni}",
                         f"a device's VNI is set when it is created: {vx.name} must be re-created with id {net.vni}"],
                        Fix(("vxray", "network", "repair", net.name, "--host", host)),
                    )  # fmt: skip
                if not vx.up:
                    evidence = [f"{self.w.place(key).label}: {vx.name} state {vx.operstate}"]
                    self.add(0.97, host, f"{vx.name} of network {net.name} on {host} is down: nothing leaves or "
                             f"enters the overlay there", evidence, self._link_up(key, net, vx))  # fmt: skip
                remote = [e for e in eps if e.host != host]
                self._fdb(key, host, net, vx, remote, vteps)
                self._proxy(key, host, net, vx, remote, eps)
                self._tunnel(key, host, vx, vteps)
                self._endpoint_mtu(host, net, [e for e in eps if e.host == host])

    def _link_up(self, key: str, net: NetworkRecord, vx: Link) -> Fix:
        """``vxray network repair`` sets up the devices of Docker's overlays' sandboxes, not of the store's own;
        ``ip link set … up`` sets up either."""
        native = ("ip", "link", "set", vx.name, "up")
        if self.w.docker_network(key) == net.name:
            return self._fix(key, ("vxray", "network", "repair", net.name), native)
        return self._fix(key, native=native, missing=f"vxray has no command that sets {vx.name} up")

    def _fdb(
        self, key: str, host: str, net: NetworkRecord, vx: Link, remote: list[Endpoint], vteps: dict[str, str | None]
    ) -> None:
        assert vx.vxlan is not None
        fdb = self.w.vxlan_fdb.get((key, vx.name), {})
        known = set(vteps.values())
        for mac, entries in sorted(fdb.items()):
            for e in entries:
                owner = next((r for r in remote if r.mac == mac), None)
                right = vteps.get(owner.host) if owner else None
                if e.dst and (e.dst not in known or (right and e.dst != right)):
                    who = f"{owner.container} is on {owner.host} (VTEP {right})" if owner else "no host has that VTEP"
                    # where the MAC lives is known: point the entry there; else it points nowhere: remove it
                    native = ("bridge", "fdb", "replace", mac, "dev", vx.name, "dst", right) if right else (
                        "bridge", "fdb", "del", mac, "dev", vx.name, "dst", e.dst)  # fmt: skip
                    self.add(
                        0.95,
                        host,
                        f"stale FDB entry on {host}: {mac} -> {e.dst}",
                        [f"{self.w.place(key).label}: {mac} dev {vx.name} dst {e.dst}", who],
                        self._fix(key, ("vxray", "network", "repair", net.name), native),
                    )
        flooding = bool(fdb.get(ZERO_MAC)) or vx.vxlan.group is not None
        missing = [r for r in remote if r.mac not in fdb]
        if missing and not flooding:  # learning helps only a reply: the request needs an entry
            title = (
                f"{vx.name} on {host} knows no remote MAC: no learning, no multicast group, no static entries"
                if len(missing) == len(remote) and not any(e.dst for es in fdb.values() for e in es)
                else f"{host} has no FDB entry for {len(missing)} remote endpoint(s) of {net.name}"
            )
            first = missing[0]
            vtep = vteps.get(first.host)
            self.add(
                0.9,
                host,
                title,
                [f"missing: {r.mac} ({r.container} {r.ip} on {r.host}, VTEP {vteps.get(r.host)})" for r in missing],
                self._fix(
                    key,
                    ("vxray", "fdb", "sync", net.name),
                    ("bridge", "fdb", "add", first.mac, "dev", vx.name, "dst", vtep) if vtep else (),
                    "" if vtep else f"the VTEP of {first.host}, where {first.mac} is: the store names none",
                ),
            )

    def _proxy(
        self, key: str, host: str, net: NetworkRecord, vx: Link, remote: list[Endpoint], eps: list[Endpoint]
    ) -> None:
        assert vx.vxlan is not None
        if not vx.vxlan.proxy:
            return
        neigh = self.w.neigh.get((key, vx.name), {})
        local = [e for e in eps if e.host == host]
        unanswered = []
        for r in remote:
            entry = neigh.get(r.ip)
            if entry is not None and entry.mac == r.mac and USABLE & set(entry.state):
                continue
            if local and all(self._has_static_arp(e, r.ip) for e in local):
                continue  # the field notes' fix: every local container has its own entry
            unanswered.append(r)
        if unanswered:
            first = unanswered[0]
            native = ("ip", "neigh", "replace", first.ip, "lladdr", first.mac, "dev", vx.name, "nud", "permanent")
            self.add(
                0.85,
                host,
                f"ARP for {len(unanswered)} remote address(es) of {net.name} goes unanswered on "
                f"{host}: {vx.name} proxies ARP only from its neighbour table",
                [f"no neighbour {r.ip} ({r.container}, {r.mac}) on {vx.name}" for r in unanswered],
                self._fix(key, ("vxray", "fdb", "sync", net.name), native),
            )

    def _has_static_arp(self, ep: Endpoint, ip: str) -> bool:
        place = self.w.container_place(ep.container) or self.w.find(ep.container)
        if place is None:
            return False
        entry = self.w.neigh.get((place.key, ep.ifname), {}).get(ip)
        return entry is not None and "PERMANENT" in entry.state

    def _tunnel(self, key: str, host: str, vx: Link, vteps: dict[str, str | None]) -> None:
        """The VXLAN device's underlay: MTU headroom, and INPUT letting remote VTEPs' UDP in."""
        assert vx.vxlan is not None
        under_key = self.w.vxlan_home(key, vx)  # Docker's vxlan0: where it was created, not its sandbox
        dev = (
            self.w.link_at(key, vx.vxlan.underlay)[1]
            if vx.vxlan.underlay and self.w.link_at(key, vx.vxlan.underlay)
            else None
        )
        peers = [v for h, v in vteps.items() if h != host and v]
        if dev is None and peers and (route := self.w.routes[under_key].lookup(peers[0])) is not None:
            dev = self.w.links.get((under_key, route.device or ""))
        if dev is not None and dev.mtu < vx.mtu + VXLAN_OVERHEAD:
            self.add(
                0.8,
                host,
                f"MTU mismatch on {host}: {vx.name} MTU {vx.mtu} + {VXLAN_OVERHEAD} bytes of "
                f"VXLAN exceed underlay {dev.name} MTU {dev.mtu}",
                [f"full-size overlay packets ({vx.mtu} bytes) become {vx.mtu + VXLAN_OVERHEAD} on {dev.name}"],
                self._fix(
                    under_key,
                    ("vxray", "host", "set", host, f"mtu.{dev.name}={vx.mtu + VXLAN_OVERHEAD}"),
                    ("ip", "link", "set", dev.name, "mtu", str(vx.mtu + VXLAN_OVERHEAD)),
                ),
            )
        mine = vteps.get(host)
        for other, vtep in sorted(vteps.items()):
            if other == host or not vtep or not mine:
                continue
            if self._vxlan_refused(under_key, host, vx.vxlan.dstport, vtep, mine, dev.name if dev else None, other):
                return

    def _vxlan_refused(self, key: str, host: str, port: int, peer: str, mine: str, dev: str | None,
                       other: str) -> bool:  # fmt: skip
        """Whether UDP ``port`` from VTEP ``peer`` to this host's VTEP ``mine`` is refused on its way in — at the
        ingress hook of the underlay device (netdev and inet chains), prerouting, or input (iptables' filter
        INPUT among the base chains) — and if so, the finding naming the chain and rule that refuse it."""
        ns = self.w.place(key).ns
        flow = Flow(peer, mine, "udp", port, dev, None, dst_local=True)
        decision = _receive_refusal(ns, flow)
        if decision is not None:
            where = _where(decision) if isinstance(decision, NftDecision) else "its INPUT chain"
            self.add(0.95, host, f"{host} drops VXLAN: UDP {port} from {other} ({peer}) is refused by {where}",
                     [decision.describe(), *_notes(decision)],
                     self._undo(key, decision, ("vxray", "host", "set", host, f"udp.{port}=accept")))  # fmt: skip
            return True
        decision = _send_refusal(ns, Flow(mine, peer, "udp", port, None, dev))
        if decision is None:
            return False
        where = _where(decision) if isinstance(decision, NftDecision) else "its OUTPUT chain"
        self.add(0.95, host, f"{host} drops the VXLAN it sends: UDP {port} to {other} ({peer}) is refused by {where}",
                 [decision.describe(), *_notes(decision)], self._undo(key, decision, ()))  # fmt: skip
        return True

    def vxlan_ports(self) -> None:
        """VXLAN devices no overlay of the store accounts for (flannel's ``flannel.<VNI>`` on UDP 8472, Docker's):
        the VTEPs their FDB sends to must get UDP in here too, whichever family's chain would drop it."""
        covered = {p.host for p in self.w.places.values() if self.w.network(p.key)} if self.want.networks else set()
        seen: set[tuple[str, int]] = set()
        vteps: dict[str, str] | None = None
        for key, vx in self.w.vxlans:
            place = self.w.place(key)
            if vx.vxlan is None or place.host in covered or (place.host, vx.vxlan.dstport) in seen:
                continue
            said = f"{place.host} drops VXLAN: UDP {vx.vxlan.dstport} "
            if any(f.host == place.host and f.title.startswith(said) for f in self.found):
                continue  # named already for the overlay (a Docker network) this device serves
            home = self.w.vxlan_home(key, vx)
            mine = self.w.vtep(key, vx)
            peers = sorted({e.dst for es in self.w.vxlan_fdb.get((key, vx.name), {}).values() for e in es
                            if e.dst and e.dst != mine and ":" not in e.dst})  # fmt: skip
            under = self.w.link_at(key, vx.vxlan.underlay) if vx.vxlan.underlay else None
            for peer in peers if mine else []:
                route = self.w.routes[home].lookup(peer)
                dev = under[1].name if under else route.device if route else None
                vteps = self.w.host_vteps() if vteps is None else vteps
                who = vteps.get(peer, peer)
                if self._vxlan_refused(home, place.host, vx.vxlan.dstport, peer, mine or "", dev, who):
                    seen.add((place.host, vx.vxlan.dstport))
                    break

    def _endpoint_mtu(self, host: str, net: NetworkRecord, eps: list[Endpoint]) -> None:
        for ep in eps:
            place = self.w.container_place(ep.container) or self.w.find(ep.container)
            lk = self.w.links.get((place.key, ep.ifname)) if place else None
            if place is not None and lk is not None and lk.mtu > net.mtu:
                self.add(
                    0.8,
                    host,
                    f"{ep.container}'s {ep.ifname} has MTU {lk.mtu}, network {net.name} {net.mtu}",
                    [f"packets over {net.mtu} bytes are dropped at the bridge"],
                    self._fix(
                        place.key,
                        ("vxray", "network", "repair", net.name),
                        ("ip", "link", "set", ep.ifname, "mtu", str(net.mtu)),
                    ),
                )

    def vni_subnets(self) -> None:
        """One VNI, one subnet: sandboxes of the same VNI whose bridges hold different subnets cannot
        reach each other, however the FDB is programmed."""
        seen: dict[int, dict[str, list[str]]] = {}
        for key, vx in self.w.vxlans:
            bridge = self.w.links.get((key, vx.master or ""))
            if vx.vxlan is None or bridge is None:
                continue
            for a in bridge.addresses:
                if ":" not in a.address:
                    net = str(ipaddress.IPv4Interface(a.cidr).network)
                    seen.setdefault(vx.vxlan.vni, {}).setdefault(net, []).append(self.w.place(key).label)
        for vni, subnets in sorted(seen.items()):
            if len(subnets) > 1:
                first, *others = sorted(subnets.items(), key=lambda kv: -len(kv[1]))
                for net, where in others:
                    self.add(0.9, self.w.place(self.w.find(where[0]).key).host if self.w.find(where[0]) else "",
                             f"VNI {vni} carries two subnets: {net} here, {first[0]} elsewhere",
                             [f"{w}: {net}" for w in where] + [f"{w}: {first[0]}" for w in first[1]])  # fmt: skip

    def published_ports(self) -> None:
        """A published port (a DNAT rule) whose forwarded traffic the filter FORWARD chain drops: the
        ACCEPT Docker adds to its DOCKER chain for it went missing, or a policy shuts it."""
        for key, place in self.w.places.items():
            for backend, rule in published(place.ns):
                ip, port = dnat_to(rule)
                route = self.w.routes[key].lookup(ip) if ip else None
                uplink = self._uplink(key)
                if route is None or not route.device or not rule.dport or not rule.dport.isdigit() or uplink is None:
                    continue
                proto, dport = rule.protocol or "tcp", port or int(rule.dport)
                flow = Flow(OUTSIDE, ip, proto, dport, uplink, route.device)
                decision = hook(place.ns, "filter", "FORWARD", flow)
                if decision.accepted:
                    continue
                who = next((self.w.container(k) or self.w.place(k).label for k, _ in self.w.owners(ip)), ip)
                accept = published_accept(place.ns, backend, ip, proto, dport, route.device)
                self.add(0.85, place.host, f"published port {rule.dport}/{proto} of {who} is dropped on {place.host}: "
                         f"FORWARD refuses what the DNAT sends to {ip}:{dport}",
                         [f"-A {rule.chain} {rule.spec}", decision.describe()],
                         self._fix(key, native=accept or decision.undo(), missing="vxray has no command that "
                                   "writes a published port's ACCEPT rule back"))  # fmt: skip

    def _uplink(self, key: str) -> str | None:
        """The device traffic from elsewhere arrives on: the default route's, else the first that is up,
        no bridge, and holds a global IPv4 address."""
        default = self.w.routes[key].lookup(OUTSIDE)
        if default is not None and default.device:
            return default.device
        return next((lk.name for lk in self.w.place(key).ns.links if lk.up and lk.kind not in ("bridge", "loopback")
                     and lk.master is None and any(a.scope == "global" and ":" not in a.address
                                                   for a in lk.addresses)), None)  # fmt: skip

    # -- forwarding --------------------------------------------------------------------------------

    def forwarding(self) -> None:
        """Hosts that route container or underlay traffic must forward, and let FORWARD pass it."""
        for host, label in sorted(self.w.labels.host_netns.items()):
            place = self.w.find(label)
            if place is not None:
                self._forwarding(host, place.key)

    def _forwarding(self, host: str, key: str) -> None:
        ns = self.w.place(key).ns
        addressed = [lk for lk in ns.links if lk.name != "lo" and not lk.master and _first(lk)]
        routed = [lk for lk in addressed if lk.kind != "bridge" and not lk.name.startswith(FLANNEL_PREFIX)]
        flannel = [lk for lk in addressed if lk.name.startswith(FLANNEL_PREFIX)]
        bridges = [
            lk
            for lk in addressed
            if lk.kind == "bridge" and self.w.ports.get((key, lk.name)) and not self._uplinked(key, lk)
        ]
        pairs = [(a, b) for a in routed for b in routed if a is not b]
        pairs += [(br, fl) for br in bridges for fl in flannel] + [(fl, br) for br in bridges for fl in flannel]
        if ns.sysctls.ip_forward is False and (pairs or bridges):
            why = (
                "it routes flannel traffic"
                if flannel
                else f"it routes between {', '.join(lk.name for lk in routed)}"
                if pairs
                else "its bridges' containers can only leave through it"
            )
            self.add(
                0.9 if pairs else 0.6,
                host,
                f"ip_forward is off on {host}, but {why}",
                ["net.ipv4.ip_forward = 0"],
                self._fix(
                    key, ("vxray", "host", "set", host, "ip_forward=1"), ("sysctl", "-w", "net.ipv4.ip_forward=1")
                ),
            )
        for a, b in pairs:
            flows = _both_ways(Flow(_first(a), _first(b), "udp", 4789, a.name, b.name))
            if ns.sysctls.ip6_forward and _first6(a) and _first6(b):  # a dual-stack network: IPv6 forwarded too
                flows += _both_ways(Flow(_first6(a), _first6(b), "icmpv6", None, a.name, b.name, l3="ip6"))
            found = next(((f, d) for f in flows if (d := _refusal(ns, "FORWARD", f)) is not None), None)
            if found is None:
                continue
            flow, decision = found
            policy = ("vxray", "host", "set", host, "forward_policy=ACCEPT") if decision.rule is None else ()
            if flow.ip6:
                policy = ()  # vxray's forward_policy is iptables', not ip6tables'
            v6 = "IPv6 " if flow.ip6 else ""
            what = (f"the replies of {v6}traffic forwarded from {a.name} to {b.name} (ct state established)"
                    if flow.reply else f"forwarded {v6}traffic from {a.name} to {b.name}")  # fmt: skip
            what += ", while IPv4 passes" if flow.ip6 else ""
            self.add(0.9, host, f"{host} drops {what}{self._beside_iptables(ns, flow, decision)}",
                     [decision.describe(), *_notes(decision)], self._undo(key, decision, policy))  # fmt: skip
            break
        forward = next(
            (
                c
                for rs in ns.netfilter
                if (t := rs.table("filter"))
                for c in t.chains
                if c.name == "FORWARD" and c.policy == "DROP"
            ),
            None,
        )
        if ns.sysctls.bridge_nf_call_iptables and bridges and forward is not None:
            self.add(
                0.4,
                host,
                f"br_netfilter sends bridged traffic on {host} through iptables, whose FORWARD policy is DROP",
                ["net.bridge.bridge-nf-call-iptables = 1: FORWARD rules apply inside bridges"],
            )
        mode = max([ns.sysctls.rp_filter_all or 0, *ns.sysctls.rp_filter.values()])
        if mode == 1 and len(routed) >= 2:
            self.add(
                0.3,
                host,
                f"strict rp_filter on {host} drops replies that come back another way",
                ["net.ipv4.conf.*.rp_filter = 1"],
                self._fix(
                    key,
                    ("vxray", "host", "set", host, "rp_filter=2"),
                    ("sysctl", "-w", "net.ipv4.conf.all.rp_filter=2"),
                ),
            )

    def _beside_iptables(self, ns: Namespace, flow: Flow, decision: Decision | NftDecision) -> str:
        """Where a native drop sits against iptables' filter FORWARD (Docker's and flannel's rules): firewalld's
        case is a chain in another table refusing what those rules accept."""
        if not isinstance(decision, NftDecision):
            return ""
        rulesets = ns.netfilter6 if flow.ip6 else ns.netfilter
        ipt = hook(ns, "filter", "FORWARD", flow) if any(rs.table("filter") for rs in rulesets) else None
        order = "before" if decision.priority < 0 else "after" if decision.priority > 0 else "beside"
        if ipt is not None and ipt.accepted and ipt.rule is not None:
            return (
                f" ({_where(decision)}, {order} {'ip6' if flow.ip6 else 'ip'}tables' filter FORWARD, whose rule "
                f"accepts it: -A {ipt.rule.chain} {ipt.rule.spec})"
            )
        return f" ({_where(decision)}, not iptables)"

    def bridged(self) -> None:
        """Frames a bridge forwards from port to port cross the ``bridge`` family's prerouting, forward and
        postrouting hooks, and with br_netfilter the ip/inet forward hook too: a native chain there dropping
        IPv4 cuts the containers (or an overlay's VXLAN port) behind the bridge off from each other, whatever
        iptables says. Checked for the ports with an address behind them, the request and its reply."""
        for key, place in self.w.places.items():
            ns = place.ns
            family = any(t.family == "bridge" for t in ns.nftables)
            nf_call = bool(ns.sysctls.bridge_nf_call_iptables and base_chains(ns, ("ip", "inet"), "forward"))
            if not family and not nf_call:
                continue
            for br in (lk for lk in ns.links if lk.kind == "bridge"):
                ports = self.w.ports.get((key, br.name), [])
                behind = [(p, ip, mac) for p in ports for ip, mac in self._behind(key, p)]
                if self._bridge_drop(key, place.host, br, behind, family, nf_call):
                    break

    def _bridge_drop(self, key: str, host: str, br: Link, behind: list[tuple[Link, str, str]], family: bool,
                     nf_call: bool) -> bool:  # fmt: skip
        """The first pair of ports whose bridged request or reply a native chain drops: a bridge table's, or
        (br_netfilter) an ip/inet forward chain's, where the packet crosses as ``-i BRIDGE -o BRIDGE``. iptables'
        own drops there are Docker's choice (``icc=false``, ``docker_gwbridge``) and not reported. Each port is
        tried as a sender and as a receiver once (to the next port, round the bridge): a bridge with hundreds of
        containers costs as many evaluations, not their square."""
        ns = self.w.place(key).ns
        ring = [(behind[i], behind[(i + 1) % len(behind)]) for i in range(len(behind))]
        for (a, ip_a, mac_a), (b, ip_b, mac_b) in ((x, y) for x, y in ring if x[0] is not y[0]):
            request = Flow(ip_a, ip_b, "icmp", None, a.name, b.name, src_mac=mac_a, dst_mac=mac_b)
            reply = Flow(ip_b, ip_a, "icmp", None, b.name, a.name, reply=True, src_mac=mac_b, dst_mac=mac_a)
            for flow in (request, reply):
                decision = _bridge_refusal(ns, flow) if family else None
                hooked = replace(flow, in_iface=br.name, out_iface=br.name, src_mac=None, dst_mac=None)
                routed = _refusal(ns, "FORWARD", hooked) if decision is None and nf_call else None
                decision = decision or (routed if isinstance(routed, NftDecision) else None)
                if decision is None:
                    continue
                who = {ip_a: self._who(a, ip_a), ip_b: self._who(b, ip_b)}
                what = f"from {who[flow.src]} to {who[flow.dst]}{' (the reply)' if flow.reply else ''}"
                place = host if self.w.is_host_ns(key) else self.w.place(key).label
                if decision.family == "bridge":
                    title = f"{place}: {_where(decision)} drops frames {br.name} bridges {what}"
                else:
                    title = (
                        f"{place} drops the traffic {br.name} bridges {what}: it crosses the forward hook "
                        f"(br_netfilter){self._beside_iptables(ns, hooked, decision)}"
                    )
                self.add(0.9, host, title, [decision.describe(), *_notes(decision)], nft_fix(self.w, key, decision))
                return True
        return False

    def _behind(self, key: str, port: Link) -> list[tuple[str, str]]:
        """The IPv4 addresses (with their MACs) a bridge port leads to: its veth peer's, or the remote endpoints
        a VXLAN port's neighbour table holds."""
        if port.vxlan is not None:
            return [(ip, n.mac) for ip, n in sorted(self.w.neigh.get((key, port.name), {}).items())
                    if n.mac and ":" not in ip][:1]  # fmt: skip
        peer = self.w.link_at(key, port.peer) if port.peer else None
        if peer is None:
            return []
        return [(a.address, peer[1].mac or "") for a in peer[1].addresses if ":" not in a.address][:1]

    def _who(self, port: Link, ip: str) -> str:
        owner = next((k for k, _ in self.w.owners(ip)), None)
        name = (self.w.container(owner) if owner else None) or ip
        return f"{name} ({port.name})"

    def _uplinked(self, key: str, bridge: Link) -> bool:
        """A bridge that enslaves the host's NIC: its containers sit on the LAN, no forwarding needed."""
        for port in self.w.ports.get((key, bridge.name), []):
            peer = self.w.link_at(key, port.peer) if port.peer else None
            if peer is None or self.w.place(peer[0]).label not in self.w.labels.containers:
                return port.kind != "vxlan"
        return False

    # -- flannel's leases --------------------------------------------------------------------------

    def flannel_leases(self) -> None:
        """Each host against the leases of each flannel network as flannel keeps them (``Desired.flannel``): a
        lease no host owns any more (stale), a lease whose VtepMAC no host's ``flannel.<VNI>`` has, a host that
        lacks the route, ARP or FDB entry flanneld programs for another host's lease."""
        vteps = {h.vtep: h.name for h in self.want.hosts if h.vtep}
        for lay in self.want.flannel:
            devices: dict[str, tuple[str, Link]] = {}  # host -> its flannel.<VNI>, in its own namespace
            for h in self.want.hosts:
                key = self.host_key(h.name)
                dev = self.w.links.get((key, lay.device)) if key else None
                if key and dev:
                    devices[h.name] = (key, dev)
            macs = {dev.mac: host for host, (_, dev) in devices.items() if dev.mac}
            for note in lay.notes:
                self.add(0.4, "", note, [f"read from {lay.url}"])
            for lease in lay.leases:
                owner = vteps.get(lease.public_ip)
                if owner is None:
                    self._stale_lease(lay, lease, macs, {h.name: h.vtep for h in self.want.hosts})
                    continue
                if lease.vtep_mac and lease.vtep_mac not in macs and owner in devices:
                    key, dev = devices[owner]
                    self.add(0.95, owner, f"flannel lease {lease.subnet} of {owner} says VtepMAC {lease.vtep_mac}, "
                             f"which no host's {lay.device} has: the other hosts send its traffic to nobody",
                             [f"{lease.key} in {lay.url or 'the store'}: VtepMAC {lease.vtep_mac}",
                              f"{owner}: {lay.device} link/ether {dev.mac}"],
                             self._fix(key, native=("ip", "link", "set", lay.device, "address", lease.vtep_mac),
                                       missing="vxray has no command that sets a device's MAC"))  # fmt: skip
                for host, (key, dev) in sorted(devices.items()):
                    if host != owner and lease.vtep_mac:
                        self._lease_entries(lay, lease, owner, host, key, dev)

    def _lease_entries(self, lay: Layout, lease: Lease, owner: str, host: str, key: str, dev: Link) -> None:
        """flanneld's three entries on ``host`` for ``owner``'s lease: ARP, FDB, route."""
        assert lease.vtep_mac is not None
        via = str(ipaddress.IPv4Network(lease.subnet).network_address)
        neigh = self.w.neigh.get((key, dev.name), {}).get(via)
        fdb = self.w.vxlan_fdb.get((key, dev.name), {}).get(lease.vtep_mac, [])
        routes = self.w.routes.get(key)
        route = next((r for net, r in routes.entries if str(net) == lease.subnet), None) if routes else None
        missing = []
        mac, vtep = lease.vtep_mac, lease.public_ip
        if neigh is None or neigh.mac != mac:
            held = f" (it holds {neigh.mac})" if neigh else ""
            native = ("ip", "neigh", "replace", via, "lladdr", mac, "dev", dev.name, "nud", "permanent")
            missing.append((f"ARP entry {via} lladdr {mac} dev {dev.name}{held}", native))
        if not any(e.dst == vtep for e in fdb):
            held = f" (it has dst {fdb[0].dst})" if fdb else ""
            native = ("bridge", "fdb", "replace", mac, "dev", dev.name, "dst", vtep)
            missing.append((f"FDB entry {mac} dev {dev.name} dst {vtep}{held}", native))
        if route is None or route.gateway != via or route.device != dev.name:
            held = f" (it routes via {route.gateway} dev {route.device})" if route else ""
            native = ("ip", "route", "replace", lease.subnet, "via", via, "dev", dev.name, "onlink")
            missing.append((f"route {lease.subnet} via {via} dev {dev.name} onlink{held}", native))
        if missing:
            self.add(0.93, host, f"{host} lacks flannel's {', '.join(m[0].split(' ', 1)[0] for m in missing)} "
                     f"{'entry' if len(missing) == 1 else 'entries'} for lease {lease.subnet} of {owner}",
                     [f"{self.w.place(key).label}: no {m[0]}" for m in missing],
                     self._fix(key, ("vxray", "fdb", "sync", lay.network), missing[0][1]))  # fmt: skip

    def _stale_lease(self, lay: Layout, lease: Lease, macs: dict[str | None, str], vteps: dict[str, str | None],
                     ) -> None:  # fmt: skip
        """A lease whose PublicIP no host has: its node is gone (etcd drops it when its TTL runs out), or moved
        to another address without its flanneld renewing it — told apart by whose device has the VtepMAC."""
        holder = macs.get(lease.vtep_mac) if lease.vtep_mac else None
        if holder is not None and vteps.get(holder):
            body = {"PublicIP": vteps[holder], "PublicIPv6": None, "BackendType": "vxlan",
                    "BackendData": {"VNI": lay.vni, "VtepMAC": lease.vtep_mac}}  # fmt: skip
            renewed = json.dumps(body, separators=(",", ":"))  # as flanneld writes it
            self.add(0.95, holder, f"stale flannel lease {lease.subnet}: its PublicIP {lease.public_ip} is no host's, "
                     f"its VtepMAC is {holder}'s {lay.device} (VTEP {vteps[holder]}): the other hosts send its "
                     f"traffic to {lease.public_ip}",
                     [f"{lease.key} in {lay.url}: PublicIP {lease.public_ip}, VtepMAC {lease.vtep_mac}",
                      f"{holder}: VTEP {vteps[holder]}"],
                     Fix(native=(*lay.etcdctl, "put", lease.key, renewed),
                         missing=f"then `vxray fdb sync {lay.network}` programs the hosts from it"))  # fmt: skip
            return
        self.add(0.6, "", f"stale flannel lease {lease.subnet}: no host has its PublicIP {lease.public_ip} or its "
                 f"VtepMAC {lease.vtep_mac} (a node gone; etcd drops the lease when its TTL runs out)",
                 [f"{lease.key} in {lay.url}"],
                 Fix(native=(*lay.etcdctl, "del", lease.key)) if lay.etcdctl else None)  # fmt: skip

    # -- addresses ---------------------------------------------------------------------------------

    def stale_neighbours(self) -> None:
        """Static ARP entries whose MAC is no longer the one the address lives behind.

        A bridge takes the lowest MAC of its ports unless one is set, so adding a
        port can change the gateway's MAC under every ``arp -s`` made for it; a
        container re-created with another MAC leaves the same trap behind.
        """
        for (key, dev), entries in sorted(self.w.neigh.items()):
            for ip, n in sorted(entries.items()):
                owners = self.w.owners(ip)
                if "PERMANENT" not in n.state or not n.mac or not owners:
                    continue
                if any(lk.mac == n.mac for _, lk in owners):
                    continue
                k, lk = owners[0]
                where = self.w.container(key) or self.w.place(key).label
                self.add(
                    0.85,
                    self.w.place(key).host,
                    f"stale static ARP entry in {where}: {ip} lladdr {n.mac}, but {ip} is now behind {lk.mac}",
                    [
                        f"{self.w.place(key).label}: {ip} dev {dev} lladdr {n.mac} PERMANENT",
                        f"{self.w.place(k).label}: {lk.name} {lk.mac} holds {ip}",
                    ],
                    self._arp_fix(key, dev, ip, lk.mac),
                )

    def _arp_fix(self, key: str, dev: str, ip: str, mac: str | None) -> Fix:
        """Put the MAC ``ip`` is behind now in the static entry (behind none: remove the entry). vxray changes
        the entries of containers only."""
        if mac:
            vxray = ("vxray", "arp", "add", ip, mac)
            native = ("ip", "neigh", "replace", ip, "lladdr", mac, "dev", dev, "nud", "permanent")
        else:
            vxray, native = ("vxray", "arp", "del", ip), ("ip", "neigh", "del", ip, "dev", dev)
        ctr = self.w.container(key)
        if ctr is None:
            label = self.w.place(key).label
            return self._fix(key, native=native, missing=f"vxray has no command that changes {label}'s entries: it is "
                             "no container")  # fmt: skip
        return self._fix(key, (*vxray, "--container", ctr), native)

    def duplicates(self) -> None:
        containers = self.w.labels.containers
        for ip, owners in sorted(self.w.addresses.items()):
            if ipaddress.ip_address(ip).is_loopback or ipaddress.ip_address(ip).is_link_local:
                continue  # every namespace has its own ::1 and 127.0.0.1; link-local addresses are per link
            names = sorted(
                {containers[self.w.place(k).label] for k, _, _ in owners if self.w.place(k).label in containers}
            )
            if len(names) > 1:
                self.add(
                    0.7,
                    self.w.place(owners[0][0]).host,
                    f"duplicate IP {ip}: {', '.join(names)}",
                    [f"{self.w.place(k).label} {lk.name}" for k, lk, _ in owners],
                )
        for mac, owners in sorted(self.w.macs.items()):
            names = sorted(
                {containers[self.w.place(k).label] for k, _ in owners if self.w.place(k).label in containers}
            )
            if len(names) > 1:
                self.add(
                    0.7,
                    self.w.place(owners[0][0]).host,
                    f"duplicate MAC {mac}: {', '.join(names)}",
                    [f"{self.w.place(k).label} {lk.name}" for k, lk in owners],
                )


def _refusal(ns: Namespace, chain: str, flow: Flow) -> Decision | NftDecision | None:
    """What refuses ``flow`` at filter hook ``chain``: iptables' filter table or any native base chain there
    (firewalld's inet table among them) — each must accept, in priority order."""
    iptables = ns.netfilter6 if flow.ip6 else ns.netfilter
    decisions = run_hook(ns, chain.lower(), flow, (("filter", chain),) if iptables else ())
    return next((d for d in decisions if not d.accepted), None)


def _receive_refusal(ns: Namespace, flow: Flow) -> Decision | NftDecision | None:
    """What refuses a packet for this namespace on its way in: the ingress hook of its device (netdev and inet
    chains), native prerouting chains, then the input hook with iptables' filter INPUT."""
    if flow.in_iface and base_chains(ns, ("netdev", "inet"), "ingress", flow.in_iface):
        ingress = run_hook(ns, "ingress", flow, (), ("netdev", "inet"), flow.in_iface)
        if (found := next((d for d in ingress if not d.accepted), None)) is not None:
            return found
    found = next((d for d in run_hook(ns, "prerouting", flow) if not d.accepted), None)
    return found or _refusal(ns, "INPUT", flow)


def _send_refusal(ns: Namespace, flow: Flow) -> Decision | NftDecision | None:
    """What refuses a packet this namespace sends: the output hook with iptables' filter OUTPUT, then native
    postrouting chains."""
    return _refusal(ns, "OUTPUT", flow) or next((d for d in run_hook(ns, "postrouting", flow) if not d.accepted),
                                                None)  # fmt: skip


def _bridge_refusal(ns: Namespace, flow: Flow) -> NftDecision | None:
    """What the bridge family refuses of a frame bridged from ``flow.in_iface`` to ``flow.out_iface``."""
    for name, f in (("prerouting", replace(flow, out_iface=None)), ("forward", flow),
                    ("postrouting", flow)):  # fmt: skip
        found = next((d for d in run_hook(ns, name, f, (), ("bridge",)) if not d.accepted), None)
        if isinstance(found, NftDecision):
            return found
    return None


def _where(decision: NftDecision) -> str:
    """Family, table, chain and priority: what names a base chain among the others at its hook."""
    return f"{decision.where} at priority {decision.priority}"


def _notes(decision: Decision | NftDecision) -> list[str]:
    return [f"uncertain: {n}" for n in decision.notes] if isinstance(decision, NftDecision) else []


def _both_ways(request: Flow) -> list[Flow]:
    """A request and its reply (which a forward chain matching ``ct state`` treats apart)."""
    reply = Flow(request.dst, request.src, request.proto, None, request.out_iface, request.in_iface, reply=True,
                 sport=request.dport, l3=request.l3)  # fmt: skip
    return [request, reply]


def _first6(link: Link) -> str:
    return next((a.address for a in link.addresses if ":" in a.address and a.scope == "global"), "")


def _first(link: Link) -> str:
    return next((a.address for a in link.addresses if ":" not in a.address), "")


def doctor(world: World, want: Desired) -> list[Finding]:
    """Every finding, most likely first."""
    d = _Doctor(world, want)
    d.overlays()
    d.vni_subnets()
    d.published_ports()
    d.forwarding()
    d.vxlan_ports()
    d.bridged()
    d.duplicates()
    d.stale_neighbours()
    d.flannel_leases()
    return sorted(d.found, key=lambda f: -f.likelihood)
