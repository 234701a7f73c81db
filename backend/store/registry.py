"""Networks, hosts, containers, endpoints and allocations over any ``KV``.

Records are JSON under ``hosts/``, ``networks/``, ``containers/`` and
``endpoints/<network>/<container>``. Everything that must be unique across the
cluster — names, VNIs, IPs, non-overlapping subnets — is claimed with a
check-and-set write, so two hosts creating at once never both get it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import SplitResult

from backend import env, urls
from backend.codec import decode, encode
from backend.errors import VxrayError
from backend.records import AgentRecord, ContainerRecord, Endpoint, HostRecord, NetworkRecord
from backend.store.consul_kv import ConsulKV
from backend.store.embedded import EmbeddedKV
from backend.store.etcd_kv import EtcdKV, Tls
from backend.store.kv import KV

R = TypeVar("R", HostRecord, NetworkRecord, ContainerRecord, Endpoint)
DEFAULT_PATH = "/var/lib/vxray/store.db"
FIRST_VNI = 256  # Docker's overlay driver starts here too
SUBNETS = "alloc/subnets"
NAMES = "alloc/names/networks"  # a network's name, reserved before its first claim


@dataclass(frozen=True)
class StoreURL:
    """A store URL's parts, checked: a file's absolute path, or a consul agent or etcd members and the key prefix
    under it."""

    url: str
    scheme: str  # file | consul | etcd
    path: str = ""
    host: str = ""
    port: int = 8500
    prefix: str = "vxray"
    endpoints: tuple[tuple[str, int], ...] = ()  # etcd: every member named, tried in turn
    user: str = ""  # etcd's auth user; the password comes from --store-token or $ETCDCTL_PASSWORD
    tls: Tls = field(default_factory=Tls)


_PREFIX = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
ETCD_PORT = 2379
TLS_OPTIONS = ("cacert", "cert", "key")  # etcdctl's flag names


def parse_url(url: str, source: str = "") -> StoreURL:
    """``file:///PATH`` or ``consul://HOST[:PORT][/prefix]``, every part checked before anything is opened;
    ``source`` (``$VXRAY_STORE``, an inventory) is named in the error with the URL."""

    def bad(why: str) -> VxrayError:
        return VxrayError(f"invalid store URL {url!r}{f' ({source})' if source else ''}: {why}")

    parts = urls.split(url, bad)
    if parts.scheme == "file":
        if parts.netloc or not parts.path.startswith("/"):
            raise bad("file:// takes an absolute path (file:///var/lib/vxray/store.db)")
        urls.options(parts, (), (), bad)
        return StoreURL(url, "file", path=parts.path)
    if parts.scheme == "etcd":
        return _etcd_url(url, parts, bad)
    if parts.scheme != "consul":
        raise bad("expected file:///PATH, consul://HOST[:PORT][/prefix] or etcd://HOST[:PORT][,HOST[:PORT]…][/prefix]")
    if parts.username is not None:
        raise bad("consul:// takes no user or password: the ACL token comes from --store-token or $CONSUL_HTTP_TOKEN")
    host, port = urls.host(parts, bad), urls.port(parts, bad) or 8500
    urls.options(parts, (), (), bad)
    return StoreURL(url, "consul", host=host, port=port, prefix=_prefix(parts, bad))


def _prefix(parts: SplitResult, bad: urls.Bad) -> str:
    prefix = parts.path.strip("/") or "vxray"
    if not _PREFIX.match(prefix) or {".", ".."} & set(prefix.split("/")):
        raise bad(f"invalid key prefix {parts.path!r}: words of letters, digits, '_', '.', '-' between '/'")
    return prefix


def _etcd_url(url: str, parts: SplitResult, bad: urls.Bad) -> StoreURL:
    """``etcd://[USER@]HOST[:PORT][,HOST[:PORT]…][/prefix][?cacert=PATH&cert=PATH&key=PATH]``: each member as
    ``-H`` checks a host, the user as ssh's, TLS files as absolute paths (a CA makes it https)."""
    _, at, hosts = parts.netloc.rpartition("@")
    if parts.password is not None:
        raise bad("a password does not belong in the URL: give it with --store-token or $ETCDCTL_PASSWORD")
    user = urls.user(parts, bad) if at else ""
    endpoints = []
    for member in hosts.split(","):
        one = urls.split(f"//{member}", bad)
        endpoint = (urls.host(one, bad), urls.port(one, bad) or ETCD_PORT)
        if endpoint in endpoints:
            raise bad(f"the member {member!r} is named twice")
        endpoints.append(endpoint)
    found = urls.options(parts, TLS_OPTIONS, (), bad)
    files = {k: v[0] for k, v in found.items()}
    for name, path in files.items():
        if not path.startswith("/"):
            raise bad(f"the option {name} takes an absolute path, got {path!r}")
    if ("cert" in files) != ("key" in files):
        raise bad("a client certificate needs both cert= and key=")
    if files and "cacert" not in files:
        raise bad("TLS needs cacert= (the CA that signed the members' certificates)")
    return StoreURL(url, "etcd", prefix=_prefix(parts, bad), endpoints=tuple(endpoints), user=user, tls=Tls(**files))


