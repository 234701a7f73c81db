"""Ask a Docker Engine which container and network own each sandbox namespace.

The kernel knows a namespace only by inode; Docker knows it by its sandbox key
(``<exec-root>/netns/<id>``) and, for overlay networks, by the sandbox named
``1-<netid>``. Matching them by inode is exact, whatever the exec-root is.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Any

from backend.model import ContainerInfo, ContainerNetwork, DockerNetwork, DockerTask

DEFAULT_SOCKET = "/var/run/docker.sock"


@dataclass(frozen=True)
class DockerLabels:
    """What Docker says about namespaces, keyed by namespace inode."""

    containers: dict[int, ContainerInfo]
    networks: dict[str, str]  # network id -> name, to name overlay sandboxes
    overlays: tuple[DockerNetwork, ...] = ()

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
        found = client.networks()
        networks = {n["Id"]: n["Name"] for n in found}
        own = (client.info().get("Swarm") or {}).get("NodeAddr") or None
        overlays = tuple(_overlay(client.inspect_network(n["Id"], verbose=True), own) for n in found
                         if n.get("Driver") == "overlay")  # fmt: skip
        return DockerLabels(containers, networks, overlays)
    finally:
        client.close()


def ipv4(value: Any) -> bool:
    """Whether an Engine's answer holds an IPv4 address where one belongs (an Engine may be a stranger's)."""
    try:
        ipaddress.IPv4Address(value)
    except (ValueError, TypeError):
        return False
    return True


def mac_of(ip: str) -> str:
    """The MAC Docker gives an endpoint: 02:42 and its IPv4 address (``GenerateMACFromIP``)."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


def _overlay(info: dict[str, Any], own: str | None) -> DockerNetwork:
    """One overlay from ``network inspect --verbose``: its peers, and every task with its host's address."""
    vni = (info.get("Options") or {}).get("com.docker.network.driver.overlay.vxlanid_list", "").split(",")[0]
    config = ((info.get("IPAM") or {}).get("Config") or [{}])[0] or {}
    tasks = tuple(DockerTask(str(t.get("Name", "")), t["EndpointIP"], mac_of(t["EndpointIP"]), t["Info"]["Host IP"])
                  for service in (info.get("Services") or {}).values() for t in service.get("Tasks") or ()
                  if ipv4(t.get("EndpointIP")) and isinstance(t.get("Info"), dict)
                  and ipv4(t["Info"].get("Host IP")))  # fmt: skip
    vips = tuple(sorted({str(v.get("VIP")).split("/")[0] for name, v in (info.get("Services") or {}).items()
                         if name and v.get("VIP") not in (None, "", "<nil>")}))  # fmt: skip
    return DockerNetwork(info["Name"], info["Id"], int(vni) if vni.isdigit() else None, config.get("Subnet"), own,
                         tuple(p["IP"] for p in info.get("Peers") or () if p.get("IP")), tasks, vips)  # fmt: skip
