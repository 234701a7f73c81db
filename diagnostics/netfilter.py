"""Which iptables (ip6tables) rule a packet meets: pure evaluation of the chains a snapshot holds.

A packet crosses the filter FORWARD or INPUT chain, and the nat PREROUTING and
POSTROUTING chains, of every back-end that holds rules (the kernel runs legacy
and nf_tables side by side, so a packet must pass both). Rules are matched on the
fields the collector pulled out (protocol, addresses, interfaces with ``!`` and
``+``, destination ports) and on the few match modules container hosts use —
conntrack state and address type. A rule with any other match module is treated
as not matching, and the verdict says so, rather than guessing. An IPv6 packet meets
ip6tables' chains (``Namespace.netfilter6``), an IPv4 one iptables'.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass

from backend.model import Chain, Namespace, Rule, RuleSet

_UNDERSTOOD_MODULES = {"tcp", "udp", "icmp", "icmp6", "comment", "conntrack", "state", "addrtype", "multiport"}
_PROTOCOL_NAMES = {"ipv6-icmp": "icmpv6", "58": "icmpv6", "1": "icmp", "6": "tcp", "17": "udp"}
# ICMPv6 types as ip6tables and nft name them, with their numbers: what a --icmpv6-type match compares
ICMP6_TYPES = {
    "echo-request": 128,
    "echo-reply": 129,
    "nd-neighbor-solicit": 135,
    "nd-neighbor-advert": 136,
    "nd-router-solicit": 133,
    "nd-router-advert": 134,
    "packet-too-big": 2,
    "destination-unreachable": 1,
}
_ICMP6_ALIASES = {
    "neighbour-solicitation": 135,
    "neighbor-solicitation": 135,
    "neighbour-advertisement": 136,
    "neighbor-advertisement": 136,
    "router-solicitation": 133,
    "router-advertisement": 134,
}


@dataclass(frozen=True)
class Flow:
    """What rules match on; ``reply`` packets belong to an established connection. ``sport`` None is an
    ephemeral port (it matches no listed port); ``l3`` is ``arp`` for an ARP frame, which only bridge and
    netdev chains see; the MACs are the frame's, for bridge and netdev chains."""

    src: str
    dst: str
    proto: str
    dport: int | None
    in_iface: str | None
    out_iface: str | None
    reply: bool = False
    dst_local: bool = False
    sport: int | None = None
    mark: int = 0
    l3: str = "ip"
    src_mac: str | None = None
    dst_mac: str | None = None
    icmp_type: str | None = None  # an ICMP(v6) type other than echo's (NDP's nd-neighbor-solicit/-advert)

    @property
    def ip6(self) -> bool:
        return self.l3 == "ip6"

    @property
    def icmp_name(self) -> str | None:
        """The ICMP type the packet carries, as nft names it (None: no ICMP)."""
        if self.proto not in ("icmp", "icmpv6"):
            return None
        return self.icmp_type or ("echo-reply" if self.reply else "echo-request")

    @property
    def ct_states(self) -> frozenset[str]:
        """What conntrack says of the packet: NDP is never tracked (nf_conntrack_icmpv6), a reply is established."""
        if self.icmp_type and self.icmp_type.startswith("nd-"):
            return frozenset({"untracked"})
        return frozenset({"established"} if self.reply else {"new"})


@dataclass(frozen=True)
class Decision:
    """The outcome of one hook: ``target`` is ACCEPT/DROP/REJECT or a NAT target."""

    target: str
    backend: str = ""
    chain: str = ""
    rule: Rule | None = None  # None: the chain's policy decided
    family: str = "ip"  # ip: iptables; ip6: ip6tables

    @property
    def accepted(self) -> bool:
        return self.target not in ("DROP", "REJECT")

    @property
    def command(self) -> str:
        """The iptables tool of this decision's family and back-end."""
        tool = "ip6tables" if self.family == "ip6" else "iptables"
        return f"{tool}-{'legacy' if self.backend == 'legacy' else 'nft'}"

    def undo(self) -> tuple[str, ...]:
        """The iptables argv that stops this decision from dropping: delete the rule, or accept by policy.
        The rule's words are read back as iptables-save wrote them (it leaves ``-i p$(id)`` bare)."""
        command = self.command
        if self.rule is None:
            return (command, "-P", self.chain, "ACCEPT")
        return (command, "-D", self.rule.chain, *_words(self.rule.spec))

    def describe(self) -> str:
        where = f"{self.backend} " if self.backend else ""
        where = f"{where}ip6tables " if self.family == "ip6" else where
        if self.rule is None:
            return f"{where}{self.chain} policy {self.target}"
        return f"{where}-A {self.rule.chain} {self.rule.spec}"


def _words(spec: str) -> list[str]:
    """A rule's arguments (``Rule.spec`` quotes only what holds blanks, quotes or backslashes); a spec from
    a snapshot file that no shell could read is taken word by word."""
    try:
        return shlex.split(spec)
    except ValueError:
        return spec.split()


def _negated(value: str) -> tuple[bool, str]:
    return (True, value[1:]) if value.startswith("!") else (False, value)


def _iface(pattern: str | None, name: str | None) -> bool:
    if pattern is None:
        return True
    neg, pat = _negated(pattern)
    hit = name is not None and (name.startswith(pat[:-1]) if pat.endswith("+") else name == pat)
    return hit != neg


def _addr(cidr: str | None, ip: str) -> bool:
    if cidr is None:
        return True
    neg, net = _negated(cidr)
    if (":" in net) != (":" in ip):  # an address of the other family (a snapshot file's mistake): no match
        return False
    return (ipaddress.ip_address(ip) in ipaddress.ip_network(net, strict=False)) != neg


