"""Which native nftables rule a packet meets: pure evaluation of the base chains a snapshot holds.

The kernel runs every base chain registered at a hook, of every table, in priority
order; an ``accept`` ends only its own chain, so a packet accepted by one base chain
can still be dropped by the next — and iptables' tables (filter at 0, nat PREROUTING
at -100, POSTROUTING at 100) are base chains among them. Rules are read as
libnftables' JSON (``nft -j``): matches on meta, payload, ct and fib expressions
against values, prefixes, ranges, anonymous and named sets and concatenations;
verdicts, verdict maps and NAT statements. A rule holding anything else is taken
as not matching and the decision says "cannot evaluate …" instead of guessing, as
the iptables evaluation does with an unknown match module. An IPv6 packet meets the
ip6 and inet families' chains (``ip6 saddr``/``daddr``/``nexthdr``, ``icmpv6 type``,
``meta l4proto``, ``ct state`` — NDP untracked — and ``fib daddr type``) and
ip6tables' tables among them.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from backend.model import Namespace, NftChain, NftRule, NftTable
from diagnostics.netfilter import Decision, Flow, hook

IPTABLES_TABLES = {"filter", "nat", "mangle", "raw", "security"}  # what iptables-nft writes as ip tables
IPTABLES_PRIORITY = {("raw", "PREROUTING"): -300, ("mangle", "PREROUTING"): -150, ("nat", "PREROUTING"): -100,
                     ("filter", "INPUT"): 0, ("filter", "FORWARD"): 0, ("filter", "OUTPUT"): 0,
                     ("nat", "OUTPUT"): -100, ("nat", "POSTROUTING"): 100}  # fmt: skip
INET_FAMILIES = ("ip", "inet")  # the families whose inet hooks see an IPv4 packet
INET6_FAMILIES = ("ip6", "inet")  # … and an IPv6 packet
PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58}
NAT = ("dnat", "snat", "masquerade", "redirect")
IGNORED = {"counter", "log", "limit", "notrack", "quota"}  # statements that never decide a verdict
MAX_DEPTH = 16  # jumps nested deeper than the kernel allows


class Unknown(Exception):
    """An expression or statement this evaluation cannot answer from a snapshot."""


@dataclass(frozen=True)
class NftDecision:
    """The outcome of one base chain: ``verdict`` is accept, drop, reject or a NAT statement;
    ``rule`` None means the chain's policy decided; ``notes`` say which rules could not be evaluated."""

    verdict: str
    family: str
    table: str
    chain: str  # the base chain
    priority: int
    rule: NftRule | None = None
    rule_chain: str = ""  # where the deciding rule sits (a chain jumped to)
    to: tuple[str, int | None] | None = None  # dnat/snat's new address and port
    notes: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        return self.verdict not in ("drop", "reject")

    @property
    def where(self) -> str:
        return f"nft {self.family} {self.table} {self.chain}"

    def describe(self) -> str:
        base = f"priority {self.priority}: "
        if self.rule is None:
            return f"{base}policy {self.verdict}"
        inside = f"chain {self.rule_chain} " if self.rule_chain != self.chain else ""
        return f"{base}{inside}rule handle {self.rule.handle}: {self.rule.text}"

    def undo(self) -> tuple[str, ...]:
        """The nft argv that stops this decision from dropping: delete the rule, or make the policy accept
        (``nft`` joins its words, so the braces travel as one argument)."""
        if self.rule is None:
            return ("nft", "chain", self.family, self.table, self.chain, "{ policy accept; }")
        return ("nft", "delete", "rule", self.family, self.table, self.rule_chain, "handle", str(self.rule.handle))


Verdict = Decision | NftDecision


def owned_by_iptables(ns: Namespace, table: NftTable) -> bool:
    """iptables-nft's (ip6tables-nft's) own tables, which the iptables evaluation already runs from
    ``ns.netfilter`` (``ns.netfilter6``)."""
    rulesets = ns.netfilter if table.family == "ip" else ns.netfilter6 if table.family == "ip6" else ()
    return table.name in IPTABLES_TABLES and any(rs.backend == "nft" and rs.table(table.name) for rs in rulesets)


