"""A lab's topology file (TOML) as pure data, with errors that name the line and field.

tomllib gives no positions, so a schema error is placed by finding the table it
belongs to (the n-th ``[[containers]]``, ``[exercise]`` …) and the key's line
within it. Validation of values (CIDRs, IPs, MACs) is left to the operations that
build the lab, which name the bad value the same way they do for an operator.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass, field
from typing import Any

from backend import validate
from backend.errors import VxrayError


@dataclass(frozen=True)
class HostSpec:
    name: str
    underlay: str  # address/prefix on the underlay segment, also the host's VTEP
    segment: str | None = None  # None: the first segment (or the lab's single implicit one)
    gateway: str | None = None  # None: the router on its segment, if there is exactly one
    engine: str = "netns"  # "docker": a real Docker Engine runs in the host and builds its networks and containers


@dataclass(frozen=True)
class RouterPort:
    segment: str
    address: str


@dataclass(frozen=True)
class RouterSpec:
    """A namespace that forwards between underlay segments, as the swarm example's router does."""

    name: str
    interfaces: tuple[RouterPort, ...]


FAULT_FIELDS = {  # kind -> the fields it needs, beyond ``kind``
    "fdb-remove": ("host", "network", "container"),
    "stale-fdb": ("host", "network", "container", "dst"),
    "wrong-vni": ("host", "network", "vni"),
    "mtu": ("host", "mtu"),
    "ip-forward-off": ("host",),
    "forward-drop": ("host",),
    "udp-drop": ("host",),
    # Docker hosts: faults injected with plain ip/bridge/iptables into what Docker programmed
    "proxy-arp-remove": ("host", "network", "container"),
    "link-down": ("host", "network"),
    "wrong-arp": ("container", "dst"),
    "port-accept-remove": ("host", "container"),
}
DOCKER_FAULTS = ("fdb-remove", "stale-fdb", "proxy-arp-remove", "udp-drop", "link-down", "wrong-arp",
                 "port-accept-remove")  # fmt: skip


@dataclass(frozen=True)
class FaultSpec:
    """A fault injected after the build, through the operations, for an exercise to find."""

    kind: str
    host: str | None = None  # a host or a router
    network: str | None = None
    container: str | None = None
    dst: str | None = None  # stale-fdb: the wrong VTEP; wrong-arp: the container whose ARP entry goes wrong
    vni: int | None = None  # wrong-vni: the VNI the host's VXLAN device gets
    mtu: int | None = None  # mtu: the host's underlay MTU
    device: str = "eth0"  # mtu: which device (link-down: vxlan0 of the network's sandbox)
    port: int = 4789  # udp-drop: which UDP port the host's INPUT drops


@dataclass(frozen=True)
class Attachment:
    network: str
    ip: str | None = None
    mac: str | None = None


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    driver: str
    subnet: str
    gateway: str | None = None
    vni: int | None = None
    mtu: int | None = None
    learning: bool = False
    internal: bool = False
    host: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    sync: bool = False  # overlays: program every host's FDB/ARP after the build (`fdb sync`), as a control plane


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    host: str
    networks: tuple[Attachment, ...] = ()
    mode: str = "bridge"
    ports: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabSpec:
    name: str
    description: str
    hosts: tuple[HostSpec, ...]
    networks: tuple[NetworkSpec, ...] = ()
    containers: tuple[ContainerSpec, ...] = ()
    goal: tuple[tuple[str, str], ...] = ()
    solution: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()  # underlay L2 segments; none declared: one segment ``ul0``
    routers: tuple[RouterSpec, ...] = ()
    faults: tuple[FaultSpec, ...] = ()
    size: int | None = None  # ICMP payload of the reachability pings (DF set); None: ping's default

    def segment_of(self, host: HostSpec) -> str:
        return host.segment or (self.segments[0] if self.segments else "ul0")


class _Locator:
    """Finds the line of ``[[section]]`` number ``index`` and of ``key`` inside it."""

    def __init__(self, text: str, source: str) -> None:
        self.lines = text.splitlines()
        self.source = source

    def error(self, section: str, index: int | None, key: str | None, message: str) -> VxrayError:
        header = re.compile(rf"^\s*\[\[?\s*{re.escape(section)}\s*\]\]?\s*(#.*)?$")
        starts = [i for i, line in enumerate(self.lines) if header.match(line)]
        line = starts[index or 0] if len(starts) > (index or 0) else 0
        if key is not None:
            keyline = re.compile(rf"^\s*{re.escape(key)}\s*=")
            for i in range(line, len(self.lines)):
                if i > line and self.lines[i].lstrip().startswith("["):
                    break
                if keyline.match(self.lines[i]):
                    line = i
                    break
        where = f"{section}[{index}]" if index is not None else section
        return VxrayError(f"{self.source}:{line + 1}: {where}{f'.{key}' if key else ''}: {message}")


