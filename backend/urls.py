"""The parts of a URL a stranger wrote (``--store``, ``-H``, the inventory, $VXRAY_STORE), checked one by one.

``urllib.parse`` is lenient where vxray must not be: it silently drops tabs and
newlines, raises bare ``ValueError`` for ``[::1`` or ``:99999``, lowercases and
keeps ``%2D`` in host names, and ignores a query field without ``=``. Each
function here takes ``bad``, which makes the caller's one-line error from a
reason ("the port 'x' is not 1-65535"), so every message names the whole URL.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from urllib.parse import SplitResult, unquote, urlsplit

from backend.errors import VxrayError

Bad = Callable[[str], VxrayError]

_HOST = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?$")  # a DNS name, an IPv4 address or an alias
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$")


def control(text: str) -> str | None:
    """The first control character in ``text``, as an error may show it (None: there is none)."""
    return next((repr(c) for c in text if not c.isprintable()), None)


def split(url: str, bad: Bad) -> SplitResult:
    """``url``'s parts, refusing control characters (``urlsplit`` would drop some and keep others)."""
    if (c := control(url)) is not None:
        raise bad(f"it holds the control character {c}")
    try:
        parts = urlsplit(url)
        parts.hostname  # noqa: B018 - urlsplit checks the brackets of an IPv6 host only when asked for it
    except ValueError as exc:  # "Invalid IPv6 URL": a '[' without its ']'
        raise bad("unbalanced '[' ']' around the host" if "Invalid IPv6" in str(exc) else str(exc)) from None
    if parts.fragment:
        raise bad(f"a #fragment ({parts.fragment!r}) means nothing here")
    return parts


def host(parts: SplitResult, bad: Bad) -> str:
    """The host: a name, an IPv4 address, or an IPv6 address in brackets (returned without them)."""
    hostport = parts.netloc.rpartition("@")[2]
    name = parts.hostname or ""
    if hostport.startswith("["):
        try:
            return str(ipaddress.IPv6Address(name))
        except ValueError:
            raise bad(f"{name!r} is not an IPv6 address") from None
    name = hostport.partition(":")[0]
    if not name:
        raise bad("no host name")
    if not _HOST.match(name) or (re.fullmatch(r"[0-9.]+", name) and not _ipv4(name)):
        raise bad(f"invalid host name {name!r}")
    return name.lower()  # as ssh and urlsplit compare host names


def _ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def port(parts: SplitResult, bad: Bad) -> int | None:
    """The port (None: none given), 1-65535."""
    hostport = parts.netloc.rpartition("@")[2]
    _, bracket, rest = hostport.rpartition("]")
    _, colon, text = (rest if bracket else hostport).partition(":")
    if not colon or not text:
        return None
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 65535):
        raise bad(f"the port {text!r} is not a number 1-65535")
    return int(text)


def user(parts: SplitResult, bad: Bad) -> str:
    """The login name before ``@`` ("" when none); a password is refused, never saved or passed on."""
    if parts.password is not None:
        raise bad("a password does not belong in the URL (vxray uses your SSH keys and agent)")
    name = parts.username
    if name is None:
        return ""
    if not _USER.match(name):
        raise bad(f"invalid user name {name!r}")
    return name


def options(parts: SplitResult, known: tuple[str, ...], repeatable: tuple[str, ...], bad: Bad) -> dict[str, list[str]]:
    """``?NAME=VALUE&…``: every name known, every value non-empty text not starting with ``-``."""
    found: dict[str, list[str]] = {}
    for field in parts.query.split("&") if parts.query else ():
        raw_name, eq, raw_value = field.partition("=")
        try:
            name, value = unquote(raw_name, errors="strict"), unquote(raw_value.replace("+", " "), errors="strict")
        except UnicodeDecodeError:
            raise bad(f"the option {field!r} is not UTF-8 once decoded") from None
        if name not in known:
            raise bad(f"unknown option {name!r} ({', '.join(known) or 'it takes none'})")
        if not eq or not value:
            raise bad(f"the option {name} has no value ({name}=…)")
        if (c := control(value)) is not None:
            raise bad(f"the option {name} holds the control character {c}")
        if value.startswith("-"):
            raise bad(f"the option {name}={value!r} starts with '-'")
        if name in found and name not in repeatable:
            raise bad(f"the option {name} is given twice")
        found.setdefault(name, []).append(value)
    return found
