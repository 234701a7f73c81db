"""Build, measure and remove labs: multi-host topologies of namespaces on one machine.

A lab named N lives in namespaces ``N.ul`` (one bridge per underlay segment),
``N.<router>`` (routers between segments) and ``N.<host>`` (each host, with its
containers and sandboxes as ``N.<host>-…``), and in a state
directory ``$VXRAY_HOME/labs/N`` holding its topology file and its own store. It
is built only through ``backend.ops``, the operations an operator uses, so labs
exercise the same code. ``down`` sweeps by the ``N.`` prefix, which no other lab
can share (lab names have no dots), so it also cleans up after a killed ``up``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from importlib import resources
from typing import Any

from pyroute2 import IPRoute

from backend import env, namedns, nsenter, tomlfile
from backend.errors import NeedRoot, VxrayError
from backend.lab import docker_build, engines
from backend.lab import spec as lab_spec
from backend.lab.spec import Attachment, ContainerSpec, FaultSpec, HostSpec, LabSpec, NetworkSpec, dump, parse
from backend.netns import RUN_NETNS
from backend.ops import containers, entries, hostops, networks, ports
from backend.ops.context import Context
from backend.ops.sandbox import sandbox_name, set_vni
from backend.records import ContainerRecord, Endpoint, NetworkRecord
from backend.shellwords import shell_line
from backend.store.embedded import EmbeddedKV
from backend.store.registry import Registry


def home() -> str:
    return env.path("VXRAY_HOME", "/var/lib/vxray", directory=True)


def lab_dir(name: str) -> str:
    """Where lab ``name`` keeps its state; a name that is not a lab's (``..``, ``a/b``) never becomes a path that
    ``down`` would remove."""
    if not lab_spec.LAB_NAME.match(name):
        raise VxrayError(f"invalid lab name {name!r}: {lab_spec.LAB_NAME_RULE}")
    return os.path.join(home(), "labs", name)


def builtin_names() -> list[str]:
    files = resources.files("backend.lab").joinpath("scenarios").iterdir()
    return sorted(f.name.removesuffix(".toml") for f in files if f.name.endswith(".toml"))


def load(name_or_file: str, rename: str | None = None) -> tuple[LabSpec, str]:
    """A built-in scenario by name, or a topology file; (spec, its text)."""
    if os.path.exists(name_or_file):
        text, source = tomlfile.read(name_or_file, "lab file"), name_or_file
    elif name_or_file in builtin_names():
        text = resources.files("backend.lab").joinpath("scenarios", f"{name_or_file}.toml").read_text()
        source = f"{name_or_file}.toml"
    else:
        raise VxrayError(f"no lab file or built-in scenario named {name_or_file!r} (see `vxray lab ls --builtin`)")
    if rename is not None:
        if not lab_spec.LAB_NAME.match(rename):  # before it is written into the file's text
            raise VxrayError(f"invalid lab name {rename!r} (--name): {lab_spec.LAB_NAME_RULE}")
        text = re.sub(r'(?m)^(\s*name\s*=\s*)"[^"]*"', rf'\g<1>"{rename}"', text, count=1)
    return parse(text, source), text


def context(name: str) -> Context:
    path = os.path.join(lab_dir(name), "store.db")
    if not os.path.exists(path):
        raise VxrayError(f"no lab named {name!r} is up (see `vxray lab ls`)")
    return Context(Registry(EmbeddedKV(path)))


def current() -> str | None:
    """The lab later commands act on (set by ``lab up``), if it is still up."""
    try:
        with open(os.path.join(home(), "current")) as f:
            name = f.read(100).strip()
    except (OSError, UnicodeDecodeError):  # none yet, or not one vxray wrote
        return None
    return name if lab_spec.LAB_NAME.match(name) and os.path.isdir(lab_dir(name)) else None


def use(name: str) -> None:
    """Make lab ``name`` (which must be up) the one later commands act on."""
    context(name)
    with open(os.path.join(home(), "current"), "w") as f:
        f.write(name)


def up(spec: LabSpec, text: str) -> Context:
    if os.geteuid() != 0:
        raise NeedRoot("to build a lab")
    if os.path.isdir(lab_dir(spec.name)) or _namespaces(spec.name):
        raise VxrayError(f"lab {spec.name} is already up (`{shell_line('vxray', 'lab', 'down', spec.name)}` first)")
    try:
        os.makedirs(lab_dir(spec.name))
        with open(os.path.join(lab_dir(spec.name), "lab.toml"), "w") as f:
            f.write(text)
        ctx = Context(Registry(EmbeddedKV(os.path.join(lab_dir(spec.name), "store.db"))))
        _build(spec, ctx)
    except BaseException as exc:
        down(spec.name)
        if isinstance(exc, OSError):  # $VXRAY_HOME not writable, /proc read-only …: the path and why
            where = f"{exc.filename}: " if exc.filename else ""
            raise VxrayError(f"lab {spec.name} failed to build and was removed: {where}{exc.strerror or exc}") from None
        if isinstance(exc, VxrayError):
            raise VxrayError(f"lab {spec.name} failed to build and was removed: {exc}") from None
        raise
    with open(os.path.join(home(), "current"), "w") as f:
        f.write(spec.name)
    return ctx


def _build(spec: LabSpec, ctx: Context) -> None:
    underlay = f"{spec.name}.ul"
    namedns.create(underlay)
    segments = spec.segments or ("ul0",)
    with nsenter.named(underlay), IPRoute() as ipr:
        for seg in segments:
            ipr.link("add", ifname=seg, kind="bridge")
            ipr.link("set", index=ipr.link_lookup(ifname=seg)[0], state="up")
    for r in spec.routers:
        ns = _machine(spec, r.name, [(f"eth{k}", p.segment, p.address) for k, p in enumerate(r.interfaces)], None)
        with nsenter.named(ns), open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write("1")
        hostops.add(ctx, r.name, ns, None)
    for h in spec.hosts:
        ns = _machine(spec, h.name, [("eth0", spec.segment_of(h), h.underlay)], _gateway(spec, h))
        hostops.add(ctx, h.name, ns, str(ipaddress.IPv4Interface(h.underlay).ip))
    if any(h.engine == "docker" for h in spec.hosts):
        docker_build.build(spec, lab_dir(spec.name))  # Docker makes the networks and containers
        return
    for n in spec.networks:
        networks.create(
            ctx, n.name, n.driver, [n.subnet, *n.subnets6], [g for g in (n.gateway, *n.gateways6) if g],
            None if n.vni is None else str(n.vni),
            None if n.mtu is None else str(n.mtu), learning=n.learning, internal=n.internal,
            options=n.options, host=n.host,
        )  # fmt: skip
    for c in spec.containers:
        first = c.networks[0] if c.networks else None
        containers.run(ctx, c.name, c.host, first.network if first else None, first and first.ip,
                       first and first.mac, c.mode, first and first.ip6)  # fmt: skip
        for a in c.networks[1:]:
            containers.connect(ctx, a.network, c.name, a.ip, a.mac, a.ip6)
        for mapping in c.ports:
            ports.publish(ctx, c.name, mapping)
    for n in spec.networks:
        if n.sync:
            entries.sync(ctx, n.name)
    for fault in spec.faults:
        inject(ctx, fault)


def _port_name(machine: str, ifname: str) -> str:
    """The underlay-side end of a machine's interface: readable when it fits in 15 characters."""
    name = f"ul-{machine}" if ifname == "eth0" else f"ul-{machine}-{ifname[3:]}"
    return name if len(name) <= 15 else "ul-" + hashlib.sha1(f"{machine}/{ifname}".encode()).hexdigest()[:12]


