"""``vxray agent --stdio``: one machine's side of the protocol, spoken over the pipe SSH gives us.

Nothing listens on a port and nothing stays installed as a daemon: SSH starts the
agent for one session and it ends with the pipe. It greets, then answers
requests one line at a time: ``snapshot`` (the machine, with the store's labels),
``subscribe`` (a line per netlink change, from a thread, so requests are still
answered meanwhile), ``run`` (one of vxray's own commands, checked against the client's
``protocol.Policy`` by the runner it is given; never a shell; its outcome kept in ``backend.journal``),
``outcome`` (how a ``run`` ended, for a client that was cut off), ``watch``/``send``/``seen`` (a live trace's
packet capture and probe, split so every machine listens before the source sends)
``capture``/``stop`` (packets from devices of its namespaces, streamed as ``packets`` events from a thread until
stopped or the client hangs up) and ``ping``. The protocol channel is a
private copy of stdout; the real fd 1 is pointed at stderr, so nothing a library
or a child process prints can corrupt the stream.
"""

from __future__ import annotations

import binascii
import io
import os
import sys
import threading
import uuid
from collections.abc import Callable
from typing import Any, TextIO

from backend import journal
from backend.errors import VxrayError
from backend.model import HostSnapshot, Labels
from backend.netns import Scope
from backend.protocol import REQUEST_MAX, Hello, ProtocolError, event, parse_request, read_lines, reply
from backend.remote import Reading

Reader = Callable[[], tuple[HostSnapshot, Labels, str]]  # snapshot, labels, the machine's own namespace label
Runner = Callable[[list[str], str], tuple[int, str]]  # argv, journal token -> exit status, output; VxrayError: refused


