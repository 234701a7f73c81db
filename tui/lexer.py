"""Colour the command line as it is typed, and mark a malformed MAC, IP or CIDR before Enter.

The same validators the operations use decide what is malformed, so a token
marked red here is exactly one the command would refuse.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.lexers import Lexer
from prompt_toolkit.styles import Style

from backend import validate
from backend.errors import VxrayError

STYLE = Style.from_dict({
    "command": "bold ansiblue", "flag": "ansicyan", "value": "ansigreen", "error": "bg:ansired ansiwhite",
    "comment": "ansibrightblack", "bottom-toolbar": "noreverse",
})  # fmt: skip
_MACLIKE = re.compile(r"^[0-9a-zA-Z]{1,2}(:[0-9a-zA-Z]{0,2}){2,}$")
_IPLIKE = re.compile(r"^\d+(\.\d*){2,}(/\d*)?$")


def problem(token: str) -> str | None:
    """Why ``token`` is a malformed MAC, IP or CIDR, or None."""
    try:
        if _MACLIKE.match(token):
            validate.mac(token)
        elif _IPLIKE.match(token) and "/" in token:
            ipaddress.IPv4Interface(token)
        elif _IPLIKE.match(token):
            validate.ipv4(token)
    except VxrayError as exc:
        return str(exc)
    except ValueError:
        return f"invalid CIDR {token!r}"
    return None


def first_problem(line: str) -> str | None:
    return next((p for token in line.split() if (p := problem(token))), None)


class CommandLexer(Lexer):
    def __init__(self, commands: Callable[[], set[str]]) -> None:
        self.commands = commands

    def lex_document(self, document: Document) -> Callable[[int], StyleAndTextTuples]:
        known = self.commands()

        def line(lineno: int) -> StyleAndTextTuples:
            out: StyleAndTextTuples = []
            first = True
            for part in re.split(r"(\s+)", document.lines[lineno]):
                if not part or part.isspace():
                    out.append(("", part))
                    continue
                if part.startswith("#"):
                    out.append(("class:comment", part))
                elif first:
                    out.append(("class:command" if part in known else "class:error", part))
                elif part.startswith("-"):
                    out.append(("class:flag", part))
                elif problem(part):
                    out.append(("class:error", part))
                elif _MACLIKE.match(part) or _IPLIKE.match(part):
                    out.append(("class:value", part))
                else:
                    out.append(("", part))
                first = False
            return out

        return line
