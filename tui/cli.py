"""``vxray``: parse the command line, pick the door, launch.

The doors are the app (``vxray`` alone, ``vxray app``), the shell, the demo, the
agent, and a command run once (``tui.dispatch``). Nothing but entry points and
tests imports this module. Every failure an operator can cause ends as one line
on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from backend.errors import VxrayError, one_line
from tui import dispatch
from tui.registry import POLICY

DOORS = {"app": "tui.launch:app", "demo": "tui.launch:demo", "agent": "tui.launch:agent", "shell": "tui.shell:main"}


def _door(name: str) -> Callable[[argparse.Namespace], int]:
    """A door's launcher, loaded by name when it is opened: the app's Textual and the shell's prompt-toolkit
    are not what ``vxray snapshot`` should start with."""
    module, _, function = DOORS[name].partition(":")
    return getattr(importlib.import_module(module), function)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv) or ["app"]  # `vxray` alone opens the app
    try:
        args = dispatch.parse(argv)
        if args.command is None:  # `vxray -H a -H b`, `vxray --read-only`: the app
            argv = [*argv, "app"]
            args = dispatch.parse(argv)
        command = dispatch.command_argv(argv)
        if args.command in DOORS:
            why = POLICY.read_only_refusal(command) if args.read_only else None
            if why:
                raise VxrayError(why)
            return _door(args.command)(args)
        return dispatch.execute(args, command, "bash")
    except VxrayError as exc:
        print(f"vxray: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
