"""The agent protocol: JSON lines over a pipe (``ssh host vxray agent --stdio``), versioned.

Pure: messages in and out, and which operations an agent may run. The agent
greets first with its protocol number, so a client talking to another version
says so in one line instead of misreading. Either side may be a stranger, so
every line is read within a length limit and checked field by field here:
a bad request gets an error answer and the agent goes on; a bad answer ends
the connection with one line naming the machine. Operations are vxray's own commands
(their argv, never a shell line); the agent refuses anything else, and a
read-only agent or client refuses every operation that changes state.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from backend.errors import VxrayError
from backend.journal import TOKEN

PROTOCOL = 1
REQUEST_MAX = 2**20  # characters in a request line: an argv or a probe is well under a KiB
ANSWER_MAX = 256 * 2**20  # in an answer line: a snapshot answer may be as large as a snapshot file (codec.MAX_BYTES)
MAX_ID = 2**53  # request ids stay exact in every JSON implementation
MAX_WAIT = 30  # seconds `seen` may keep a capture open


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
    """A line that is not a message of this protocol; ``request_id``: the request it answers, when known."""

    def __init__(self, message: str, request_id: int = 0) -> None:
        super().__init__(message)
        self.request_id = request_id


@dataclass(frozen=True)
class Answer:
    """An agent's reply to request ``id`` (0: to a line it could not read as a request)."""

    id: int
    ok: bool
    result: Any = None
    error: str = ""


@dataclass(frozen=True)
class Event:
    """What an agent sends unasked after ``subscribe``: namespaces that changed."""

    namespaces: tuple[str, ...]


def read_lines(stream: TextIO, limit: int) -> Iterator[str | None]:
    """Each line of ``stream``, or None for one longer than ``limit`` characters: read to its end and dropped,
    never held whole, so a peer cannot make this side hold more than ``limit`` at once."""
    while line := stream.readline(limit + 1):
        if len(line) <= limit or line.endswith("\n"):
            yield line
            continue
        while line and not line.endswith("\n"):
            line = stream.readline(limit + 1)
        yield None


def _object(line: str, what: str) -> dict[str, Any]:
    """A line's JSON object, or a ``ProtocolError`` quoting the start of the line."""
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):  # not JSON, or arrays nested deeper than the parser's stack
        data = None
    if not isinstance(data, dict):
        raise ProtocolError(f"not {what}: {_quoted(line.strip())}")
    return data


def _quoted(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: Any) -> bool:
    return isinstance(value, str) and value.isprintable() and len(value) <= 200


def parse_hello(line: str) -> Hello:
    """An agent's first line. Other keys than the four are let be: a greeting from another protocol version must
    still be read, to say which version it speaks."""
    data = _object(line, "a vxray agent greeting")
    if data.get("vxray") != "agent":
        raise ProtocolError(f"not a vxray agent greeting: {_quoted(line.strip())}")
    fields = (("protocol", _whole, None), ("version", _text, "?"), ("host", _text, "?"), ("read_only", _flag, False))
    for key, check, default in fields:
        if not check(data.get(key, default)):
            raise ProtocolError(f"the agent's greeting has a bad {key}: {_quoted(data.get(key))}")
    return Hello(data["protocol"], data.get("version", "?"), data.get("host", "?"), data.get("read_only", False))


def _flag(value: Any) -> bool:
    return isinstance(value, bool)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _argv(value: Any) -> bool:
    return _strings(value) and bool(value)


def _token(value: Any) -> bool:
    return isinstance(value, str) and TOKEN.match(value) is not None


def _ident(value: Any) -> bool:
    return _whole(value) and 0 <= value <= 65535


def _index(value: Any) -> bool:
    return _whole(value) and 0 <= value < 2**31


def _wait(value: Any) -> bool:
    return (_whole(value) or isinstance(value, float)) and 0 < value <= MAX_WAIT


def _points(value: Any) -> bool:
    return isinstance(value, list) and all(_strings(p) and len(p) == 2 for p in value)


def _probe(value: Any) -> bool:
    """``backend.probe.Probe``'s fields, as ``trace --live`` sends them."""
    if not isinstance(value, dict) or not {"src_netns", "dst"} <= set(value) <= set(PROBE):
        return False
    return all(check(value.get(key)) for key, check in PROBE.items())


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _ipv4(value: Any) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return isinstance(value, str)


PROBE: dict[str, Callable[[Any], bool]] = {
    "src_netns": lambda v: isinstance(v, str) and bool(v), "dst": _ipv4,
    "proto": _optional(lambda v: v in ("icmp", "tcp", "udp")), "dport": _optional(lambda v: _ident(v) and v > 0),
    "size": _optional(lambda v: _whole(v) and 0 <= v <= 65507), "df": _optional(_flag),
}  # fmt: skip
# each operation's arguments: name -> (check, what it must be, required)
ARGS: dict[str, dict[str, tuple[Callable[[Any], bool], str, bool]]] = {
    "ping": {}, "snapshot": {}, "subscribe": {},
    "run": {"argv": (_argv, "a non-empty list of strings", True), "token": (_token, "32 hex digits", False)},
    "outcome": {"token": (_token, "32 hex digits", True)},
    "watch": {"probe": (_probe, "a probe", True), "ident": (_ident, "a number 0-65535", True),
              "points": (_points, "a list of [namespace, device] pairs", True)},
    "send": {"probe": (_probe, "a probe", True), "ident": (_ident, "a number 0-65535", True)},
    "seen": {"watch": (_index, "the number `watch` answered", True),
             "wait": (_wait, f"seconds, at most {MAX_WAIT}", False)},
}  # fmt: skip


