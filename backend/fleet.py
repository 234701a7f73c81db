"""Several machines watched at once: a thread each, so a slow or dead one never holds up the others.

Each machine's thread connects, reads, subscribes to changes and reads again on
each; when the connection fails or drops it marks the machine offline with the
reason and tries again with a growing pause (1 s, 2 s, 4 s … 30 s). ``view``
merges what every machine last sent — an offline machine keeps its last
snapshot, badged offline — and never waits on the network.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from backend.errors import VxrayError
from backend.merge import merge
from backend.model import HostSnapshot, Labels
from backend.remote import Machine, Reading, RemoteError

MAX_BACKOFF = 30.0


class Fleet:
    def __init__(self, machines: list[Machine], changed: Callable[[], None] = lambda: None) -> None:
        self.machines = machines
        self.changed = changed  # called from a machine's thread whenever view() would differ
        self.readings: dict[str, Reading] = {}
        self.offline: dict[str, str] = {m.name: "connecting" for m in machines}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for m in self.machines:
            t = threading.Thread(target=self._follow, args=(m,), name=f"vxray-{m.name}", daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self) -> None:
        self.stopping.set()
        for m in self.machines:
            m.close()
        for t in self.threads:
            t.join(timeout=3)

    def _set(self, name: str, reading: Reading | None, why: str | None) -> None:
        with self.lock:
            if reading is not None:
                self.readings[name] = reading
            if why is None:
                self.offline.pop(name, None)
            else:
                self.offline[name] = why
        self.changed()

    def _follow(self, m: Machine) -> None:
        pause = 1.0
        while not self.stopping.is_set():
            try:
                m.connect()
                self._set(m.name, m.read(), None)
                pause = 1.0
                m.subscribe()
                while not self.stopping.is_set():
                    news = m.changes(0.5)
                    if news is None:
                        raise VxrayError(f"{m.name}: the connection dropped")
                    if news:
                        self._set(m.name, m.read(), None)
            except (VxrayError, OSError) as exc:
                m.close()
                if self.stopping.is_set():
                    return
                self._set(m.name, None, f"{exc} (next try in {pause:.0f} s)")
                self.stopping.wait(pause)
                pause = min(pause * 2, MAX_BACKOFF)

    def read_once(self) -> tuple[HostSnapshot, Labels]:
        """Every machine once, in parallel (a command, not the app); one that fails is offline with its reason."""

        def one(m: Machine) -> None:
            try:
                m.connect()
                self._set(m.name, m.read(), None)
            except VxrayError as exc:
                self._set(m.name, None, str(exc))
            finally:
                m.close()

        with ThreadPoolExecutor(max_workers=max(len(self.machines), 1)) as pool:
            list(pool.map(one, self.machines))
        if not self.readings:
            raise RemoteError("; ".join(self.offline.values()))
        return self.view()

    def view(self) -> tuple[HostSnapshot, Labels]:
        """Every machine's last reading as one snapshot (namespaces ``HOST:name``), offline ones badged."""
        with self.lock:
            readings = dict(self.readings)
            offline = dict(self.offline)
        parts = [(m.name, readings[m.name].snapshot, readings[m.name].labels, readings[m.name].root)
                 for m in self.machines if m.name in readings]  # fmt: skip
        snap, labels = merge(parts)
        return replace(snap, host=snap.host or "no host reached yet"), replace(labels, offline=offline)
