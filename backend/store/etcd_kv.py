"""etcd as the store, through its v3 JSON gateway with etcd3gw (``etcd://HOST:2379[,HOST:2379…][/prefix]``).

etcd3gw is kept by OpenStack and speaks the gateway every etcd 3.x serves on its
client port, over plain ``requests``: no gRPC stack to build. It gives the
transport (TLS session, API path discovery, base64); the KV calls are the
gateway's own ``/kv/range``, ``/kv/put``, ``/kv/txn`` and ``/kv/deleterange``
so that every check-and-set is one transaction comparing the key's
``mod_revision`` (0: absent), and every read is linearizable — a member cut off
from the others can never answer a read or a write with a stale success.

Fail-over: the endpoints are tried in turn, the last one that answered first.
A refused connection or a member without a leader moves on at once; a round in
which no endpoint succeeds is retried until ``DEADLINE`` (an election after the
leader died takes one to two seconds). It ends early, in one line, when no
endpoint answers at all (unreachable), or when the members that answer are too
few to ever make a quorum. A write whose answer was lost (a timeout after it was
sent) may have been applied: the retry reads the key back and reports the write
as done when the key holds what was written, so a claim is never lost or doubled.

When quorum is lost, reads still answer from a member's own copy (a
serializable read) with a note on stderr saying the view may be stale; writes
fail. User and password (etcd's auth) get a token from ``/auth/authenticate``,
renewed when etcd says it expired.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import time
from dataclasses import dataclass
from typing import Any

import requests
from etcd3gw import exceptions
from etcd3gw.client import Etcd3Client

from backend.errors import VxrayError
from backend.store.kv import KV

DEADLINE = 8.0  # seconds a call keeps trying through an election
DEGRADED = 5.0  # seconds reads go straight to a member's copy once quorum was found lost
TIMEOUT = (1.0, 2.0)  # connect, read: a partitioned member must not hold a call for etcd's own 7 s
RETRYABLE = ("leader changed", "no leader", "timed out", "too many requests", "not capable", "stopped")


@dataclass(frozen=True)
class Tls:
    """``?cacert=&cert=&key=`` as etcdctl names them: https with this CA, and a client certificate."""

    cacert: str | None = None
    cert: str | None = None
    key: str | None = None


class NoQuorum(VxrayError):
    """Members answer, but none can reach a majority: no write can be made, no read is linearizable."""


class _Retry(Exception):
    """One endpoint could not serve the call now; ``answered``: it answered at all (no refused connection)."""

    def __init__(self, why: str, answered: bool, sent: bool) -> None:
        super().__init__(why)
        self.answered, self.sent = answered, sent


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _range_end(prefix: bytes) -> bytes:
    """The first key after every key starting with ``prefix`` (etcd's prefix listing)."""
    for i in range(len(prefix) - 1, -1, -1):
        if prefix[i] < 0xFF:
            return prefix[:i] + bytes([prefix[i] + 1])
    return b"\0"


class EtcdKV(KV):
    def __init__(
        self,
        url: str,
        endpoints: tuple[tuple[str, int], ...],
        prefix: str,
        tls: Tls = Tls(),
        user: str | None = None,
        password: str | None = None,
        deadline: float = DEADLINE,
    ) -> None:
        """The parts of ``url`` as ``registry.parse_url`` checked them (IPv6 hosts without brackets)."""
        self.url = url
        self.prefix = f"/{prefix}/".encode()  # etcd's custom, as flannel's /coreos.com/network/
        self.deadline = deadline
        self.user, self.password = user, password
        self.clients = [self._client(host, port, tls) for host, port in endpoints]
        self.first = 0  # the endpoint that answered last
        self.token: str | None = None
        self.degraded_until = 0.0  # quorum was found lost: until then reads go to a member's copy at once
        self.noted = False

    @staticmethod
    def _client(host: str, port: int, tls: Tls) -> Etcd3Client:
        session = requests.Session()
        # members are addressed directly: $HTTP(S)_PROXY is for the world outside, and $REQUESTS_CA_BUNDLE would
        # silently replace the CA the URL names (requests lets the environment override a session's verify)
        session.trust_env = False
        if tls.cacert:
            session.verify = tls.cacert
        if tls.cert and tls.key:
            session.cert = (tls.cert, tls.key)
        return Etcd3Client(host, port, "https" if tls.cacert else "http", timeout=TIMEOUT, session=session)

    def close(self) -> None:
        for c in self.clients:
            c.session.close()

    # -- transport -----------------------------------------------------------------------------------

    def _post(self, c: Etcd3Client, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One request to one endpoint; what may succeed elsewhere or later is a ``_Retry``."""
        try:
            if self.user and self.token is None:
                self._authenticate(c)
            return c.post(c.get_url(path), json=payload, headers=self._auth())
        except exceptions.ConnectionFailedError as exc:
            text = exc.detail_text or ""  # etcd3gw keeps requests' words there, not in the exception's args
            if "SSL" in text:  # etcd3gw wraps requests' SSLError: a wrong CA or certificate is no outage
                ssl = re.search(r"\[SSL[^\]]*\] ([^(]+)", text)
                why = ssl.group(1).strip() if ssl else "the handshake failed"
                raise VxrayError(f"store {self.url}: TLS with {c.host}:{c.port} failed: {why}") from None
            cut = any(w in text for w in ("aborted", "RemoteDisconnected", "reset by peer"))  # after sending
            raise _Retry(f"{c.host}:{c.port} unreachable", answered=cut, sent=cut) from None
        except exceptions.ConnectionTimeoutError as exc:
            connecting = "connect timeout" in (exc.detail_text or "").lower()
            raise _Retry(f"{c.host}:{c.port} did not answer in time", not connecting, not connecting) from None
        except exceptions.Etcd3Exception as exc:
            message = _message(exc)
            if "token" in message and self.user and ("invalid" in message or "expired" in message):
                self.token = None  # etcd's simple tokens expire: authenticate again
                raise _Retry(message, answered=True, sent=False) from None
            if any(w in message for w in RETRYABLE):
                raise _Retry(f"{c.host}:{c.port}: {message}", answered=True, sent=True) from None
            raise VxrayError(f"store {self.url} refused the request: {message}") from None
        except requests.exceptions.SSLError as exc:
            raise VxrayError(f"store {self.url}: TLS with {c.host}:{c.port} failed: {_reason(exc)}") from None
        except (requests.RequestException, ValueError) as exc:  # a proxy's HTML, a body that is not JSON
            raise VxrayError(f"store {self.url}: {c.host}:{c.port} gave no etcd answer ({_reason(exc)})") from None

    def _authenticate(self, c: Etcd3Client) -> None:
        try:
            answer = c.post(c.get_url("/auth/authenticate"), json={"name": self.user, "password": self.password or ""})
        except (exceptions.ConnectionFailedError, exceptions.ConnectionTimeoutError):
            raise
        except exceptions.Etcd3Exception as exc:
            raise VxrayError(f"store {self.url} refused user {self.user!r}: {_message(exc)}") from None
        token = answer.get("token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise VxrayError(f"store {self.url}: etcd gave no token for user {self.user!r} (is auth enabled?)")
        self.token = token

    def _call(self, path: str, payload: dict[str, Any], lost: list[bool] | None = None) -> dict[str, Any]:
        """The call on the first endpoint that serves it, through elections, until ``deadline``.

        ``lost`` (a one-item list) is set when an attempt was sent and its answer lost: the write may have landed.
        """
        deadline = time.monotonic() + self.deadline
        pause = 0.05
        while True:
            why, answered = [], 0
            for i in [*range(self.first, len(self.clients)), *range(self.first)]:
                try:
                    result = self._post(self.clients[i], path, payload)
                except _Retry as exc:
                    why.append(str(exc))
                    answered += exc.answered
                    if lost is not None and exc.sent:
                        lost[0] = True
                    continue
                self.first = i
                return result
            if not answered:
                raise VxrayError(f"store {self.url} unreachable: {'; '.join(why)}")
            if time.monotonic() > deadline or not self._quorum_possible():
                raise NoQuorum(f"store {self.url} has no quorum (no leader answers): {'; '.join(why)}")
            time.sleep(pause)
            pause = min(pause * 2, 0.4)

    def _quorum_possible(self) -> bool:
        """Whether a leader may still serve: some member follows one, or the members that answer are a majority
        of the cluster (an election among them is under way). Asked of each endpoint's status and member list,
        which a member answers without a quorum."""
        size, alive = len(self.clients), 0
        for c in self.clients:
            try:
                status = c.post(c.get_url("/maintenance/status"), json={}, headers=self._auth())
                if status.get("leader"):
                    return True
                members = c.post(c.get_url("/cluster/member/list"), json={}, headers=self._auth())
            except (exceptions.Etcd3Exception, requests.RequestException, ValueError):
                continue
            alive += 1
            size = max(size, len(members.get("members") or []))
        return alive > size // 2

    def _auth(self) -> dict[str, str]:
        return {"Authorization": self.token} if self.token else {}

    def _read(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A linearizable read; without a quorum, the freshest copy a member holds, with a note (once)."""
        try:
            if time.monotonic() >= self.degraded_until:
                return self._call("/kv/range", payload)
        except NoQuorum:
            self.degraded_until = time.monotonic() + DEGRADED  # a view reading many keys waits once, not per key
        copies = []
        for c in self.clients:
            try:
                copies.append((self._post(c, "/kv/range", {**payload, "serializable": True}), c))
            except _Retry:
                continue
        if not copies:
            raise NoQuorum(f"store {self.url} has no quorum and no member answers")
        result, c = max(copies, key=lambda rc: int(rc[0].get("header", {}).get("revision", 0)))
        if not self.noted:
            self.noted = True
            print(f"vxray: note: store {self.url} has lost its quorum: showing the last state member "
                  f"{c.host}:{c.port} holds, which may be stale; changes are refused", file=sys.stderr)  # fmt: skip
        return result

    # -- the KV contract -----------------------------------------------------------------------------

    def get(self, key: str) -> tuple[bytes | None, int]:
        kvs = self._read({"key": _b64(self.prefix + key.encode())}).get("kvs") or []
        if not kvs:
            return None, 0
        return base64.b64decode(kvs[0].get("value", "")), int(kvs[0]["mod_revision"])

    def put(self, key: str, value: bytes, cas: int | None = None) -> bool:
        k, v = _b64(self.prefix + key.encode()), _b64(value)
        if cas is None:
            self._call("/kv/put", {"key": k, "value": v})  # the same value twice is the same state: retry freely
            return True
        lost = [False]
        answer = self._txn(k, cas, {"request_put": {"key": k, "value": v}}, lost)
        if answer.get("succeeded"):
            return True
        if lost[0]:  # an earlier attempt may have landed: then the key holds exactly what was written
            kvs = _ranged(answer)
            return bool(kvs) and kvs[0].get("value", "") == v and int(kvs[0]["mod_revision"]) != cas
        return False

    def delete(self, key: str, cas: int | None = None) -> bool:
        k = _b64(self.prefix + key.encode())
        if cas is None:
            self._call("/kv/deleterange", {"key": k})
            return True
        lost = [False]
        answer = self._txn(k, cas, {"request_delete_range": {"key": k}}, lost)
        return bool(answer.get("succeeded")) or (lost[0] and not _ranged(answer))

    def _txn(self, k: str, cas: int, then: dict[str, Any], lost: list[bool]) -> dict[str, Any]:
        """``then`` if the key's mod_revision is still ``cas``; else the key as it is now (to tell why)."""
        payload = {
            "compare": [{"key": k, "result": "EQUAL", "target": "MOD", "mod_revision": cas}],
            "success": [then],
            "failure": [{"request_range": {"key": k}}],
        }
        return self._call("/kv/txn", payload, lost)

    def items(self, prefix: str) -> dict[str, tuple[bytes, int]]:
        start = self.prefix + prefix.encode()
        kvs = self._read({"key": _b64(start), "range_end": _b64(_range_end(start))}).get("kvs") or []
        cut = len(self.prefix)
        return {base64.b64decode(i["key"])[cut:].decode(): (base64.b64decode(i.get("value", "")),
                                                           int(i["mod_revision"])) for i in kvs}  # fmt: skip

    def raw(self, prefix: str) -> dict[str, bytes]:
        """Every key under ``prefix`` outside vxray's own (flannel's ``/coreos.com/network/``), with its value."""
        start = prefix.encode()
        kvs = self._read({"key": _b64(start), "range_end": _b64(_range_end(start))}).get("kvs") or []
        return {base64.b64decode(i["key"]).decode(errors="replace"): base64.b64decode(i.get("value", "")) for i in kvs}


def _ranged(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The keys the failure branch of a ``_txn`` read."""
    for r in answer.get("responses") or []:
        if "response_range" in r:
            return r["response_range"].get("kvs") or []
    return []


def _message(exc: exceptions.Etcd3Exception) -> str:
    """etcd's own error text out of the gateway's JSON body (``{"error": …, "code": …}``)."""
    text = exc.detail_text or ""
    try:
        body = json.loads(text)
        text = body.get("error") or body.get("message") or text
    except (ValueError, AttributeError):
        pass
    return " ".join(str(text).split())[:300] or type(exc).__name__


def _reason(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
