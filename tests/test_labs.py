"""Labs: topology files, the overlay-static scenario solved with real pings, clean up/down."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.errors import VxrayError
from backend.lab import runner
from backend.lab.spec import dump, parse
from tui.cli import main

from conftest import Lab, sh

BAD_FIELD = """\
[lab]
name = "t"

[[hosts]]
name = "h1"
underlay = "10.0.0.1/24"

[[containers]]
name = "a"
host = "h1"

[[containers]]
name = "b"
hostt = "h1"
"""


def test_schema_error_names_the_line_and_the_field() -> None:
    with pytest.raises(VxrayError) as err:
        parse(BAD_FIELD, "t.toml")
    assert str(err.value).startswith("t.toml:14: containers[1].hostt: unknown field")


def test_reference_to_an_unknown_host_is_placed_on_its_line() -> None:
    text = BAD_FIELD.replace('hostt = "h1"', 'host = "h9"')
    with pytest.raises(VxrayError, match=r"^t.toml:14: containers\[1\].host: unknown host 'h9'$"):
        parse(text, "t.toml")


def _namespaces(prefix: str) -> list[str]:
    return sorted(n for n in os.listdir("/run/netns") if n.startswith(prefix))


def test_overlay_static_is_unsolved_until_the_field_notes_fix(
    lab: Lab, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"{lab.prefix}ovs"
    assert main(["lab", "up", "overlay-static", "--name", name]) == 0
    assert main(["lab", "check"]) == 1
    assert "not solved: vm33 -> vm3, vm3 -> vm33" in capsys.readouterr().out
    matrix = runner.status(name)["reachability"]
    assert matrix == {"vm3": {"vm33": False}, "vm33": {"vm3": False}}

    spec, _ = runner.load("overlay-static")
    for line in spec.solution:
        assert main(shlex.split(line)) == 0, line
    assert main(["lab", "check", name]) == 0
    assert capsys.readouterr().out.strip().endswith("solved")
    assert runner.status(name)["reachability"] == {"vm3": {"vm33": True}, "vm33": {"vm3": True}}

    assert main(["lab", "down", name]) == 0
    assert _namespaces(f"{name}.") == [] and not (home / "labs" / name).exists()


def test_lab_up_of_a_lab_that_is_up_says_so_and_changes_nothing(
    lab: Lab, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"{lab.prefix}twice"
    assert main(["lab", "up", "overlay-static", "--name", name]) == 0
    before = _namespaces(f"{name}.")
    capsys.readouterr()
    assert main(["lab", "up", "overlay-static", "--name", name]) == 2
    assert capsys.readouterr().err.strip() == f"vxray: lab {name} is already up (`vxray lab down {name}` first)"
    assert _namespaces(f"{name}.") == before
    runner.down(name)


def test_a_build_failing_half_way_leaves_no_namespace_link_or_state(
    lab: Lab, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"{lab.prefix}broken"
    # vm33 asks for vm3's address: a file that parses, refused only by the store once the hosts are built
    text = runner.load("overlay-static", name)[1].replace('ip = "172.21.0.2"', 'ip = "172.21.0.1"')
    topo = tmp_path / "broken.toml"
    topo.write_text(text)
    root_links = sh("ip", "-br", "link").stdout
    assert main(["lab", "up", str(topo)]) == 2
    assert "IP 172.21.0.1 is already taken on network prod" in capsys.readouterr().err
    assert _namespaces(f"{name}.") == []
    assert not (home / "labs" / name).exists()
    assert sh("ip", "-br", "link").stdout == root_links


def test_bridge_isolation_holds_until_network_connect(lab: Lab, home: Path) -> None:
    name = f"{lab.prefix}iso"
    assert main(["lab", "up", "bridge-isolation", "--name", name]) == 0
    assert runner.status(name)["reachability"] == {"a": {"b": False}, "b": {"a": False}}
    assert runner.check(name) == [("a", "b"), ("b", "a")]
    for line in runner.load("bridge-isolation")[0].solution:
        assert main(shlex.split(line)) == 0, line
    assert runner.check(name) == []
    runner.down(name)


def test_docker_modes_share_isolate_and_publish_as_docker_does(lab: Lab, home: Path) -> None:
    name = f"{lab.prefix}modes"
    assert main(["lab", "up", "docker-modes", "--name", name]) == 0
    matrix = runner.status(name)["reachability"]
    assert matrix["c1"]["web1"] and matrix["joined"]["web1"], "joined shares c1's namespace"
    assert not any(matrix["alone"].values()), "network mode none has only lo"
    assert not matrix["c1"]["d1"], "docker0 and docker1 are isolated"
    assert "hostnet" not in matrix, "host mode has no namespace of its own"
    web1 = f"{name}.host1-web1"
    server = lab.spawn("ip", "netns", "exec", web1, "nc", "-l", "-p", "80")
    for _ in range(50):
        probe = lab.run(f"{name}.client", "nc", "-z", "-w", "1", "10.10.0.1", "8081", check=False)
        if probe.returncode == 0:
            break
    assert probe.returncode == 0, "published port 8081 of host1 does not reach web1:80"
    server.kill()
    assert runner.check(name) == []
    runner.down(name)


def _root_rules() -> list[str]:
    """The root namespace's rules on both back-ends, without the counters live traffic moves."""
    out = []
    for save in ("iptables-nft-save", "iptables-legacy-save"):
        text = sh(save, check=False).stdout
        out += [re.sub(r"\[\d+:\d+\]", "", line) for line in text.splitlines() if not line.startswith("#")]
    return out


