"""Build a lab's networks and containers through real Docker Engines, and break them as the wild does.

The hosts' namespaces and underlay are the lab's own (``runner``); everything above
them — swarm, networks, containers, published ports — is Docker's doing, through
the Engine API, so what vxray then reads is what Docker really programs. Faults
are injected afterwards with plain ``ip``/``bridge``/``iptables`` commands into that
state (argv lists, never a shell), the way it breaks on real hosts.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

from backend.errors import VxrayError
from backend.lab import engines
from backend.lab.engines import Engine, Running
from backend.lab.spec import FaultSpec, LabSpec
from backend.shellwords import shell_line


def engines_of(spec: LabSpec, data_dir: str) -> list[Engine]:
    return [Engine(spec.name, h.name, f"{spec.name}.{h.name}", os.path.join(data_dir, "docker", h.name))
            for h in spec.hosts if h.engine == "docker"]  # fmt: skip


def build(spec: LabSpec, data_dir: str) -> None:
    """Engines started and joined, then ``docker network create`` and ``docker run`` as the file says."""
    found = engines_of(spec, data_dir)
    by_host = {e.host: e for e in found}
    with ThreadPoolExecutor(max_workers=len(found)) as pool:
        list(pool.map(engines.start, found))
        list(pool.map(engines.import_image, found))
    if any(n.driver == "overlay" for n in spec.networks):
        with engines.docker_errors("docker swarm"):
            engines.swarm(found, {h.name: str(ipaddress.IPv4Interface(h.underlay).ip) for h in spec.hosts})
    for n in spec.networks:
        if n.driver not in ("overlay", "bridge", "macvlan"):
            raise VxrayError(f"network {n.name}: driver {n.driver!r} is not Docker's (overlay, bridge or macvlan)")
        where = [found[0]] if n.driver == "overlay" else [by_host[n.host]] if n.host else found
        for e in where:
            with engines.docker_errors(f"docker network create {n.name} on {e.host}"):
                engines.create_network(e, n.name, n.driver, n.subnet, n.gateway, n.vni, n.internal, dict(n.options))
    for c in spec.containers:
        ports = []
        for mapping in c.ports:
            published, _, rest = mapping.partition(":")
            port, _, proto = rest.partition("/")
            if not (published.isdigit() and port.isdigit()):
                raise VxrayError(f"container {c.name}: invalid port mapping {mapping!r} (HOSTPORT:PORT[/tcp|udp])")
            ports.append((int(published), int(port), proto or "tcp"))
        with engines.docker_errors(f"docker run {c.name} on {c.host}"):
            engines.run(by_host[c.host], c.name, c.mode, [(a.network, a.ip, a.mac) for a in c.networks], ports)
    for fault in spec.faults:
        inject(spec, data_dir, fault)


def running(spec: LabSpec, data_dir: str) -> list[Running]:
    return [r for e in engines_of(spec, data_dir) for r in engines.containers(e)]


def targets(spec: LabSpec, data_dir: str) -> dict[tuple[str, str], tuple[str, str]]:
    """Every ordered pair of containers with namespaces of their own, on one network or one host:
    (source namespace path, address pinged) — the address Docker's embedded DNS gives for the name on
    the first network they share, else (same host, different networks: isolation's business) the
    destination's first address."""
    ctrs = {r.name: r for r in running(spec, data_dir) if r.sandbox}
    out = {}
    for a in sorted(ctrs):
        for b in sorted(ctrs):
            src, dst = ctrs[a], ctrs[b]
            shared = [n for n in src.addresses if n in dst.addresses and (n not in ("bridge", "host")
                      or src.host == dst.host)]  # fmt: skip
            if a == b or not src.addresses or not dst.addresses:
                continue
            if shared:
                out[a, b] = (src.sandbox or "", dst.addresses[shared[0]])
            elif src.host == dst.host:
                out[a, b] = (src.sandbox or "", dst.addresses[sorted(dst.addresses)[0]])
    return out


def _in(netns: str, *argv: str) -> None:
    """Run a plain command in a namespace (a named one or a bind-mount path); one line if it fails."""
    enter = ["nsenter", f"--net={netns}"] if netns.startswith("/") else ["ip", "netns", "exec", netns]
    proc = subprocess.run([*enter, *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        raise VxrayError(f"{shell_line(*argv)} in {netns}: {proc.stderr.strip() or proc.returncode}")


def _sandbox(engine: Engine, network: str) -> str:
    """The path of the overlay sandbox ``1-<netid>`` of ``network`` on ``engine``'s host."""
    with engine.client() as api:
        nid = api.inspect_network(network)["Id"]
    path = os.path.join(engine.netns_dir, f"1-{nid[:10]}")
    if not os.path.exists(path):
        raise VxrayError(f"no sandbox of network {network} on {engine.host}")
    return path


def inject(spec: LabSpec, data_dir: str, fault: FaultSpec) -> None:
    """Break what Docker programmed with the commands an operator (or an accident) would run."""
    by_host = {e.host: e for e in engines_of(spec, data_dir)}
    ctrs = {r.name: r for r in running(spec, data_dir)}
    engine = by_host.get(fault.host or "")
    victim = ctrs.get(fault.container or "")
    mac = ip = None
    if victim is not None and fault.network:
        ip = victim.addresses.get(fault.network)
        with by_host[victim.host].client() as api:
            mac = api.inspect_container(victim.name)["NetworkSettings"]["Networks"][fault.network]["MacAddress"]
    if fault.kind in ("fdb-remove", "stale-fdb") and engine is not None and mac:
        sandbox = _sandbox(engine, fault.network or "")
        _in(sandbox, "bridge", "fdb", "del", mac, "dev", "vxlan0", "self")
        if fault.kind == "stale-fdb":
            _in(sandbox, "bridge", "fdb", "add", mac, "dev", "vxlan0", "dst", fault.dst or "", "self", "permanent")
    elif fault.kind == "proxy-arp-remove" and engine is not None and ip:
        _in(_sandbox(engine, fault.network or ""), "ip", "neigh", "del", ip, "dev", "vxlan0")
        for other in ctrs.values():  # and the host's containers' caches expired: their next packet asks
            if other.host == engine.host and other.sandbox and fault.network in other.addresses:
                _in(other.sandbox, "ip", "neigh", "flush", "to", ip)
    elif fault.kind == "link-down" and engine is not None:
        _in(_sandbox(engine, fault.network or ""), "ip", "link", "set", fault.device, "down")
    elif fault.kind == "udp-drop" and engine is not None:
        _in(engine.netns, "iptables", "-I", "INPUT", "-p", "udp", "--dport", str(fault.port), "-j", "DROP")
    elif fault.kind == "wrong-arp" and victim is not None and victim.sandbox:
        other = ctrs[fault.dst or ""]
        net = next(n for n in victim.addresses if n in other.addresses)
        _in(victim.sandbox, "ip", "neigh", "replace", other.addresses[net], "lladdr", "02:42:de:ad:be:ef", "dev",
            "eth0", "nud", "permanent")  # fmt: skip
    elif fault.kind == "port-accept-remove" and engine is not None and victim is not None:
        _drop_port_accept(spec, engine, victim)
    else:
        raise VxrayError(f"fault {fault.kind} cannot be injected into a Docker lab as given")


def _drop_port_accept(spec: LabSpec, engine: Engine, victim: Running) -> None:
    """Delete the filter DOCKER chain's ACCEPT for the container's published port (what Docker added)."""
    mapping = next((c.ports[0] for c in spec.containers if c.name == victim.name and c.ports), None)
    if mapping is None:
        raise VxrayError(f"container {victim.name} publishes no port")
    port = mapping.partition(":")[2].partition("/")[0]
    proc = subprocess.run(["ip", "netns", "exec", engine.netns, "iptables", "-S", "DOCKER"], capture_output=True,
                          text=True)  # fmt: skip
    accepts = [line.split() for line in proc.stdout.splitlines()
               if line.startswith("-A DOCKER ") and "-j ACCEPT" in line]  # fmt: skip
    rule = next((r for r in accepts if "--dport" in r and r[r.index("--dport") + 1] == port), None)
    if rule is None:
        raise VxrayError(f"no ACCEPT rule for {victim.name}'s published port in {engine.host}'s DOCKER chain")
    _in(engine.netns, "iptables", "-D", *rule[1:])