def base_chains(ns: Namespace, families: tuple[str, ...], hook_name: str,
                device: str | None = None) -> list[tuple[NftTable, NftChain]]:  # fmt: skip
    """The base chains of ``families`` at ``hook_name`` (on ``device`` for netdev), in the order the kernel
    runs them: by priority."""
    found = [(t, c) for t in ns.nftables if t.family in families and not owned_by_iptables(ns, t)
             for c in t.chains if c.hook == hook_name and (device is None or c.device == device)]  # fmt: skip
    return sorted(found, key=lambda tc: tc[1].priority or 0)


def run_hook(ns: Namespace, hook_name: str, flow: Flow, iptables: tuple[tuple[str, str], ...] = (),
             families: tuple[str, ...] | None = None, device: str | None = None) -> list[Verdict]:  # fmt: skip
    """Every base chain at a hook — native ones and the ``(table, CHAIN)`` pairs of iptables — in priority order,
    up to the first refusal (iptables first on equal priority). A NAT decision rewrites the flow for the chains
    after it, and only the first NAT decision of a hook counts: the kernel binds a connection once. ``families``
    default to those an IP packet of the flow's version meets (ip6 and inet for IPv6)."""
    if families is None:
        families = INET6_FAMILIES if flow.ip6 else INET_FAMILIES
    queue: list[tuple[int, int, Any]] = [(IPTABLES_PRIORITY.get(tc, 0), 0, tc) for tc in iptables]
    queue += [(c.priority or 0, 1, (t, c)) for t, c in base_chains(ns, families, hook_name, device)]
    out: list[Verdict] = []
    natted = False
    for _, _, item in sorted(queue, key=lambda q: (q[0], q[1])):
        nat_chain = item[0] == "nat" if isinstance(item[0], str) else item[1].type == "nat"
        if nat_chain and (natted or flow.reply):
            continue
        decision = hook(ns, *item, flow) if isinstance(item[0], str) else evaluate(ns, item[0], item[1], flow)
        out.append(decision)
        if not decision.accepted:
            break
        if nat_chain and (to := nat_target(decision, flow)) is not None:
            natted = True
            flow = replace(flow, dst=to[0], dport=to[1]) if hook_name in ("prerouting", "output") else flow
    return out


def nat_target(decision: Verdict, flow: Flow) -> tuple[str, int | None] | None:
    """The destination (prerouting) or source a NAT decision moves the flow to; None when it does not NAT."""
    if isinstance(decision, Decision):
        if decision.target != "DNAT" or decision.rule is None:
            return None
        ip, _, port = (decision.rule.to or "").partition(":")
        return ip, int(port) if port.isdigit() else flow.dport
    if decision.verdict in ("dnat", "snat") and decision.to is not None:
        return decision.to[0] or flow.dst, decision.to[1] or flow.dport
    return None


# -- chains ----------------------------------------------------------------------------------------


@dataclass
class _Run:
    ns: Namespace
    table: NftTable
    flow: Flow
    notes: list[str]


def evaluate(ns: Namespace, table: NftTable, chain: NftChain, flow: Flow) -> NftDecision:
    """Run ``flow`` through base chain ``chain`` of ``table``: the rule that decided, or the policy."""
    run = _Run(ns, table, flow, [])
    found = _chain(run, chain, 0)
    common = {"family": table.family, "table": table.name, "chain": chain.name, "priority": chain.priority or 0}
    if found is None:
        return NftDecision(chain.policy or "accept", **common, notes=tuple(run.notes))
    verdict, where, rule, to = found
    return NftDecision(verdict, **common, rule=rule, rule_chain=where, to=to, notes=tuple(run.notes))


_Found = tuple[str, str, NftRule, "tuple[str, int | None] | None"]


