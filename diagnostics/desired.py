"""What should exist, read off the hosts themselves when there is no vxray store (Docker hosts).

Docker keeps its overlay's control plane to itself (gossip between the engines), so
the doctor cannot compare the kernel with a store of vxray's. It can compare the
hosts with each other: every endpoint in an overlay sandbox of VNI N on one host
must be reachable from every other host's device of VNI N, every FDB ``dst`` must
be a VTEP some host owns, and one VNI carries one subnet. This module builds that
desired state — hosts with the VTEP their VXLAN devices send from, overlay networks
by VNI, endpoints from the containers wired into each sandbox's bridge, and those of
hosts that were not read as their Docker Engine announced them (``network inspect
--verbose``: one host read alone is checked against its peers) — so the doctor's
store-driven checks run unchanged. Pure: a ``World`` in, records out.
"""

from __future__ import annotations

import ipaddress

from backend.records import Endpoint, HostRecord, NetworkRecord
from diagnostics.doctor import Desired
from diagnostics.world import World


def observed(world: World) -> Desired:
    """Hosts, overlay networks and endpoints as the snapshots show them (networks named as Docker
    names them; a sandbox whose network has no name is named ``vni<N>``)."""
    hosts: dict[str, str | None] = {}
    networks: dict[str, NetworkRecord] = {}
    endpoints: list[Endpoint] = []
    for key, vx in world.vxlans:
        place, info = world.place(key), vx.vxlan
        if info is None or not vx.master:
            continue
        hosts[place.host] = hosts.get(place.host) or world.vtep(key, vx)
        name = world.network(key) or f"vni{info.vni}"
        bridge = world.links.get((key, vx.master))
        subnet = next((ipaddress.IPv4Interface(a.cidr).network.with_prefixlen for a in bridge.addresses
                       if ":" not in a.address), "") if bridge else ""  # fmt: skip
        gateway = next((a.address for a in bridge.addresses if ":" not in a.address), "") if bridge else ""
        networks.setdefault(name, NetworkRecord(name, "", "overlay", subnet, gateway, vni=info.vni, mtu=vx.mtu,
                                                learning=info.learning))  # fmt: skip
        for port in world.ports.get((key, vx.master), []):
            found = world.link_at(key, port.peer) if port.kind == "veth" and port.peer is not None else None
            if found is None or found[0] == key:
                continue
            ctr_key, lk = found
            ctr = world.place(ctr_key)
            ip = next((a.address for a in lk.addresses if ":" not in a.address), None)
            if ctr.ns.kind not in ("docker", "named") or ip is None or not lk.mac:
                continue  # Docker's load-balancer sandbox and the like are no container
            endpoints.append(Endpoint(ctr.label, name, place.host, lk.name, lk.mac, ip, port.name))
    read = set(hosts.values())
    for net in world.docker:  # endpoints on hosts that were not read: as their Docker Engine announced them
        if net.name not in networks:
            continue
        for task in net.tasks:
            if task.vtep not in read and task.vtep != net.local_vtep:
                node = f"node {task.vtep}"
                hosts.setdefault(node, task.vtep)
                if not any(e.ip == task.ip and e.network == net.name for e in endpoints):
                    endpoints.append(Endpoint(task.name, net.name, node, "eth0", task.mac, task.ip, ""))
    return Desired(tuple(HostRecord(h, vtep) for h, vtep in sorted(hosts.items())),
                   tuple(networks[n] for n in sorted(networks)), tuple(endpoints))  # fmt: skip