def parse_request(line: str) -> Request:
    """A client's request, every field and argument checked: what the agent then does cannot fail on its shape."""
    data = _object(line, "a request")
    req_id = data.get("id")
    if not _whole(req_id) or not 1 <= req_id <= MAX_ID:
        raise ProtocolError(f"not a request: its id is {_quoted(req_id)}, not a number 1-{MAX_ID}")
    if unknown := sorted(set(data) - {"id", "op", "args"}):
        raise ProtocolError(f"request {req_id}: unknown field {_quoted(unknown[0])} (id, op, args)", req_id)
    op, args = data.get("op"), data.get("args")
    args = {} if args is None else args
    if not isinstance(op, str) or op not in ARGS:
        raise ProtocolError(f"request {req_id}: unknown operation {_quoted(op)} (protocol {PROTOCOL}: "
                            f"{', '.join(ARGS)})", req_id)  # fmt: skip
    if not isinstance(args, dict):
        raise ProtocolError(f"request {req_id}: {op}'s args are {_quoted(args)}, not an object", req_id)
    for key in args:
        if key not in ARGS[op]:
            raise ProtocolError(f"request {req_id}: {op} takes no argument {_quoted(key)}", req_id)
    for key, (check, what, required) in ARGS[op].items():
        if (key in args or required) and not check(args.get(key)):
            raise ProtocolError(f"request {req_id}: {op}.{key} is {_quoted(args.get(key))}, not {what}", req_id)
    return Request(req_id, op, args)


def parse_message(line: str) -> Answer | Event:
    """A line from an agent after its greeting: an answer to a request, or an event."""
    data = _object(line, "a message of the protocol")
    if "event" in data:
        names = data.get("namespaces")
        if data["event"] != "changed" or set(data) != {"event", "namespaces"} or not _strings(names):
            raise ProtocolError(f"not an event of the protocol: {_quoted(line.strip())}")
        return Event(tuple(names))
    req_id, ok = data.get("id"), data.get("ok")
    if not _whole(req_id) or not 0 <= req_id <= MAX_ID or not isinstance(ok, bool):
        raise ProtocolError(f"not an answer of the protocol: {_quoted(line.strip())}")
    if set(data) - {"id", "ok", "result" if ok else "error"} or not (ok or isinstance(data.get("error"), str)):
        raise ProtocolError(f"answer {req_id} is not of the protocol: {_quoted(line.strip())}")
    return Answer(req_id, ok, data.get("result"), data.get("error", ""))


def _run_result(value: Any) -> bool:
    return isinstance(value, dict) and _whole(value.get("status")) and isinstance(value.get("output"), str)


def _outcome_result(value: Any) -> bool:
    """A journal record: ``running``, ``unknown``, or ``done`` with the status and output."""
    if not isinstance(value, dict) or value.get("state") not in ("running", "done", "unknown"):
        return False
    return value["state"] != "done" or (_whole(value.get("status")) and isinstance(value.get("output", ""), str))


def _seen_result(value: Any) -> bool:
    return isinstance(value, list) and all(_strings(v) and len(v) == 3 for v in value)


RESULTS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "ping": (lambda v: v == "pong", "'pong'"), "subscribe": (lambda v: v == "subscribed", "'subscribed'"),
    "run": (_run_result, "{status, output}"), "outcome": (_outcome_result, "a journal record"),
    "watch": (_index, "a watch number"), "send": (lambda v: v == "sent", "'sent'"),
    "seen": (_seen_result, "a list of [namespace, device, direction]"),
}  # fmt: skip


def check_result(op: str, result: Any) -> Any:
    """``result`` of ``op`` if it has the shape this side relies on (a snapshot is ``codec``'s to check)."""
    check, what = RESULTS.get(op, (lambda v: True, ""))
    if not check(result):
        raise ProtocolError(f"its answer to `{op}` is {_quoted(result)}, not {what}")
    return result


def reply(req_id: int, result: Any = None, error: str | None = None) -> str:
    if error is not None:
        return json.dumps({"id": req_id, "ok": False, "error": error})
    return json.dumps({"id": req_id, "ok": True, "result": result})


def event(kind: str, **data: Any) -> str:
    return json.dumps({"event": kind, **data})


@dataclass(frozen=True)
class Policy:
    """Which vxray commands an agent runs for a client, and which of them only read.

    The client's command registry (``tui.registry``) says; the back end only applies it, in the agent and
    wherever ``--read-only`` is checked, so "what changes state" is decided in one place.
    """

    runnable: frozenset[str]  # commands an agent runs
    reads: frozenset[tuple[str, str | None]]  # (command, action) that only read; action None: the whole command
    grouped: frozenset[str]  # commands whose second word is an action

    def changes_state(self, argv: list[str]) -> bool:
        """Whether a vxray command line changes the kernel or the store (what ``--read-only`` refuses)."""
        command = argv[0] if argv else ""
        action = argv[1] if command in self.grouped and len(argv) > 1 else None
        if command == "fdb" and action == "sync" and "--dry-run" in argv:
            return False
        return (command, action) not in self.reads and (command, None) not in self.reads

    def read_only_refusal(self, argv: list[str]) -> str | None:
        """What ``--read-only`` says of ``argv`` — locally, in the client and in the agent alike (None: it may run)."""
        return f"read-only: refused `{' '.join(argv[:2])}` (it changes state)" if self.changes_state(argv) else None

    def refusal(self, argv: list[str], read_only: bool) -> str | None:
        """Why an agent does not run ``argv`` (None: it does)."""
        if not argv or argv[0] not in self.runnable:
            allowed = ", ".join(sorted(self.runnable))
            return f"not a vxray operation an agent runs: {(argv or [''])[0]!r} (allowed: {allowed})"
        return self.read_only_refusal(argv) if read_only else None
