"""Errors an operator sees as one line, never as a traceback."""


class VxrayError(Exception):
    """A failure with a message fit to print as is, naming the bad value."""


class NeedRoot(VxrayError):
    def __init__(self, what: str = "") -> None:
        detail = f" ({what})" if what else ""
        super().__init__(f"vxray needs root (CAP_NET_ADMIN){detail}")


def one_line(message: object) -> str:
    """``message`` as the one line an operator sees: a control character (a newline in a stranger's name, a
    terminal escape in a file) is shown escaped, never acted on."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(message))
