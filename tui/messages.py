"""What happened, as the app's workers tell it (past-tense events)."""

from __future__ import annotations

from textual.message import Message

from backend.model import HostSnapshot, Labels


class SnapshotCollected(Message):
    def __init__(self, snapshot: HostSnapshot, labels: Labels, seconds: float) -> None:
        super().__init__()
        self.snapshot, self.labels, self.seconds = snapshot, labels, seconds


class CommandFinished(Message):
    def __init__(self, line: str, status: int, output: str) -> None:
        super().__init__()
        self.line, self.status, self.output = line, status, output
