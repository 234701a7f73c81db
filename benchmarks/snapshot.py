"""Snapshot speed on the scale workload, as a user runs it, against the iproute2 loop in the same run.

Workload (1x): one host namespace with a bridge and a VXLAN device holding 10,000
static FDB entries, 10,000 permanent neighbours, 200 container namespaces each with
a veth into the bridge, and 2,000 DNAT rules written through iptables-nft.

Whole process, median of ``--runs``, alternating:
- vxray: ``vxray snapshot --json > host.json``, one process;
- baseline: the loop an operator would script, one ``bash`` process — in the host
  namespace ``ip -j link/addr/route/neigh``, ``bridge -j fdb show``, ``iptables-save
  -t nat``; in each container namespace ``ip -j addr/route/neigh`` (outputs written
  to a file, not even parsed, so the baseline is a lower bound).
Target: ratio <= 0.25. Also printed: ``vxray snapshot --load host.json`` as a process
(target <= 0.1 s is for the decode itself, printed in-process), the in-process
figures (collect, encode, decode), the floor (the raw rtnetlink dumps of every
namespace, bytes kept, nothing decoded, timed here) and a scale series at 1x, 2x
and 4x (namespaces, entries and rules) whose time per object must stay flat, with
peak memory per 10,000 entries. The floor itself is not flat: the kernel keeps one
neighbour table for all namespaces and walks all of it for every namespace's dump
(measured here: 64 µs a namespace beside 10,000 entries, 420 µs beside 40,000), so
what vxray adds is printed above the floor as well.

Then (``--nftables``, on by default; ``--nftables-only`` skips the rest) the same DNAT
rules as a native nftables ruleset in a host namespace, once as plain rules and once
as one dnat map: vxray's read of that namespace's nftables (in-process, the nft part
of the read: the netlink table list, ``nft -j`` and ``nft -a`` side by side, the
decoding) against ``nft -j list ruleset`` run as a process in that namespace, median
of ``--runs``. Target: ratio <= 1.

Everything lives in ``vxbench<pid>-*`` namespaces, removed at the end.

    python benchmarks/snapshot.py [--containers 200] [--entries 10000] [--rules 2000] [--runs 5] [--scales 1,2,4]
                                  [--no-nftables | --nftables-only]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from backend import codec, nsenter
from backend.collect import collect
from backend.model import HostSnapshot
from backend.netlink import NLM_F_DUMP, NLM_F_REQUEST, NLMSG, NetlinkSocket
from backend.netns import Scope, discover
from backend.nftables import NftReader, nft_tables
from backend.rtnl import AF_BRIDGE, IFINFOMSG, NDMSG, RTM_GETADDR, RTM_GETLINK, RTM_GETNEIGH, RTM_GETROUTE, RTMSG
from benchmarks.workload import median, need_root, run

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
        host.append(f"neigh add 10.{201 + a // 250}.{a % 250 + 1}.{b + 1} lladdr 02:00:00:{a >> 8:02x}:{a & 0xFF:02x}:"
                    f"{b:02x} dev br0 nud permanent")  # fmt: skip
    run("ip", "-n", HOST, "-batch", "-", stdin="\n".join(host) + "\n")
    fdb = "".join(
        f"fdb add 02:01:00:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x} dev vxlan0 dst 192.0.2.{i % 250 + 1}"
        " self permanent\n"
        for i in range(entries)
    )
    run("bridge", "-n", HOST, "-batch", "-", stdin=fdb)
    for i, ns in enumerate(names[1:]):
        a, b = divmod(i, 250)
        run("ip", "-n", ns, "-batch", "-", stdin=f"link set lo up\nlink set eth0 up\n"
            f"addr add 10.200.{200 + a}.{b + 2}/16 dev eth0\nroute add default via 10.200.0.1\n")  # fmt: skip
    nat = ["*nat", ":DOCKER - [0:0]", "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER"]
    nat += [
        f"-A DOCKER ! -i br0 -p tcp -m tcp --dport {10000 + i % 50000} -j DNAT "
        f"--to-destination 10.200.200.{i % 200 + 2}:80"
        for i in range(rules)
    ]
    run("nsenter", f"--net=/run/netns/{HOST}", "iptables-nft-restore", stdin="\n".join([*nat, "COMMIT", ""]))
    return names


def teardown() -> None:
    names = [n for n in os.listdir("/run/netns") if n.startswith(PREFIX)] if os.path.isdir("/run/netns") else []
    if names:
        subprocess.run(["ip", "-batch", "-"], input="".join(f"netns del {n}\n" for n in names), text=True)


def loop_script(names: list[str]) -> str:
    """The iproute2 loop an operator would write, as one bash script."""
    host = [f"ip -j -n {HOST} {obj} show" for obj in ("link", "addr", "route", "neigh")]
    host += [f"bridge -j -n {HOST} fdb show", f"ip netns exec {HOST} iptables-save -t nat"]
    each = 'for ns in {}; do for obj in addr route neigh; do ip -j -n "$ns" $obj show; done; done'
    return "\n".join([*host, each.format(" ".join(names[1:]))]) + "\n"


def vxray_argv() -> list[str]:
    """The ``vxray`` a user runs: the console script next to this interpreter, else the module."""
    script = os.path.join(os.path.dirname(sys.executable), "vxray")
    return [script] if os.access(script, os.X_OK) else [sys.executable, "-m", "tui.cli"]


def process(argv: list[str], out: str) -> float:
    """Seconds one whole process takes, stdout to ``out`` (as ``> host.json``)."""
    with open(out, "wb") as f:
        start = time.perf_counter()
        subprocess.run(argv, stdout=f, check=True)
        return time.perf_counter() - start


def alternating(a: list[str], b: list[str], out: str, runs: int) -> tuple[float, float]:
    """Medians of two processes run in turn, so drift on the machine hits both alike."""
    ta, tb = [], []
    for _ in range(runs):
        ta.append(process(a, out))
        tb.append(process(b, out))
    return sorted(ta)[runs // 2], sorted(tb)[runs // 2]


def floor(scope: Scope) -> float:
    """Raw rtnetlink dumps of every namespace (setns, five dumps, bytes kept, nothing decoded)."""
    handles, _ = discover(scope)
    requests = [(RTM_GETLINK, IFINFOMSG.pack(0, 0, 0, 0, 0)), (RTM_GETADDR, bytes(8)),
                (RTM_GETROUTE, RTMSG.pack(0, 0, 0, 0, 0, 0, 0, 0, 0)), (RTM_GETNEIGH, NDMSG.pack(0, 0, 0, 0, 0)),
                (RTM_GETNEIGH, NDMSG.pack(AF_BRIDGE, 0, 0, 0, 0))]  # fmt: skip
    try:
        start = time.perf_counter()
        kept = []
        for h in handles:
            with nsenter.netns(h.fd), NetlinkSocket() as nl:
                for kind, header in requests:
                    nl.sock.send(_request(nl, kind, header))
                    kept.append(_drain(nl.sock))
        return time.perf_counter() - start
    finally:
        for h in handles:
            h.close()


def _request(nl: NetlinkSocket, kind: int, header: bytes) -> bytes:
    nl.seq += 1
    return NLMSG.pack(NLMSG.size + len(header), kind, NLM_F_REQUEST | NLM_F_DUMP, nl.seq, 0) + header


def _drain(sock: socket.socket) -> list[bytes]:
    """Every reply datagram of one dump, until NLMSG_DONE (type 3) ends it."""
    chunks = []
    while True:
        chunk = sock.recv(1 << 16)
        chunks.append(chunk)
        off = 0
        while off + 16 <= len(chunk):
            length, kind = struct.unpack_from("=IH", chunk, off)
            if kind in (2, 3):
                return chunks
            off += (length + 3) & ~3


def objects(snap: HostSnapshot) -> int:
    """What a snapshot holds, counted the way time per object is: devices, addresses, table entries, rules."""
    total = 0
    for ns in snap.namespaces:
        total += len(ns.links) + sum(len(lk.addresses) for lk in ns.links) + len(ns.routes) + len(ns.neighbours)
        total += len(ns.fdb) + sum(len(c.rules) for rs in ns.netfilter for t in rs.tables for c in t.chains)
    return total


def child_peak_rss() -> float:
    """The largest resident set any child so far reached, in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def measure(scale: int, args: argparse.Namespace, work: str, baseline: bool) -> None:
    containers, entries, rules = args.containers * scale, args.entries * scale, args.rules * scale
    t = time.perf_counter()
    names = build(containers, entries, rules)
    print(f"\n{scale}x workload: {len(names)} namespaces, {entries} FDB + {entries} neighbours, {rules} DNAT rules "
          f"(built in {time.perf_counter() - t:.1f} s)")  # fmt: skip
    scope = Scope(host_netns=HOST, netns=(f"{PREFIX}c*",))
    out = os.path.join(work, "host.json")
    snap_argv = [*vxray_argv(), "snapshot", "--json", "--host-netns", HOST, "--netns", f"{PREFIX}c*"]
    snap_argv += ["--docker", "none"]
    process(snap_argv, out)  # warm-up: page cache, the interpreter's files
    if baseline:
        script = os.path.join(work, "loop.sh")
        with open(script, "w") as f:
            f.write(loop_script(names))
        ours, base = alternating(snap_argv, ["bash", script], os.path.join(work, "out"), args.runs)
        process(snap_argv, out)
        print(f"  iproute2 loop (process)         : {base * 1000:8.1f} ms  (median of {args.runs})")
        print(f"  vxray snapshot --json (process) : {ours * 1000:8.1f} ms")
        print(f"  ratio                           : {ours / base:8.3f}  (target <= 0.25)")
    else:
        ours = median(lambda: process(snap_argv, out), args.runs)
        print(f"  vxray snapshot --json (process) : {ours * 1000:8.1f} ms  (median of {args.runs})")
    size = os.path.getsize(out)
    load_argv = [*vxray_argv(), "snapshot", "--load", out, "--json"]
    loaded = median(lambda: process(load_argv, os.devnull), args.runs)
    with open(out, "rb") as f:
        raw = f.read()
    snap = codec.loads(raw, out)
    n = objects(snap)
    collected = median(lambda: collect(scope, docker="none"), args.runs)
    encoded = median(lambda: codec.dumps(snap), args.runs)
    decoded = median(lambda: codec.loads(raw, out), args.runs)
    raw_floor = median(lambda: floor(scope), args.runs)
    tracemalloc.start()
    collect(scope, docker="none")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    per10k = 10_000 / (2 * entries + rules)
    print(f"  vxray snapshot --load (process) : {loaded * 1000:8.1f} ms  ({size / 2**20:.1f} MiB file)")
    print(f"  in-process: collect {collected * 1000:.1f} ms, encode {encoded * 1000:.1f} ms, "
          f"decode (--load) {decoded * 1000:.1f} ms (target <= 100)")  # fmt: skip
    print(f"  floor (raw dumps, no decoding)  : {raw_floor * 1000:8.1f} ms")
    per = {"process": ours, "collect": collected, "floor": raw_floor, "collect above the floor": collected - raw_floor}
    print(f"  per object ({n} objects)       : " + ", ".join(f"{t / n * 1e6:.2f} µs {k}" for k, t in per.items()))
    print(f"  peak memory per 10,000 entries  : {peak / 2**20 * per10k:8.2f} MiB (collect, tracemalloc); "
          f"process max RSS so far {child_peak_rss():.0f} MiB")  # fmt: skip


