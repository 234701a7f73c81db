"""Trace speed on the scale workload: median time per ``trace`` over snapshots of two hosts.

Workload: the field notes' overlay (``overlay-static`` with its fix applied, so the
trace crosses both hosts and comes back), plus 10,000 static FDB entries on yy3's
``vxlan1``, 10,000 permanent neighbours in yy3's namespace and 2,000 DNAT rules in
yy2's nat table (iptables-nft). The snapshot is taken once; then vm33 -> vm3 is
traced repeatedly. Baseline, in the same run: the same trace re-indexing the
snapshot each time (what a lookup-per-scan implementation pays). Prints both
medians and the ratio; target <= 20 ms per trace.

    python benchmarks/trace.py [--entries 10000] [--rules 2000] [--runs 50]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from backend.lab import runner
from backend.lab.spec import dump
from backend.observe import observe
from diagnostics.trace import trace
from diagnostics.world import World
from tui.cli import main as vxray

LAB = f"vxbt{os.getpid()}"


def run(*argv: str, stdin: str) -> None:
    subprocess.run(argv, input=stdin, text=True, check=True, capture_output=True)


def load(entries: int, rules: int, lab: str = LAB) -> None:
    """The scale workload in lab ``lab`` (an ``overlay-static``): FDB entries, neighbours, DNAT rules."""
    yy2, yy3 = f"{lab}.yy2", f"{lab}.yy3"
    sandbox = next(n for n in os.listdir("/run/netns") if n.startswith(f"{yy3}-1-"))
    fdb = "".join(f"fdb add 02:01:00:00:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x} dev vxlan1 dst 10.193.6.{i % 200 + 50}"
                  f" self permanent\n" for i in range(entries))  # fmt: skip
    run("bridge", "-n", sandbox, "-batch", "-", stdin=fdb)
    neigh = "".join(f"neigh add 10.193.{100 + i // 250}.{i % 250 + 1} lladdr 02:00:00:00:{i >> 8 & 0xFF:02x}:"
                    f"{i & 0xFF:02x} dev eth0 nud permanent\n" for i in range(entries))  # fmt: skip
    run("ip", "-n", yy3, "-batch", "-", stdin=neigh)
    nat = ["*nat", ":DOCKER - [0:0]", "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER"]
    dnat = "-A DOCKER ! -i docker0 -p tcp -m tcp --dport {} -j DNAT --to-destination 172.17.0.{}:80"
    nat += [dnat.format(10000 + i, i % 200 + 2) for i in range(rules)]
    if rules:
        restore = ["nsenter", f"--net=/run/netns/{yy2}", "iptables-nft-restore", "--noflush"]
        run(*restore, stdin="\n".join([*nat, "COMMIT", ""]))


def timed(fn: object, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=10000)
    parser.add_argument("--rules", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("vxray needs root (CAP_NET_ADMIN) to build the workload")
    os.environ["VXRAY_HOME"] = tempfile.mkdtemp(prefix="vxbt-home-")
    spec = runner.load("overlay-static", LAB)[0]
    ctx = runner.up(spec, dump(spec))
    try:
        for line in spec.solution:
            assert vxray(shlex.split(line)) == 0, line
        load(args.entries, args.rules)
        start = time.perf_counter()
        snap, labels = observe(ctx, f"{LAB}.ul")
        collected = time.perf_counter() - start
        start = time.perf_counter()
        world = World([snap], labels)
        indexed = time.perf_counter() - start
        src, dst = ctx.container("vm33").netns or "", "172.21.0.1"
        result = trace(world, src, dst)
        assert result.delivered, result
        mine = timed(lambda: trace(world, src, dst), args.runs)
        base = timed(lambda: trace(World([snap], labels), src, dst), max(5, args.runs // 5))
    finally:
        runner.down(LAB)
    fdb = sum(len(ns.fdb) for ns in snap.namespaces)
    neigh = sum(len(ns.neighbours) for ns in snap.namespaces)
    print(f"workload: {len(snap.namespaces)} namespaces, {fdb} FDB entries, {neigh} neighbours, {args.rules} DNAT "
          f"rules; trace vm33 -> vm3 crosses both hosts and back ({len(result.steps)} steps)")  # fmt: skip
    print(f"snapshot of both hosts : {collected * 1000:8.1f} ms (once)")
    print(f"index (World)          : {indexed * 1000:8.1f} ms (once per snapshot)")
    print(f"baseline, re-indexing  : {base * 1000:8.2f} ms per trace (median)")
    print(f"vxray trace            : {mine * 1000:8.2f} ms per trace (median of {args.runs}; target <= 20 ms)")
    print(f"ratio                  : {mine / base:8.3f}")


if __name__ == "__main__":
    main()
