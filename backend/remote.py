"""Machines vxray reaches without installing a daemon: over SSH (``ssh://``) or from a file (``file://``).

``ssh://[user@]host[:port]`` runs ``vxray agent --stdio`` through the ``ssh``
program, so the user's keys, agent, ``~/.ssh/config`` (jump hosts, ProxyCommand)
and known_hosts apply exactly as for ``ssh`` itself — host-key checking included;
vxray never turns it off and says what to do when it fails. ``file://PATH`` is a
snapshot someone saved (``vxray snapshot --json``, or an app view): everything
read-only works on it. A URL may say which namespaces of the machine count as
its own (``?netns=lab.yy2-*&host_netns=lab.yy2`` — a lab host reached over SSH)
and which program is vxray there (``?command=/opt/vxray/bin/vxray``).
"""

from __future__ import annotations

import contextlib
import queue
import shlex
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from backend import codec, env, journal, urls
from backend.errors import VxrayError
from backend.model import HostSnapshot, Labels
from backend.protocol import (
    ANSWER_MAX,
    PROTOCOL,
    Answer,
    Event,
    Packets,
    ProtocolError,
    Request,
    check_result,
    parse_hello,
    parse_message,
    read_lines,
)

CONNECT_SECONDS = 20.0  # ssh + the agent's greeting
REQUEST_SECONDS = 60.0
RECOVER_SECONDS = 30.0  # after a drop mid-operation: how long to keep asking the machine how it ended
STDERR_MAX = 2**16  # characters kept of one line ssh or the far side prints on stderr


class RemoteError(VxrayError):
    """A machine could not be reached or answered with an error; the message says which and why."""


class Dropped(RemoteError):
    """The connection went away after a request was sent and before its answer came."""


@dataclass(frozen=True)
class Address:
    url: str
    scheme: str  # ssh | file
    host: str = ""
    user: str = ""
    port: int | None = None
    path: str = ""
    netns: tuple[str, ...] = ()
    host_netns: str = ""
    command: str = ""
    netns_dir: tuple[str, ...] = ()  # Docker's <exec-root>/netns on a machine whose engine is not the default
    docker: str = ""  # the Engine the agent labels containers from (``none``: skip)

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host


SSH_OPTIONS = ("netns", "host_netns", "netns_dir", "docker", "command")
DOCKER_SCHEMES = ("unix", "tcp", "http", "https", "ssh")  # what the Docker SDK connects to


def parse(url: str) -> Address:
    """``ssh://[user@]host[:port][?netns=GLOB&host_netns=NS&netns_dir=DIR&docker=URL&command=PATH]`` or
    ``file://PATH``; one-line errors. Every part is checked here, before anything reaches ssh's argv or the
    inventory: no word vxray passes on can start with ``-`` or hold a control character."""

    def bad(why: str) -> VxrayError:
        return VxrayError(f"bad host {url!r}: {why}")

    parts = urls.split(url, bad)
    if parts.scheme == "file":
        if parts.query:
            raise bad(f"file:// takes no options (?{parts.query})")
        path = parts.netloc + parts.path
        if not path:
            raise bad("file:// needs a path (file:///tmp/yy2.json)")
        return Address(url, "file", path=path)
    if parts.scheme != "ssh":
        raise bad("use ssh://[user@]host[:port] or file://PATH")
    host, user, port = urls.host(parts, bad), urls.user(parts, bad), urls.port(parts, bad)
    if parts.path not in ("", "/"):
        raise bad(f"ssh:// has no path ({parts.path!r}); options go after '?'")
    opts = urls.options(parts, SSH_OPTIONS, ("netns", "netns_dir"), bad)
    _check_options(opts, bad)
    one = {name: values[0] for name, values in opts.items()}
    return Address(url, "ssh", host, user, port, netns=tuple(opts.get("netns", [])),
                   host_netns=one.get("host_netns", ""), command=one.get("command", ""),
                   netns_dir=tuple(opts.get("netns_dir", [])), docker=one.get("docker", ""))  # fmt: skip


def _check_options(opts: dict[str, list[str]], bad: urls.Bad) -> None:
    """The options whose values have a shape: what the agent would refuse later, refused before connecting."""
    for directory in opts.get("netns_dir", []):
        if not directory.startswith("/"):
            raise bad(f"netns_dir={directory!r} is not an absolute path")
    docker = opts.get("docker", ["none"])[0]
    if docker != "none" and docker.partition("://")[0] not in DOCKER_SCHEMES:
        raise bad(f"docker={docker!r}: 'none' or an Engine URL (unix:///PATH, tcp://HOST:PORT)")
    for command in opts.get("command", []):
        command_words(command, bad)


