"""The layers keep to themselves: the library imports no command-line or web framework; the
web UI and the report (pages/) and the inference server (serving/) never import the command
line; and what only reads the registry imports no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path


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


def test_the_ui_and_report_import_neither_the_command_line_nor_typer():
    """Pages are told how to phrase a fix by their caller; they never reach up into cli/."""
    found = imported_after("import pages.app, pages.report")
    assert found.isdisjoint({"typer", "click", "cli"})


def test_serving_imports_neither_the_command_line_nor_the_pages():
    found = imported_after("import serving.server, serving.app, serving.grpc_service")
    assert found.isdisjoint({"typer", "click", "cli", "pages"})


def test_reading_the_registry_and_starting_the_ui_import_no_torch_onnx_or_onnxruntime():
    found = imported_after("import cli.main, mfstore.workspace, mfstore.integrity, "
                           "pages.app, pages.report")
    assert found.isdisjoint({"torch", "onnx", "onnxruntime"})


def test_a_function_local_import_says_why_it_is_not_at_the_top():
    """Only where a measured start-up (or an optional extra) needs it, and it says so: a
    circle hidden by a function-local import is a design fault."""
    root = Path(__file__).resolve().parents[1]
    unexplained = []
    for package in ("mfstore", "cli", "serving", "pages"):
        for path in sorted((root / package).rglob("*.py")):
            lines = path.read_text().splitlines()
            for node in ast.walk(ast.parse("\n".join(lines))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    for sub in ast.walk(node):
                        if isinstance(sub, ast.Import | ast.ImportFrom) and not (
                                "#" in lines[sub.lineno - 1]
                                or lines[sub.lineno - 2].strip().startswith("#")):
                            unexplained.append(f"{path.relative_to(root)}:{sub.lineno}")
    assert unexplained == []
