"""Where a command acts: the global flags of one invocation, as one frozen value, and what they lead to.

bash, the shell, the app's command line and an agent's operation all start from
the same flags (``--store``, ``--store-token``, ``--host``, ``--on``,
``--read-only``); everything derived from them — the store's context, the lab's
underlay, the world every host shows, the desired state the doctor compares it
with — is derived here, once, the same way for every door.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded where a command needs them: `vxray snapshot` starts without the store or diagnostics
    from backend.ops.context import Context
    from backend.store.registry import Registry
    from diagnostics.doctor import Desired
    from diagnostics.world import World


@dataclass(frozen=True)
class Invocation:
    """The global flags as given."""

    store: str | None = None
    store_token: str | None = None
    remotes: tuple[str, ...] = ()
    on: str | None = None
    read_only: bool = False

    @classmethod
    def of(cls, args: argparse.Namespace) -> Invocation:
        return cls(args.store, args.store_token, tuple(args.remotes), args.on, args.read_only)

    def flags(self) -> list[str]:
        """The flags as words, to pass on (to an agent's operation, to a child process)."""
        return [*(["--store", self.store] if self.store is not None else []),
                *(["--store-token", self.store_token] if self.store_token else []),
                *(f for r in self.remotes for f in ("--host", r)), *(["--on", self.on] if self.on else []),
                *(["--read-only"] if self.read_only else [])]  # fmt: skip

    def context(self) -> Context:
        """The store to act on: --store, else $VXRAY_STORE, else the current lab's, else the default file."""
        from backend.lab import runner
        from backend.ops.context import Context
        from backend.store.registry import chosen, open_store

        if chosen(self.store) is None and (lab := runner.current()):
            return runner.context(lab)
        return Context(open_store(self.store, self.store_token))

    def current(self) -> tuple[Context, str | None]:
        """The context and, when it is a lab, the namespace joining its hosts (its underlay)."""
        from backend.lab import runner
        from backend.store.registry import chosen

        lab = None if chosen(self.store) else runner.current()
        return self.context(), (f"{lab}.ul" if lab else None)

    def observed(self) -> tuple[Context, World, dict[str, str]]:
        """The context, a ``World`` of every host it knows (a lab's underlay included), and the netns name behind
        each label that is not one (the lab's underlay, read as "host")."""
        from backend.observe import observe
        from diagnostics.world import World

        ctx, underlay = self.current()
        snap, labels = observe(ctx, underlay)
        return ctx, World([snap], labels), ({"host": underlay} if underlay else {})


def wanted(store: Registry) -> Desired:
    """What a store says should exist: what the doctor compares the kernel with."""
    from backend.ops.flannel import layout
    from diagnostics.doctor import Desired

    hosts, networks = store.hosts(), store.networks()
    flannel = tuple(layout(n, hosts) for n in networks if n.driver == "flannel")  # flannel's etcd, when it has one
    return Desired(tuple(hosts), tuple(networks), tuple(store.endpoints()), flannel)


def desired(world: World, store: Registry | None) -> Desired:
    """The doctor's reference: the store's when it knows hosts; else what the hosts show together (Docker hosts
    keep no vxray store, machines over --host may share none)."""
    from diagnostics.desired import observed

    want = wanted(store) if store is not None else None
    return want if want is not None and want.hosts else observed(world)


def inventory_desired(world: World) -> Desired:
    """Machines over --host: the inventory's cluster store (hosts named as the machines), if it names one."""
    from backend import inventory
    from backend.store.registry import open_store

    url = inventory.load().store
    if not url:
        return desired(world, None)
    store = open_store(url)
    try:
        return desired(world, store)
    finally:
        store.close()
