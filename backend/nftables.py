"""Read every nftables table of every family (ip, ip6, inet, bridge, netdev, arp) in the current namespace.

Call ``NftReader`` with the thread inside the namespace to read (``backend.nsenter``):
the ``nft`` processes it starts inherit the thread's namespace.

- Which tables exist is asked over netlink first (``nft_tables``), so a namespace
  without any table costs no process.
- libnftables is the only decoder of nft expressions that follows the kernel, so
  the ruleset is listed twice: as JSON (the structure and each rule's expressions,
  what the trace evaluates) by libnftables in this process (``Libnft``, through
  ctypes: no process to start, the JSON never crosses a pipe), and as text
  (``nft -a list ruleset``, each rule's text as people read it) by an ``nft``
  process started at once, on another core while the caller reads its netlink
  tables; they are joined by (family, table, chain, handle). Without libnftables
  (a machine with only the ``nft`` binary) the JSON comes from ``nft -j`` too.
- The JSON comes from the machine but is decoded against types (msgspec): a
  document vxray cannot read is a note, never a traceback.

iptables-nft's own tables (``ip nat``, ``ip filter`` …) are nft tables too and are
kept here as the kernel holds them, beside the ``RuleSet("nft")`` that
``iptables-nft-save`` gives of them; their ``xt`` compat expressions are kept as they come.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import struct
import subprocess
import threading

import msgspec

from backend.model import NftChain, NftRule, NftSet, NftTable
from backend.netlink import NETLINK_NETFILTER, NetlinkSocket, attrs, cstr

NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETTABLE = 1
NFPROTO_UNSPEC = 0
NFTA_TABLE_NAME = 1
FAMILIES = {1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6"}  # NFPROTO_* -> nft's family word

# Named chain priorities (nft(8), "CHAIN PRIORITIES"): the bridge family has its own.
PRIORITIES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
BRIDGE_PRIORITIES = {"dstnat": -300, "filter": -200, "out": 100, "srcnat": 300}
_PRIORITY = re.compile(r"\s*([a-z]+)\s*(?:([+-])\s*(\d+))?\s*")
# the JSON (structure, expressions, counters, set elements), then the text people read (terse: no set's elements,
# which the JSON has; a 2,000-element map would double the text's time)
ARGV = {"-j": ("nft", "-j", "list", "ruleset"), "-a": ("nft", "-a", "-t", "list", "ruleset")}
NFT_CTX_OUTPUT_JSON = 1 << 4  # libnftables.h, enum nft_output_flags
# libxtables is one process-wide state: python-iptables reads legacy tables through it, and libnftables calls it to
# print iptables-nft's compat (xt) expressions. Every in-process use takes this lock, in any namespace thread.
XTABLES_LOCK = threading.Lock()
_LISTING = re.compile(
    r"^(?:table (?P<family>\S+) (?P<table>\S+) \{.*"
    r"|\tchain (?P<chain>\S+) \{.*"
    r"|\t(?P<other>\S+) .*\{.*"
    r'|\t\ttype .* device "?(?P<device>[^";\s]+)"? .*'
    r"|\t\t(?P<rule>\S.*?) # handle (?P<handle>\d+))$",
    re.MULTILINE,
)


def nft_tables() -> set[tuple[str, str]]:
    """(family, name) of every nf_tables table in this namespace, every family in one dump."""
    msgtype = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE
    tables = set()
    with NetlinkSocket(NETLINK_NETFILTER) as nl:
        for _kind, data, off, end in nl.dump(msgtype, struct.pack("=BBH", NFPROTO_UNSPEC, 0, 0)):
            a = attrs(data, off + 4, end)  # after struct nfgenmsg, whose first byte is the table's family
            if NFTA_TABLE_NAME in a:
                tables.add((FAMILIES.get(data[off], str(data[off])), cstr(data, a[NFTA_TABLE_NAME])))
    return tables


def priority(value: int | str, family: str) -> int:
    """A chain priority as a number: nft's JSON may give ``-10``, ``"filter"`` or ``"filter - 10"``."""
    if isinstance(value, int):
        return value
    if re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    m = _PRIORITY.fullmatch(value)
    names = BRIDGE_PRIORITIES if family == "bridge" else PRIORITIES
    if m is None or m[1] not in names:
        raise ValueError(f"unknown chain priority {value!r} in family {family}")
    offset = int(m[3] or 0)
    return names[m[1]] + (-offset if m[2] == "-" else offset)


# libnftables' JSON schema (libnftables-json(5)), only what the model keeps; unknown keys are skipped.


class _Table(msgspec.Struct):
    family: str
    name: str


class _Chain(msgspec.Struct):
    family: str
    table: str
    name: str
    type: str | None = None
    hook: str | None = None
    prio: int | str | None = None
    policy: str | None = None
    dev: str | list[str] | None = None


class _Rule(msgspec.Struct):
    family: str
    table: str
    chain: str
    handle: int
    expr: msgspec.Raw = msgspec.Raw(b"[]")
    comment: str | None = None


class _Set(msgspec.Struct):
    family: str
    table: str
    name: str
    type: str | list[str] = ""
    map: str | list[str] | None = None
    elem: msgspec.Raw = msgspec.Raw(b"[]")


