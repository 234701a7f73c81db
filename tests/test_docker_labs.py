"""Real Docker Engines as the reference: a swarm of two Engines, broken the way hosts break, held
against real pings.

One swarm lab (``docker-swarm``: Debian's dockerd in two lab host namespaces, an attachable overlay)
is shared by the tests of this module — starting Engines and a swarm is the slow part. For every
fault, injected with plain ``ip``/``bridge``/``iptables`` commands into what Docker programmed, each
ordered pair of containers is snapshotted (``vxray snapshot --json`` per machine, read back as
``-H dhN=file://…``), traced and pinged; the trace's verdict must agree with the ping, the doctor
must name the fault first, and the fix the trace prints must make the ping pass again.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sshd import Servers, vxray_command

from backend import codec
from backend.collect import collect
from backend.lab import docker_build, runner
from backend.lab.spec import FaultSpec, LabSpec, dump
from backend.netns import Scope
from tui.cli import main

from conftest import DOCKER, DOCTOR, PLACEHOLDERS, RUN_PREFIX, have

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(not (have("dockerd") and os.path.exists("/bin/busybox")), reason="needs docker.io, busybox"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]

FAULTS = [  # (fault, what the doctor's first finding must mention)
    (FaultSpec("fdb-remove", host="dh2", network="prod", container="vm3"), "no FDB entry"),
    (FaultSpec("stale-fdb", host="dh2", network="prod", container="vm3", dst="192.168.77.99"), "stale FDB entry"),
    (FaultSpec("proxy-arp-remove", host="dh2", network="prod", container="vm3"), "goes unanswered"),
    (FaultSpec("udp-drop", host="dh1"), "drops VXLAN"),
    (FaultSpec("link-down", host="dh2", network="prod", device="vxlan0"), "is down"),
    (FaultSpec("wrong-arp", container="vm33", dst="vm3"), "stale static ARP entry"),
]


SSH: list[str] = []  # -H flags reaching the swarm's hosts over real OpenSSH, once the module's sshds run


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The swarm, and sshd in each Docker host's namespace (reached over the lab underlay from dh2)."""
    home = tmp_path_factory.mktemp("docker-home")
    env = {"VXRAY_HOME": str(home)}
    name = f"{RUN_PREFIX}sw"
    spec = replace(runner.load("docker-swarm")[0], name=name)
    servers = Servers(tmp_path_factory.mktemp("docker-ssh"), f"{name}.dh2", env)
    env |= {"VXRAY_SSH_CONFIG": servers.config, "VXRAY_REMOTE_COMMAND": vxray_command()}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        runner.up(spec, dump(spec))
        SSH.extend(_sshd(spec, servers))
        yield name, home
    finally:
        servers.stop()
        SSH.clear()
        runner.down(name)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _sshd(spec: LabSpec, servers: Servers) -> list[str]:
    """sshd in each Docker host's and router's namespace; the ``-H`` flags that reach them as machines."""
    flags = []
    for e in docker_build.engines_of(spec, runner.lab_dir(spec.name)):
        address = str(ipaddress.IPv4Interface(next(h.underlay for h in spec.hosts if h.name == e.host)).ip)
        servers.start(e.host, e.netns, address)
        flags += ["-H", f"{e.host}=ssh://{address}?host_netns={e.netns}&netns_dir={e.netns_dir}&docker={e.url}"]
    for r in spec.routers:
        address = str(ipaddress.IPv4Interface(r.interfaces[-1].address).ip)
        servers.start(r.name, f"{spec.name}.{r.name}", address)
        flags += ["-H", f"{r.name}=ssh://{address}?host_netns={spec.name}.{r.name}&docker=none"]
    return flags


