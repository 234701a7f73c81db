"""``vxray capture``: packets from devices of any namespaces, on this machine or on ``--host`` machines, into one
pcapng file or one line each.

A device is named ``DEV[@NAMESPACE[@HOST]]`` — the namespace a container (the
store's or Docker's name), a namespace label or id, ``host`` (the default), or
``HOST:name`` across machines — resolved in the same world ``trace`` reads, so
whatever vxray shows can be captured. The first word is always a device; a
further device says its namespace (``eth1@host``); the words after the devices
(or after ``--``) are the filter, as tcpdump takes it. In the file each device
is an interface named ``dev@namespace@host``, which this command also takes
back. With ``--host`` the agent of each machine captures its devices and
streams the frames (``backend.protocol``'s ``capture``/``stop``), so frames from
several machines land in one file.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import operator
import queue
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import IO, TYPE_CHECKING

from backend.errors import VxrayError
from tui import machines
from tui.context import Invocation

if TYPE_CHECKING:  # loaded where a capture runs: the registry imports this module for every command
    from backend.capture import Packet, Point
    from backend.pcapng import Writer
    from backend.protocol import Packets
    from backend.remote import Machine
    from diagnostics.devices import Target
    from diagnostics.world import World


def split_words(words: list[str]) -> tuple[list[str], str]:
    """Devices and the filter: the first word is a device, so is each next word holding ``@``; the rest (or
    what follows ``--``) is the filter."""
    if "--" in words:
        cut = words.index("--")
        devices, expression = words[:cut], words[cut + 1 :]
    else:
        devices = words[:1]
        for word in words[1:]:
            if "@" not in word:
                break
            devices.append(word)
        expression = words[len(devices) :]
    if not devices:
        raise VxrayError("capture needs a device: DEV[@NAMESPACE[@HOST]]")
    return devices, " ".join(expression)


def local_point(world: World, t: Target) -> Point:
    """Where to open a device of this machine: its namespace's files, checked by inode."""
    ns = world.places[t.key].ns
    paths = (*ns.paths, *(f"/proc/{pid}/ns/net" for pid in ns.pids))
    if not paths:  # Point's "no paths" means this process's own namespace: never a guess
        raise VxrayError(f"{t.name}: no file or process of its namespace to enter")
    from backend.capture import Point, inode_of

    return Point(t.dev, t.name, t.description, paths, inode_of(ns.id))


class Output:
    """Where frames go: a pcapng file (interfaces first), lines on ``out``, or both; counts what it took."""

    def __init__(self, targets: list[Target], linktypes: list[int], path: str | None, out: IO[str] | None,
                 stack: ExitStack) -> None:  # fmt: skip
        self.targets, self.linktypes, self.out = targets, linktypes, out
        self.writer: Writer | None = None
        if path is not None:
            try:
                handle = stack.enter_context(open(path, "wb"))  # noqa: SIM115 - closed with the capture
            except OSError as exc:
                raise VxrayError(f"cannot write {path}: {exc.strerror}") from None
            from backend.pcapng import Writer

            self.writer = Writer(handle)
            for t, linktype in zip(targets, linktypes, strict=True):
                self.writer.interface(t.name, t.description, linktype)
        self.count = 0

    def take(self, packets: list[Packet], limit: int | None = None) -> bool:
        """Write or print ``packets`` in time order; False once ``limit`` frames are taken."""
        from backend.pcapng import INBOUND, OUTBOUND

        ordered = packets if len(self.targets) == 1 else sorted(packets, key=operator.itemgetter(1))  # by ts_ns
        for p in ordered:
            if limit is not None and self.count >= limit:
                return False
            self.count += 1
            if self.writer is not None:
                self.writer.packet(p.interface, p.ts_ns, p.data, p.orig_len, OUTBOUND if p.outgoing else INBOUND)
            if self.out is not None:
                self.out.write(line(self.targets[p.interface].name, p, self.linktypes[p.interface]) + "\n")
        if self.out is not None:
            self.out.flush()
        return limit is None or self.count < limit

    def finish(self, counters: list[tuple[int, int]]) -> str:
        """Statistics blocks, and the line saying what was taken of what the kernel counted."""
        now = time.time_ns()
        if self.writer is not None:
            for i, (received, dropped) in enumerate(counters):
                self.writer.statistics(i, now, received, dropped)
            self.writer.flush()
        received, dropped = sum(c[0] for c in counters), sum(c[1] for c in counters)
        return f"{self.count} packets captured, {received} received by the filter, {dropped} dropped by the kernel"


def line(device: str, p: Packet, linktype: int) -> str:
    """A frame as one line: local time, ``dev@namespace@host``, direction, what it holds."""
    from diagnostics.packets import summary

    stamp = datetime.datetime.fromtimestamp(p.ts_ns / 1e9).strftime("%H:%M:%S.%f")
    arrow = "Out" if p.outgoing else "In "
    return f"{stamp} {device} {arrow} {summary(p.data, linktype, p.orig_len)}"


