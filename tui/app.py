"""The Textual app: every host's namespaces, links, bridges, veths, VXLAN FDBs, neighbours, routes and firewall
rules (iptables and nftables), live, with the command line, the trace and the doctor inside.

The app only renders and dispatches. Snapshots are read by a thread worker and
arrive as ``SnapshotCollected``; a second worker blocks on netlink
(``backend.monitor``) and reads again as soon as the kernel changes something —
no polling, so an idle app costs no CPU. Commands typed after ``:`` run in-process, in a worker, through the
same dispatch and registry as the shell and bash (the same confirmations), their output in the log pane;
``trace`` and ``doctor`` are computed in workers too (they read the store) and shown in their views. A
worker that fails is one red line in the log pane and a notification, never silence.
"""

from __future__ import annotations

import contextlib
import gc
import io
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, ClassVar

from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from rich.style import Style
from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Container, Horizontal, ScrollableContainer, Vertical
from textual.coordinate import Coordinate
from textual.screen import ModalScreen, Screen
from textual.suggester import Suggester
from textual.widgets import (
    DataTable,
    Footer,
    Header,
    Input,
    Label,
    ListItem,
    ListView,
    RichLog,
    Select,
    Static,
    TabbedContent,
    TabPane,
    Tree,
)
from textual.widgets.data_table import ColumnKey, RowKey
from textual.widgets.tree import TreeNode
from textual.worker import Worker, WorkerState, get_current_worker

from backend.errors import VxrayError, one_line
from backend.model import HostSnapshot, Labels
from backend.shellwords import shell_line
from diagnostics.devices import resolve, target
from diagnostics.diff import Change
from diagnostics.diff import diff as compare_snapshots
from diagnostics.doctor import Finding, doctor
from diagnostics.graph import build as build_graph
from diagnostics.trace import Trace, trace
from diagnostics.world import World
from tui import dispatch
from tui.capture import local_point, split_words
from tui.capture_view import CaptureScreen
from tui.commands import endpoint
from tui.completer import VxrayCompleter
from tui.context import desired, inventory_desired
from tui.drawing import Line, draw, on_path
from tui.evidence import change_cells
from tui.messages import CommandFinished, DoctorFound, KernelChanged, SnapshotCollected, TraceComputed
from tui.output import names
from tui.registry import asks, offered
from tui.show import TABLES, VIEW_OF
from tui.source import Source
from tui.tables import VIEWS, hosts, rows, trace_ends
from tui.topology import Node as TopoNode
from tui.topology import tree as topology_tree
from tui.trace_text import fix_lines
from tui.vocabulary import Vocabulary, build, from_machines

HIGHLIGHT_SECONDS = 2.0
MAX_ROWS = 500  # a table shows this many matching rows; filtering searches them all
PALETTE_TRACES = 200  # "Trace A -> B" entries offered in the command palette
MAX_CHANGES = 5000  # kernel changes kept for the Changes view, newest first


def paint(lines: list[Line], path: set[str] | None = None, failed: str = "") -> Text:
    """The drawing as text: a click on a node jumps to its rows; a trace's path green, its stop red."""
    out = Text(no_wrap=True, overflow="crop")
    for line in lines:
        for span in line:
            style = Style()
            if span.key and span.view:
                style += Style(meta={"@click": f"app.jump({span.view!r}, {span.key!r})"})
            if span.key and span.key == failed:
                style += Style(color="white", bgcolor="red")
            elif span.key and path and span.key in path:
                style += Style(color="black", bgcolor="green")
            out.append(span.text, style)
        out.append("\n")
    out.rstrip()
    return out


class CommandSuggester(Suggester):
    """The shell's completer as the command line's inline suggestion (→ accepts it)."""

    def __init__(self, completer: Callable[[], VxrayCompleter]) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.make = completer
        self.completer: VxrayCompleter | None = None  # built at the first keystroke: not on the first paint's path

    async def get_suggestion(self, value: str) -> str | None:
        self.completer = self.completer or self.make()
        first = next(iter(self.completer.get_completions(Document(value), CompleteEvent())), None)
        return None if first is None else value[: len(value) + first.start_position] + first.text


