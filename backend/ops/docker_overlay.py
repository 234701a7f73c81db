"""Static FDB and proxy-ARP repairs on Docker's own networks, from what the Engine API says.

Docker's overlay driver programs, in each host's sandbox ``1-<netid>``, every remote
endpoint's MAC on ``vxlan0`` with its host's address, and its IP in the neighbour table
the device's ARP proxy answers from. When an entry goes missing — deleted by hand,
flushed when the device went down — packets die there until the driver programs it
again, which it does only when membership changes. These operations program it from
the Engine's own account of the network (``network inspect --verbose``: every task's
address and the address of the host it runs on), on the machine they run on, so over
``--host`` each machine repairs itself. Docker has no vxray store: a network or a
container unknown to the store is looked up here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute

from backend import nsenter
from backend.docker_engine import engine_url, ipv4, mac_of
from backend.errors import VxrayError
from backend.lab import engines as lab_engines
from backend.netns import nsfs_mounts
from backend.ops.changes import Change
from backend.ops.context import Context


@dataclass(frozen=True)
class Engine:
    """A Docker Engine and the vxray host it serves (``None``: this machine, no store)."""

    host: str | None
    url: str
    netns_dir: str | None = None  # where its sandboxes are bind-mounted, when known

    @property
    def name(self) -> str:
        return self.host or "local"


def engines(ctx: Context) -> list[Engine]:
    """The Engines behind the context's hosts: a lab's (one per host), else this machine's own."""
    hosts = ctx.store.hosts()
    found = [Engine(h.name, lab_engines.socket_url(h.netns), lab_engines.sandboxes(h.netns))
             for h in hosts if h.netns and lab_engines.runs_engine(h.netns)]  # fmt: skip
    if found or hosts:
        return found
    url = engine_url(None)
    return [Engine(None, url)] if url else []


@contextmanager
def _api(engine: Engine, what: str) -> Iterator[Any]:
    import docker
    import docker.errors

    try:
        with docker.APIClient(base_url=engine.url, timeout=15, version="auto") as api:
            yield api
    except docker.errors.NotFound:
        raise VxrayError(f"unknown {what} on {engine.name}") from None
    except docker.errors.DockerException as exc:
        raise VxrayError(f"{what}: Docker Engine at {engine.url}: {getattr(exc, 'explanation', None) or exc}") from None


def pick(ctx: Context, host: str | None, network: str | None = None) -> Engine:
    """The Engine of ``--host`` (or the only one, or the one that has ``network``); one line if none."""
    found = engines(ctx)
    if not found:
        raise VxrayError(f"unknown network {network!r}" if network else "no Docker Engine here")
    if host is not None:
        match = [e for e in found if e.host == host]
        if not match:
            raise VxrayError(f"host {host!r} runs no Docker Engine vxray can reach")
        return match[0]
    if len(found) > 1:
        raise VxrayError(f"several Docker hosts ({', '.join(e.name for e in found)}): pick one with --host")
    return found[0]


def overlay(engine: Engine, network: str) -> dict[str, Any]:
    """``docker network inspect --verbose NETWORK``, which must be an overlay."""
    with _api(engine, f"network {network}") as api:
        return _overlay_only(api.inspect_network(network, verbose=True), network)


def _overlay_only(info: dict[str, Any], network: str) -> dict[str, Any]:
    if info.get("Driver") != "overlay":
        raise VxrayError(f"network {network} is a {info.get('Driver')} network: FDB entries are for overlays")
    return info


def sandbox(engine: Engine, network_id: str) -> str | None:
    """The bind mount of the network's sandbox ``1-<first 10 of its id>`` on ``engine``'s host."""
    with open("/proc/self/mountinfo") as f:
        paths = nsfs_mounts(f.read())
    name = f"1-{network_id[:10]}"
    return next((p for p in paths if os.path.basename(p) == name
                 and (engine.netns_dir is None or os.path.dirname(p) == engine.netns_dir)), None)  # fmt: skip


