"""``vxray shell``: completion from a real lab, history, scripts, confirmation, Ctrl-C, a parser that never crashes."""

from __future__ import annotations

import os
import pty
import select
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from backend.lab import runner
from tui.cli import main
from tui.completer import VxrayCompleter
from tui.grammar import UsageError, parser
from tui.lexer import CommandLexer, first_problem
from tui.shell import Shell, interactive, may_change_names
from tui.vocabulary import Vocabulary

from conftest import Lab


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VXRAY_HOME", str(tmp_path))
    monkeypatch.setenv("VXRAY_HISTORY", str(tmp_path / "history"))
    monkeypatch.delenv("VXRAY_STORE", raising=False)
    return tmp_path


@pytest.fixture
def seed(lab: Lab, home: Path) -> Iterator[str]:
    name = f"{lab.prefix}sh"
    assert main(["lab", "up", "overlay-static", "--name", name]) == 0
    yield name
    runner.down(name)


def _complete(sh: Shell, text: str) -> dict[str, str]:
    completer = VxrayCompleter(lambda: sh.vocabulary, lambda: sh.host)
    return {c.text: c.display_meta_text for c in completer.get_completions(Document(text), CompleteEvent())}


def test_completion_offers_names_from_the_live_lab(seed: str) -> None:
    sh = Shell()
    sh.refresh()
    assert {"network", "fdb", "trace", "use", "show", "help"} <= set(_complete(sh, ""))
    assert {"create", "inspect", "repair"} <= set(_complete(sh, "network "))
    assert set(_complete(sh, "network inspect ")) == {"prod"}
    assert set(_complete(sh, "container run x --host ")) == {"yy2", "yy3"}
    assert set(_complete(sh, "trace vm3")) == {"vm3", "vm33"}
    assert {"overlay-static", "docker-modes"} <= set(_complete(sh, "lab up "))
    assert seed in _complete(sh, "lab status ")
    assert set(_complete(sh, "use ")) == {"yy2", "yy3", "lab"}
    assert "vxlan1" in _complete(sh, "show fdb dev ")
    assert set(_complete(sh, "fdb add 02:42:ac:15:00:01 --netns vm33 dev ")) == {"eth0", "lo"}
    assert set(_complete(sh, "fdb sync ")) == {"prod"}
    assert "--dry-run" in _complete(sh, "fdb sync prod ")


def test_fdb_sync_completes_the_networks_it_programs_overlay_and_flannel_not_bridges() -> None:
    words = Vocabulary(networks={"prod": "overlay", "fl": "flannel", "br": "bridge", "mv": "macvlan"})
    completer = VxrayCompleter(lambda: words, lambda: None)
    offered = {c.text for c in completer.get_completions(Document("fdb sync "), CompleteEvent())}
    assert offered == {"prod", "fl"}


def test_completion_makes_the_field_notes_entries_a_few_tab_presses(seed: str) -> None:
    sh = Shell(host="yy3")
    sh.refresh()
    macs = _complete(sh, "fdb add ")
    assert macs == {"02:42:ac:15:00:01": "vm3 172.21.0.1 on yy2"}, "only the remote endpoints of yy3"
    assert _complete(sh, "fdb add 02:42:ac:15:00:01 --network prod dst ") == {"10.193.6.36": "VTEP of yy2"}
    assert _complete(sh, "arp add ") == {"172.21.0.1": "vm3 02:42:ac:15:00:01 on yy2"}
    assert set(_complete(sh, "arp add 172.21.0.1 ")) == {"02:42:ac:15:00:01"}
    assert sh.execute("fdb add 02:42:ac:15:00:01 --network prod dst 10.193.6.36") == 0, "--host yy3 from `use`"
    assert sh.execute("arp add 172.21.0.1 02:42:ac:15:00:01 --container vm33") == 0


def test_malformed_addresses_are_marked_before_enter() -> None:
    lexer = CommandLexer(lambda: {"fdb"})
    doc = Document("fdb add 02:42:zz:00:00:01 dst 10.0.0.300 dev vxlan1")
    styles = dict((text, style) for style, text in lexer.lex_document(doc)(0))
    assert styles["fdb"] == "class:command"
    assert styles["02:42:zz:00:00:01"] == styles["10.0.0.300"] == "class:error"
    assert styles["vxlan1"] == ""
    assert "02:42:zz:00:00:01" in (first_problem(doc.text) or "")
    assert first_problem("arp add 172.21.0.1 02:42:ac:15:00:01") is None