def _machine(spec: LabSpec, name: str, ports: list[tuple[str, str, str]], gateway: str | None) -> str:
    """A host or router namespace ``<lab>.<name>`` with one interface per (ifname, segment, address)."""
    underlay, ns = f"{spec.name}.ul", f"{spec.name}.{name}"
    namedns.create(ns)
    for ifname, segment, address in ports:
        iface, outside = ipaddress.IPv4Interface(address), _port_name(name, ifname)
        with nsenter.named(ns), IPRoute() as ipr:
            ipr.link("add", ifname=ifname, kind="veth", peer={"ifname": outside, "net_ns_fd": underlay})
            idx = ipr.link_lookup(ifname=ifname)[0]
            ipr.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)
            ipr.link("set", index=idx, state="up")
        with nsenter.named(underlay), IPRoute() as ipr:
            port = ipr.link_lookup(ifname=outside)[0]
            ipr.link("set", index=port, master=ipr.link_lookup(ifname=segment)[0], state="up")
    with nsenter.named(ns), IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        if gateway:
            ipr.route("add", dst="0.0.0.0/0", gateway=gateway)
    return ns


def _gateway(spec: LabSpec, host: HostSpec) -> str | None:
    """The host's default gateway: its own, or the one router on its segment."""
    if host.gateway:
        return host.gateway
    segment = spec.segment_of(host)
    addrs = [p.address for r in spec.routers for p in r.interfaces if p.segment == segment]
    return str(ipaddress.IPv4Interface(addrs[0]).ip) if len(addrs) == 1 else None