def _chain(run: _Run, chain: NftChain, depth: int) -> _Found | None:
    """The terminal verdict inside ``chain``, or None when it returns or runs out of rules."""
    if depth > MAX_DEPTH:
        return None
    for rule in chain.rules:
        try:
            verdict = _rule(run, rule)
        except Unknown as why:
            run.notes.append(f"cannot evaluate {why} in {run.table.family} {run.table.name} {chain.name} rule "
                             f"handle {rule.handle}: taken as not matching")  # fmt: skip
            continue
        if verdict is None or verdict[0] == "continue":
            continue
        kind, arg = verdict
        if kind == "return":
            return None
        if kind in ("jump", "goto"):
            target = run.table.chain(str(arg))
            found = _chain(run, target, depth + 1) if target is not None else None
            if found is not None or kind == "goto":
                return found
            continue
        return kind, chain.name, rule, arg
    return None


def _rule(run: _Run, rule: NftRule) -> tuple[str, Any] | None:
    """The rule's verdict when all its matches hold (None when one fails or it only counts or logs)."""
    unknown: str | None = None
    verdict: tuple[str, Any] | None = None
    for item in json.loads(rule.expr or "[]"):
        ((kind, body),) = item.items()
        try:
            if kind == "match":
                if not _match(run, body):
                    return None
            elif kind in IGNORED:
                continue
            elif verdict is None:
                verdict = _statement(run, kind, body)
        except Unknown as why:
            unknown = unknown or str(why)  # a later match may still fail: then the rule plainly does not match
    if unknown is not None:
        raise Unknown(unknown)
    return verdict


def _statement(run: _Run, kind: str, body: Any) -> tuple[str, Any] | None:
    if kind in ("accept", "drop", "return", "continue"):
        return kind, None
    if kind == "reject":
        return "reject", None
    if kind in ("jump", "goto"):
        return kind, body["target"]
    if kind == "vmap":
        return _vmap(run, body)
    if kind in ("dnat", "snat"):
        addr = body.get("addr") if isinstance(body, dict) else None
        if addr is not None and not isinstance(addr, str):
            raise Unknown(f"{kind} to a mapped address")
        port = body.get("port") if isinstance(body, dict) else None
        return kind, (addr or "", port if isinstance(port, int) else None)
    if kind in ("masquerade", "redirect"):
        return kind, None
    raise Unknown(kind)


def _vmap(run: _Run, body: dict[str, Any]) -> tuple[str, Any] | None:
    key = _value(run, body["key"])
    for element in _elements(run, body["data"]):
        if isinstance(element, list) and len(element) == 2 and _member(key, element[0]):
            ((verdict, arg),) = element[1].items()
            return verdict, arg.get("target") if isinstance(arg, dict) else None
    return None


# -- matches ---------------------------------------------------------------------------------------


def _match(run: _Run, body: dict[str, Any]) -> bool:
    op, left, right = body["op"], body["left"], body["right"]
    if "ct" in left and left["ct"]["key"] in ("state", "status"):
        return _flags(op, _value(run, left), right)
    value = _value(run, left)
    if value is None:  # the packet has no such header (a tcp port of a udp packet): no match
        return op == "!=" and not _l4(left)
    if op in ("==", "in"):
        return _member(value, _resolve(run, right))
    if op == "!=":
        return not _member(value, _resolve(run, right))
    bound = _scalar(value, _resolve(run, right))
    return {"<": value < bound, ">": value > bound, "<=": value <= bound, ">=": value >= bound}[op]


def _l4(left: dict[str, Any]) -> bool:
    """A transport header match carries an implicit ``meta l4proto``: ``tcp dport != 22`` spares udp."""
    return "payload" in left and left["payload"].get("protocol") in ("tcp", "udp", "th", "icmp")


def _flags(op: str, have: frozenset[str], right: Any) -> bool:
    """ct state/status are bit masks: ``ct state established,related`` holds when any bit is set."""
    wanted = set(right) if isinstance(right, list) else set(right["set"]) if isinstance(right, dict) else {right}
    hit = bool(have & wanted)
    return not hit if op == "!=" else hit


