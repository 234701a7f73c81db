"""What the cluster store holds: desired state shared by every host.

Pure dataclasses. The store (``backend.store``) keeps them as JSON under
``hosts/``, ``networks/``, ``containers/`` and ``endpoints/`` keys; the kernel
objects are built from them by ``backend.ops``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class HostRecord:
    """A machine: the local one (``netns`` None) or a namespace acting as one."""

    name: str
    vtep: str | None = None
    netns: str | None = None


@dataclass(frozen=True)
class AgentRecord:
    """A machine whose ``vxray agent`` ran lately: how to reach it over SSH, for discovery."""

    name: str
    ssh: str  # ssh://user@address:port, as the agent saw its own SSH connection
    vtep: str | None = None
    seen: float = 0.0


@dataclass(frozen=True)
class NetworkRecord:
    name: str
    id: str
    driver: str
    subnet: str
    gateway: str
    host: str | None = None  # bridge and macvlan networks are local to one host; overlays span all
    vni: int | None = None
    mtu: int = 1500
    internal: bool = False
    learning: bool = False
    options: dict[str, str] = field(default_factory=dict)
    # dual stack (``--subnet`` given an IPv6 subnet too): each IPv6 subnet with its gateway, in the same order;
    # records written before IPv6 have neither and decode as IPv4-only networks
    subnets6: tuple[str, ...] = ()
    gateways6: tuple[str, ...] = ()

    @property
    def short_id(self) -> str:
        return self.id[:10]


@dataclass(frozen=True)
class PortMapping:
    host_port: int
    port: int
    proto: str = "tcp"


@dataclass(frozen=True)
class ContainerRecord:
    """A lab container: a network namespace (no image) on a host."""

    name: str
    host: str
    netns: str | None
    mode: str = "bridge"  # bridge | host | none | container:OTHER
    ports: tuple[PortMapping, ...] = ()


@dataclass(frozen=True)
class Endpoint:
    """A container's interface on a network."""

    container: str
    network: str
    host: str
    ifname: str
    mac: str
    ip: str
    host_ifname: str
    ip6: str | None = None  # on a dual-stack network: the IPv6 address beside ``ip``
