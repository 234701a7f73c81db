"""Devices as an operator names them across namespaces and machines: ``dev@namespace@host``.

One name for a device, whichever way it is reached — typed to ``vxray capture``, written as the interface
name of a pcapng file (so what Wireshark shows can be typed back), picked in the app. The namespace is its
container when it is one (the store's name, else Docker's), ``host`` for a machine's own, else its label
without the machine's prefix; resolving also takes a label, an id, an overlay's network name or
``HOST:name``. Pure: lookups in a ``World``.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.errors import VxrayError
from diagnostics.world import World

DEVICE_MAX = 15  # IFNAMSIZ - 1


@dataclass(frozen=True)
class Target:
    """A device resolved in the world: its place's key, its name there, and what the file calls it."""

    key: str
    dev: str
    name: str
    description: str


def namespace_name(world: World, key: str) -> str:
    """How a namespace reads in ``dev@namespace@host``: its container, ``host`` for a machine's own, else its
    label without the machine's prefix."""
    place = world.places[key]
    local = place.label.removeprefix(f"{place.host}:")
    if container := world.container(key):
        return container
    if place.ns.kind == "host" or local == "host" or world.is_host_ns(key):
        return "host"
    return local


def target(world: World, key: str, dev: str) -> Target:
    place = world.places[key]
    name = f"{dev}@{namespace_name(world, key)}@{place.host}"
    return Target(key, dev, name, f"{dev} in namespace {place.label} ({place.ns.id}) on {place.host}")


def resolve(world: World, spec: str) -> Target:
    """``DEV[@NAMESPACE[@HOST]]`` to a device the snapshot holds; one line naming what is wrong otherwise."""
    dev, _, rest = spec.partition("@")
    ns, _, host = rest.partition("@")
    if not dev or len(dev) > DEVICE_MAX or "/" in dev or not dev.isprintable() or dev.isspace():
        raise VxrayError(f"bad device {dev!r} in {spec!r}: a device name of 1-{DEVICE_MAX} characters")
    ns = ns or "host"
    found = [p for p in world.places.values() if (not host or p.host == host) and _is(world, p.key, ns)]
    if not found:
        where = f" on {host}" if host else ""
        raise VxrayError(f"unknown namespace {ns!r} in {spec!r}{where}: not a container, namespace or machine's host")
    if len({p.key for p in found}) > 1:  # a network's name: Docker's overlay sandbox and its lb_ namespace both
        found = [p for p in found if p.ns.link(dev) is not None] or found  # the one holding the device decides
    if len({p.key for p in found}) > 1:
        names = ", ".join(sorted(f"{namespace_name(world, p.key)}@{p.host}" for p in found))
        raise VxrayError(f"{ns!r} in {spec!r} is several namespaces ({names}): say DEV@NAMESPACE@HOST")
    place = found[0]
    if place.ns.link(dev) is None:
        have = ", ".join(lk.name for lk in place.ns.links) or "none"
        raise VxrayError(f"no device {dev!r} in namespace {place.label} (it has {have})")
    return target(world, place.key, dev)


def _is(world: World, key: str, word: str) -> bool:
    place = world.places[key]
    local = place.label.removeprefix(f"{place.host}:")
    names = {place.label, local, place.ns.id, world.container(key), world.network(key), namespace_name(world, key)}
    return word in names or (":" in word and word == f"{place.host}:{namespace_name(world, key)}")
