"""``vxray`` from bash: parse the command line, run the command, print, exit.

Every failure an operator can cause ends as one line on stderr and a non-zero
exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass
from typing import TYPE_CHECKING, Any

from backend import codec
from backend.errors import VxrayError, one_line
from backend.protocol import read_only_refusal
from tui import remote_cli
from tui.grammar import UsageError, keywords, parser

if TYPE_CHECKING:  # imported where used: `vxray` starts fast whatever the command
    from backend.store.registry import Registry
    from diagnostics.doctor import Desired, Finding


def _emit(args: argparse.Namespace, data: Any, text: str) -> int:
    if getattr(args, "json", False):
        print(json.dumps(asdict(data) if is_dataclass(data) else data, indent=2))
    elif text:
        print(text)
    return 0


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[str(r.get(c) if r.get(c) is not None else "-") for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _snapshot(args: argparse.Namespace) -> int:
    from tui.summary import snapshot_lines

    if args.load:
        snap = codec.load_view(codec.read_file(args.load), args.load).snapshot  # a snapshot, or a saved view
    else:
        from backend.collect import collect
        from backend.netns import Scope

        snap = collect(Scope(args.host_netns, tuple(args.netns), tuple(args.netns_dir)), docker=args.docker)
    if args.json:
        _write_json(codec.dumps(snap))
    else:
        print("\n".join(snapshot_lines(snap, args.limit, args.all)))
    return 0


def _write_json(data: bytes) -> None:
    """Bytes straight to stdout: an 8 MB snapshot is not decoded to ``str`` only to be encoded again."""
    sys.stdout.flush()
    sys.stdout.buffer.write(data + b"\n")
    sys.stdout.buffer.flush()


DEMO = "overlay-static"
DOCKER_DEMO = "docker-swarm"


def _demo(args: argparse.Namespace) -> int:
    """The seed lab of the field notes, then the main view: the app on a terminal, the snapshots otherwise."""
    from backend.collect import collect
    from backend.lab import runner
    from backend.observe import engine_scope
    from tui.summary import snapshot_lines

    name = DOCKER_DEMO if args.docker else DEMO
    if args.action == "down":
        removed = [ns for lab in (DEMO, DOCKER_DEMO) if lab in runner.running() for ns in runner.down(lab)]
        print(f"demo removed ({len(removed)} namespaces)")
        return 0
    if name not in runner.running():
        runner.up(*runner.load(name))
    runner.use(name)
    if sys.stdout.isatty() and sys.stdin.isatty():
        from tui.app import VxrayApp
        from tui.source import live

        VxrayApp(live([])).run()
        return 0
    ctx = runner.context(name)
    for host in ctx.store.hosts():
        scope = engine_scope(host.netns or "") if args.docker else (ctx.host(host.name).scope(), "none")
        print("\n".join(snapshot_lines(collect(*scope))))
        print()
    if args.docker:
        print(f"Lab {name} is up and current: two real Docker Engines in a swarm, overlay prod, vm3 and vm4 on dh1, "
              f"vm33 on dh2. Try `vxray trace vm33 vm3`, `vxray doctor`; `vxray demo down` removes it.")  # fmt: skip
        return 0
    print(f"Lab {DEMO} is up and current: vm33 cannot ping vm3. Try `vxray lab check`, `vxray fdb sync prod`, "
          f"then `vxray lab check` again; `vxray demo down` removes it.")  # fmt: skip
    return 0


def _context(args: argparse.Namespace) -> Any:
    """The store to act on: --store, else $VXRAY_STORE, else the current lab's, else the default file."""
    from backend.lab import runner
    from backend.ops.context import Context
    from backend.store.registry import chosen, open_store

    if chosen(args.store) is None and (lab := runner.current()):
        return runner.context(lab)
    return Context(open_store(args.store, args.store_token))


