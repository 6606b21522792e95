"""The README is a test: every shell block of it and of `examples/` runs as written, session by
session (`tests/readme_blocks.py` says how blocks are read and grouped), each session in a
fresh working folder and home, against the real servers the suite runs (PostgreSQL, moto's S3,
torchrun on gloo). Sizes are cut only through what the README documents:
`MFSTORE_MAX_EXAMPLES` (the first N examples of each split of a source). A block that does not
run here is skipped with its reason, so the summary lists it."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.readme_blocks import ROOT, Block, all_blocks, expected_lines_found, script, sessions
from tests.services import free_port

MAX_EXAMPLES = "300"  # MFSTORE_MAX_EXAMPLES: every command of the README in seconds
BLOCK_TIMEOUT = 600
CLEARED = ("MFSTORE_", "AWS_", "MLFLOW_", "PG", "FSSPEC_", "NODE_RANK", "MASTER_", "RANK",
           "WORLD_SIZE", "LOCAL_RANK")
SESSIONS = sessions()
NOT_RUN = [b for b in all_blocks() if b.not_run is not None]


@dataclass
class Machine:
    """A place a session's blocks run: its working folder, home and environment file."""

    work: Path
    home: Path
    state: Path  # `export -p` after the last block, read before the next one

    @classmethod
    def make(cls, root: Path) -> Machine:
        work, home = root / "work", root / "home"
        work.mkdir(parents=True)
        home.mkdir()
        return cls(work, home, root / "exported.sh")


def _environment(machine: Machine) -> dict[str, str]:
    """A user's shell: this suite's executables first on PATH, nothing of ours set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED)}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               HOME=str(machine.home), COLUMNS="160", MFSTORE_MAX_EXAMPLES=MAX_EXAMPLES,
               MLFLOW_TRACKING_URI=f"sqlite:///{machine.home / 'team-mlflow.db'}")
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
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    try:
        objects = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    except client.exceptions.NoSuchBucket:
        return
    for o in objects:
        client.delete_object(Bucket=bucket, Key=o["Key"])
    client.delete_bucket(Bucket=bucket)


def _bash(block: Block, machine: Machine, env: dict[str, str],
          outputs: Path) -> subprocess.Popen[str]:
    """The block as one bash process in the machine's folder, after what earlier blocks of
    the session exported; what it exports is kept for the next."""
    restore = f"source {shlex.quote(str(machine.state))}\n" if machine.state.exists() else ""
    keep = f"\nexport -p > {shlex.quote(str(machine.state))}\n"
    return subprocess.Popen(["bash", "-c", restore + script(block, outputs) + keep],
                            cwd=machine.work, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _finish(proc: subprocess.Popen[str], where: str) -> str:
    try:
        out, _ = proc.communicate(timeout=BLOCK_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{where} did not finish in {BLOCK_TIMEOUT} s:\n{out[-3000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):  # a server a failed block left behind
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, f"{where}:\n{out[-4000:]}"
    assert "Traceback" not in out, f"{where} printed a traceback:\n{out[-4000:]}"
    return out


def _run_block(block: Block, machine: Machine, env: dict[str, str], outputs: Path) -> None:
    _finish(_bash(block, machine, env, outputs), block.where)


def _run_on_two_nodes(block: Block, machine: Machine, env: dict[str, str],
                      outputs: Path) -> None:
    """Two machines at once: this one as node 0 and a second folder and home as node 1."""
    second = Machine.make(machine.work.parent / "node1")
    second.home.rmdir()
    shutil.copytree(machine.home, second.home)
    if machine.state.exists():
        shutil.copy(machine.state, second.state)
    port = str(free_port())
    procs = [_bash(block, m, {**env, "HOME": str(m.home), "NODE_RANK": str(rank),
                              "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}, outputs)
             for rank, m in enumerate((machine, second))]
    errors: list[BaseException] = []

    def finish(proc: subprocess.Popen[str], rank: int) -> None:
        try:
            _finish(proc, f"{block.where} (node {rank})")
        except BaseException as err:  # reported below, with the other node's
            errors.append(err)
    threads = [threading.Thread(target=finish, args=(p, r)) for r, p in enumerate(procs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


@pytest.mark.slow
@pytest.mark.parametrize("session", list(SESSIONS))
def test_readme_session_runs_as_written(session, tmp_path, request):
    blocks = SESSIONS[session]
    machine = Machine.make(tmp_path)
    env = _environment(machine)
    _services(blocks, request, machine, env)
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    for block in blocks:
        if block.marks.get("nodes") == "2":
            _run_on_two_nodes(block, machine, env, outputs)
        else:
            _run_block(block, machine, env, outputs)
        for command in block.commands():
            if command.output:
                printed = (outputs / str(command.line)).read_text()
                missing = expected_lines_found(command.output, printed)
                assert not missing, (f"{block.path.name}:{command.line} did not print "
                                     f"{missing}; it printed:\n{printed[-2000:]}")


@pytest.mark.parametrize("block", NOT_RUN, ids=[b.where for b in NOT_RUN])
def test_blocks_that_do_not_run_here_say_why(block):
    """Listed in the summary as skipped, with the reason; a block .ci/run runs instead must
    be in it word for word."""
    assert set(block.marks) <= {"skip", "ci", "session"} and block.not_run
    if "ci" in block.marks:
        assert block.text.strip() in (ROOT / ".ci" / "run").read_text(), block.where
    pytest.skip(f"{block.where}: {block.not_run}")


def test_every_session_is_named_once_and_every_block_has_commands():
    for name, blocks in SESSIONS.items():
        assert all(b.commands() for b in blocks), name
    marks = {k for b in all_blocks() for k in b.marks}
    assert marks <= {"session", "nodes", "skip", "ci"}, marks
