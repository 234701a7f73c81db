"""The default store: one SQLite file, no server.

Good for one machine and for labs, where every "host" is a namespace on it. Each
check-and-set runs in an IMMEDIATE transaction, so concurrent vxray processes on
the machine serialise on the file lock and never both win.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3

from backend.errors import VxrayError
from backend.store.kv import KV

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, idx INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY CHECK (id = 0), idx INTEGER NOT NULL);
INSERT OR IGNORE INTO counter VALUES (0, 0);
"""


class EmbeddedKV(KV):
    def __init__(self, path: str) -> None:
        self.url = f"file://{path}"
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
            with contextlib.suppress(sqlite3.OperationalError):  # another connection is converting it right now
                self.db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; much faster commits
            self.db.execute("PRAGMA synchronous=NORMAL")  # a killed process loses nothing committed
            self.db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise VxrayError(f"store {self.url} unusable: {exc}") from None

    def close(self) -> None:
        self.db.close()

    def _next_index(self) -> int:
        self.db.execute("UPDATE counter SET idx = idx + 1 WHERE id = 0")
        return self.db.execute("SELECT idx FROM counter WHERE id = 0").fetchone()[0]

    def get(self, key: str) -> tuple[bytes | None, int]:
        row = self.db.execute("SELECT value, idx FROM kv WHERE key = ?", (key,)).fetchone()
        return (row[0], row[1]) if row else (None, 0)

    def _conditional(self, key: str, cas: int | None) -> bool:
        if cas is None:
            return True
        row = self.db.execute("SELECT idx FROM kv WHERE key = ?", (key,)).fetchone()
        return (row[0] if row else 0) == cas

    def put(self, key: str, value: bytes, cas: int | None = None) -> bool:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if not self._conditional(key, cas):
                return False
            self.db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (key, value, self._next_index()))
            return True
        finally:
            self.db.execute("COMMIT")

    def delete(self, key: str, cas: int | None = None) -> bool:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if not self._conditional(key, cas):
                return False
            self.db.execute("DELETE FROM kv WHERE key = ?", (key,))
            return True
        finally:
            self.db.execute("COMMIT")

    def items(self, prefix: str) -> dict[str, tuple[bytes, int]]:
        rows = self.db.execute(
            "SELECT key, value, idx FROM kv WHERE substr(key, 1, ?) = ? ORDER BY key", (len(prefix), prefix)
        )
        return {k: (v, i) for k, v, i in rows}