def _lab(args: argparse.Namespace) -> int:
    from backend.lab import runner

    if args.action == "up":
        spec, text = runner.load(args.source, args.name)
        runner.up(spec, text)
        return _emit(args, {"lab": spec.name, "up": True}, f"lab {spec.name} is up and current")
    if args.action == "down":
        removed = runner.down(args.name)
        return _emit(
            args, {"lab": args.name, "removed": removed}, f"lab {args.name}: {len(removed)} namespaces removed"
        )
    if args.action == "use":
        runner.use(args.name)
        return _emit(args, {"lab": args.name, "current": True}, f"lab {args.name} is current")
    if args.action == "ls":
        names = runner.builtin_names() if args.builtin else runner.running()
        return _emit(args, names, "\n".join(names) or "(none)")
    name = args.name or runner.current()
    if name is None:
        raise VxrayError("no lab is current: name one")
    if args.action == "export":
        print(runner.export(name), end="")
        return 0
    if args.action == "status":
        info = runner.status(name)
        ctrs = list(info["reachability"])
        grid = [["from \\ to", *ctrs]] + [[a, *("." if a == b else ("ok" if info["reachability"][a].get(b) else "--")
                                                 for b in ctrs)] for a in ctrs]  # fmt: skip
        width = max(len(c) for row in grid for c in row)
        text = "\n".join([
            _table(info["hosts"], ["name", "vtep", "netns"]), "",
            _table(info["networks"], ["name", "driver", "subnet", "gateway", "vni", "host"]), "",
            _table(info["containers"], ["name", "host", "mode", "networks"]), "",
            *("  ".join(c.ljust(width) for c in row) for row in grid),
        ])  # fmt: skip
        return _emit(args, info, text)
    failing = runner.check(name)
    if args.json:
        print(json.dumps({"lab": name, "solved": not failing, "failing": [list(p) for p in failing]}))
    else:
        print("solved" if not failing else "not solved: " + ", ".join(f"{a} -> {b}" for a, b in failing))
    return 0 if not failing else 1


def _network(args: argparse.Namespace) -> int:
    from backend.ops import containers, networks

    ctx = _context(args)
    if args.action == "create":
        opts = {}
        for opt in args.opt:
            key, sep, value = opt.partition("=")
            if not sep:
                raise UsageError(f"invalid option {opt!r}: expected KEY=VALUE")
            opts[key] = value
        rec = networks.create(ctx, args.name, args.driver, args.subnet, args.gateway, args.vni, args.mtu,
                              learning=args.learning, internal=args.internal, options=opts, host=args.host)  # fmt: skip
        return _emit(args, rec, rec.id)
    if args.action == "ls":
        rows = networks.network_list(ctx)
        return _emit(args, rows, _table(rows, ["name", "id", "driver", "subnet", "gateway", "vni", "host"]))
    if args.action == "inspect":
        print(json.dumps(networks.inspect(ctx, args.name), indent=2))
        return 0
    if args.action == "rm":
        networks.remove(ctx, args.name, args.force)
        return _emit(args, {"removed": args.name}, args.name)
    if args.action == "repair":
        fixed = networks.repair(ctx, args.name, args.host)
        return _emit(args, fixed, "\n".join(fixed))
    if args.action == "connect":
        ep = containers.connect(ctx, args.network, args.container, args.ip, args.mac)
        return _emit(args, ep, f"{ep.container} {ep.ifname} {ep.ip} {ep.mac} on {ep.network}")
    containers.disconnect(ctx, args.network, args.container)
    return _emit(args, {"disconnected": args.container, "network": args.network}, "")


def _container(args: argparse.Namespace) -> int:
    from backend.ops import containers

    ctx = _context(args)
    if args.action == "run":
        rec = containers.run(ctx, args.name, args.host, args.net, args.ip, args.mac, args.network_mode)
        return _emit(args, containers.inspect(ctx, rec.name), rec.name)
    if args.action == "rm":
        containers.remove(ctx, args.name)
        return _emit(args, {"removed": args.name}, args.name)
    if args.action == "ls":
        rows = containers.container_list(ctx)
        return _emit(args, rows, _table(rows, ["name", "host", "mode", "netns", "networks"]))
    info = containers.inspect(ctx, args.name)
    nets = "\n".join(f"  {n}: {v['interface']} {v['ip']} {v['mac']}" for n, v in info["networks"].items())
    return _emit(args, info, f"{info['name']} on host {info['host']} netns {info['netns']} ({info['mode']})\n{nets}")


