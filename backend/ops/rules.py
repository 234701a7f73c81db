"""Write iptables rules through the back-end the host already uses.

A host whose legacy (x_tables) nat/filter tables exist while nf_tables has none
is a legacy host: rules written through iptables-nft there would sit in a second
ruleset nobody looks at. Everything else gets iptables-nft, Debian's default.
Every rule added registers its deletion with the operation's ``Undo``.
"""

from __future__ import annotations

from collections.abc import Sequence

from backend.errors import VxrayError
from backend.hosts import Host
from backend.iptables import KEPT_TABLES
from backend.netfilter import legacy_table_names, nft_table_names
from backend.ops.txn import Undo
from backend.shellwords import shell_line


def iptables_for(host: Host) -> str:
    def probe() -> str:
        kept = set(KEPT_TABLES)
        legacy_only = legacy_table_names() & kept and not nft_table_names() & kept
        return "iptables-legacy" if legacy_only else "iptables-nft"

    return host.call_in(probe)


class Rules:
    """iptables commands on one host, through one back-end, undone on failure; ``ipv6``: ip6tables of the
    same back-end (a host runs one back-end for both families, as Docker's and Debian's defaults do)."""

    def __init__(self, host: Host, undo: Undo, ipv6: bool = False) -> None:
        self.host = host
        self.undo = undo
        self.cmd = iptables_for(host)
        if ipv6:
            self.cmd = self.cmd.replace("iptables", "ip6tables", 1)

    def _ipt(self, *args: str, check: bool = True) -> bool:
        proc = self.host.run([self.cmd, "-w", *args])
        if check and proc.returncode != 0:
            raise VxrayError(f"{shell_line(self.cmd, *args)} failed on host {self.host.name}: {proc.stderr.strip()}")
        return proc.returncode == 0

    def exists(self, table: str, chain: str, spec: Sequence[str]) -> bool:
        return self._ipt("-t", table, "-C", chain, *spec, check=False)

    def ensure_chain(self, table: str, chain: str) -> None:
        if not self._ipt("-t", table, "-n", "-L", chain, check=False):
            self._ipt("-t", table, "-N", chain)
            self.undo.push(self._ipt, "-t", table, "-X", chain)

    def ensure(self, table: str, chain: str, spec: Sequence[str], insert: bool = False) -> None:
        """Add the rule unless it is there already (shared rules such as jumps to DOCKER)."""
        if not self.exists(table, chain, spec):
            self.add(table, chain, spec, insert)

    def add(self, table: str, chain: str, spec: Sequence[str], insert: bool = False) -> None:
        self._ipt("-t", table, "-I" if insert else "-A", chain, *spec)
        self.undo.push(self._ipt, "-t", table, "-D", chain, *spec)

    def delete(self, table: str, chain: str, spec: Sequence[str]) -> None:
        if self.exists(table, chain, spec):
            self._ipt("-t", table, "-D", chain, *spec)

    def policy(self, table: str, chain: str) -> str:
        """A built-in chain's policy (``-P CHAIN POLICY``, the first line ``-S`` prints)."""
        proc = self.host.run([self.cmd, "-w", "-t", table, "-S", chain])
        words = proc.stdout.split("\n", 1)[0].split()
        if proc.returncode != 0 or len(words) != 3 or words[0] != "-P":
            raise VxrayError(f"cannot read the policy of {chain} on host {self.host.name}: {proc.stderr.strip()}")
        return words[2]

    def set_policy(self, table: str, chain: str, target: str) -> None:
        old = self.policy(table, chain)
        self._ipt("-t", table, "-P", chain, target)
        self.undo.push(self._ipt, "-t", table, "-P", chain, old)
