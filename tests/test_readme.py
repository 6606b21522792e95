"""The README is a test: every shell block of it and of `examples/` runs as written, session by
session (`tests/readme_blocks.py` says how blocks are read and grouped), each session in a
fresh working folder and home, against the real servers the suite runs (PostgreSQL, moto's S3,
torchrun on gloo). Sizes are cut only through what the README documents:
`MFSTORE_MAX_EXAMPLES` (the first N examples of each split of a source). A block that does not
run here is skipped with its reason, so the summary lists it."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from tests.readme_blocks import ROOT, Block, all_blocks, expected_lines_found, script, sessions
from tests.services import free_port

MAX_EXAMPLES = "300"  # MFSTORE_MAX_EXAMPLES: every command of the README in seconds
BLOCK_TIMEOUT = 600
KEPT = ("LANG", "LC_ALL", "LC_CTYPE", "TERM", "TMPDIR", "TZ")  # of this process's environment
PER_MACHINE = ("HOME", "PWD", "OLDPWD", "SHLVL", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "_")
SESSIONS = sessions()
NOT_RUN = [b for b in all_blocks() if b.not_run is not None]


@dataclass
class Machine:
    """A place a session's blocks run: its working folder, home, the exports its earlier
    blocks left, and where what a command prints is kept for checking."""

    work: Path
    home: Path
    state: Path  # what the last block exported (but PER_MACHINE), read by the next one
    outputs: Path

    @classmethod
    def make(cls, root: Path) -> Machine:
        for folder in ("work", "home", "outputs"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        return cls(root / "work", root / "home", root / "exported.sh", root / "outputs")


def _environment(machine: Machine) -> dict[str, str]:
    """A new user's shell: this suite's executables first on PATH, the locale, and nothing
    else of the developer's (no MFSTORE_*, AWS_*, PG*, proxies, PYTHONPATH…). pip is kept
    off the network, so the README's `pip install` lines check the extras it names are
    installed rather than change the environment under test; the commands run on the CPU
    (torchrun blocks start more ranks than a machine has GPUs)."""
    env = {k: v for k, v in os.environ.items() if k in KEPT}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               HOME=str(machine.home), COLUMNS="160", MFSTORE_MAX_EXAMPLES=MAX_EXAMPLES,
               PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", CUDA_VISIBLE_DEVICES="")
    return env


def _services(blocks: list[Block], request: pytest.FixtureRequest, machine: Machine,
              env: dict[str, str]) -> None:
    """The team's servers for a session that uses them: a fresh PostgreSQL database named in
    the user's service file, and the S3 server in the AWS settings."""
    text = "\n".join(b.text for b in blocks)
    if "service=mfstore" in text:
        postgres = request.getfixturevalue("postgres")
        database = postgres.new_database().rsplit("/", 1)[1]
        (machine.home / ".pg_service.conf").write_text(
            f"[mfstore]\nhost=127.0.0.1\nport={postgres.port}\nuser=postgres\n"
            f"dbname={database}\n")
    if "s3://" in text:
        s3 = request.getfixturevalue("s3")
        env.update(s3.env)
        _empty_bucket(s3.endpoint, "ml-team")


def _empty_bucket(endpoint: str, bucket: str) -> None:
    """The README names its bucket: a run before this one in the same S3 server left it."""
    client = boto3.client("s3", endpoint_url=endpoint)
    try:
        objects = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    except client.exceptions.NoSuchBucket:
        return
    for o in objects:
        client.delete_object(Bucket=bucket, Key=o["Key"])
    client.delete_bucket(Bucket=bucket)


