"""Snapshot files and saved views from strangers: decoded against the model's types, or one line naming where."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend import codec
from backend.errors import VxrayError
from backend.model import HostSnapshot
from tui.summary import snapshot_lines

VIEW = Path(__file__).parent / "fixtures" / "overlay-static.view.json"
SAVED: dict[str, Any] = json.loads(VIEW.read_text())
DOCUMENT: dict[str, Any] = SAVED["snapshot"]  # what `vxray snapshot --json` writes
VXRAY = [sys.executable, "-m", "tui.cli"]


def _doc(**changes: Any) -> dict[str, Any]:
    """The fixture's snapshot document with ``changes`` applied at JSON paths (``a.b[0].c``)."""
    doc = copy.deepcopy(DOCUMENT)
    for path, value in changes.items():
        *steps, last = _steps(path)
        node = doc
        for step in steps:
            node = node[step]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
    return doc


_DELETE = object()


def _steps(path: str) -> list[str | int]:
    out: list[str | int] = []
    for part in path.split("."):
        name, *indexes = part.replace("]", "").split("[")
        out += [name, *(int(i) for i in indexes)]
    return out


def _one_line(argv: list[str]) -> str:
    proc = subprocess.run([*VXRAY, *argv], capture_output=True, text=True)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and proc.stdout == "", proc.stderr
    assert lines[0].startswith("vxray: ") and "Traceback" not in proc.stderr
    return lines[0]


HOSTILE: list[tuple[str, bytes, str]] = [
    ("wrong-type", json.dumps(_doc(**{"snapshot.namespaces[3].links[0].mtu": "x"})).encode(),
     'bad.json: $.snapshot.namespaces[3].links[0].mtu: expected int, got "x"'),
    ("missing-field", json.dumps(_doc(**{"snapshot.host": _DELETE})).encode(),
     "bad.json: $.snapshot.host: missing (a required field)"),
    ("snapshot-is-a-list", json.dumps(_doc(snapshot=[])).encode(), "bad.json: $.snapshot: expected object, got array"),
    ("nested-100000-deep", b'{"format": "vxray-snapshot", "version": 1, "snapshot": ' + b"[" * 100_000
     + b"]" * 100_000 + b"}", "bad.json: $: nested too deep"),
    ("tuple-of-ints", json.dumps(_doc(**{"snapshot.namespaces[0].pids": "1234"})).encode(),
     'bad.json: $.snapshot.namespaces[0].pids: expected array, got "1234"'),
    ("bad-address", json.dumps(_doc(**{"snapshot.namespaces[0].links[1].addresses[0].address": "300.1.1.1"})).encode(),
     'bad.json: $.snapshot.namespaces[0].links[1].addresses[0].address: expected an IP address, got "300.1.1.1"'),
    ("bad-fdb-dst", json.dumps(_doc(**{"snapshot.namespaces[2].fdb[0].dst": "$(id)"})).encode(),
     "bad.json: $.snapshot.namespaces[2].fdb[0]"),
    ("bad-mac", json.dumps(_doc(**{"snapshot.namespaces[1].neighbours[0].mac": "zz:zz"})).encode(),
     'bad.json: $.snapshot.namespaces[1].neighbours[0].mac: expected a MAC address, got "zz:zz"'),
    ("bad-route", json.dumps(_doc(**{"snapshot.namespaces[1].routes[0].dst": "; rm -rf /"})).encode(),
     'bad.json: $.snapshot.namespaces[1].routes[0].dst: expected a destination (default or a CIDR), got "; rm -rf /"'),
    ("not-json", b"{not json", "bad.json: not a vxray snapshot: not JSON"),
    ("not-utf8", b'{"format": "\xff\xfe"}', "bad.json: not a vxray snapshot: not JSON"),
    ("foreign-json", b'{"hello": 1}', "bad.json: not a vxray snapshot ($.format missing"),
    ("future-version", json.dumps({**DOCUMENT, "version": 99}).encode(), "bad.json: unsupported snapshot version 99"),
    ("bool-for-int", json.dumps(_doc(**{"snapshot.taken_at": True})).encode(),
     "bad.json: $.snapshot.taken_at: expected float, got true"),
    ("empty", b"", "bad.json: not a vxray snapshot: not JSON"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "content", "message"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_snapshot_file_is_one_line_naming_the_json_path(
    case: str, content: bytes, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("bad.json").write_bytes(content)
    assert message in _one_line(["snapshot", "--load", "bad.json"])
    assert message.replace("bad.json: ", "") in _one_line(["-H", f"file://{tmp_path}/bad.json", "snapshot"])


def test_saved_view_with_wrong_labels_names_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "view.json"
    bad.write_text(json.dumps({**SAVED, "labels": {"hosts": ["not", "a", "map"]}}))
    assert f"{bad}: $.labels.hosts: expected object, got array" in _one_line(["app", "--load", str(bad)])


def test_file_larger_than_any_snapshot_is_refused_before_it_is_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(codec, "MAX_BYTES", 1000)
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 2000)
    with pytest.raises(VxrayError, match=r"big.json: 1001 bytes, more than the 0 MiB"):
        codec.read_file(str(big))


def test_agent_answer_is_decoded_like_a_file() -> None:
    answer = {**SAVED, "snapshot": _doc(**{"snapshot.namespaces[0].links": {"a": 1}})}
    with pytest.raises(
        codec.CodecError, match=r"^yy2: snapshot answer: \$\.snapshot\.snapshot\.namespaces\[0\]\.links"
    ):
        codec.view_from_data(answer, "yy2: snapshot answer")
    with pytest.raises(codec.CodecError, match=r"yy2: snapshot answer: \$: expected object, got array"):
        codec.view_from_data([1, 2], "yy2: snapshot answer")


def test_saved_view_and_document_round_trip_exactly() -> None:
    view = codec.load_view(VIEW.read_bytes(), "fixture")
    again = codec.load_view(codec.dump_view(view), "again")
    assert again == view and codec.loads(codec.dumps(view.snapshot)) == view.snapshot
    assert codec.load_view(codec.dumps(view.snapshot), "bare").snapshot == view.snapshot


# Fuzz: any JSON value at any place in a real snapshot, and any bytes at all, end as a snapshot or a CodecError.

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _paths(node: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(DOCUMENT)[1:]


def _decoded_or_refused(raw: bytes) -> None:
    try:
        snap = codec.loads(raw, "fuzz.json")
    except codec.CodecError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("fuzz.json: ")
        return
    assert isinstance(snap, HostSnapshot)
    snapshot_lines(snap)  # what was accepted can be shown


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PATHS), _JSON)
def test_any_value_anywhere_in_a_snapshot_is_decoded_or_refused_in_one_line(path: tuple, value: Any) -> None:
    doc = copy.deepcopy(DOCUMENT)
    node = doc
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    _decoded_or_refused(json.dumps(doc).encode())


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_are_decoded_or_refused_in_one_line(raw: bytes) -> None:
    _decoded_or_refused(raw)
    try:
        codec.load_view(raw, "fuzz.json")
    except codec.CodecError as exc:
        assert "\n" not in str(exc)


@settings(deadline=None, max_examples=200)
@given(_JSON)
def test_any_agent_answer_is_decoded_or_refused_in_one_line(answer: Any) -> None:
    try:
        codec.view_from_data(answer, "m: snapshot answer")
    except codec.CodecError as exc:
        assert "\n" not in str(exc)
