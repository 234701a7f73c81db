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
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from backend.observe import observe
from benchmarks.workload import load, median, overlay_lab
from diagnostics.trace import trace
from diagnostics.world import World
from tui.cli import main as vxray

LAB = f"vxbt{os.getpid()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=10000)
    parser.add_argument("--rules", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    with overlay_lab(LAB) as (spec, ctx):
        for line in spec.solution:
            assert vxray(shlex.split(line)) == 0, line
        load(LAB, args.entries, args.rules)
        start = time.perf_counter()
        snap, labels = observe(ctx, f"{LAB}.ul")
        collected = time.perf_counter() - start
        start = time.perf_counter()
        world = World([snap], labels)
        indexed = time.perf_counter() - start
        src, dst = ctx.container("vm33").netns or "", "172.21.0.1"
        result = trace(world, src, dst)
        assert result.delivered, result
        mine = median(lambda: trace(world, src, dst), args.runs)
        base = median(lambda: trace(World([snap], labels), src, dst), max(5, args.runs // 5))
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