def _icmp6_type(word: str) -> int | None:
    """``--icmpv6-type`` as a number: ``128``, ``echo-request``, ``135/0`` (type/code)."""
    word = word.split("/")[0]
    return int(word) if word.isdigit() else ICMP6_TYPES.get(word, _ICMP6_ALIASES.get(word))


def _ports(spec: str | None, port: int | None) -> bool:
    if spec is None:
        return True
    neg, value = _negated(spec)
    hit = False
    for part in value.split(","):
        low, _, high = part.partition(":")
        if port is not None and int(low or 0) <= port <= int(high or low or 65535):
            hit = True
    return hit != neg


def _modules_match(rule: Rule, flow: Flow) -> bool:
    words = rule.spec.split()
    for i, word in enumerate(words[:-1]):
        if word == "-m" and words[i + 1] not in _UNDERSTOOD_MODULES:
            return False
        if word in ("--ctstate", "--state"):
            states = set(words[i + 1].split(","))
            negated = i > 0 and words[i - 1] == "!"
            have = {s.upper() for s in flow.ct_states} | ({"RELATED"} if flow.reply else set())
            if bool(states & have) == negated:
                return False
        if word == "--icmpv6-type":
            negated = i > 0 and words[i - 1] == "!"
            name = flow.icmp_name
            if ((name is not None and _icmp6_type(words[i + 1]) == ICMP6_TYPES.get(name)) == negated
                    or flow.proto != "icmpv6"):  # fmt: skip
                return False
        if word == "--dst-type":
            negated = i > 0 and words[i - 1] == "!"
            if ((words[i + 1] == "LOCAL") == flow.dst_local) == negated:
                return False
        if word == "physdev":
            return False
    return True


def matches(rule: Rule, flow: Flow) -> bool:
    if rule.protocol is not None:
        neg, proto = _negated(rule.protocol)
        if (proto in ("all", "0") or _PROTOCOL_NAMES.get(proto, proto) == flow.proto) == neg:
            return False
    return (
        _addr(rule.source, flow.src)
        and _addr(rule.destination, flow.dst)
        and _iface(rule.in_iface, flow.in_iface)
        and _iface(rule.out_iface, flow.out_iface)
        and (rule.dport is None or _ports(rule.dport, flow.dport))
        and _modules_match(rule, flow)
    )


def _walk(chains: dict[str, Chain], name: str, flow: Flow, depth: int = 0) -> tuple[str, str, Rule | None] | None:
    """The terminal decision inside chain ``name``: (target, chain, rule), or None to fall through/RETURN."""
    chain = chains.get(name)
    if chain is None or depth > 32:
        return None
    for rule in chain.rules:
        if not matches(rule, flow):
            continue
        target = rule.target
        if target == "RETURN":
            return None
        if target in chains:
            found = _walk(chains, target, flow, depth + 1)
            if found is not None:
                return found
            continue
        if target in ("ACCEPT", "DROP", "REJECT", "DNAT", "SNAT", "MASQUERADE"):
            return target, name, rule
    return None


def hook(ns: Namespace, table: str, chain: str, flow: Flow) -> Decision:
    """Run ``flow`` through ``table``/``chain`` of every back-end; the first refusal wins."""
    family = "ip6" if flow.ip6 else "ip"
    last = Decision("ACCEPT", chain=chain, family=family)
    for ruleset in ns.netfilter6 if flow.ip6 else ns.netfilter:
        decision = _hook_one(ruleset, table, chain, flow, family)
        if decision is None:
            continue
        if not decision.accepted:
            return decision
        last = decision
    return last


def _hook_one(ruleset: RuleSet, table: str, chain: str, flow: Flow, family: str = "ip") -> Decision | None:
    tbl = ruleset.table(table)
    if tbl is None or tbl.chain(chain) is None:
        return None
    chains = {c.name: c for c in tbl.chains}
    found = _walk(chains, chain, flow)
    if found is not None:
        target, where, rule = found
        return Decision(target, ruleset.backend, where, rule, family)
    return Decision(chains[chain].policy or "ACCEPT", ruleset.backend, chain, None, family)


def dnat_to(rule: Rule) -> tuple[str, int | None]:
    """``--to-destination IP[:PORT]`` of a DNAT rule."""
    ip, _, port = (rule.to or "").partition(":")
    return ip, int(port) if port.isdigit() else None


def published(ns: Namespace) -> list[tuple[str, Rule]]:
    """Every DNAT rule of the nat table (a ``-p`` port mapping, in Docker's DOCKER chain), with its back-end."""
    return [(rs.backend, r) for rs in ns.netfilter if (t := rs.table("nat")) is not None for c in t.chains
            for r in c.rules if r.target == "DNAT" and r.to]  # fmt: skip


def published_accept(
    ns: Namespace, backend: str, dst: str, proto: str, dport: int, bridge: str
) -> tuple[str, ...] | None:
    """The filter rule Docker adds for a published port (``-A DOCKER -d IP/32 ! -i BR -o BR -p tcp --dport
    PORT -j ACCEPT``), as the argv that puts it back, when a DNAT rule sends ``proto`` traffic to
    ``dst:dport``; None when no published port leads there."""
    if not any(dnat_to(r) in ((dst, dport), (dst, None)) for b, r in published(ns) if b == backend):
        return None
    command = "iptables-legacy" if backend == "legacy" else "iptables-nft"
    ruleset = next((rs for rs in ns.netfilter if rs.backend == backend), None)
    filt = ruleset.table("filter") if ruleset else None
    chain = "DOCKER" if filt is not None and filt.chain("DOCKER") is not None else "FORWARD"
    return (command, "-I", chain, "-d", f"{dst}/32", "!", "-i", bridge, "-o", bridge, "-p", proto, "-m", proto,
            "--dport", str(dport), "-j", "ACCEPT")  # fmt: skip
