"""A real Docker Engine, run inside a test namespace so its bridge and rules stay there."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from backend.collect import collect
from backend.netns import Scope

from conftest import Lab, have, sh

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(not (have("dockerd") and os.path.exists("/bin/busybox")), reason="needs docker.io, busybox"),
]


@dataclass
class Engine:
    netns: str
    url: str
    exec_root: str

    def docker(self, *args: str) -> str:
        return sh("docker", "-H", self.url, *args).stdout.strip()


def _busybox_image(engine: Engine, workdir: str) -> str:
    """An image of busybox-static alone, made with ``docker import``."""
    archive = os.path.join(workdir, "busybox.tar")
    with tarfile.open(archive, "w") as tar:
        tar.add("/bin/busybox", arcname="bin/busybox")
        link = tarfile.TarInfo("bin/sh")
        link.type, link.linkname = tarfile.SYMTYPE, "busybox"
        tar.addfile(link)
    engine.docker("import", archive, "vxt-busybox:1")
    return "vxt-busybox:1"


@pytest.fixture
def engine(lab: Lab) -> Iterator[Engine]:
    ns = lab.netns("dockerhost")
    workdir = tempfile.mkdtemp(prefix=f"{lab.prefix}docker-")
    sock = f"/run/{ns}.sock"
    exec_root = os.path.join(workdir, "exec")
    proc = lab.spawn(
        "nsenter", f"--net=/run/netns/{ns}", "dockerd", "--data-root", os.path.join(workdir, "data"),
        "--exec-root", exec_root, "-H", f"unix://{sock}", "--pidfile", os.path.join(workdir, "pid"),
        "--storage-driver", "vfs",
    )  # fmt: skip
    eng = Engine(ns, f"unix://{sock}", exec_root)
    try:
        deadline = time.monotonic() + 60
        while sh("docker", "-H", eng.url, "info", check=False).returncode != 0:
            assert proc.poll() is None, "dockerd exited during start-up"
            assert time.monotonic() < deadline, "dockerd did not answer within 60 s"
            time.sleep(0.2)
        yield eng
    finally:
        ids = sh("docker", "-H", eng.url, "ps", "-aq", check=False).stdout.split()
        if ids:
            sh("docker", "-H", eng.url, "rm", "-f", *ids, check=False)
        lab.close()  # stops dockerd (containers are gone first), deletes the namespace
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if workdir in line]
        for mount in sorted(mounts, reverse=True):
            sh("umount", "-l", mount, check=False)
        shutil.rmtree(workdir, ignore_errors=True)
        if os.path.exists(sock):
            os.unlink(sock)


def test_container_with_published_port_shows_netns_veth_label_and_dnat(engine: Engine) -> None:
    image = _busybox_image(engine, os.path.dirname(engine.exec_root))
    engine.docker("run", "-d", "--name", "web1", "-p", "8081:80", image, "/bin/busybox", "httpd", "-f", "-p", "80")
    ip = engine.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web1")
    deadline = time.monotonic() + 10
    while sh("ip", "netns", "exec", engine.netns, "nc", "-z", "-w", "1", ip, "80", check=False).returncode:
        assert time.monotonic() < deadline, "web1's httpd never answered on port 80"
        time.sleep(0.1)

    snap = collect(
        Scope(host_netns=engine.netns, netns_dirs=(os.path.join(engine.exec_root, "netns"),)), docker=engine.url
    )
    web1 = snap.namespace("web1")
    assert web1 is not None and web1.kind == "docker"
    assert web1.container.networks[0].network == "bridge" and web1.container.networks[0].ip == ip

    host = snap.namespace("host")
    (port,) = host.bridges()["docker0"]
    assert port.kind == "veth" and (port.peer.netns_name, port.peer.ifname) == ("web1", "eth0")

    dnat = [
        r
        for rs in host.netfilter
        for r in rs.table("nat").chain("DOCKER").rules
        if r.target == "DNAT"
    ]  # fmt: skip
    assert [(r.dport, r.to) for r in dnat] == [("8081", f"{ip}:80")]
