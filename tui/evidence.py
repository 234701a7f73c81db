"""The commands that keep evidence: ``graph`` (the topology as a file), ``diff`` (what changed between two
snapshots) and ``snapshot --watch`` (a dated snapshot each time something changed, to diff later).

Each reads this machine (the current lab or store, as ``trace`` does) or, with
``--host``, the machines named (``on_machines``, from ``tui.machines``), and hands
the pure models (``diagnostics.graph``, ``diagnostics.diff``) to the renderers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from backend import codec
from backend.errors import VxrayError
from backend.model import HostSnapshot, Labels
from tui.commands import endpoint
from tui.commands import snapshot as read_snapshot
from tui.context import Invocation
from tui.grammar import UsageError
from tui.graph_export import FORMATS, RENDER

if TYPE_CHECKING:
    from backend.remote import Machine
    from diagnostics.diff import Change
    from diagnostics.world import World

Ends = Callable[["World", str, str], tuple[str, str, int | None]]  # (world, SRC, DST) -> (netns, address, port)
MARK = {"appeared": "+", "disappeared": "-", "changed": "~", "grew": "↑", "reset": "↓"}


def _write(args: argparse.Namespace, text: str) -> None:
    """To ``-o FILE`` (written whole, then renamed into place), else stdout."""
    if not args.output:
        print(text, end="")
        return
    tmp = f"{args.output}.tmp{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, args.output)
    except OSError as exc:
        raise VxrayError(f"cannot write {args.output}: {exc.strerror}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"wrote {args.output}", file=sys.stderr)


def _format(args: argparse.Namespace) -> None:
    """A bad --format is said before any machine is read."""
    if args.format not in FORMATS:
        raise UsageError(f"invalid --format {args.format!r}: one of {', '.join(FORMATS)}")


def _graph(args: argparse.Namespace, snap: HostSnapshot, labels: Labels, ends: Ends) -> int:
    from diagnostics.graph import build, path
    from diagnostics.trace import trace
    from diagnostics.world import World

    graph = build(snap, labels)
    crossed = None
    if args.trace:
        world = World([snap], labels)
        src, dst, port = ends(world, *args.trace)
        crossed = path(graph, trace(world, src, dst, "tcp" if port else "icmp", port))
    _write(args, RENDER[args.format](graph, crossed))
    return 0


def graph(args: argparse.Namespace) -> int:
    """The current lab (or store's hosts, or this machine) as ``vxray trace`` reads it."""
    from backend.observe import observe

    _format(args)
    ctx, underlay = Invocation.of(args).current()
    snap, labels = observe(ctx, underlay)

    def ends(world: World, src: str, dst: str) -> tuple[str, str, int | None]:
        ns, _ = endpoint(ctx, world, src)
        ip, port = endpoint(ctx, world, dst, src)
        return ns, ip, port

    return _graph(args, snap, labels, ends)


def _machine_ends(world: World, src: str, dst: str) -> tuple[str, str, int | None]:
    """Trace ends across machines: a container or namespace, then a container, an IP or HOST:PORT."""
    place = world.place_of(src)
    if place is None:
        raise VxrayError(f"unknown container or namespace {src!r}")
    ip, port = world.endpoint_of(dst, place)
    return place.label, ip, port


def on_machines(args: argparse.Namespace, ms: list[Machine]) -> int:
    """``graph``, ``diff`` and ``snapshot --watch`` over ``--host``: the machines as one world (one machine read as
    ``-H M snapshot --json`` saves it, so a file saved that way diffs against it)."""
    from backend.fleet import Fleet

    def read() -> tuple[HostSnapshot, Labels]:
        if len(ms) == 1:
            try:
                ms[0].connect()
                got = ms[0].read()
            finally:
                ms[0].close()
            return got.snapshot, got.labels
        snap, labels = Fleet(ms).read_once()
        for name, why in labels.offline.items():
            print(f"vxray: {name} is offline: {why}", file=sys.stderr)
        return snap, labels

    if args.command == "graph":
        _format(args)
        return _graph(args, *read(), _machine_ends)
    if args.command == "diff":
        if args.new is not None:
            raise VxrayError("diff OLD NEW compares two files; with --host the machines are NEW (give OLD only)")
        return _diff(args, _load(args.old), read())
    return _watch(args, read, remote=True)


def _load(path: str) -> tuple[HostSnapshot, Labels]:
    view = codec.load_view(codec.read_file(path), path)
    return view.snapshot, view.labels


def _merged(a: Labels, b: Labels) -> Labels:
    """Both sides' names (the newer wins): a namespace that disappeared keeps the name it had."""
    return Labels(**{f: {**getattr(a, f), **getattr(b, f)} for f in ("hosts", "containers", "networks", "host_netns",
                                                                       "endpoints")})  # fmt: skip


def _now(args: argparse.Namespace) -> HostSnapshot:
    """This machine as ``vxray snapshot`` reads it, with the same scope options."""
    from backend.collect import collect
    from backend.netns import Scope

    return collect(Scope(args.host_netns, tuple(args.netns), tuple(args.netns_dir)), docker=args.docker)


def diff_lines(changes: list[Change]) -> Iterator[str]:
    """A heading per host and namespace, a line per change: ``+`` appeared, ``-`` disappeared, ``~`` changed,
    ``↑`` counted more packets."""
    group = None
    for c in changes:
        if (c.host, c.netns) != group:
            group = (c.host, c.netns)
            yield f"{c.host}: {c.who} ({c.netns})" if c.who != c.netns else f"{c.host}: {c.netns}"
        detail = change_cells(0, c)[-1]
        yield f"  {MARK[c.change]} {c.kind:<9} {c.key}" + (f"  {detail}" if detail else "")


def change_cells(at: float, c: Change) -> tuple[str, ...]:
    """A row of the app's Changes view: when, where, what."""
    detail = f"{c.before} -> {c.after}" if c.change in ("changed", "grew", "reset") else c.before or c.after
    return (time.strftime("%H:%M:%S", time.localtime(at)), c.host, c.who, MARK[c.change], c.kind, c.key, detail)


def _diff(args: argparse.Namespace, old: tuple[HostSnapshot, Labels], new: tuple[HostSnapshot, Labels]) -> int:
    """Exit 0 when nothing changed, 1 when something did (as diff(1))."""
    from diagnostics.diff import diff as compare

    changes = compare(old[0], new[0], _merged(old[1], new[1]))
    if args.json:
        print(json.dumps([c.as_dict() for c in changes], indent=2, ensure_ascii=False))
    elif changes:
        spaces = len({(c.host, c.netns) for c in changes})
        print("\n".join([*diff_lines(changes), f"{len(changes)} changes in {spaces} namespaces"]))
    else:
        print("no changes")
    return 1 if changes else 0


def diff(args: argparse.Namespace) -> int:
    """``diff OLD [NEW]``: two snapshot files, or OLD against this machine now."""
    old = _load(args.old)
    if args.new is not None:
        return _diff(args, old, _load(args.new))
    now = _now(args)
    return _diff(args, old, (now, _labels(args, now)))


def _labels(args: argparse.Namespace, snap: HostSnapshot) -> Labels:
    """The current lab's (or store's) names for what was read: hosts, containers, overlays' sandboxes."""
    from backend.observe import labels_for

    try:
        return labels_for(Invocation.of(args).context(), snap)
    except VxrayError:  # no store to ask: the namespaces go by their own names
        return Labels()


def _watch(args: argparse.Namespace, read: Callable[[], tuple[HostSnapshot, Labels]], remote: bool) -> int:
    """Read every ``--every`` seconds; keep a dated file each time the state (not only a counter) changed, and
    say what changed. Ctrl-C ends it between reads or during one: no file is ever left half-written."""
    from diagnostics.diff import changed
    from diagnostics.diff import diff as compare

    if threading.current_thread() is not threading.main_thread():  # the app's line: nothing there can stop it
        raise VxrayError("snapshot --watch runs until Ctrl-C: run it from bash or the shell")
    if not args.every > 0:
        raise UsageError(f"invalid --every {args.every}: seconds, more than 0")
    folder = args.write_dir
    if not os.path.isdir(folder):
        raise VxrayError(f"-w {folder}: not a directory")
    kept, last = 0, None
    try:
        while True:
            snap, labels = read()
            changes = compare(last, snap, labels) if last is not None else []
            if last is None or changed(changes):
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
                path = os.path.join(folder, f"snapshot-{stamp}.json")
                data = codec.dump_view(codec.View(snap, labels)) if remote else codec.dumps(snap)
                tmp = f"{path}.tmp"
                try:
                    with open(tmp, "wb") as f:
                        f.write(data)
                    os.replace(tmp, path)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
                kept += 1
                what = f"{sum(c.change not in ('grew', 'reset') for c in changes)} changes" if last else "first"
                print(f"{stamp}  {path}  ({what})", flush=True)
                last = snap
            time.sleep(args.every)
    except KeyboardInterrupt:
        print(f"stopped: {kept} snapshots kept in {folder}", file=sys.stderr)
    return 0


def snapshot(args: argparse.Namespace) -> int:
    """``snapshot``, and with ``--watch`` this machine read again and again, with the same scope options."""
    if not args.watch:
        return read_snapshot(args)
    if args.load or args.json:
        raise UsageError("--watch writes JSON files itself; it takes neither --load nor --json")
    return _watch(args, lambda: (_now(args), Labels()), remote=False)