def _bash(block: Block, machine: Machine, env: dict[str, str],
          keep: bool = True) -> subprocess.Popen[str]:
    """The block as one bash process in the machine's folder, after what earlier blocks of
    the session exported; what it exports (but what belongs to one machine) is kept for the
    next when `keep`."""
    state = shlex.quote(str(machine.state))
    restore = f"source {state}\n" if machine.state.exists() else ""
    drop = "|".join(PER_MACHINE)
    save = f"\nexport -p | grep -Ev '^declare -x ({drop})=' > {state}\n" if keep else ""
    return subprocess.Popen(["bash", "-c", restore + script(block, machine.outputs) + save],
                            cwd=machine.work, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen[str]) -> None:
    """The block's process group: what a failed block left running goes with it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _finish(procs: list[tuple[str, subprocess.Popen[str]]]) -> None:
    """Wait for the blocks; one that fails (or runs past the timeout) stops the others."""
    deadline, failed = time.monotonic() + BLOCK_TIMEOUT, False
    while not failed and any(p.poll() is None for _, p in procs):
        failed = time.monotonic() > deadline or any(p.poll() not in (None, 0) for _, p in procs)
        time.sleep(0.1)
    for _, proc in procs:
        _stop(proc)
    for where, proc in procs:
        out = proc.communicate()[0]
        assert proc.returncode == 0, f"{where} (exit {proc.returncode}):\n{out[-4000:]}"
        assert "Traceback" not in out, f"{where} printed a traceback:\n{out[-4000:]}"


def _run_block(block: Block, machine: Machine, env: dict[str, str]) -> None:
    _finish([(block.where, _bash(block, machine, env))])


def _run_on_two_nodes(block: Block, machine: Machine, env: dict[str, str]) -> None:
    """Two machines at once: this one as node 0, and node 1 with a working folder, home and
    outputs of its own (its home a copy of this one's: the same service file)."""
    second = Machine.make(machine.work.parent / "node1")
    shutil.copytree(machine.home, second.home, dirs_exist_ok=True)
    if machine.state.exists():
        shutil.copy(machine.state, second.state)
    port = str(free_port())
    procs = [(f"{block.where} (node {rank})",
              _bash(block, m, {**env, "HOME": str(m.home), "NODE_RANK": str(rank),
                               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port},
                    keep=rank == 0))
             for rank, m in enumerate((machine, second))]
    _finish(procs)


@pytest.mark.slow
@pytest.mark.parametrize("session", list(SESSIONS))
def test_readme_session_runs_as_written(session, tmp_path, request):
    blocks = SESSIONS[session]
    machine = Machine.make(tmp_path)
    env = _environment(machine)
    _services(blocks, request, machine, env)
    for block in blocks:
        if block.marks.get("nodes") == "2":
            _run_on_two_nodes(block, machine, env)
        else:
            _run_block(block, machine, env)
        for command in block.commands():
            if command.output:
                printed = (machine.outputs / str(command.line)).read_text()
                missing = expected_lines_found(command.output, printed)
                assert not missing, (f"{block.path.name}:{command.line} did not print "
                                     f"{missing}; it printed:\n{printed[-2000:]}")


@pytest.mark.parametrize("block", NOT_RUN, ids=[b.where for b in NOT_RUN])
def test_blocks_that_do_not_run_here_say_why(block):
    """Listed in the summary as skipped, with the reason; a block .ci/run runs instead must
    be in it word for word."""
    assert set(block.marks) <= {"skip", "ci", "session"} and block.not_run
    if "ci" in block.marks:  # word for word, and its failure fails the run (set -e alone
        # lets a failed command inside an && list through)
        lines = (ROOT / ".ci" / "run").read_text().splitlines()
        assert f"{block.text.strip()} || exit 1" in lines, block.where
    if "skip" in block.marks:  # what truly cannot run on this machine, and nothing else
        assert re.search(r"\bGPU\b|second (physical )?(host|machine)", block.marks["skip"])
    pytest.skip(f"{block.where}: {block.not_run}")


def test_every_block_that_runs_has_commands_and_known_markers():
    for name, blocks in SESSIONS.items():
        assert all(b.commands() for b in blocks), name
    marks = {k for b in all_blocks() for k in b.marks}
    assert marks <= {"session", "nodes", "skip", "ci"}, marks
