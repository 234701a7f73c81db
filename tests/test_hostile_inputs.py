"""Every input from outside — files, URLs, environment values, protocol lines — read as a stranger's.

Whatever is wrong ends as one line ``vxray: …`` naming where it came from (the
file and line, the URL, the variable) and the bad value, with exit status 2 and
nothing changed; the shell goes on after it. The tables below are hand-written
hostile cases run as the real command; the fuzz tests feed each parser what
hypothesis makes of it and allow nothing but vxray's own error out.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from textual.widgets import Input

from backend import inventory, protocol, remote
from backend.agent import Agent
from backend.errors import VxrayError
from backend.lab import spec
from backend.protocol import Hello
from backend.store import registry
from tui.cli import main
from tui.shell import Shell

from conftest import Lab

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROOT = Path(__file__).resolve().parent.parent
VXRAY_VARS = ("VXRAY_HOME", "VXRAY_STORE", "VXRAY_INVENTORY", "VXRAY_SSH_CONFIG", "VXRAY_REMOTE_COMMAND",
              "VXRAY_HISTORY")  # fmt: skip

TOPOLOGY = """\
[lab]
name = "{name}"
description = "two hosts, one overlay"

[[hosts]]
name = "h1"
underlay = "10.250.0.1/24"

[[hosts]]
name = "h2"
underlay = "10.250.0.2/24"

[[networks]]
name = "ov"
driver = "overlay"
subnet = "10.251.0.0/24"
vni = 300

[[containers]]
name = "c1"
host = "h1"
networks = [{{ network = "ov", ip = "10.251.0.10", mac = "02:42:0a:fb:00:0a" }}]
ports = ["8080:80"]

[[containers]]
name = "c2"
host = "h2"
networks = [{{ network = "ov", ip = "10.251.0.20" }}]

[exercise]
goal = ["c1 -> c2"]
"""


@dataclass
class World:
    """The places a hostile input must leave untouched: this test's home, inventory and namespaces."""

    tmp: Path
    lab: Lab
    env: dict[str, str] = field(default_factory=dict)

    @property
    def lab_name(self) -> str:
        return f"{self.lab.prefix}t"

    def topology(self) -> str:
        return TOPOLOGY.format(name=self.lab_name)

    def unchanged(self) -> None:
        """No lab state, no namespace of this test, no inventory, no store file were made."""
        assert not (self.tmp / "home" / "labs").exists()
        assert not (self.tmp / "inventory.toml").exists()
        assert not any(p.suffix == ".db" for p in self.tmp.rglob("*"))
        netns = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
        assert not [n for n in netns if n.startswith(self.lab.prefix)]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """vxray pointed at a fresh home and inventory; every namespace named with this test's prefix is swept."""
    for var in VXRAY_VARS:
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "home").mkdir()
    env = {"VXRAY_HOME": str(tmp_path / "home"), "VXRAY_INVENTORY": str(tmp_path / "inventory.toml")}
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    guard = Lab()  # no namespace is meant to be made; were one made, it is removed
    try:
        yield World(tmp_path, guard, env)
    finally:
        guard.close()


