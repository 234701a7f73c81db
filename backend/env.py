"""vxray's own environment variables ($VXRAY_HOME, $VXRAY_STORE …), each read through here.

Whoever started vxray set them — a login script, a unit file, ssh's SetEnv, a
test — so a bad value must end as one line naming the variable and the value,
not as a traceback far from where it was set. Unset means the default; set,
even to nothing, the value must be right. A path must be absolute and its
directory must exist: the file (or, for $VXRAY_HOME, the directory itself) is
made on first use as the defaults are, but a typo never creates a tree.
"""

from __future__ import annotations

import os

from backend.errors import VxrayError
from backend.urls import control


def error(name: str, value: str, why: str) -> VxrayError:
    """``$NAME='value' why`` (the value quoted with its escapes: it may hold anything)."""
    shown = repr(value) if len(value) <= 200 else f"{value[:197]!r}..."
    return VxrayError(f"${name}={shown} {why}")


def text(name: str) -> str | None:
    """``$name`` (None: unset); empty, non-UTF-8 or holding a control character, it is refused."""
    value = os.environ.get(name)
    if value is None:
        return None
    if not value:
        raise error(name, value, "is empty (unset it for the default)")
    try:
        value.encode()
    except UnicodeEncodeError:  # os.environ keeps undecodable bytes as lone surrogates
        raise error(name, value, "is not UTF-8") from None
    if (c := control(value)) is not None:
        raise error(name, value, f"holds the control character {c}")
    return value


def path(name: str, default: str, directory: bool = False, must_exist: bool = False) -> str:
    """``$name`` as an absolute path (``default`` when unset): a ``directory``, or a file; ``must_exist``
    when vxray only reads it (an ssh configuration)."""
    value = text(name)
    if value is None:
        return default
    if not os.path.isabs(value):
        raise error(name, value, "is not an absolute path")
    if not os.path.isdir(os.path.dirname(value.rstrip("/")) or "/"):
        raise error(name, value, "is in a directory that does not exist")
    if os.path.exists(value) and os.path.isdir(value) != directory:
        raise error(name, value, "is a file, not a directory" if directory else "is a directory, not a file")
    if must_exist and not os.path.exists(value):
        raise error(name, value, "does not exist")
    return value