def _lab_agrees(scenario: str, via: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                capsys: pytest.CaptureFixture[str], must_try: tuple[tuple[str, str], ...] = (),
                must_fix: tuple[Command, ...] = ()) -> None:  # fmt: skip
    """A Docker scenario as built: every pair traced over file:// and over ssh:// agrees with its ping; the
    failing traces' fixes hold no placeholder, and include ``must_fix``."""
    monkeypatch.setenv("VXRAY_HOME", str(tmp_path))
    name = f"{RUN_PREFIX}{scenario[7:9]}"
    spec = replace(runner.load(scenario)[0], name=name)
    servers = Servers(tmp_path / "ssh", f"{name}.{via}", {"VXRAY_HOME": str(tmp_path)})
    monkeypatch.setenv("VXRAY_SSH_CONFIG", servers.config)
    monkeypatch.setenv("VXRAY_REMOTE_COMMAND", vxray_command())
    try:
        runner.up(spec, dump(spec))
        tried = docker_build.targets(runner.built(name), runner.lab_dir(name))
        assert all(pair in tried for pair in must_try), (must_try, sorted(tried))
        wrong, fixes = _agreement(name, tmp_path, capsys, ssh=_sshd(spec, servers))
        assert not wrong, wrong
        assert not [f for f in fixes if PLACEHOLDERS & set(f[0])] and set(must_fix) <= set(fixes), fixes
    finally:
        servers.stop()
        runner.down(name)


def _files(name: str, home: Path) -> list[str]:
    """``vxray snapshot --json`` of each Docker host (and router), saved as a ticket's attachment would be."""
    spec = runner.built(name)
    flags = []
    machines = [(e.host, Scope(host_netns=e.netns, netns_dirs=(e.netns_dir,)), e.url)
                for e in docker_build.engines_of(spec, runner.lab_dir(name))]  # fmt: skip
    machines += [(r.name, Scope(host_netns=f"{name}.{r.name}"), "none") for r in spec.routers]
    for host, scope, url in machines:
        path = home / f"{host}.json"
        path.write_bytes(codec.dumps(collect(scope, docker=url)))
        flags += ["-H", f"{host}=file://{path}"]
    return flags


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _agreement(name: str, home: Path, capsys: pytest.CaptureFixture[str], first: str | None = None,
               ssh: list[str] | None = None) -> tuple[list[str], list[Command]]:  # fmt: skip
    """Each ordered pair: fresh snapshots, the trace by container name over ``file://`` snapshots and
    (given ``ssh``: the module's sshds) over ``ssh://`` agents, then the real ping — a ping that passes teaches
    learning devices, so the next pair is read anew; pairs sent from host ``first`` go first, before
    a reply from elsewhere teaches it what the fault took away. Disagreements, and the fixes the
    failing traces print."""
    spec = runner.built(name)
    pairs = docker_build.targets(spec, runner.lab_dir(name))
    ctrs = {r.name: r for r in docker_build.running(spec, runner.lab_dir(name))}
    wrong, fixes = [], []
    for (a, b), (netns, ip) in sorted(pairs.items(), key=lambda kv: (ctrs[kv[0][0]].host != first, kv[0])):
        # by name where Docker's DNS would answer (a shared network), else by the address pinged
        dst = b if set(ctrs[a].addresses) & set(ctrs[b].addresses) else ip
        _, out = _cli(capsys, *_files(name, home), "trace", a, dst, "--json")
        t = codec.json.loads(out)
        over_ssh = [("ssh", codec.json.loads(_cli(capsys, *ssh, "trace", a, dst, "--json")[1]))] if ssh else []
        real = runner._ping(netns, ip)
        for how, verdict in [("file", t), *over_ssh]:
            DOCKER[0] += verdict["delivered"] == real
            DOCKER[1] += 1
            if verdict["delivered"] != real:
                failed = verdict["failed_step"]
                step = verdict["steps"][failed] if failed is not None else {"decision": "delivered"}
                wrong.append(f"{a} -> {b} over {how}: trace says {step['decision']!r}, ping says "
                             f"{'ok' if real else 'lost'}")  # fmt: skip
        if t["failed_step"] is not None and (fix := t["steps"][t["failed_step"]]["fix"]):
            fixes.append(_command(fix))
    return wrong, fixes


Command = tuple[tuple[str, ...], str]  # an argv, and the machine it runs on ("": here)


def _command(fix: dict[str, Any]) -> Command:
    """The command a fix (as ``--json`` gives it) runs: vxray's, else the native one on its machine."""
    return (tuple(fix["vxray"]), "") if fix["vxray"] else (tuple(fix["native"]), fix["on"])


