"""The commands that reach other machines: anything run with ``--host``, and ``agent`` and ``hosts``.

With ``--host`` (or ``-H all``) the snapshot, trace and doctor read the machines
named — over SSH through ``vxray agent --stdio``, or from snapshot files — as one
world whose namespaces are ``HOST:name``. A state-changing command runs on one
machine's agent (``--on NAME`` when several are named); if the connection drops
while it runs, the error says it may or may not have applied.
"""

from __future__ import annotations

import argparse
import binascii
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING

from backend import codec
from backend.errors import VxrayError, one_line
from backend.model import HostSnapshot, Labels
from tui import evidence
from tui.commands import live_report, save_probe
from tui.context import Invocation, inventory_desired
from tui.output import doctor_lines, emit, names, table, write_json
from tui.summary import snapshot_lines
from tui.trace_text import trace_lines

if TYPE_CHECKING:  # the machinery of --host loads where it is used: `vxray snapshot` starts without it
    from backend import inventory
    from backend.protocol import Policy
    from backend.remote import Machine, SshMachine
    from diagnostics.trace import Trace


def vxray_version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # slow to import; only the agent's hello needs it

    try:
        return version("vxray")
    except PackageNotFoundError:
        return "unknown"


def _discovered(inv: inventory.Inventory) -> list[inventory.Entry]:
    """Agents registered in the inventory's consul store, offered beside the saved machines."""
    from backend import inventory

    if not inv.store:
        return []
    from backend.store.registry import open_store

    try:
        store = open_store(inv.store)
        found = store.agents()
        store.close()
    except VxrayError as exc:
        print(f"vxray: no discovery: the inventory's store cannot be read: {exc}", file=sys.stderr)
        return []
    saved = {h.name for h in inv.hosts}
    return [inventory.Entry(a.name, a.ssh, "consul") for a in found if a.name not in saved and _offered(a.name, a.ssh)]


def _offered(name: str, url: str) -> bool:
    """Whether an agent's record in the store (anyone who can write there wrote it) names a machine vxray may
    reach; one that does not is left out with a line saying why, so it cannot stop the others being read."""
    from backend import inventory

    try:
        inventory.check_entry(name, url)
    except VxrayError as exc:
        print(f"vxray: the store's agent {name!r} is left out: {exc}", file=sys.stderr)
        return False
    return True


def known(inv: inventory.Inventory) -> list[inventory.Entry]:
    """The saved machines, then those the inventory's store discovered."""
    return [*inv.hosts, *_discovered(inv)]


def machines(args: argparse.Namespace) -> list[Machine]:
    """``--host`` values: URLs, saved names, or ``all``; each becomes a machine named once."""
    from backend import inventory
    from backend.remote import machine, parse

    inv = inventory.load()
    found = known(inv)
    out: list[Machine] = []
    for word in args.remotes:
        if word == "all":
            picked = [(h.name, h.url) for h in found]
            if not picked:
                raise VxrayError(f"--host all: no machine saved in {inventory.path()} and none discovered")
        elif "://" in word and "=" in word.split("://")[0]:  # NAME=URL: named without saving it
            name, url = word.split("=", 1)
            inventory.check_entry(name, url)
            picked = [(name, url)]
        elif "://" in word:
            address = parse(word)
            picked = [(address.host or os.path.basename(address.path).removesuffix(".json"), word)]
        else:
            entry = next((h for h in found if h.name == word), None)
            if entry is None:
                raise VxrayError(f"unknown host {word!r}: not an ssh:// or file:// URL, nor saved (`vxray hosts ls`)")
            picked = [(entry.name, entry.url)]
        for name, url in picked:
            if name not in {m.name for m in out}:
                out.append(machine(name, url, args.read_only))
    return out