def inject(ctx: Context, fault: FaultSpec) -> None:
    """Break the lab as ``fault`` says, through the same operations an operator would use."""
    if fault.kind in ("fdb-remove", "stale-fdb"):
        ep = next(e for e in ctx.store.endpoints(fault.network) if e.container == fault.container)
        vtep = ctx.host(ep.host).record.vtep or ""
        entries.fdb(ctx, "del", ep.mac, vtep, network=fault.network, host=fault.host)
        if fault.kind == "stale-fdb":
            entries.fdb(ctx, "add", ep.mac, fault.dst or "", network=fault.network, host=fault.host)
    elif fault.kind in lab_spec.NFT_FAULTS:
        _nft_fault(ctx, fault)
    elif fault.kind in lab_spec.DOCKER_ONLY:
        raise VxrayError(f'fault {fault.kind} is injected only into Docker hosts (engine = "docker")')
    elif fault.kind == "wrong-vni":
        set_vni(ctx.host(fault.host), ctx.network(fault.network or ""), fault.vni or 0)
    else:
        setting = {
            "mtu": f"mtu.{fault.device}={fault.mtu}",
            "ip-forward-off": "ip_forward=0",
            "forward-drop": "forward_policy=DROP",
            "udp-drop": f"udp.{fault.port}=drop",
        }[fault.kind]
        hostops.set_(ctx, fault.host or "", [setting])


NFT_TABLES = {"nft-udp-drop": "vx_udp", "nft-forward-drop": "vx_forward", "nft-reply-drop": "vx_ct",
              "nft-bridge-drop": "vx_bridge", "nft-ingress-drop": "vx_ingress"}  # fmt: skip


def nft_ruleset(fault: FaultSpec) -> tuple[str, str, str, str, tuple[str, ...]]:
    """The native nftables table a fault writes, as ``nft`` takes it word by word:
    (family, table, chain, the chain's declaration, its rules). Each kind has a table of its own (``vx_…``, as
    vxray marks what it makes), so faults side by side never share a chain."""
    families, default = lab_spec.NFT_FAULTS[fault.kind]
    family, priority = fault.family or families[0], default if fault.priority is None else fault.priority
    port = str(fault.port)
    hook, policy, rules = {
        "nft-udp-drop": ("input", "accept", (f"udp dport {port} counter drop",)),
        "nft-forward-drop": ("forward", "accept", ("counter drop",)),
        "nft-reply-drop": ("forward", "drop", ("ct state new counter accept",)),
        "nft-bridge-drop": ("forward", "accept", ("meta protocol ip counter drop",)),
        "nft-ingress-drop": (f"ingress device {fault.device}", "accept", (f"udp dport {port} counter drop",)),
    }[fault.kind]
    declaration = f"{{ type filter hook {hook} priority {priority}; policy {policy}; }}"
    return family, NFT_TABLES[fault.kind], hook.split()[0], declaration, rules


