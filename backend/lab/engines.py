"""Real Docker Engines for lab hosts: started inside the host's namespace, driven through the docker SDK.

A lab that imitates Docker proves little about Docker, so a lab host may run
Debian's real ``dockerd`` (``engine = "docker"``). Each engine runs inside its host
namespace (``nsenter --net``), so its bridges, iptables rules and sandboxes stay
there; its exec-root (sockets, containerd, the sandboxes' netns bind mounts) is
``/run/vxray-docker/<lab>.<host>`` — short, because unix socket paths are — and its
data-root is under the lab's directory. Networks and containers are made through
the Engine API exactly as ``docker network create`` / ``docker run`` make them; swarm
joins the hosts over the lab's underlay. ``sweep`` stops everything a lab's engines
started, also after a killed ``lab up``: containers first, then every process that
lives in one of the lab's namespaces, then the mounts under its directories.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import tarfile
import time
from dataclasses import dataclass
from typing import Any

from backend.errors import VxrayError
from backend.netns import nsfs_mounts

EXEC_BASE = "/run/vxray-docker"
IMAGE = "vxray-busybox:1"
BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "ping", "httpd", "sleep", "nc", "ip", "cat", "ls")
COMMAND = ["/bin/busybox", "httpd", "-f", "-p", "80"]  # every container answers on TCP 80 (ports, nc)
VNI_OPTION = "com.docker.network.driver.overlay.vxlanid_list"
START_TIMEOUT = 90.0


def exec_root(netns: str) -> str:
    """The exec-root of the engine that runs in lab host namespace ``netns`` (``<lab>.<host>``)."""
    return f"{EXEC_BASE}/{netns}"


def socket_url(netns: str) -> str:
    return f"unix://{exec_root(netns)}/docker.sock"


def sandboxes(netns: str) -> str:
    """Where that engine bind-mounts its sandboxes' namespaces (containers, ``1-<netid>``, ``ingress_sbox``)."""
    return f"{exec_root(netns)}/netns"


def runs_engine(netns: str) -> bool:
    return os.path.exists(f"{exec_root(netns)}/docker.sock")


@dataclass(frozen=True)
class Engine:
    """One lab host's Docker Engine."""

    lab: str
    host: str
    netns: str  # the host's named namespace, where dockerd runs
    data_root: str

    @property
    def exec_root(self) -> str:
        return exec_root(self.netns)

    @property
    def url(self) -> str:
        return socket_url(self.netns)

    @property
    def netns_dir(self) -> str:
        return sandboxes(self.netns)

    def client(self) -> Any:
        import docker  # the SDK imports requests: paid for only by labs that run engines

        return docker.APIClient(base_url=self.url, timeout=120, version="auto")


def start(engine: Engine) -> None:
    """Start ``dockerd`` in the host's namespace and wait until it answers; one line if it does not."""
    if shutil.which("dockerd") is None:
        raise VxrayError('engine = "docker" needs dockerd (Debian\'s docker.io)')
    os.makedirs(engine.exec_root, exist_ok=True)
    os.makedirs(engine.data_root, exist_ok=True)
    log = open(os.path.join(engine.data_root, "dockerd.log"), "ab")  # noqa: SIM115 - held by the daemon
    argv = ["nsenter", f"--net=/run/netns/{engine.netns}", "dockerd", "--data-root", os.path.join(engine.data_root,
            "data"), "--exec-root", engine.exec_root, "-H", engine.url, "--pidfile", f"{engine.exec_root}/dockerd.pid",
            "--storage-driver", "vfs", "--log-level", "warn"]  # fmt: skip
    with log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with engine.client() as api:
                api.ping()
            return
        except Exception as exc:  # noqa: BLE001 - not answering yet is any error of the SDK
            if proc.poll() is not None or time.monotonic() > deadline:
                raise VxrayError(f"dockerd on {engine.host} did not start: {_last_line(engine) or exc}") from None
            time.sleep(0.2)


def _last_line(engine: Engine) -> str:
    try:
        with open(os.path.join(engine.data_root, "dockerd.log"), errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return ""
    return lines[-1][-200:] if lines else ""


def import_image(engine: Engine) -> None:
    """A one-file image: busybox-static and its applets (``docker import`` of a tar made here)."""
    if not os.path.exists(BUSYBOX):
        raise VxrayError(f'engine = "docker" needs {BUSYBOX} (Debian\'s busybox-static)')
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    repository, tag = IMAGE.split(":")
    with engine.client() as api:
        api.import_image_from_data(buf.getvalue(), repository=repository, tag=tag)


def swarm(engines: list[Engine], addresses: dict[str, str]) -> None:
    """``docker swarm init`` on the first engine, ``join`` on the others, over the lab's underlay."""
    first, *others = engines
    with first.client() as api:
        api.init_swarm(advertise_addr=addresses[first.host], listen_addr=f"{addresses[first.host]}:2377")
        token = api.inspect_swarm()["JoinTokens"]["Worker"]
    for e in others:
        with e.client() as api:
            api.join_swarm([f"{addresses[first.host]}:2377"], token, listen_addr=f"{addresses[e.host]}:2377",
                           advertise_addr=addresses[e.host])  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT
    with first.client() as api:  # a worker attaches a container to an overlay only once the manager sees it ready
        while sum(n["Status"]["State"] == "ready" for n in api.nodes()) < len(engines):
            if time.monotonic() > deadline:
                raise VxrayError(
                    f"swarm: {len(engines)} nodes joined, not all became ready within {START_TIMEOUT:.0f} s"
                )
            time.sleep(0.2)


def docker_errors(what: str) -> Any:
    """A context in which any error of the Engine becomes one line naming what was being done."""
    import contextlib

    import docker.errors

    @contextlib.contextmanager
    def wrap() -> Any:
        try:
            yield
        except docker.errors.DockerException as exc:
            explanation = getattr(exc, "explanation", None) or str(exc)
            raise VxrayError(f"{what}: {explanation}") from None

    return wrap()


def create_network(engine: Engine, name: str, driver: str, subnet: str, gateway: str | None, vni: int | None,
                   internal: bool, options: dict[str, str]) -> str:  # fmt: skip
    """``docker network create -d DRIVER`` (overlays attachable); the network's id."""
    from docker.types import IPAMConfig, IPAMPool

    opts = dict(options)
    if driver == "overlay" and vni is not None:
        opts[VNI_OPTION] = str(vni)
    if driver == "bridge" and "bridge_name" in opts:
        opts["com.docker.network.bridge.name"] = opts.pop("bridge_name")
    ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=subnet, gateway=gateway)])
    with engine.client() as api:
        made = api.create_network(name, driver=driver, options=opts, ipam=ipam, internal=internal,
                                  attachable=driver == "overlay", check_duplicate=True)  # fmt: skip
    return str(made["Id"])


