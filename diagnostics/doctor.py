"""Check every host against what the store says should be there, and rank what is wrong.

``trace`` answers for one pair; ``doctor`` looks at all hosts at once and lists
the faults that break cross-host traffic, most likely first, each with the
evidence from the snapshot and the command that fixes it: missing or stale FDB
and proxy-ARP entries, VNI mismatches, VXLAN devices nothing tells where remote
MACs are (the field notes' case), MTUs that do not leave room for the 50 bytes
of encapsulation, hosts that must forward but do not, FORWARD policies and INPUT
rules that drop the traffic, duplicate addresses, static ARP entries left
behind by a MAC change (a bridge's, a container's), and the sysctls
(br_netfilter, rp_filter) that silently change the rules. Pure: the world is a
snapshot, the desired state the store's records.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from backend.model import Link, Namespace
from backend.records import Endpoint, HostRecord, NetworkRecord
from diagnostics.netfilter import Decision, Flow, dnat_to, hook, published, published_accept
from diagnostics.nftables import NftDecision, run_hook
from diagnostics.trace import USABLE, VXLAN_OVERHEAD, Fix, fix_in
from diagnostics.world import ZERO_MAC, World

FLANNEL_PREFIX = "flannel."
OUTSIDE = "198.51.100.1"  # a client somewhere else (TEST-NET-2): what a published port is for


@dataclass(frozen=True)
class Desired:
    """What the store says should exist."""

    hosts: tuple[HostRecord, ...] = ()
    networks: tuple[NetworkRecord, ...] = ()
    endpoints: tuple[Endpoint, ...] = ()


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
        outvote a native nftables drop), else the iptables or nft command that takes the refusal away."""
        if isinstance(decision, NftDecision):
            return self._fix(key, native=decision.undo(), missing="vxray has no command that changes nftables rules")
        if vxray:
            return self._fix(key, vxray, decision.undo())
        return self._fix(key, native=decision.undo(), missing="vxray has no command that deletes a FORWARD rule")

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
            flow = Flow(vtep, mine, "udp", vx.vxlan.dstport, dev.name if dev else None, None, dst_local=True)
            decision = _refusal(self.w.place(under_key).ns, "INPUT", flow)
            if decision is not None:
                where = decision.where if isinstance(decision, NftDecision) else "its INPUT chain"
                self.add(
                    0.95,
                    host,
                    f"{host} drops VXLAN: UDP {vx.vxlan.dstport} from {other} ({vtep}) is refused by {where}",
                    [decision.describe()],
                    self._undo(under_key, decision, ("vxray", "host", "set", host, f"udp.{vx.vxlan.dstport}=accept")),
                )
                return

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
            decision = _refusal(ns, "FORWARD", Flow(_first(a), _first(b), "udp", 4789, a.name, b.name))
            if decision is None:
                continue
            policy = ("vxray", "host", "set", host, "forward_policy=ACCEPT") if decision.rule is None else ()
            where = f" ({decision.where}, not iptables)" if isinstance(decision, NftDecision) else ""
            self.add(0.9, host, f"{host} drops forwarded traffic from {a.name} to {b.name}{where}",
                     [decision.describe()], self._undo(key, decision, policy))  # fmt: skip
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

    def _uplinked(self, key: str, bridge: Link) -> bool:
        """A bridge that enslaves the host's NIC: its containers sit on the LAN, no forwarding needed."""
        for port in self.w.ports.get((key, bridge.name), []):
            peer = self.w.link_at(key, port.peer) if port.peer else None
            if peer is None or self.w.place(peer[0]).label not in self.w.labels.containers:
                return port.kind != "vxlan"
        return False

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
            if ip.startswith(("127.", "169.254.")):
                continue
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
    decisions = run_hook(ns, chain.lower(), flow, (("filter", chain),) if ns.netfilter else ())
    return next((d for d in decisions if not d.accepted), None)


def _first(link: Link) -> str:
    return next((a.address for a in link.addresses if ":" not in a.address), "")


def doctor(world: World, want: Desired) -> list[Finding]:
    """Every finding, most likely first."""
    d = _Doctor(world, want)
    d.overlays()
    d.vni_subnets()
    d.published_ports()
    d.forwarding()
    d.duplicates()
    d.stale_neighbours()
    return sorted(d.found, key=lambda f: -f.likelihood)