def _run_fix(name: str, command: Command, capsys: pytest.CaptureFixture[str]) -> None:
    """A fix's argv as it is: vxray's (``vxray fdb sync prod``, run in the lab, whose hosts are Docker's), or
    the native one (``nsenter --net=… bridge fdb …``) on its machine (``on dh2``) — a lab host's own namespace
    is that machine."""
    argv, machine = command
    assert argv, "the fix names a command"
    if argv[0] == "vxray":
        code, out = _cli(capsys, *argv[1:])
        assert code == 0, f"the fix failed: {shlex.join(argv)}: {out}"
        return
    enter = ["ip", "netns", "exec", f"{name}.{machine}"] if machine else []
    proc = subprocess.run([*enter, *argv], capture_output=True, text=True)
    assert proc.returncode == 0, f"the fix failed on {machine}: {shlex.join(argv)}: {proc.stderr}"


def test_trace_agrees_with_real_pings_on_a_swarm_routed_between_two_segments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _lab_agrees("docker-swarm-routed", "node2", tmp_path, monkeypatch, capsys)


def test_trace_agrees_with_real_pings_on_one_engine_with_user_bridges_macvlan_and_isolation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    connect = (("docker", "network", "connect", "net2", "a1"), "dk")  # isolated bridges: never a deleted rule
    _lab_agrees("docker-bridge", "dk", tmp_path, monkeypatch, capsys, must_try=(("a1", "b1"), ("a1", "m1")),
                must_fix=(connect,))  # fmt: skip