def test_lab_down_cleans_up_after_a_killed_lab_up_and_cycles_leave_nothing(lab: Lab, home: Path) -> None:
    name = f"{lab.prefix}killed"
    root = Path(__file__).resolve().parent.parent
    root_links, root_rules = sh("ip", "-br", "link").stdout, _root_rules()
    proc = subprocess.Popen([sys.executable, "-m", "tui.cli", "lab", "up", "overlay-static", "--name", name],
                            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 20
    while len(_namespaces(f"{name}.")) < 3 and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    assert main(["lab", "down", name]) == 0
    assert _namespaces(f"{name}.") == [] and not (home / "labs" / name).exists()
    for scenario in ("overlay-static", "swarm-routed-broken", "docker-modes"):
        assert main(["lab", "up", scenario, "--name", name]) == 0
        assert main(["lab", "down", name]) == 0
    assert _namespaces(f"{name}.") == []
    assert sh("ip", "-br", "link").stdout == root_links
    assert _root_rules() == root_rules


@pytest.mark.parametrize("scenario", runner.builtin_names())
def test_topology_file_round_trips_through_dump(scenario: str) -> None:
    spec, _ = runner.load(scenario)
    assert parse(dump(spec), "dumped.toml") == spec


def test_export_describes_what_runs_and_builds_the_same_lab_again(lab: Lab, home: Path, tmp_path: Path) -> None:
    name, copy = f"{lab.prefix}exp", f"{lab.prefix}copy"
    assert main(["lab", "up", "bridge-isolation", "--name", name]) == 0
    assert main(["network", "connect", "net192", "a"]) == 0
    exported = tmp_path / "exported.toml"
    exported.write_text(runner.export(name))
    a = next(c for c in parse(exported.read_text()).containers if c.name == "a")
    assert [att.network for att in a.networks] == ["net18", "net192"]
    assert main(["lab", "up", str(exported), "--name", copy]) == 0
    assert runner.status(copy)["reachability"] == runner.status(name)["reachability"]
    runner.down(copy)
    runner.down(name)


ROUTED = """\
[lab]
name = "t"

[[segments]]
name = "lan1"

[[routers]]
name = "r1"
interfaces = [{ segment = "lan9", address = "10.0.0.1/24" }]

[[hosts]]
name = "h1"
underlay = "10.0.0.2/24"
"""


def test_router_on_an_unknown_segment_is_placed_on_its_line() -> None:
    with pytest.raises(VxrayError, match=r"^t.toml:9: routers\[0\].interfaces\[0\].segment: unknown segment 'lan9'$"):
        parse(ROUTED, "t.toml")


def test_fault_of_an_unknown_kind_or_missing_a_field_is_named() -> None:
    text = ROUTED.replace("lan9", "lan1") + '\n[[faults]]\nkind = "gremlins"\nhost = "h1"\n'
    with pytest.raises(VxrayError, match=r"^t.toml:16: faults\[0\].kind: unknown fault 'gremlins'"):
        parse(text, "t.toml")
    with pytest.raises(VxrayError, match=r"^t.toml:15: faults\[0\]: fault wrong-vni needs 'network'$"):
        parse(text.replace("gremlins", "wrong-vni"), "t.toml")
    with pytest.raises(VxrayError, match=r"^t.toml:17: faults\[0\].host: unknown host 'h9'$"):
        parse(text.replace("gremlins", "forward-drop").replace('host = "h1"\n', 'host = "h9"\n'), "t.toml")


def test_a_lab_file_names_a_bad_engine_or_a_mix_of_engines_with_its_line() -> None:
    base = '[lab]\nname = "x"\n\n[[hosts]]\nname = "a"\nunderlay = "10.0.0.1/24"\nengine = "{}"\n'
    with pytest.raises(VxrayError, match=r"lab.toml:7: hosts\[0\].engine: unknown engine 'podman'"):
        parse(base.format("podman"), "lab.toml")
    mixed = base.format("docker") + '\n[[hosts]]\nname = "b"\nunderlay = "10.0.0.2/24"\n'
    with pytest.raises(VxrayError, match=r"hosts\[1\].engine: every host of a lab runs the same engine"):
        parse(mixed, "lab.toml")
