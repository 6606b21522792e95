"""The layers keep to themselves: the library imports no command-line or web framework, and
the web UI and the report phrase fixes as the command line does without importing Typer."""

from __future__ import annotations

import subprocess
import sys


def imported_after(statement: str) -> set[str]:
    """The top-level modules a fresh interpreter holds after `statement`."""
    out = subprocess.run([sys.executable, "-c", f"{statement}; import sys; "
                          "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_library_imports_no_cli_or_web_framework():
    found = imported_after("import mfstore.workspace, mfstore.tracking, mfstore.verify")
    assert found.isdisjoint({"typer", "click", "rich", "starlette", "uvicorn", "cli",
                             "serving"})


def test_the_ui_and_report_import_no_typer():
    found = imported_after("import serving.ui.app, serving.ui.report")
    assert found.isdisjoint({"typer", "click"})