def read_command(args: argparse.Namespace, ms: list[Machine]) -> int:
    from backend import inventory
    from backend.fleet import Fleet
    from diagnostics.world import World

    if args.command in ("graph", "diff") or getattr(args, "watch", False):
        return evidence.on_machines(args, ms)
    if args.command == "snapshot" and args.json and len(ms) == 1:  # one machine as it is: a file:// for later
        try:
            ms[0].connect()
            got = ms[0].read()
        finally:
            ms[0].close()
        print(json.dumps(got.as_data()))
        return 0
    snap, labels = Fleet(ms).read_once()
    for name, why in labels.offline.items():
        print(f"vxray: {name} is offline: {one_line(why)}", file=sys.stderr)
    if args.command == "snapshot":
        if args.json:
            write_json(codec.dumps(snap))
        else:
            print("\n".join(snapshot_lines(snap, args.limit, args.all)))
        return 0
    world = World([snap], labels)
    if args.command == "doctor":
        from diagnostics.doctor import doctor as diagnose

        findings = diagnose(world, inventory_desired(world))
        if args.json:
            print(json.dumps([f.as_dict() for f in findings], indent=2))
        elif findings:
            print("\n".join(doctor_lines(findings)))
        else:
            alone = (
                ""
                if inventory.load().store
                else " (no store in the inventory: the machines checked against each other)"
            )
            print(f"no findings on {len(ms)} host(s){alone}")
        return 1 if any(f.likelihood >= 0.5 for f in findings) else 0
    from diagnostics.trace import trace as simulate

    src = world.place_of(args.src)
    if src is None:
        raise VxrayError(f"unknown container or namespace {args.src!r} on {', '.join(m.name for m in ms)}")
    dst, port = world.endpoint_of(args.dst, src)
    proto = "tcp" if port and args.proto == "icmp" else args.proto
    t = simulate(world, src.label, dst, proto, args.dport or port, args.size, args.df)
    if args.write and not args.live:
        raise VxrayError("trace -w writes the live probe's frames: add --live")
    if args.live:
        frames: list[tuple[str, str, int, bytes]] = []
        seen = _capture(ms, t, src.label, dst, args, frames)
        if args.write:
            from diagnostics.live import watch_points

            save_probe(args.write, world, watch_points(t), frames)
        return live_report(args, world, t, seen, args.proto)
    if args.json:
        print(json.dumps(t.as_dict(), indent=2))
    else:
        lines = trace_lines(t, names(world), f"trace {args.src} -> {args.dst} ({dst}), {proto}")
        print("\n".join(lines))
    return 0 if t.delivered else 1


def _capture(ms: list[Machine], t: Trace, src: str, dst: str, args: argparse.Namespace,
             frames: list[tuple[str, str, int, bytes]]) -> set[tuple[str, str, str]]:  # fmt: skip
    """A live trace across machines: each one watches its devices on the path, then the source sends; with
    ``-w`` each also answers the probe's frames, into ``frames``."""
    from backend.probe import new_ident
    from backend.remote import SshMachine
    from diagnostics.live import watch_points

    by_host: dict[str, list[tuple[str, str]]] = {}
    for ns, dev in watch_points(t):
        host, _, local = ns.partition(":")
        by_host.setdefault(host, []).append((local, dev))
    src_host, _, src_local = src.partition(":")
    ident = new_ident()
    probe = {
        "src_netns": src_local,
        "dst": dst,
        "proto": args.proto,
        "dport": args.dport,
        "size": args.size,
        "df": args.df,
    }
    live = [m for m in ms if m.name in by_host or m.name == src_host]
    if any(not isinstance(m, SshMachine) for m in live):
        raise VxrayError("trace --live sends a real packet: every host on the path must be live (ssh://), not a file")

    def watch(m: SshMachine) -> int:
        return int(m.request("watch", {"probe": probe, "ident": ident, "points": by_host.get(m.name, [])}))

    def seen(m: SshMachine, wid: int) -> list[tuple[str, str, str]]:
        answer = m.request("seen", {"watch": wid, "wait": 1.5, "frames": bool(args.write)})
        if isinstance(answer, dict):  # checked by the protocol: base64 of at most 64 KiB each
            frames.extend((f"{m.name}:{ns}", dev, ts, binascii.a2b_base64(text))
                          for ns, dev, ts, text in answer["frames"])  # fmt: skip
            answer = answer["seen"]
        return [(f"{m.name}:{ns}", dev, d) for ns, dev, d in answer]

    ssh = [m for m in live if isinstance(m, SshMachine)]
    with ThreadPoolExecutor(max_workers=len(ssh) or 1) as pool:
        list(pool.map(lambda m: m.connect(), ssh))
        try:
            wids = list(pool.map(watch, ssh))  # every machine listens before the source sends
            next(m for m in ssh if m.name == src_host).request("send", {"probe": probe, "ident": ident})
            return {s for found in pool.map(seen, ssh, wids) for s in found}
        finally:
            for m in ssh:
                m.close()


