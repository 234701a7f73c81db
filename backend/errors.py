"""Errors an operator sees as one line, never as a traceback."""


class VxrayError(Exception):
    """A failure with a message fit to print as is, naming the bad value."""


class NeedRoot(VxrayError):
    def __init__(self, what: str = "") -> None:
        detail = f" ({what})" if what else ""
        super().__init__(f"vxray needs root (CAP_NET_ADMIN){detail}")