def _nft_fault(ctx: Context, fault: FaultSpec) -> None:
    """A native nftables table written with plain ``nft`` in the host's namespace (``network``: in that network's
    sandbox on the host), the way firewalld or an operator writes one; a failure half-way removes the table."""
    h = ctx.host(fault.host or "")
    netns = h.ns_name(sandbox_name(ctx.network(fault.network))) if fault.network else None
    if netns is not None and not h.has_netns(netns):
        raise VxrayError(f"fault {fault.kind}: network {fault.network} has no sandbox on host {h.name}")
    family, table, chain, declaration, rules = nft_ruleset(fault)
    steps = [("add", "table", family, table), ("add", "chain", family, table, chain, declaration),
             *(("add", "rule", family, table, chain, *rule.split()) for rule in rules)]  # fmt: skip
    for i, words in enumerate(steps):
        proc = h.run(["nft", *words], netns)
        if proc.returncode != 0:
            if i:
                h.run(["nft", "delete", "table", family, table], netns)
            why = next(iter(proc.stderr.strip().splitlines()), "nft failed")  # the lines after repeat the command
            raise VxrayError(f"fault {fault.kind}: {shell_line('nft', *words)} failed on host {h.name}: {why}")


def _namespaces(name: str) -> list[str]:
    return sorted(n for n in os.listdir(RUN_NETNS) if n.startswith(f"{name}.")) if os.path.isdir(RUN_NETNS) else []


def down(name: str) -> list[str]:
    """Remove every namespace and the state of lab ``name``; what was removed."""
    removed = _namespaces(name)
    engines.sweep(name, removed, lab_dir(name))  # real engines first: their processes live in these namespaces
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


def _ping(netns: str, ip: str, size: int | None = None) -> bool:  # an IPv6 address: ping picks -6 by itself
    """Three probes, reachable if any is answered: a neighbour entry left FAILED by an
    earlier attempt makes the first probe error out at once, before ARP is retried.
    With ``size``, probes carry that payload and may not be fragmented (MTU exercises)."""
    enter = ["nsenter", f"--net={netns}"] if netns.startswith("/") else ["ip", "netns", "exec", netns]
    argv = [*enter, "ping", "-c", "3", "-i", "0.2", "-W", "1", "-q", ip]
    if size is not None:
        argv[-1:-1] = ["-s", str(size), "-M", "do"]
    return subprocess.run(argv, capture_output=True).returncode == 0


def targets(ctx: Context, version: int = 4) -> dict[tuple[str, str], tuple[str, str]]:
    """Every ordered pair of containers with a namespace: (source namespace, address pinged).

    The address is ``containers.address_seen_from``: as a name would resolve in
    Docker's embedded DNS. With ``version=6``, the pairs on a dual-stack network
    together, with the IPv6 address ``ping -6`` is given (``address6_seen_from``);
    none for a lab without IPv6.
    """
    seen_from = containers.address6_seen_from if version == 6 else containers.address_seen_from
    ctrs = {c.name: c for c in ctx.store.containers() if c.netns}
    eps = ctx.store.endpoints()
    out = {}
    for a in sorted(ctrs):
        for b in sorted(ctrs):
            ip = seen_from(eps, b, a) if a != b else None
            if ip is not None:
                out[a, b] = (ctrs[a].netns or "", ip)
    return out


