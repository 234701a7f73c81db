"""vxray's claims on a real three-member etcd cluster while members die and are cut off.

Two hosts (namespaces on the cluster's underlay) create networks, containers and
raw claims at once — from threads of this process and from ``vxray`` processes —
while the leader is SIGKILLed and restarted; a member is partitioned (its
underlay link down); quorum is lost (two members killed). Afterwards the store
and the kernel are audited: every operation either completed with its record or
failed with nothing of it left, and no name, VNI, subnet or IP was handed out
twice. The figures go to the run's summary (``conftest.ETCD_FAULTS``).
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from etcd_cluster import EtcdCluster, have_etcd

from backend import nsenter
from backend.errors import VxrayError
from backend.ops import containers, hostops, networks
from backend.ops.context import Context
from backend.store.registry import Registry, open_store

from conftest import ETCD_FAULTS, Lab

VXRAY = [sys.executable, "-m", "tui.cli"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not have_etcd(), reason="needs root and /usr/bin/etcd")


@dataclass
class Outcome:
    kind: str  # network | container | vni | ip
    name: str
    host: str
    ok: bool
    value: object = None
    error: str = ""


@pytest.fixture
def cluster(lab: Lab) -> Iterator[EtcdCluster]:
    c = EtcdCluster(lab).start()
    with nsenter.named(c.ul):  # this thread and those it starts talk to the cluster from its client namespace
        yield c


def _hosts(lab: Lab, c: EtcdCluster, ctx: Context) -> dict[str, str]:
    """h1, h2: namespaces on the cluster's underlay, registered as vxray hosts; their namespaces by name."""
    found = {}
    for i in (1, 2):
        ns = lab.netns(f"h{i}")
        lab.veth(ns, "eth0", c.ul, f"h{i}")
        lab.ip(c.ul, "link", "set", f"h{i}", "master", "br0")
        lab.ip(ns, "addr", "add", f"10.250.0.{20 + i}/24", "dev", "eth0")
        hostops.add(ctx, f"h{i}", ns, f"10.250.0.{20 + i}")
        found[f"h{i}"] = ns
    return found


def _cli(c: EtcdCluster, url: str, *words: str, ns: str | None = None) -> subprocess.CompletedProcess[str]:
    """``vxray`` as an operator runs it, from the cluster's client namespace (or ``ns``)."""
    argv = ["ip", "netns", "exec", ns or c.ul, *VXRAY, "--store", url, *words]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)


def _tally(outcomes: list[Outcome], duplicates: list[str], leftovers: list[str]) -> None:
    ETCD_FAULTS["tried"] += len(outcomes)
    ETCD_FAULTS["completed"] += sum(o.ok for o in outcomes)
    ETCD_FAULTS["rolled back"] += sum(not o.ok for o in outcomes)
    ETCD_FAULTS["duplicates"] += len(duplicates)
    ETCD_FAULTS["leftovers"] += len(leftovers)


