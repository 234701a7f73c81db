"""What happened, as the app's workers tell it (past-tense events)."""

from __future__ import annotations

from textual.message import Message

from backend.model import HostSnapshot, Labels
from diagnostics.diff import Change
from diagnostics.doctor import Finding
from diagnostics.trace import Trace
from tui.vocabulary import Vocabulary


class SnapshotCollected(Message):
    """A read of every host, with the names completion offers (read from the store in the same worker)."""

    def __init__(self, snapshot: HostSnapshot, labels: Labels, seconds: float, vocabulary: Vocabulary | None) -> None:
        super().__init__()
        self.snapshot, self.labels, self.seconds, self.vocabulary = snapshot, labels, seconds, vocabulary


class CommandFinished(Message):
    def __init__(self, line: str, status: int, output: str) -> None:
        super().__init__()
        self.line, self.status, self.output = line, status, output


class TraceComputed(Message):
    """A trace of SRC -> DST over the snapshot shown, or why its ends could not be resolved."""

    def __init__(self, src: str, dst: str, result: Trace | None, error: str = "") -> None:
        super().__init__()
        self.src, self.dst, self.result, self.error = src, dst, result, error


class DoctorFound(Message):
    def __init__(self, findings: list[Finding]) -> None:
        super().__init__()
        self.findings = findings


class KernelChanged(Message):
    """What the kernel changed, as the netlink monitor woke the app for it: the re-read compared with the last."""

    def __init__(self, changes: list[Change], at: float) -> None:
        super().__init__()
        self.changes, self.at = changes, at
