"""The agent protocol: JSON lines over a pipe (``ssh host vxray agent --stdio``), versioned.

Pure: messages in and out, and which operations an agent may run. The agent
greets first with its protocol number, so a client talking to another version
says so in one line instead of misreading. Operations are vxray's own commands
(their argv, never a shell line); the agent refuses anything else, and a
read-only agent or client refuses every operation that changes state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from backend.errors import VxrayError

PROTOCOL = 1

# vxray commands an agent runs for a client: (command, action); None: any action / a command without one
RUNNABLE = {"network", "container", "fdb", "arp", "host", "port", "trace", "doctor", "snapshot", "ping"}
READS = {("network", "ls"), ("network", "inspect"), ("container", "ls"), ("container", "inspect"), ("host", "ls"),
         ("trace", None), ("doctor", None), ("snapshot", None), ("ping", None), ("lab", "ls"), ("lab", "status"),
         ("lab", "check"), ("lab", "export"), ("hosts", "ls"), ("app", None), ("shell", None),
         ("agent", None)}  # fmt: skip
GROUPED = {"network", "container", "fdb", "arp", "host", "port", "lab", "hosts"}


@dataclass(frozen=True)
class Hello:
    """What an agent says first."""

    protocol: int
    version: str
    host: str
    read_only: bool = False

    def line(self) -> str:
        return json.dumps({"vxray": "agent", "protocol": self.protocol, "version": self.version, "host": self.host,
                           "read_only": self.read_only})  # fmt: skip


@dataclass(frozen=True)
class Request:
    id: int
    op: str  # snapshot | subscribe | run | ping
    args: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return json.dumps({"id": self.id, "op": self.op, "args": self.args})


class ProtocolError(VxrayError, ValueError):
    """A line that is not a message of this protocol."""


def parse_hello(line: str) -> Hello:
    try:
        data = json.loads(line)
        if data.get("vxray") != "agent":
            raise ValueError
        return Hello(int(data["protocol"]), str(data.get("version", "?")), str(data.get("host", "?")),
                     bool(data.get("read_only")))  # fmt: skip
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ProtocolError(f"not a vxray agent greeting: {line.strip()[:80]!r}") from None


def parse_request(line: str) -> Request:
    try:
        data = json.loads(line)
        return Request(int(data["id"]), str(data["op"]), dict(data.get("args") or {}))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ProtocolError(f"not a request: {line.strip()[:80]!r}") from None


def reply(req_id: int, result: Any = None, error: str | None = None) -> str:
    if error is not None:
        return json.dumps({"id": req_id, "ok": False, "error": error})
    return json.dumps({"id": req_id, "ok": True, "result": result})


def event(kind: str, **data: Any) -> str:
    return json.dumps({"event": kind, **data})


def changes_state(argv: list[str]) -> bool:
    """Whether a vxray command line changes the kernel or the store (what ``--read-only`` refuses)."""
    command = argv[0] if argv else ""
    action = argv[1] if command in GROUPED and len(argv) > 1 else None
    if command == "fdb" and action == "sync" and "--dry-run" in argv:
        return False
    return (command, action) not in READS and (command, None) not in READS


def read_only_refusal(argv: list[str]) -> str | None:
    """What ``--read-only`` says of ``argv`` — locally, in the client and in the agent alike (None: it may run)."""
    return f"read-only: refused `{' '.join(argv[:2])}` (it changes state)" if changes_state(argv) else None


def refusal(argv: list[str], read_only: bool) -> str | None:
    """Why an agent does not run ``argv`` (None: it does)."""
    if not argv or argv[0] not in RUNNABLE:
        return f"not a vxray operation an agent runs: {(argv or [''])[0]!r} (allowed: {', '.join(sorted(RUNNABLE))})"
    return read_only_refusal(argv) if read_only else None