def nft_ruleset(rules: int, as_map: bool) -> str:
    """The workload's DNAT rules as native nftables: one rule per port, or one dnat map holding them all."""
    targets = [(10000 + i % 50000, f"10.200.200.{i % 200 + 2}") for i in range(rules)]
    head = "table ip vxbench {\n"
    chain = "  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n"
    if as_map:
        elements = ", ".join(f"{port} : {addr} . 80" for port, addr in targets)
        return (f"{head}  map dnat_to {{\n    type inet_service : ipv4_addr . inet_service\n"
                f"    elements = {{ {elements} }}\n  }}\n{chain}"
                '    iifname != "br0" counter dnat ip to tcp dport map @dnat_to\n  }\n}\n')  # fmt: skip
    lines = "".join(f'    iifname != "br0" tcp dport {port} counter dnat to {addr}:80\n' for port, addr in targets)
    return f"{head}{chain}{lines}  }}\n}}\n"


def read_nftables() -> int:
    """vxray's nft part of a namespace read, in this thread's namespace; returns the rules read."""
    tables, notes = NftReader(nft_tables()).result()
    assert not notes, notes
    return sum(len(c.rules) for t in tables for c in t.chains)


def measure_nftables(args: argparse.Namespace) -> None:
    print(f"\nnftables: {args.rules} DNAT rules as a native ruleset in one namespace")
    run("ip", "netns", "add", HOST)
    try:
        for shape, as_map in (("plain rules", False), ("one dnat map", True)):
            run("ip", "netns", "exec", HOST, "nft", "flush", "ruleset")
            run("ip", "netns", "exec", HOST, "nft", "-f", "-", stdin=nft_ruleset(args.rules, as_map))
            with nsenter.named(HOST):  # this thread in the namespace, as a collecting worker is
                read_nftables()  # warm-up
                ours, base = [], []
                for _ in range(args.runs):  # alternating, so drift on the machine hits both alike
                    start = time.perf_counter()
                    read_nftables()
                    ours.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    subprocess.run(["nft", "-j", "list", "ruleset"], stdout=subprocess.DEVNULL, check=True)
                    base.append(time.perf_counter() - start)
            o, b = sorted(ours)[args.runs // 2], sorted(base)[args.runs // 2]
            print(f"  {shape + ':':<13} nft -j list ruleset (process) {b * 1000:7.1f} ms, vxray's read "
                  f"{o * 1000:7.1f} ms (median of {args.runs}), ratio {o / b:.2f} (target <= 1)")  # fmt: skip
    finally:
        teardown()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--containers", type=int, default=200)
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--rules", type=int, default=2_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--scales", default="1,2,4", help="workload multiples for the series (the first gets the baseline)")
    ap.add_argument("--no-nftables", dest="nftables", action="store_false", help="skip the native nftables workload")
    ap.add_argument("--nftables-only", action="store_true", help="only the native nftables workload")
    args = ap.parse_args()
    need_root()
    if args.nftables and shutil.which("nft") is None:
        sys.exit("the nftables workload needs nft (apt install nftables), or pass --no-nftables")
    if args.nftables_only:
        measure_nftables(args)
        return 0
    if shutil.which("iptables-nft-restore") is None:
        sys.exit("the workload needs iptables-nft-restore (apt install iptables)")
    work = tempfile.mkdtemp(prefix="vxbench-")
    try:
        for i, scale in enumerate(int(s) for s in args.scales.split(",")):
            try:
                measure(scale, args, work, baseline=i == 0)
            finally:
                teardown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.nftables:
        measure_nftables(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