def capture(args: argparse.Namespace) -> int:
    from backend.capture import BLOCK_WAIT_MS, SNAPLEN, Session
    from diagnostics.devices import resolve

    if args.count is not None and args.count < 1:
        raise VxrayError(f"invalid -c {args.count}: at least 1 packet")
    if args.seconds is not None and not 0 < args.seconds <= 86400:
        raise VxrayError(f"invalid --seconds {args.seconds}: more than 0, at most 86400")
    if args.snaplen is not None and not 64 <= args.snaplen <= SNAPLEN:
        raise VxrayError(f"invalid --snaplen {args.snaplen}: 64-{SNAPLEN}")
    specs, expression = split_words(args.words)
    args.remotes = [*args.remotes, *args.capture_hosts]  # `capture … --host H` is the global `-H H`
    if args.remotes:
        return _remote(args, specs, expression)
    _, world, _ = Invocation.of(args).observed()
    targets = [resolve(world, spec) for spec in specs]
    with ExitStack() as stack:
        session = Session([local_point(world, t) for t in targets], expression, args.snaplen or SNAPLEN)
        stack.callback(session.close)
        output = Output(targets, [tap.linktype for tap in session.taps], args.write, _lines(args), stack)
        _announce(args, targets, expression)
        _loop(args, output, session.read)
        output.take(session.read(2 * BLOCK_WAIT_MS / 1000), args.count)  # what the kernel had not handed over yet
        print(output.finish(session.counters()), file=sys.stderr)
    return 0


def _lines(args: argparse.Namespace) -> IO[str] | None:
    """Lines on stdout unless the frames go to a file (as tcpdump -w)."""
    return None if args.write else sys.stdout


def _announce(args: argparse.Namespace, targets: list[Target], expression: str) -> None:
    where = f" into {args.write}" if args.write else ""
    what = f", filter {expression!r}" if expression else ""
    print(f"capturing on {', '.join(t.name for t in targets)}{what}{where} (Ctrl-C ends it)", file=sys.stderr)


def _loop(args: argparse.Namespace, output: Output, read: Callable[[float], list[Packet]]) -> None:
    """Until ``-c`` frames, ``--seconds`` or Ctrl-C, whichever first; the file is whole in every case."""
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    try:
        while deadline is None or (left := deadline - time.monotonic()) > 0:
            wait = 0.2 if deadline is None else min(0.2, left)
            if not output.take(read(wait), args.count):
                break
    except KeyboardInterrupt:
        pass


def _remote(args: argparse.Namespace, specs: list[str], expression: str) -> int:
    """Every machine's agent captures its devices and streams them; one file, one list of interfaces."""
    from backend.capture import SNAPLEN
    from backend.fleet import Fleet
    from backend.remote import SshMachine
    from diagnostics.devices import resolve
    from diagnostics.world import World

    ms = machines.machines(args)
    snap, labels = Fleet(ms).read_once()
    world = World([snap], labels)
    targets = [resolve(world, spec) for spec in specs]
    hosts = {world.places[t.key].host for t in targets}
    live = {m.name: m for m in ms if m.name in hosts}
    if any(not isinstance(m, SshMachine) for m in live.values()):
        raise VxrayError("capture reads packets: every machine captured on must be live (ssh://), not a file")
    stream: queue.Queue[tuple[str, Packets | None]] = queue.Queue()
    order: dict[str, list[int]] = {}  # machine -> the positions of its targets in `targets`
    for i, t in enumerate(targets):
        order.setdefault(world.places[t.key].host, []).append(i)
    with ExitStack() as stack:
        started: dict[str, int] = {}  # machine -> its capture's number there
        running: dict[str, int] = {}  # those not stopped yet: stopped on the way out, whatever happened
        stack.callback(lambda: [_stop_quietly(live[n], number) for n, number in running.items()])
        linktypes = [0] * len(targets)
        for name, positions in order.items():
            m = live[name]
            assert isinstance(m, SshMachine)
            stack.callback(m.close)
            m.connect()
            m.stream(stream)
            ids = [world.places[targets[i].key].ns.id.removeprefix(f"{name}:") for i in positions]  # merged: HOST:id
            points = [[ns_id, targets[i].dev] for ns_id, i in zip(ids, positions, strict=True)]
            answer = m.request("capture", {"points": points, "filter": expression, "snaplen": args.snaplen or SNAPLEN})
            started[name] = running[name] = answer["capture"]
            for i, linktype in zip(positions, answer["linktypes"], strict=True):
                linktypes[i] = linktype
        output = Output(targets, linktypes, args.write, _lines(args), stack)
        _announce(args, targets, expression)
        _loop(args, output, lambda wait: _drain(stream, wait, order, started))
        counters = [(0, 0)] * len(targets)
        for name in list(running):
            m = live[name]
            assert isinstance(m, SshMachine)
            result = m.request("stop", {"capture": running.pop(name)})
            output.take(_drain(stream, 0, order, started), args.count)  # what it sent before it answered
            for i, got, lost in zip(order[name], result["received"], result["dropped"], strict=True):
                counters[i] = (got, lost)
        print(output.finish(counters), file=sys.stderr)
    return 0


def _stop_quietly(m: Machine, number: int) -> None:
    """A capture left running on a machine when this side failed: stopped, whatever happens."""
    from backend.remote import RemoteError, SshMachine

    if isinstance(m, SshMachine):
        with contextlib.suppress(RemoteError):
            m.request("stop", {"capture": number})


def _drain(stream: queue.Queue[tuple[str, Packets | None]], wait: float, order: dict[str, list[int]],
           started: dict[str, int]) -> list[Packet]:  # fmt: skip
    """The frames the machines sent so far, numbered as interfaces of the file; a machine whose connection
    ended is an error."""
    from backend.capture import Packet

    out: list[Packet] = []
    try:
        item = stream.get(timeout=wait) if wait > 0 else stream.get_nowait()
    except queue.Empty:
        return out
    while True:
        name, message = item
        if message is None:
            raise VxrayError(f"{name}: the connection ended during the capture")
        if started.get(name) == message.capture:
            positions = order[name]
            for p in message.packets:
                if p.interface >= len(positions):
                    raise VxrayError(f"{name}: the agent sent a frame of interface {p.interface}, not one it opened")
                out.append(Packet(positions[p.interface], p.ts_ns, p.data, p.orig_len, p.outgoing))
        try:
            item = stream.get_nowait()
        except queue.Empty:
            return out
