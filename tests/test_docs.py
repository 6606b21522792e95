"""The README's commands are the ones CI and users run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_ci_runs_the_readme_test_command():
    test_command = next(b.strip() for b in _bash_blocks() if "pytest" in b)
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_readme_demo_command_sets_up_and_runs_the_demo():
    demo = next(b.strip() for b in _bash_blocks() if b.strip().endswith("mfstore demo"))
    assert demo.startswith("python3 -m venv .venv && .venv/bin/pip install -q torch==2.13.0")


def test_readme_python_blocks_run():
    for block in re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        exec(compile(block, "README.md", "exec"), {})


def test_examples_run():
    import runpy

    for path in sorted((ROOT / "examples").glob("*.py")):
        runpy.run_path(str(path), run_name="__main__")
