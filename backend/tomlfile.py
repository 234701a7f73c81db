"""TOML files people write (lab topologies, the inventory), read as a stranger's: bounded, UTF-8, placed errors.

A file may be anything: a directory, gigabytes of zeros, Latin-1, arrays nested
ten thousand deep. Each of those ends as one line naming the file (and the line
when there is one), never as a traceback. tomllib gives no positions for the
values it parsed, so ``Locator`` finds the line of a table (the n-th
``[[hosts]]``) and of a key inside it, for errors an operator can go to.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

from backend.errors import VxrayError

MAX_BYTES = 2**20  # a topology of hundreds of containers is a few dozen KiB
SHOWN = 60  # characters of a bad value quoted in an error


def read(path: str, what: str) -> str:
    """The text of ``path`` (``what`` it should be: "lab file", "inventory"), or one line saying why not."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise VxrayError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise VxrayError(f"{path}: larger than {MAX_BYTES // 2**20} MiB: not a {what}")
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise VxrayError(f"{path}:{line}: not UTF-8 text (byte {raw[exc.start]:#04x})") from None


def loads(text: str, source: str) -> dict[str, Any]:
    """The document in ``text``; a syntax error names ``source`` and its line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        at = re.search(r"\(at line (\d+), column \d+\)$", str(exc))
        raise VxrayError(f"{source}:{at.group(1) if at else 1}: not valid TOML: {exc}") from None
    except RecursionError:  # `a = [[[[…` deep enough to exhaust the parser's stack
        raise VxrayError(f"{source}: not valid TOML: values nested too deeply") from None


def shown(value: Any) -> str:
    """A bad value as an error quotes it: its repr (escapes included), cut short."""
    text = repr(value)
    return text if len(text) <= SHOWN else f"{text[: SHOWN - 3]}..."


class Locator:
    """Finds the line of ``[[section]]`` number ``index`` and of ``key`` inside it."""

    def __init__(self, text: str, source: str) -> None:
        self.lines = text.split("\n")  # TOML counts only newlines; splitlines() would count \x0c, \u2028 …
        self.source = source

    def line(self, section: str | None, index: int | None, key: str | None) -> int:
        """1-based; the table's header when the key is not found, the top of the file when the table was
        written inline and has no header of its own."""
        if section is None and key is not None and (table := self._header(key, 0)) is not None:
            return table + 1  # a top-level table named by its own header: [exercise]
        start = 0 if section is None else (self._header(section, index or 0) or 0)
        if key is not None:
            keyline = re.compile(rf"^\s*{re.escape(key)}\s*=")
            for i in range(start, len(self.lines)):
                if (i > start or section is None) and self.lines[i].lstrip().startswith("["):
                    break
                if keyline.match(self.lines[i]):
                    return i + 1
        return start + 1

    def _header(self, section: str, index: int) -> int | None:
        """The line (0-based) of the ``index``-th ``[section]`` or ``[[section]]`` header."""
        header = re.compile(rf"^\s*\[\[?\s*{re.escape(section)}\s*\]\]?\s*(#.*)?$")
        starts = [i for i, line in enumerate(self.lines) if header.match(line)]
        return starts[index] if len(starts) > index else None

    def error(self, section: str | None, index: int | None, key: str | None, message: str,
              sub: str = "") -> VxrayError:  # fmt: skip
        """``FILE:LINE: section[index].key{sub}: message``; ``sub`` goes inside a value (``[1].ip``)."""
        where = ".".join(w for w in (f"{section}[{index}]" if index is not None else section, key) if w)
        return VxrayError(f"{self.source}:{self.line(section, index, key)}: {where}{sub}: {message}")