def _audit(store: Registry, outcomes: list[Outcome], host_ns: dict[str, str]) -> tuple[list[str], list[str]]:
    """Duplicates (a value handed out twice) and leftovers (a failed operation's trace, a success without its
    record, a claim nobody owns), read from the store and the kernel."""
    nets = {n.name: n for n in store.networks()}
    ctrs = {c.name: c for c in store.containers()}
    eps = store.endpoints()
    alloc = store.kv.items("alloc/")
    raw_vnis = {o.value for o in outcomes if o.kind == "vni" and o.ok}
    raw_ips = {o.value: o.name for o in outcomes if o.kind == "ip" and o.ok}
    dup: list[str] = []
    for name, n in Counter(o.name for o in outcomes if o.kind == "network" and o.ok).items():
        if n > 1:
            dup.append(f"network name {name} created {n} times")
    vnis = Counter([n.vni for n in nets.values() if n.vni] + [o.value for o in outcomes if o.kind == "vni" and o.ok])
    dup += [f"VNI {v} given {n} times" for v, n in vnis.items() if n > 1]
    overlays = [(n.name, ipaddress.IPv4Network(n.subnet)) for n in nets.values() if n.driver == "overlay"]
    dup += [f"subnets of {a} and {b} overlap" for i, (a, x) in enumerate(overlays) for b, y in overlays[i + 1 :]
            if x.overlaps(y)]  # fmt: skip
    ips = Counter([(e.network, e.ip) for e in eps] + [("ov", o.value) for o in outcomes if o.kind == "ip" and o.ok])
    dup += [f"IP {ip} on {net} given {n} times" for (net, ip), n in ips.items() if n > 1]

    left: list[str] = []
    for o in outcomes:
        if o.kind == "network" and o.ok and o.name not in nets:
            left.append(f"network {o.name} created but has no record")
        if o.kind == "container":
            ns = f"{host_ns[o.host]}-{o.name}"
            there = os.path.exists(f"/run/netns/{ns}")
            if o.ok and (o.name not in ctrs or not there or not any(e.container == o.name for e in eps)):
                left.append(f"container {o.name} created but its record, endpoint or namespace is missing")
            if not o.ok and (o.name not in ctrs) and there:
                left.append(f"failed container {o.name} left its namespace {ns}")
    for key, (value, _) in alloc.items():
        owner = value.decode()
        if key.startswith("alloc/vni/"):
            vni = int(key.rsplit("/", 1)[1])
            if not (owner in nets and nets[owner].vni == vni) and vni not in raw_vnis:
                left.append(f"{key} held by {owner}, which has no network with that VNI")
        elif key.startswith("alloc/ip/"):
            net, ip = key.split("/")[2:4]
            held = owner == "gateway" or any(e.network == net and e.ip == ip and e.container == owner for e in eps)
            if net not in nets or not (held or raw_ips.get(ip) == owner):
                left.append(f"{key} held by {owner}, which has no endpoint there")
        elif key.startswith("alloc/names/networks/") and key.rsplit("/", 1)[1] not in nets:
            left.append(f"{key} reserved for a network that does not exist")
    for claim in __import__("json").loads(alloc.get("alloc/subnets", (b"[]", 0))[0]):
        if claim["network"] not in nets:
            left.append(f"subnet {claim['subnet']} claimed for {claim['network']}, which does not exist")
    for e in eps:
        if e.container not in ctrs:
            left.append(f"endpoint of {e.container} on {e.network} without its container")
    for host, ns in host_ns.items():  # a container's namespace nobody knows
        known = {c.netns for c in ctrs.values()}
        for name in os.listdir("/run/netns"):
            if name.startswith(f"{ns}-c") and name not in known:
                left.append(f"namespace {name} on {host} belongs to no container")
    return dup, left


def _run(
    outcomes: list[Outcome], lock: threading.Lock, kind: str, name: str, host: str, fn: Callable[[], object]
) -> None:
    try:
        value = fn()
    except VxrayError as exc:
        out = Outcome(kind, name, host, False, error=str(exc))
    else:
        out = Outcome(kind, name, host, True, value)
    with lock:
        outcomes.append(out)


