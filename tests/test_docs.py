"""The README's set-up commands are the ones CI runs, and its Python runs and type-checks as
written (its shell blocks run in tests/test_readme.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, re.S)


def test_ci_runs_the_readme_test_command():
    test_command = next(b.strip() for b in _bash_blocks() if "pytest" in b)
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_readme_demo_command_sets_up_and_runs_the_demo():
    demo = next(b.strip() for b in _bash_blocks() if b.strip().endswith("mfstore demo"))
    assert demo.startswith("python3 -m venv .venv && .venv/bin/pip install -q torch==2.13.0")


def test_readme_python_blocks_run_and_train_what_they_say(capsys):
    (block,) = re.findall(r"```python\n(.*?)```", README, re.S)
    names: dict[str, object] = {}
    exec(compile(block, "README.md", "exec"), names)
    result, history, net = names["result"], names["history"], names["net"]
    assert result.test.bp > 0.9 and result.test.ff > 0.9 and names["bp"].test.bp > 0.9
    assert len(result.test.per_layer) == 2 and 1 <= history.best_epoch <= 10
    assert net.mode == "ff" and len(net.layers) == 1
    printed = capsys.readouterr().out.split()
    assert [float(v.strip("[],")) for v in printed[:2]] == result.test.per_layer


@pytest.mark.slow
def test_examples_run_and_report_every_layer(capsys):
    import runpy

    paths = sorted((ROOT / "examples").glob("*.py"))
    assert paths
    for path in paths:
        runpy.run_path(str(path), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    layers = [float(line.split("test accuracy ")[1].split("%")[0]) for line in lines
              if line.startswith("layer ")]
    assert len(layers) == 3 and min(layers) > 80
    assert lines[-1].startswith("FF mode ") and ", BP mode " in lines[-1]


def test_readme_python_type_checks_strictly_as_a_user_writes_it(tmp_path, request):
    """`mypy --strict` on the README's Python, with mfstore seen as an installed, typed
    package (its own modules are checked by the project's mypy run, not held to --strict)."""
    (block,) = re.findall(r"```python\n(.*?)```", README, re.S)
    (tmp_path / "readme_api.py").write_text(block)
    (tmp_path / "mypy.ini").write_text("[mypy]\nstrict = True\n[mypy-mfstore.*]\n"
                                       "follow_imports = silent\n")
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--cache-dir",
         str(request.config.cache.mkdir("mypy-readme")), "readme_api.py"], cwd=tmp_path,
        capture_output=True, text=True, env={**os.environ, "MYPYPATH": str(ROOT)})
    assert out.returncode == 0, out.stdout + out.stderr