def chosen(url: str | None) -> StoreURL | None:
    """The store asked for, checked: ``url`` (``--store``), else $VXRAY_STORE; None when neither is given
    (then the current lab's store, or the default file)."""
    if url is not None:
        return parse_url(url)
    value = env.text("VXRAY_STORE")
    return parse_url(value, "$VXRAY_STORE") if value is not None else None


def open_store(url: str | None = None, token: str | None = None) -> Registry:
    """``None``: ``$VXRAY_STORE`` or the embedded default; ``file:///path``; ``consul://HOST[:PORT][/prefix]``;
    ``etcd://HOST[:PORT][,…][/prefix]`` (``token``: the etcd user's password)."""
    where = chosen(url)
    if where is None:
        return Registry(EmbeddedKV(DEFAULT_PATH))
    if where.scheme == "etcd":
        return Registry(open_etcd(where, token))
    if where.scheme == "consul":
        token = token or os.environ.get("CONSUL_HTTP_TOKEN")
        return Registry(ConsulKV(where.url, where.host, where.port, where.prefix, token))
    if not os.path.isdir(os.path.dirname(where.path)):  # a typo must not create a tree of directories
        raise VxrayError(f"store {where.url}: the directory {os.path.dirname(where.path)} does not exist")
    return Registry(EmbeddedKV(where.path))


def open_etcd(where: StoreURL, password: str | None) -> EtcdKV:
    """The TLS files must be there before anything is asked; a user needs a password."""
    for name in TLS_OPTIONS:
        path = getattr(where.tls, name)
        if path is not None and not os.path.isfile(path):
            raise VxrayError(f"store {where.url}: the {name} file {path} does not exist")
    password = password or os.environ.get("ETCDCTL_PASSWORD")
    if where.user and not password:
        raise VxrayError(f"store {where.url}: user {where.user} needs a password (--store-token or $ETCDCTL_PASSWORD)")
    return EtcdKV(where.url, where.endpoints, where.prefix, where.tls, where.user or None, password)


