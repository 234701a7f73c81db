"""Does ``vxray capture`` keep up with a flood? ``ping -f`` for 5 s over one veth between two namespaces of its own.

vxray captures the veth into a pcapng file, then tcpdump does the same over a
second flood, in the same run, as the baseline. Each line says the frames
written, what the kernel passed the filter (``PACKET_STATISTICS``) and what it
dropped because the reader fell behind, against the frames ping itself counted
(two per echo: request and reply). Run as root: ``python benchmarks/capture.py``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SECONDS = 5
PREFIX = f"vxb{os.getpid()}-"
REPO = Path(__file__).resolve().parent.parent


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def flood(a: str) -> int:
    """Frames on the veth by ping's own count: each echo answered is a request and a reply."""
    out = sh("ip", "netns", "exec", a, "ping", "-f", "-q", "-w", str(SECONDS), "10.77.0.2")
    sent, got = (int(n) for n in re.search(r"(\d+) packets transmitted, (\d+) received", out).groups())  # type: ignore[union-attr]
    return sent + got


def run(argv: list[str], ready: str, a: str, env: dict[str, str] | None = None) -> tuple[int, str, float]:
    """Start a capture, flood once it says it listens, end it with Ctrl-C; (ping's frames, its last words, the CPU
    seconds it used: on a shared machine the capture and the flood compete for the same cores)."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    while ready not in (proc.stderr.readline() or ready):
        pass
    time.sleep(0.5)
    frames = flood(a)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    said = proc.stderr.read()
    _pid, _status, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0  # reaped above
    return frames, said, usage.ru_utime + usage.ru_stime


def main() -> int:
    a, b = f"{PREFIX}a", f"{PREFIX}b"
    work = tempfile.mkdtemp(prefix="vxray-capture-bench-")
    try:
        sh("ip", "netns", "add", a)
        sh("ip", "netns", "add", b)
        sh("ip", "-n", a, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", b)
        sh("ip", "-n", a, "addr", "add", "10.77.0.1/24", "dev", "v0")
        sh("ip", "-n", b, "addr", "add", "10.77.0.2/24", "dev", "v1")
        sh("ip", "-n", a, "link", "set", "v0", "up")
        sh("ip", "-n", b, "link", "set", "v1", "up")
        env = {**os.environ, "PYTHONPATH": str(REPO), "VXRAY_HOME": work}
        env.pop("VXRAY_STORE", None)
        vx = [sys.executable, "-m", "tui.cli", "capture", f"v0@{a}", "-w", f"{work}/vxray.pcapng"]
        frames, said, cpu = run(vx, "capturing on", a, env)
        got = re.search(r"(\d+) packets captured, (\d+) received by the filter, (\d+) dropped", said)
        if got is None:
            print(f"vxray capture failed: {said.strip()}")
            return 1
        taken, counted, dropped = (int(n) for n in got.groups())
        td = ["ip", "netns", "exec", a, "tcpdump", "-i", "v0", "-w", f"{work}/tcpdump.pcap"]
        td_frames, td_said, td_cpu = run(td, "listening on", a)
        td_got = [int(re.search(rf"(\d+) packets? {w}", td_said).group(1))  # type: ignore[union-attr]
                  for w in ("captured", "received by filter", "dropped by kernel")]  # fmt: skip
        print(f"ping -f for {SECONDS} s over one veth (two namespaces of its own), frames written / kernel counted:")
        print(f"  vxray capture: {taken} / {counted}  ({100 * taken / max(counted, 1):.2f}%), kernel drops {dropped}, "
              f"ping's frames {frames} ({frames / SECONDS / 1000:.0f} k/s), CPU {cpu:.1f} s")  # fmt: skip
        print(f"  tcpdump      : {td_got[0]} / {td_got[1]}  ({100 * td_got[0] / max(td_got[1], 1):.2f}%), kernel drops "
              f"{td_got[2]}, ping's frames {td_frames} ({td_frames / SECONDS / 1000:.0f} k/s), "
              f"CPU {td_cpu:.1f} s")  # fmt: skip
        print(f"  ratio of frames written, vxray / tcpdump (each against its own flood): "
              f"{(taken / max(frames, 1)) / max(td_got[0] / max(td_frames, 1), 1e-9):.3f}")  # fmt: skip
        return 0 if dropped == 0 else 1
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    sys.exit(main())
