"""A stand-in for consul's KV HTTP API, for the store contract tests.

No consul binary can be installed here, so this serves the documented subset vxray
uses (https://developer.hashicorp.com/consul/api-docs/kv): ``GET /v1/kv/<key>``
with ``?recurse`` (JSON list, base64 ``Value``, ``ModifyIndex``/``CreateIndex``,
``X-Consul-Index`` header, 404 when nothing matches), ``PUT`` with ``?cas=``
(``true``/``false`` body) and ``DELETE`` with ``?cas=``/``?recurse``; ACL tokens
from ``X-Consul-Token`` or ``?token=`` (403 "Permission denied" otherwise).
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


class ConsulStandin:
    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.data: dict[str, tuple[bytes, int, int]] = {}  # key -> (value, create index, modify index)
        self.index = 1
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"consul://127.0.0.1:{self.server.server_port}/vxray-test"

    def start(self) -> ConsulStandin:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        kv = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, status: int, body: object) -> None:
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Consul-Index", str(kv.index))
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _parse(self) -> tuple[str, dict[str, list[str]]] | None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query, keep_blank_values=True)
                token = self.headers.get("X-Consul-Token") or (query.get("token") or [None])[0]
                if kv.token and token != kv.token:
                    self._reply(403, b"Permission denied")
                    return None
                if not parts.path.startswith("/v1/kv/"):
                    self._reply(404, b"not found")
                    return None
                return unquote(parts.path[len("/v1/kv/") :]), query

            def do_GET(self) -> None:
                parsed = self._parse()
                if parsed is None:
                    return
                key, query = parsed
                with kv.lock:
                    keys = sorted(k for k in kv.data if k.startswith(key)) if "recurse" in query else (
                        [key] if key in kv.data else [])  # fmt: skip
                    items = [
                        {"Key": k, "Value": base64.b64encode(kv.data[k][0]).decode() if kv.data[k][0] else None,
                         "CreateIndex": kv.data[k][1], "ModifyIndex": kv.data[k][2], "LockIndex": 0, "Flags": 0}
                        for k in keys
                    ]  # fmt: skip
                self._reply(200 if items else 404, items if items else b"")

            def do_PUT(self) -> None:
                parsed = self._parse()
                if parsed is None:
                    return
                key, query = parsed
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with kv.lock:
                    current = kv.data.get(key)
                    if "cas" in query and int(query["cas"][0]) != (current[2] if current else 0):
                        self._reply(200, False)
                        return
                    kv.index += 1
                    kv.data[key] = (body, current[1] if current else kv.index, kv.index)
                self._reply(200, True)

            def do_DELETE(self) -> None:
                parsed = self._parse()
                if parsed is None:
                    return
                key, query = parsed
                with kv.lock:
                    current = kv.data.get(key)
                    if "cas" in query and int(query["cas"][0]) != (current[2] if current else 0):
                        self._reply(200, False)
                        return
                    for k in [k for k in kv.data if k.startswith(key)] if "recurse" in query else [key]:
                        kv.data.pop(k, None)
                    kv.index += 1
                self._reply(200, True)

        return Handler
