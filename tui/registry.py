"""Every vxray command, once: what runs it, what it changes, whether it asks, where it runs, which doors offer it.

bash (``tui.cli``), the shell, the app's ``:`` line, the command palette, the
completer, ``--read-only`` and the agent's allow-list all draw from ``COMMANDS``;
nothing about a command is kept in a second table. Doors:

- ``bash``: ``vxray COMMAND`` from a terminal or a script;
- ``shell``: a line of ``vxray shell``;
- ``line``: the app's ``:`` command line (and the command palette, which offers the same);
- ``agent``: what an agent runs for a client over ``--host`` (never ``lab``, never a door).

``app``, ``shell``, ``demo`` and ``agent`` open a door themselves: they are listed
(for ``--read-only``, help and completion) but the entry point (``tui.cli``) runs them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from backend.protocol import Policy
from tui import capture, commands, evidence, machines

Handler = Callable[[argparse.Namespace], int]
ALL = frozenset({"bash", "shell", "line", "agent"})
HERE = frozenset({"bash", "shell", "line"})  # this machine's own: never run for a client


@dataclass(frozen=True)
class Command:
    """One command of the language.

    ``reads``: the actions that only read (``None`` in it: the command as a whole reads); every other action
    changes the kernel or the store and is refused under ``--read-only``. ``asks``: actions that ask before
    they run (``--yes`` answers). ``remote``: with ``--host``, ``read`` reads every machine named, ``run`` runs
    on one machine's agent, ``local`` refuses, ``here`` runs on this machine whatever machines are named (``hosts``
    manages the list of machines itself). ``positional``: the kinds of its positional arguments, per
    action, for completion (names the vocabulary knows: ``networks``, ``containers`` …).
    """

    name: str
    help: str
    handler: Handler | None
    reads: frozenset[str | None] = frozenset()
    asks: frozenset[str] = frozenset()
    remote: str = "local"
    doors: frozenset[str] = ALL
    positional: dict[str | None, tuple[str, ...]] = field(default_factory=dict)
    grouped: bool = False  # its second word is an action (``network ls``), not an argument (``trace A B``)


def _group(name: str, help: str, handler: Handler, reads: Iterable[str], asks: Iterable[str] = (),
           remote: str = "run", doors: frozenset[str] = ALL,
           positional: dict[str | None, tuple[str, ...]] | None = None) -> Command:  # fmt: skip
    """A command whose second word is an action (``network ls``); by default it runs on one machine's agent."""
    return Command(name, help, handler, frozenset(reads), frozenset(asks), remote, doors, positional or {}, True)


COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("snapshot", "every namespace, link, FDB, neighbour, route and NAT rule of a host", evidence.snapshot,
            frozenset({None}), remote="read"),
    _group("network", "create, list, inspect, remove, repair, connect networks", commands.network,
           {"ls", "inspect"}, {"rm"}, positional={
               "inspect": ("networks",), "rm": ("networks",), "repair": ("networks",),
               "connect": ("networks", "containers"), "disconnect": ("networks", "containers")}),
    _group("container", "run, list, inspect, remove containers", commands.container, {"ls", "inspect"}, {"rm"},
           positional={"rm": ("containers",), "inspect": ("containers",)}),
    _group("fdb", "add/del a static FDB entry, or sync an overlay's (or flannel network's) entries on every host",
           commands.fdb, set(), positional={"sync": ("vxlan_networks",)}),
    _group("arp", "add/del a static ARP entry in a container or namespace", commands.arp, set()),
    _group("host", "register, list, remove hosts; set what they decide about forwarded packets", commands.host,
           {"ls"}, {"rm"}, positional={"rm": ("hosts",), "set": ("hosts", "settings")}),
    _group("firewall", "delete the native nftables rule or policy that drops traffic iptables accepts",
           commands.firewall, set()),
    _group("port", "publish a container port as docker run -p does", commands.port, set(),
           positional={"add": ("containers",)}),
    Command("trace", "follow a packet hop by hop: where and why it stops, and what fixes it", commands.trace,
            frozenset({None}), remote="read", positional={None: ("containers", "containers")}),
    # captures on this machine, or streams from each --host machine's agent into one file (never an agent's `run`);
    # the app's line opens its capture panel instead
    Command("capture", "packets from devices of any namespaces and machines, into one pcapng file or one line each",
            capture.capture, frozenset({None}), remote="here", doors=HERE),
    Command("doctor", "check every host against the store: findings, most likely first, with fixes",
            commands.doctor, frozenset({None}), remote="read"),
    Command("graph", "the topology as DOT, Mermaid, JSON or SVG, a trace's path marked", evidence.graph,
            frozenset({None}), remote="read", doors=HERE),
    Command("diff", "what appeared, disappeared or changed between two snapshots, or since one", evidence.diff,
            frozenset({None}), remote="read", doors=HERE),
    Command("ping", "ping from a container (or namespace) to a container or IP", commands.ping, frozenset({None}),
            remote="run", positional={None: ("containers", "containers")}),
    _group("lab", "build, check and remove labs: multi-host topologies in namespaces", commands.lab,
           {"ls", "status", "check", "export"}, {"down"}, remote="local", doors=HERE, positional={
               "up": ("builtin",), "down": ("labs",), "status": ("labs",), "check": ("labs",),
               "export": ("labs",), "use": ("labs",)}),
    _group("hosts", "machines saved for --host: add, rm, ls", machines.hosts, {"ls"}, remote="here",
           doors=HERE),
    # doors themselves: opened by the entry point (tui.cli), never over an agent or from inside another door
    Command("app", "the live view of every host, with the command line, trace and doctor inside", None,
            frozenset({None}), remote="read", doors=frozenset({"bash"})),
    Command("shell", "every vxray command at a prompt, with completion, and scripts", None, frozenset({None}),
            remote="read", doors=frozenset({"bash"})),
    Command("demo", "build the field notes' two-host overlay in namespaces and show it", None,
            doors=frozenset({"bash"})),
    Command("agent", "speak vxray's protocol on stdin/stdout (what --host ssh://… starts over SSH)", None,
            frozenset({None}), doors=frozenset({"bash"})),
)}  # fmt: skip

# The shell's own words: about the session, not the machines (the app has keys for the same).
SHELL_WORDS = {"help": "commands, or one command with examples", "use": "act on a host, or on a lab",
               "show": "the app's tables as text", "exit": "leave the shell"}  # fmt: skip
# The app's line runs `show` (a view) besides the commands; trace and doctor it answers in its own views.
LINE_WORDS = {"show": "open one of the app's views, filtered"}

POLICY = Policy(
    runnable=frozenset(c.name for c in COMMANDS.values() if "agent" in c.doors and c.handler is not None),
    reads=frozenset((c.name, a) for c in COMMANDS.values() for a in c.reads),
    grouped=frozenset(c.name for c in COMMANDS.values() if c.grouped),
)


def offered(door: str) -> dict[str, str]:
    """The words a door offers first, with what each does: its commands, then the door's own words."""
    own = SHELL_WORDS if door == "shell" else LINE_WORDS if door == "line" else {}
    return {**{c.name: c.help for c in COMMANDS.values() if door in c.doors}, **own}


def action_of(argv: list[str]) -> str | None:
    command = COMMANDS.get(argv[0]) if argv else None
    return argv[1] if command is not None and command.grouped and len(argv) > 1 else None


def asks(argv: list[str]) -> bool:
    """Whether ``argv`` asks before it runs (``network rm``, ``lab down`` …)."""
    command = COMMANDS.get(argv[0]) if argv else None
    return command is not None and action_of(argv) in command.asks


def positional(argv: list[str]) -> tuple[str, ...]:
    """The kinds of the positional arguments after ``argv``'s command (and action)."""
    command = COMMANDS.get(argv[0]) if argv else None
    return () if command is None else command.positional.get(action_of(argv), ())