def run_on_one(args: argparse.Namespace, ms: list[Machine], argv: list[str]) -> int:
    if len(ms) > 1 and not args.on:
        raise VxrayError(f"{args.command}: several hosts given ({', '.join(m.name for m in ms)}); "
                         "name the one it runs on with --on")  # fmt: skip
    target = next((m for m in ms if m.name == (args.on or ms[0].name)), None)
    if target is None:
        raise VxrayError(f"--on {args.on!r}: not one of the hosts given ({', '.join(m.name for m in ms)})")
    try:
        target.connect()
        status, output = target.run(argv)
    finally:
        target.close()
    if output:
        print(output)
    return status


def agent(args: argparse.Namespace, policy: Policy) -> int:
    """This machine's side of ``--host ssh://…``: registered in a consul store if one is configured."""
    from backend.agent import serve
    from backend.collect import collect
    from backend.netns import Scope
    from backend.observe import labels_for
    from backend.protocol import PROTOCOL, Hello

    scope = Scope(args.host_netns, tuple(args.netns), tuple(args.netns_dir))
    name = args.name or socket.gethostname()

    def read() -> tuple[HostSnapshot, Labels, str]:
        snap = collect(scope, docker=args.docker)
        ctx, _ = Invocation.of(args).current()
        return snap, replace(labels_for(ctx, snap), offline={}), "host"  # it answers: it is online

    def run(argv: list[str], token: str) -> tuple[int, str]:
        """Its own process in its own session, printing to a file: it finishes, and says how, if we are cut off."""
        from backend import journal

        why = policy.refusal(argv, args.read_only)
        if why:
            raise VxrayError(why)

        journal.started(token, argv)  # before it runs: a client cut off from here on learns it started
        with open(journal.output_path(token), "w") as out:
            child = [sys.executable, "-m", "tui.cli", *Invocation.of(args).flags(), "--journal", token, *argv]
            proc = subprocess.run(child, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        done = journal.outcome(token) or {}
        if done.get("state") != "done":  # it died before recording its end (it could not even start)
            journal.finished(token, argv, proc.returncode)
            done = journal.outcome(token) or {}
        return int(done.get("status", proc.returncode)), str(done.get("output", ""))

    _register(args, name)
    return serve(scope, read, run, Hello(PROTOCOL, vxray_version(), name, args.read_only))


def _register(args: argparse.Namespace, name: str) -> None:
    """In a consul store, say how this machine is reached (from the SSH connection it was started over)."""
    from backend.remote import parse
    from backend.store.registry import chosen, open_store

    where = chosen(args.store)
    conn = os.environ.get("SSH_CONNECTION", "").split()
    if where is None or where.scheme != "consul" or len(conn) != 4:
        return
    from backend.records import AgentRecord

    user = os.environ.get("USER") or "root"
    port = "" if conn[3] == "22" else f":{conn[3]}"
    try:
        url = parse(f"ssh://{user}@{conn[2]}{port}").url  # what clients will connect to: checked as theirs will be
        store = open_store(where.url, args.store_token)
        vtep = next((h.vtep for h in store.hosts() if h.name == name), None)
        store.register_agent(AgentRecord(name, url, vtep, time.time()))
        store.close()
    except VxrayError as exc:
        print(f"vxray agent: not registered in {where.url}: {exc}", file=sys.stderr)


def hosts(args: argparse.Namespace) -> int:
    from backend import inventory

    if args.action == "add":
        inventory.add(args.name, args.url)
        return emit(args, {"name": args.name, "url": args.url}, f"saved {args.name} ({args.url})")
    if args.action == "rm":
        inventory.remove(args.name)
        return emit(args, {"name": args.name, "removed": True}, f"forgot {args.name}")
    inv = inventory.load()
    rows = [{"name": h.name, "url": h.url, "source": h.source} for h in known(inv)]
    return emit(args, rows, table(rows, ["name", "url", "source"]) if rows else "(none saved)")
