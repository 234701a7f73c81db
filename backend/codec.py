"""Snapshots to JSON and back, losslessly.

A saved snapshot is a ticket attachment, an offline input and a test fixture, so
``load(dump(s)) == s`` must hold exactly. The codec is generic over frozen
dataclasses (the model's, and the store's records): it follows their type hints,
so adding a field needs no change here.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from functools import cache
from typing import Any

from backend import model
from backend.errors import VxrayError

FORMAT = "vxray-snapshot"
VERSION = 1


def to_data(obj: Any) -> Any:
    """Plain JSON-able data for a model object (dataclasses become dicts)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_data(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_data(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_data(v) for k, v in obj.items()}
    return obj


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_data(tp: Any, data: Any) -> Any:
    """Rebuild a value of type ``tp`` from what ``to_data`` produced."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if data is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return from_data(inner, data)
    if origin is tuple:
        inner = typing.get_args(tp)[0]
        return tuple(from_data(inner, x) for x in data)
    if origin is dict:
        _, inner = typing.get_args(tp)
        return {k: from_data(inner, v) for k, v in data.items()}
    if dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        return tp(**{k: from_data(hints[k], v) for k, v in data.items() if k in hints})
    return data


def dumps(snapshot: model.HostSnapshot, indent: int | None = 2) -> str:
    return json.dumps({"format": FORMAT, "version": VERSION, "snapshot": to_data(snapshot)}, indent=indent)


def loads(text: str) -> model.HostSnapshot:
    """Load a snapshot saved by ``dumps``; a foreign file gets a one-line error."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise VxrayError(f"not a vxray snapshot: invalid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise VxrayError("not a vxray snapshot: missing 'format': 'vxray-snapshot'")
    if doc.get("version") != VERSION:
        raise VxrayError(f"unsupported snapshot version {doc.get('version')!r} (expected {VERSION})")
    return from_data(model.HostSnapshot, doc["snapshot"])
