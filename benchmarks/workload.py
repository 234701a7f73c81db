"""What the benchmarks share: the scale workload on the field notes' overlay lab, and a median timer.

Each benchmark measures something else over the same lab, so the lab's set-up and
tear-down live here once; a benchmark only says what it times.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from backend.lab import runner
from backend.lab.spec import LabSpec, dump
from backend.ops.context import Context


def run(*argv: str, stdin: str | None = None) -> None:
    subprocess.run(argv, input=stdin, text=True, check=True, capture_output=True)


def median(fn: Callable[[], object], runs: int) -> float:
    """Median seconds per call of ``fn`` over ``runs`` calls."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def need_root(what: str = "build the workload") -> None:
    if os.geteuid() != 0:
        sys.exit(f"vxray needs root (CAP_NET_ADMIN) to {what}")


@contextmanager
def overlay_lab(name: str) -> Iterator[tuple[LabSpec, Context]]:
    """The field notes' ``overlay-static`` lab as ``name``, with a private VXRAY_HOME; removed on the way out."""
    need_root()
    os.environ["VXRAY_HOME"] = tempfile.mkdtemp(prefix=f"{name}-home-")
    spec = runner.load("overlay-static", name)[0]
    ctx = runner.up(spec, dump(spec))
    try:
        yield spec, ctx
    finally:
        runner.down(name)


def load(lab: str, entries: int, rules: int = 0) -> None:
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
