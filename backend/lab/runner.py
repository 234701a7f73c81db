"""Build, measure and remove labs: multi-host topologies of namespaces on one machine.

A lab named N lives in namespaces ``N.ul`` (the underlay bridge) and ``N.<host>``
(each host, with its containers and sandboxes as ``N.<host>-…``), and in a state
directory ``$VXRAY_HOME/labs/N`` holding its topology file and its own store. It
is built only through ``backend.ops``, the operations an operator uses, so labs
exercise the same code. ``down`` sweeps by the ``N.`` prefix, which no other lab
can share (lab names have no dots), so it also cleans up after a killed ``up``.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any

from pyroute2 import IPRoute

from backend import namedns, nsenter
from backend.errors import NeedRoot, VxrayError
from backend.lab.spec import Attachment, ContainerSpec, LabSpec, NetworkSpec, dump, parse
from backend.netns import RUN_NETNS
from backend.ops import containers, hostops, networks, ports
from backend.ops.context import Context
from backend.records import ContainerRecord, Endpoint, NetworkRecord
from backend.store.embedded import EmbeddedKV
from backend.store.registry import Registry

_LAB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,23}$")


def home() -> str:
    return os.environ.get("VXRAY_HOME", "/var/lib/vxray")


def lab_dir(name: str) -> str:
    return os.path.join(home(), "labs", name)


def builtin_names() -> list[str]:
    files = resources.files("backend.lab").joinpath("scenarios").iterdir()
    return sorted(f.name.removesuffix(".toml") for f in files if f.name.endswith(".toml"))


def load(name_or_file: str, rename: str | None = None) -> tuple[LabSpec, str]:
    """A built-in scenario by name, or a topology file; (spec, its text)."""
    if os.path.exists(name_or_file):
        with open(name_or_file) as f:
            text, source = f.read(), name_or_file
    elif name_or_file in builtin_names():
        text = resources.files("backend.lab").joinpath("scenarios", f"{name_or_file}.toml").read_text()
        source = f"{name_or_file}.toml"
    else:
        raise VxrayError(f"no lab file or built-in scenario named {name_or_file!r} (see `vxray lab ls --builtin`)")
    if rename:
        text = re.sub(r'(?m)^(\s*name\s*=\s*)"[^"]*"', rf'\g<1>"{rename}"', text, count=1)
    spec = parse(text, source)
    if not _LAB_NAME.match(spec.name):
        raise VxrayError(f"invalid lab name {spec.name!r}: letters, digits, '_', '-' (at most 24)")
    return spec, text


def context(name: str) -> Context:
    path = os.path.join(lab_dir(name), "store.db")
    if not os.path.exists(path):
        raise VxrayError(f"no lab named {name!r} is up (see `vxray lab ls`)")
    return Context(Registry(EmbeddedKV(path)))


def current() -> str | None:
    """The lab later commands act on (set by ``lab up``), if it is still up."""
    try:
        with open(os.path.join(home(), "current")) as f:
            name = f.read().strip()
    except FileNotFoundError:
        return None
    return name if os.path.isdir(lab_dir(name)) else None


def up(spec: LabSpec, text: str) -> Context:
    if os.geteuid() != 0:
        raise NeedRoot("to build a lab")
    if os.path.isdir(lab_dir(spec.name)) or _namespaces(spec.name):
        raise VxrayError(f"lab {spec.name} is already up (`vxray lab down {spec.name}` first)")
    try:
        os.makedirs(lab_dir(spec.name))
        with open(os.path.join(lab_dir(spec.name), "lab.toml"), "w") as f:
            f.write(text)
        ctx = Context(Registry(EmbeddedKV(os.path.join(lab_dir(spec.name), "store.db"))))
        _build(spec, ctx)
    except BaseException as exc:
        down(spec.name)
        if isinstance(exc, VxrayError):
            raise VxrayError(f"lab {spec.name} failed to build and was removed: {exc}") from None
        raise
    with open(os.path.join(home(), "current"), "w") as f:
        f.write(spec.name)
    return ctx


def _build(spec: LabSpec, ctx: Context) -> None:
    underlay = f"{spec.name}.ul"
    namedns.create(underlay)
    with nsenter.named(underlay), IPRoute() as ipr:
        ipr.link("add", ifname="ul0", kind="bridge")
        ipr.link("set", index=ipr.link_lookup(ifname="ul0")[0], state="up")
    for h in spec.hosts:
        ns = f"{spec.name}.{h.name}"
        iface = ipaddress.IPv4Interface(h.underlay)
        namedns.create(ns)
        with nsenter.named(ns), IPRoute() as ipr:
            ipr.link("add", ifname="eth0", kind="veth", peer={"ifname": f"ul-{h.name}"[:15], "net_ns_fd": underlay})
            eth0 = ipr.link_lookup(ifname="eth0")[0]
            ipr.addr("add", index=eth0, address=str(iface.ip), prefixlen=iface.network.prefixlen)
            for idx in (eth0, ipr.link_lookup(ifname="lo")[0]):
                ipr.link("set", index=idx, state="up")
        with nsenter.named(underlay), IPRoute() as ipr:
            port = ipr.link_lookup(ifname=f"ul-{h.name}"[:15])[0]
            ipr.link("set", index=port, master=ipr.link_lookup(ifname="ul0")[0], state="up")
        hostops.add(ctx, h.name, ns, str(iface.ip))
    for n in spec.networks:
        networks.create(
            ctx, n.name, n.driver, n.subnet, n.gateway, None if n.vni is None else str(n.vni),
            None if n.mtu is None else str(n.mtu), learning=n.learning, internal=n.internal,
            options=n.options, host=n.host,
        )  # fmt: skip
    for c in spec.containers:
        first = c.networks[0] if c.networks else None
        containers.run(ctx, c.name, c.host, first.network if first else None, first and first.ip,
                       first and first.mac, c.mode)  # fmt: skip
        for a in c.networks[1:]:
            containers.connect(ctx, a.network, c.name, a.ip, a.mac)
        for mapping in c.ports:
            ports.publish(ctx, c.name, mapping)


def _namespaces(name: str) -> list[str]:
    return sorted(n for n in os.listdir(RUN_NETNS) if n.startswith(f"{name}.")) if os.path.isdir(RUN_NETNS) else []


def down(name: str) -> list[str]:
    """Remove every namespace and the state of lab ``name``; what was removed."""
    removed = _namespaces(name)
    for ns in reversed(removed):  # containers and sandboxes before their hosts
        namedns.remove(ns)
    if os.path.isdir(lab_dir(name)):
        shutil.rmtree(lab_dir(name))
    if current() is None and os.path.exists(os.path.join(home(), "current")):
        os.unlink(os.path.join(home(), "current"))
    return removed


def running() -> list[str]:
    root = os.path.join(home(), "labs")
    return sorted(os.listdir(root)) if os.path.isdir(root) else []


def _ping(netns: str, ip: str) -> bool:
    """Three probes, reachable if any is answered: a neighbour entry left FAILED by an
    earlier attempt makes the first probe error out at once, before ARP is retried."""
    argv = ["ip", "netns", "exec", netns, "ping", "-c", "3", "-i", "0.2", "-W", "1", "-q", ip]
    return subprocess.run(argv, capture_output=True).returncode == 0


def reachability(ctx: Context) -> dict[str, dict[str, bool]]:
    """Real pings between every ordered pair of containers with a namespace.

    The target address is the one on a network both share, else the target's
    first address — as a name would resolve in Docker's embedded DNS.
    """
    ctrs = {c.name: c for c in ctx.store.containers() if c.netns}
    ips: dict[str, dict[str, str]] = {}
    for ep in sorted(ctx.store.endpoints(), key=lambda e: e.ifname):
        ips.setdefault(ep.container, {})[ep.network] = ep.ip

    def target(a: str, b: str) -> str:
        shared = [ip for net, ip in ips[b].items() if net in ips.get(a, {})]
        return (shared or list(ips[b].values()))[0]

    pairs = [(a, b) for a in sorted(ctrs) for b in sorted(ctrs) if a != b and b in ips]
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda p: _ping(ctrs[p[0]].netns, target(*p)), pairs))
    matrix: dict[str, dict[str, bool]] = {a: {} for a in sorted(ctrs)}
    for (a, b), ok in zip(pairs, results, strict=True):
        matrix[a][b] = ok
    return matrix


def status(name: str) -> dict[str, Any]:
    ctx = context(name)
    return {
        "lab": name,
        "hosts": hostops.host_list(ctx),
        "networks": networks.network_list(ctx),
        "containers": containers.container_list(ctx),
        "reachability": reachability(ctx),
    }


def check(name: str) -> list[tuple[str, str]]:
    """The goal pairs that still fail (empty: solved)."""
    with open(os.path.join(lab_dir(name), "lab.toml")) as f:
        spec = parse(f.read(), f"{name}/lab.toml")
    matrix = reachability(context(name))
    return [(a, b) for a, b in spec.goal if not matrix.get(a, {}).get(b, False)]


def export(name: str) -> str:
    """The topology file of what is running: the store's networks, containers and endpoints now.

    Underlay addresses and the exercise come from the file the lab was built from,
    since the store keeps only VTEP addresses.
    """
    ctx = context(name)
    with open(os.path.join(lab_dir(name), "lab.toml")) as f:
        built = parse(f.read(), f"{name}/lab.toml")
    eps = sorted(ctx.store.endpoints(), key=lambda e: e.ifname)
    nets = tuple(_network_spec(n) for n in sorted(ctx.store.networks(), key=lambda n: n.name))
    ctrs = tuple(_container_spec(c, eps) for c in sorted(ctx.store.containers(), key=lambda c: c.name))
    return dump(LabSpec(name, built.description, built.hosts, nets, ctrs, built.goal, built.solution))


def _network_spec(n: NetworkRecord) -> NetworkSpec:
    options = {k: v for k, v in n.options.items() if k != "created_parent"}
    return NetworkSpec(n.name, n.driver, n.subnet, n.gateway, n.vni, n.mtu, n.learning, n.internal, n.host, options)


def _container_spec(c: ContainerRecord, eps: list[Endpoint]) -> ContainerSpec:
    attachments = tuple(Attachment(e.network, e.ip, e.mac) for e in eps if e.container == c.name)
    ports = tuple(f"{p.host_port}:{p.port}/{p.proto}" for p in c.ports)
    return ContainerSpec(c.name, c.host, attachments, c.mode, ports)