def reachability6(ctx: Context, size: int | None = None) -> dict[str, dict[str, bool]]:
    """Real ``ping -6`` between the IPv6 pairs of ``targets`` (only containers that have an IPv6 peer appear)."""
    pairs = targets(ctx, 6)
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda p: _ping(*pairs[p], size), pairs))
    matrix: dict[str, dict[str, bool]] = {}
    for (a, b), ok in zip(pairs, results, strict=True):
        matrix.setdefault(a, {})[b] = ok
    return matrix


def reachability(ctx: Context, size: int | None = None, spec: LabSpec | None = None) -> dict[str, dict[str, bool]]:
    """Real pings between every ordered pair of containers with a namespace (see ``targets``; a lab of
    Docker hosts: ``docker_build.targets``)."""
    docker = spec is not None and any(h.engine == "docker" for h in spec.hosts)
    pairs = docker_build.targets(spec, lab_dir(spec.name)) if spec is not None and docker else targets(ctx)
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda p: _ping(*pairs[p], size), pairs))
    names = sorted({a for a, _ in pairs} if docker else {c.name for c in ctx.store.containers() if c.netns})
    matrix: dict[str, dict[str, bool]] = {a: {} for a in names}
    for (a, b), ok in zip(pairs, results, strict=True):
        matrix[a][b] = ok
    return matrix


def built(name: str) -> LabSpec:
    """The topology file lab ``name`` was built from."""
    context(name)  # the lab must be up
    with open(os.path.join(lab_dir(name), "lab.toml")) as f:
        return parse(f.read(), f"{name}/lab.toml")


def status(name: str) -> dict[str, Any]:
    ctx = context(name)
    return {
        "lab": name,
        "hosts": hostops.host_list(ctx),
        "networks": networks.network_list(ctx),
        "containers": containers.container_list(ctx),
        "reachability": reachability(ctx, built(name).size, built(name)),
        "reachability6": reachability6(ctx, built(name).size),
    }


def check(name: str) -> list[tuple[str, str]]:
    """The goal pairs that still fail (empty: solved); a pair on a dual-stack network must answer ``ping -6``
    as well as ``ping``."""
    spec, ctx = built(name), context(name)
    matrix = reachability(ctx, spec.size, spec)
    matrix6 = reachability6(ctx, spec.size)
    return [(a, b) for a, b in spec.goal if not matrix.get(a, {}).get(b, False) or not matrix6.get(a, {}).get(b, True)]


def export(name: str) -> str:
    """The topology file of what is running: the store's networks, containers and endpoints now.

    The underlay (segments, routers, host addresses) and the exercise come from the
    file the lab was built from, since the store keeps only VTEP addresses. Faults
    are left out: they are events, not topology, so the file builds the healthy lab.
    """
    ctx, spec = context(name), built(name)
    eps = sorted(ctx.store.endpoints(), key=lambda e: e.ifname)
    sync = {n.name for n in spec.networks if n.sync}
    nets = tuple(_network_spec(n, n.name in sync) for n in sorted(ctx.store.networks(), key=lambda n: n.name))
    ctrs = tuple(_container_spec(c, eps) for c in sorted(ctx.store.containers(), key=lambda c: c.name))
    return dump(replace(spec, name=name, networks=nets, containers=ctrs, faults=()))


def _network_spec(n: NetworkRecord, sync: bool) -> NetworkSpec:
    options = {k: v for k, v in n.options.items() if k != "created_parent"}
    return NetworkSpec(n.name, n.driver, n.subnet, n.gateway, n.vni, n.mtu, n.learning, n.internal, n.host, options,
                       sync, n.subnets6, n.gateways6)  # fmt: skip


def _container_spec(c: ContainerRecord, eps: list[Endpoint]) -> ContainerSpec:
    attachments = tuple(Attachment(e.network, e.ip, e.mac, e.ip6) for e in eps if e.container == c.name)
    ports = tuple(f"{p.host_port}:{p.port}/{p.proto}" for p in c.ports)
    return ContainerSpec(c.name, c.host, attachments, c.mode, ports)
