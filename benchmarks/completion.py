"""Shell completion speed on the scale workload: time per keystroke, against reading state per keystroke.

Workload: the field notes' overlay lab with 10,000 static FDB entries on yy3's
``vxlan1`` and 10,000 permanent neighbours in yy3's namespace. The shell reads
its vocabulary once between commands; a keystroke only filters it. Baseline,
in the same run: a completer that re-reads store and snapshot on every
keystroke. Prints the median per keystroke for each line and the ratio; target
under 50 ms per keystroke.

    python benchmarks/completion.py [--entries 10000] [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from benchmarks.workload import load, median, overlay_lab
from tui.completer import VxrayCompleter
from tui.shell import Shell

LAB = f"vxbc{os.getpid()}"
LINES = ["fdb del ", "fdb del 02:01:00:00:1", "fdb add ", "show fdb dev ", "arp add 172.21.0.1 ", "network inspect "]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with overlay_lab(LAB):
        load(LAB, args.entries)
        sh = Shell(host="yy3")
        start = time.perf_counter()
        sh.refresh()
        refreshed = (time.perf_counter() - start) * 1000
        fast = VxrayCompleter(lambda: sh.vocabulary, lambda: sh.host)

        def reread() -> object:
            sh.refresh()
            return sh.vocabulary

        slow = VxrayCompleter(reread, lambda: sh.host)  # type: ignore[arg-type]
        rows = []
        for line in LINES:
            doc = Document(line)
            n = len(list(fast.get_completions(doc, CompleteEvent())))
            mine = median(lambda d=doc: list(fast.get_completions(d, CompleteEvent())), args.runs) * 1000
            base = median(lambda d=doc: list(slow.get_completions(d, CompleteEvent())), max(3, args.runs // 10)) * 1000
            rows.append((line, n, mine, base))
    print(f"workload: {len(sh.vocabulary.fdb_macs)} MACs in FDB tables, {len(sh.vocabulary.namespaces)} namespaces; "
          f"vocabulary read once between commands in {refreshed:.1f} ms")  # fmt: skip
    print(f"{'line':<24} {'offers':>6} {'per keystroke':>14} {'re-reading':>11} {'ratio':>6}")
    for line, n, mine, base in rows:
        print(f"{line!r:<24} {n:>6} {mine:>11.2f} ms {base:>8.1f} ms {mine / base:>6.3f}")
    worst = max(r[2] for r in rows)
    print(f"worst keystroke: {worst:.2f} ms (target < 50 ms)")


if __name__ == "__main__":
    main()
