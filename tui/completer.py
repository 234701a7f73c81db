"""Tab completion for the shell: the grammar's words and flags, and names from live state.

Command words come from the command registry, for the door asking (the shell
offers ``use`` and ``exit``, the app's line does not); actions and flags from the
same argparse grammar bash uses, so they never drift apart. Values come from the ``Vocabulary``: hosts,
networks, containers, namespaces, the devices of the namespace the line names,
and for ``fdb add`` / ``arp add`` the remote endpoints' MAC/IP pairs and the
other hosts' VTEPs — adding the field notes' entries takes a few Tab presses.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Iterator

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from tui import registry
from tui.dispatch import grammar
from tui.show import TABLES
from tui.vocabulary import Vocabulary

MAX_COMPLETIONS = 200
# the door's own words (the commands' are the registry's)
OWN_POSITIONAL: dict[tuple[str, str | None], tuple[str, ...]] = {
    ("use", None): ("hosts_or_lab",), ("use", "lab"): ("labs",), ("show", None): ("tables",),
    ("help", None): ("commands",),
}  # fmt: skip
OPTION_VALUES = {"--host": "hosts", "--net": "networks", "--network": "networks", "--container": "containers",
                 "--netns": "namespaces", "--driver": "drivers", "-d": "drivers", "--network-mode": "modes",
                 "--proto": "protos"}  # fmt: skip
SETTINGS = ["ip_forward=1", "ip_forward=0", "ip6_forward=1", "ip6_forward=0", "rp_filter=2", "forward_policy=ACCEPT",
            "forward_policy=DROP", "udp.4789=accept", "udp.4789=drop", "mtu.eth0=1500"]  # fmt: skip


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(p: argparse.ArgumentParser) -> dict[str, bool]:
    """Option strings -> whether they take a value."""
    return {s: a.nargs != 0 for a in p._actions for s in a.option_strings}


class VxrayCompleter(Completer):
    """Completion for one door: ``shell`` or ``line`` (the app's command line)."""

    def __init__(
        self, vocabulary: Callable[[], Vocabulary], host: Callable[[], str | None], door: str = "shell"
    ) -> None:
        self.vocabulary = vocabulary
        self.host = host
        self.offered = registry.offered(door)
        self.commands = {name: p for name, p in _subparsers(grammar()).items() if name in self.offered}

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        text = document.text_before_cursor
        words = text.split()
        current = "" if not text or text[-1].isspace() else words.pop()
        count = 0
        for value, meta in self.candidates(words, current):
            if value.startswith(current):
                yield Completion(value, -len(current), display_meta=meta)
                count += 1
                if count >= MAX_COMPLETIONS:
                    return

    def candidates(self, words: list[str], current: str) -> Iterable[tuple[str, str]]:
        """What may come after ``words`` (``current`` is the word being typed)."""
        if not words:
            return list(self.offered.items())
        command, rest = words[0], words[1:]
        if command in ("fdb", "arp"):
            return self._entries(command, rest, current)
        sub = self.commands.get(command)
        action = None
        if sub is not None and _subparsers(sub):
            if not rest:
                return [(a, "") for a in _subparsers(sub)]
            action, rest = rest[0], rest[1:]
            sub = _subparsers(sub).get(action)
        if command == "use" and rest[:1] == ["lab"]:
            action, rest = "lab", rest[1:]
        if command == "show":
            return self._show(rest)
        options = _options(sub) if sub is not None else {}
        if rest and options.get(rest[-1]):
            return self._values(OPTION_VALUES.get(rest[-1], ""), words)
        if current.startswith("-"):
            return [(o, "") for o in options]
        positional = [w for i, w in enumerate(rest) if not w.startswith("-") and not (i and options.get(rest[i - 1]))]
        kinds = OWN_POSITIONAL.get((command, action)) or registry.positional([command, *([action] if action else [])])
        return self._values(kinds[len(positional)], words) if len(positional) < len(kinds) else []

    def _values(self, kind: str, words: list[str]) -> list[tuple[str, str]]:
        v = self.vocabulary()
        return {
            "hosts": [(h, v.vteps.get(h, "")) for h in v.hosts],
            "hosts_or_lab": [*((h, "host") for h in v.hosts), ("lab", "switch to a lab")],
            "networks": [(n, d) for n, d in v.networks.items()],
            "vxlan_networks": [(n, d) for n, d in v.networks.items() if d in ("overlay", "flannel")],  # fdb sync's
            "containers": [(c, "") for c in v.containers],
            "namespaces": [(n, "") for n in v.namespaces] + [(c, "container") for c in v.containers],
            "labs": [(n, "up") for n in v.labs],
            "builtin": [(n, "scenario") for n in v.builtin],
            "drivers": [(d, "") for d in ("bridge", "overlay", "macvlan", "flannel")],
            "modes": [(m, "") for m in ("bridge", "host", "none", *(f"container:{c}" for c in v.containers))],
            "protos": [(p, "") for p in ("icmp", "tcp", "udp")],
            "settings": [(s, "") for s in SETTINGS],
            "tables": [(t, "") for t in TABLES],
            "commands": [(c, "") for c in self.offered],
        }.get(kind, [])

    def _show(self, rest: list[str]) -> list[tuple[str, str]]:
        if not rest:
            return self._values("tables", [])
        if rest[-1] == "dev":
            v = self.vocabulary()
            return [(d, "") for d in sorted({d for devs in v.devices.values() for d in devs})]
        if rest[-1] == "netns":
            return self._values("namespaces", [])
        return [("dev", "a device"), ("netns", "a namespace")]

    def _entries(self, command: str, rest: list[str], current: str) -> list[tuple[str, str]]:
        """``fdb add MAC [--network NET | dev DEV] dst VTEP``, ``arp add IP MAC [--container C] [dev DEV]``."""
        v = self.vocabulary()
        if not rest:
            return [(a, "") for a in (("add", "del", "sync") if command == "fdb" else ("add", "del"))]
        action, args = rest[0], rest[1:]
        if command == "fdb" and action == "sync":
            return self._values("vxlan_networks", []) if not args else [("--dry-run", "")]
        prev = args[-1] if args else ""
        host = self._option(args, "--host") or self.host()
        if prev in ("--host", "--network", "--container", "--netns"):
            return self._values(OPTION_VALUES[prev], [])
        if prev == "dev":
            where = self._option(args, "--container") or self._option(args, "--netns")
            net = self._option(args, "--network")
            label = v.sandboxes.get(net or "") or where
            devs = v.devices.get(label or "", sorted({d for ds in v.devices.values() for d in ds}))
            return [(d, "") for d in devs]
        if prev == "dst":
            return [(ip, f"VTEP of {h}") for h, ip in sorted(v.vteps.items()) if h != host]
        remote = v.remote_endpoints(host)
        plain = [a for i, a in enumerate(args) if not a.startswith("-") and not (i and args[i - 1].startswith("--"))]
        if command == "fdb":
            if not plain:
                macs = [(e.mac, f"{e.container} {e.ip} on {e.host}") for e in remote]
                return macs if action == "add" else macs + [(m, "in an FDB table") for m in v.fdb_macs]
            return [("dst", "the remote VTEP"), ("dev", "a VXLAN device"), ("--network", ""), ("--host", "")]
        if not plain:
            return [(e.ip, f"{e.container} {e.mac} on {e.host}") for e in remote]
        if len(plain) == 1 and action == "add":
            return [(e.mac, f"{e.container} on {e.host}") for e in v.endpoints if e.ip == plain[0]]
        return [("--container", ""), ("--netns", ""), ("dev", "a device"), ("--host", "")]

    @staticmethod
    def _option(args: list[str], name: str) -> str | None:
        return next((args[i + 1] for i, a in enumerate(args[:-1]) if a == name), None)