def _value(run: _Run, left: Any) -> Any:
    """What the packet holds for expression ``left`` (None: it has no such header)."""
    flow = run.flow
    if "meta" in left:
        return _meta(flow, left["meta"]["key"])
    if "payload" in left:
        return _payload(flow, left["payload"])
    if "ct" in left:
        return _ct(flow, left["ct"]["key"])
    if "fib" in left:
        return _fib(run, left["fib"])
    if "concat" in left:
        return tuple(_value(run, part) for part in left["concat"])
    raise Unknown(next(iter(left), "an expression") if isinstance(left, dict) else repr(left))


def _meta(flow: Flow, key: str) -> Any:
    values = {"iifname": flow.in_iface or "", "oifname": flow.out_iface or "", "iif": flow.in_iface,
              "oif": flow.out_iface, "l4proto": PROTOCOLS.get(flow.proto), "protocol": flow.l3,
              "nfproto": "ipv6" if flow.ip6 else "ipv4", "mark": flow.mark}  # fmt: skip
    if key not in values:
        raise Unknown(f"meta {key}")
    return values[key]


def _payload(flow: Flow, payload: dict[str, Any]) -> Any:
    proto, field = payload.get("protocol"), payload.get("field")
    if proto == "ether":
        return {"saddr": flow.src_mac, "daddr": flow.dst_mac, "type": flow.l3}.get(field) if field in (
            "saddr", "daddr", "type") else _no(proto, field)  # fmt: skip
    if proto == "ip6":
        if field not in ("saddr", "daddr", "nexthdr"):
            return _no(proto, field)
        if not flow.ip6:
            return None  # an IPv4 packet has no ip6 header
        values6 = {"saddr": ipaddress.IPv6Address(flow.src), "daddr": ipaddress.IPv6Address(flow.dst),
                   "nexthdr": PROTOCOLS.get(flow.proto)}  # fmt: skip
        return values6[field]
    if flow.l3 not in ("ip", "ip6"):
        return None
    if proto == "ip":
        if field not in ("saddr", "daddr", "protocol"):
            return _no(proto, field)
        if flow.ip6:
            return None  # an IPv6 packet has no ip header
        values = {"saddr": ipaddress.IPv4Address(flow.src), "daddr": ipaddress.IPv4Address(flow.dst),
                  "protocol": PROTOCOLS.get(flow.proto)}  # fmt: skip
        return values[field]
    if proto in ("th", "tcp", "udp"):
        if field not in ("sport", "dport"):
            return _no(proto, field)
        if flow.proto not in ("tcp", "udp") or proto not in ("th", flow.proto):
            return None
        return flow.dport if field == "dport" else flow.sport
    if proto in ("icmp", "icmpv6") and field == "type":
        return flow.icmp_name if flow.proto == proto else None
    return _no(proto, field)


def _no(proto: Any, field: Any) -> Any:
    raise Unknown(f"{proto} {field}")


def _ct(flow: Flow, key: str) -> Any:
    if key == "state":
        return flow.ct_states
    if key == "status":
        return frozenset({"confirmed", "seen-reply", "assured"} if flow.reply else set())
    if key == "direction":
        return "reply" if flow.reply else "original"
    raise Unknown(f"ct {key}")


def _fib(run: _Run, fib: dict[str, Any]) -> Any:
    """``fib daddr type``: local when the namespace holds the address; anything else needs the routes."""
    if fib.get("result") == "type" and fib.get("flags") == ["daddr"]:
        dst = ipaddress.ip_address(run.flow.dst) if run.flow.l3 in ("ip", "ip6") else None
        local = run.flow.dst_local or any(ipaddress.ip_address(a.address) == dst for lk in run.ns.links
                                          for a in lk.addresses)  # fmt: skip
        return "local" if local else "unicast"
    flags = set(fib.get("flags", []))
    reverse = "saddr" in flags and flags <= {"saddr", "iif", "mark"}
    if fib.get("result") in ("oif", "oifname") and reverse and run.flow.l3 in ("ip", "ip6"):
        # reverse path filtering (firewalld's IPv6 rpfilter: ``fib saddr . mark . iif oif missing drop``): the route
        # back to the source, through the device the packet came in by when ``iif`` is asked; False is "missing"
        out = _route_back(run.ns, run.flow.src, run.flow.in_iface if "iif" in flags else None)
        return out if out is not None else False
    raise Unknown(f"fib {' . '.join(fib.get('flags', []))} {fib.get('result')}")


