"""The key-value contract every store back-end keeps (embedded, consul, etcd).

Modelled on consul's KV API, the strictest of them: every key has a modify
index, and a write or delete can be made conditional on it (check-and-set), with
``cas=0`` meaning "only if the key does not exist". That is all allocation needs
to be safe when two hosts create at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class KV(ABC):
    """Keys are ``/``-separated paths; values are bytes."""

    url: str

    @abstractmethod
    def get(self, key: str) -> tuple[bytes | None, int]:
        """The value and its modify index; ``(None, 0)`` when absent."""

    @abstractmethod
    def put(self, key: str, value: bytes, cas: int | None = None) -> bool:
        """Write; with ``cas``, only if the key's modify index is still ``cas`` (0: absent)."""

    @abstractmethod
    def delete(self, key: str, cas: int | None = None) -> bool:
        """Delete; with ``cas``, only if the modify index is still ``cas``."""

    @abstractmethod
    def items(self, prefix: str) -> dict[str, tuple[bytes, int]]:
        """Every key under ``prefix`` with its value and modify index."""

    @abstractmethod
    def close(self) -> None:
        """Release the file or connection."""