class _Object(msgspec.Struct):
    """One item of the ``nftables`` list: a single key naming what it is."""

    table: _Table | None = None
    chain: _Chain | None = None
    rule: _Rule | None = None
    set: _Set | None = None
    map: _Set | None = None


class _Ruleset(msgspec.Struct):
    nftables: list[_Object]


class _Counter(msgspec.Struct):
    packets: int = 0
    bytes: int = 0


class _Statement(msgspec.Struct):
    counter: _Counter | None = None


_RULESET = msgspec.json.Decoder(_Ruleset)
_STATEMENTS = msgspec.json.Decoder(list[_Statement])

Key = tuple[str, str, str, int]  # family, table, chain, handle


class Listing:
    """What ``nft -a list ruleset``'s text adds to the JSON: each rule's text by (family, table, chain, handle),
    and each base chain's device (nft 1.0.6's JSON leaves a netdev chain's ``dev`` out).

    One regular expression over the whole text, on nft's own layout (a table at column 0, its
    chains one tab in, their rules two tabs in ending ``# handle N``): 2,000 rules in ~1 ms.
    """

    def __init__(self, text: str) -> None:
        self.rules: dict[Key, str] = {}
        self.devices: dict[tuple[str, str, str], str] = {}
        family = table = chain = ""
        for m in _LISTING.finditer(text):
            if m["table"]:
                family, table, chain = m["family"], m["table"].strip('"'), ""
            elif m["chain"]:
                chain = m["chain"].strip('"')
            elif m["other"]:
                chain = ""  # a set, a map, a flowtable …: lines two tabs in are not rules
            elif m["device"] and chain:
                self.devices[(family, table, chain)] = m["device"]
            elif m["rule"] and chain:
                self.rules[(family, table, chain, int(m["handle"]))] = m["rule"]


def _joined(value: str | list[str] | None, sep: str) -> str | None:
    return sep.join(value) if isinstance(value, list) else value


def decode(document: bytes, listing: Listing | None = None) -> tuple[tuple[NftTable, ...], list[str]]:
    """``nft -j list ruleset`` (with ``nft -a list ruleset``'s text) as the model's tables, and notes.

    A document that does not follow the schema is one note and no tables: a half-read
    ruleset would look like a firewall that lets more through than it does.
    """
    try:
        items = _RULESET.decode(document).nftables
        counters = {}
        for it in items:
            if it.rule is not None:
                stats = [s.counter for s in _STATEMENTS.decode(it.rule.expr) if s.counter is not None]
                counters[id(it.rule)] = stats[0] if stats else _Counter()
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return (), [f"nft -j output not understood: {exc}"]
    listing = listing or Listing("")
    notes: list[str] = []
    order: list[tuple[str, str]] = []
    chains: dict[tuple[str, str], list[_Chain]] = {}
    rules: dict[tuple[str, str, str], list[NftRule]] = {}
    sets: dict[tuple[str, str], list[NftSet]] = {}
    for it in items:
        if it.table is not None:
            order.append((it.table.family, it.table.name))
        elif it.chain is not None:
            chains.setdefault((it.chain.family, it.chain.table), []).append(it.chain)
        elif it.rule is not None:
            r, c = it.rule, counters[id(it.rule)]
            text_of = listing.rules.get((r.family, r.table, r.chain, r.handle), "")
            rules.setdefault((r.family, r.table, r.chain), []).append(
                NftRule(r.handle, text_of, bytes(r.expr).decode(), c.packets, c.bytes, r.comment or "")
            )
        elif (s := it.set or it.map) is not None:
            nft_set = NftSet(s.name, "set" if it.set is not None else "map", _joined(s.type, " . ") or "",
                             bytes(s.elem).decode(), _joined(s.map, " . "))  # fmt: skip
            sets.setdefault((s.family, s.table), []).append(nft_set)
    tables = []
    for family, name in order:
        built = []
        for c in chains.get((family, name), []):
            prio = None
            if c.prio is not None:
                try:
                    prio = priority(c.prio, family)
                except ValueError as exc:
                    notes.append(f"nft table {family} {name} chain {c.name}: {exc}")
            device = _joined(c.dev, ",") or listing.devices.get((family, name, c.name))
            built.append(NftChain(c.name, c.type, c.hook, prio, c.policy, device,
                                  tuple(rules.get((family, name, c.name), ()))))  # fmt: skip
        tables.append(NftTable(family, name, tuple(built), tuple(sets.get((family, name), ()))))
    if listing.rules and any(not r.text for rs in rules.values() for r in rs):
        notes.append("the nftables ruleset changed while it was read: some rules have no text")
    return tuple(tables), notes


