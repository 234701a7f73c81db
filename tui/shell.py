"""``vxray shell``: every vxray command at a prompt, with completion from live state, and scripts.

One command language: a line is split like a shell would (never run through
one) and dispatched (``tui.dispatch``) to the same commands as ``vxray <command>``
from bash, plus the shell's own ``help``, ``use``, ``show`` and ``exit``; the
command registry says which lines ask first. Completion reads names from a
vocabulary refreshed in a background thread after each command that changes
state, so typing never waits for a snapshot (pgcli's completion refresher). A failing
line prints one error and the shell goes on; Ctrl-C cancels the running command
(a ``--live`` trace, a ping) and returns to the prompt; Ctrl-D leaves. Scripts
(``-c "cmd; cmd"``, a file, or standard input) stop at the first failing line,
naming it, unless ``--keep-going``; the exit status says whether all succeeded.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import ThreadedCompleter
from prompt_toolkit.history import FileHistory
from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.output import Output

from backend import env
from backend.errors import VxrayError, one_line
from backend.shellwords import shell_line
from tui import dispatch, machines
from tui.completer import VxrayCompleter
from tui.context import Invocation
from tui.examples import EXAMPLES
from tui.lexer import STYLE, CommandLexer, first_problem
from tui.registry import POLICY, SHELL_WORDS, asks, offered
from tui.show import show
from tui.vocabulary import Vocabulary, build

FIRST_READ_SECONDS = 10.0


def history_path() -> str:
    """One history per user: $VXRAY_HISTORY, else $XDG_STATE_HOME/vxray/history."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return env.path("VXRAY_HISTORY", os.path.join(state, "vxray", "history"))


@dataclass
class Shell:
    """What a session remembers: the global flags it was started with, the host in use, the vocabulary."""

    inv: Invocation = field(default_factory=Invocation)  # the global flags `vxray shell` was given
    host: str | None = None
    yes: bool = False
    confirm: Callable[[str], bool] = lambda question: False
    vocabulary: Vocabulary = field(default_factory=Vocabulary)
    first_read: threading.Event = field(default_factory=threading.Event)  # set once the first refresh is done

    def refresh(self) -> None:
        """Re-read the names completion offers; the vocabulary is swapped whole, so a completion in progress
        sees the old one or the new one, never half of each."""
        from backend.lab import runner
        from backend.observe import observe

        try:
            ctx, underlay = self.inv.current()
            snap, labels = observe(ctx, underlay)
            self.vocabulary = build(ctx.store, snap, labels, runner.running(), runner.builtin_names())
        except (VxrayError, OSError):
            self.vocabulary = Vocabulary()
        self.first_read.set()

    def names(self) -> Vocabulary:
        """What completion offers now; only the very first completion waits, for the first read to finish
        (completions run in prompt-toolkit's thread, so typing never waits)."""
        self.first_read.wait(FIRST_READ_SECONDS)
        return self.vocabulary

    def refresh_in_background(self) -> threading.Thread:
        """The same, in a thread: the prompt comes back at once, completion catches up when the read is done."""
        thread = threading.Thread(target=self.refresh, name="vocabulary", daemon=True)
        thread.start()
        return thread

    def prompt(self) -> str:
        from backend.lab import runner

        where = [f"lab {lab}" for lab in [runner.current()] if lab and self.inv.store is None]
        where += [f"host {self.host}"] if self.host else []
        return f"vxray ({', '.join(where)})> " if where else "vxray> "

    def execute(self, line: str) -> int:
        """Run one line; its exit status. Errors are printed as one line, never raised."""
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            print(f"vxray: cannot parse the line: {exc}", file=sys.stderr)
            return 2
        if not words:
            return 0
        if words[0] in ("exit", "quit"):
            raise EOFError
        if words[0].startswith("-"):  # in bash, options alone open the app; here they are a mistake
            print(f"vxray: a command comes first, not {words[0]!r} (`help` lists them)", file=sys.stderr)
            return 2
        if words[0] in ("help", "?"):
            return self._help(words[1:])
        if words[0] == "use":
            return self._use(words[1:])
        if words[0] == "show":
            return self._show(words[1:])
        if asks(words):
            asked = "--yes" in words
            words = [w for w in words if w != "--yes"]
            if not (asked or self.yes or self.confirm(f"{shell_line(*words)}: are you sure? [y/N] ")):
                print(f"vxray: not confirmed: {shell_line(*words)} (add --yes)", file=sys.stderr)
                return 1
        if self.host and "--host" not in words and self._takes_host(words):
            words += ["--host", self.host]
        try:
            return dispatch.run_words(self.inv.flags(), words, "shell")
        except VxrayError as exc:
            print(f"vxray: {one_line(exc)}", file=sys.stderr)
            return 2
        except SystemExit as exc:  # --help
            return exc.code if isinstance(exc.code, int) else 0

    def _takes_host(self, words: list[str]) -> bool:
        try:
            args = dispatch.parse(words)
        except VxrayError:
            return False
        return hasattr(args, "host")

    def _help(self, words: list[str]) -> int:
        if not words:
            print("\n".join(f"  {name:<10} {text}" for name, text in offered("shell").items()))
            print("`help COMMAND` or `COMMAND --help` for one command; `?` lists what may come next; Tab completes.")
            return 0
        if words[0] in ("use", "show"):
            print(f"{words[0]}: {SHELL_WORDS[words[0]]}\n" + "\n".join(f"  {e}" for e in EXAMPLES[words[0]]))
            return 0
        return self.execute(f"{shlex.join(words)} --help")

    def _use(self, words: list[str]) -> int:
        from backend.lab import runner

        if words[:1] == ["lab"] and len(words) == 2:
            runner.use(words[1])
            self.host = None
        elif len(words) == 1 and words[0] == "none":
            self.host = None
        elif len(words) == 1:
            if self.inv.context().store.host(words[0]) is None:
                print(f"vxray: unknown host {words[0]!r} (see `host ls`)", file=sys.stderr)
                return 2
            self.host = words[0]
        else:
            print("vxray: use HOST | use lab NAME | use none", file=sys.stderr)
            return 2
        self.refresh()
        return 0

    def _show(self, words: list[str]) -> int:
        from backend.observe import observe

        ctx, underlay = self.inv.current()
        snap, labels = observe(ctx, underlay)
        print("\n".join(show(snap, labels, words, self.host)))
        return 0


