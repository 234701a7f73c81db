"""``vxray shell``: every vxray command at a prompt, with completion from live state, and scripts.

One command language: a line is split like a shell would (never run through
one) and dispatched to the same ``tui.cli`` commands as ``vxray <command>`` from
bash, plus the shell's own ``help``, ``use``, ``show`` and ``exit``. A failing
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory
from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.output import Output

from backend import env
from backend.errors import VxrayError, one_line
from backend.shellwords import shell_line
from tui import cli
from tui.completer import SHELL_COMMANDS, VxrayCompleter
from tui.examples import EXAMPLES
from tui.grammar import parser
from tui.lexer import STYLE, CommandLexer, first_problem
from tui.vocabulary import Vocabulary, build

DESTRUCTIVE = {("network", "rm"), ("lab", "down"), ("container", "rm"), ("host", "rm")}


def history_path() -> str:
    """One history per user: $VXRAY_HISTORY, else $XDG_STATE_HOME/vxray/history."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return env.path("VXRAY_HISTORY", os.path.join(state, "vxray", "history"))


@dataclass
class Shell:
    """What a session remembers: the global flags it was started with, the host in use, the vocabulary."""

    store: list[str] = field(default_factory=list)  # --store/--store-token given to `vxray shell`
    host: str | None = None
    yes: bool = False
    confirm: Callable[[str], bool] = lambda question: False
    vocabulary: Vocabulary = field(default_factory=Vocabulary)

    def refresh(self) -> None:
        """Re-read the names completion offers (between commands, never while typing)."""
        from backend.lab import runner
        from backend.observe import observe

        try:
            ctx, underlay = cli._current(self._args())
            snap, labels = observe(ctx, underlay)
            self.vocabulary = build(ctx.store, snap, labels, runner.running(), runner.builtin_names())
        except (VxrayError, OSError):
            self.vocabulary = Vocabulary()

    def _args(self) -> argparse.Namespace:
        return parser().parse_args([*self.store, "host", "ls"])

    def prompt(self) -> str:
        from backend.lab import runner

        where = [f"lab {lab}" for lab in [runner.current()] if lab and not self.store]
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
        if tuple(words[:2]) in DESTRUCTIVE:
            asked = "--yes" in words
            words = [w for w in words if w != "--yes"]
            if not (asked or self.yes or self.confirm(f"{shell_line(*words)}: are you sure? [y/N] ")):
                print(f"vxray: not confirmed: {shell_line(*words)} (add --yes)", file=sys.stderr)
                return 1
        if self.host and "--host" not in words and self._takes_host(words):
            words += ["--host", self.host]
        try:
            return cli.main([*self.store, *words])
        except SystemExit as exc:  # --help
            return exc.code if isinstance(exc.code, int) else 0

    def _takes_host(self, words: list[str]) -> bool:
        try:
            args, _ = parser().parse_known_args(words)
        except VxrayError:
            return False
        return hasattr(args, "host")

    def _help(self, words: list[str]) -> int:
        if not words:
            top = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
            rows = [(a.dest, a.help or "") for a in top._choices_actions] + list(SHELL_COMMANDS.items())
            print("\n".join(f"  {name:<10} {text}" for name, text in rows))
            print("`help COMMAND` or `COMMAND --help` for one command; `?` lists what may come next; Tab completes.")
            return 0
        if words[0] in ("use", "show"):
            print(f"{words[0]}: {SHELL_COMMANDS[words[0]]}\n" + "\n".join(f"  {e}" for e in EXAMPLES[words[0]]))
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
            ctx = cli._context(self._args())
            if ctx.store.host(words[0]) is None:
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
        from tui.show import show

        ctx, underlay = cli._current(self._args())
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
    completer = VxrayCompleter(lambda: sh.vocabulary, lambda: sh.host)
    history = history_path()
    try:  # now, not at the first line typed, where prompt_toolkit would fail with a traceback
        os.makedirs(os.path.dirname(history) or ".", exist_ok=True)
        with open(history, "ab"):
            pass
    except OSError as exc:
        raise VxrayError(f"cannot write the shell history {history}: {exc.strerror}") from None
    known = {*completer.commands, *SHELL_COMMANDS, "quit", "?"}
    session: PromptSession[str] = PromptSession(
        history=FileHistory(history), completer=completer, lexer=CommandLexer(lambda: known),
        style=STYLE, key_bindings=_bindings(completer), complete_while_typing=False, input=input, output=output,
        bottom_toolbar=lambda: first_problem(session.default_buffer.text) or "",
    )  # fmt: skip
    sh.confirm = lambda question: session.prompt(question, completer=None).strip().lower() in ("y", "yes")
    sh.refresh()
    while True:
        try:
            line = session.prompt(sh.prompt())
        except KeyboardInterrupt:
            continue  # Ctrl-C at the prompt clears the line
        except EOFError:
            return 0
        try:
            sh.execute(line)
        except KeyboardInterrupt:
            print("^C cancelled", file=sys.stderr)
        except EOFError:
            return 0
        except VxrayError as exc:
            print(f"vxray: {one_line(exc)}", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - a bug must not end the operator's session
            print(f"vxray: internal error: {type(exc).__name__}: {exc} (please report it)", file=sys.stderr)
        sh.refresh()


def main(args: argparse.Namespace) -> int:
    sh = Shell(store=cli._store_args(args), yes=args.yes)
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
