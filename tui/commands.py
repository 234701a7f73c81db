"""The commands that act on this machine (or the store, or a lab): one handler each, for every door.

A handler takes the parsed arguments and prints through ``tui.output``; the
registry (``tui.registry``) says which door offers it and how it runs elsewhere.
What a handler needs from the back end or the diagnostics it imports where it
runs, so a command loads only what it uses (`vxray snapshot` starts without the
diagnostics).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import TYPE_CHECKING

from backend import codec
from backend.errors import VxrayError
from tui.context import Invocation, desired
from tui.grammar import UsageError, keywords
from tui.output import doctor_lines, emit, names, table, write_json
from tui.summary import snapshot_lines
from tui.trace_text import trace_lines

if TYPE_CHECKING:
    from backend.ops.context import Context
    from diagnostics.trace import Trace
    from diagnostics.world import World


def snapshot(args: argparse.Namespace) -> int:

    if args.load:
        snap = codec.load_view(codec.read_file(args.load), args.load).snapshot  # a snapshot, or a saved view
    else:
        from backend.collect import collect
        from backend.netns import Scope

        snap = collect(Scope(args.host_netns, tuple(args.netns), tuple(args.netns_dir)), docker=args.docker)
    if args.json:
        write_json(codec.dumps(snap))
    else:
        print("\n".join(snapshot_lines(snap, args.limit, args.all)))
    return 0


def lab(args: argparse.Namespace) -> int:
    from backend.lab import runner

    if args.action == "up":
        spec, text = runner.load(args.source, args.name)
        runner.up(spec, text)
        return emit(args, {"lab": spec.name, "up": True}, f"lab {spec.name} is up and current")
    if args.action == "down":
        removed = runner.down(args.name)
        return emit(args, {"lab": args.name, "removed": removed}, f"lab {args.name}: {len(removed)} namespaces removed")
    if args.action == "use":
        runner.use(args.name)
        return emit(args, {"lab": args.name, "current": True}, f"lab {args.name} is current")
    if args.action == "ls":
        names = runner.builtin_names() if args.builtin else runner.running()
        return emit(args, names, "\n".join(names) or "(none)")
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
        ctrs6 = sorted({c for row in info["reachability6"].values() for c in row} | set(info["reachability6"]))
        grid6 = [["from \\ to", *ctrs6]] + [[a, *("." if a == b else {True: "ok", False: "--", None: "-"}[
            info["reachability6"].get(a, {}).get(b)] for b in ctrs6)] for a in ctrs6]  # fmt: skip
        v6 = ["subnets6"] if any(n["subnets6"] for n in info["networks"]) else []
        width = max(len(c) for row in grid + grid6 for c in row)
        text = "\n".join([
            table(info["hosts"], ["name", "vtep", "netns"]), "",
            table(info["networks"], ["name", "driver", "subnet", *v6, "gateway", "vni", "host"]), "",
            table(info["containers"], ["name", "host", "mode", "networks", *(["networks6"] if v6 else [])]), "",
            *("  ".join(c.ljust(width) for c in row) for row in grid),
            *(["", "ping -6:", *("  ".join(c.ljust(width) for c in row) for row in grid6)] if info["reachability6"]
              else []),
        ])  # fmt: skip
        return emit(args, info, text)
    failing = runner.check(name)
    if args.json:
        print(json.dumps({"lab": name, "solved": not failing, "failing": [list(p) for p in failing]}))
    else:
        print("solved" if not failing else "not solved: " + ", ".join(f"{a} -> {b}" for a, b in failing))
    return 0 if not failing else 1


def network(args: argparse.Namespace) -> int:
    from backend.ops import containers, networks

    ctx = Invocation.of(args).context()
    if args.action == "create":
        opts = {}
        for opt in args.opt:
            key, sep, value = opt.partition("=")
            if not sep:
                raise UsageError(f"invalid option {opt!r}: expected KEY=VALUE")
            opts[key] = value
        rec = networks.create(ctx, args.name, args.driver, args.subnet, args.gateway, args.vni, args.mtu,
                              learning=args.learning, internal=args.internal, options=opts, host=args.host)  # fmt: skip
        return emit(args, rec, rec.id)
    if args.action == "ls":
        rows = networks.network_list(ctx)
        v6 = ["subnets6"] if any(r["subnets6"] for r in rows) else []
        return emit(args, rows, table(rows, ["name", "id", "driver", "subnet", *v6, "gateway", "vni", "host"]))
    if args.action == "inspect":
        print(json.dumps(networks.inspect(ctx, args.name), indent=2))
        return 0
    if args.action == "rm":
        networks.remove(ctx, args.name, args.force)
        return emit(args, {"removed": args.name}, args.name)
    if args.action == "repair":
        fixed = networks.repair(ctx, args.name, args.host)
        return emit(args, fixed, "\n".join(fixed))
    if args.action == "connect":
        ep = containers.connect(ctx, args.network, args.container, args.ip, args.mac, args.ip6)
        addresses = " ".join(a for a in (ep.ip, ep.ip6) if a)
        return emit(args, ep, f"{ep.container} {ep.ifname} {addresses} {ep.mac} on {ep.network}")
    containers.disconnect(ctx, args.network, args.container)
    return emit(args, {"disconnected": args.container, "network": args.network}, "")


def container(args: argparse.Namespace) -> int:
    from backend.ops import containers

    ctx = Invocation.of(args).context()
    if args.action == "run":
        rec = containers.run(ctx, args.name, args.host, args.net, args.ip, args.mac, args.network_mode, args.ip6)
        return emit(args, containers.inspect(ctx, rec.name), rec.name)
    if args.action == "rm":
        containers.remove(ctx, args.name)
        return emit(args, {"removed": args.name}, args.name)
    if args.action == "ls":
        rows = containers.container_list(ctx)
        v6 = ["networks6"] if any(r["networks6"] for r in rows) else []
        return emit(args, rows, table(rows, ["name", "host", "mode", "netns", "networks", *v6]))
    info = containers.inspect(ctx, args.name)
    nets = "\n".join(f"  {n}: {v['interface']} {' '.join(a for a in (v['ip'], v['ip6']) if a)} {v['mac']}"
                     for n, v in info["networks"].items())  # fmt: skip
    return emit(args, info, f"{info['name']} on host {info['host']} netns {info['netns']} ({info['mode']})\n{nets}")


def fdb(args: argparse.Namespace) -> int:
    from backend.ops import entries

    ctx = Invocation.of(args).context()
    if args.action == "sync":
        (net,), _ = keywords(args.words, (), 1)
        plan = entries.sync(ctx, net, args.dry_run)
        return emit(args, [c.as_dict() for c in plan], "\n".join(f"{c.host}: {c.command}" for c in plan))
    (mac,), kw = keywords(args.words, ("dev", "dst"), 1)
    if "dst" not in kw:
        raise UsageError("fdb add/del needs `dst IP` (the remote VTEP)")
    change = entries.fdb(ctx, args.action, mac, kw["dst"], kw.get("dev"), args.netns, args.network, args.host)
    return emit(args, change.as_dict(), f"{change.host}: {change.command}")


def arp(args: argparse.Namespace) -> int:
    from backend.ops import entries

    ctx = Invocation.of(args).context()
    pos, kw = keywords(args.words, ("dev",), 2)
    ip, mac = pos[0], pos[1] if len(pos) > 1 else None
    change = entries.arp(ctx, args.action, ip, mac, args.container, args.netns, kw.get("dev"), args.host)
    return emit(args, change.as_dict(), f"{change.host}: {change.command}")


def host(args: argparse.Namespace) -> int:
    from backend.ops import hostops

    ctx = Invocation.of(args).context()
    if args.action == "add":
        rec = hostops.add(ctx, args.name, args.netns, args.vtep)
        return emit(args, rec, rec.name)
    if args.action == "rm":
        hostops.remove(ctx, args.name)
        return emit(args, {"removed": args.name}, args.name)
    if args.action == "set":
        done = hostops.set_(ctx, args.name, args.settings)
        return emit(args, done, "\n".join(f"{args.name}: {d}" for d in done))
    rows = hostops.host_list(ctx)
    return emit(args, rows, table(rows, ["name", "vtep", "netns"]))


def firewall(args: argparse.Namespace) -> int:
    from backend.ops import firewall as nft

    ctx = Invocation.of(args).context()
    where = (args.family, args.table, args.chain)
    if args.action == "delete":
        if args.keyword != "handle":
            raise UsageError(f"firewall delete: expected `handle N` after the chain, got {args.keyword!r}")
        done = nft.delete(ctx, *where, args.handle, args.host, args.netns)
    else:
        done = nft.policy(ctx, *where, args.verdict, args.host, args.netns)
    return emit(args, {"command": done}, done)


def port(args: argparse.Namespace) -> int:
    from backend.ops import ports

    p = ports.publish(Invocation.of(args).context(), args.container, args.mapping)
    return emit(args, p, f"{args.container} {p.host_port}->{p.port}/{p.proto}")


def endpoint(ctx: Context, world: World, word: str, other: str | None = None,
             ip6: bool = False) -> tuple[str, int | None]:  # fmt: skip
    """A trace end: a container (its namespace, its address — on a network shared with ``other``; ``ip6``: its
    IPv6 one), a namespace, an IP (IPv6 too), or HOST:PORT; (namespace label or IP, port)."""
    import ipaddress

    from backend import validate
    from backend.ops.containers import address_seen_from

    host, colon, port = word.rpartition(":")
    try:
        return ipaddress.ip_address(word).compressed, None  # an IPv6 address ends in ":digits" too
    except ValueError:
        pass
    if colon and port.isdigit():
        rec = ctx.store.host(host)
        return (rec.vtep if rec and rec.vtep else validate.ipv4(host)), validate.port(port)
    rec = ctx.store.container(word)
    if rec is not None:
        if other is None:
            if rec.netns is None:
                raise VxrayError(f"container {word} uses the host's network: trace from its host instead")
            return rec.netns, None
        if ip6 and rec.netns is not None:  # the store's endpoints hold IPv4 addresses: the snapshot has the IPv6 one
            return world.address_of(rec.netns, world.place_of(other), ip6=True), None
        ip = address_seen_from(ctx.store.endpoints(), word, other)
        if ip is None:
            raise VxrayError(f"container {word} has no address to trace to")
        return ip, None
    if other is None:  # a Docker container by its name, a namespace
        place = world.place_of(word)
        if place is None:
            raise VxrayError(f"unknown container or namespace {word!r}")
        return place.label, None
    return world.address_of(word, world.place_of(other), ip6), None


def trace(args: argparse.Namespace) -> int:
    from diagnostics.trace import trace as simulate

    if args.proto not in ("icmp", "tcp", "udp"):
        raise UsageError(f"invalid --proto {args.proto!r}: icmp, tcp or udp")
    if args.size is not None and not 0 <= args.size <= 65507:
        raise UsageError(f"invalid --size {args.size}: 0-65507 bytes of payload")
    ctx, world, real = Invocation.of(args).observed()
    src, _ = endpoint(ctx, world, args.src)
    dst, port = endpoint(ctx, world, args.dst, args.src, args.ip6)
    proto = "tcp" if port and args.proto == "icmp" else args.proto
    t = simulate(world, src, dst, proto, args.dport or port, args.size, args.df)
    if args.write and not args.live:
        raise UsageError("trace -w writes the live probe's frames: add --live")
    if args.live:
        return _live(args, world, t, real, src, dst, proto, args.dport or port)
    if args.json:
        print(json.dumps(t.as_dict(), indent=2))
    else:
        dport = args.dport or port
        header = f"trace {args.src} -> {args.dst} ({dst}{f':{dport}' if dport else ''}), {proto}"
        print("\n".join(trace_lines(t, names(world), header)))
    return 0 if t.delivered else 1


def _live(args: argparse.Namespace, world: World, t: Trace, real: dict[str, str], src: str, dst: str, proto: str,
          dport: int | None) -> int:  # fmt: skip
    """Send the probe, then print each simulated step with what the capture saw."""
    from backend.probe import Probe, run
    from diagnostics.live import watch_points

    points = [(real.get(ns, ns), dev) for ns, dev in watch_points(t)]
    frames: list[tuple[str, str, int, bytes]] = []
    seen = run(Probe(real.get(src, src), dst, proto, dport, args.size, args.df), points, frames=frames)
    label = {v: k for k, v in real.items()}
    seen = {(label.get(ns, ns), dev, d) for ns, dev, d in seen}
    if args.write:
        save_probe(args.write, world, watch_points(t), [(label.get(ns, ns), *rest) for ns, *rest in frames])
    return live_report(args, world, t, seen, proto)


def save_probe(path: str, world: World, points: list[tuple[str, str]],
               frames: list[tuple[str, str, int, bytes]]) -> None:  # fmt: skip
    """``trace --live -w``: the probe's frames at every device the trace names, one interface per device
    (``dev@namespace@host``, as ``vxray capture`` names them), in one pcapng file."""
    from backend.pcapng import save
    from diagnostics.devices import target

    places = [(place, dev) for ns, dev in points if (place := world.find(ns)) is not None]
    index = {(place.label, dev): i for i, (place, dev) in enumerate(places)}
    named = [target(world, place.key, dev) for place, dev in places]
    save(path, [(t.name, t.description) for t in named],
         [(index[ns, dev], ts, data) for ns, dev, ts, data in frames if (ns, dev) in index])  # fmt: skip
    print(f"the probe's {len(frames)} frames at {len(points)} devices written to {path}", file=sys.stderr)


def live_report(args: argparse.Namespace, world: World, t: Trace, seen: set[tuple[str, str, str]], proto: str) -> int:
    """Each simulated step beside what the capture saw; the first disagreement loudly."""
    from diagnostics.live import compare, first_disagreement

    rows = compare(t, seen, ("request", "reply") if proto == "icmp" else ("request",))
    bad = first_disagreement(rows)
    if args.json:
        print(json.dumps({**t.as_dict(), "live": [{"expected": r.expected, "seen": r.seen} for r in rows],
                          "first_disagreement": bad}, indent=2))  # fmt: skip
    else:
        called = names(world)
        for i, r in enumerate(rows, 1):
            s = r.step
            live = "" if r.expected is None else ("seen" if r.seen else "not seen")
            flag = "" if r.agrees else "   <<< DISAGREES with the simulation"
            where = f"{called.get(s.netns, s.netns)[-20:]} {s.dev}" if s.dev else called.get(s.netns, s.netns)[-20:]
            print(f"{i:3}  {'ok' if s.ok else 'XX'}  {s.direction:<7} {where:<32} {s.table:<14} {live:<9} "
                  f"{s.decision}{flag}")  # fmt: skip
        print("live probe agrees with the simulation at every step it could watch" if bad is None else
              f"!!! FIRST DISAGREEMENT at step {bad + 1}: the simulation says "
              f"{'seen' if rows[bad].expected else 'not seen'}, the capture says "
              f"{'seen' if rows[bad].seen else 'not seen'}")  # fmt: skip
    return 0 if t.delivered else 1


def ping(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise UsageError(f"invalid count {args.count}: at least 1")
    ctx, world, real = Invocation.of(args).observed()
    src, _ = endpoint(ctx, world, args.src)
    dst, _ = endpoint(ctx, world, args.dst, args.src)
    inside = [] if src == "host" and not real else ["ip", "netns", "exec", real.get(src, src)]  # the machine's own
    with subprocess.Popen([*inside, "ping", "-c", str(args.count), dst], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:  # fmt: skip
        assert proc.stdout is not None
        for line in proc.stdout:  # through print, line by line: the app's log pane shows it as it comes
            print(line, end="", flush=True)
    return proc.returncode


def doctor(args: argparse.Namespace) -> int:
    from diagnostics.doctor import doctor as diagnose

    ctx, world, _ = Invocation.of(args).observed()
    want = desired(world, ctx.store)
    findings = diagnose(world, want)
    if args.json:
        print(json.dumps([f.as_dict() for f in findings], indent=2))
    else:
        print("\n".join(doctor_lines(findings)) or f"no findings on {len(want.hosts)} host(s)")
    return 1 if any(f.likelihood >= 0.5 for f in findings) else 0