def _fdb(args: argparse.Namespace) -> int:
    from backend.ops import entries

    ctx = _context(args)
    if args.action == "sync":
        (net,), _ = keywords(args.words, (), 1)
        plan = entries.sync(ctx, net, args.dry_run)
        return _emit(args, [c.as_dict() for c in plan], "\n".join(f"{c.host}: {c.command}" for c in plan))
    (mac,), kw = keywords(args.words, ("dev", "dst"), 1)
    if "dst" not in kw:
        raise UsageError("fdb add/del needs `dst IP` (the remote VTEP)")
    change = entries.fdb(ctx, args.action, mac, kw["dst"], kw.get("dev"), args.netns, args.network, args.host)
    return _emit(args, change.as_dict(), f"{change.host}: {change.command}")


def _arp(args: argparse.Namespace) -> int:
    from backend.ops import entries

    ctx = _context(args)
    pos, kw = keywords(args.words, ("dev",), 2)
    ip, mac = pos[0], pos[1] if len(pos) > 1 else None
    change = entries.arp(ctx, args.action, ip, mac, args.container, args.netns, kw.get("dev"), args.host)
    return _emit(args, change.as_dict(), f"{change.host}: {change.command}")


def _host(args: argparse.Namespace) -> int:
    from backend.ops import hostops

    ctx = _context(args)
    if args.action == "add":
        rec = hostops.add(ctx, args.name, args.netns, args.vtep)
        return _emit(args, rec, rec.name)
    if args.action == "rm":
        hostops.remove(ctx, args.name)
        return _emit(args, {"removed": args.name}, args.name)
    if args.action == "set":
        done = hostops.set_(ctx, args.name, args.settings)
        return _emit(args, done, "\n".join(f"{args.name}: {d}" for d in done))
    rows = hostops.host_list(ctx)
    return _emit(args, rows, _table(rows, ["name", "vtep", "netns"]))


