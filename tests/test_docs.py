"""The README's commands are the ones CI and users run, and its examples run as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, re.S)


def readme_commands() -> list[tuple[list[str], int]]:
    """Every `mfstore …` line of the README's bash blocks, in order, with the exit code its
    comment promises (`refused (exit N)`, else 0). `serve` (it runs until stopped) and the two
    set-up commands are left out."""
    commands = []
    for block in _bash_blocks():
        for line in block.replace("\\\n", " ").splitlines():
            code, _, comment = line.partition("#")
            words = shlex.split(code)
            if not words or words[0] != "mfstore" or words[1] == "serve":
                continue
            expected = re.search(r"refused \(exit (\d+)\)", comment)
            commands.append((words[1:], int(expected.group(1)) if expected else 0))
    return commands


def test_ci_runs_the_readme_test_command():
    test_command = next(b.strip() for b in _bash_blocks() if "pytest" in b)
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_readme_demo_command_sets_up_and_runs_the_demo():
    demo = next(b.strip() for b in _bash_blocks() if b.strip().endswith("mfstore demo"))
    assert demo.startswith("python3 -m venv .venv && .venv/bin/pip install -q torch==2.13.0")


@pytest.mark.slow
def test_readme_command_line_runs_as_written(tmp_path, monkeypatch):
    from tests.cli_run import cli

    monkeypatch.chdir(tmp_path)
    commands = readme_commands()
    assert len(commands) > 25
    for args, code in commands:
        out = cli(*args)
        assert out.returncode == code, (args, out.stderr)
        assert "Traceback" not in out.stderr
    assert (tmp_path / "digits.onnx").exists() and (tmp_path / "triton").is_dir()


def test_readme_python_blocks_run_and_train_what_they_say(capsys):
    (block,) = re.findall(r"```python\n(.*?)```", README, re.S)
    names: dict[str, object] = {}
    exec(compile(block, "README.md", "exec"), names)
    result, history, net = names["result"], names["history"], names["net"]
    assert result.test.bp > 0.9 and result.test.ff > 0.9 and result.baseline.test.bp > 0.9
    assert len(result.test.per_layer) == 2 and 1 <= history.best_epoch <= 10
    assert net.mode == "ff" and len(net.layers) == 1
    printed = capsys.readouterr().out.split()
    assert [float(v.strip("[],")) for v in printed[:2]] == result.test.per_layer


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
