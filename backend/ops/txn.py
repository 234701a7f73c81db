"""Roll back multi-step changes: every step registers how to undo itself."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any


class Undo:
    """``with Undo() as undo: …; undo.push(fn, *args)`` — on an exception, undo in reverse.

    Undo steps that fail are skipped so the rest still run; the original error is
    what the operator sees.
    """

    def __init__(self) -> None:
        self.steps: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def push(self, fn: Callable[..., Any], *args: Any) -> None:
        self.steps.append((fn, args))

    def __enter__(self) -> Undo:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            return
        for fn, args in reversed(self.steps):
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - best effort: keep undoing the rest
                continue
