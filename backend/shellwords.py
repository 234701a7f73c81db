"""Command lines vxray prints for a person to paste into a shell.

Names are untrusted: the kernel accepts a namespace called ``qa;id`` and a device
called ``p$(id)``, Docker reports what its Engine says, and a snapshot file holds
whatever its author wrote. So every word of a printed command goes through
``shlex.quote``, and the shell reads back exactly the words vxray meant; an ordinary
word (``vm3``, ``10.0.0.1``, ``02:42:ac:15:00:01``, ``mtu.eth0=1500``) needs no quotes
and reads as it always did.
"""

from __future__ import annotations

import shlex


def shell_line(*words: str) -> str:
    """``words`` as one command line (``shlex.split`` gives ``words`` back). iptables' negation ``!``
    stays bare, as ``iptables-save`` prints it: alone between words no shell gives it a meaning."""
    return " ".join(word if word == "!" else shlex.quote(word) for word in words)
