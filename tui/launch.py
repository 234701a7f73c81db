"""The doors that open a session: the app (and the demo lab shown in it) and the agent.

``tui.cli`` loads this module by name only when one of them is asked for: the
app pulls in Textual, which a one-off command such as ``vxray snapshot`` must not
pay for at start-up.
"""

from __future__ import annotations

import argparse
import sys

from tui import machines
from tui.app import VxrayApp
from tui.context import Invocation
from tui.registry import POLICY
from tui.source import from_file, live, remote
from tui.summary import snapshot_lines

DEMO = "overlay-static"
DOCKER_DEMO = "docker-swarm"


def app(args: argparse.Namespace) -> int:
    from backend import inventory
    from backend.lab import runner
    from backend.store import registry

    if args.remotes:
        ms = machines.machines(args)
        VxrayApp(remote(ms, args.read_only), read_only=args.read_only).run()
        return 0
    chosen = args.load or registry.chosen(args.store) or runner.current()
    if not chosen and machines.known(inventory.load()):  # no lab, no store: the machines saved and discovered
        args.remotes = ["all"]
        return app(args)
    source = from_file(args.load) if args.load else live(Invocation.of(args))
    VxrayApp(source, read_only=args.read_only).run()
    return 0


def demo(args: argparse.Namespace) -> int:
    """The seed lab of the field notes, then the main view: the app on a terminal, the snapshots otherwise."""
    from backend.collect import collect
    from backend.lab import runner
    from backend.observe import engine_scope

    name = DOCKER_DEMO if args.docker else DEMO
    if args.action == "down":
        removed = [ns for lab in (DEMO, DOCKER_DEMO) if lab in runner.running() for ns in runner.down(lab)]
        print(f"demo removed ({len(removed)} namespaces)")
        return 0
    if name not in runner.running():
        runner.up(*runner.load(name))
    runner.use(name)
    if sys.stdout.isatty() and sys.stdin.isatty():
        VxrayApp(live(Invocation())).run()
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


def agent(args: argparse.Namespace) -> int:
    return machines.agent(args, POLICY)
