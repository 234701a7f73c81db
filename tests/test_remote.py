"""Remote hosts for real: OpenSSH servers in the seed lab's host namespaces, vxray reaching them over the underlay.

The lab's hosts yy2 and yy3 each run Debian's sshd; vxray connects with ``ssh``
(a ProxyCommand through the lab underlay, strict host-key checking against
pinned keys) and starts ``vxray agent --stdio`` there. Nothing listens in the
root namespace and no traffic leaves the lab.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from consul_standin import ConsulStandin
from sshd import Servers, vxray_command

from backend import inventory, journal
from backend.errors import VxrayError
from backend.fleet import Fleet
from backend.lab import runner
from backend.remote import RemoteError, machine
from tui.app import VxrayApp
from tui.cli import main
from tui.source import remote

from conftest import Lab, sh

MAC_VM3, MAC_VM33 = "02:42:ac:15:00:01", "02:42:ac:15:00:02"


class Remote:
    def __init__(self, lab: str, servers: Servers) -> None:
        self.lab, self.servers = lab, servers

    def url(self, host: str, address: str) -> str:
        return f"ssh://root@{address}?netns={self.lab}.{host}-*&host_netns={self.lab}.{host}"

    def sandbox(self, host: str) -> str:
        net = next(n for n in runner.context(self.lab).store.networks() if n.name == "prod")
        return f"{self.lab}.{host}-1-{net.short_id}"

    def restart(self, host: str) -> None:
        self.servers.start(host, f"{self.lab}.{host}", {"yy2": "10.193.6.36", "yy3": "10.193.6.37"}[host])


@pytest.fixture
def seed(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Remote]:
    home = tmp_path / "home"
    monkeypatch.setenv("VXRAY_HOME", str(home))
    monkeypatch.delenv("VXRAY_STORE", raising=False)
    monkeypatch.setenv("VXRAY_INVENTORY", str(tmp_path / "inventory.toml"))
    name = f"{lab.prefix}rm"
    assert main(["lab", "up", "overlay-static", "--name", name]) == 0
    servers = Servers(tmp_path / "ssh", f"{name}.yy3", {"VXRAY_HOME": str(home)})
    monkeypatch.setenv("VXRAY_SSH_CONFIG", servers.config)
    monkeypatch.setenv("VXRAY_REMOTE_COMMAND", vxray_command())
    r = Remote(name, servers)
    try:
        r.restart("yy2")
        r.restart("yy3")
        assert main(["hosts", "add", "yy2", r.url("yy2", "10.193.6.36")]) == 0
        assert main(["hosts", "add", "yy3", r.url("yy3", "10.193.6.37")]) == 0
        yield r
    finally:
        servers.stop()
        runner.down(name)


def _out(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    status = main(argv)
    got = capsys.readouterr()
    return status, got.out, got.err


def test_two_remote_hosts_are_read_over_ssh_as_one_world(seed: Remote, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _out(capsys, ["-H", "yy2", "-H", "yy3", "snapshot", "--json"])
    assert status == 0
    names = {ns["name"] for ns in json.loads(out)["snapshot"]["namespaces"]}
    assert {"yy2:host", "yy3:host", f"yy2:{seed.lab}.yy2-vm3", f"yy3:{seed.lab}.yy3-vm33"} <= names
    assert f"yy2:{seed.lab}.yy3-vm33" not in names, "each machine reads only its own namespaces"


def test_static_entries_added_over_ssh_make_the_trace_and_the_ping_go_through(
    seed: Remote, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _out(capsys, ["-H", "yy2", "-H", "yy3", "trace", "vm33", "vm3"])
    assert status == 1 and "ARP request unanswered" in out
    assert f"on yy3: ip netns exec {seed.sandbox('yy3')} ip neigh replace" in out, "the fix names the machine"
    status, _, err = _out(capsys, ["-H", "yy3", "fdb", "add", MAC_VM3, "--network", "prod", "dst", "10.193.6.36",
                                   "--host", "yy3"])  # fmt: skip
    assert status == 0, err
    assert MAC_VM3 in sh("bridge", "-n", seed.sandbox("yy3"), "fdb", "show", "dev", "vxlan1").stdout
    for host, line in (("yy2", ["fdb", "add", MAC_VM33, "--network", "prod", "dst", "10.193.6.37", "--host", "yy2"]),
                       ("yy3", ["arp", "add", "172.21.0.1", MAC_VM3, "--container", "vm33"]),
                       ("yy2", ["arp", "add", "172.21.0.2", MAC_VM33, "--container", "vm3"])):  # fmt: skip
        status, _, err = _out(capsys, ["-H", "yy2", "-H", "yy3", "--on", host, *line])
        assert status == 0, err
    status, out, _ = _out(capsys, ["-H", "yy2", "-H", "yy3", "trace", "vm33", "vm3"])
    assert status == 0 and "DELIVERED" in out
    sh("ip", "netns", "exec", f"{seed.lab}.yy3-vm33", "ping", "-c", "1", "-W", "2", "172.21.0.1")


def test_the_shell_runs_every_line_on_the_machines_given(seed: Remote, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _out(capsys, ["-H", "yy2", "-H", "yy3", "shell", "-c", "trace vm33 vm3"])
    assert status == 1 and "ARP request unanswered" in out and "on yy3: ip netns exec" in out, err


def test_a_live_trace_captures_on_both_remote_hosts_and_agrees_with_the_simulation(
    seed: Remote, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fdb", "sync", "prod"]) == 0
    capsys.readouterr()
    status, out, err = _out(capsys, ["-H", "yy2", "-H", "yy3", "trace", "--live", "vm33", "vm3"])
    assert status == 0, err
    assert "live probe agrees with the simulation at every step it could watch" in out
    seen = [line for line in out.splitlines() if " seen " in line]
    assert any("vxlan1" in line for line in seen) and any("vm3 eth0" in line for line in seen), out


def test_the_doctor_over_ssh_compares_the_machines_with_the_inventorys_store(
    seed: Remote, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = inventory.load()
    inv.store = f"file://{runner.lab_dir(seed.lab)}/store.db"
    inventory.save(inv)
    status, out, _ = _out(capsys, ["-H", "all", "doctor"])
    assert status == 1
    first = out.splitlines()[0]
    assert "vxlan1 on yy" in first and "knows no remote MAC" in first, out
    assert "fix: vxray fdb sync prod" in out


def test_read_only_refuses_every_change_on_every_transport(
    seed: Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fdb_add = ["fdb", "add", MAC_VM3, "--network", "prod", "dst", "10.193.6.36", "--host", "yy3"]
    status, _, err = _out(capsys, ["--read-only", "-H", "yy3", *fdb_add])
    assert status == 2 and err.strip() == "vxray: read-only: refused `fdb add` (it changes state)"
    m = machine("yy3", seed.url("yy3", "10.193.6.37"), read_only=True)
    m.connect()
    try:
        with pytest.raises(RemoteError, match="read-only: refused `fdb add`"):
            m.request("run", {"argv": fdb_add})  # past the client's own check: the agent refuses too
        with pytest.raises(RemoteError, match="not a vxray operation an agent runs: 'lab'"):
            m.request("run", {"argv": ["lab", "down", seed.lab]})
        assert m.run(["network", "ls"])[0] == 0, "reading is allowed"
    finally:
        m.close()
    assert MAC_VM3 not in sh("bridge", "-n", seed.sandbox("yy3"), "fdb", "show", "dev", "vxlan1").stdout
    snap = tmp_path / "yy3.json"
    assert main(["-H", "yy3", "snapshot", "--json"]) == 0
    snap.write_text(capsys.readouterr().out)
    status, _, err = _out(capsys, ["-H", f"file://{snap}", *fdb_add])
    assert status == 2 and "a snapshot file is read-only" in err
    status, _, err = _out(capsys, ["--read-only", "network", "create", "x", "--subnet", "10.9.0.0/24"])
    assert status == 2 and "read-only: refused `network create`" in err


def test_a_saved_snapshot_file_is_traced_like_a_live_host(
    seed: Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for host in ("yy2", "yy3"):
        assert main(["-H", host, "snapshot", "--json"]) == 0
        (tmp_path / f"{host}.json").write_text(capsys.readouterr().out)
    status, out, _ = _out(capsys, ["-H", f"file://{tmp_path}/yy2.json", "-H", f"file://{tmp_path}/yy3.json",
                                   "trace", "vm33", "vm3"])  # fmt: skip
    assert status == 1 and "ARP request unanswered" in out


def test_connection_failures_say_why_in_one_line(seed: Remote, tmp_path: Path) -> None:
    url = seed.url("yy3", "10.193.6.37")
    strict = tmp_path / "strict_config"
    strict.write_text(Path(seed.servers.config).read_text().replace("known_hosts", "empty_known_hosts"))
    (tmp_path / "ssh" / "empty_known_hosts").write_text("")
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: machine("yy3", url, ssh_config=str(strict)), "the SSH host key of 10.193.6.37 is unknown"),
        (lambda: machine("yy3", url + "&command=/nonexistent/vxray"), "vxray is not installed on 10.193.6.37"),
        (lambda: machine("yy3", url + "&command=" + _old_agent(tmp_path)), "speaking protocol 99; this vxray speaks"),
        (lambda: machine("yy3", url + "&command=" + _chatty(tmp_path)), "does a login script on 10.193.6.37 print"),
    ]
    for make, message in cases:
        m = make()
        with pytest.raises(RemoteError, match=message) as err:
            m.connect()  # type: ignore[attr-defined]
        assert "\n" not in str(err.value)
    with pytest.raises(VxrayError, match="bad host 'ssh://:22': no host name"):
        machine("x", "ssh://:22")


def _chatty(tmp_path: Path) -> str:
    """A remote side that prints a banner before anything else, as some login scripts do."""
    script = tmp_path / "ssh" / "chatty"
    script.write_text("#!/bin/sh\necho 'Welcome to yy3!'\ncat >/dev/null\n")
    script.chmod(0o755)
    return str(script)


def _old_agent(tmp_path: Path) -> str:
    """A program that greets like an agent of another protocol version."""
    script = tmp_path / "ssh" / "old-agent"
    hello = json.dumps({"vxray": "agent", "protocol": 99, "version": "9.9", "host": "yy3"})
    script.write_text(f"#!/bin/sh\necho '{hello}'\ncat >/dev/null\n")
    script.chmod(0o755)
    return str(script)


def until(ready: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.1)


def test_a_dropped_host_goes_offline_the_other_stays_live_and_it_reconnects(seed: Remote) -> None:
    fleet = Fleet([machine("yy2", seed.url("yy2", "10.193.6.36")), machine("yy3", seed.url("yy3", "10.193.6.37"))])
    fleet.start()
    try:
        until(lambda: not fleet.offline)
        seed.servers.kill("yy2")
        until(lambda: "yy2" in fleet.offline)
        assert "yy3" not in fleet.offline
        sh("bridge", "-n", seed.sandbox("yy3"), "fdb", "add", "02:42:ac:15:00:77", "dev", "vxlan1", "dst", "10.9.9.9")
        until(lambda: any(e.mac == "02:42:ac:15:00:77" for ns in fleet.view()[0].namespaces for e in ns.fdb))
        seed.restart("yy2")
        until(lambda: "yy2" not in fleet.offline)
    finally:
        fleet.stop()


def test_an_operation_cut_off_by_a_drop_reports_how_it_ended_on_the_machine(seed: Remote) -> None:
    m = machine("yy3", seed.url("yy3", "10.193.6.37"))
    m.connect()
    journal_dir = Path(journal.directory())  # yy3's: the test's machines share this file system
    got: dict[str, tuple[int, str]] = {}
    try:
        assert m.request("outcome", {"token": uuid.uuid4().hex}) == {"state": "unknown"}
        worker = threading.Thread(target=lambda: got.update(run=m.run(["ping", "vm33", "172.21.0.1", "-c", "3"])))
        worker.start()
        # the operation runs on yy3 (about 3 s: the static overlay drops every echo); its journal says so
        until(lambda: any(json.loads(p.read_text())["state"] == "running" for p in journal_dir.glob("*.json")))
        seed.servers.kill("yy3")  # sshd and the agent die; the operation, in its own session, goes on
        time.sleep(1.0)
        seed.restart("yy3")
        worker.join(timeout=60)
    finally:
        m.close()
    status, output = got["run"]
    assert status == 1 and "3 packets transmitted, 0 received" in output
    assert "the connection to yy3 dropped while `ping vm33` ran; this is how it ended there" in output


def test_the_app_shows_both_remote_hosts_and_badges_the_dropped_one(seed: Remote, tmp_path: Path) -> None:
    slow = tmp_path / "ssh" / "slow-agent"
    slow.write_text("#!/bin/sh\nsleep 120\n")  # never greets: a machine that hangs
    slow.chmod(0o755)

    async def run() -> None:
        machines = [machine(h, seed.url(h, a)) for h, a in (("yy2", "10.193.6.36"), ("yy3", "10.193.6.37"))]
        machines.append(machine("yy4", seed.url("yy3", "10.193.6.37") + f"&command={slow}"))
        app = VxrayApp(remote(machines))
        async with app.run_test(size=(160, 48)) as pilot:

            async def until(ready: Callable[[], bool]) -> None:
                deadline = time.monotonic() + 30
                while not ready():
                    assert time.monotonic() < deadline, f"never shown; badges {app.badges}"
                    await pilot.pause(0.1)

            await until(lambda: app.badges == [("yy2", False), ("yy3", False), ("yy4", True)])
            assert app.labels.offline["yy4"] == "connecting", "a hanging machine holds up neither UI nor others"
            await pilot.press("question_mark")
            assert type(app.screen).__name__ == "Help"
            await pilot.press("escape")
            app.dispatch_line("trace vm33 vm3")
            await until(lambda: app.last_trace is not None)
            assert not app.last_trace[2].delivered
            assert "vm33" in app.vocabulary.containers and f"{seed.lab}.yy3-vm33" in app.vocabulary.namespaces
            assert app.vocabulary.vteps == {"yy2": "10.193.6.36", "yy3": "10.193.6.37"}, "completion knows the machines"
            await pilot.press("f", "y")  # the fix runs on yy3, where the trace stopped, through yy3's agent
            await until(lambda: app.last_trace is not None and app.last_trace[2].delivered)
            seed.servers.kill("yy2")
            await until(lambda: ("yy2", True) in app.badges)
            assert ("yy3", False) in app.badges
            seed.restart("yy2")
            await until(lambda: app.badges[:2] == [("yy2", False), ("yy3", False)])

    asyncio.run(run())


def test_the_inventory_saves_hosts_and_refuses_bad_ones_without_change(
    seed: Remote, capsys: pytest.CaptureFixture[str]
) -> None:
    before = Path(inventory.path()).read_text()
    for argv, message in ((["hosts", "add", "bad", "telnet://x"], "bad host 'telnet://x'"),
                          (["hosts", "add", "yy2", "ssh://root@h"], "host yy2 is already in the inventory"),
                          (["hosts", "add", "b d", "ssh://h"], "bad host name 'b d'"),
                          (["hosts", "rm", "nope"], "no host 'nope' in the inventory"),
                          (["-H", "nope", "snapshot"], "unknown host 'nope'")):  # fmt: skip
        status, _, err = _out(capsys, argv)
        assert status == 2 and message in err and err.count("\n") == 1, err
    assert Path(inventory.path()).read_text() == before
    status, out, _ = _out(capsys, ["hosts", "ls", "--json"])
    assert [h["name"] for h in json.loads(out)] == ["yy2", "yy3"]
    assert main(["hosts", "rm", "yy2"]) == 0
    assert [h.name for h in inventory.load().hosts] == ["yy3"]


def test_agents_register_in_consul_and_are_offered_beside_the_saved_hosts(
    seed: Remote, capsys: pytest.CaptureFixture[str]
) -> None:
    standin = ConsulStandin().start()
    try:
        inv = inventory.load()
        inv.store = standin.url
        inventory.save(inv)
        env = {"SSH_CONNECTION": "10.193.6.99 50000 10.193.6.40 2222", "PATH": "/usr/bin:/bin"}
        proc = subprocess.run([sys.executable, "-m", "tui.cli", "--store", standin.url, "agent", "--stdio",
                               "--name", "yy4", "--netns", "nothing-*"], input="", capture_output=True, text=True,
                              env=env, timeout=30)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout.splitlines()[0])["protocol"] == 1
        status, out, _ = _out(capsys, ["hosts", "ls", "--json"])
        assert status == 0
        rows = {h["name"]: h for h in json.loads(out)}
        assert rows["yy4"] == {"name": "yy4", "url": "ssh://root@10.193.6.40:2222", "source": "consul"}
        assert rows["yy2"]["source"] == "inventory"
    finally:
        standin.stop()
