"""Start `mfstore serve` the way a user does, on ports it picks itself (`--port 0`), and read
back the addresses it announces once it is listening."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.cli_run import MFSTORE_COMMAND

LISTENING = re.compile(r"listening on (http://\S+?)/v2(?:, gRPC on (\S+))?$", re.M)


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT
    grpc: str | None  # 127.0.0.1:PORT
    log: Path  # what it printed (stdout and stderr), while it runs
    process: subprocess.Popen[bytes]
    printed: str | None = None  # all it printed, once it has stopped

    @property
    def address(self) -> str:
        """host:port, as tritonclient.http wants it."""
        return self.url.removeprefix("http://")

    def output(self) -> str:
        return self.printed if self.printed is not None else self.log.read_text()


def wait_for(condition: Callable[[], object], timeout: float = 60, what: str = "") -> object:
    """Poll `condition` until it returns something true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as r:
            return bool(json.loads(r.read()) == {"ready": True})
    except (urllib.error.URLError, ConnectionError):
        return False


@contextlib.contextmanager
def running_server(*args: str, timeout: float = 120, env: dict[str, str] | None = None
                   ) -> Iterator[Server]:
    """`mfstore ARGS… --port 0`, until it answers /v2/health/ready; stopped with SIGTERM."""
    with tempfile.TemporaryDirectory(prefix="mf-serve-") as folder:
        log = Path(folder) / "server.log"
        with log.open("wb") as sink:
            process = subprocess.Popen([*MFSTORE_COMMAND, *args, "--port", "0"], stdout=sink,
                                       stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        server = None
        try:
            def announced() -> re.Match[str] | None:
                if process.poll() is not None:
                    raise RuntimeError(f"server exited: {log.read_text()}")
                return LISTENING.search(log.read_text())

            found = wait_for(announced, timeout, "the server to listen")
            assert isinstance(found, re.Match)
            server = Server(found[1], found[2], log, process)
            wait_for(lambda: _ready(server.url), timeout, "/v2/health/ready")
            yield server
        finally:
            process.terminate()
            process.wait(timeout=30)
            if server is not None:
                server.printed = log.read_text()