def _str(loc: _Locator, table: dict[str, Any], section: str, index: int | None, key: str, required: bool = True,
         default: str | None = None) -> str | None:  # fmt: skip
    value = table.get(key, default)
    if value is None and required:
        raise loc.error(section, index, None, f"missing {key!r}")
    if value is not None and not isinstance(value, str):
        raise loc.error(section, index, key, f"expected a string, got {value!r}")
    return value


def _known(loc: _Locator, table: dict[str, Any], section: str, index: int | None, keys: set[str]) -> None:
    for key in table:
        if key not in keys:
            raise loc.error(section, index, key, f"unknown field (expected one of {', '.join(sorted(keys))})")


def parse(text: str, source: str = "lab.toml") -> LabSpec:
    loc = _Locator(text, source)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise VxrayError(f"{source}: {exc}") from None
    _known(loc, doc, "lab", None, {"lab", "segments", "routers", "hosts", "networks", "containers", "faults",
                                   "exercise"})  # fmt: skip
    lab = doc.get("lab", {})
    _known(loc, lab, "lab", None, {"name", "description"})
    name = validate.name(_str(loc, lab, "lab", None, "name") or "", "lab name")

    segments = []
    for i, seg in enumerate(doc.get("segments", [])):
        _known(loc, seg, "segments", i, {"name"})
        segments.append(validate.ifname(_str(loc, seg, "segments", i, "name")))
    known_segments = set(segments) or {"ul0"}

    routers = []
    for i, r in enumerate(doc.get("routers", [])):
        _known(loc, r, "routers", i, {"name", "interfaces"})
        ports = []
        for port in r.get("interfaces", []):
            if not isinstance(port, dict) or set(port) != {"segment", "address"}:
                raise loc.error("routers", i, "interfaces", f"{port!r}: expected {{ segment = ..., address = ... }}")
            if port["segment"] not in known_segments:
                raise loc.error("routers", i, "interfaces", f"unknown segment {port['segment']!r}")
            ports.append(RouterPort(port["segment"], port["address"]))
        routers.append(RouterSpec(_str(loc, r, "routers", i, "name"), tuple(ports)))

    hosts = []
    for i, h in enumerate(doc.get("hosts", [])):
        _known(loc, h, "hosts", i, {"name", "underlay", "segment", "gateway", "engine"})
        engine = _str(loc, h, "hosts", i, "engine", required=False, default="netns")
        if engine not in ("netns", "docker"):
            raise loc.error("hosts", i, "engine", f"unknown engine {engine!r} (netns or docker)")
        segment = _str(loc, h, "hosts", i, "segment", required=False)
        if segment is not None and segment not in known_segments:
            raise loc.error("hosts", i, "segment", f"unknown segment {segment!r}")
        hosts.append(HostSpec(_str(loc, h, "hosts", i, "name"), _str(loc, h, "hosts", i, "underlay"), segment,
                              _str(loc, h, "hosts", i, "gateway", required=False), engine or "netns"))  # fmt: skip
    if not hosts:
        raise loc.error("lab", None, None, "a lab needs at least one [[hosts]] entry")
    if len({h.engine for h in hosts}) > 1:
        i = next(i for i, h in enumerate(hosts) if h.engine != hosts[0].engine)
        raise loc.error("hosts", i, "engine", "every host of a lab runs the same engine (netns or docker)")
    host_names = {h.name for h in hosts}
    for i, r in enumerate(routers):
        if r.name in host_names:
            raise loc.error("routers", i, "name", f"{r.name!r} is also a host")

    networks = []
    for i, n in enumerate(doc.get("networks", [])):
        _known(loc, n, "networks", i, {"name", "driver", "subnet", "gateway", "vni", "mtu", "learning", "static",
                                       "internal", "host", "options", "sync"})  # fmt: skip
        host = _str(loc, n, "networks", i, "host", required=False)
        if host is not None and host not in host_names:
            raise loc.error("networks", i, "host", f"unknown host {host!r}")
        networks.append(NetworkSpec(
            name=_str(loc, n, "networks", i, "name"), driver=_str(loc, n, "networks", i, "driver", default="bridge"),
            subnet=_str(loc, n, "networks", i, "subnet"), gateway=_str(loc, n, "networks", i, "gateway", False),
            vni=n.get("vni"), mtu=n.get("mtu"), learning=bool(n.get("learning", False)),
            internal=bool(n.get("internal", False)), host=host, options=dict(n.get("options", {})),
            sync=bool(n.get("sync", False)),
        ))  # fmt: skip
    net_names = {n.name for n in networks}

    containers = []
    for i, c in enumerate(doc.get("containers", [])):
        _known(loc, c, "containers", i, {"name", "host", "networks", "mode", "ports"})
        host = _str(loc, c, "containers", i, "host")
        if host not in host_names:
            raise loc.error("containers", i, "host", f"unknown host {host!r}")
        attachments = []
        for a in c.get("networks", []):
            if not isinstance(a, dict) or a.get("network") not in net_names:
                raise loc.error("containers", i, "networks", f"unknown network in {a!r}")
            attachments.append(Attachment(a["network"], a.get("ip"), a.get("mac")))
        containers.append(ContainerSpec(_str(loc, c, "containers", i, "name"), host, tuple(attachments),
                                        c.get("mode", "bridge"), tuple(c.get("ports", []))))  # fmt: skip
    ctr_names = {c.name for c in containers}

    faults = [_fault(loc, i, f, host_names | {r.name for r in routers}, net_names, ctr_names)
              for i, f in enumerate(doc.get("faults", []))]  # fmt: skip

    exercise = doc.get("exercise", {})
    _known(loc, exercise, "exercise", None, {"goal", "solution", "size"})
    size = exercise.get("size")
    if size is not None and not (isinstance(size, int) and 0 <= size <= 65507):
        raise loc.error("exercise", None, "size", f"{size!r}: an ICMP payload size in bytes (0-65507)")
    goal = []
    for pair in exercise.get("goal", []):
        src, arrow, dst = str(pair).partition("->")
        src, dst = src.strip(), dst.strip()
        if not arrow or src not in ctr_names or dst not in ctr_names:
            raise loc.error("exercise", None, "goal", f"{pair!r}: expected 'CONTAINER -> CONTAINER' of this lab")
        goal.append((src, dst))
    return LabSpec(name, lab.get("description", ""), tuple(hosts), tuple(networks), tuple(containers), tuple(goal),
                   tuple(exercise.get("solution", [])), tuple(segments), tuple(routers), tuple(faults),
                   size)  # fmt: skip


