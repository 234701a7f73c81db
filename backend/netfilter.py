"""Read the nat table and the filter FORWARD and INPUT paths from both iptables back-ends, for IPv4
(iptables) and IPv6 (ip6tables).

Call these with the thread inside the namespace to read (``backend.nsenter``).

- legacy (x_tables): python-iptables reads it in-process through libiptc. Only
  when ``/proc/net/ip_tables_names`` (``ip6_tables_names``) lists the table: opening
  a table that is not there would create it, and a read must change nothing.
- nf_tables: python-iptables cannot see it, and decoding nft expressions back into
  iptables rules is what ``iptables-nft-save`` exists for, so it is run — but only
  when an nf_tables ``ip`` table named nat or filter exists (``ip6tables-nft-save``:
  an ``ip6`` one), asked for over netlink first, so a namespace without rules costs
  no process.
- every nftables table of every family, native or iptables-nft's, as the kernel
  holds it: ``backend.nftables``, from the same netlink answer.

A back-end that holds rules vxray cannot read yields a note, never an empty view.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

from backend.iptables import KEPT_TABLES, packet_path, parse_save, rule_from_args
from backend.model import Chain, NftTable, RuleSet, Table
from backend.nftables import XTABLES_LOCK, NftReader, nft_tables

# python-iptables keeps one cached handle per table name, and libxtables' state is shared with libnftables
_IPTC_LOCK = XTABLES_LOCK
SAVE = {"ip": "iptables-nft-save", "ip6": "ip6tables-nft-save"}  # nf_tables family -> the tool that decodes it
PROC_NAMES = {"ip": "ip_tables_names", "ip6": "ip6_tables_names"}


def _kept(tables: tuple[Table, ...]) -> tuple[Table, ...]:
    """nat whole, filter cut to the FORWARD and INPUT paths, in one order whichever back-end read them."""
    ordered = sorted(tables, key=lambda t: KEPT_TABLES.index(t.name))
    return tuple(packet_path(t) if t.name == "filter" else t for t in ordered)


def legacy_table_names(family: str = "ip") -> set[str]:
    try:
        with open(f"/proc/thread-self/net/{PROC_NAMES[family]}") as f:
            return set(f.read().split())
    except FileNotFoundError:  # ip_tables not loaded: no legacy table anywhere
        return set()


def nft_table_names() -> set[str]:
    """Names of nf_tables tables of family ``ip`` in this namespace."""
    return {name for family, name in nft_tables() if family == "ip"}


def _iptc_rule_args(rule: Any, ip6: bool = False) -> list[str]:
    """The arguments iptables-save (ip6tables-save) would print for a python-iptables rule."""
    args: list[str] = []

    def opt(flag: str, value: str | None, empty: str = "") -> None:
        if value and value != empty:
            args.extend(["!", flag, value[1:]] if value.startswith("!") else [flag, value])

    anywhere = "::/0" if ip6 else "0.0.0.0/0"
    opt("-s", _cidr(rule.src), anywhere)
    opt("-d", _cidr(rule.dst), anywhere)
    opt("-i", rule.in_interface)
    opt("-o", rule.out_interface)
    opt("-p", "ipv6-icmp" if ip6 and rule.protocol == "icmpv6" else rule.protocol, "ip")  # as ip6tables-save
    for module, flag in [(m, "-m") for m in rule.matches] + [(rule.target, "-j")]:
        if module is None or (flag == "-j" and not module.name):
            continue
        args.extend([flag, module.name])
        for key, values in module.get_all_parameters().items():
            neg = values[:1] == ["!"]
            args.extend((["!"] if neg else []) + [f"--{key}"] + values[1 if neg else 0 :])
    return args


def _cidr(value: str | None) -> str | None:
    """python-iptables says ``10.0.0.0/255.0.0.0``; iptables-save says ``10.0.0.0/8`` (IPv6 prefixes come as
    ip6tables-save prints them, ``/128`` included)."""
    if not value:
        return value
    neg = "!" if value.startswith("!") else ""
    addr, _, mask = value.lstrip("!").partition("/")
    if "." in mask:
        bits = bin(int.from_bytes(bytes(int(x) for x in mask.split(".")), "big")).count("1")
        mask = str(bits)
    return f"{neg}{addr}/{mask}" if mask and mask != "32" else f"{neg}{addr}"


def read_legacy(names: set[str], family: str = "ip") -> RuleSet:
    """x_tables' rules of ``family`` (``ip``: iptables, ``ip6``: ip6tables) through libiptc/libip6tc."""
    import iptc  # loads libiptc/libxtables: only paid for when legacy tables exist

    ip6 = family == "ip6"
    tables = []
    with _IPTC_LOCK:
        for name in KEPT_TABLES:
            if name not in names:
                continue
            table = (iptc.Table6 if ip6 else iptc.Table)(name, autocommit=False)
            table.refresh()  # a fresh handle in this thread's namespace
            chains = []
            for chain in table.chains:
                policy, counters = table.get_policy(chain.name)
                rules = tuple(rule_from_args(chain.name, _iptc_rule_args(r, ip6), *r.get_counters())
                              for r in chain.rules)  # fmt: skip
                packets, nbytes = counters or (0, 0)
                chains.append(Chain(chain.name, policy.name if policy else None, packets, nbytes, rules))
            tables.append(Table(name, tuple(chains)))
    return RuleSet("legacy", _kept(tuple(tables)))


