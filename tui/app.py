"""The Textual app: every host's namespaces, links, bridges, veths, VXLAN FDBs, neighbours, routes and NAT,
live, with the command line, the trace and the doctor inside.

The app only renders and dispatches. Snapshots are read by a thread worker and
arrive as ``SnapshotCollected``; a second worker blocks on netlink
(``backend.monitor``) and reads again as soon as the kernel changes something —
no polling, so an idle app costs no CPU. Commands typed after ``:`` run through the same command language as the
shell and bash (in a child ``vxray`` process, so a failing command cannot take
the app down); ``trace`` and ``doctor`` run in-process on the snapshot shown.
"""

from __future__ import annotations

import gc
import shlex
import subprocess
import sys
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
from textual.widgets.data_table import ColumnKey
from textual.widgets.tree import TreeNode
from textual.worker import get_current_worker

from backend.model import HostSnapshot, Labels
from diagnostics.doctor import Desired, Finding, doctor
from diagnostics.trace import Trace, trace
from diagnostics.world import World
from tui.completer import VxrayCompleter
from tui.drawing import Line, draw, on_path
from tui.messages import CommandFinished, SnapshotCollected
from tui.source import Source
from tui.tables import VIEWS, hosts, rows, trace_ends
from tui.topology import Node as TopoNode
from tui.topology import tree as topology_tree
from tui.vocabulary import Vocabulary, build, from_machines

HIGHLIGHT_SECONDS = 2.0
MAX_ROWS = 500  # a table shows this many matching rows; filtering searches them all
PALETTE_TRACES = 200  # "Trace A -> B" entries offered in the command palette


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


