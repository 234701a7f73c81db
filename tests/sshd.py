"""Real OpenSSH servers inside lab host namespaces, and an ssh client configuration that reaches them.

Each server is Debian's ``/usr/sbin/sshd`` with its own host key, config and pid
file in a temporary directory, started with ``ip netns exec`` so it listens only
inside the lab host's namespace. The client reaches the servers over the lab's
underlay: its ``ProxyCommand`` runs ``nc`` inside one lab host's namespace, so no
traffic touches the root namespace. Host keys are pinned in a known_hosts file
and checking stays strict, as vxray expects of real machines.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import sh

SSHD = "/usr/sbin/sshd"


class Servers:
    def __init__(self, root: Path, via: str, env: dict[str, str]) -> None:
        self.root = root
        self.via = via  # the namespace the client's connections start from
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.netns: dict[str, str] = {}
        root.mkdir(parents=True, exist_ok=True)
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "client"))
        (root / "authorized_keys").write_text((root / "client.pub").read_text())
        os.chmod(root, 0o700)
        setenv = " ".join(f"{k}={v}" for k, v in env.items())
        (root / "ssh_config").write_text(
            "Host *\n"
            f"  IdentityFile {root / 'client'}\n"
            f"  UserKnownHostsFile {root / 'known_hosts'}\n"
            "  StrictHostKeyChecking yes\n"
            "  ConnectTimeout 5\n"
            f"  ProxyCommand ip netns exec {via} nc %h %p\n" + (f"  SetEnv {setenv}\n" if setenv else "")
        )
        (root / "known_hosts").write_text("")
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation directory, as the package makes it

    @property
    def config(self) -> str:
        return str(self.root / "ssh_config")

    def start(self, name: str, netns: str, address: str) -> None:
        """sshd for host ``name`` in ``netns``, its key pinned for ``address``."""
        key = self.root / f"{name}_host_key"
        if not key.exists():
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
            with open(self.root / "known_hosts", "a") as f:
                f.write(f"{address} {(self.root / f'{name}_host_key.pub').read_text()}")
        cfg = self.root / f"{name}_sshd_config"
        cfg.write_text(
            f"Port 22\nListenAddress {address}\nHostKey {key}\nPidFile {self.root / name}.pid\n"
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "AcceptEnv VXRAY_*\nSubsystem sftp internal-sftp\n"
        )
        self.netns[name] = netns
        self.procs[name] = subprocess.Popen(["ip", "netns", "exec", netns, SSHD, "-D", "-e", "-f", str(cfg)],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 10
        while sh("ip", "netns", "exec", self.via, "nc", "-z", "-w", "1", address, "22", check=False).returncode:
            assert time.monotonic() < deadline, f"sshd for {name} never listened on {address}:22"
            time.sleep(0.1)

    def kill(self, name: str) -> None:
        """The server and every session it started (the agent included): as if the machine dropped."""
        self.procs.pop(name).kill()
        pids = sh("ip", "netns", "pids", self.netns[name], check=False).stdout.split()
        for pid in pids:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"sshd" in cmdline or b"agent" in cmdline:
                subprocess.run(["kill", "-9", pid], check=False)

    def stop(self) -> None:
        for name in list(self.procs):
            self.kill(name)


def vxray_command() -> str:
    """The vxray of this test run (its venv's console script), as the remote side runs it."""
    return os.path.join(os.path.dirname(sys.executable), "vxray")