class Libnft:
    """``list ruleset`` as JSON by libnftables in this process, in the calling thread's namespace.

    Debian's ``python3-nftables`` is the same few ctypes calls but lives outside the venv
    and pip cannot install it. A context is made per listing and freed after: its netlink
    socket belongs to the namespace it was opened in. Listings from several namespace threads
    take turns with each other and with python-iptables (``XTABLES_LOCK``).
    """

    _lib: ctypes.CDLL | None = None
    _loaded = False

    @classmethod
    def library(cls) -> ctypes.CDLL | None:
        """libnftables with its signatures declared, or ``None`` where it is not installed."""
        if not cls._loaded:
            cls._loaded = True
            try:
                lib = ctypes.CDLL("libnftables.so.1")
            except OSError:
                return None
            ptr = ctypes.c_void_p
            lib.nft_ctx_new.restype, lib.nft_ctx_new.argtypes = ptr, [ctypes.c_uint32]
            lib.nft_ctx_free.argtypes = [ptr]
            lib.nft_ctx_output_set_flags.argtypes = [ptr, ctypes.c_uint]
            lib.nft_ctx_buffer_output.argtypes = lib.nft_ctx_buffer_error.argtypes = [ptr]
            lib.nft_run_cmd_from_buffer.argtypes = [ptr, ctypes.c_char_p]
            lib.nft_ctx_get_output_buffer.restype = lib.nft_ctx_get_error_buffer.restype = ptr
            lib.nft_ctx_get_output_buffer.argtypes = lib.nft_ctx_get_error_buffer.argtypes = [ptr]
            cls._lib = lib
        return cls._lib

    @classmethod
    def list_json(cls, lib: ctypes.CDLL) -> bytes:
        """``nft -j list ruleset``'s document; ``OSError`` with libnftables' last error line when it fails."""
        with XTABLES_LOCK:
            ctx = lib.nft_ctx_new(0)
            if not ctx:
                raise OSError("libnftables could not make a context")
            try:
                lib.nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_JSON)
                lib.nft_ctx_buffer_output(ctx)
                lib.nft_ctx_buffer_error(ctx)
                if lib.nft_run_cmd_from_buffer(ctx, b"list ruleset") != 0:
                    err = ctypes.string_at(lib.nft_ctx_get_error_buffer(ctx)).decode(errors="replace").strip()
                    raise OSError(err.splitlines()[-1] if err else "libnftables failed")
                return ctypes.string_at(lib.nft_ctx_get_output_buffer(ctx))
            finally:
                lib.nft_ctx_free(ctx)


def _start(argv: list[str]) -> tuple[subprocess.Popen[bytes], int, int]:
    """``argv`` started with its output and errors going to two memory files."""
    out, err = os.memfd_create("nft-out"), os.memfd_create("nft-err")
    try:
        return subprocess.Popen(argv, stdout=out, stderr=err), out, err
    except OSError:
        os.close(out)
        os.close(err)
        raise


class NftReader:
    """The nftables tables of this namespace: the text listing started at once (when tables exist),
    everything collected by ``result``.

    ``nft``'s output goes to memory files, not pipes: a pipe would stall the process when
    it is not read after 64 KiB, and it would no longer run beside the caller.
    """

    def __init__(self, tables: set[tuple[str, str]]) -> None:
        self.notes: list[str] = []
        self.procs: list[tuple[subprocess.Popen[bytes], int, int]] = []  # process, its stdout, its stderr
        self.lib: ctypes.CDLL | None = None
        self.flags: tuple[str, ...] = ()
        if not tables:
            return
        names = ", ".join(f"{f} {n}" for f, n in sorted(tables))
        if shutil.which("nft") is None:
            self.notes.append(f"nftables tables ({names}) exist but nft is not installed")
            return
        self.lib = Libnft.library()
        self.flags = ("-a",) if self.lib is not None else tuple(ARGV)
        try:
            for flag in self.flags:
                self.procs.append(_start(list(ARGV[flag])))
        except OSError as exc:
            self.close()
            self.notes.append(f"nftables tables ({names}) exist but nft failed: {exc}")

    def close(self) -> None:
        """A read that failed half-way leaves no ``nft`` behind, and no open memory file."""
        for proc, out, err in self.procs:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
            os.close(out)
            os.close(err)
        self.procs = []

    def _failed(self, how: str, why: str) -> tuple[tuple[NftTable, ...], list[str]]:
        self.notes.append(f"nftables tables exist but {how} failed: {why}")
        self.close()
        return (), self.notes

    def result(self) -> tuple[tuple[NftTable, ...], list[str]]:
        if not self.procs:
            return (), self.notes
        document = b""
        if self.lib is not None:  # while ``nft -a`` runs
            try:
                document = Libnft.list_json(self.lib)
            except OSError as exc:
                return self._failed("libnftables' list ruleset", str(exc))
        listing = Listing("")
        for (proc, out, err), flag in reversed(list(zip(self.procs, self.flags, strict=True))):  # the text first
            proc.wait()
            if proc.returncode != 0:
                lines = os.pread(err, 1 << 16, 0).decode(errors="replace").strip().splitlines()
                return self._failed(f"nft {flag} list ruleset", lines[-1] if lines else f"exit {proc.returncode}")
            output = os.pread(out, os.fstat(out).st_size, 0)
            if flag == "-a":  # read while ``nft -j`` still runs
                listing = Listing(output.decode(errors="replace"))
            else:
                document = output
        self.close()
        tables, notes = decode(document, listing)
        return tables, self.notes + notes
