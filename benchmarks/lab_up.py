"""Lab build speed: ``lab up`` of a 2-host overlay against a shell script of ``ip``/``bridge`` commands.

Workload: an underlay bridge, two hosts on it, an overlay (VNI 256, MTU 1450)
whose sandbox on each host holds ``br0`` and ``vxlan1``, and N containers per
host, each a namespace with a veth into the sandbox's bridge, a MAC and an
address. vxray builds it through the operations (store claims included); the
baseline is the script an operator would write — one ``ip`` command per object —
building the same namespaces, links and addresses, run by ``sh -e`` in the same
process run. Both are timed over several runs; prints both medians and the ratio
(target <= 0.5). Everything lives in ``vxb<pid>…`` namespaces, removed at the end.

    python benchmarks/lab_up.py [--containers 50] [--runs 3]
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from backend import namedns
from backend.lab import runner
from backend.lab.spec import parse
from backend.netns import RUN_NETNS
from backend.ops.containers import host_ifname, mac_for
from benchmarks.workload import need_root

PREFIX = f"vxb{os.getpid()}"
HOSTS = {"h1": "10.1.0.1", "h2": "10.1.0.2"}
SUBNET = ipaddress.IPv4Network("10.50.0.0/16")


def topology(name: str, per_host: int) -> str:
    lines = [f'[lab]\nname = "{name}"\n']
    lines += [f'[[hosts]]\nname = "{h}"\nunderlay = "{ip}/24"\n' for h, ip in HOSTS.items()]
    lines.append(
        '[[networks]]\nname = "ov"\ndriver = "overlay"\nsubnet = "10.50.0.0/16"\ngateway = "10.50.255.254"\nvni = 256\n'
    )
    for h, i in containers(per_host):
        ip = SUBNET.network_address + 1 + i
        lines.append(
            f'[[containers]]\nname = "{h}c{i}"\nhost = "{h}"\nnetworks = [{{ network = "ov", ip = "{ip}" }}]\n'
        )
    return "\n".join(lines)


def containers(per_host: int) -> list[tuple[str, int]]:
    return [(h, n * per_host + i) for n, h in enumerate(HOSTS) for i in range(per_host)]


def script(name: str, per_host: int) -> str:
    """The same topology as one ``ip``/``bridge`` command per object."""
    ul = f"{name}.ul"
    out = ["set -e", f"ip netns add {ul}", f"ip -n {ul} link add ul0 type bridge", f"ip -n {ul} link set ul0 up"]
    for h, vtep in HOSTS.items():
        ns, sb = f"{name}.{h}", f"{name}.{h}-1-ov"
        out += [
            f"ip netns add {ns}",
            f"ip -n {ns} link add eth0 type veth peer name ul-{h} netns {ul}",
            f"ip -n {ns} addr add {vtep}/24 dev eth0",
            f"ip -n {ns} link set eth0 up",
            f"ip -n {ns} link set lo up",
            f"ip -n {ul} link set ul-{h} master ul0 up",
            f"ip netns add {sb}",
            f"ip -n {sb} link set lo up",
            f"ip -n {ns} link add vxtmp type vxlan id 256 dstport 4789 local {vtep} dev eth0 nolearning"
            " proxy l2miss l3miss",
            f"ip -n {ns} link set vxtmp netns {sb}",
            f"ip -n {sb} link set vxtmp name vxlan1 mtu 1450",
            f"ip -n {sb} link add br0 type bridge",
            f"ip -n {sb} link set br0 mtu 1450",
            f"ip -n {sb} addr add 10.50.255.254/16 dev br0",
            f"ip -n {sb} link set br0 up",
            f"ip -n {sb} link set vxlan1 master br0 up",
        ]
    for h, i in containers(per_host):
        ctr, sb, ip = f"{name}.{h}-{h}c{i}", f"{name}.{h}-1-ov", SUBNET.network_address + 1 + i
        side = host_ifname(f"{h}c{i}", "ov")
        out += [
            f"ip netns add {ctr}",
            f"ip -n {ctr} link set lo up",
            f"ip -n {sb} link add {side} type veth peer name eth0 netns {ctr}",
            f"ip -n {sb} link set {side} mtu 1450 master br0 up",
            f"ip -n {ctr} link set eth0 address {mac_for(str(ip))} mtu 1450",
            f"ip -n {ctr} addr add {ip}/16 dev eth0",
            f"ip -n {ctr} link set eth0 up",
        ]
    return "\n".join(out) + "\n"


def ours(prefix: str) -> list[str]:
    return sorted(n for n in os.listdir(RUN_NETNS) if n.startswith(prefix)) if os.path.isdir(RUN_NETNS) else []


def clean(name: str) -> None:
    runner.down(name)
    for ns in reversed(ours(f"{name}.")):
        namedns.remove(ns)


def time_vxray(name: str, per_host: int) -> tuple[float, int]:
    text = topology(name, per_host)
    spec = parse(text)
    start = time.perf_counter()
    runner.up(spec, text)
    elapsed = time.perf_counter() - start
    count = len(ours(f"{name}."))
    clean(name)
    return elapsed, count


def time_script(name: str, per_host: int) -> tuple[float, int]:
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as f:
        f.write(script(name, per_host))
    try:
        start = time.perf_counter()
        subprocess.run(["sh", "-e", f.name], check=True, capture_output=True)
        elapsed = time.perf_counter() - start
    finally:
        os.unlink(f.name)
    count = len(ours(f"{name}."))
    clean(name)
    return elapsed, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=50, help="containers per host")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    need_root("build labs")
    os.environ["VXRAY_HOME"] = tempfile.mkdtemp(prefix="vxb-home-")
    base, mine = [], []
    try:
        for run in range(args.runs):  # interleaved, so drift on the machine hits both alike
            seconds, shell_ns = time_script(f"{PREFIX}s{run}", args.containers)
            base.append(seconds)
            seconds, vxray_ns = time_vxray(f"{PREFIX}v{run}", args.containers)
            mine.append(seconds)
            assert shell_ns == vxray_ns, f"the two builds differ: {shell_ns} vs {vxray_ns} namespaces"
    finally:
        for run in range(args.runs):
            clean(f"{PREFIX}s{run}")
            clean(f"{PREFIX}v{run}")
    b, m = statistics.median(base), statistics.median(mine)
    print(f"workload: 2 hosts, overlay VNI 256, {args.containers} containers per host, {vxray_ns} namespaces")
    print(f"shell script (one ip/bridge command per object): {b * 1000:8.1f} ms  (median of {args.runs})")
    print(f"vxray lab up (operations, store, netlink):      {m * 1000:8.1f} ms  (median of {args.runs})")
    print(f"ratio vxray / shell: {m / b:.2f}  (target <= 0.5)")


if __name__ == "__main__":
    main()
