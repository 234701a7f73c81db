"""Ask a Docker Engine which container and network own each sandbox namespace.

The kernel knows a namespace only by inode; Docker knows it by its sandbox key
(``<exec-root>/netns/<id>``) and, for overlay networks, by the sandbox named
``1-<netid>``. Matching them by inode is exact, whatever the exec-root is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from backend.model import ContainerInfo, ContainerNetwork

DEFAULT_SOCKET = "/var/run/docker.sock"


@dataclass(frozen=True)
class DockerLabels:
    """What Docker says about namespaces, keyed by namespace inode."""

    containers: dict[int, ContainerInfo]
    networks: dict[str, str]  # network id -> name, to name overlay sandboxes

    def sandbox_network(self, sandbox: str) -> str | None:
        """The network of a sandbox named ``1-<first 10 of its id>`` or ``lb_<first 9 or more of its id>``."""
        _, _, prefix = sandbox.partition("_" if sandbox.startswith("lb_") else "-")
        return next((name for nid, name in self.networks.items() if prefix and nid.startswith(prefix)), None)


def engine_url(explicit: str | None) -> str | None:
    """The Engine to ask: ``--docker``, else ``DOCKER_HOST``, else the default socket if present."""
    if explicit:
        return explicit
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    return f"unix://{DEFAULT_SOCKET}" if os.path.exists(DEFAULT_SOCKET) else None


def read_labels(url: str, timeout: float = 5.0) -> DockerLabels:
    """Containers with their sandbox inode and networks; raises on an unreachable Engine."""
    import docker  # imports requests: only paid for when an Engine is there

    client = docker.APIClient(base_url=url, timeout=timeout)
    try:
        containers: dict[int, ContainerInfo] = {}
        for summary in client.containers():
            info = client.inspect_container(summary["Id"])
            settings = info.get("NetworkSettings") or {}
            key = settings.get("SandboxKey")
            try:
                inode = os.stat(key).st_ino if key else None
            except OSError:
                inode = None
            if inode is None:
                continue
            networks = tuple(
                ContainerNetwork(
                    network=name,
                    ip=ep.get("IPAddress") or None,
                    mac=ep.get("MacAddress") or None,
                    endpoint=ep.get("EndpointID") or None,
                )
                for name, ep in sorted((settings.get("Networks") or {}).items())
            )
            containers[inode] = ContainerInfo(info["Name"].lstrip("/"), info["Id"], networks)
        networks = {n["Id"]: n["Name"] for n in client.networks()}
        return DockerLabels(containers, networks)
    finally:
        client.close()
