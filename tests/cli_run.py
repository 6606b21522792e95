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
