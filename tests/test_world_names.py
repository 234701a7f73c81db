"""How trace ends are named across machines: pure, no root (``diagnostics.world``)."""

from __future__ import annotations

import pytest

from backend.errors import VxrayError
from backend.merge import merge
from backend.model import Address, ContainerInfo, HostSnapshot, Labels, Link, Namespace
from diagnostics.trace import fix_in
from diagnostics.world import World


def _machine(host: str, containers: dict[str, str]) -> HostSnapshot:
    spaces = [Namespace(f"net:[{i}]", "docker", name, container=ContainerInfo(name, f"id{i}"),
                        links=(Link(2, "eth0", "veth", f"02:42:0a:00:00:0{i}", 1450, "UP", ("UP",),
                                    addresses=(Address(ip, 24),)),))
              for i, (name, ip) in enumerate(containers.items(), 1)]  # fmt: skip
    return HostSnapshot(host, 0.0, "6", (Namespace("net:[0]", "host", "host"), *spaces))


def _world(**machines: dict[str, str]) -> World:
    snap, labels = merge([(h, _machine(h, c), Labels(), "host") for h, c in machines.items()])
    return World([snap], labels)


def test_a_container_on_another_machine_is_found_by_its_name() -> None:
    w = _world(dh1={"vm3": "10.0.9.2"}, dh2={"vm33": "10.0.9.3"})
    assert w.place_of("vm3").label == "dh1:vm3"
    assert w.address_of("vm3") == "10.0.9.2"
    assert w.address_of("dh2:vm33") == "10.0.9.3"


def test_a_name_on_two_machines_asks_for_host_colon_name() -> None:
    w = _world(dh1={"web": "10.0.9.2"}, dh2={"web": "10.0.9.3"})
    with pytest.raises(VxrayError, match=r"several machines .* say HOST:web"):
        w.place_of("web")
    assert w.place_of("dh2:web").label == "dh2:web"


@pytest.mark.parametrize("word", ["nosuch", "300.1.2.3", "", "vm3;id", "dh9:vm3"])
def test_an_unknown_destination_is_one_error_naming_it(word: str) -> None:
    w = _world(dh1={"vm3": "10.0.9.2"})
    with pytest.raises(VxrayError, match="unknown container"):
        w.address_of(word)


def test_a_fix_in_another_machines_sandbox_names_the_machine_and_enters_by_its_bind_mount() -> None:
    sandbox = Namespace("net:[9]", "overlay-sandbox", "1-abcdefghij (prod)", paths=("/run/docker/netns/1-abcdefghij",))
    snap = HostSnapshot("dh2", 0.0, "6", (Namespace("net:[0]", "host", "host"), sandbox))
    merged, labels = merge([("dh2", snap, Labels(), "host")])
    w = World([merged], labels)
    key = next(k for k, p in w.places.items() if p.ns.kind == "overlay-sandbox")
    assert w.command_in(key, "ip", "neigh") == ("nsenter", "--net=/run/docker/netns/1-abcdefghij", "ip", "neigh")
    assert w.machine_of(key) == "dh2", "the argv runs on dh2"
    fix = fix_in(w, key, native=("ip", "neigh"))
    assert fix.native_line == "on dh2: nsenter --net=/run/docker/netns/1-abcdefghij ip neigh"


def test_the_trace_pickers_offer_dockers_containers_by_name_and_host_colon_name_when_taken_twice() -> None:
    from tui.tables import trace_ends

    machines = {"dh1": {"vm3": "10.0.9.2", "web": "10.0.9.4"}, "dh2": {"vm33": "10.0.9.3", "web": "10.0.9.5"}}
    parts = [(h, _machine(h, c), Labels(), "host") for h, c in machines.items()]
    snap, labels = merge(parts)
    assert trace_ends(snap, labels) == ["dh1:web", "dh2:web", "vm3", "vm33"]