def command_words(command: str, bad: urls.Bad) -> list[str]:
    """The words of the program that is vxray on the far side (``?command=`` or $VXRAY_REMOTE_COMMAND)."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise bad(f"the command {command!r} does not split into words ({exc})") from None
    if not words or words[0].startswith("-"):
        raise bad(f"the command {command!r} does not start with a program")
    return words


@dataclass
class Reading:
    """What one machine sent: its snapshot, the store's labels there, and its own namespace's label."""

    snapshot: HostSnapshot
    labels: Labels
    root: str

    def as_data(self) -> dict[str, Any]:
        """The agent's answer to ``snapshot``, and what ``file://`` reads back."""
        return codec.to_data(codec.view_data(codec.View(self.snapshot, self.labels, self.root)))


def _reading(view: codec.View) -> Reading:
    return Reading(view.snapshot, view.labels, view.root or "host")


class FileMachine:
    """A saved snapshot: read-only, never changes."""

    def __init__(self, name: str, address: Address) -> None:
        self.name, self.address = name, address

    def connect(self) -> None:
        self.read()

    def read(self) -> Reading:
        return _reading(codec.load_view(codec.read_file(self.address.path), f"{self.name}: {self.address.path}"))

    def subscribe(self) -> None:
        """A file never changes: nothing to subscribe to."""

    def changes(self, timeout: float) -> set[str] | None:
        time.sleep(timeout)
        return set()

    def run(self, argv: list[str]) -> tuple[int, str]:
        raise RemoteError(f"{self.name}: a snapshot file is read-only; `{' '.join(argv[:2])}` needs a live host")

    def close(self) -> None:
        pass


def _env_command() -> str | None:
    """$VXRAY_REMOTE_COMMAND, checked as ``?command=`` is."""
    command = env.text("VXRAY_REMOTE_COMMAND")
    if command is not None:
        command_words(command, lambda why: VxrayError(f"$VXRAY_REMOTE_COMMAND: {why}"))
    return command


@dataclass
class _Pending:
    done: threading.Event = field(default_factory=threading.Event)
    answer: Answer | None = None


