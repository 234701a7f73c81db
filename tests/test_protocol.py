"""The agent protocol and the merge of machines: pure functions, no machine needed."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from backend import codec
from backend.merge import merge
from backend.protocol import PROTOCOL, Hello, ProtocolError, parse_hello, parse_request
from diagnostics.world import World
from tui.registry import POLICY

VIEW = Path(__file__).parent / "fixtures" / "overlay-static.view.json"


@pytest.mark.parametrize(
    ("argv", "changes"),
    [
        (["network", "ls"], False), (["network", "create", "n", "--subnet", "10.0.0.0/24"], True),
        (["fdb", "sync", "prod", "--dry-run"], False), (["fdb", "sync", "prod"], True), (["trace", "a", "b"], False),
        (["host", "set", "yy3", "ip_forward=1"], True), (["lab", "status"], False), (["lab", "down", "x"], True),
    ],
)  # fmt: skip
def test_read_only_tells_reading_commands_from_changing_ones(argv: list[str], changes: bool) -> None:
    assert POLICY.changes_state(argv) is changes
    assert (POLICY.refusal(argv, read_only=True) is not None) is (changes or argv[0] == "lab"), (
        "lab: never over an agent"
    )


def test_an_agent_runs_only_vxrays_own_operations() -> None:
    assert POLICY.refusal(["lab", "down", "x"], read_only=False) is not None
    assert "not a vxray operation" in (POLICY.refusal(["sh", "-c", "id"], read_only=False) or "")
    assert POLICY.refusal([], read_only=False) is not None
    assert POLICY.refusal(["fdb", "add", "02:42:ac:15:00:01"], read_only=False) is None
    assert POLICY.refusal(["app"], read_only=False) is not None, "a door is never opened for a client"


def test_greetings_and_requests_parse_or_fail_in_one_line() -> None:
    hello = Hello(PROTOCOL, "0.1.0", "yy3", read_only=True)
    assert parse_hello(hello.line()) == hello
    with pytest.raises(ProtocolError, match="not a vxray agent greeting"):
        parse_hello("SSH-2.0-OpenSSH_9.2 banner")
    assert parse_request('{"id": 3, "op": "snapshot"}').op == "snapshot"
    with pytest.raises(ProtocolError, match="not a request"):
        parse_request("[1, 2]")


def test_two_machines_merge_without_collisions_and_keep_their_veths_apart() -> None:
    view = codec.load_view(VIEW.read_bytes(), str(VIEW))
    snap, labels = view.snapshot, view.labels
    merged, merged_labels = merge([("a", snap, labels, "host"), ("b", replace(snap, host="b"), labels, "host")])
    names = [ns.name for ns in merged.namespaces]
    assert len(names) == len(set(names)) == 2 * len(snap.namespaces)
    assert merged_labels.host_netns == {"a": "a:host", "b": "b:host"}
    assert merged_labels.containers["b:vxshot.yy3-vm33"] == "vm33"
    world = World([merged], merged_labels)
    for ns in merged.namespaces:
        for lk in ns.links:
            if lk.peer is not None and world.link_at(ns.id, lk.peer) is not None:
                assert lk.peer.netns.split(":")[0] == ns.id.split(":")[0], "a veth never crosses machines"
