"""The back end and the diagnostics never pull in a UI toolkit."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UI = ("textual", "prompt_toolkit", "rich")


def test_backend_and_diagnostics_import_no_ui_toolkit() -> None:
    modules = [
        f"{pkg}.{m.name}" for pkg in ("backend", "diagnostics") for m in pkgutil.iter_modules([os.path.join(ROOT, pkg)])
    ]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(','.join(sorted(u for u in {UI!r} if u in sys.modules)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert proc.stdout.strip() == ""
