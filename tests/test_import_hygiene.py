"""The layers hold: the back end and the diagnostics never pull in a UI toolkit, tui has no import circle and
no hidden (function-local) import of its own modules, and a command imports what it uses."""

from __future__ import annotations

import ast
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UI = ("textual", "prompt_toolkit", "rich")
VIEW = os.path.join(ROOT, "tests", "fixtures", "overlay-static.view.json")


def test_backend_and_diagnostics_import_no_ui_toolkit() -> None:
    modules = [m.name for pkg in ("backend", "diagnostics")
               for m in pkgutil.walk_packages([os.path.join(ROOT, pkg)], prefix=f"{pkg}.")]  # fmt: skip
    assert "backend.lab.runner" in modules and "backend.store.registry" in modules  # subpackages too
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(','.join(sorted(u for u in {UI!r} if u in sys.modules)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert proc.stdout.strip() == ""


def _imported(*argv: str) -> set[str]:
    """Every module ``vxray ARGV`` imports, as ``python -X importtime`` reports them."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "tui.cli", *argv], capture_output=True,
                          text=True, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}


def test_snapshot_command_starts_without_the_ui_or_the_diagnostics() -> None:
    modules = _imported("snapshot", "--load", VIEW, "--json")
    assert "backend.codec" in modules
    assert not {m for m in modules if m.split(".")[0] in (*UI, "diagnostics")}


def test_import_contracts_hold() -> None:
    """``[tool.importlinter]`` in pyproject.toml: no UI toolkit below tui, tui's layers, no circle in tui."""
    lint = os.path.join(os.path.dirname(sys.executable), "lint-imports")
    proc = subprocess.run([lint, "--no-cache"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "3 kept, 0 broken" in proc.stdout


def test_no_tui_module_imports_another_inside_a_function() -> None:
    """A tui module's imports of tui are at its top, where the layers contract sees them and a reader finds them."""
    hidden = []
    for path in sorted(Path(ROOT, "tui").glob("*.py")):
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                         else [a.name for a in node.names] if isinstance(node, ast.Import) else [])  # fmt: skip
                hidden += [f"{path.name}:{node.lineno} {n}" for n in names if n == "tui" or n.startswith("tui.")]
    assert hidden == []