class Confirm(ModalScreen[bool]):
    """Yes or no before the app changes the kernel."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        yield Label(Text(f"{self.question}\n\n[y] yes   [n] no"), id="question")  # as written: no markup

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


# The app's actions, once: their keys, the footer, the command palette and the help screen draw from here.
# (key, action, arguments, title, what it does)
ACTIONS: tuple[tuple[str, str, tuple[str, ...], str, str], ...] = (
    ("colon", "command", (), "Command", "run a vxray command, as in the shell; → accepts the suggestion"),
    ("slash", "filter", (), "Filter", "keep the rows matching what you type (all rows are searched; 500 shown)"),
    ("t", "show_tab", ("Trace",), "Trace", "pick a source and a destination: the packet hop by hop"),
    ("d", "show_tab", ("Doctor",), "Doctor", "every host checked: findings, most likely first, with fixes"),
    ("k", "show_tab", ("Changes",), "Changes", "what the kernel changed since the app started, newest first"),
    ("f", "apply_fix", (), "Apply fix", "run the fix the trace suggests (asks first), then trace again"),
    ("c", "capture", (), "Capture", "packets on the link, port, veth or trace step under the cursor (w save, o open)"),
    ("r", "refresh", (), "Refresh", "read every host again (the app also follows the kernel by itself)"),
    ("question_mark", "help", (), "Help", "what the keys do"),
    ("q", "quit", (), "Quit", "leave the app"),
)
KEY_NAMES = {"colon": ":", "slash": "/", "question_mark": "?"}


def _binding_action(action: str, arguments: tuple[str, ...]) -> str:
    return f"{action}({', '.join(repr(a) for a in arguments)})" if arguments else action


class Help(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,question_mark,q", "dismiss", "Close")]
    TEXT = "\n".join([
        "vxray — what the keys do", "",
        *(f"  {KEY_NAMES.get(key, key):<3} {title}: {text}" for key, _, _, title, text in ACTIONS),
        "  click a box in the Topology drawing: its rows; a trace's path is green there, its stop red",
        "  Enter on a row with a MAC or IP: its neighbour/FDB entries and who owns it",
        "  click a column header: sort by it (again: reverse)",
        "  Ctrl-P  command palette (every key's action, every command, a trace per pair) and themes;  Esc  back",
    ])  # fmt: skip

    def compose(self) -> ComposeResult:
        yield Label(self.TEXT, id="question")


class VxrayApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "vxray"
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (150, "-wide")]
    BINDINGS: ClassVar[list[BindingType]] = [
        *(Binding(key, _binding_action(action, arguments), title, tooltip=text)
          for key, action, arguments, title, text in ACTIONS),
        Binding("escape", "leave_input", "Back", show=False),
    ]  # fmt: skip

    def __init__(self, source: Source, live: bool = True, read_only: bool = False) -> None:
        super().__init__()
        self.source = source
        self.read_only = read_only
        self.live = live and (source.scope is not None or source.follow is not None)
        self.snapshot: HostSnapshot | None = None
        self.labels = Labels()
        self.world: World | None = None
        self.host: str | None = None
        self.text = ""
        self.seen: dict[str, set[str]] = {}  # view -> row keys already shown
        self.fresh: dict[str, float] = {}  # row key -> when it appeared
        self.last_trace: tuple[str, str, Trace] | None = None
        self.vocabulary = Vocabulary()
        self.sorted: dict[str, ColumnKey | None] = {}  # table -> the column it is sorted by
        self.row_keys: dict[str, dict[RowKey, str]] = {}  # view -> the table's row -> its key in tui.tables
        self.findings: list[Finding] = []
        self.badges: list[tuple[str, bool]] = []  # hosts listed, and whether each is offline
        start = time.perf_counter()  # read before the UI starts: a thread competing with its start is slower
        snap, labels = source.read()
        self.first: SnapshotCollected | None = SnapshotCollected(
            snap, labels, time.perf_counter() - start, self.vocabulary_of(snap, labels)
        )
        self.one_command = threading.Lock()  # a command's output is captured whole: one at a time
        self.ends: list[str] = []  # what the trace's pickers offer
        self.kernel_changes: list[tuple[float, Change]] = []  # (when, what), newest first

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            yield ListView(id="hosts")
            with Vertical(id="main"):
                yield Input(placeholder="filter: type to keep matching rows (Esc: back)", id="filter")
                yield Static("", id="status")
                with TabbedContent(id="views"):
                    with TabPane("Topology", id="tab-Topology"):
                        with ScrollableContainer(id="drawing-box"):
                            yield Static("", id="drawing")
                        yield Tree("hosts", id="topology")
                    for view, columns in VIEWS.items():
                        with TabPane(view, id=f"tab-{view}"):
                            table: DataTable[Any] = DataTable(id=f"table-{view}", zebra_stripes=True, cursor_type="row")
                            table.add_columns(*columns)
                            yield table
                    with TabPane("Trace", id="tab-Trace"):
                        with Horizontal(id="pick"):
                            yield Select[str]([], prompt="source", id="src")
                            yield Select[str]([], prompt="destination", id="dst")
                        with Container(id="trace-body"):
                            with Vertical(id="trace-steps"):
                                yield Static("pick a source and a destination, or type `:trace SRC DST`", id="verdict")
                                yield DataTable(id="trace", cursor_type="row")
                            with ScrollableContainer(id="trace-map"):
                                yield Static("", id="trace-drawing")
                    with TabPane("Doctor", id="tab-Doctor"):
                        yield DataTable(id="doctor", cursor_type="row")
                        yield Static("", id="evidence")
                    with TabPane("Changes", id="tab-Changes"):
                        yield DataTable(id="changes", cursor_type="row", zebra_stripes=True)
        yield RichLog(id="log", max_lines=500, wrap=True)
        yield Input(
            placeholder=": a vxray command — network ls, fdb sync prod, trace vm33 vm3, doctor",
            id="command",
            suggester=CommandSuggester(lambda: VxrayCompleter(lambda: self.vocabulary, lambda: self.host, "line")),
        )
        yield Footer()

    def on_mount(self) -> None:
        # A snapshot is ~100,000 small acyclic objects, freed by reference counting. With the default
        # thresholds the cycle collector runs hundreds of times per read and rescans every live row;
        # measured on the scale workload (benchmarks/tui.py): kernel change to screen 550 ms -> 334 ms.
        gc.set_threshold(100_000, 20, 20)
        gc.freeze()  # what exists at start (Textual, the app) is never garbage: stop rescanning it
        self.sub_title = self.source.name
        self.query_one("#trace", DataTable).add_columns("#", "dir", "host", "namespace", "table", "entry", "decision")
        self.query_one("#doctor", DataTable).add_columns("likelihood", "host", "finding")
        self.query_one("#changes", DataTable).add_columns("time", "host", "namespace", "", "kind", "object", "what")
        self.query_one("#filter").display = False
        if self.first is not None:  # the kernel is watched once this first snapshot is on screen
            self.post_message(self.first)
            self.first = None

    # -- workers -----------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="collect", exit_on_error=False)
    def collect(self) -> None:
        start = time.perf_counter()
        snap, labels = self.source.read()
        seconds = time.perf_counter() - start
        self.post_message(SnapshotCollected(snap, labels, seconds, self.vocabulary_of(snap, labels)))

    @work(thread=True, exclusive=True, group="monitor", exit_on_error=False)
    def watch_kernel(self) -> None:
        from backend.monitor import Monitor

        worker = get_current_worker()
        if self.source.follow is not None:  # remote machines: each has its thread; read() only merges
            self.source.follow(self.collect, lambda: worker.is_cancelled)
            return
        assert self.source.scope is not None
        monitor = Monitor(self.source.scope())
        last: HostSnapshot | None = None
        try:
            while not worker.is_cancelled:
                changed = monitor.wait(0.5)  # wakes to notice the app quitting; no work meanwhile
                if not changed:
                    continue
                time.sleep(0.005)  # let a burst of changes finish, then read once
                changed |= monitor.wait(0)
                start = time.perf_counter()
                before = last or self.snapshot
                snap, labels = self.source.read(before, changed)  # only what changed, read whole
                last = snap
                seconds = time.perf_counter() - start
                self.post_message(SnapshotCollected(snap, labels, seconds, self.vocabulary_of(snap, labels)))
                if before is not None:  # after the new state is on its way to the screen: what changed, for the log
                    found = compare_snapshots(before, snap, labels, changed)
                    if found:
                        self.post_message(KernelChanged(found, time.time()))
                if {ns.name for ns in snap.namespaces} != set(monitor.socks.values()):
                    fresh = Monitor(self.source.scope())  # a new container's namespace is watched too; the old
                    monitor.close()  # sockets stayed open until now, so a change meanwhile re-arms the next wait
                    monitor = fresh
        finally:
            monitor.close()

    def vocabulary_of(self, snap: HostSnapshot, labels: Labels) -> Vocabulary | None:
        """The names the command line completes (the shell's, from the store): read in the worker that read the
        snapshot, never on the event loop. None: a saved view, whose names never change."""
        if self.source.context is not None:
            from backend.lab import runner

            return build(self.source.context().store, snap, labels, runner.running(), runner.builtin_names())
        return from_machines(snap, labels) if self.source.follow is not None else None

    @work(thread=True, group="command", exit_on_error=False)
    def run_command(self, words: list[str], on: str | None = None) -> None:
        """One command, in-process, through the same dispatch as bash and the shell; its output (and its error
        line) go to the log pane. ``on``: the machine it must run on (a fix: where the trace stopped)."""
        flags = [*self.source.flags, *(["--read-only"] if self.read_only and "--read-only" not in self.source.flags
                                       else [])]  # fmt: skip
        if self.source.follow is not None and (on or self.host):
            flags += ["--on", on or self.host or ""]  # several machines: a command runs on one of them
        out = io.StringIO()
        with self.one_command, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                status = dispatch.run_words(flags, words, "line")
            except VxrayError as exc:
                out.write(f"vxray: {one_line(exc)}\n")
                status = 2
            except SystemExit as exc:  # --help
                status = exc.code if isinstance(exc.code, int) else 0
        self.post_message(CommandFinished(shell_line(*words), status, out.getvalue().rstrip()))

    @work(thread=True, exclusive=True, group="trace", exit_on_error=False)
    def compute_trace(self, src: str, dst: str) -> None:
        """Resolve the ends as ``vxray trace`` does (the store's names first) and trace over the snapshot shown."""
        world = self.world
        assert world is not None  # show_trace starts this only once a snapshot is shown
        try:
            if self.source.context is not None:
                ctx = self.source.context()
                src_ns, _ = endpoint(ctx, world, src)
                dst_ip, port = endpoint(ctx, world, dst, src)
            else:  # a saved view, machines: containers by their namespace and address, or namespaces and IPs
                place = world.place_of(src)
                if place is None:
                    raise VxrayError(f"unknown container or namespace {src!r}")
                dst_ip, port = world.endpoint_of(dst, place)
                src_ns = place.label
            result = trace(world, src_ns, dst_ip, "tcp" if port else "icmp", port)
        except VxrayError as exc:  # a bad name is said in the verdict, the app goes on
            self.post_message(TraceComputed(src, dst, None, one_line(exc)))
            return
        self.post_message(TraceComputed(src, dst, result))

    @work(thread=True, exclusive=True, group="doctor", exit_on_error=False)
    def compute_doctor(self) -> None:
        """The same reference as ``vxray doctor``: the store's desired state, the inventory's store over --host,
        else what the hosts show together."""
        world = self.world
        assert world is not None  # show_doctor starts this only once a snapshot is shown
        if self.source.context is not None:
            want = desired(world, self.source.context().store)
        elif self.source.follow is not None:
            want = inventory_desired(world)
        else:
            want = desired(world, None)
        self.post_message(DoctorFound(doctor(world, want)))

    # -- events ------------------------------------------------------------------------------------

    @on(SnapshotCollected)
    def _collected(self, event: SnapshotCollected) -> None:
        if not self.is_running or not self.query("#hosts"):
            return  # a read that finished while the app was closing
        if self.snapshot is None and self.live:
            self.watch_kernel()
        self.snapshot, self.labels = event.snapshot, event.labels
        self.world = World([event.snapshot], event.labels)
        if event.vocabulary is not None:  # the command line completes from the same names as the shell
            self.vocabulary = event.vocabulary
        names = hosts(event.labels, event.snapshot)
        hosts_view = self.query_one("#hosts", ListView)
        shown = [(h, h in event.labels.offline) for h in names]
        if self.badges != shown:
            self.badges = shown
            hosts_view.clear()
            hosts_view.extend(ListItem(Label(Text(f"○ {h} offline", style="red") if off else Text(f"● {h}")), name=h)
                              for h, off in shown)  # fmt: skip
            self.host = self.host if self.host in names else names[0]
            for h, why in event.labels.offline.items():
                self.log_line(f"{h} is offline: {why}")
        ends = trace_ends(event.snapshot, event.labels)
        for select in self.query("#src, #dst").results(Select):
            if self.ends != ends:
                keep = select.value
                select.set_options((e, e) for e in ends)
                if keep in ends:
                    select.value = keep
        self.ends = ends
        self.render_tables()
        if self.last_trace is not None:
            self.show_trace(*self.last_trace[:2])
        took = f" in {event.seconds * 1000:.0f} ms" if self.source.scope is not None else ""  # a file: fixed text
        self.log_line(f"{self.source.name}: snapshot of {len(event.snapshot.namespaces)} namespaces{took}")

    @on(CommandFinished)
    def _finished(self, event: CommandFinished) -> None:
        if not self.is_running:
            return
        mark = "✓" if event.status == 0 else f"✗ exit {event.status}"
        self.log_line(f":{event.line}  {mark}", error=event.status != 0)
        if event.output:
            self.log_line(event.output)
        self.collect()

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        """A worker that raised: one red line in the log pane and a notification, and the app goes on."""
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        text = f"{event.worker.group} failed: {type(error).__name__}: {one_line(error) if error else ''}"
        self.log_line(text, error=True)
        self.notify(text, title="vxray", severity="error")

    @on(TraceComputed)
    def _traced(self, event: TraceComputed) -> None:
        if not self.is_running or self.snapshot is None:
            return
        if event.result is None:
            self.query_one("#verdict", Static).update(Text(f"cannot trace {event.src} -> {event.dst}: {event.error}"))
            return
        self.render_trace(event.src, event.dst, event.result)

    @on(KernelChanged)
    def _changed(self, event: KernelChanged) -> None:
        self.kernel_changes[:0] = [(event.at, c) for c in event.changes]
        del self.kernel_changes[MAX_CHANGES:]
        if self.is_running and self.query("#views") and self.active_view() == "Changes":
            self.render_changes()

    @on(DoctorFound)
    def _diagnosed(self, event: DoctorFound) -> None:
        if not self.is_running:
            return
        self.findings = event.findings
        table = self.query_one("#doctor", DataTable)
        table.clear()
        for f in self.findings:
            table.add_row(f"{f.likelihood:.0%}", f.host, f.title)
        if not self.findings:
            self.query_one("#evidence", Static).update("no findings")

    @on(ListView.Selected, "#hosts")
    def _host(self, event: ListView.Selected) -> None:
        self.host = event.item.name
        self.render_tables()
        if self.host in self.labels.offline:
            self.query_one("#status", Static).update(f"{self.host} is offline: {self.labels.offline[self.host]}")

    @on(Select.Changed, "#src, #dst")
    def _picked(self, event: Select.Changed) -> None:
        src, dst = (self.query_one(f"#{end}", Select).value for end in ("src", "dst"))
        if isinstance(src, str) and isinstance(dst, str) and src != dst:
            self.show_trace(src, dst)

    @on(Input.Changed, "#filter")
    def _filter(self, event: Input.Changed) -> None:
        self.text = event.value
        self.render_tables()

    @on(Input.Submitted, "#command")
    def _command(self, event: Input.Submitted) -> None:
        line = event.value.strip().lstrip(":")
        event.input.value = ""
        self.set_focus(None)  # as in k9s: the command ran, keys go back to the views
        if line:
            self.dispatch_line(line)

    @on(DataTable.HeaderSelected)
    def _sort(self, event: DataTable.HeaderSelected) -> None:
        """Click a column header to sort by it; again to reverse."""
        table = event.data_table
        reverse = self.sorted.get(str(table.id)) == event.column_key
        table.sort(event.column_key, reverse=reverse)
        self.sorted[str(table.id)] = None if reverse else event.column_key

    @on(DataTable.RowSelected)
    def _jump(self, event: DataTable.RowSelected) -> None:
        """Enter on a row with a MAC or an IP: the neighbour entries and the endpoint that own it."""
        if event.data_table.id not in ("table-FDB", "table-Neighbours", "table-Links"):
            return
        cells = [str(c) for c in event.data_table.get_row_at(event.cursor_row)]
        target = next((c for c in cells[1:] if c.count(":") == 5 or c.count(".") == 3), None)
        if target is None:
            return
        owner = next((f"{ns} {lk.name}" for ns, lk in self._owners(target)), "no namespace here")
        self.log_line(f"{target}: {owner}")
        self.action_jump("Neighbours" if event.data_table.id != "table-Neighbours" else "FDB", target)

    def _owners(self, target: str) -> list[tuple[str, Any]]:
        if self.world is None:
            return []
        found = self.world.macs.get(target, []) or [(k, lk) for k, lk in self.world.owners(target)]
        return [(self.labels.containers.get(self.world.place(k).label, self.world.place(k).label), lk)
                for k, lk in found]  # fmt: skip

    @on(DataTable.RowHighlighted, "#doctor")
    def _finding(self, event: DataTable.RowHighlighted) -> None:
        if 0 <= event.cursor_row < len(self.findings):
            f = self.findings[event.cursor_row]
            fix = f"\n{fix_lines(f.fix)[0]}" if f.fix else ""  # the vxray command, or what it lacks
            self.query_one("#evidence", Static).update(Text("\n".join(f.evidence) + fix))  # no markup: `a[b]` as is

    # -- rendering ---------------------------------------------------------------------------------

    def active_view(self) -> str:
        return self.query_one("#views", TabbedContent).active.removeprefix("tab-")

    def render_tables(self, views: list[str] | None = None) -> None:
        """Fill the tables of ``views`` (default: the one shown; the others fill when their tab opens)."""
        if self.snapshot is None or not self.is_running or not self.query("#views"):
            return  # nothing read yet, or the app is closing (a highlight timer may still fire)
        now = time.monotonic()
        for view in views or [self.active_view()]:
            if view == "Topology":
                self.render_topology()
            if view == "Changes":
                self.render_changes()
            if view not in VIEWS:
                continue
            table = self.query_one(f"#table-{view}", DataTable)
            found = rows(self.snapshot, self.labels, view, self.host, self.text)
            known = self.seen.get(view)
            keys = {key for key, _ in found}
            if known is not None:
                for key in keys - known:
                    self.fresh[key] = now
            self.seen[view] = (known or set()) | keys
            shown = sorted(found, key=lambda r: -self.fresh.get(r[0], 0))[:MAX_ROWS]  # new rows first
            table.clear()
            added = table.add_rows(
                (tuple(Text(c, style="bold reverse") for c in cells) if now - self.fresh.get(key, 0) < HIGHLIGHT_SECONDS
                 else cells for key, cells in shown)
            )  # fmt: skip
            self.row_keys[view] = dict(zip(added, (key for key, _ in shown), strict=True))  # sorting keeps them
            more = f" — the first {MAX_ROWS} shown, `/` narrows them" if len(found) > MAX_ROWS else ""
            self.query_one("#status", Static).update(f"{view} of {self.host}: {len(found)} rows{more}")
        if any(now - t < HIGHLIGHT_SECONDS for t in self.fresh.values()):
            self.set_timer(HIGHLIGHT_SECONDS, self.render_tables)

    def render_changes(self) -> None:
        """The kernel changes seen since start, newest first (all hosts: a timeline), filtered by ``/``."""
        found = [change_cells(at, c) for at, c in self.kernel_changes]
        found = [cells for cells in found if not self.text or any(self.text in cell for cell in cells)]
        table = self.query_one("#changes", DataTable)
        table.clear()
        table.add_rows(found[:MAX_ROWS])
        watched = "the netlink monitor" if self.live and self.source.follow is None else "nothing: not watched here"
        self.query_one("#status", Static).update(f"Changes since start ({watched}): {len(found)}, newest first")

    @on(TabbedContent.TabActivated, "#views")
    def _tab(self, event: TabbedContent.TabActivated) -> None:
        self.render_tables()

    def render_topology(self) -> None:
        assert self.snapshot is not None
        graph = build_graph(self.snapshot, self.labels, self.world)
        path, failed = on_path(graph, self.last_trace[2]) if self.last_trace else (set(), "")
        self.query_one("#drawing", Static).update(paint(draw(graph), path, failed))
        widget = self.query_one("#topology", Tree)
        widget.clear()
        widget.root.expand()

        def add(parent: TreeNode[tuple[str, str]], node: TopoNode) -> None:
            child = parent.add(node.label, data=(node.view, node.jump), expand=True)
            for sub in node.children:
                add(child, sub)
            if not node.children:
                child.allow_expand = False

        for host in topology_tree(graph):
            add(widget.root, host)

    @on(Tree.NodeSelected, "#topology")
    def _topology_jump(self, event: Tree.NodeSelected[tuple[str, str]]) -> None:
        """A node jumps to its rows: the view it belongs to, filtered by its name."""
        if event.node.data:
            self.action_jump(*event.node.data)

    def action_jump(self, view: str, jump: str) -> None:
        """The rows of one thing (a node of the topology): its view, filtered by its name."""
        self.text = jump
        box = self.query_one("#filter", Input)
        box.display, box.value = True, jump
        self.action_show_tab(view)

    def log_line(self, text: str, error: bool = False) -> None:
        for log in self.query("#log").results(RichLog):  # none while the app is closing
            log.write(Text(text, style="bold red" if error else ""))  # as written: no markup

    # -- commands ----------------------------------------------------------------------------------

    def dispatch_line(self, line: str) -> None:
        """A line of the ``:`` command line: ``trace SRC DST`` and ``doctor`` open their views, ``show`` a table
        (filtered), anything else the line offers runs as a command (asking first where the shell asks)."""
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:  # an unclosed quote: said as the shell says it, and the app goes on
            self.log_line(f"vxray: cannot parse the line: {exc}", error=True)
            return
        if not words:
            return
        if words[0] == "trace" and len(words) == 3:
            self.show_trace(words[1], words[2])
            self.action_show_tab("Trace")
        elif words == ["doctor"]:
            self.action_show_tab("Doctor")
        elif words[0] == "capture":
            self.capture_line(words[1:])
        elif words[0] == "show":
            self.show_view(words[1:])
        elif words[0] not in offered("line"):
            self.log_line(f"vxray: {words[0]!r} is not a command of the app's line (`?`: the keys; the palette: "
                          "every command)", error=True)  # fmt: skip
        else:
            self.confirm_and_run(words)

    def confirm_and_run(self, words: list[str], on: str | None = None, question: str = "") -> None:
        """Run ``words`` as a command; first ask, where the shell asks (``--yes`` answers) or a fix is applied."""
        sure = "--yes" in words
        words = [w for w in words if w != "--yes"]
        question = question or (f"Run `{shell_line('vxray', *words)}`?" if asks(words) and not sure else "")
        if not question:
            self.run_command(words, on)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_command(words, on)
            else:
                self.log_line(f"not confirmed: {shell_line('vxray', *words)}")

        self.push_screen(Confirm(question), answered)

    def show_view(self, words: list[str]) -> None:
        """``show fdb dev vxlan1``: the view, filtered by what follows (a device, a namespace or any text)."""
        view = next((v for v in [*VIEWS, "Topology", "Trace", "Doctor", "Changes"]
                     if words and VIEW_OF.get(words[0], words[0]).lower() == v.lower()), None)  # fmt: skip
        if view is None:
            self.log_line(f"vxray: show what? one of {', '.join(TABLES)}", error=True)
            return
        wanted = [w for w in words[1:] if w not in ("dev", "netns")]
        if wanted:
            self.action_jump(view, wanted[-1])
        else:
            self.action_show_tab(view)

    def show_trace(self, src: str, dst: str) -> None:
        if self.world is not None:
            self.compute_trace(src, dst)

    def render_trace(self, src: str, dst: str, result: Trace) -> None:
        self.last_trace = (src, dst, result)
        for end, name in (("#src", src), ("#dst", dst)):  # the pickers show what is traced, however it was asked
            select = self.query_one(end, Select)
            if name in self.ends and select.value != name:
                with select.prevent(Select.Changed):
                    select.value = name
        assert self.world is not None  # a trace is computed over the world shown
        called = names(self.world)
        table = self.query_one("#trace", DataTable)
        table.clear()
        for i, s in enumerate(result.steps, 1):
            style = "" if s.ok else "bold white on red"
            cells = (str(i), s.direction, s.host, called.get(s.netns, s.netns), s.table, s.entry, s.decision)
            table.add_row(*(Text(c, style=style) for c in cells))
        assert self.snapshot is not None
        graph = build_graph(self.snapshot, self.labels, self.world)
        path, failed = on_path(graph, result)
        self.query_one("#trace-drawing", Static).update(paint(draw(graph), path, failed))
        verdict = self.query_one("#verdict", Static)
        if result.delivered:
            verdict.update(f"{src} -> {dst}: DELIVERED, the packet and its reply get through")
        elif result.failed_step is not None:
            s = result.steps[result.failed_step]
            fix = "" if s.fix is None else f"\n{fix_lines(s.fix)[0]}"
            fix = f"\nfix ([f] applies it): {s.fix.vxray_line}" if s.fix and s.fix.runnable else fix
            verdict.update(Text(f"{src} -> {dst}: DROPPED at step {result.failed_step + 1} on {s.host}: "
                                f"{s.decision}{fix}", style="bold red"))  # fmt: skip
            table.move_cursor(row=result.failed_step)

    def show_doctor(self) -> None:
        if self.world is not None:
            self.compute_doctor()

    # -- actions -----------------------------------------------------------------------------------

    def get_system_commands(self, screen: Screen[Any]) -> Iterator[SystemCommand]:
        """The command palette (Ctrl-P): every key's action, every view, every command the ``:`` line runs, and a
        trace for each pair of containers."""
        yield from super().get_system_commands(screen)
        for key, action, arguments, title, text in ACTIONS:
            if action != "quit":  # Textual's own palette entry quits
                method = getattr(self, f"action_{action}")
                yield SystemCommand(title, f"{text[:1].upper()}{text[1:]} ({KEY_NAMES.get(key, key)})",
                                    partial(method, *arguments))  # fmt: skip
        for view in ["Topology", *VIEWS, "Changes"]:
            yield SystemCommand(f"Show {view}", f"Open the {view} view", partial(self.action_show_tab, view))
        for word, text in offered("line").items():
            if word != "show":
                yield SystemCommand(f"{word} …", f"{text} (on the : line)", partial(self.action_command, f"{word} "))
        pairs = [(a, b) for a in self.ends for b in self.ends if a != b][:PALETTE_TRACES]
        for a, b in pairs:
            line = f"trace {a} {b}"
            yield SystemCommand(f"Trace {a} -> {b}", "Follow a ping hop by hop", partial(self.dispatch_line, line))

    def action_help(self) -> None:
        self.push_screen(Help())

    def action_command(self, text: str = "") -> None:
        box = self.query_one("#command", Input)
        if text:
            box.value = text
            box.cursor_position = len(text)
        box.focus()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def action_leave_input(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_focus and not box.value:
            box.display = False
        self.set_focus(None)

    def action_show_tab(self, view: str) -> None:
        self.query_one("#views", TabbedContent).active = f"tab-{view}"
        if view == "Doctor":
            self.show_doctor()

    def action_capture(self) -> None:
        """A capture panel on the device under the cursor (this machine's: the agents of --host machines stream to
        ``vxray capture --host``, not to the app)."""
        found = self.device_under_cursor()
        if found is None or self.world is None:
            self.log_line("c captures on a link, bridge port, veth end or trace step: put the cursor on one")
            return
        if self.source.scope is None:
            self.log_line("the app captures this machine's devices; for --host machines: vxray capture --host …")
            return
        t = target(self.world, *found)
        self.push_screen(CaptureScreen([t], [local_point(self.world, t)]))

    def capture_line(self, words: list[str]) -> None:
        """``:capture DEV… [FILTER]``: the capture panel on those devices (-w, -c and --seconds are bash's)."""
        try:
            args = dispatch.parse(["capture", *words])
            specs, expression = split_words(args.words)
            if self.world is None or self.source.scope is None or args.capture_hosts:
                raise VxrayError("the app captures this machine's devices; for --host machines: vxray capture --host …")
            targets = [resolve(self.world, spec) for spec in specs]
        except VxrayError as exc:
            self.log_line(f"vxray: {one_line(exc)}", error=True)
            return
        self.push_screen(CaptureScreen(targets, [local_point(self.world, t) for t in targets], expression))

    def device_under_cursor(self) -> tuple[str, str] | None:
        """(namespace key, device) of the row under the cursor: a row of Links, Bridges, Veths, VXLAN (keyed
        ``<namespace id>/<ifindex>``) or a trace step that names a device."""
        view = self.active_view()
        if self.world is None:
            return None
        if view == "Trace" and self.last_trace is not None:
            steps = self.last_trace[2].steps
            row = self.query_one("#trace", DataTable).cursor_row
            step = steps[row] if 0 <= row < len(steps) else None
            place = self.world.find(step.netns) if step is not None and step.dev else None
            return (place.key, step.dev) if place is not None and step is not None and step.dev else None
        if view not in ("Links", "Bridges", "Veths", "VXLAN"):
            return None
        table = self.query_one(f"#table-{view}", DataTable)
        if not table.row_count:
            return None
        row = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key
        ns_id, _, index = self.row_keys.get(view, {}).get(row, "").rpartition("/")
        lk = self.world.by_index.get((ns_id, int(index))) if index.isdigit() else None
        return (ns_id, lk.name) if lk is not None else None

    def action_refresh(self) -> None:
        self.collect()

    def action_apply_fix(self) -> None:
        """Run exactly the argv of the fix the last trace offers (asking first), on the machine where it stopped."""
        if self.last_trace is None:
            return
        src, dst, result = self.last_trace
        step = result.steps[result.failed_step] if result.failed_step is not None else None
        if step is None or step.fix is None:
            self.log_line("no fix to apply")
            return
        if not step.fix.runnable:
            self.log_line(f"no runnable fix: {step.fix.missing}")
            return
        question = f"Run `{step.fix.vxray_line}` and trace {src} -> {dst} again?"
        self.confirm_and_run(list(step.fix.vxray[1:]), on=step.host, question=question)