class Rulesets:
    """Reading every back-end's rules in the current namespace, started early.

    ``iptables-nft-save`` and ``nft`` (the slow part on a host with thousands of rules)
    are started when this is made and run on other cores while the thread reads the
    netlink tables; ``result`` waits for them, reads the legacy tables in-process, and
    says in notes what could not be read. One netlink dump lists the nf_tables tables
    of every family: it decides whether ``iptables-nft-save`` runs (an ``ip`` table
    named nat or filter) and whether ``nft`` does (any other table). iptables-nft's
    nat and filter are read once, as iptables rules (``RuleSet("nft")``), not again as
    nft tables: a Docker host's thousands of DNAT rules would otherwise be listed,
    decoded and kept twice (measured: +50 ms per snapshot on the scale workload).
    When ``iptables-nft-save`` is missing they are read through ``nft`` instead.
    """

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.legacy = {family: legacy_table_names(family) & set(KEPT_TABLES) for family in SAVE}
        self.nft: dict[str, set[str]] = {}
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.netfilter6: tuple[RuleSet, ...] = ()  # ip6tables' rule sets, once ``result`` has run
        tables: set[tuple[str, str]] = set()
        try:
            tables = nft_tables()
        except OSError as exc:
            self.notes.append(f"cannot list nf_tables tables: {exc}")
        for family, tool in SAVE.items():
            names = self.nft[family] = {name for fam, name in tables if fam == family} & set(KEPT_TABLES)
            if names and shutil.which(tool) is None:
                self.notes.append(f"nf_tables {family} tables {sorted(names)} exist but {tool} is not installed")
            elif names:
                try:
                    self.procs[family] = subprocess.Popen([tool, "-c"], stdout=subprocess.PIPE,
                                                          stderr=subprocess.PIPE, text=True)  # fmt: skip
                except OSError as exc:
                    self.notes.append(f"nf_tables {family} tables {sorted(names)} exist but {tool} failed: {exc}")
        self.iptables_nft = {(family, name) for family in self.procs for name in self.nft[family]}
        self.native = NftReader(tables - self.iptables_nft)

    def __enter__(self) -> Rulesets:
        return self

    def __exit__(self, *exc: object) -> None:
        """A read that failed half-way leaves no ``iptables-nft-save`` or ``nft`` behind."""
        for proc in self.procs.values():
            if proc.returncode is None:
                proc.kill()
                proc.communicate()
        self.native.close()

    def _family(self, family: str) -> tuple[RuleSet, ...]:
        """One family's rule sets: legacy's read in-process, nf_tables' from its ``*-nft-save``."""
        rulesets: list[RuleSet] = []
        word = "iptables" if family == "ip" else "ip6tables"
        if self.legacy[family]:
            try:
                rulesets.append(read_legacy(self.legacy[family], family))
            except Exception as exc:  # noqa: BLE001 - any libiptc failure becomes a note
                self.notes.append(f"legacy {word} tables {sorted(self.legacy[family])} exist but could not be read: "
                                  f"{exc}")  # fmt: skip
        proc = self.procs.get(family)
        if proc is not None:
            out, err = proc.communicate()
            if proc.returncode == 0:
                rulesets.append(RuleSet("nft", _kept(parse_save(out))))
            else:
                why = err.strip().splitlines()[-1] if err.strip() else f"exit status {proc.returncode}"
                self.notes.append(f"nf_tables {family} tables {sorted(self.nft[family])} exist but {SAVE[family]} "
                                  f"failed: {why}")  # fmt: skip
        return tuple(rulesets)

    def result(self) -> tuple[tuple[RuleSet, ...], tuple[NftTable, ...], list[str]]:
        """The iptables rule sets, the nftables tables (but iptables-nft's and ip6tables-nft's nat and filter),
        and notes; ip6tables' rule sets are left in ``netfilter6``."""
        rulesets = self._family("ip")
        self.netfilter6 = self._family("ip6")
        nftables, notes = self.native.result()
        native = tuple(t for t in nftables if (t.family, t.name) not in self.iptables_nft)
        return rulesets, native, self.notes + notes
