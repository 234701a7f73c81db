"""Real kernel objects for tests, in namespaces that are always removed.

Every namespace a test makes is named ``vxt<pid>-<n>-…`` and registered with the
``lab`` fixture, which deletes it (and kills the processes the test started)
even when the test fails. Nothing here touches the root namespace: every ``ip``
call carries ``-n``.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from diagnostics.trace import Fix

RUN_PREFIX = f"vxt{os.getpid()}-"
_counter = itertools.count()


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command (never through a shell); failures show the command's stderr."""
    proc = subprocess.run(argv, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


class Lab:
    """A cleanup registry for namespaces and processes made by one test."""

    def __init__(self) -> None:
        self.prefix = f"{RUN_PREFIX}{next(_counter)}-"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.cleanups: list[tuple[str, ...]] = []

    def netns(self, name: str) -> str:
        full = self.prefix + name
        sh("ip", "netns", "add", full)
        self.namespaces.append(full)
        self.ip(full, "link", "set", "lo", "up")
        return full

    def ip(self, ns: str, *args: str) -> None:
        sh("ip", "-n", ns, *args)

    def run(self, ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", ns, *argv, check=check)

    def spawn(self, *argv: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def veth(self, ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
        self.ip(ns_a, "link", "add", name_a, "type", "veth", "peer", "name", name_b, "netns", ns_b)
        self.ip(ns_a, "link", "set", name_a, "up")
        self.ip(ns_b, "link", "set", name_b, "up")

    def router(self, route_back: bool = True) -> tuple[str, str, str]:
        """c1 (10.1.0.2) -- r (forwarding, 10.1.0.1 / 10.2.0.1) -- c2 (10.2.0.2); without ``route_back`` c2 has
        no route to 10.1.0.0/24 (what NAT tests need)."""
        c1, r, c2 = self.netns("c1"), self.netns("r"), self.netns("c2")
        self.veth(c1, "eth0", r, "r1")
        self.veth(r, "r2", c2, "eth0")
        self.ip(c1, "addr", "add", "10.1.0.2/24", "dev", "eth0")
        self.ip(c1, "route", "add", "default", "via", "10.1.0.1")
        self.ip(r, "addr", "add", "10.1.0.1/24", "dev", "r1")
        self.ip(r, "addr", "add", "10.2.0.1/24", "dev", "r2")
        self.ip(c2, "addr", "add", "10.2.0.2/24", "dev", "eth0")
        if route_back:
            self.ip(c2, "route", "add", "default", "via", "10.2.0.1")
        self.run(r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        return c1, r, c2

    def close(self) -> None:
        for argv in reversed(self.cleanups):
            sh(*argv, check=False)
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)
        sweep(self.prefix)


def sweep(prefix: str) -> None:
    """Delete every namespace named ``prefix*`` (what a crashed test may leave)."""
    if os.path.isdir("/run/netns"):
        for name in os.listdir("/run/netns"):
            if name.startswith(prefix):
                sh("ip", "netns", "del", name, check=False)


@pytest.fixture
def lab() -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("needs root to build namespaces")
    registry = Lab()
    try:
        yield registry
    finally:
        registry.close()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state directory of the test's own (labs, the embedded store), and no store from the environment."""
    monkeypatch.setenv("VXRAY_HOME", str(tmp_path))
    monkeypatch.delenv("VXRAY_STORE", raising=False)
    return tmp_path


@pytest.fixture(scope="session", autouse=True)
def _sweep_at_end() -> Iterator[None]:
    yield
    sweep(RUN_PREFIX)


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


PLACEHOLDERS = {"NETWORK", "GATEWAY", "VTEP", "MAC", "IP", "HOST", "CONTAINER", "DEV", "DEVICE", "SUBNET"}


def placeholders(fix: Fix) -> list[str]:
    """The words of a fix's argvs that stand for a value instead of being one, or
    start a shell comment: an argv is run as it is, so it may hold neither."""
    return [w for w in (*fix.vxray, *fix.native) if w in PLACEHOLDERS or w.startswith("#")]


ACCURACY = [0, 0]  # trace verdicts agreeing with real pings, cases tried (tests/test_trace_accuracy.py)
LIVE = [0, 0]  # traces whose every watchable step a live probe confirmed, cases tried
DOCKER = [0, 0]  # traces on real Docker Engines agreeing with real pings, cases tried (tests/test_docker_labs.py)
DOCTOR = [0, 0]  # faults injected into Docker's state that the doctor named first, faults tried
ETCD_FAULTS = dict.fromkeys(("tried", "completed", "rolled back", "duplicates", "leftovers"), 0)  # etcd faults


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for what, (agreed, tried) in (("verdicts agreeing with real pings", ACCURACY),
                                  ("steps confirmed by a live probe", LIVE),
                                  ("on real Docker Engines, verdicts agreeing with real pings", DOCKER),
                                  ("on real Docker Engines, faults the doctor names first", DOCTOR)):  # fmt: skip
        if tried:
            terminalreporter.write_line(f"trace accuracy, {what}: {agreed}/{tried} ({100 * agreed / tried:.1f}%)")
    if ETCD_FAULTS["tried"]:  # tests/test_store_etcd_faults.py: a real etcd cluster, members killed and cut off
        f = ETCD_FAULTS
        terminalreporter.write_line(f"etcd faults: operations tried {f['tried']}, completed {f['completed']}, rolled "
                                    f"back {f['rolled back']}, duplicates found {f['duplicates']}, leftovers "
                                    f"{f['leftovers']}")  # fmt: skip
