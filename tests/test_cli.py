"""``vxray snapshot`` as an operator runs it: output, JSON, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend import codec

from conftest import Lab

VXRAY = [sys.executable, "-m", "tui.cli"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def vxray(*args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user else []
    return subprocess.run([*prefix, *VXRAY, *args], capture_output=True, text=True, cwd=ROOT)


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_snapshot_json_can_be_loaded_back_and_summarised(lab: Lab, tmp_path: Path) -> None:
    host = lab.netns("host")
    lab.ip(host, "link", "add", "br9", "type", "bridge")
    proc = vxray("snapshot", "--json", "--host-netns", host, "--docker", "none")
    assert proc.returncode == 0, proc.stderr
    snap = codec.loads(proc.stdout)
    assert snap.namespace("host").link("br9").kind == "bridge"

    saved = tmp_path / "h.json"
    saved.write_text(proc.stdout)
    again = vxray("snapshot", "--load", str(saved), "--json")
    assert json.loads(again.stdout) == json.loads(proc.stdout)
    text = vxray("snapshot", "--load", str(saved)).stdout
    assert "br9" in text and text.startswith(f"host {host}")


def test_unknown_namespace_is_named_in_a_one_line_error(lab: Lab) -> None:
    line = _one_line_error(vxray("snapshot", "--host-netns", f"{lab.prefix}nope"))
    assert line == f"vxray: no such network namespace: {lab.prefix}nope"


def test_file_that_is_not_a_snapshot_gets_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "not a vxray snapshot" in _one_line_error(vxray("snapshot", "--load", str(bad)))
    assert "cannot read" in _one_line_error(vxray("snapshot", "--load", str(tmp_path / "missing.json")))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_without_root_it_says_it_needs_cap_net_admin() -> None:
    line = _one_line_error(vxray("snapshot", user="65534"))
    assert line == "vxray: vxray needs root (CAP_NET_ADMIN) (to enter network namespaces)"