def test_history_persists_between_sessions(seed: str, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with create_pipe_input() as inp:
        inp.send_text("host ls\r")
        inp.send_text("\x04")
        assert interactive(Shell(), input=inp, output=DummyOutput()) == 0
    assert "yy2" in capsys.readouterr().out
    assert "host ls" in (home / "history").read_text()
    with create_pipe_input() as inp:
        inp.send_text("\x1b[A\r")  # Up: the last line of the earlier session
        inp.send_text("\x04")
        assert interactive(Shell(), input=inp, output=DummyOutput()) == 0
    assert "yy3" in capsys.readouterr().out


def test_errors_are_one_line_and_the_shell_goes_on(seed: str, capsys: pytest.CaptureFixture[str]) -> None:
    with create_pipe_input() as inp:
        inp.send_text("network inspect nonet\r")
        inp.send_text("fdb add 02:42:zz:00:00:01 --network prod dst 10.193.6.36 --host yy3\r")
        inp.send_text("network ls\r")
        inp.send_text("\x04")
        assert interactive(Shell(), input=inp, output=DummyOutput()) == 0
    captured = capsys.readouterr()
    errors = captured.err.splitlines()
    assert errors[0] == "vxray: unknown network 'nonet'"
    assert errors[1].startswith("vxray: invalid MAC address '02:42:zz:00:00:01'") and len(errors) == 2
    assert "prod" in captured.out and "Traceback" not in captured.err


def test_question_mark_lists_what_may_come_next(seed: str, capsys: pytest.CaptureFixture[str]) -> None:
    with create_pipe_input() as inp:
        inp.send_text("network inspect ?")
        inp.send_text("\x15\x04")  # Ctrl-U clears the line, Ctrl-D leaves
        interactive(Shell(), input=inp, output=DummyOutput())
    assert "prod" in capsys.readouterr().out


def test_script_stops_at_the_failing_line_and_names_it(seed: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    script = tmp_path / "fix.vx"
    script.write_text("# the field notes' fix, one side\nhost ls\nnetwork inspect nonet\nnetwork ls\n")
    capsys.readouterr()
    assert main(["shell", str(script)]) == 2
    out, err = capsys.readouterr()
    assert f"{script}:3: `network inspect nonet` failed (exit 2)" in err
    assert "prod" not in out, "line 4 never ran"
    assert main(["shell", "--keep-going", str(script)]) == 2
    assert "prod" in capsys.readouterr().out, "with --keep-going line 4 ran"
    assert main(["shell", "-c", "host ls; network ls"]) == 0


def test_destructive_commands_ask_first(seed: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shell", "-c", "network rm prod --force"]) == 1
    assert "not confirmed: network rm prod --force (add --yes)" in capsys.readouterr().err
    with create_pipe_input() as inp:
        inp.send_text("network rm prod --force\r")
        inp.send_text("n\r")
        inp.send_text("\x04")
        interactive(Shell(), input=inp, output=DummyOutput())
    assert main(["network", "inspect", "prod"]) == 0, "answered no: still there"
    assert main(["shell", "--yes", "-c", "network rm prod --force"]) == 0
    assert main(["network", "inspect", "prod"]) == 2


def test_ctrl_c_cancels_a_long_command_and_the_shell_goes_on(seed: str, home: Path) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: a real shell on a terminal
        os.execvpe(sys.executable, [sys.executable, "-m", "tui.cli", "shell"],
                   {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})  # fmt: skip
    seen = b""

    def read_until(marker: bytes, timeout: float = 20) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen:
            assert time.monotonic() < deadline, seen.decode(errors="replace")[-800:]
            if select.select([fd], [], [], 0.1)[0]:
                seen += os.read(fd, 4096)

    read_until(b"vxray (lab")
    seen = b""
    os.write(fd, b"ping vm33 vm3 -c 100\r")  # no FDB/ARP entries yet: a long, failing ping
    read_until(b"PING 172.21.0.1")
    time.sleep(1)
    os.write(fd, b"\x03")
    read_until(b"vxray (lab", timeout=10)
    seen = b""
    os.write(fd, b"host ls\r")
    read_until(b"10.193.6.37")
    seen = b""
    read_until(b"vxray (lab")  # the prompt is back (the terminal in raw mode): Ctrl-D reaches the shell
    os.write(fd, b"\x04")
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60) | st.lists(
    st.sampled_from(["network", "create", "fdb", "add", "--subnet", "10.0.0.0/33", "dst", "-d", "lab", "up",
                     "--vni", "x", "trace", "host", "set", "--help", "--json", "ip_forward=1", "02:42"]),
    max_size=8).map(" ".join))  # fmt: skip
def test_the_parser_raises_only_its_usage_error_on_any_line(line: str) -> None:
    try:
        words = shlex.split(line)
    except ValueError:
        return  # the shell reports an unparsable line itself
    try:
        parser().parse_args(words)
    except UsageError:
        pass
    except SystemExit as exc:
        assert exc.code == 0, "only --help may exit, and successfully"


def test_the_vocabulary_is_refreshed_in_the_background_after_changes_only(seed: str) -> None:
    assert not any(may_change_names(line) for line in ("network ls", "trace vm33 vm3", "fdb sync prod --dry-run"))
    assert may_change_names("network create n2 --subnet 172.30.0.0/24") and may_change_names("fdb sync prod")
    sh = Shell()
    sh.refresh_in_background().join(30)
    assert set(_complete(sh, "network inspect ")) == {"prod"}
    assert sh.execute("network create n2 --subnet 172.30.0.0/24 --host yy2") == 0
    assert set(_complete(sh, "network inspect ")) == {"prod"}, "no read on the prompt's path"
    sh.refresh_in_background().join(30)
    assert set(_complete(sh, "network inspect ")) == {"prod", "n2"}
