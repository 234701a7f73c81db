"""``firewall delete|policy``: take away the native nftables rule or policy that drops a host's traffic.

vxray writes iptables rules (``host set``), and an iptables ACCEPT cannot outvote a
drop in another base chain — firewalld's ``inet`` table, a ``netdev`` ingress
chain, a ``bridge`` table: the kernel runs every base chain at a hook and any of
them may drop. So the fix of such a drop is nftables' own change, named as the
trace and the doctor name it (family, table, chain, rule handle), run in the host's
namespace or one of its namespaces. Every word is checked before ``nft`` runs, and
the rule or base chain must be there: a handle is never reused inside a table, so
a fix computed from an old snapshot cannot delete a rule that came later.
"""

from __future__ import annotations

import json
import re

from backend.errors import VxrayError
from backend.hosts import Host
from backend.ops.context import Context
from backend.ops.entries import resolve_netns
from backend.shellwords import shell_line

FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")
POLICIES = ("accept", "drop")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]{0,255}$")  # what nft reads as a bare table or chain name


def _family(value: str) -> str:
    if value not in FAMILIES:
        raise VxrayError(f"invalid nftables family {value!r}: one of {', '.join(FAMILIES)}")
    return value


def _identifier(value: str, what: str) -> str:
    if not _IDENTIFIER.match(value):
        raise VxrayError(f"invalid nftables {what} name {value!r}: a letter or '_', then letters, digits, '_./-'")
    return value


def _handle(value: str) -> str:
    if not value.isdigit() or not value.isascii() or not 0 < int(value) < 2**64:
        raise VxrayError(f"invalid rule handle {value!r}: a positive whole number (`nft -a list ruleset` shows it)")
    return str(int(value))


def _chain(h: Host, netns: str | None, family: str, table: str, chain: str) -> list[dict]:
    """The chain's JSON items (``{"chain": …}``, then ``{"rule": …}`` each), or a one-line error naming it."""
    proc = h.run(["nft", "-j", "-a", "list", "chain", family, table, chain], netns)
    where = f"host {h.name}" + (f" (namespace {netns})" if netns else "")
    if proc.returncode != 0:
        raise VxrayError(f"no chain {family} {table} {chain} on {where}: {_first_line(proc.stderr)}")
    try:
        items = json.loads(proc.stdout)["nftables"]
    except (ValueError, KeyError, TypeError):
        raise VxrayError(f"nft printed no JSON for chain {family} {table} {chain} on {where}") from None
    return [i for i in items if isinstance(i, dict)]


def _target(ctx: Context, host: str | None, netns: str | None) -> tuple[Host, str | None]:
    h = ctx.host(host)
    return h, resolve_netns(ctx, h, netns)


def delete(ctx: Context, family: str, table: str, chain: str, handle: str, host: str | None = None,
           netns: str | None = None) -> str:  # fmt: skip
    """``nft delete rule FAMILY TABLE CHAIN handle N`` once the rule is found there; the command run."""
    family, table = _family(family), _identifier(table, "table")
    chain, handle = _identifier(chain, "chain"), _handle(handle)
    h, ns = _target(ctx, host, netns)
    rules = [i["rule"] for i in _chain(h, ns, family, table, chain) if isinstance(i.get("rule"), dict)]
    if not any(str(r.get("handle")) == handle for r in rules):
        raise VxrayError(f"no rule with handle {handle} in chain {family} {table} {chain} on host {h.name}")
    argv = ("nft", "delete", "rule", family, table, chain, "handle", handle)
    _run(h, ns, argv)
    return shell_line(*argv)


def policy(ctx: Context, family: str, table: str, chain: str, verdict: str, host: str | None = None,
           netns: str | None = None) -> str:  # fmt: skip
    """A base chain's policy (``nft chain FAMILY TABLE CHAIN '{ policy accept; }'``); the command run."""
    family, table, chain = _family(family), _identifier(table, "table"), _identifier(chain, "chain")
    if verdict not in POLICIES:
        raise VxrayError(f"invalid policy {verdict!r}: accept or drop")
    h, ns = _target(ctx, host, netns)
    found = next((i["chain"] for i in _chain(h, ns, family, table, chain) if isinstance(i.get("chain"), dict)), {})
    if "hook" not in found:
        raise VxrayError(f"chain {family} {table} {chain} on host {h.name} is no base chain: it has no policy")
    argv = ("nft", "chain", family, table, chain, f"{{ policy {verdict}; }}")
    if found.get("policy") != verdict:
        _run(h, ns, argv)
    return shell_line(*argv)


def _run(h: Host, netns: str | None, argv: tuple[str, ...]) -> None:
    proc = h.run(list(argv), netns)
    if proc.returncode != 0:
        raise VxrayError(f"{shell_line(*argv)} failed on host {h.name}: {_first_line(proc.stderr)}")


def _first_line(stderr: str) -> str:
    """nft's error, without the lines that repeat the command and underline it."""
    return next((line.strip() for line in stderr.splitlines() if line.strip()), "nft failed")