def _route_back(ns: Namespace, src: str, via: str | None) -> str | None:
    """The device of the main table's longest route to ``src`` (of those through ``via``, when given)."""
    addr = ipaddress.ip_address(src)
    best: tuple[int, str] | None = None
    for r in ns.routes:
        if r.table != 254 or r.device is None or r.type != "unicast" or (via is not None and r.device != via):
            continue
        six = ":" in r.dst or (r.dst == "default" and ":" in (r.gateway or ""))
        if six != (addr.version == 6) or "?" in r.dst:
            continue
        net = ipaddress.ip_network(("::/0" if six else "0.0.0.0/0") if r.dst == "default" else r.dst, strict=False)
        if addr in net and (best is None or net.prefixlen > best[0]):
            best = (net.prefixlen, r.device)
    return best[1] if best is not None else None


# -- right-hand sides ------------------------------------------------------------------------------


def _resolve(run: _Run, right: Any) -> Any:
    """A named set's elements in place of ``@name``."""
    if isinstance(right, str) and right.startswith("@"):
        return {"set": _elements(run, right)}
    return right


def _elements(run: _Run, data: Any) -> list[Any]:
    if isinstance(data, dict) and "set" in data:
        return data["set"] if isinstance(data["set"], list) else [data["set"]]
    if isinstance(data, str) and data.startswith("@"):
        found = next((s for s in run.table.sets if s.name == data[1:]), None)
        if found is None:
            raise Unknown(f"set {data}")
        return json.loads(found.elements or "[]")
    raise Unknown(f"map {json.dumps(data)[:40]}")


def _member(value: Any, right: Any) -> bool:
    """``value`` equals, or lies in, what ``right`` stands for (a value, prefix, range or set of them)."""
    if isinstance(right, dict) and "set" in right:
        return any(_member(value, element) for element in _elements_of(right))
    if isinstance(right, dict) and "elem" in right:
        return _member(value, right["elem"].get("val"))
    if isinstance(right, dict) and "prefix" in right:
        net = ipaddress.ip_network(f"{right['prefix']['addr']}/{right['prefix']['len']}", strict=False)
        return (
            isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address)
            and net.version == value.version
            and value in net
        )
    if isinstance(right, dict) and "range" in right:
        low, high = right["range"]
        return _scalar(value, low) <= value <= _scalar(value, high)
    if isinstance(right, dict) and "concat" in right:
        parts = right["concat"]
        return isinstance(value, tuple) and len(value) == len(parts) and all(map(_member, value, parts))
    if isinstance(right, list):  # a map element [key, value] inside a set
        return bool(right) and _member(value, right[0])
    if value is None:
        return False
    return value == _scalar(value, right)


def _elements_of(right: dict[str, Any]) -> Iterator[Any]:
    items = right["set"]
    yield from items if isinstance(items, list) else [items]


def _scalar(value: Any, right: Any) -> Any:
    """``right`` in the type of ``value``: an address, a protocol number, an interface name with ``*``."""
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        try:
            return ipaddress.ip_address(right)
        except (ValueError, TypeError):
            return None
    if isinstance(value, int) and isinstance(right, str):
        return PROTOCOLS.get(right, int(right) if right.isdigit() else None)
    if isinstance(value, str) and isinstance(right, str) and right.endswith("*") and value.startswith(right[:-1]):
        return value  # iifname "veth*"
    return right