class SshMachine:
    """``vxray agent --stdio`` on the far side of an ``ssh`` process."""

    def __init__(self, name: str, address: Address, read_only: bool = False, ssh_config: str | None = None,
                 command: str | None = None) -> None:  # fmt: skip
        self.name, self.address, self.read_only = name, address, read_only
        self.ssh_config = ssh_config or env.path("VXRAY_SSH_CONFIG", "", must_exist=True) or None
        self.command = address.command or command or _env_command() or "vxray"
        self.proc: subprocess.Popen[str] | None = None
        self.gone = threading.Event()  # set when the connection's answers stop: ssh may not have exited yet
        self.gone.set()
        self.pending: dict[int, _Pending] = {}
        self.events: queue.Queue[set[str] | None] = queue.Queue()
        self.frames: queue.Queue[tuple[str, Packets | None]] | None = None  # where `packets` events go (stream)
        self.next_id = 0
        self.lock = threading.Lock()
        self.stderr: list[str] = []
        self.broken: str | None = None  # how the agent broke the protocol, which ended the connection

    def argv(self) -> list[str]:
        remote = [*shlex.split(self.command), *(["--read-only"] if self.read_only else []), "agent", "--stdio"]
        remote += [f"--netns={g}" for g in self.address.netns]
        remote += [f"--host-netns={self.address.host_netns}"] if self.address.host_netns else []
        remote += [f"--netns-dir={d}" for d in self.address.netns_dir]
        remote += [f"--docker={self.address.docker}"] if self.address.docker else []
        ssh = ["ssh", "-T", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=2"]
        ssh += ["-F", self.ssh_config] if self.ssh_config else []
        ssh += ["-p", str(self.address.port)] if self.address.port else []
        # ssh hands the command to the remote shell as one string: every word is quoted, none is interpreted
        return [*ssh, "--", self.address.destination, shlex.join(remote)]

    def connect(self) -> None:
        self.close()
        self.stderr, self.broken = [], None
        gone = self.gone = threading.Event()
        try:  # bytes that are not UTF-8 become U+FFFD: a line that is then not the protocol's, said so
            proc = self.proc = subprocess.Popen(self.argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE, text=True, errors="replace",
                                                bufsize=1)  # fmt: skip
        except OSError as exc:
            raise RemoteError(f"{self.name}: cannot run ssh: {exc.strerror} (install openssh-client)") from None
        hello: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._errors, args=(proc,), daemon=True).start()
        threading.Thread(target=self._lines, args=(proc, hello, gone), daemon=True).start()
        try:
            line = hello.get(timeout=CONNECT_SECONDS)
        except queue.Empty:
            self.close()
            raise RemoteError(f"{self.name}: no answer from {self.address.destination} within "
                              f"{CONNECT_SECONDS:.0f} s") from None  # fmt: skip
        if line is None:
            raise self._why_not(proc)  # `proc`, not self.proc: close() from another thread may have cleared it
        try:
            greeting = parse_hello(line)
        except ProtocolError as exc:
            self.close()
            banner = str(exc).startswith("not a vxray agent greeting")  # else: a greeting, with a bad field
            hint = f" — does a login script on {self.address.host} print to standard output?" if banner else ""
            raise RemoteError(f"{self.name}: {exc}{hint}") from None
        if greeting.protocol != PROTOCOL:
            self.close()
            raise RemoteError(f"{self.name}: {self.address.host} runs vxray {greeting.version} speaking protocol "
                              f"{greeting.protocol}; this vxray speaks protocol {PROTOCOL} — install the same "
                              "version on both sides")  # fmt: skip

    def _why_not(self, proc: subprocess.Popen[str]) -> RemoteError:
        """What ssh said when it ended before the agent greeted: one line an operator can act on."""
        status = proc.wait()
        time.sleep(0.05)  # the stderr reader may still be appending its last line
        said = " ".join(self.stderr)
        host = self.address.host
        if "Host key verification failed" in said or "REMOTE HOST IDENTIFICATION HAS CHANGED" in said:
            port = f" -p {self.address.port}" if self.address.port else ""
            return RemoteError(f"{self.name}: the SSH host key of {host} is unknown or has changed; vxray never "
                               "turns host-key checking off — verify the key, then add it to known_hosts "
                               f"(ssh-keyscan{port} {host})")  # fmt: skip
        if status == 127 or "command not found" in said or "No such file or directory" in said:
            return RemoteError(f"{self.name}: vxray is not installed on {host} (`{self.command} agent --stdio`: "
                               "command not found) — install it there, or give its path with ?command=")  # fmt: skip
        if status == 2 and "invalid choice: 'agent'" in said:
            return RemoteError(f"{self.name}: the vxray on {host} is older than the agent protocol — upgrade it")
        last = self.stderr[-1] if self.stderr else f"ssh exited with status {status}"
        return RemoteError(f"{self.name}: cannot reach {self.address.destination}: {last}")

    def _errors(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in read_lines(proc.stderr, STDERR_MAX):
            if line and line.strip():
                self.stderr = [*self.stderr[-20:], line.strip()]

    def _lines(self, proc: subprocess.Popen[str], hello: queue.Queue[str | None], gone: threading.Event) -> None:
        assert proc.stdout is not None
        greeted = False
        for line in read_lines(proc.stdout, ANSWER_MAX):
            if not greeted:
                greeted = True
                hello.put(line or "")  # too long for a greeting: read as none
                continue
            self.broken = self._take(line)
            if self.broken is not None:
                break  # the connection is ended: nothing it says from here on can be trusted
        if not greeted:
            hello.put(None)
        with self.lock:  # a request either sees `gone` or is registered before it and woken here
            gone.set()
        self.events.put(None)  # the connection is gone
        if self.frames is not None:
            self.frames.put((self.name, None))
        for waiting in list(self.pending.values()):
            waiting.done.set()  # without an answer: dropped

    def _take(self, line: str | None) -> str | None:
        """One line after the greeting: an answer wakes its request, an event is queued; what breaks the
        protocol is returned instead."""
        if line is None:
            return f"the agent sent a line longer than {ANSWER_MAX // 2**20} MiB"
        try:
            message = parse_message(line)
        except ProtocolError as exc:
            return f"the agent broke the protocol: {exc}"
        if isinstance(message, Packets):
            if self.frames is not None:  # else: no capture of this connection's wants them
                self.frames.put((self.name, message))
        elif isinstance(message, Event):
            self.events.put(set(message.namespaces))
        elif message.id == 0:
            return f"the agent could not read a request: {message.error}"
        elif message.id > self.next_id:
            return f"the agent answered request {message.id}, which was never sent"
        elif (waiting := self.pending.get(message.id)) is not None:  # else: a late answer, its request gave up
            waiting.answer = message
            waiting.done.set()
        return None

    def request(self, op: str, args: dict[str, Any] | None = None, timeout: float = REQUEST_SECONDS) -> Any:
        proc = self.proc
        with self.lock:
            if proc is None or self.gone.is_set() or proc.stdin is None:
                raise RemoteError(f"{self.name}: not connected")
            self.next_id += 1
            req = Request(self.next_id, op, args or {})
            waiting = self.pending[req.id] = _Pending()
            try:
                proc.stdin.write(req.line() + "\n")
                proc.stdin.flush()
            except (BrokenPipeError, OSError):
                del self.pending[req.id]
                raise RemoteError(f"{self.name}: the connection dropped before `{op}` was sent") from None
        try:
            if not waiting.done.wait(timeout):
                raise RemoteError(f"{self.name}: no answer to `{op}` within {timeout:.0f} s")
        finally:
            self.pending.pop(req.id, None)
        if waiting.answer is None and self.broken is not None:
            raise RemoteError(f"{self.name}: {self.broken} (the connection was closed while `{op}` ran)")
        if waiting.answer is None:
            raise Dropped(f"{self.name}: the connection dropped while `{op}` ran")
        if not waiting.answer.ok:
            raise RemoteError(f"{self.name}: {waiting.answer.error or 'failed'}")
        try:
            return check_result(op, waiting.answer.result)
        except ProtocolError as exc:
            raise RemoteError(f"{self.name}: {exc}") from None

    def read(self) -> Reading:
        return _reading(codec.view_from_data(self.request("snapshot"), f"{self.name}: snapshot answer"))

    def subscribe(self) -> None:
        self.request("subscribe")

    def stream(self, frames: queue.Queue[tuple[str, Packets | None]]) -> None:
        """Where this machine's captured frames go, (its name, the event) each; (its name, None) when the
        connection ends. Several machines may share one queue: one capture file."""
        self.frames = frames

    def changes(self, timeout: float) -> set[str] | None:
        """Namespaces the machine says changed (empty: none yet); None once the connection is gone."""
        try:
            first = self.events.get(timeout=timeout)
        except queue.Empty:
            return set()
        return first

    def run(self, argv: list[str]) -> tuple[int, str]:
        token = uuid.uuid4().hex
        try:
            result = self.request("run", {"argv": argv, "token": token})
        except Dropped:
            return self._outcome(argv, token)
        return result["status"], result["output"]

    def _outcome(self, argv: list[str], token: str) -> tuple[int, str]:
        """Cut off while an operation ran: reconnect and read how it ended from the machine's journal."""
        what = " ".join(argv[:2])
        deadline, pause = time.monotonic() + RECOVER_SECONDS, 0.5
        while time.monotonic() < deadline:
            record = self._ask_outcome(token)
            if record is not None and record.get("state") == "done":
                note = f"(the connection to {self.name} dropped while `{what}` ran; this is how it ended there)"
                return record["status"], f"{record.get('output', '')}\n{note}".strip()
            if record is not None and record.get("state") == "unknown":
                raise RemoteError(f"{self.name}: the connection dropped before `{what}` started: nothing was applied")
            time.sleep(pause)  # not reachable yet, or still running
            pause = min(pause * 2, 4.0)
        raise RemoteError(f"{self.name}: the connection dropped while `{what}` ran and it could not be asked how it "
                          f"ended within {RECOVER_SECONDS:.0f} s — it may or may not have been applied; its outcome "
                          f"will be in {journal.path(token)} there")  # fmt: skip

    def _ask_outcome(self, token: str) -> dict[str, Any] | None:
        """The journal record of ``token``; None while the machine cannot be asked."""
        try:
            if self.proc is None or self.gone.is_set():
                self.connect()
            return self.request("outcome", {"token": token})
        except RemoteError:
            return None

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


Machine = FileMachine | SshMachine


def machine(name: str, url: str, read_only: bool = False, ssh_config: str | None = None,
            command: str | None = None) -> Machine:  # fmt: skip
    address = parse(url)
    if address.scheme == "file":
        return FileMachine(name, address)
    return SshMachine(name, address, read_only, ssh_config, command)