def _current(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The context to act on and, when it is a lab, the namespace joining its hosts (its underlay)."""
    from backend.lab import runner
    from backend.store.registry import chosen

    lab = None if chosen(args.store) else runner.current()
    return _context(args), (f"{lab}.ul" if lab else None)


def _store_args(args: argparse.Namespace) -> list[str]:
    """The global flags as given, to pass on (to the shell's commands, to the app's source, to an agent's
    operations): the store, the machines (``--host``, ``--on``) and ``--read-only``."""
    return [*(["--store", args.store] if args.store is not None else []),
            *(["--store-token", args.store_token] if args.store_token else []),
            *(f for r in args.remotes for f in ("--host", r)), *(["--on", args.on] if args.on else []),
            *(["--read-only"] if args.read_only else [])]  # fmt: skip


def _observed(args: argparse.Namespace) -> tuple[Any, Any, dict[str, str]]:
    """The context, a ``World`` of every host it knows (a lab's underlay included), and the
    netns name behind each label that is not one (the lab's underlay, read as "host")."""
    from backend.observe import observe
    from diagnostics.world import World

    ctx, underlay = _current(args)
    snap, labels = observe(ctx, underlay)
    return ctx, World([snap], labels), ({"host": underlay} if underlay else {})


def _endpoint(ctx: Any, world: Any, word: str, other: str | None = None) -> tuple[str, str | None]:
    """A trace end: a container (its namespace, its address — on a network shared with ``other``), a
    namespace, an IP, or HOST:PORT; (namespace label or IP, port)."""
    from backend import validate
    from backend.ops.containers import address_seen_from

    host, colon, port = word.rpartition(":")
    if colon and port.isdigit():
        rec = ctx.store.host(host)
        return (rec.vtep if rec and rec.vtep else validate.ipv4(host)), validate.port(port)
    rec = ctx.store.container(word)
    if rec is not None:
        if other is None:
            if rec.netns is None:
                raise VxrayError(f"container {word} uses the host's network: trace from its host instead")
            return rec.netns, None
        ip = address_seen_from(ctx.store.endpoints(), word, other)
        if ip is None:
            raise VxrayError(f"container {word} has no address to trace to")
        return ip, None
    if other is None:  # a Docker container by its name, a namespace
        place = world.place_of(word)
        if place is None:
            raise VxrayError(f"unknown container or namespace {word!r}")
        return place.label, None
    return world.address_of(word, world.place_of(other)), None


def _trace(args: argparse.Namespace) -> int:
    from diagnostics.trace import trace
    from tui.trace_text import trace_lines

    if args.proto not in ("icmp", "tcp", "udp"):
        raise UsageError(f"invalid --proto {args.proto!r}: icmp, tcp or udp")
    if args.size is not None and not 0 <= args.size <= 65507:
        raise UsageError(f"invalid --size {args.size}: 0-65507 bytes of payload")
    ctx, world, real = _observed(args)
    src, _ = _endpoint(ctx, world, args.src)
    dst, port = _endpoint(ctx, world, args.dst, args.src)
    proto = "tcp" if port and args.proto == "icmp" else args.proto
    t = trace(world, src, dst, proto, args.dport or port, args.size, args.df)
    if args.live:
        return _live(args, world, t, real, src, dst, proto, args.dport or port)
    if args.json:
        print(json.dumps(t.as_dict(), indent=2))
    else:
        dport = args.dport or port
        header = f"trace {args.src} -> {args.dst} ({dst}{f':{dport}' if dport else ''}), {proto}"
        print("\n".join(trace_lines(t, _names(world), header)))
    return 0 if t.delivered else 1


def _names(world: Any) -> dict[str, str]:
    """What to call each namespace in a trace: its container, its overlay's sandbox, its host."""
    return {
        **{ns: f"{net} sandbox" for ns, net in world.labels.networks.items()},
        **{ns: f"{h} (host)" for h, ns in world.labels.host_netns.items()},
        **world.labels.containers,
    }


def _live(args: argparse.Namespace, world: Any, t: Any, real: dict[str, str], src: str, dst: str, proto: str,
          dport: int | None) -> int:  # fmt: skip
    """Send the probe, then print each simulated step with what the capture saw."""
    from backend.probe import Probe, run
    from diagnostics.live import watch_points

    points = [(real.get(ns, ns), dev) for ns, dev in watch_points(t)]
    seen = run(Probe(real.get(src, src), dst, proto, dport, args.size, args.df), points)
    seen = {(next((k for k, v in real.items() if v == ns), ns), dev, d) for ns, dev, d in seen}
    return live_report(args, world, t, seen, proto)


def live_report(args: argparse.Namespace, world: Any, t: Any, seen: set[tuple[str, str, str]], proto: str) -> int:
    """Each simulated step beside what the capture saw; the first disagreement loudly."""
    from diagnostics.live import compare, first_disagreement

    rows = compare(t, seen, ("request", "reply") if proto == "icmp" else ("request",))
    bad = first_disagreement(rows)
    if args.json:
        print(json.dumps({**t.as_dict(), "live": [{"expected": r.expected, "seen": r.seen} for r in rows],
                          "first_disagreement": bad}, indent=2))  # fmt: skip
    else:
        names = _names(world)
        for i, r in enumerate(rows, 1):
            s = r.step
            live = "" if r.expected is None else ("seen" if r.seen else "not seen")
            flag = "" if r.agrees else "   <<< DISAGREES with the simulation"
            where = f"{names.get(s.netns, s.netns)[-20:]} {s.dev}" if s.dev else names.get(s.netns, s.netns)[-20:]
            print(f"{i:3}  {'ok' if s.ok else 'XX'}  {s.direction:<7} {where:<32} {s.table:<14} {live:<9} "
                  f"{s.decision}{flag}")  # fmt: skip
        print("live probe agrees with the simulation at every step it could watch" if bad is None else
              f"!!! FIRST DISAGREEMENT at step {bad + 1}: the simulation says "
              f"{'seen' if rows[bad].expected else 'not seen'}, the capture says "
              f"{'seen' if rows[bad].seen else 'not seen'}")  # fmt: skip
    return 0 if t.delivered else 1


def _ping(args: argparse.Namespace) -> int:
    import subprocess

    if args.count < 1:
        raise UsageError(f"invalid count {args.count}: at least 1")
    ctx, world, real = _observed(args)
    src, _ = _endpoint(ctx, world, args.src)
    dst, _ = _endpoint(ctx, world, args.dst, args.src)
    inside = [] if src == "host" and not real else ["ip", "netns", "exec", real.get(src, src)]  # the machine's own
    return subprocess.run([*inside, "ping", "-c", str(args.count), dst]).returncode


def _shell(args: argparse.Namespace) -> int:
    from tui import shell

    return shell.main(args)


def _wanted(store: Registry) -> Desired:
    """What a store says should exist: what the doctor compares the kernel with."""
    from diagnostics.doctor import Desired

    return Desired(tuple(store.hosts()), tuple(store.networks()), tuple(store.endpoints()))


def doctor_lines(findings: list[Finding]) -> list[str]:
    """Findings as the doctor prints them."""
    lines = []
    for i, f in enumerate(findings, 1):
        lines.append(f"{i:2}. [{f.likelihood:.0%}] {f.host}: {f.title}")
        lines += [f"      evidence: {e}" for e in f.evidence]
        if f.fix and f.fix.vxray:
            lines.append(f"      fix: {f.fix.vxray}")
        if f.fix and f.fix.native:
            lines.append(f"      or:  {f.fix.native}")
    return lines


def _doctor(args: argparse.Namespace) -> int:
    from diagnostics.doctor import doctor

    ctx, world, _ = _observed(args)
    want = _wanted(ctx.store)
    if not want.hosts:  # no vxray store (a Docker host): what the host shows is what should be
        from diagnostics.desired import observed

        want = observed(world)
    findings = doctor(world, want)
    if args.json:
        print(json.dumps([f.as_dict() for f in findings], indent=2))
    else:
        print("\n".join(doctor_lines(findings)) or f"no findings on {len(want.hosts)} host(s)")
    return 1 if any(f.likelihood >= 0.5 for f in findings) else 0


def _port(args: argparse.Namespace) -> int:
    from backend.ops import ports

    p = ports.publish(_context(args), args.container, args.mapping)
    return _emit(args, p, f"{args.container} {p.host_port}->{p.port}/{p.proto}")


def _app(args: argparse.Namespace) -> int:
    from backend import inventory
    from backend.lab import runner
    from backend.store import registry
    from tui.app import VxrayApp
    from tui.source import from_file, live

    chosen = args.load or registry.chosen(args.store) or runner.current()
    saved = [] if chosen else remote_cli.known(inventory.load())
    if saved:  # no lab, no store given: the machines saved with `vxray hosts add` (and discovered) are what it opens
        args.remotes = ["all"]
        return remote_cli.dispatch(args, ["app"])
    source = from_file(args.load) if args.load else live(_store_args(args))
    VxrayApp(source, read_only=args.read_only).run()
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "lab": _lab,
    "snapshot": _snapshot, "demo": _demo, "network": _network, "container": _container, "fdb": _fdb,
    "arp": _arp, "host": _host, "port": _port, "trace": _trace, "doctor": _doctor, "ping": _ping, "shell": _shell,
    "app": _app, "agent": remote_cli.agent, "hosts": remote_cli.hosts,
}  # fmt: skip


def _journaled(args: argparse.Namespace, command: list[str]) -> int:
    """An operation an agent started: its outcome is recorded on this machine, whoever is still listening."""
    from backend import journal

    status = 2  # the agent recorded its start
    try:
        status = COMMANDS[args.command](args)
    except VxrayError as exc:
        print(f"vxray: {one_line(exc)}", file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        journal.finished(args.journal, command, status)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv) or ["app"]  # `vxray` alone opens the app
    try:
        args, extra = parser().parse_known_args(argv)
        if args.command is None and not extra:  # `vxray`, `vxray -H a -H b`: the app
            argv = [*argv, "app"]
            args, extra = parser().parse_known_args(argv)
        if extra and hasattr(args, "words") and not any(x.startswith("-") for x in extra):
            args.words += extra  # iproute2 style: `fdb add MAC --network NET dst IP` mixes words and options
        elif extra:
            raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
        command = remote_cli.command_argv(argv)
        if args.remotes and args.command not in ("agent", "hosts"):
            return remote_cli.dispatch(args, command)
        why = read_only_refusal(command) if args.read_only else None
        if why:
            raise VxrayError(why)
        if args.journal:
            return _journaled(args, command)
        return COMMANDS[args.command](args)
    except VxrayError as exc:
        print(f"vxray: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
