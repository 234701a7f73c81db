"""Snapshot speed on the scale workload, against shelling out to iproute2 in the same run.

Workload: one host namespace with a bridge and a VXLAN device holding 10,000 static
FDB entries, 10,000 permanent neighbours, 200 container namespaces each with a
veth into the bridge, and 2,000 DNAT rules written through iptables-nft.

Baseline: what a script would run to see the same: per namespace ``ip -j`` link,
addr, route, neigh and ``bridge -j fdb show``, plus ``iptables-save`` in the host
namespace (outputs captured, not even parsed, so the baseline is a lower bound).

Prints both medians, their ratio (target <= 0.5) and the snapshot's peak memory.
Everything lives in ``vxbench<pid>-*`` namespaces, removed at the end.

    python benchmarks/snapshot.py [--containers 200] [--entries 10000] [--rules 2000] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from backend.collect import collect
from backend.netns import Scope
from benchmarks.workload import median, run

PREFIX = f"vxbench{os.getpid()}-"
HOST = f"{PREFIX}host"


def build(containers: int, entries: int, rules: int) -> list[str]:
    """Create the workload; returns every namespace name (host first)."""
    names = [HOST] + [f"{PREFIX}c{i}" for i in range(containers)]
    run("ip", "-batch", "-", stdin="".join(f"netns add {n}\n" for n in names))
    host = [
        "link set lo up",
        "link add br0 type bridge",
        "addr add 10.200.0.1/16 dev br0",
        "link set br0 up",
        "link add vxlan0 type vxlan id 42 dstport 4789 local 10.200.0.1 nolearning proxy l2miss l3miss",
        "link set vxlan0 master br0",
        "link set vxlan0 up",
    ]
    for i in range(containers):
        host += [f"link add vh{i} type veth peer name eth0 netns {names[i + 1]}", f"link set vh{i} master br0 up"]
    for i in range(entries):
        a, b = divmod(i, 250)
        host.append(f"neigh add 10.200.{a + 1}.{b + 1} lladdr 02:00:00:00:{a:02x}:{b:02x} dev br0 nud permanent")
    run("ip", "-n", HOST, "-batch", "-", stdin="\n".join(host) + "\n")
    fdb = "".join(
        f"fdb add 02:01:00:00:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x} dev vxlan0 dst 192.0.2.{i % 250 + 1} self permanent\n"
        for i in range(entries)
    )
    run("bridge", "-n", HOST, "-batch", "-", stdin=fdb)
    for i, ns in enumerate(names[1:]):
        a, b = divmod(i, 250)
        run("ip", "-n", ns, "-batch", "-", stdin=f"link set lo up\nlink set eth0 up\n"
            f"addr add 10.200.{200 + a}.{b + 2}/16 dev eth0\nroute add default via 10.200.0.1\n")  # fmt: skip
    nat = ["*nat", ":DOCKER - [0:0]", "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER"]
    nat += [
        f"-A DOCKER ! -i br0 -p tcp -m tcp --dport {10000 + i} -j DNAT --to-destination 10.200.200.{i % 200 + 2}:80"
        for i in range(rules)
    ]
    run("nsenter", f"--net=/run/netns/{HOST}", "iptables-nft-restore", stdin="\n".join([*nat, "COMMIT", ""]))
    return names


def teardown() -> None:
    names = [n for n in os.listdir("/run/netns") if n.startswith(PREFIX)] if os.path.isdir("/run/netns") else []
    if names:
        subprocess.run(["ip", "-batch", "-"], input="".join(f"netns del {n}\n" for n in names), text=True)


def baseline(names: list[str]) -> None:
    for ns in names:
        for obj in ("link", "addr", "route", "neigh"):
            subprocess.run(["ip", "-j", "-n", ns, obj, "show"], capture_output=True, check=True)
        subprocess.run(["bridge", "-j", "-n", ns, "fdb", "show"], capture_output=True, check=True)
    subprocess.run(["nsenter", f"--net=/run/netns/{HOST}", "iptables-save"], capture_output=True, check=True)


def vxray() -> None:
    snap = collect(Scope(host_netns=HOST, netns=(f"{PREFIX}c*",)), docker="none")
    assert len(snap.namespaces) > 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--containers", type=int, default=200)
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--rules", type=int, default=2_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    try:
        t = time.perf_counter()
        names = build(args.containers, args.entries, args.rules)
        print(f"workload: {len(names)} namespaces, {args.entries} FDB + {args.entries} neighbours, "
              f"{args.rules} DNAT rules (built in {time.perf_counter() - t:.1f} s)")  # fmt: skip
        vxray()  # warm-up: imports, page cache
        base = median(lambda: baseline(names), args.runs)
        ours = median(vxray, args.runs)
        tracemalloc.start()
        vxray()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"iproute2 baseline : {base * 1000:8.1f} ms  (median of {args.runs})")
        print(f"vxray snapshot    : {ours * 1000:8.1f} ms  (median of {args.runs})")
        print(f"ratio             : {ours / base:8.2f}  (target <= 0.50)")
        print(f"snapshot peak mem : {peak / 2**20:8.1f} MiB  (Python heap, tracemalloc)")
    finally:
        teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
