"""Run the real `mfstore` console script, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MFSTORE = str(Path(sys.executable).with_name("mfstore"))


def mfstore(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: int = 300) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "160", **(env or {})}
    return subprocess.run([MFSTORE, *args], capture_output=True, text=True, cwd=cwd,
                          env=full_env, timeout=timeout)


def in_home(home: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
    """`mfstore --home HOME ARGS…`."""
    return mfstore("--home", str(home), *args)


def json_of(home: Path | str, *args: str) -> object:
    """The JSON that `mfstore --home HOME ARGS… --json` prints; the command must succeed."""
    import json

    out = in_home(home, *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)