def run(engine: Engine, name: str, mode: str, networks: list[tuple[str, str | None, str | None]],
        ports: list[tuple[int, int, str]]) -> None:  # fmt: skip
    """``docker run -d --name NAME --net …|--network MODE -p …`` then ``docker network connect`` for the rest."""
    with engine.client() as api:
        bindings = {f"{port}/{proto}": host_port for host_port, port, proto in ports}
        first = networks[0] if networks else None
        network_mode = mode if mode != "bridge" else (first[0] if first else "bridge")
        host_config = api.create_host_config(network_mode=network_mode, port_bindings=bindings or None)
        config = None
        if first is not None and mode == "bridge":
            config = api.create_networking_config({first[0]: api.create_endpoint_config(ipv4_address=first[1])})
        made = api.create_container(IMAGE, COMMAND, name=name, host_config=host_config, networking_config=config,
                                    ports=[(p, proto) for _, p, proto in ports] or None, detach=True,
                                    mac_address=first[2] if first else None)  # fmt: skip
        api.start(made["Id"])
        for net, ip, _mac in networks[1:]:
            api.connect_container_to_network(made["Id"], net, ipv4_address=ip)


@dataclass(frozen=True)
class Running:
    """A container as its Engine reports it: where its namespace is and its address per network."""

    name: str
    host: str
    sandbox: str | None  # the bind mount of its namespace; None: host mode (it shares the host's)
    addresses: dict[str, str]  # network -> IPv4


def containers(engine: Engine) -> list[Running]:
    out = []
    with engine.client() as api:
        for summary in api.containers():
            info = api.inspect_container(summary["Id"])
            settings = info.get("NetworkSettings") or {}
            nets = {n: ep["IPAddress"] for n, ep in (settings.get("Networks") or {}).items() if ep.get("IPAddress")}
            mode = (info.get("HostConfig") or {}).get("NetworkMode", "")
            sandbox = None if mode == "host" else settings.get("SandboxKey") or None
            out.append(Running(info["Name"].lstrip("/"), engine.host, sandbox, nets))
    return out


def _pids_in(inodes: set[int]) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                if os.stat(f"/proc/{entry.name}/ns/net").st_ino in inodes:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def sweep(lab: str, namespaces: list[str], data_dir: str) -> None:
    """Stop every engine of lab ``lab`` and everything they started; remove their mounts and exec-roots.

    Polite first (remove the containers, SIGTERM dockerd), then thorough: every process whose network
    namespace is one of the lab's (named ones, and the sandboxes under its exec-roots) is killed —
    containerd, its shims, docker-proxy, the containers' own processes — so a killed ``lab up`` leaves
    nothing running either.
    """
    roots = sorted(os.path.join(EXEC_BASE, d) for d in (os.listdir(EXEC_BASE) if os.path.isdir(EXEC_BASE) else [])
                   if d.startswith(f"{lab}."))  # fmt: skip
    for root in roots:
        sock = os.path.join(root, "docker.sock")
        if os.path.exists(sock):
            _remove_containers(f"unix://{sock}")
        _signal_pidfile(os.path.join(root, "dockerd.pid"))
    with open("/proc/self/mountinfo") as f:
        mounts = f.read()
    paths = [f"/run/netns/{ns}" for ns in namespaces] + [p for p in nsfs_mounts(mounts)
                                                          if any(p.startswith(r + "/") for r in roots)]  # fmt: skip
    inodes = set()
    for p in paths:
        try:
            inodes.add(os.stat(p).st_ino)
        except OSError:
            continue
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _pids_in(inodes)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + 10
        while _pids_in(inodes) and time.monotonic() < deadline:
            time.sleep(0.1)
    with open("/proc/self/mountinfo") as f:
        targets = [line.split()[4] for line in f if any(r in line for r in [*roots, data_dir] if r)]
    for target in sorted(set(targets), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)


def _remove_containers(url: str) -> None:
    try:
        import docker

        with docker.APIClient(base_url=url, timeout=30, version="auto") as api:
            for c in api.containers(all=True):
                api.remove_container(c["Id"], force=True)
    except Exception:  # noqa: BLE001 - a dead engine: its processes are killed next
        return


def _signal_pidfile(path: str) -> None:
    try:
        with open(path) as f:
            pid = int(f.read().strip())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
        time.sleep(0.1)