def test_concurrent_creates_survive_the_leader_killed_and_restarted(lab: Lab, cluster: EtcdCluster) -> None:
    url = cluster.url("faults")
    ctx = Context(open_store(url))
    host_ns = _hosts(lab, cluster, ctx)
    networks.create(ctx, "ov", "overlay", "10.60.0.0/24")
    ov = ctx.store.network("ov")
    assert ov is not None
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    rounds = 4

    def host_worker(host: str) -> None:
        """One host's operations, in turn: two other hosts' threads race it for the same names and values."""
        mine = Context(open_store(url))
        try:
            for k in range(rounds):
                _run(outcomes, lock, "network", f"n{k}", host,  # both hosts create n<k>: one wins
                     lambda k=k: networks.create(mine, f"n{k}", "overlay", f"10.{100 + k}.0.0/24"))  # fmt: skip
                _run(outcomes, lock, "network", f"s{host}-{k}", host,  # distinct names, the same subnet
                     lambda k=k: networks.create(mine, f"s{host}-{k}", "overlay", f"10.{150 + k}.0.0/24"))  # fmt: skip
                _run(outcomes, lock, "container", f"c{host}-{k}", host,
                     lambda k=k: containers.run(mine, f"c{host}-{k}", host, "ov"))  # fmt: skip
                _run(
                    outcomes, lock, "vni", f"v{host}-{k}", host, lambda k=k: mine.store.claim_vni(None, f"v{host}-{k}")
                )
                _run(outcomes, lock, "ip", f"r{host}-{k}", host, lambda k=k: mine.store.claim_ip(ov, f"r{host}-{k}"))
        finally:
            mine.store.close()

    def process_worker(host: str, j: int) -> None:
        """The same through ``vxray`` processes: a network and a container each."""
        for kind, name, words in (("network", f"p{host}-{j}", ("network", "create", "-d", "overlay", f"p{host}-{j}",
                                                                "--subnet", f"10.{200 + j}.0.0/24")),
                                  ("container", f"cp{host}-{j}", ("container", "run", f"cp{host}-{j}", "--host",
                                                                  host, "--net", "ov"))):  # fmt: skip
            proc = _cli(cluster, url, *words)
            with lock:
                outcomes.append(Outcome(kind, name, host, proc.returncode == 0, error=proc.stderr.strip()))

    during: list[int] = []

    def killer() -> None:
        while len(outcomes) < 6:
            time.sleep(0.02)
        leader = cluster.leader()
        cluster.kill(leader)
        during.append(len(outcomes))
        time.sleep(1.5)
        cluster.launch(leader)
        during.append(len(outcomes))

    with ThreadPoolExecutor(max_workers=7) as pool:
        jobs = [pool.submit(host_worker, h) for h in ("h1", "h2")]
        jobs += [pool.submit(process_worker, h, j) for h in ("h1", "h2") for j in (0, 1)]
        jobs.append(pool.submit(killer))
        for job in jobs:
            job.result()
    cluster.wait_healthy()

    assert during[0] < len(outcomes) - 10, during  # the kill came while most operations were still to come
    after = Context(open_store(url))  # after the election: everything works again
    for kind, name, fn in (("network", "after", lambda: networks.create(after, "after", "overlay", "10.99.0.0/24")),
                           ("container", "c-after", lambda: containers.run(after, "c-after", "h1", "ov")),
                           ("vni", "v-after", lambda: after.store.claim_vni(None, "v-after"))):  # fmt: skip
        _run(outcomes, lock, kind, name, "h1", fn)
        assert outcomes[-1].ok, outcomes[-1]
    dup, left = _audit(after.store, outcomes, host_ns)
    _tally(outcomes, dup, left)
    assert not dup, dup
    assert not left, left
    print(f"leader killed after {during[0]} operations, restarted after {during[1]}, of {len(outcomes)}")
    assert sum(o.ok for o in outcomes if o.kind == "network" and o.name.startswith("n")) == rounds  # one of two
    assert any(o.ok for o in outcomes if o.kind == "container" and o.name.startswith("cp")), outcomes  # processes too
    errors = [o.error for o in outcomes if not o.ok]
    assert all("already exists" in e or "overlaps" in e or "no quorum" in e for e in errors), errors


