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

import binascii
import ipaddress
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TextIO

from backend.errors import VxrayError
from backend.journal import TOKEN

PROTOCOL = 1
REQUEST_MAX = 2**20  # characters in a request line: an argv or a probe is well under a KiB
ANSWER_MAX = 256 * 2**20  # in an answer line: a snapshot answer may be as large as a snapshot file (codec.MAX_BYTES)
MAX_ID = 2**53  # request ids stay exact in every JSON implementation
MAX_WAIT = 30  # seconds `seen` may keep a capture open
SNAPLEN_MAX = 262144  # bytes of a captured frame (tcpdump's default snap length)
FILTER_MAX = 4096  # characters of a capture filter
PACKETS_MAX = 4096  # frames in one `packets` event


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
    op: str  # snapshot | subscribe | run | ping | outcome | watch | send | seen | capture | stop
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


class Frame(NamedTuple):
    """A frame an agent captured: the same fields as ``backend.capture.Packet``, so either is written alike."""

    interface: int  # its position in the `capture` request's points
    ts_ns: int
    data: bytes
    orig_len: int
    outgoing: bool


@dataclass(frozen=True)
class Packets:
    """What an agent streams unasked after ``capture``: frames of capture number ``capture``."""

    capture: int
    packets: tuple[Frame, ...]


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


def _capture_points(value: Any) -> bool:
    return _points(value) and 0 < len(value) <= 64


def _filter(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= FILTER_MAX and (value == "" or value.isprintable())


def _probe(value: Any) -> bool:
    """``backend.probe.Probe``'s fields, as ``trace --live`` sends them."""
    if not isinstance(value, dict) or not {"src_netns", "dst"} <= set(value) <= set(PROBE):
        return False
    return all(check(value.get(key)) for key, check in PROBE.items())


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _ip(value: Any) -> bool:
    """An IPv4 or IPv6 address, as text (a probe goes to either: ``ping -6`` too)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return isinstance(value, str)


PROBE: dict[str, Callable[[Any], bool]] = {
    "src_netns": lambda v: isinstance(v, str) and bool(v), "dst": _ip,
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
             "wait": (_wait, f"seconds, at most {MAX_WAIT}", False), "frames": (_flag, "true or false", False)},
    "capture": {"points": (_capture_points, "a list of 1-64 [namespace, device] pairs", True),
                "filter": (_filter, f"a printable filter of at most {FILTER_MAX} characters", False),
                "snaplen": (lambda v: _whole(v) and 64 <= v <= SNAPLEN_MAX, f"bytes, 64-{SNAPLEN_MAX}", False)},
    "stop": {"capture": (_index, "the number `capture` answered", True)},
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


def parse_message(line: str) -> Answer | Event | Packets:
    """A line from an agent after its greeting: an answer to a request, or an event."""
    data = _object(line, "a message of the protocol")
    if data.get("event") == "packets":
        return _packets(data, line)
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


def _packets(data: dict[str, Any], line: str) -> Packets:
    """A ``packets`` event, every frame checked: a number of the capture's, a time, its bytes (base64, at most
    the snap length, no more than the frame was long) and its direction."""
    frames, number = data.get("packets"), data.get("capture")
    if set(data) != {"event", "capture", "packets"} or not _index(number) or not isinstance(frames, list):
        raise ProtocolError(f"not a packets event of the protocol: {_quoted(line.strip())}")
    if len(frames) > PACKETS_MAX:
        raise ProtocolError(f"a packets event of {len(frames)} frames (at most {PACKETS_MAX})")
    out = []
    for frame in frames:
        if not (isinstance(frame, list) and len(frame) == 5 and _index(frame[0]) and _whole(frame[1])
                and 0 <= frame[1] < 2**63 and _whole(frame[2]) and 0 <= frame[2] < 2**32 and _flag(frame[3])
                and isinstance(frame[4], str) and len(frame[4]) <= (SNAPLEN_MAX + 2) // 3 * 4):  # fmt: skip
            raise ProtocolError(f"a packets event holds a bad frame: {_quoted(frame)}")
        try:
            raw = binascii.a2b_base64(frame[4], strict_mode=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(f"a packets event holds a frame that is not base64: {_quoted(frame[4])}") from None
        if len(raw) > frame[2]:
            raise ProtocolError(f"a packets event holds {len(raw)} bytes of a frame {frame[2]} bytes long")
        out.append(Frame(frame[0], frame[1], raw, frame[2], frame[3]))
    return Packets(number, tuple(out))


def packets_event(capture: int, frames: list[tuple[int, int, bytes, int, bool]]) -> str:
    """The agent's side of ``_packets``: (interface, ts_ns, data, orig_len, outgoing) each."""
    return json.dumps({"event": "packets", "capture": capture, "packets": [
        [i, ts, orig_len, outgoing, binascii.b2a_base64(data, newline=False).decode()]
        for i, ts, data, orig_len, outgoing in frames]})  # fmt: skip


def _capture_result(value: Any) -> bool:
    return (isinstance(value, dict) and set(value) == {"capture", "linktypes"} and _index(value["capture"])
            and isinstance(value["linktypes"], list) and all(v in (1, 101) for v in value["linktypes"]))  # fmt: skip


def _stop_result(value: Any) -> bool:
    return (isinstance(value, dict) and set(value) == {"received", "dropped"}
            and all(isinstance(value[k], list) and all(_whole(v) and 0 <= v < 2**63 for v in value[k])
                    for k in ("received", "dropped")))  # fmt: skip


def _run_result(value: Any) -> bool:
    return isinstance(value, dict) and _whole(value.get("status")) and isinstance(value.get("output"), str)


def _outcome_result(value: Any) -> bool:
    """A journal record: ``running``, ``unknown``, or ``done`` with the status and output."""
    if not isinstance(value, dict) or value.get("state") not in ("running", "done", "unknown"):
        return False
    return value["state"] != "done" or (_whole(value.get("status")) and isinstance(value.get("output", ""), str))


def _seen_result(value: Any) -> bool:
    """Where the probe was seen; with ``frames`` asked, also the probe's frames (``trace --live -w``)."""
    if isinstance(value, dict) and set(value) == {"seen", "frames"}:
        frames = value["frames"]
        return (_seen_result(value["seen"]) and isinstance(frames, list) and len(frames) <= PACKETS_MAX
                and all(_probe_frame(f) for f in frames))  # fmt: skip
    return isinstance(value, list) and all(_strings(v) and len(v) == 3 for v in value)


def _probe_frame(value: Any) -> bool:
    """[namespace, device, ns since the epoch, base64 of at most 65535 bytes]."""
    if not (isinstance(value, list) and len(value) == 4 and _text(value[0]) and _text(value[1])
            and _whole(value[2]) and 0 <= value[2] < 2**63 and isinstance(value[3], str)
            and len(value[3]) <= 65536 // 3 * 4):  # fmt: skip
        return False
    try:
        binascii.a2b_base64(value[3], strict_mode=True)
    except (binascii.Error, ValueError):
        return False
    return True


RESULTS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "ping": (lambda v: v == "pong", "'pong'"), "subscribe": (lambda v: v == "subscribed", "'subscribed'"),
    "run": (_run_result, "{status, output}"), "outcome": (_outcome_result, "a journal record"),
    "watch": (_index, "a watch number"), "send": (lambda v: v == "sent", "'sent'"),
    "seen": (_seen_result, "a list of [namespace, device, direction] (and the frames, when asked)"),
    "capture": (_capture_result, "{capture, linktypes}"), "stop": (_stop_result, "{received, dropped}"),
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