class Help(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,question_mark,q", "dismiss", "Close")]
    TEXT = """vxray — what the keys do

  :   command line: any vxray command (network ls, fdb sync prod, host set yy3 ip_forward=1),
      `trace SRC DST`, `doctor`, `show fdb` … — → accepts the suggestion
  /   filter the table shown (all rows are searched; 500 are shown)
  t d the trace (pick source and destination at its top) and the doctor;
      f  apply the fix the trace suggests (asks first)
  click a box in the Topology drawing: its rows; a trace's path is green there, its stop red
  Enter on a row with a MAC or IP: its neighbour/FDB entries and who owns it
  click a column header: sort by it (again: reverse)
  r   read again (the app also follows the kernel by itself)
  Ctrl-P  command palette and themes;  q  quit;  Esc  back"""

    def compose(self) -> ComposeResult:
        yield Label(self.TEXT, id="question")


class VxrayApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "vxray"
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (150, "-wide")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("colon", "command", "Command", tooltip="run a vxray command (as in the shell)"),
        Binding("slash", "filter", "Filter", tooltip="filter the table as you type"),
        Binding("t", "show_tab('Trace')", "Trace"),
        Binding("d", "show_tab('Doctor')", "Doctor"),
        Binding("f", "apply_fix", "Apply fix", tooltip="run the fix the trace suggests, then trace again"),
        Binding("r", "refresh", "Refresh"),
        Binding("question_mark", "help", "Help"),
        Binding("escape", "leave_input", "Back", show=False),
        Binding("q", "quit", "Quit"),
    ]

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
        self.findings: list[Finding] = []
        self.badges: list[tuple[str, bool]] = []  # hosts listed, and whether each is offline
        start = time.perf_counter()  # read before the UI starts: a thread competing with its start is slower
        self.first: SnapshotCollected | None = SnapshotCollected(*source.read(), time.perf_counter() - start)
        self.ends: list[str] = []  # what the trace's pickers offer

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
        yield RichLog(id="log", max_lines=500, wrap=True)
        yield Input(
            placeholder=": a vxray command — network ls, fdb sync prod, trace vm33 vm3, doctor",
            id="command",
            suggester=CommandSuggester(lambda: VxrayCompleter(lambda: self.vocabulary, lambda: self.host)),
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
        self.query_one("#filter").display = False
        if self.first is not None:  # the kernel is watched once this first snapshot is on screen
            self.post_message(self.first)
            self.first = None

    # -- workers -----------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="collect", exit_on_error=False)
    def collect(self) -> None:
        start = time.perf_counter()
        snap, labels = self.source.read()
        self.post_message(SnapshotCollected(snap, labels, time.perf_counter() - start))

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
                snap, labels = self.source.read(last or self.snapshot, changed)  # only what changed, read whole
                last = snap
                self.post_message(SnapshotCollected(snap, labels, time.perf_counter() - start))
                if {ns.name for ns in snap.namespaces} != set(monitor.socks.values()):
                    fresh = Monitor(self.source.scope())  # a new container's namespace is watched too; the old
                    monitor.close()  # sockets stayed open until now, so a change meanwhile re-arms the next wait
                    monitor = fresh
        finally:
            monitor.close()

    @work(thread=True, group="command", exit_on_error=False)
    def run_command(self, line: str, on: str | None = None) -> None:
        """``on``: the machine it must run on (a fix: where the trace stopped); default the one selected."""
        flags = [*self.source.flags, *(["--read-only"] if self.read_only else [])]
        if self.source.follow is not None and (on or self.host):
            flags += ["--on", on or self.host or ""]  # several machines: a command runs on one of them
        try:
            words = shlex.split(line)
        except ValueError as exc:  # an unclosed quote: said as the shell says it, and the app goes on
            self.post_message(CommandFinished(line, 2, f"vxray: cannot parse the line: {exc}"))
            return
        proc = subprocess.run([sys.executable, "-m", "tui.cli", *flags, *words], capture_output=True, text=True)
        self.post_message(CommandFinished(line, proc.returncode, (proc.stdout + proc.stderr).rstrip()))

    # -- events ------------------------------------------------------------------------------------

    @on(SnapshotCollected)
    def _collected(self, event: SnapshotCollected) -> None:
        if not self.is_running or not self.query("#hosts"):
            return  # a read that finished while the app was closing
        if self.snapshot is None and self.live:
            self.watch_kernel()
        self.snapshot, self.labels = event.snapshot, event.labels
        self.world = World([event.snapshot], event.labels)
        if self.source.context is not None:  # the command line completes from the same names as the shell
            from backend.lab import runner

            self.vocabulary = build(self.source.context().store, event.snapshot, event.labels, runner.running(),
                                    runner.builtin_names())  # fmt: skip
        elif self.source.follow is not None:  # machines over --host: their own names
            self.vocabulary = from_machines(event.snapshot, event.labels)
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
        self.log_line(f":{event.line}  {mark}")
        if event.output:
            self.log_line(event.output)
        self.collect()

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
            fix = f"\nfix: {f.fix.vxray}" if f.fix and f.fix.vxray else ""
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
            table.add_rows(
                (tuple(Text(c, style="bold reverse") for c in cells) if now - self.fresh.get(key, 0) < HIGHLIGHT_SECONDS
                 else cells for key, cells in shown)
            )  # fmt: skip
            more = f" — the first {MAX_ROWS} shown, `/` narrows them" if len(found) > MAX_ROWS else ""
            self.query_one("#status", Static).update(f"{view} of {self.host}: {len(found)} rows{more}")
        if any(now - t < HIGHLIGHT_SECONDS for t in self.fresh.values()):
            self.set_timer(HIGHLIGHT_SECONDS, self.render_tables)

    @on(TabbedContent.TabActivated, "#views")
    def _tab(self, event: TabbedContent.TabActivated) -> None:
        self.render_tables()

    def render_topology(self) -> None:
        assert self.snapshot is not None
        path, failed = on_path(self.last_trace[2]) if self.last_trace else (set(), "")
        self.query_one("#drawing", Static).update(paint(draw(self.snapshot, self.labels), path, failed))
        widget = self.query_one("#topology", Tree)
        widget.clear()
        widget.root.expand()

        def add(parent: TreeNode[tuple[str, str]], node: TopoNode) -> None:
            child = parent.add(node.label, data=(node.view, node.jump), expand=True)
            for sub in node.children:
                add(child, sub)
            if not node.children:
                child.allow_expand = False

        for host in topology_tree(self.snapshot, self.labels):
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

    def log_line(self, text: str) -> None:
        for log in self.query("#log").results(RichLog):  # none while the app is closing
            log.write(text)

    # -- commands ----------------------------------------------------------------------------------

    def dispatch_line(self, line: str) -> None:
        words = line.split()
        if words[0] == "trace" and len(words) == 3:
            self.show_trace(words[1], words[2])
            self.action_show_tab("Trace")
        elif words[0] == "doctor":
            self.show_doctor()
            self.action_show_tab("Doctor")
        elif words[0] == "show" and len(words) > 1:
            view = next((v for v in [*VIEWS, "Trace", "Doctor"] if v.lower().startswith(words[1].lower())), None)
            if view:
                self.action_show_tab(view)
        else:
            self.run_command(line)

    def show_trace(self, src: str, dst: str) -> None:
        if self.world is None:
            return
        from tui.cli import _endpoint, _names  # the same resolution of SRC and DST as `vxray trace`

        try:
            if self.source.context is not None:
                ctx = self.source.context()
                src_ns, _ = _endpoint(ctx, self.world, src)
                dst_ip, port = _endpoint(ctx, self.world, dst, src)
            else:  # a saved view: containers by their namespace and first address, or namespaces and IPs
                place = self.world.place_of(src)
                src_ns, dst_ip, port = place.label if place else src, self.world.address_of(dst, place), None
            result = trace(self.world, src_ns, dst_ip, "tcp" if port else "icmp", port)
        except Exception as exc:  # noqa: BLE001 - a bad name is shown, the app goes on
            self.query_one("#verdict", Static).update(f"cannot trace {src} -> {dst}: {exc}")
            return
        self.last_trace = (src, dst, result)
        for end, name in (("#src", src), ("#dst", dst)):  # the pickers show what is traced, however it was asked
            select = self.query_one(end, Select)
            if name in self.ends and select.value != name:
                with select.prevent(Select.Changed):
                    select.value = name
        names = _names(self.world)
        table = self.query_one("#trace", DataTable)
        table.clear()
        for i, s in enumerate(result.steps, 1):
            style = "" if s.ok else "bold white on red"
            cells = (str(i), s.direction, s.host, names.get(s.netns, s.netns), s.table, s.entry, s.decision)
            table.add_row(*(Text(c, style=style) for c in cells))
        path, failed = on_path(result)
        assert self.snapshot is not None
        self.query_one("#trace-drawing", Static).update(paint(draw(self.snapshot, self.labels), path, failed))
        verdict = self.query_one("#verdict", Static)
        if result.delivered:
            verdict.update(f"{src} -> {dst}: DELIVERED, the packet and its reply get through")
        elif result.failed_step is not None:
            s = result.steps[result.failed_step]
            fix = f"\nfix ([f] applies it): {s.fix.vxray}" if s.fix and s.fix.vxray else ""
            verdict.update(Text(f"{src} -> {dst}: DROPPED at step {result.failed_step + 1} on {s.host}: "
                                f"{s.decision}{fix}", style="bold red"))  # fmt: skip
            table.move_cursor(row=result.failed_step)

    def show_doctor(self) -> None:
        if self.world is None:
            return
        from tui.cli import _wanted

        want = _wanted(self.source.context().store) if self.source.context is not None else Desired()
        self.findings = doctor(self.world, want)
        table = self.query_one("#doctor", DataTable)
        table.clear()
        for f in self.findings:
            table.add_row(f"{f.likelihood:.0%}", f.host, f.title)
        if not self.findings:
            self.query_one("#evidence", Static).update("no findings")

    # -- actions -----------------------------------------------------------------------------------

    def get_system_commands(self, screen: Screen[Any]) -> Iterator[SystemCommand]:
        """Every action of the app in the command palette (Ctrl-P), and a trace for each pair of containers."""
        yield from super().get_system_commands(screen)
        yield SystemCommand("Command line", "Run a vxray command, as in the shell (:)", self.action_command)
        yield SystemCommand("Filter", "Keep the rows matching what you type (/)", self.action_filter)
        for view in ["Topology", *VIEWS, "Trace", "Doctor"]:
            yield SystemCommand(f"Show {view}", f"Open the {view} view", partial(self.action_show_tab, view))
        yield SystemCommand("Apply fix", "Run the fix the last trace suggests, then trace again (f)",
                            self.action_apply_fix)  # fmt: skip
        yield SystemCommand("Refresh", "Read every host again (r)", self.action_refresh)
        yield SystemCommand("Help", "What the keys do (?)", self.action_help)
        pairs = [(a, b) for a in self.ends for b in self.ends if a != b][:PALETTE_TRACES]
        for a, b in pairs:
            line = f"trace {a} {b}"
            yield SystemCommand(f"Trace {a} -> {b}", "Follow a ping hop by hop", partial(self.dispatch_line, line))

    def action_help(self) -> None:
        self.push_screen(Help())

    def action_command(self) -> None:
        self.query_one("#command", Input).focus()

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

    def action_refresh(self) -> None:
        self.collect()

    def action_apply_fix(self) -> None:
        if self.last_trace is None:
            return
        src, dst, result = self.last_trace
        step = result.steps[result.failed_step] if result.failed_step is not None else None
        if step is None or step.fix is None or not step.fix.vxray.startswith("vxray "):
            self.log_line("no fix to apply")
            return
        command = step.fix.vxray.removeprefix("vxray ")  # its words quoted: run_command reads them back as they were

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_command(command, on=step.host)

        self.push_screen(Confirm(f"Run `vxray {command}` and trace {src} -> {dst} again?"), answered)