def _fault(loc: _Locator, i: int, f: dict[str, Any], machines: set[str], nets: set[str], ctrs: set[str]) -> FaultSpec:
    _known(loc, f, "faults", i, {"kind", "host", "network", "container", "dst", "vni", "mtu", "device", "port"})
    kind = _str(loc, f, "faults", i, "kind")
    if kind not in FAULT_FIELDS:
        raise loc.error("faults", i, "kind", f"unknown fault {kind!r} (one of {', '.join(FAULT_FIELDS)})")
    for key in FAULT_FIELDS[kind]:
        if key not in f:
            raise loc.error("faults", i, None, f"fault {kind} needs {key!r}")
    for key, known in (("host", machines), ("network", nets), ("container", ctrs)):
        if key in f and f[key] not in known:
            raise loc.error("faults", i, key, f"unknown {key} {f[key]!r}")
    if kind == "wrong-arp" and f["dst"] not in ctrs:
        raise loc.error("faults", i, "dst", f"unknown container {f['dst']!r}")
    for key in ("vni", "mtu", "port"):
        if key in f and not isinstance(f[key], int):
            raise loc.error("faults", i, key, f"expected a number, got {f[key]!r}")
    return FaultSpec(**f)


def _toml(value: Any) -> str:
    """One TOML value: the few kinds a topology file holds."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items() if v is not None) + " }"
    return "[" + ", ".join(_toml(v) for v in value) + "]"


def _table(header: str, fields: dict[str, Any]) -> list[str]:
    return [header, *(f"{k} = {_toml(v)}" for k, v in fields.items() if v not in (None, {}, (), [], False)), ""]


def dump(spec: LabSpec) -> str:
    """The topology file of ``spec``; ``parse(dump(s)) == s``."""
    lines = _table("[lab]", {"name": spec.name, "description": spec.description})
    for seg in spec.segments:
        lines += _table("[[segments]]", {"name": seg})
    for r in spec.routers:
        ports = [{"segment": p.segment, "address": p.address} for p in r.interfaces]
        lines += _table("[[routers]]", {"name": r.name, "interfaces": ports})
    for h in spec.hosts:
        engine = h.engine if h.engine != "netns" else None
        lines += _table("[[hosts]]", {"name": h.name, "underlay": h.underlay, "segment": h.segment,
                                      "gateway": h.gateway, "engine": engine})  # fmt: skip
    for n in spec.networks:
        lines += _table("[[networks]]", {
            "name": n.name, "driver": n.driver, "subnet": n.subnet, "gateway": n.gateway, "vni": n.vni,
            "mtu": n.mtu, "learning": n.learning, "internal": n.internal, "host": n.host, "options": n.options,
            "sync": n.sync,
        })  # fmt: skip
    for c in spec.containers:
        nets = [{"network": a.network, "ip": a.ip, "mac": a.mac} for a in c.networks]
        mode = c.mode if c.mode != "bridge" else None
        lines += _table("[[containers]]", {"name": c.name, "host": c.host, "networks": nets, "mode": mode,
                                            "ports": list(c.ports)})  # fmt: skip
    for f in spec.faults:
        defaults = FaultSpec(f.kind)
        lines += _table("[[faults]]", {k: v for k, v in asdict(f).items() if k == "kind" or v != getattr(defaults, k)})
    if spec.goal or spec.solution or spec.size is not None:
        lines += _table("[exercise]", {"goal": [f"{a} -> {b}" for a, b in spec.goal], "solution": list(spec.solution),
                                       "size": spec.size})  # fmt: skip
    return "\n".join(lines)
