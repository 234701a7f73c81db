"""flannel's own keys in etcd, read as the desired state of a flannel network.

flanneld keeps its network in etcd under a prefix (``--etcd-prefix``, default
``/coreos.com/network``): ``config`` holds the network
(``{"Network": "10.5.0.0/16", "SubnetLen": 24, "Backend": {"Type": "vxlan", "VNI": 1}}``) and each node
leases a subnet, ``subnets/10.5.52.0-24`` =
``{"PublicIP": "192.168.64.3", "BackendType": "vxlan", "BackendData": {"VNI": 1, "VtepMAC": "c6:d2:…"}}``,
attached to an etcd lease of 24 h that the node renews. Every other node's
flanneld programs, from that lease, a route to the subnet via its network address
(onlink, on ``flannel.<VNI>``), a permanent ARP entry giving that address the
VtepMAC, and an FDB entry sending the MAC to the PublicIP. These are flannel's
documented formats (its ``reservations.md``); a lease is a stranger's data, so
every field is checked, and one that does not decode is a note, never a crash.

The data here is pure (``diagnostics`` reads it); only ``read`` talks to etcd.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from backend import validate
from backend.errors import VxrayError

DEFAULT_PREFIX = "coreos.com/network"
VXLAN_PORT = 8472  # flannel's default for its vxlan backend (the kernel's old default)


@dataclass(frozen=True)
class Lease:
    """One node's lease: its subnet, the address its VXLAN packets come from, the MAC of its ``flannel.<VNI>``."""

    subnet: str
    public_ip: str
    vtep_mac: str | None
    key: str  # the etcd key, as evidence and for the fix that removes it


@dataclass(frozen=True)
class Layout:
    """A flannel network as flannel keeps it in etcd, for vxray's network ``network``."""

    network: str
    url: str  # where it was read: ``etcd://…/coreos.com/network``
    subnet: str
    vni: int
    port: int
    leases: tuple[Lease, ...] = ()
    notes: tuple[str, ...] = ()  # keys that did not decode
    etcdctl: tuple[str, ...] = ()  # etcdctl's argv up to its command, for the fixes that change a lease

    @property
    def device(self) -> str:
        return f"flannel.{self.vni}"


def check_url(url: str) -> str:
    """A flannel network's ``-o etcd=`` option: an etcd URL whose path is flannel's prefix (default
    ``/coreos.com/network``)."""
    from backend.store.registry import parse_url

    where = parse_url(url, "the option etcd")
    if where.scheme != "etcd":
        raise VxrayError(f"invalid option etcd={url!r}: flannel keeps its leases in etcd (etcd://HOST:2379/PREFIX)")
    return url


def parse(network: str, url: str, prefix: str, keys: dict[str, bytes]) -> Layout:
    """``keys`` (etcd key -> value, everything under ``/PREFIX/``) decoded; the config must be there and sound."""
    root = f"/{prefix}/"
    raw = keys.get(f"{root}config")
    if raw is None:
        raise VxrayError(f"flannel network {network}: no {root}config in {url} (is flannel's prefix right?)")
    try:
        config = json.loads(raw)
        subnet = str(validate.cidr(config["Network"]))
        backend = config.get("Backend") or {}
        kind = backend.get("Type", "udp")
        vni, port = int(backend.get("VNI", 1)), int(backend.get("Port", VXLAN_PORT))
    except (ValueError, KeyError, TypeError, AttributeError, VxrayError) as exc:
        raise VxrayError(f"flannel network {network}: {root}config in {url} does not decode: {exc}") from None
    if kind != "vxlan":
        raise VxrayError(f"flannel network {network}: {root}config in {url} uses backend {kind!r}, not vxlan")
    leases, notes = [], []
    for key, value in sorted(keys.items()):
        if key.startswith(f"{root}subnets/"):
            try:
                leases.append(_lease(key, value, ipaddress.IPv4Network(subnet)))
            except (ValueError, KeyError, TypeError, AttributeError, VxrayError) as exc:
                notes.append(f"flannel lease {key} does not decode: {exc}")
    return Layout(network, url, subnet, vni, port, tuple(leases), tuple(notes))


def _lease(key: str, value: bytes, network: ipaddress.IPv4Network) -> Lease:
    """``subnets/10.5.52.0-24`` = ``{"PublicIP": …, "BackendType": "vxlan", "BackendData": {"VtepMAC": …}}``."""
    cidr = key.rsplit("/", 1)[1].replace("-", "/")
    subnet = validate.cidr(cidr)
    if not subnet.subnet_of(network):
        raise VxrayError(f"{subnet} is not inside the network {network}")
    body = json.loads(value)
    public = validate.ipv4(body["PublicIP"])
    if body.get("BackendType", "vxlan") != "vxlan":
        raise VxrayError(f"backend {body.get('BackendType')!r}, not vxlan")
    mac = (body.get("BackendData") or {}).get("VtepMAC")
    return Lease(str(subnet), public, validate.mac(mac) if mac else None, key)


def read(network: str, url: str) -> Layout:
    """flannel's keys for ``network`` from the etcd at ``url`` (linearizable, as the store reads)."""
    from backend.store.registry import open_etcd, parse_url

    where = parse_url(check_url(url), f"flannel network {network}")
    prefix = urlsplit(url).path.strip("/") or DEFAULT_PREFIX  # etcd:// alone: flannel's default, not vxray's
    kv = open_etcd(where, None)
    try:
        found = parse(network, url, prefix, kv.raw(f"/{prefix}/"))
    finally:
        kv.close()
    scheme = "https" if where.tls.cacert else "http"
    endpoints = ",".join(f"{scheme}://{f'[{h}]' if ':' in h else h}:{p}" for h, p in where.endpoints)
    tls = [f"--{name}={path}" for name in ("cacert", "cert", "key") if (path := getattr(where.tls, name))]
    user = [f"--user={where.user}"] if where.user else []  # etcdctl asks for the password itself
    return replace(found, etcdctl=("etcdctl", f"--endpoints={endpoints}", *tls, *user))
