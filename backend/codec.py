"""Snapshots, saved views and store records to JSON and back: typed, validated, lossless.

A saved snapshot is a ticket attachment, an offline input and a test fixture, so
``loads(dumps(s)) == s`` must hold exactly — and it is a stranger's file, so it is
decoded against the model's types (msgspec decodes JSON straight into the frozen
dataclasses, in C, checking every field as it goes) and then the values the
diagnostics parse (addresses, MACs, prefixes) are checked, so a bad file ends as
one line naming the JSON path and the bad value, never as a traceback later.
Adding a field to the model needs no change here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from backend import model
from backend.errors import VxrayError
from backend.heap import acyclic_build

FORMAT = "vxray-snapshot"
VERSION = 1
MAX_BYTES = 256 * 2**20  # a 4,000-namespace host with 200,000 table entries is well under this

T = TypeVar("T")

_encoder = msgspec.json.Encoder()


class CodecError(VxrayError, ValueError):
    """A document that is not what it claims to be; the message names where and what."""


class _Document(msgspec.Struct):
    """What ``vxray snapshot --json`` writes. The snapshot is kept raw until the envelope is known to be right."""

    format: str | None = None
    version: int | None = None
    snapshot: msgspec.Raw = msgspec.Raw()


class _SavedView(msgspec.Struct):
    """A saved app view or an agent's ``snapshot`` answer: a snapshot document, the store's labels, the root."""

    snapshot: msgspec.Raw = msgspec.Raw()
    labels: model.Labels = msgspec.field(default_factory=model.Labels)
    root: str = "host"
    format: str | None = None  # present when the file is a bare snapshot document instead


@dataclass(frozen=True)
class View:
    """What one machine shows: its snapshot, the store's labels there, and its own namespace's label."""

    snapshot: model.HostSnapshot
    labels: model.Labels = field(default_factory=model.Labels)
    root: str = "host"


def dumps(snapshot: model.HostSnapshot) -> bytes:
    """``vxray snapshot --json``: compact UTF-8 JSON (pipe it through ``jq`` to read it)."""
    return _encoder.encode(_document(snapshot))


def dump_view(view: View) -> bytes:
    """A saved app view (``-H file://`` and ``vxray app --load`` read it back)."""
    return _encoder.encode(view_data(view))


def view_data(view: View) -> dict[str, Any]:
    """A view as the agent's ``snapshot`` answer carries it: the snapshot document, labels and root."""
    return {"snapshot": _document(view.snapshot), "labels": view.labels, "root": view.root}


def _document(snapshot: model.HostSnapshot) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "snapshot": snapshot}


def to_data(obj: Any) -> Any:
    """Plain JSON-able data (dicts, lists, str, numbers) for a model object or record."""
    return msgspec.to_builtins(obj)


def encode(obj: Any) -> bytes:
    """JSON for anything made of the model's dataclasses, dicts, lists and plain values."""
    return _encoder.encode(obj)


def loads(text: bytes | str, where: str = "snapshot") -> model.HostSnapshot:
    """A snapshot saved by ``dumps``; anything else is one ``CodecError`` naming ``where`` and the JSON path."""
    return _snapshot(_bytes(text, where), where, "$")


def load_view(text: bytes | str, where: str) -> View:
    """A file ``-H file://`` or ``vxray app --load`` reads: a saved app view, or a bare snapshot document."""
    raw = _bytes(text, where)
    saved = _decode(raw, _SavedView, where, "$")
    if saved.format is not None:
        return View(_snapshot(raw, where, "$"))
    if not saved.snapshot:
        raise CodecError(f"{where}: not a vxray snapshot ($.format missing, expected {FORMAT!r}) "
                         "nor a saved view ($.snapshot missing)")  # fmt: skip
    return View(_snapshot(bytes(saved.snapshot), where, "$.snapshot"), saved.labels, saved.root)


def view_from_data(data: Any, where: str) -> View:
    """An agent's ``snapshot`` answer, already parsed from its protocol line."""
    return load_view(_encoder.encode(data), where)


def _bytes(text: bytes | str, where: str) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    _check_size(raw, where)
    return raw


def _snapshot(raw: bytes, where: str, path: str) -> model.HostSnapshot:
    """A snapshot document at ``path``: envelope first (a foreign file is named as such), then the typed body."""
    doc = _decode(raw, _Document, where, path)
    if doc.format != FORMAT:
        got = "missing" if doc.format is None else f"is {_shown(doc.format)}"
        raise CodecError(f"{where}: not a vxray snapshot ({path}.format {got}, expected {FORMAT!r})")
    if doc.version != VERSION:
        raise CodecError(f"{where}: unsupported snapshot version {_shown(doc.version)} (expected {VERSION})")
    if not doc.snapshot:
        raise CodecError(f"{where}: {path}.snapshot: missing")
    body = f"{path}.snapshot"
    return checked(_decode(bytes(doc.snapshot), model.HostSnapshot, where, body), where, body)


