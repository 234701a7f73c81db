"""iptables rules as data: parse ``iptables-save -c`` text and rule argument lists.

Pure functions. Both back-ends end up here: nf_tables rules arrive as the text of
``iptables-nft-save``, legacy rules as argument lists rebuilt from python-iptables,
so a rule reads the same whichever back-end holds it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable

from backend.model import Chain, Rule, Table

KEPT_TABLES = ("nat", "filter")
_COUNTERS = re.compile(r"\[(\d+):(\d+)\]")
_NEEDS_QUOTES = re.compile(r"[\s\"'\\]")
_OPTION_FIELDS = {
    "-p": "protocol", "--protocol": "protocol",
    "-s": "source", "--source": "source",
    "-d": "destination", "--destination": "destination",
    "-i": "in_iface", "--in-interface": "in_iface",
    "-o": "out_iface", "--out-interface": "out_iface",
    "--dport": "dport", "--destination-port": "dport", "--dports": "dport",
    "--to-destination": "to", "--to-source": "to", "--to-ports": "to",
}  # fmt: skip


def rule_from_args(chain: str, args: list[str], packets: int = 0, nbytes: int = 0, plain: bool = False) -> Rule:
    """A ``Rule`` from the arguments that follow ``-A CHAIN``; ``!`` negations are kept.

    ``plain``: no argument needs quoting (known from the line they were split from), so the spec is
    joined without looking at each word — a host with thousands of rules saves most of its parse time.
    """
    fields: dict[str, str] = {}
    target = None
    negate = False
    for i, arg in enumerate(args):
        if arg == "!":
            negate = True
            continue
        nxt = args[i + 1] if i + 1 < len(args) else None
        if arg in ("-j", "--jump", "-g", "--goto") and nxt:
            target = nxt
        elif arg in _OPTION_FIELDS and nxt is not None:
            fields.setdefault(_OPTION_FIELDS[arg], ("!" if negate else "") + nxt)
        negate = False
    spec = " ".join(args if plain else (a if a and not _NEEDS_QUOTES.search(a) else shlex.quote(a) for a in args))
    return Rule(chain=chain, spec=spec, target=target, packets=packets, bytes=nbytes, **fields)


def parse_save(text: str, tables: Iterable[str] = KEPT_TABLES) -> tuple[Table, ...]:
    """Tables from ``iptables-save -c`` output, keeping only ``tables``."""
    wanted = set(tables)
    out: list[Table] = []
    current: str | None = None
    chains: dict[str, tuple[str | None, int, int]] = {}
    rules: dict[str, list[Rule]] = {}
    for line in text.splitlines():
        if line.startswith("*"):
            current, chains, rules = line[1:].strip(), {}, {}
        elif current not in wanted or not line or line.startswith("#"):
            continue
        elif line.startswith(":"):
            name, policy, counters = [*line[1:].split(), "-", "[0:0]"][:3]
            m = _COUNTERS.match(counters)
            chains[name] = (None if policy == "-" else policy, int(m[1]) if m else 0, int(m[2]) if m else 0)
            rules[name] = []
        elif line == "COMMIT":
            built = (Chain(n, p, pk, by, tuple(rules[n])) for n, (p, pk, by) in chains.items())
            out.append(Table(current, tuple(built)))
            current = None
        else:
            packets = nbytes = 0
            m = _COUNTERS.match(line)
            if m:
                packets, nbytes = int(m[1]), int(m[2])
                line = line[m.end() :].strip()
            quoted = _NEEDS_QUOTES.search(line.replace(" ", "")) is not None
            args = shlex.split(line) if quoted else line.split()
            if len(args) >= 2 and args[0] == "-A" and args[1] in rules:
                rules[args[1]].append(rule_from_args(args[1], args[2:], packets, nbytes, plain=not quoted))
    return tuple(out)


def packet_path(table: Table) -> Table:
    """The filter table cut down to FORWARD, INPUT and every chain reachable from them.

    That is the part a container's packet can meet — forwarded, or arriving at a
    host as an encapsulated VXLAN packet; OUTPUT and unused chains of a busy host
    would only bury it.
    """
    by_name = {c.name: c for c in table.chains}
    keep: list[str] = []
    todo = ["FORWARD", "INPUT"]
    while todo:
        name = todo.pop(0)
        if name in keep or name not in by_name:
            continue
        keep.append(name)
        todo.extend(r.target for r in by_name[name].rules if r.target)
    return Table(table.name, tuple(by_name[n] for n in keep))
