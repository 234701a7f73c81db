"""consul as the store, through py-consul (``consul://HOST:PORT[/prefix]``).

Every key lives under the URL's prefix (default ``vxray/``). An ACL token comes
from ``--store-token`` or ``CONSUL_HTTP_TOKEN``, as consul's own CLI reads it.
Connection failures and ACL refusals become one-line errors naming the store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import consul
import requests

from backend.errors import VxrayError
from backend.store.kv import KV

T = TypeVar("T")


class ConsulKV(KV):
    def __init__(self, url: str, host: str, port: int, prefix: str, token: str | None = None) -> None:
        """The parts of ``url`` as ``registry.parse_url`` checked them (an IPv6 ``host`` without brackets)."""
        self.url = url
        self.prefix = prefix + "/"
        self.client = consul.Consul(host=f"[{host}]" if ":" in host else host, port=port, token=token)

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except requests.RequestException as exc:
            raise VxrayError(f"store {self.url} unreachable: {type(exc).__name__}") from None
        except consul.ACLPermissionDenied:
            raise VxrayError(f"store {self.url} refused the request: ACL permission denied (check the token)") from None
        except consul.ConsulException as exc:
            raise VxrayError(f"store {self.url} error: {exc}") from None

    def close(self) -> None:
        self.client.http.session.close()

    def get(self, key: str) -> tuple[bytes | None, int]:
        _, item = self._call(lambda: self.client.kv.get(self.prefix + key))
        return (item["Value"] or b"", item["ModifyIndex"]) if item else (None, 0)

    def put(self, key: str, value: bytes, cas: int | None = None) -> bool:
        return self._call(lambda: self.client.kv.put(self.prefix + key, value, cas=cas))

    def delete(self, key: str, cas: int | None = None) -> bool:
        return self._call(lambda: self.client.kv.delete(self.prefix + key, cas=cas))

    def items(self, prefix: str) -> dict[str, tuple[bytes, int]]:
        _, found = self._call(lambda: self.client.kv.get(self.prefix + prefix, recurse=True))
        cut = len(self.prefix)
        return {i["Key"][cut:]: (i["Value"] or b"", i["ModifyIndex"]) for i in found or ()}