class Registry:
    def __init__(self, kv: KV) -> None:
        self.kv = kv
        self._token = secrets.token_hex(8).encode()  # marks the names this registry reserved

    def close(self) -> None:
        self.kv.close()

    # records ---------------------------------------------------------------

    def _get(self, cls: type[R], key: str) -> R | None:
        raw, _ = self.kv.get(key)
        return decode(raw, cls, f"store key {key}") if raw is not None else None

    def _list(self, cls: type[R], prefix: str) -> list[R]:
        return [decode(raw, cls, f"store key {key}") for key, (raw, _) in self.kv.items(prefix).items()]

    def _create(self, key: str, record: Any, what: str) -> None:
        if not self.kv.put(key, encode(record), cas=0):
            raise VxrayError(f"{what} already exists")

    def _replace(self, key: str, record: Any) -> None:
        self.kv.put(key, encode(record))

    def host(self, name: str) -> HostRecord | None:
        return self._get(HostRecord, f"hosts/{name}")

    def hosts(self) -> list[HostRecord]:
        return self._list(HostRecord, "hosts/")

    def add_host(self, rec: HostRecord) -> None:
        self._create(f"hosts/{rec.name}", rec, f"host {rec.name}")

    def remove_host(self, name: str) -> None:
        self.kv.delete(f"hosts/{name}")

    def register_agent(self, rec: AgentRecord) -> None:
        """An agent says where it is reachable (overwrites its earlier word)."""
        self._replace(f"agents/{rec.name}", rec)

    def agents(self) -> list[AgentRecord]:
        return self._list(AgentRecord, "agents/")

    def network(self, name: str) -> NetworkRecord | None:
        return self._get(NetworkRecord, f"networks/{name}")

    def networks(self) -> list[NetworkRecord]:
        return self._list(NetworkRecord, "networks/")

    def add_network(self, rec: NetworkRecord) -> None:
        self._create(f"networks/{rec.name}", rec, f"network {rec.name}")

    def update_network(self, rec: NetworkRecord) -> None:
        self._replace(f"networks/{rec.name}", rec)

    def remove_network(self, name: str) -> None:
        self.kv.delete(f"networks/{name}")
        self.kv.delete(f"{NAMES}/{name}")

    def container(self, name: str) -> ContainerRecord | None:
        return self._get(ContainerRecord, f"containers/{name}")

    def containers(self) -> list[ContainerRecord]:
        return self._list(ContainerRecord, "containers/")

    def add_container(self, rec: ContainerRecord) -> None:
        self._create(f"containers/{rec.name}", rec, f"container {rec.name}")

    def update_container(self, rec: ContainerRecord) -> None:
        self._replace(f"containers/{rec.name}", rec)

    def remove_container(self, name: str) -> None:
        self.kv.delete(f"containers/{name}")

    def endpoints(self, network: str | None = None) -> list[Endpoint]:
        return self._list(Endpoint, f"endpoints/{network}/" if network else "endpoints/")

    def add_endpoint(self, ep: Endpoint) -> None:
        self._create(f"endpoints/{ep.network}/{ep.container}", ep, f"{ep.container} on network {ep.network}")

    def remove_endpoint(self, network: str, container: str) -> None:
        self.kv.delete(f"endpoints/{network}/{container}")

    # allocations -------------------------------------------------------------

    def claim_vni(self, wanted: int | None, network: str) -> int:
        """Claim ``wanted`` or the lowest free VNI from 256."""
        if wanted is not None:
            if not self.kv.put(f"alloc/vni/{wanted}", network.encode(), cas=0):
                owner, _ = self.kv.get(f"alloc/vni/{wanted}")
                raise VxrayError(f"VNI {wanted} is already used by network {(owner or b'?').decode()}")
            return wanted
        taken = {int(k.rsplit("/", 1)[1]) for k in self.kv.items("alloc/vni/")}
        vni = FIRST_VNI
        while True:
            if vni not in taken and self.kv.put(f"alloc/vni/{vni}", network.encode(), cas=0):
                return vni
            vni += 1

    def release_vni(self, vni: int) -> None:
        self.kv.delete(f"alloc/vni/{vni}")

    def claim_subnet(self, subnet: ipaddress.IPv4Network | ipaddress.IPv6Network, network: str, scope: str) -> None:
        """Record ``subnet`` unless it overlaps one in the same scope (a host, or ``overlay``).

        Overlays span every host, so they conflict with everything; two hosts'
        bridges may reuse a range, as two Docker hosts' docker0 do. A dual-stack
        network claims each of its subnets; only subnets of one family can overlap.
        The network's name is reserved first: two hosts creating the same name at once
        both pass the "exists?" check, and the loser must fail here, before it claims
        anything its roll-back would release by name — the winner's subnets and addresses.
        """
        fresh = self._reserve(network)
        while True:
            raw, index = self.kv.get(SUBNETS)
            claimed: list[dict[str, str]] = json.loads(raw) if raw else []
            for c in claimed:
                other = ipaddress.ip_network(c["subnet"])
                if (
                    (c["scope"] == scope or "overlay" in (c["scope"], scope))
                    and other.version == subnet.version
                    and subnet.overlaps(other)
                ):
                    if fresh:  # nothing was claimed for it: the name goes back now, whatever the caller undoes
                        self.kv.delete(f"{NAMES}/{network}", cas=fresh)
                    raise VxrayError(f"subnet {subnet} overlaps {c['subnet']} of network {c['network']}")
            claimed.append({"subnet": str(subnet), "network": network, "scope": scope})
            if self.kv.put(SUBNETS, json.dumps(claimed).encode(), cas=index):
                return

    def _reserve(self, network: str) -> int:
        """The name for this registry, or "already exists"; the reservation's index when this call made it (0: it
        was this registry's already, for a dual-stack network's next subnet)."""
        key = f"{NAMES}/{network}"
        if self.kv.put(key, self._token, cas=0):
            return self.kv.get(key)[1]
        if self.kv.get(key)[0] != self._token:
            raise VxrayError(f"network {network} already exists")
        return 0

    def release_subnet(self, network: str) -> None:
        """The network's subnets, then its name."""
        while True:
            raw, index = self.kv.get(SUBNETS)
            claimed = [c for c in json.loads(raw or b"[]") if c["network"] != network]
            if self.kv.put(SUBNETS, json.dumps(claimed).encode(), cas=index):
                break
        self.kv.delete(f"{NAMES}/{network}")

    def claim_ip(self, net: NetworkRecord, owner: str, wanted: str | None = None) -> str:
        """Claim ``wanted`` or the first free address of the network's subnet (IPv4, or the IPv6 subnet a
        dual-stack attachment passes as ``net.subnet``)."""
        prefix = f"alloc/ip/{net.name}/"
        if wanted is not None:
            if not self.kv.put(prefix + wanted, owner.encode(), cas=0):
                holder, _ = self.kv.get(prefix + wanted)
                raise VxrayError(f"IP {wanted} is already taken on network {net.name} by {(holder or b'?').decode()}")
            return wanted
        taken = {k[len(prefix) :] for k in self.kv.items(prefix)}
        for host in ipaddress.ip_network(net.subnet).hosts():
            ip = str(host)
            if ip not in taken and self.kv.put(prefix + ip, owner.encode(), cas=0):
                return ip
        raise VxrayError(f"network {net.name} has no free address left in {net.subnet}")

    def release_ip(self, network: str, ip: str) -> None:
        self.kv.delete(f"alloc/ip/{network}/{ip}")

    def release_all_ips(self, network: str) -> None:
        for key in self.kv.items(f"alloc/ip/{network}/"):
            self.kv.delete(key)