def vxlan_device(path: str) -> str:
    with nsenter.named(path), IPRoute() as ipr:
        for link in ipr.get_links():
            info = link.get("IFLA_LINKINFO")
            if info is not None and info.get("IFLA_INFO_KIND") == "vxlan":
                return str(link.get("IFLA_IFNAME"))
    raise VxrayError(f"no VXLAN device in {path}")


def network_sandbox(ctx: Context, network: str, host: str | None) -> tuple[Engine, str, str]:
    """(Engine, sandbox path, VXLAN device) of a Docker overlay on one host."""
    engine = pick(ctx, host, network)
    info = overlay(engine, network)
    path = sandbox(engine, info["Id"])
    if path is None:
        raise VxrayError(f"{engine.name} has no sandbox for network {network} (no container of it runs there)")
    return engine, path, vxlan_device(path)


def container_netns(ctx: Context, container: str) -> tuple[Engine, str]:
    """(Engine, the bind mount of the container's namespace) of a Docker container, by name or id."""
    for engine in engines(ctx):
        with _api(engine, f"container {container}") as api:
            found = [c for c in api.containers(all=True) if f"/{container}" in c.get("Names", ())
                     or c["Id"].startswith(container)]  # fmt: skip
            if found:
                key = api.inspect_container(found[0]["Id"])["NetworkSettings"].get("SandboxKey")
                if not key:
                    raise VxrayError(f"container {container} has no namespace of its own (host mode or stopped)")
                return engine, key
    raise VxrayError(f"unknown container {container!r}")


def _sandboxes(ctx: Context, network: str) -> list[tuple[Engine, dict[str, Any], str]]:
    """(Engine, its ``network inspect --verbose``, the sandbox path) on every Docker host with a sandbox of
    ``network``, each Engine asked once; one line if no Engine knows the network."""
    found, known = [], False
    for engine in engines(ctx):
        try:
            with _api(engine, f"network {network}") as api:
                info = api.inspect_network(network, verbose=True)
        except VxrayError:
            continue  # not this Engine's network (or the Engine is down): the others may have it
        _overlay_only(info, network)
        known = True
        path = sandbox(engine, info["Id"])
        if path is not None:
            found.append((engine, info, path))
    if not known:
        raise VxrayError(f"unknown network {network!r}")
    return found


def sync_plan(ctx: Context, network: str) -> list[Change]:
    """On each Docker host with a sandbox of ``network``: every remote task's MAC on the VXLAN device with
    its host's address, and its IP in the neighbour table — what Docker's overlay driver programs."""
    plan = []
    for engine, info, path in _sandboxes(ctx, network):
        with _api(engine, "docker info") as api:
            own = (api.info().get("Swarm") or {}).get("NodeAddr")
        dev = vxlan_device(path)
        local = {c.get("IPv4Address", "").split("/")[0] for c in (info.get("Containers") or {}).values()}
        for service in (info.get("Services") or {}).values():
            for task in service.get("Tasks") or ():
                ip, vtep = task.get("EndpointIP"), (task.get("Info") or {}).get("Host IP")
                if not ipv4(ip) or not ipv4(vtep) or vtep == own or ip in local:
                    continue
                mac = mac_of(ip)
                plan.append(Change(engine.name, path, "fdb", "replace", mac, dev, dst=vtep))
                plan.append(Change(engine.name, path, "neigh", "replace", mac, dev, ip=ip))
    return plan


def up_plan(ctx: Context, network: str) -> list[tuple[Engine, str, str]]:
    """The sandbox devices of ``network`` that are down: (Engine, sandbox path, device)."""
    down = []
    for engine, _, path in _sandboxes(ctx, network):
        with nsenter.named(path), IPRoute() as ipr:
            down += [(engine, path, str(lk.get("IFLA_IFNAME"))) for lk in ipr.get_links()
                     if lk.get("IFLA_IFNAME") != "lo" and not lk["flags"] & 1]  # fmt: skip
    return down


def set_up(path: str, dev: str) -> None:
    with nsenter.named(path), IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=dev)[0], state="up")
