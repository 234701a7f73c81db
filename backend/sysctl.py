"""Read the forwarding sysctls of the namespace the calling thread is in.

``/proc/sys/net`` answers for the namespace of the task that opens the file, so a
thread inside a namespace (``backend.nsenter``) reads that namespace's values.
"""

from __future__ import annotations

from collections.abc import Iterable

from backend.model import Sysctls

_IPV4 = "/proc/sys/net/ipv4"


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def read_sysctls(devices: Iterable[str]) -> Sysctls:
    forward = _read_int(f"{_IPV4}/ip_forward")
    nf_call = _read_int("/proc/sys/net/bridge/bridge-nf-call-iptables")
    per_device = {}
    for dev in devices:
        value = _read_int(f"{_IPV4}/conf/{dev}/rp_filter")
        if value is not None:
            per_device[dev] = value
    return Sysctls(
        ip_forward=None if forward is None else bool(forward),
        rp_filter_all=_read_int(f"{_IPV4}/conf/all/rp_filter"),
        rp_filter_default=_read_int(f"{_IPV4}/conf/default/rp_filter"),
        rp_filter=per_device,
        bridge_nf_call_iptables=None if nf_call is None else bool(nf_call),
    )
