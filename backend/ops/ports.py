"""``port add``: publish a container port as Docker's ``-p HOSTPORT:PORT`` does.

The same rules Docker writes: a DNAT in the nat table's DOCKER chain (reached from
PREROUTING and OUTPUT for local destinations), a MASQUERADE for hairpin traffic,
and an ACCEPT in the filter table's DOCKER chain — through the host's back-end.
"""

from __future__ import annotations

from dataclasses import replace

from backend import validate
from backend.errors import VxrayError
from backend.ops.context import Context
from backend.ops.rules import Rules
from backend.ops.txn import Undo
from backend.records import ContainerRecord, Endpoint, PortMapping

JUMPS = [
    ("nat", "PREROUTING", ["-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER"]),
    ("nat", "OUTPUT", ["!", "-d", "127.0.0.0/8", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER"]),
]


def _rules_for(bridge: str, ep: Endpoint, p: PortMapping) -> list[tuple[str, str, list[str]]]:
    proto = ["-p", p.proto, "-m", p.proto]
    return [
        ("nat", "DOCKER", ["!", "-i", bridge, *proto, "--dport", str(p.host_port), "-j", "DNAT",
                           "--to-destination", f"{ep.ip}:{p.port}"]),
        ("nat", "POSTROUTING", ["-s", f"{ep.ip}/32", "-d", f"{ep.ip}/32", *proto, "--dport", str(p.port),
                                "-j", "MASQUERADE"]),
        ("filter", "DOCKER", ["-d", f"{ep.ip}/32", "!", "-i", bridge, "-o", bridge, *proto, "--dport", str(p.port),
                              "-j", "ACCEPT"]),
    ]  # fmt: skip


def _bridge_endpoint(ctx: Context, rec: ContainerRecord) -> tuple[str, Endpoint]:
    for ep in ctx.store.endpoints():
        if ep.container == rec.name:
            net = ctx.network(ep.network)
            if net.driver == "bridge":
                return net.options["bridge_name"], ep
    raise VxrayError(f"container {rec.name} is on no bridge network: nothing to publish a port through")


def publish(ctx: Context, container: str, mapping: str) -> PortMapping:
    host_port, port, proto = validate.port_mapping(mapping)
    rec = ctx.container(container)
    p = PortMapping(host_port, port, proto)
    for other in ctx.store.containers():
        if other.host == rec.host and any((q.host_port, q.proto) == (host_port, proto) for q in other.ports):
            raise VxrayError(f"host port {host_port}/{proto} on host {rec.host} is already published by {other.name}")
    bridge, ep = _bridge_endpoint(ctx, rec)
    h = ctx.host(rec.host)
    with Undo() as undo:
        rules = Rules(h, undo)
        rules.ensure_chain("nat", "DOCKER")
        rules.ensure_chain("filter", "DOCKER")
        for table, chain, spec in JUMPS:
            rules.ensure(table, chain, spec)
        for table, chain, spec in _rules_for(bridge, ep, p):
            rules.add(table, chain, spec)
        ctx.store.update_container(replace(rec, ports=(*rec.ports, p)))
    return p


def unpublish_all(ctx: Context, rec: ContainerRecord) -> None:
    if not rec.ports:
        return
    bridge, ep = _bridge_endpoint(ctx, rec)
    rules = Rules(ctx.host(rec.host), Undo())
    for p in rec.ports:
        for table, chain, spec in _rules_for(bridge, ep, p):
            rules.delete(table, chain, spec)
    ctx.store.update_container(replace(rec, ports=()))