def test_a_partitioned_member_never_answers_with_a_stale_success(lab: Lab, cluster: EtcdCluster) -> None:
    url = cluster.url("part")
    ctx = Context(open_store(url))
    _hosts(lab, cluster, ctx)
    networks.create(ctx, "before", "overlay", "10.61.0.0/24")
    leader = cluster.leader()
    cut = next(m for m in cluster.members if m is not leader)
    cluster.partition(cut)
    outcomes: list[Outcome] = []

    # a client that can reach only the cut-off member (it runs beside it): a write is a clear error, no change
    alone = cluster.url("part", cut)
    proc = _cli(cluster, alone, "network", "create", "-d", "overlay", "during", "--subnet", "10.62.0.0/24", ns=cut.ns)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"vxray: store {alone} has no quorum"), proc.stderr
    outcomes.append(Outcome("network", "during", "h1", False, error=proc.stderr))

    # a client with every member named fails over to the two that still make a quorum
    ctx.store.close()
    first = cluster.url("part", cut, *(m for m in cluster.members if m is not cut))
    moved = Context(open_store(first))
    networks.create(moved, "healed", "overlay", "10.63.0.0/24")
    outcomes.append(Outcome("network", "healed", "h1", True))
    assert moved.store.network("during") is None

    # reads on the cut-off member alone: the last state it holds, never passed off as current
    view = _cli(cluster, alone, "network", "ls", ns=cut.ns)
    assert view.returncode == 0 and "before" in view.stdout and "healed" not in view.stdout
    assert "has lost its quorum" in view.stderr and "may be stale" in view.stderr

    cluster.partition(cut, up=True)
    deadline = time.monotonic() + 20
    while True:  # once it is back, a read of that member alone sees every write made without it
        back = _cli(cluster, alone, "network", "ls", ns=cut.ns)
        if ("healed" in back.stdout and not back.stderr) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert "healed" in back.stdout and "before" in back.stdout and not back.stderr, back
    dup, left = _audit(moved.store, outcomes, {})
    _tally(outcomes, dup, left)
    assert not dup and not left, (dup, left)


def test_quorum_lost_refuses_changes_in_one_line_and_views_show_the_last_state(lab: Lab, cluster: EtcdCluster) -> None:
    url = cluster.url("quorum")
    ctx = Context(open_store(url))
    host_ns = _hosts(lab, cluster, ctx)
    networks.create(ctx, "ov", "overlay", "10.64.0.0/24")
    containers.run(ctx, "c1", "h1", "ov")
    before = {k: v for k, v in ctx.store.kv.items("").items()}
    namespaces = sorted(n for n in os.listdir("/run/netns") if n.startswith(lab.prefix))
    survivor = cluster.leader()
    for m in cluster.members:
        if m is not survivor:
            cluster.kill(m)
    outcomes: list[Outcome] = []
    for kind, name, words in (
        ("network", "n2", ("network", "create", "-d", "overlay", "n2", "--subnet", "10.65.0.0/24")),
        ("container", "c2", ("container", "run", "c2", "--host", "h2", "--net", "ov")),
        ("network", "ov", ("network", "rm", "ov", "--force")),
        ("container", "c1", ("container", "rm", "c1")),
    ):
        proc = _cli(cluster, url, *words)
        lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("vxray: note:")]
        assert proc.returncode == 2 and len(lines) == 1 and "has no quorum" in lines[0], proc.stderr
        outcomes.append(Outcome(kind, name, "h1", False, error=lines[0]))
    for words, shown in ((("network", "ls"), "ov"), (("container", "ls"), "c1")):
        view = _cli(cluster, url, *words)
        assert view.returncode == 0 and shown in view.stdout, view
        assert "has lost its quorum" in view.stderr and "may be stale" in view.stderr
    assert (
        sorted(n for n in os.listdir("/run/netns") if n.startswith(lab.prefix)) == namespaces
    )  # the kernel: nothing made, nothing removed
    for m in cluster.members:
        if m is not survivor:
            cluster.launch(m)
    cluster.wait_healthy()
    again = Context(open_store(url))
    assert dict(again.store.kv.items("").items()) == before  # the store: every key as it was, same revisions
    containers.run(again, "c2", "h2", "ov")  # quorum back: changes go through
    outcomes.append(Outcome("container", "c2", "h2", True))
    dup, left = _audit(again.store, outcomes, host_ns)
    _tally(outcomes, dup, left)
    assert not dup and not left, (dup, left)
