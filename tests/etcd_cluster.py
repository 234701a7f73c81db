"""A real three-member etcd cluster (Debian's ``/usr/bin/etcd``) in namespaces of a test's ``Lab``.

Each member runs in its own namespace ``eN`` with its own data directory, on a
lab underlay: the namespace ``ul`` holds the bridge ``br0`` every member's
``eth0`` is plugged into, and the bridge's own address ``10.250.0.1`` is where
clients sit (tests enter ``ul`` with ``backend.nsenter`` or ``ip netns exec``).
Every member listens on its own address, port 2379 (clients) and 2380 (peers):
no port is shared with anything on the machine, so tests of several engineers
never collide. Partitioning a member is setting its underlay link down; killing
it is SIGKILL; the ``Lab`` removes every process, namespace and directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field

from backend import nsenter

from conftest import Lab

ETCD = "/usr/bin/etcd"
CLIENT_IP = "10.250.0.1"


@dataclass
class Member:
    name: str
    ns: str
    ip: str
    data: str
    proc: subprocess.Popen[bytes] | None = None
    scheme: str = "http"

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://{self.ip}:2379"


@dataclass
class EtcdCluster:
    lab: Lab
    size: int = 3
    tls: str | None = None  # a directory with ca.pem, server.pem, server-key.pem: clients need https and a cert
    members: list[Member] = field(default_factory=list)

    def start(self) -> EtcdCluster:
        self.ul = self.lab.netns("ul")
        self.lab.ip(self.ul, "link", "add", "br0", "type", "bridge")
        self.lab.ip(self.ul, "addr", "add", f"{CLIENT_IP}/24", "dev", "br0")
        self.lab.ip(self.ul, "link", "set", "br0", "up")
        self.root = tempfile.mkdtemp(prefix="vxray-etcd-")
        self.lab.cleanups.append(("rm", "-rf", "--", self.root))
        for i in range(1, self.size + 1):
            ns = self.lab.netns(f"e{i}")
            self.lab.veth(ns, "eth0", self.ul, f"e{i}")
            self.lab.ip(self.ul, "link", "set", f"e{i}", "master", "br0")
            ip = f"10.250.0.{10 + i}"
            self.lab.ip(ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            scheme = "https" if self.tls else "http"
            self.members.append(Member(f"e{i}", ns, ip, os.path.join(self.root, f"e{i}"), scheme=scheme))
        for m in self.members:
            self.launch(m, "new")
        self.wait_healthy()
        return self

    @property
    def endpoints(self) -> str:
        return ",".join(f"{m.ip}:2379" for m in self.members)

    def url(self, prefix: str = "vxray", *members: Member) -> str:
        hosts = ",".join(f"{m.ip}:2379" for m in members) if members else self.endpoints
        return f"etcd://{hosts}/{prefix}"

    def launch(self, m: Member, state: str = "existing") -> None:
        """Start (or restart, with ``state="existing"`` and the same data directory) one member."""
        peers = ",".join(f"{o.name}=http://{o.ip}:2380" for o in self.members)
        argv = ["ip", "netns", "exec", m.ns, ETCD, "--name", m.name, "--data-dir", m.data,
                "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
                "--listen-peer-urls", f"http://{m.ip}:2380", "--initial-advertise-peer-urls", f"http://{m.ip}:2380",
                "--initial-cluster", peers, "--initial-cluster-state", state,
                "--initial-cluster-token", os.path.basename(self.root),
                "--heartbeat-interval", "100", "--election-timeout", "1000", "--logger", "zap",
                "--log-outputs", os.path.join(self.root, f"{m.name}.log")]  # fmt: skip
        if self.tls:
            argv += ["--cert-file", f"{self.tls}/server.pem", "--key-file", f"{self.tls}/server-key.pem",
                     "--client-cert-auth", "--trusted-ca-file", f"{self.tls}/ca.pem"]  # fmt: skip
        m.proc = self.lab.spawn(*argv)  # `ip netns exec` execs etcd: the pid is etcd's

    def kill(self, m: Member) -> None:
        assert m.proc is not None
        m.proc.send_signal(signal.SIGKILL)
        m.proc.wait()
        m.proc = None

    def partition(self, m: Member, up: bool = False) -> None:
        self.lab.ip(m.ns, "link", "set", "eth0", "up" if up else "down")

    def status(self, m: Member, timeout: float = 1.0) -> dict[str, object] | None:
        """The member's own word (``/v3/maintenance/status``), asked from the client namespace; None: no answer."""
        req = urllib.request.Request(f"{m.client_url}/v3/maintenance/status", data=b"{}", method="POST")
        context = None
        if self.tls:
            context = ssl.create_default_context(cafile=f"{self.tls}/ca.pem")
            context.load_cert_chain(f"{self.tls}/client.pem", f"{self.tls}/client-key.pem")
        with nsenter.named(self.ul):
            try:
                with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
                    return json.loads(resp.read())
            except OSError:
                return None

    def leader(self, timeout: float = 20.0) -> Member:
        """The member the live ones agree leads (waits through an election)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ids: dict[str, Member] = {}
            leaders = set()
            for m in self.members:
                st = self.status(m) if m.proc is not None else None
                if st is not None:
                    ids[str(st["header"]["member_id"])] = m  # type: ignore[index]
                    leaders.add(str(st.get("leader", "0")))
            if len(leaders) == 1 and (lead := leaders.pop()) in ids:
                return ids[lead]
            time.sleep(0.1)
        raise AssertionError("the etcd cluster elected no leader")

    def wait_healthy(self) -> None:
        self.leader()

    def log(self, m: Member) -> str:
        path = os.path.join(self.root, f"{m.name}.log")
        return open(path).read() if os.path.exists(path) else ""


def make_certs(where: str, ips: list[str]) -> None:
    """A CA, a server certificate for ``ips`` and a client certificate, with openssl (as an operator makes them)."""

    def run(*argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True, cwd=where)

    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=vxray-test-ca",
        "-keyout", "ca-key.pem", "-out", "ca.pem")  # fmt: skip
    for name, ext in (("server", "subjectAltName=" + ",".join(f"IP:{ip}" for ip in ips)), ("client", "")):
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout",
            f"{name}-key.pem", "-out", f"{name}.csr")  # fmt: skip
        with open(os.path.join(where, f"{name}.ext"), "w") as f:
            f.write(f"{ext}\nextendedKeyUsage=serverAuth,clientAuth\n")
        run("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
            "-CAcreateserial", "-days", "1", "-out", f"{name}.pem", "-extfile", f"{name}.ext")  # fmt: skip


def have_etcd() -> bool:
    return os.path.exists(ETCD) and shutil.which("ip") is not None
