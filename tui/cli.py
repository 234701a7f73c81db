"""``vxray`` from bash: parse the command line, run the command, print, exit.

Every failure an operator can cause ends as one line on stderr and a non-zero
exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from backend import codec
from backend.errors import VxrayError


def _add_scope(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scope (which namespaces belong to the host)")
    g.add_argument("--host-netns", metavar="NAME", help="treat this named netns (or path) as the host's own")
    g.add_argument("--netns", metavar="NAME", action="append", default=[],
                   help="only this namespace (name, glob or path); repeatable")  # fmt: skip
    g.add_argument("--netns-dir", metavar="DIR", action="append", default=[],
                   help="only the namespaces bind-mounted in DIR (e.g. /run/docker/netns); repeatable")  # fmt: skip
    p.add_argument("--docker", metavar="URL", help="Docker Engine to label containers from "
                   "(default: $DOCKER_HOST or /var/run/docker.sock; 'none' to skip)")  # fmt: skip


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vxray", description="See and fix container networking on Linux hosts.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    snap = sub.add_parser("snapshot", help="every namespace, link, FDB, neighbour, route and NAT rule of a host")
    snap.add_argument("--json", action="store_true", help="print the snapshot as JSON (loadable with --load)")
    snap.add_argument("--load", metavar="FILE", help="read a saved JSON snapshot instead of the kernel")
    snap.add_argument("--limit", type=int, default=25, metavar="N", help="rows per table in the summary (0: all)")
    snap.add_argument("--all", action="store_true", help="also show kernel-made multicast FDB/neighbour/route entries")
    _add_scope(snap)

    demo = sub.add_parser("demo", help="build the field notes' two-host overlay in namespaces and show it")
    demo.add_argument("action", nargs="?", choices=("up", "down"), default="up")
    return p


def _snapshot(args: argparse.Namespace) -> int:
    from tui.summary import snapshot_lines

    if args.load:
        try:
            with open(args.load) as f:
                snap = codec.loads(f.read())
        except OSError as exc:
            raise VxrayError(f"cannot read {args.load}: {exc.strerror}") from None
    else:
        from backend.collect import collect
        from backend.netns import Scope

        scope = Scope(args.host_netns, tuple(args.netns), tuple(args.netns_dir))
        snap = collect(scope, docker=args.docker)
    if args.json:
        print(codec.dumps(snap))
    else:
        print("\n".join(snapshot_lines(snap, args.limit, args.all)))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from backend import demo
    from backend.collect import collect
    from tui.summary import snapshot_lines

    if args.action == "down":
        demo.down()
        print("demo removed")
        return 0
    demo.up()
    for host in demo.HOSTS:
        print("\n".join(snapshot_lines(collect(demo.scope(host), docker="none"))))
        print()
    print(f"The demo stays up; try `vxray snapshot --host-netns {demo.netns_name('yy3')} "
          f"--netns '{demo.PREFIX}yy3-*'`, and `vxray demo down` to remove it.")  # fmt: skip
    return 0


COMMANDS = {"snapshot": _snapshot, "demo": _demo}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except VxrayError as exc:
        print(f"vxray: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
