"""Run the `mfstore` command line as a user would: in-process through Typer's runner (the
same entry point, parsing and error handling, without paying a Python start-up per call), or
as the real console script where the process boundary is the point (crashes, concurrency,
servers, start-up time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MFSTORE = str(Path(sys.executable).with_name("mfstore"))
# the console script, or the same entry point where pip put no script beside this Python
MFSTORE_COMMAND = [MFSTORE] if Path(MFSTORE).exists() else [sys.executable, "-m", "cli"]
QUICK = ["--epochs", "3", "--batch-size", "64", "--lr", "0.01", "--device", "cpu"]


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def cli(*args: str, env: dict[str, str] | None = None) -> Ran:
    """`mfstore ARGS…` in this process."""
    from typer.testing import CliRunner

    from cli.main import app

    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "160", **(env or {})},
                                catch_exceptions=False, prog_name="mfstore")
    return Ran(result.exit_code, result.stdout, result.stderr)


def mfstore(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """`mfstore ARGS…` as a new process (the installed console script)."""
    full_env = {**os.environ, "COLUMNS": "160", **(env or {})}
    return subprocess.run([*MFSTORE_COMMAND, *args], capture_output=True, text=True, cwd=cwd,
                          env=full_env, timeout=timeout)


def in_home(home: Path | str, *args: str) -> Ran:
    """`mfstore ARGS…` with MFSTORE_HOME=HOME exported, as a user working in one home does
    (so a command an error suggests names no --home: it inherits the variable; a --home given
    on the command line is given again, as tests/test_fixes.py checks)."""
    return cli(*args, env={"MFSTORE_HOME": str(home)})


def json_of(home: Path | str, *args: str) -> object:
    """The JSON that `mfstore --home HOME ARGS… --json` prints; the command must succeed."""
    out = in_home(home, *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)