def test_trace_agrees_with_real_pings_on_the_swarm_as_docker_built_it(
    swarm: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    wrong, _ = _agreement(*swarm, capsys, ssh=SSH)
    assert not wrong, wrong
    code, out = _cli(capsys, *_files(*swarm), "doctor")
    assert code == 0 and "no findings" in out, out


def test_docker_vxlan_is_read_with_its_link_namespace_and_vtep(
    swarm: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    files = _files(*swarm)
    snap = codec.loads(Path(files[1].split("file://")[1]).read_text())
    (sandbox,) = [ns for ns in snap.namespaces if ns.kind == "overlay-sandbox" and ns.network == "prod"]
    vx = next(lk for lk in sandbox.links if lk.vxlan)
    assert vx.vxlan.local is None and vx.vxlan.learning, "Docker's vxlan0: no local, learning on"
    assert vx.link_netns is not None and vx.link_netns.netns_name == "host", "created in the host's namespace"
    code, out = _cli(capsys, *files, "trace", "vm33", "vm3")
    assert code == 0 and "192.168.77.12" in out and "dh2 (host)" in out, "encapsulated in dh2's own namespace"
    assert "vm3" in _cli(capsys, *files, "trace", "dh2:vm33", "dh1:vm3")[1]


@pytest.mark.parametrize(("fault", "finding"), FAULTS, ids=[f"{f.kind}" for f, _ in FAULTS])
def test_trace_and_doctor_agree_with_real_pings_under_a_fault_and_the_printed_fix_heals_it(
    swarm: tuple[str, Path], capsys: pytest.CaptureFixture[str], fault: FaultSpec, finding: str
) -> None:
    name, home = swarm
    docker_build.inject(runner.built(name), runner.lab_dir(name), fault)
    _, out = _cli(capsys, *_files(name, home), "doctor", "--json")
    findings = codec.json.loads(out)
    DOCTOR[0] += bool(findings) and finding in findings[0]["title"]
    DOCTOR[1] += 1
    assert findings and finding in findings[0]["title"], [f["title"] for f in findings]
    first = fault.host or next(r.host for r in docker_build.running(runner.built(name), runner.lab_dir(name))
                               if r.name == fault.container)  # fmt: skip
    wrong, fixes = _agreement(name, home, capsys, first, SSH)
    assert not wrong, wrong
    assert fixes, "some pair fails under the fault, and its trace prints a fix"
    for command in dict.fromkeys(fixes):
        _run_fix(name, command, capsys)
    for _ in range(4):  # what the trace's fix uncovers (a device set up again lost its proxy-ARP entries)
        found = codec.json.loads(_cli(capsys, *_files(name, home), "doctor", "--json")[1])
        for command in dict.fromkeys(_command(f["fix"]) for f in found if f["fix"]):
            _run_fix(name, command, capsys)
    wrong, fixes = _agreement(name, home, capsys, first, SSH)
    assert not wrong and not fixes, (wrong, fixes)
    code, out = _cli(capsys, *_files(name, home), "doctor")
    assert code == 0 and "no findings" in out, out


ENDS = ["vm3", "dh1:vm3", "10.0.9.102", "dh1:8081", "dh2:host", "nosuch", "300.1.2.3", "dh1:", ":80", "vm3;id",
        "", "-x", "dh9:vm3", "a" * 300]  # fmt: skip


def test_every_kind_of_trace_end_gets_a_verdict_or_one_line(
    swarm: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    files = _files(*swarm)
    for src in ENDS:
        for dst in ENDS:
            capsys.readouterr()
            try:
                code = main([*files, "trace", src, dst])
            except SystemExit as exc:  # argparse refuses what looks like an option
                code = exc.code
            out = capsys.readouterr()
            assert code in (0, 1, 2), (src, dst, code)
            assert "Traceback" not in out.err, (src, dst, out.err)
            if code == 2:
                assert len(out.err.strip().splitlines()) == 1 and out.err.startswith("vxray"), (src, dst, out.err)


def test_size_fragments_like_ping_and_df_forbids_it(
    swarm: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    name, home = swarm
    files = _files(name, home)
    netns, ip = docker_build.targets(runner.built(name), runner.lab_dir(name))["vm33", "vm3"]
    enter = ["nsenter", f"--net={netns}", "ping", "-c", "1", "-W", "2", "-s", "8000"]
    assert subprocess.run([*enter, ip], capture_output=True).returncode == 0, "ping -s 8000 passes, fragmented"
    assert _cli(capsys, *files, "trace", "vm33", "vm3", "--size", "8000")[0] == 0
    assert subprocess.run([*enter, "-M", "do", ip], capture_output=True).returncode != 0, "ping -M do does not"
    code, out = _cli(capsys, *files, "trace", "vm33", "vm3", "--size", "8000", "--df", "--json")
    step = codec.json.loads(out)["steps"][-1]
    assert code == 1 and step["table"] == "mtu" and "1450" in step["decision"]
    assert step["fix"] is None, "no fix raises the container's MTU above what the overlay carries"


def test_docker_networks_and_containers_are_repaired_by_their_docker_names(
    swarm: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    name, _ = swarm
    dh2 = next(e for e in docker_build.engines_of(runner.built(name), runner.lab_dir(name)) if e.host == "dh2")
    sandbox = next(str(p) for p in Path(dh2.netns_dir).iterdir() if p.name.startswith("1-") and _has_vxlan(str(p))
                   and "10.0.9.1/" in _addresses(str(p)))  # fmt: skip
    before = subprocess.run(["nsenter", f"--net={sandbox}", "bridge", "fdb", "show", "dev", "vxlan0"],
                            capture_output=True, text=True).stdout  # fmt: skip
    for bad in (["fdb", "add", "02:42:0a:00:09:66", "--network", "nosuch", "dst", "192.168.77.11", "--host", "dh2"],
                ["fdb", "add", "02:42:zz:00:09:66", "--network", "prod", "dst", "192.168.77.11", "--host", "dh2"],
                ["fdb", "add", "02:42:0a:00:09:66", "--network", "prod", "dst", "192.168.77.11"],
                ["arp", "add", "10.0.9.102", "02:42:0a:00:09:66", "--container", "nosuch"],
                ["fdb", "sync", "nosuch"]):  # fmt: skip
        code, out = _cli(capsys, *bad)
        assert code == 2 and len(out.strip().splitlines()) == 1, (bad, out)
    after = subprocess.run(["nsenter", f"--net={sandbox}", "bridge", "fdb", "show", "dev", "vxlan0"],
                           capture_output=True, text=True).stdout  # fmt: skip
    assert after == before, "a bad value changes nothing"
    subprocess.run(["nsenter", f"--net={sandbox}", "bridge", "fdb", "del", "02:42:0a:00:09:66", "dev", "vxlan0",
                    "self"], check=True)  # fmt: skip
    assert _cli(capsys, "fdb", "add", "02:42:0a:00:09:66", "--network", "prod", "dst", "192.168.77.11",
                "--host", "dh2")[0] == 0  # fmt: skip
    assert (
        "02:42:0a:00:09:66 dst 192.168.77.11"
        in subprocess.run(
            ["nsenter", f"--net={sandbox}", "bridge", "fdb", "show", "dev", "vxlan0"], capture_output=True, text=True
        ).stdout
    )
    code, out = _cli(capsys, "arp", "add", "10.0.9.102", "02:42:0a:00:09:66", "--container", "vm33")
    assert code == 0 and "ip neigh replace 10.0.9.102" in out
    assert _cli(capsys, "arp", "del", "10.0.9.102", "--container", "vm33")[0] == 0
    code, out = _cli(capsys, "fdb", "sync", "prod", "--dry-run")
    assert code == 0 and "dh1:" in out and "dh2:" in out and "02:42:0a:00:09:85" in out
    code, out = _cli(capsys, *SSH, "--on", "dh2", "fdb", "sync", "prod", "--dry-run")  # through dh2's agent
    assert code == 0 and "dh2:" in out and "bridge fdb replace" in out, out


def _has_vxlan(path: str) -> bool:
    out = subprocess.run(["nsenter", f"--net={path}", "ip", "-d", "link"], capture_output=True, text=True).stdout
    return "vxlan id" in out


def _addresses(path: str) -> str:
    return subprocess.run(["nsenter", f"--net={path}", "ip", "addr"], capture_output=True, text=True).stdout


def test_the_drawing_shows_dockers_tunnels_both_ways_with_each_hosts_vtep(
    swarm: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from backend.merge import merge
    from backend.model import Labels
    from diagnostics.graph import build
    from tui.drawing import draw, tunnels

    files = _files(*swarm)
    parts = [(f.split("=")[0], codec.loads(Path(f.split("file://")[1]).read_text()), Labels(), "host")
             for f in files[1::2]]  # fmt: skip
    graph = build(*merge(parts))
    found, strays = tunnels(graph, ["dh1", "dh2"])
    assert strays == [] and ("dh1", "dh2", True, True) in [(t.a, t.b, t.forward, t.back) for t in found]
    text = "\n".join("".join(s.text for s in line) for line in draw(graph))
    assert "192.168.77.11" in text and "192.168.77.12" in text and "no tunnel" not in text


def test_a_published_port_that_lost_its_accept_rule_is_found_by_trace_and_doctor_and_fixed(
    swarm: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    name, home = swarm
    spec = runner.built(name)
    netns, _ = docker_build.targets(spec, runner.lab_dir(name))["vm33", "vm3"]

    def agree(expected: bool) -> None:
        real = subprocess.run(["nsenter", f"--net={netns}", "nc", "-z", "-w", "2", "192.168.77.11", "8081"],
                              capture_output=True).returncode == 0  # fmt: skip
        assert real == expected, "nc from vm33 to dh1:8081"
        for flags in (_files(name, home), SSH):
            t = codec.json.loads(_cli(capsys, *flags, "trace", "vm33", "dh1:8081", "--json")[1])
            DOCKER[0] += t["delivered"] == real
            DOCKER[1] += 1
            assert t["delivered"] == real, t["steps"][t["failed_step"] or 0]

    agree(True)
    docker_build.inject(spec, runner.lab_dir(name), FaultSpec("port-accept-remove", host="dh1", container="vm3"))
    agree(False)
    findings = codec.json.loads(_cli(capsys, *_files(name, home), "doctor", "--json")[1])
    DOCTOR[0] += bool(findings) and "published port 8081" in findings[0]["title"]
    DOCTOR[1] += 1
    assert findings and "published port 8081" in findings[0]["title"], [f["title"] for f in findings]
    t = codec.json.loads(_cli(capsys, *_files(name, home), "trace", "vm33", "dh1:8081", "--json")[1])
    fix = t["steps"][t["failed_step"]]["fix"]
    assert "-I DOCKER -d " in fix["native_line"] and "--dport 80 -j ACCEPT" in fix["native_line"], fix
    assert fix["vxray"] == [] and fix["missing"], "vxray writes no published port's rule back"
    _run_fix(name, _command(fix), capsys)
    agree(True)


def test_one_docker_host_read_alone_is_checked_against_what_its_engine_says_of_the_others(
    swarm: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    name, home = swarm
    spec = runner.built(name)
    dh2 = [f for f in _files(name, home) if f.startswith("dh2=")]
    code, out = _cli(capsys, "-H", *dh2, "doctor")
    assert code == 0 and "no findings" in out, out
    docker_build.inject(spec, runner.lab_dir(name), FaultSpec("fdb-remove", host="dh2", network="prod",
                                                              container="vm4"))  # fmt: skip
    dh2 = [f for f in _files(name, home) if f.startswith("dh2=")]
    findings = codec.json.loads(_cli(capsys, "-H", *dh2, "doctor", "--json")[1])
    assert findings and "no FDB entry" in findings[0]["title"], [f["title"] for f in findings]
    assert "vm4 10.0.9.104 on node 192.168.77.11" in findings[0]["evidence"][0], findings[0]["evidence"]
    assert _cli(capsys, *findings[0]["fix"]["vxray"][1:])[0] == 0
    assert "no findings" in _cli(capsys, "-H", *[f for f in _files(name, home) if f.startswith("dh2=")], "doctor")[1]


def test_a_swarm_service_vip_is_named_in_a_note_because_ipvs_is_not_traced(swarm: tuple[str, Path]) -> None:
    from docker.types import ContainerSpec, TaskTemplate

    name, _ = swarm
    dh1 = docker_build.engines_of(runner.built(name), runner.lab_dir(name))[0]
    with dh1.client() as api:
        service = api.create_service(TaskTemplate(ContainerSpec("vxray-busybox:1", ["/bin/busybox", "sleep", "1d"])),
                                     name="websvc", networks=["prod"])["ID"]  # fmt: skip
        try:
            deadline = time.monotonic() + 60  # the Engine lists a service once its task runs
            while "websvc" not in (api.inspect_network("prod", verbose=True).get("Services") or {}):
                assert time.monotonic() < deadline, "the service's task never ran"
                time.sleep(0.2)
            vip = api.inspect_network("prod", verbose=True)["Services"]["websvc"]["VIP"].split("/")[0]
            snap = collect(Scope(host_netns=dh1.netns, netns_dirs=(dh1.netns_dir,)), docker=dh1.url)
            assert any(f"service VIP(s) {vip}" in n and "IPVS" in n for n in snap.notes), snap.notes
        finally:
            api.remove_service(service)


def test_lab_down_after_a_killed_lab_up_leaves_no_engine_namespace_mount_or_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VXRAY_HOME", str(tmp_path))
    name = f"{RUN_PREFIX}kl"
    up = subprocess.Popen([vxray_command(), "lab", "up", "docker-swarm", "--name", name], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 60
    while not os.path.exists(f"/run/vxray-docker/{name}.dh2/docker.sock"):  # the engines are starting
        assert time.monotonic() < deadline and up.poll() is None, "lab up never started its engines"
        time.sleep(0.05)
    time.sleep(1)
    up.kill()  # mid-build: swarm, networks or containers half made
    up.wait()
    try:
        assert main(["lab", "down", name]) == 0
    finally:
        runner.down(name)
    assert not [n for n in os.listdir("/run/netns") if n.startswith(f"{name}.")]
    assert not [d for d in os.listdir("/run/vxray-docker") if d.startswith(f"{name}.")]
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if f"/{name}." in line or str(tmp_path) in line]
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if f"/{name}.".encode() in cmdline:
            left.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    assert not left, left


@pytest.mark.skipif(not have("tshark"), reason="needs tshark")
def test_a_capture_over_an_agent_names_a_docker_container_and_its_overlay_sandbox(
    swarm: tuple[str, Path], tmp_path: Path
) -> None:
    """Docker's names (the container, the overlay network whose sandbox holds the VXLAN device) resolve on the
    machine that has them; its agent captures there and the file names each device ``dev@namespace@host``."""
    name, _ = swarm
    netns, ip = docker_build.targets(runner.built(name), runner.lab_dir(name))["vm33", "vm3"]
    i = SSH.index(next(f for f in SSH if f.startswith("dh2=")))
    path = tmp_path / "docker.pcapng"
    pinger = subprocess.Popen(["nsenter", f"--net={netns}", "ping", "-i", "0.2", "-w", "60", ip],
                              stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        assert main([*SSH[i - 1 : i + 1], "capture", "eth0@vm33@dh2", "vxlan0@prod@dh2", "-w", str(path),
                     "--seconds", "3", "icmp"]) == 0  # fmt: skip
    finally:
        pinger.terminate()
        pinger.wait()
    out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "frame.interface_name", "-e", "icmp.type"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    rows = [line.split("\t") for line in out.splitlines()]
    names = {r[0] for r in rows}
    assert "eth0@vm33@dh2" in names and len(names) == 2
    [sandbox] = names - {"eth0@vm33@dh2"}
    assert sandbox.startswith("vxlan0@") and sandbox.endswith("@dh2")  # the sandbox, by its namespace's name
    assert {r[1] for r in rows} >= {"8", "0"}  # echo requests and replies on both
