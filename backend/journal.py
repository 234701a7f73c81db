"""What an agent's operations did, kept on the machine that ran them.

An operation started over SSH must not depend on the connection staying up: the
agent starts it as its own process (a new session, output to a file, not to the
pipe), and the operation writes its outcome here when it ends — even if the
agent and the connection are gone by then. A client whose connection dropped
reconnects and reads the outcome: what was applied (the command's own output),
or that it failed and rolled back, or that it is still running. One JSON file per
operation under ``$VXRAY_HOME/journal`` (default ``/var/lib/vxray/journal``).
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from backend import env
from backend.errors import VxrayError

TOKEN = re.compile(r"^[0-9a-f]{32}$")


def directory() -> str:
    return os.path.join(env.path("VXRAY_HOME", "/var/lib/vxray", directory=True), "journal")


def path(token: str) -> str:
    if not TOKEN.match(token):
        raise VxrayError(f"bad operation token {token!r}")
    return os.path.join(directory(), f"{token}.json")


def output_path(token: str) -> str:
    """Where the operation's stdout and stderr go while it runs (a file survives the agent; a pipe does not)."""
    return path(token).removesuffix(".json") + ".out"


def _write(token: str, data: dict[str, Any]) -> None:
    os.makedirs(directory(), exist_ok=True)
    tmp = f"{path(token)}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path(token))  # a reader sees the old record or the new one, never half


def started(token: str, argv: list[str]) -> None:
    _write(token, {"argv": argv, "state": "running", "started": time.time()})


def finished(token: str, argv: list[str], status: int) -> None:
    """The outcome, with everything the operation printed (its changes, or its error and roll-back)."""
    try:
        with open(output_path(token)) as f:
            output = f.read().rstrip()
    except FileNotFoundError:
        output = ""
    _write(token, {"argv": argv, "state": "done", "status": status, "output": output, "ended": time.time()})


def outcome(token: str) -> dict[str, Any] | None:
    """The record of an operation, or None if this machine never started it."""
    try:
        with open(path(token)) as f:
            return dict(json.load(f))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise VxrayError(f"cannot read the journal of {token}: {exc}") from None