class Agent:
    def __init__(self, out: TextIO, scope: Scope, read: Reader, run: Runner, hello: Hello) -> None:
        self.out = out
        self.scope = scope
        self.read = read
        self.run = run
        self.hello = hello
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.watcher: threading.Thread | None = None
        self.captures: dict[int, Any] = {}  # backend.probe.Capture, by the number `watch` answered
        self.watches = 0
        self.streams: dict[int, tuple[threading.Thread, threading.Event, Any]] = {}  # `capture`: thread, stop, session

    def send(self, line: str) -> None:
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()

    def handle(self, line: str) -> None:
        try:
            req = parse_request(line)
        except ProtocolError as exc:  # answered, to the request's id when it had one, and the session goes on
            self.send(reply(exc.request_id, error=str(exc)))
            return
        try:
            self.send(reply(req.id, self.answer(req.op, req.args)))
        except VxrayError as exc:
            self.send(reply(req.id, error=str(exc)))
        except Exception as exc:  # noqa: BLE001 - one bad request is answered, the session goes on
            self.send(reply(req.id, error=f"{req.op}: {type(exc).__name__}: {exc}"))

    def answer(self, op: str, args: dict[str, Any]) -> Any:
        if op == "ping":
            return "pong"
        if op == "snapshot":
            snap, labels, root = self.read()
            return Reading(snap, labels, root).as_data()
        if op == "subscribe":
            if self.watcher is None:
                self.watcher = threading.Thread(target=self._watch, daemon=True)
                self.watcher.start()
            return "subscribed"
        if op == "run":  # parse_request checked every argument's shape
            status, output = self.run(args["argv"], args.get("token") or uuid.uuid4().hex)
            return {"status": status, "output": output}
        if op == "outcome":  # a client cut off while `run` ran asks how it ended
            return journal.outcome(args["token"]) or {"state": "unknown"}
        if op in ("capture", "stop"):
            return self.capture(args) if op == "capture" else self.stop_capture(args["capture"])
        return self.live(op, args)  # watch, send, seen: parse_request knows no other operation

    def live(self, op: str, args: dict[str, Any]) -> Any:
        """A live trace across machines: every machine watches (``watch``), the source sends, each says what it saw."""
        from backend.probe import Capture, Probe, send

        if op == "send":
            send(Probe(**args["probe"]), int(args["ident"]))
            return "sent"
        if op == "watch":
            self.watches += 1
            points = [(ns, dev) for ns, dev in args["points"]]
            self.captures[self.watches] = Capture(Probe(**args["probe"]), args["ident"], points)
            return self.watches
        capture = self.captures.pop(args["watch"], None)  # its sockets close once it is collected
        if capture is None:
            raise VxrayError(f"no watch {args['watch']} open (`seen` reads each watch once)")
        seen = sorted(capture.collect(float(args.get("wait", 1.5))))
        if not args.get("frames"):
            return seen
        frames = [[ns, dev, ts, binascii.b2a_base64(frame, newline=False).decode()]
                  for ns, dev, ts, frame in capture.frames]  # fmt: skip
        return {"seen": seen, "frames": frames}

    def capture(self, args: dict[str, Any]) -> dict[str, Any]:
        """Open a packet socket on each point (namespace id or label of this machine, device), then stream what
        they take from a thread; a bad namespace, device or filter is this request's error and nothing stays open."""
        from backend.capture import SNAPLEN, Point, Session
        from backend.netns import discover

        handles, _ = discover(self.scope)
        try:
            found = {key: h for h in handles for key in (h.id, h.name)}
            points = []
            for ns, dev in args["points"]:
                h = found.get(ns)
                if h is None:
                    raise VxrayError(f"no namespace {ns!r} on {self.hello.host}")
                paths = (*h.paths, *(f"/proc/{pid}/ns/net" for pid in h.pids))
                points.append(Point(dev, f"{dev}@{h.name}@{self.hello.host}", paths=paths, inode=h.inode))
        finally:
            for h in handles:
                h.close()
        session = Session(points, args.get("filter") or "", args.get("snaplen") or SNAPLEN)
        self.watches += 1
        number, stop = self.watches, threading.Event()
        thread = threading.Thread(target=self._stream, args=(number, session, stop), daemon=True)
        self.streams[number] = (thread, stop, session)
        thread.start()
        return {"capture": number, "linktypes": [tap.linktype for tap in session.taps]}

    def _stream(self, number: int, session: Any, stop: threading.Event) -> None:
        """Frames as ``packets`` events, a batch at a time, until stopped or the client is gone."""
        from backend.protocol import PACKETS_MAX, packets_event

        while not (stop.is_set() or self.stop.is_set()):
            frames = session.read(0.1)
            for start in range(0, len(frames), PACKETS_MAX // 4):
                self.send(packets_event(number, frames[start : start + PACKETS_MAX // 4]))

    def stop_capture(self, number: int) -> dict[str, list[int]]:
        """End a capture: its last frames are sent before this answer, then what the kernel counted."""
        thread, stop, session = self.streams.pop(number, (None, None, None))
        if thread is None:
            raise VxrayError(f"no capture {number} running")
        stop.set()
        thread.join()
        try:
            counters = session.counters()
        finally:
            session.close()
        return {"received": [c[0] for c in counters], "dropped": [c[1] for c in counters]}

    def _watch(self) -> None:
        from backend.monitor import Monitor

        monitor = Monitor(self.scope)
        try:
            while not self.stop.is_set():
                changed = monitor.wait(0.5)
                if changed:
                    self.send(event("changed", namespaces=sorted(changed)))
        finally:
            monitor.close()


def serve(scope: Scope, read: Reader, run: Runner, hello: Hello, stdin: TextIO | None = None) -> int:
    """Speak the protocol on stdin/stdout until the client hangs up."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")  # the channel; fd 1 itself now goes to stderr
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    agent = Agent(out, scope, read, run, hello)
    agent.send(hello.line())
    lines = stdin or io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")  # not UTF-8: not JSON
    try:
        for line in read_lines(lines, REQUEST_MAX):
            if line is None:
                agent.send(reply(0, error=f"a request longer than {REQUEST_MAX // 2**20} MiB: refused"))
            elif line.strip():
                agent.handle(line)
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    finally:
        agent.stop.set()
    return 0