def one_line(capsys: pytest.CaptureFixture[str], argv: list[str], *named: str) -> str:
    """Run ``vxray argv`` in-process: exit 2, nothing on stdout, one ``vxray: `` line naming every ``named``."""
    status = main(argv)
    got = capsys.readouterr()
    lines = got.err.splitlines()
    assert status == 2, got
    assert got.out == ""
    assert len(lines) == 1 and lines[0].startswith("vxray: "), got.err
    assert "Traceback" not in got.err
    for word in named:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def run_vxray(argv: list[str], env: dict[str, str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """The real entry point, in its own process (a traceback would show on its stderr)."""
    return subprocess.run([sys.executable, "-m", "tui.cli", *argv], input=stdin, capture_output=True, env=env,
                          cwd=ROOT, timeout=60)  # fmt: skip


# -- lab topology files -------------------------------------------------------------------------------------------

LAB_FILES = {  # case -> (how the good topology is broken, what the one line must name)
    "bad_underlay_address": (("10.250.0.1/24", "300.1.1.1/24"), ("hosts[0].underlay", "'300.1.1.1/24'")),
    "underlay_without_prefix": (("10.250.0.1/24", "10.250.0.1"), ("hosts[0].underlay", "'10.250.0.1'")),
    "subnet_too_long": (("10.251.0.0/24", "10.251.0.0/33"), ("networks[0].subnet", "'10.251.0.0/33'")),
    "ip_outside_its_subnet": (('"10.251.0.20"', '"10.9.9.9"'), ("containers[1].networks[0].ip", "10.9.9.9")),
    "bad_mac": (("02:42:0a:fb:00:0a", "02:42:zz:fb:00:0a"), ("containers[0].networks[0].mac", "02:42:zz:fb:00:0a")),
    "multicast_mac": (("02:42:0a:fb:00:0a", "03:42:0a:fb:00:0a"), ("networks[0].mac", "03:42:0a:fb:00:0a")),
    "negative_vni": (("vni = 300", "vni = -1"), ("networks[0].vni", "-1")),
    "huge_vni": (("vni = 300", "vni = 99999999999999999999"), ("networks[0].vni", "99999999999999999999")),
    "vni_as_text": (("vni = 300", 'vni = "300"'), ("networks[0].vni", "'300'")),
    "unknown_key": (('driver = "overlay"', 'driver = "overlay"\ncolour = "red"'), ("networks[0].colour",)),
    "ports_as_a_number": (('ports = ["8080:80"]', "ports = 80"), ("containers[0].ports", "80")),
    "bad_port_mapping": (('ports = ["8080:80"]', 'ports = ["99999:80"]'), ("containers[0].ports", "'99999'")),
    "hosts_as_a_table": (("[[hosts]]\nname = \"h1\"", "[hostz]\nname = \"h1\""), ("hostz",)),
    "invalid_toml": (('vni = 300', 'vni = = 300'), ("not valid TOML",)),
    "name_with_shell_metacharacters": (('name = "h2"', 'name = "h2;reboot"'), ("hosts[1].name", "'h2;reboot'")),
    "lab_name_with_a_command": (('[lab]\nname = "', '[lab]\nname = "$(id)'), ("lab.name", "'$(id)")),
    "description_with_a_terminal_escape": (('two hosts', 'two\\u001b[2J hosts'), ("lab.description", "\\x1b")),
    "payload_size_too_large": (('goal = [', 'size = 70000\ngoal = ['), ("exercise.size", "70000")),
    "goal_naming_no_container": (('"c1 -> c2"', '"c1 -> c9"'), ("exercise.goal", "c1 -> c9")),
    "unknown_option": (('vni = 300', 'vni = 300\noptions = { nic = "eth0" }'), ("networks[0].options", "'nic'")),
    "gateway_off_the_underlay": (('underlay = "10.250.0.2/24"', 'underlay = "10.250.0.2/24"\ngateway = "10.9.0.1"'),
                                 ("hosts[1].gateway", "10.9.0.1")),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(LAB_FILES))
def test_lab_file_with_a_bad_field_is_one_line_naming_file_line_and_value(
    case: str, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    (old, new), named = LAB_FILES[case]
    text = world.topology()
    assert old in text, case
    topo = world.tmp / "lab.toml"
    topo.write_text(text.replace(old, new, 1))
    line = one_line(capsys, ["lab", "up", str(topo)], f"{topo}:", *named)
    assert line.split(":")[2].isdigit(), f"no line number in {line!r}"
    world.unchanged()


def test_lab_file_with_a_segment_name_too_long_for_the_kernel_is_one_line(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    topo = world.tmp / "lab.toml"
    topo.write_text(world.topology().replace("[[hosts]]", '[[segments]]\nname = "sixteen-chars-xx"\n\n[[hosts]]', 1))
    one_line(capsys, ["lab", "up", str(topo)], f"{topo}:", "segments[0].name", "'sixteen-chars-xx'", "15")
    world.unchanged()


@pytest.mark.parametrize(
    ("case", "content"),
    [("not_utf8", b'[lab]\nname = "caf\xe9"\n'), ("huge", b"# " + b"x" * (2**20 + 1)),
     ("nested_too_deep", b"a = " + b"[" * 100_000), ("nul_bytes", b"\x00" * 64)],
)  # fmt: skip
def test_lab_file_that_is_no_topology_at_all_is_one_line(
    case: str, content: bytes, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    topo = world.tmp / f"{case}.toml"
    topo.write_bytes(content)
    one_line(capsys, ["lab", "up", str(topo)], str(topo))
    world.unchanged()


def test_lab_name_given_on_the_command_line_is_checked_before_it_enters_the_file(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    topo = world.tmp / "lab.toml"
    topo.write_text(world.topology())
    one_line(capsys, ["lab", "up", str(topo), "--name", 'x"\\1;id'], "--name", "'x\"\\\\1;id'")
    one_line(capsys, ["lab", "up", str(topo), "--name", "a" * 25], "a" * 25)
    one_line(capsys, ["lab", "up", str(topo)[:-1]], "no lab file")
    world.unchanged()


def test_lab_down_never_removes_a_directory_outside_the_labs(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    keep = world.tmp / "home" / "journal"
    keep.mkdir()
    for name in ("..", "", "../..", "a/b"):
        one_line(capsys, ["lab", "down", name], f"invalid lab name {name!r}")
    assert keep.is_dir()


# -- store URLs ---------------------------------------------------------------------------------------------------

STORE_URLS = {
    "unclosed_ipv6_bracket": "consul://[::1",
    "port_out_of_range": "consul://10.0.0.1:99999",
    "port_not_a_number": "consul://10.0.0.1:http",
    "port_zero": "consul://10.0.0.1:0",
    "negative_port": "consul://10.0.0.1:-1",
    "no_host": "consul://",
    "unknown_scheme": "redis://10.0.0.1",
    "unknown_option": "consul://10.0.0.1?dc=x",
    "password_in_url": "consul://root:secret@10.0.0.1",
    "prefix_escaping_upwards": "consul://10.0.0.1/../..",
    "relative_file": "file://store.db",
    "file_with_options": "file:///tmp/store.db?mode=ro",
    "control_character": "consul://10.0.0.1\n",
    "empty": "",
}


@pytest.mark.parametrize("case", sorted(STORE_URLS))
def test_store_url_given_with_store_is_one_line_naming_it(
    case: str, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    url = STORE_URLS[case]
    one_line(capsys, ["--store", url, "network", "ls"], "invalid store URL", repr(url))
    world.unchanged()


def test_store_url_from_the_environment_names_the_variable(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VXRAY_STORE", "consul://[::1")
    one_line(capsys, ["network", "ls"], "$VXRAY_STORE", "'consul://[::1'")
    monkeypatch.setenv("VXRAY_STORE", f"file://{world.tmp}/no/such/dir/store.db")
    one_line(capsys, ["network", "ls"], f"{world.tmp}/no/such/dir")
    world.unchanged()


# -- host URLs ----------------------------------------------------------------------------------------------------

HOST_URLS = {
    "unclosed_ipv6_bracket": "ssh://[::1",
    "port_out_of_range": "ssh://h1:65536",
    "port_not_a_number": "ssh://h1:ssh",
    "host_that_is_an_ssh_option": "ssh://-oProxyCommand=id",
    "user_that_is_an_ssh_option": "ssh://-oProxyCommand=id@h1",
    "host_with_shell_metacharacters": "ssh://h1;id",
    "numeric_host_that_is_no_address": "ssh://300.1.1.1",
    "option_value_that_is_an_option": "ssh://h1?docker=-H",
    "option_value_with_a_newline": "ssh://h1?netns=a%0Ab",
    "option_without_a_value": "ssh://h1?netns",
    "unknown_option": "ssh://h1?identity=/root/.ssh/id",
    "option_given_twice": "ssh://h1?host_netns=a&host_netns=b",
    "relative_netns_dir": "ssh://h1?netns_dir=run/netns",
    "docker_url_of_no_scheme": "ssh://h1?docker=/run/docker.sock",
    "command_with_unbalanced_quotes": "ssh://h1?command=%22vxray",
    "password_in_url": "ssh://root:secret@h1",
    "path_after_the_host": "ssh://h1/etc",
    "raw_control_character": "ssh://h1\t",
    "file_with_options": "file:///tmp/h.json?netns=x",
    "unknown_scheme": "telnet://h1",
}


@pytest.mark.parametrize("case", sorted(HOST_URLS))
def test_host_url_is_one_line_naming_it_whether_used_or_saved(
    case: str, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    url = HOST_URLS[case]
    one_line(capsys, ["-H", url, "snapshot"], "bad host", repr(url))
    one_line(capsys, ["hosts", "add", "h1", url], "bad host", repr(url))
    one_line(capsys, ["-H", f"h1={url}", "doctor"], "bad host", repr(url))
    world.unchanged()


def test_a_host_named_on_the_command_line_gets_a_plain_name(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    one_line(capsys, ["-H", "a;b=ssh://h1", "snapshot"], "bad host name 'a;b'")
    one_line(capsys, ["hosts", "add", "a b", "ssh://h1"], "bad host name 'a b'")
    world.unchanged()


def test_no_word_of_a_host_url_becomes_an_ssh_option() -> None:
    """What parse lets through reaches ssh after ``--`` and as ``--option=value`` words only."""
    address = remote.parse("ssh://u_1@[fe80::1]:2222?netns=lab.h-*&netns_dir=/run/x&docker=unix:///d.sock")
    argv = remote.SshMachine("m", address, ssh_config="/dev/null").argv()
    destination = argv.index("--") + 1
    assert argv[destination] == "u_1@fe80::1"
    assert argv[:destination] == ["ssh", "-T", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=5", "-o",
                                  "ServerAliveCountMax=2", "-F", "/dev/null", "-p", "2222", "--"]  # fmt: skip


# -- the inventory ------------------------------------------------------------------------------------------------

INVENTORIES = {  # case -> (file text, what the one line must name besides the file)
    "hosts_as_a_number": ("hosts = 5\n", ("hosts", "5")),
    "name_as_a_number": ('[[hosts]]\nname = 5\nurl = "ssh://h1"\n', ("hosts[0].name", "5")),
    "bad_url": ('[[hosts]]\nname = "a"\nurl = "ssh://[::1"\n', ("hosts[0].url", "'ssh://[::1'")),
    "unknown_key": ('[[hosts]]\nname = "a"\nurl = "ssh://h1"\nkey = "x"\n', ("hosts[0].key",)),
    "bad_store": ('store = "consul://h1:0"\n', ("store", "'consul://h1:0'")),
    "host_saved_twice": ('[[hosts]]\nname = "a"\nurl = "ssh://h1"\n[[hosts]]\nname = "a"\nurl = "ssh://h2"\n',
                         ("hosts[1].name", "'a'")),
    "invalid_toml": ("[[hosts]\n", ("not valid TOML",)),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(INVENTORIES))
def test_inventory_with_a_bad_entry_is_one_line_naming_file_and_value(
    case: str, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    text, named = INVENTORIES[case]
    inv = world.tmp / "inventory.toml"
    inv.write_text(text)
    one_line(capsys, ["hosts", "ls"], f"{inv}:", *named)
    one_line(capsys, ["hosts", "add", "z", "ssh://h9"], f"{inv}:", *named)
    assert inv.read_text() == text


def test_inventory_that_is_no_text_is_one_line(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    inv = world.tmp / "inventory.toml"
    for content in (b"\xff\xfe", b"#" * (2**20 + 1)):
        inv.write_bytes(content)
        one_line(capsys, ["hosts", "ls"], str(inv))


# -- the environment ----------------------------------------------------------------------------------------------

ENVIRONMENTS = {  # case -> (variable, value, command)
    "empty_home": ("VXRAY_HOME", "", ["lab", "ls"]),
    "relative_home": ("VXRAY_HOME", "var/vxray", ["lab", "ls"]),
    "home_in_no_directory": ("VXRAY_HOME", "/nonexistent-vxray/home", ["network", "ls"]),
    "home_that_is_a_file": ("VXRAY_HOME", "/etc/hostname", ["lab", "ls"]),
    "home_not_utf8": ("VXRAY_HOME", "/tmp/caf\udce9", ["lab", "ls"]),
    "home_with_a_newline": ("VXRAY_HOME", "/tmp/a\nb", ["lab", "ls"]),
    "empty_store": ("VXRAY_STORE", "", ["network", "ls"]),
    "inventory_that_is_a_directory": ("VXRAY_INVENTORY", "/tmp", ["hosts", "ls"]),
    "relative_inventory": ("VXRAY_INVENTORY", "inventory.toml", ["hosts", "ls"]),
    "missing_ssh_config": ("VXRAY_SSH_CONFIG", "/nonexistent-vxray/ssh_config", ["-H", "ssh://h1", "snapshot"]),
    "remote_command_with_unbalanced_quotes": ("VXRAY_REMOTE_COMMAND", "'vxray", ["-H", "ssh://h1", "snapshot"]),
    "remote_command_that_is_an_option": ("VXRAY_REMOTE_COMMAND", "-oProxyCommand=id", ["-H", "ssh://h1", "snapshot"]),
}


@pytest.mark.parametrize("case", sorted(ENVIRONMENTS))
def test_environment_value_is_one_line_naming_variable_and_value(
    case: str, world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    var, value, argv = ENVIRONMENTS[case]
    monkeypatch.setenv(var, value)
    shown = repr(value)[1:-1]  # as the line quotes it, escapes included
    one_line(capsys, argv, f"${var}", shown)
    assert not os.path.exists("/nonexistent-vxray")
    world.unchanged()


def test_history_file_that_cannot_be_written_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from tui.shell import history_path

    monkeypatch.setenv("VXRAY_HISTORY", "/tmp")
    with pytest.raises(VxrayError, match=r"^\$VXRAY_HISTORY='/tmp' is a directory, not a file$"):
        history_path()


def test_real_process_with_a_bad_environment_prints_no_traceback(world: World) -> None:
    env = {**os.environ, **world.env, "VXRAY_HOME": "/tmp/caf\udce9", "PYTHONPATH": str(ROOT)}
    proc = run_vxray(["lab", "ls"], env)
    assert proc.returncode == 2
    assert proc.stderr.decode().splitlines() == ["vxray: $VXRAY_HOME='/tmp/caf\\udce9' is not UTF-8"]


# -- the shell goes on ----------------------------------------------------------------------------------------------


def test_the_shell_goes_on_after_every_hostile_line(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    topo = world.tmp / "lab.toml"
    topo.write_text(world.topology().replace("10.250.0.1/24", "300.1.1.1/24"))
    sh = Shell()
    hostile = [f"lab up {topo}", f"lab up {topo} --name ../x", "hosts add h1 'ssh://h1?docker=-x'",
               "hosts add h1 ssh://h1:0", "lab down .. --yes", "hosts add 'h;1' ssh://h1"]  # fmt: skip
    for line in hostile:
        assert sh.execute(line) == 2, line
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith("vxray: "), (line, err)
    assert sh.execute("lab ls") == 0
    world.unchanged()


def test_the_apps_command_line_goes_on_after_hostile_lines(world: World) -> None:
    """The app's ``:`` line runs the same command: its one line is logged and the app keeps running."""
    from tui.app import VxrayApp
    from tui.source import from_file

    topo = world.tmp / "lab.toml"
    topo.write_text(world.topology().replace("10.250.0.1/24", "300.1.1.1/24"))
    app = VxrayApp(from_file(str(ROOT / "tests" / "fixtures" / "overlay-static.view.json")))
    logged: list[str] = []
    app.log_line = lambda text, error=False: logged.append(text)  # type: ignore[method-assign]

    async def run() -> None:
        async with app.run_test(size=(160, 48)) as pilot:
            lines = {f"lab up {topo}": f":lab up {shlex.quote(str(topo))}  ", 'lab up "unclosed': "vxray: cannot parse",
                     "hosts add h1 ssh://h1:0": ":hosts add h1 ssh://h1:0  "}  # fmt: skip
            for line, logged_as in lines.items():
                await pilot.press("colon")
                app.query_one("#command", Input).value = line
                await pilot.press("enter")
                for _ in range(100):  # the command runs in a worker
                    if any(entry.startswith(logged_as) for entry in logged):
                        break
                    await pilot.pause(0.1)
            assert app.is_running

    asyncio.run(run())
    outputs = [logged[i + 1] for i, entry in enumerate(logged) if entry.endswith("✗ exit 2")]
    assert len(outputs) == 2, logged
    assert all(len(out.splitlines()) == 1 and out.startswith("vxray: ") for out in outputs), outputs
    assert "300.1.1.1/24" in outputs[0] and "'ssh://h1:0'" in outputs[1]
    assert "vxray: cannot parse the line: No closing quotation" in logged, "the line is refused before it runs"
    world.unchanged()


# -- the agent protocol ---------------------------------------------------------------------------------------------

AGENT_LINES = [  # each gets one error answer, then the agent answers the next
    "not json", "[1, 2]", '"a string"', "{}", '{"id": "1", "op": "ping"}', '{"id": 1e400, "op": "ping"}',
    '{"id": -3, "op": "ping"}', '{"id": 2, "op": "reboot"}', '{"id": 3, "op": 5}', '{"id": 4, "op": "run"}',
    '{"id": 5, "op": "run", "args": {"argv": 5}}', '{"id": 6, "op": "run", "args": {"argv": ["sh", "-c", "id"]}}',
    '{"id": 7, "op": "outcome", "args": {"token": "../../etc/passwd"}}',
    '{"id": 8, "op": "seen", "args": {"watch": 9}}',
    '{"id": 9, "op": "seen", "args": {"watch": 1, "wait": NaN}}', '{"id": 10, "op": "ping", "args": []}',
    '{"id": 11, "op": "send", "args": {"probe": {"src_netns": "host", "dst": "x"}, "ident": 1}}',
    '{"id": 12, "op": "ping", "also": 1}', "[" * 50_000, "x" * (protocol.REQUEST_MAX + 10),
]  # fmt: skip


def test_the_agent_answers_every_bad_request_with_an_error_and_keeps_serving(world: World) -> None:
    env = {**os.environ, **world.env, "PYTHONPATH": str(ROOT)}
    stdin = "\n".join([*AGENT_LINES, '{"id": 99, "op": "ping"}']).encode() + b"\n\xff\xfe\n"
    proc = run_vxray(["agent", "--stdio", "--netns", f"{world.lab.prefix}none-*", "--docker", "none"], env, stdin)
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr.decode()
    hello, *answers = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert hello["vxray"] == "agent"
    assert len(answers) == len(AGENT_LINES) + 2
    assert all(a["ok"] is False and isinstance(a["error"], str) for a in answers[:-2])
    assert answers[-2] == {"id": 99, "ok": True, "result": "pong"}
    assert answers[-1]["ok"] is False  # the bytes that are not UTF-8
    assert answers[4]["error"].startswith("not a request: its id is '1'")
    assert answers[7] == {"id": 2, "ok": False, "error": answers[7]["error"]} and "reboot" in answers[7]["error"]


FAKE_SSH = """\
#!{python}
# A stand-in for ssh: greets as $FAKE_HELLO says, then answers each request with $FAKE_ANSWER.
import json, os, sys
print(os.environ.get("FAKE_HELLO") or json.dumps({{"vxray": "agent", "protocol": 1, "version": "0", "host": "f"}}),
      flush=True)
for line in sys.stdin:
    print(os.environ["FAKE_ANSWER"].replace("{{id}}", str(json.loads(line)["id"])), flush=True)
"""
CLIENT_CASES = {  # case -> (greeting, answer, what the one line must say)
    "answer_not_json": ("", "garbage", "'garbage'"),
    "answer_a_list": ("", "[1]", "'[1]'"),
    "answer_with_ok_as_text": ("", '{"id": {id}, "ok": "yes"}', '"ok": "yes"'),
    "answer_to_a_request_never_sent": ("", '{"id": 77, "ok": true, "result": 1}', "request 77"),
    "event_of_the_wrong_shape": ("", '{"event": "changed", "namespaces": 5}', '"namespaces": 5'),
    "error_with_a_newline": ("", '{"id": {id}, "ok": false, "error": "one\\ntwo"}', "one\\ntwo"),
    "greeting_not_json": ("Welcome!", "", "not a vxray agent greeting: 'Welcome!'"),
    "greeting_with_protocol_as_text": ('{"vxray": "agent", "protocol": "1"}', "", "bad protocol: '1'"),
    "greeting_with_an_infinite_protocol": ('{"vxray": "agent", "protocol": 1e999}', "", "bad protocol: inf"),
}


@pytest.fixture
def fake_ssh(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(FAKE_SSH.format(python=sys.executable))
    (bin_dir / "ssh").chmod(0o755)
    return bin_dir


@pytest.mark.parametrize("case", sorted(CLIENT_CASES))
def test_a_machine_breaking_the_protocol_is_one_line_naming_it(case: str, world: World, fake_ssh: Path) -> None:
    hello, answer, said = CLIENT_CASES[case]
    env = {**os.environ, **world.env, "PYTHONPATH": str(ROOT), "PATH": f"{fake_ssh}:{os.environ['PATH']}",
           "FAKE_HELLO": hello, "FAKE_ANSWER": answer}  # fmt: skip
    proc = run_vxray(["-H", "ssh://fakehost", "snapshot", "--json"], env)
    lines = proc.stderr.decode().splitlines()
    assert proc.returncode == 2 and proc.stdout == b""
    assert len(lines) == 1 and lines[0].startswith("vxray: fakehost: "), lines
    assert said in lines[0], lines[0]


# -- fuzz: nothing but vxray's own error comes out of a parser --------------------------------------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)  # fmt: skip


def _basic_string(text: str) -> str:
    """``text`` as a TOML basic string (JSON's escapes, but no surrogate pairs for characters beyond U+FFFF)."""
    return json.dumps(text, ensure_ascii=False)


TOML_VALUES = st.one_of(
    st.integers().map(str), st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["true", "false"]), st.text(max_size=30).map(_basic_string),
    st.lists(st.text(max_size=12).map(_basic_string), max_size=3).map(lambda v: f"[{', '.join(v)}]"),
    st.sampled_from(['{ network = "ov" }', '{ a = 1 }', "[1, [2]]", "{}", "[]", '"300.1.1.1/24"', '"10.251.0.0/33"',
                     '"02:42:zz:00:00:01"', '"container:c1"', '"lo"', '"ul-h1"', '"h1"', '"ov"', '"udp-drop"']),
)  # fmt: skip


def _mutated(text: str, data: st.DataObject) -> str:
    """``text`` with one ``key = value`` line's value replaced, or a line inserted, or a header duplicated."""
    lines = text.split("\n")
    assigned = [i for i, line in enumerate(lines) if " = " in line]
    i = data.draw(st.sampled_from(assigned))
    action = data.draw(st.sampled_from(["value", "insert", "header"]))
    if action == "value":
        lines[i] = f"{lines[i].split(' = ')[0]} = {data.draw(TOML_VALUES)}"
    elif action == "insert":
        key = data.draw(st.sampled_from(["name", "vni", "mtu", "host", "gateway", "mode", "segment", "driver", "x"]))
        lines.insert(i, f"{key} = {data.draw(TOML_VALUES)}")
    else:
        lines.insert(i, data.draw(st.sampled_from(["[[hosts]]", "[[segments]]", "[[faults]]", "[[routers]]",
                                                   "[exercise]", "[[containers]]", "[[networks]]"])))  # fmt: skip
    return "\n".join(lines)


def _only_vxray_errors(parse: Callable[..., object], *args: object) -> None:
    with contextlib.suppress(VxrayError):
        parse(*args)


@FUZZ
@given(st.data())
def test_fuzzed_topology_files_raise_nothing_but_vxray_errors(data: st.DataObject) -> None:
    base = TOPOLOGY.format(name="fuzz") + textwrap.dedent("""
        [[faults]]
        kind = "mtu"
        host = "h1"
        mtu = 1400
        [[routers]]
        name = "r1"
        interfaces = [{ segment = "ul0", address = "10.250.0.254/24" }]
    """)  # fmt: skip
    mutations = data.draw(st.integers(0, 3))  # none: arbitrary text, for the TOML reader itself
    text = data.draw(st.text(max_size=200)) if not mutations else base
    for _ in range(mutations):
        text = _mutated(text, data)
    _only_vxray_errors(spec.parse, text, "fuzz.toml")


@FUZZ
@given(st.data())
def test_fuzzed_inventories_raise_nothing_but_vxray_errors(data: st.DataObject) -> None:
    base = '[[hosts]]\nname = "a"\nurl = "ssh://h1?netns=x"\n\n[[hosts]]\nname = "b"\nurl = "file:///x.json"\n'
    text = _mutated(f'store = "consul://h:8500"\n{base}', data) if data.draw(st.booleans()) else data.draw(st.text())
    _only_vxray_errors(inventory.parse, text, "inventory.toml")


URL_PARTS = st.sampled_from(["", ":", "@", "[", "]", "::1", "-o", "%0a", "%2D", "?", "&", "=", "#", "/", "..", "h1",
                             "22", "99999", "netns", "docker", "command", "\n", " ", "\x00", "é", "%ff",
                             "+"])  # fmt: skip


def _urls(schemes: list[str]) -> st.SearchStrategy[str]:
    built = st.tuples(st.sampled_from(schemes), st.lists(URL_PARTS, max_size=10)).map(lambda t: t[0] + "".join(t[1]))
    return built | st.text(max_size=60)


@FUZZ
@given(_urls(["consul://", "file://", "file:///", "redis://", ""]))
def test_fuzzed_store_urls_raise_nothing_but_vxray_errors(url: str) -> None:
    _only_vxray_errors(registry.parse_url, url)


@FUZZ
@given(_urls(["ssh://", "ssh://root@", "file://", "ssh://[", ""]))
def test_fuzzed_host_urls_raise_nothing_but_vxray_errors(url: str) -> None:
    try:
        address = remote.parse(url)
    except VxrayError:
        return
    words = [address.host, address.user, *address.netns, address.host_netns, *address.netns_dir, address.docker]
    assert not any(w.startswith("-") for w in words), address


REQUESTS = st.one_of(
    st.text(max_size=80), JSON.map(json.dumps),
    st.fixed_dictionaries({"id": st.integers(-2, 2**54) | JSON, "op": st.sampled_from([*protocol.ARGS, "x"]) | JSON},
                          optional={"args": st.dictionaries(st.sampled_from(["argv", "token", "probe", "ident",
                                                                             "points", "watch", "wait", "x"]), JSON,
                                                            max_size=3) | JSON}).map(json.dumps),
)  # fmt: skip


class _Offline(Agent):
    """An agent that never touches the machine: no snapshot, no capture, no probe, no command, no watcher."""

    def live(self, op: str, args: dict[str, object]) -> object:
        return f"{op}: not here"


@FUZZ
@given(REQUESTS)
def test_fuzzed_requests_get_exactly_one_answer_from_the_agent(line: str) -> None:
    def refuse() -> None:
        raise VxrayError("no snapshot here")

    out = io.StringIO()
    agent = _Offline(out, None, refuse, lambda argv, token: (0, ""), Hello(1, "0", "fuzz"))  # type: ignore[arg-type]
    agent.watcher = mock.Mock()  # subscribed already: no netlink monitor is started
    with mock.patch.dict(os.environ, {"VXRAY_HOME": "/nonexistent-vxray"}):  # `outcome` finds no journal
        agent.handle(line)
    answers = out.getvalue().splitlines()
    assert len(answers) == 1
    assert isinstance(protocol.parse_message(answers[0]), protocol.Answer)


MACHINE_LINES = st.one_of(
    REQUESTS, st.fixed_dictionaries({"id": st.integers(-1, 9) | JSON, "ok": st.booleans() | JSON},
                                    optional={"result": JSON, "error": JSON}).map(json.dumps),
    st.fixed_dictionaries({"event": st.just("changed") | JSON, "namespaces": JSON}).map(json.dumps),
    st.fixed_dictionaries({"vxray": st.just("agent") | JSON, "protocol": JSON}, optional={
        "version": JSON, "host": JSON, "read_only": JSON}).map(json.dumps),
)  # fmt: skip


@FUZZ
@given(MACHINE_LINES)
def test_fuzzed_lines_from_a_machine_raise_nothing_but_vxray_errors(line: str) -> None:
    _only_vxray_errors(protocol.parse_hello, line)
    try:
        message = protocol.parse_message(line)
    except VxrayError:
        return
    if isinstance(message, protocol.Answer):
        for op in protocol.RESULTS:
            _only_vxray_errors(protocol.check_result, op, message.result)
    client = remote.SshMachine("m", remote.parse("ssh://m"), ssh_config="/dev/null")
    client.next_id = 5  # requests 1-5 were sent
    why = client._take(line)
    assert why is None or isinstance(why, str)


def test_a_line_longer_than_the_limit_is_dropped_not_held() -> None:
    stream = io.StringIO("short\n" + "x" * 100 + "\n0123456789\n" + "y" * 11 + "\nend")
    assert list(protocol.read_lines(stream, 10)) == ["short\n", None, "0123456789\n", None, "end"]