def read_file(path: str) -> bytes:
    """A file's bytes, refusing one larger than any snapshot (a stranger's file can be anything)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise CodecError(f"cannot read {path}: {exc.strerror}") from None
    _check_size(raw, path)
    return raw


def decode(raw: bytes | str, tp: type[T], where: str) -> T:
    """JSON text as a value of ``tp`` (a saved view, a store record)."""
    raw = raw.encode() if isinstance(raw, str) else raw
    _check_size(raw, where)
    return _decode(raw, tp, where, "$")


def _check_size(raw: bytes, where: str) -> None:
    if len(raw) > MAX_BYTES:
        raise CodecError(f"{where}: {len(raw)} bytes, more than the {MAX_BYTES // 2**20} MiB a snapshot may have")


def _decode(raw: bytes, tp: type[T], where: str, path: str) -> T:
    try:
        with acyclic_build():
            return msgspec.json.decode(raw, type=tp)
    except msgspec.ValidationError as exc:
        raise CodecError(_explain(str(exc), where, path, _parsed(raw))) from None
    except msgspec.DecodeError as exc:
        raise CodecError(f"{where}: not a vxray snapshot: not JSON ({exc})") from None
    except RecursionError:
        raise CodecError(f"{where}: {path}: nested too deep") from None


def _parsed(raw: bytes) -> Any:
    """The document as plain data, to show the bad value an error names (only ever on the error path)."""
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None


_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>.*)`)?$", re.S)
_STEP = re.compile(r"\[(\d+)\]|\.([^.\[]+)")


def _explain(message: str, where: str, prefix: str, data: Any) -> str:
    """msgspec's ``Expected `int`, got `str` - at `$.a[0].b``` as ``F: $.snapshot.a[0].b: expected int, got "x"``."""
    m = _AT.match(message)
    what, path = (m["what"], m["path"] or "") if m else (message, "")
    what = _lower(what.replace("`", ""))
    if missing := re.fullmatch(r"object missing required field (\S+)", what):
        path, what = f"{path}.{missing[1]}", "missing (a required field)"
    value = _at(data, path)
    if value is not _MISSING and what.startswith("expected"):
        what = re.sub(r", got \w+$", "", what) + f", got {_shown(value)}"
    return f"{where}: {prefix}{path}: {what}"


_MISSING = object()


def _at(data: Any, path: str) -> Any:
    for index, key in _STEP.findall(path):
        try:
            data = data[int(index)] if index else data[key]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return data


def _shown(value: Any) -> str:
    if isinstance(value, list | dict):
        return "array" if isinstance(value, list) else "object"
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:]


# The values the diagnostics parse: checked once here so a trace over a stranger's file cannot trip on them.
_MAC = re.compile(r"(?:[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2})*)?")  # any link layer's: Ethernet's 6 bytes, a tunnel's 4
_IPV4 = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
_IPV6 = r"[0-9a-fA-F:]*:[0-9a-fA-F:.]*(?:%[\w.-]+)?"
_IP = re.compile(f"{_IPV4}|{_IPV6}")
_DST = re.compile(rf"default|(?:{_IPV4}|{_IPV6}|\?)(?:/\d{{1,3}})?")  # `?`: a family rtnl does not decode


def checked(snap: model.HostSnapshot, where: str, path: str = "$") -> model.HostSnapshot:
    """``snap`` itself when every address, MAC and prefix in it is well-formed; else the first bad one, by path."""
    bad = next(_problems(snap), None)
    if bad is not None:
        at, value, kind = bad
        raise CodecError(f"{where}: {path}{at}: expected {kind}, got {_shown(value)}")
    return snap


def _problems(snap: model.HostSnapshot) -> Iterator[tuple[str, Any, str]]:
    for i, ns in enumerate(snap.namespaces):
        at = f".namespaces[{i}]"
        for j, lk in enumerate(ns.links):
            if lk.mac is not None and not _MAC.fullmatch(lk.mac):
                yield f"{at}.links[{j}].mac", lk.mac, "a MAC address"
            for k, a in enumerate(lk.addresses):
                if not _IP.fullmatch(a.address):
                    yield f"{at}.links[{j}].addresses[{k}].address", a.address, "an IP address"
                if not 0 <= a.prefixlen <= 128:
                    yield f"{at}.links[{j}].addresses[{k}].prefixlen", a.prefixlen, "a prefix length"
        for j, e in enumerate(ns.fdb):
            if not _MAC.fullmatch(e.mac):
                yield f"{at}.fdb[{j}].mac", e.mac, "a MAC address"
            if e.dst is not None and not _IP.fullmatch(e.dst):
                yield f"{at}.fdb[{j}].dst", e.dst, "an IP address"
        for j, n in enumerate(ns.neighbours):
            if not _IP.fullmatch(n.ip):
                yield f"{at}.neighbours[{j}].ip", n.ip, "an IP address"
            if n.mac is not None and not _MAC.fullmatch(n.mac):
                yield f"{at}.neighbours[{j}].mac", n.mac, "a MAC address"
        for j, r in enumerate(ns.routes):
            if not _DST.fullmatch(r.dst):
                yield f"{at}.routes[{j}].dst", r.dst, "a destination (default or a CIDR)"
            for name, value in (("gateway", r.gateway), ("source", r.source)):
                if value is not None and not _IP.fullmatch(value):
                    yield f"{at}.routes[{j}].{name}", value, "an IP address"
