"""One command line, from any door, to its handler: parse, refuse what the door or ``--read-only`` refuses,
then run it here, on the machines named with ``--host``, or as an agent's recorded operation.

bash, the shell and the app's ``:`` line all end here, so a command behaves the
same whichever way it was typed.
"""

from __future__ import annotations

import argparse
import sys
from functools import cache

from backend.errors import VxrayError, one_line
from tui import machines
from tui.grammar import Parser, UsageError, parser
from tui.registry import COMMANDS, POLICY, Handler

GLOBAL_WITH_VALUE = ("-H", "--host", "--on", "--store", "--store-token", "--journal")


@cache
def grammar() -> Parser:
    """The parser, built once per process (building it costs milliseconds; the shell parses every line)."""
    return parser()


def parse(argv: list[str]) -> argparse.Namespace:
    """``argv`` as arguments; iproute2 style, words and options mix (``fdb add MAC --network NET dst IP``)."""
    args, extra = grammar().parse_known_args(argv)
    if extra and hasattr(args, "words") and not any(x.startswith("-") for x in extra):
        args.words += extra
    elif extra:
        raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
    return args


def command_argv(argv: list[str]) -> list[str]:
    """The command and its arguments without the global options vxray reads itself."""
    skip = False
    for i, word in enumerate(argv):
        if skip:
            skip = False
            continue
        if word in GLOBAL_WITH_VALUE:
            skip = True
            continue
        if word.startswith(tuple(f"{w}=" for w in GLOBAL_WITH_VALUE if w.startswith("--"))) or word == "--read-only":
            continue
        return argv[i:]
    return []


def execute(args: argparse.Namespace, command: list[str], door: str) -> int:
    """Run a parsed command that has a handler; ``door`` is where it was typed (``bash``, ``shell``, ``line``)."""
    spec = COMMANDS[args.command]
    if door not in spec.doors or spec.handler is None:
        raise VxrayError(f"{args.command}: not a command here (`{args.command}` runs from bash)")
    why = POLICY.read_only_refusal(command) if args.read_only else None
    if why:
        raise VxrayError(why)
    if args.remotes and spec.remote == "read":
        return machines.read_command(args, machines.machines(args))
    if args.remotes and spec.remote == "run":
        return machines.run_on_one(args, machines.machines(args), command)
    if args.remotes and spec.remote == "local":
        raise VxrayError(f"{args.command} acts on this machine; it does not take --host")
    if args.journal:
        return _journaled(spec.handler, args, command)
    return spec.handler(args)


def _journaled(handler: Handler, args: argparse.Namespace, command: list[str]) -> int:
    """An operation an agent started: its outcome is recorded on this machine, whoever is still listening."""
    from backend import journal

    status = 2  # the agent recorded its start
    try:
        status = handler(args)
    except VxrayError as exc:
        print(f"vxray: {one_line(exc)}", file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        journal.finished(args.journal, command, status)
    return status


def run_words(flags: list[str], words: list[str], door: str) -> int:
    """A line of the shell or the app: the session's global flags, then the words typed."""
    args = parse([*flags, *words])
    if args.command is None:
        raise UsageError("a command comes first")
    return execute(args, command_argv([*flags, *words]), door)