def run_script(sh: Shell, lines: Iterable[str], source: str, keep_going: bool) -> int:
    """Run lines in order; stop at the first failing one (naming it) unless ``keep_going``."""
    status = 0
    for number, line in enumerate(lines, 1):
        try:
            code = sh.execute(line)
        except EOFError:
            break
        except VxrayError as exc:
            print(f"vxray: {one_line(exc)}", file=sys.stderr)
            code = 2
        if code:
            status = code
            print(f"vxray: {source}:{number}: `{line.strip()}` failed (exit {code})", file=sys.stderr)
            if not keep_going:
                return code
    return status


def _bindings(completer: VxrayCompleter) -> KeyBindings:
    kb = KeyBindings()

    @kb.add("?")
    def _(event: KeyPressEvent) -> None:
        """List what may come next, as a router's CLI does, without touching the line."""
        from prompt_toolkit.application import run_in_terminal
        from prompt_toolkit.completion import CompleteEvent

        doc = event.current_buffer.document
        shown = [f"  {c.text:<24} {c.display_meta_text}" for c in completer.get_completions(doc, CompleteEvent())]
        run_in_terminal(lambda: print("\n".join(shown) or "  (nothing: Enter runs the line)"))

    return kb


def interactive(sh: Shell, input: Input | None = None, output: Output | None = None) -> int:
    completer = VxrayCompleter(sh.names, lambda: sh.host)
    history = history_path()
    try:  # now, not at the first line typed, where prompt_toolkit would fail with a traceback
        os.makedirs(os.path.dirname(history) or ".", exist_ok=True)
        with open(history, "ab"):
            pass
    except OSError as exc:
        raise VxrayError(f"cannot write the shell history {history}: {exc.strerror}") from None
    known = {*offered("shell"), "quit", "?"}
    session: PromptSession[str] = PromptSession(
        history=FileHistory(history), completer=ThreadedCompleter(completer), lexer=CommandLexer(lambda: known),
        style=STYLE, key_bindings=_bindings(completer), complete_while_typing=False, input=input, output=output,
        bottom_toolbar=lambda: first_problem(session.default_buffer.text) or "",
    )  # fmt: skip
    sh.confirm = lambda question: session.prompt(question, completer=None).strip().lower() in ("y", "yes")
    sh.refresh_in_background()
    while True:
        try:
            line = session.prompt(sh.prompt())
        except KeyboardInterrupt:
            continue  # Ctrl-C at the prompt clears the line
        except EOFError:
            return 0
        try:
            sh.execute(line)
            if may_change_names(line):
                sh.refresh_in_background()
        except KeyboardInterrupt:
            print("^C cancelled", file=sys.stderr)
        except EOFError:
            return 0
        except VxrayError as exc:
            print(f"vxray: {one_line(exc)}", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - a bug must not end the operator's session
            print(f"vxray: internal error: {type(exc).__name__}: {exc} (please report it)", file=sys.stderr)


def may_change_names(line: str) -> bool:
    """Whether a line may have changed what completion offers: a command that changes state (``use`` refreshes
    the vocabulary itself, before the next prompt)."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return False
    return bool(words) and words[0] in offered("shell") and words[0] not in SHELL_WORDS and POLICY.changes_state(words)


def main(args: argparse.Namespace) -> int:
    if args.remotes:
        machines.machines(args)  # a bad --host is reported before the prompt
    sh = Shell(Invocation.of(args), yes=args.yes)
    if args.command_string is not None:
        return run_script(sh, args.command_string.replace("\n", ";").split(";"), "-c", args.keep_going)
    if args.file is not None:
        try:
            with open(args.file) as f:
                lines = f.read().splitlines()
        except OSError as exc:
            raise VxrayError(f"cannot read {args.file}: {exc.strerror}") from None
        return run_script(sh, lines, args.file, args.keep_going)
    if not sys.stdin.isatty():
        return run_script(sh, sys.stdin.read().splitlines(), "<stdin>", args.keep_going)
    return interactive(sh)
