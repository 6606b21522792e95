"""A real `mfstore ui` on a free loopback port, plain HTTP requests to it, and snapshots of a
workspace's files that show whether anything was written."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.cli_run import MFSTORE
from tests.services import free_port


def snapshot(home: Path) -> dict[str, str]:
    """sha256 of every file under home: registry and store, as any process may leave them.

    SQLite's `-shm` file is left out: it is the WAL index in shared memory, which every reader
    maps and writes its read mark into, so any read changes it; it holds no data (SQLite
    rebuilds it from the WAL). An empty `-wal` is left out too: a reader opening the database
    creates it and the last connection to close removes it, so whether it is there says who
    holds a connection, not what was written. Anything written shows as frames in the `-wal`
    or, once checkpointed, as a changed database file.
    """
    return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(home.rglob("*")) if p.is_file()
            and not p.name.endswith("-shm")
            and not (p.name.endswith("-wal") and p.stat().st_size == 0)}


@dataclass
class Answer:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def answer(url: str, headers: dict[str, str] | None = None, follow: bool = True) -> Answer:
    """The server's answer to GET `url` (a redirect followed only with `follow`)."""
    request = urllib.request.Request(url, headers=headers or {})
    opener = urllib.request.build_opener(*([] if follow else [_NoRedirect()]))
    try:
        with opener.open(request, timeout=30) as response:
            return Answer(response.status, response.read().decode(), dict(response.headers))
    except urllib.error.HTTPError as err:
        return Answer(err.code, err.read().decode(), dict(err.headers))


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    found = answer(url, headers)
    return found.status, found.body


@contextlib.contextmanager
def ui_server(home: Path, *args: str, where: Sequence[str] = (), cwd: Path | None = None,
              timeout: float = 90) -> Iterator[str]:
    """`mfstore WHERE… ui --port P ARGS…` with MFSTORE_HOME=HOME exported, as a user starts
    it; its URL once healthy. `where`: global options (--registry, --store), which the
    commands its pages suggest repeat."""
    port = free_port()
    proc = subprocess.Popen([MFSTORE, *where, "ui", "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd,
                            env={**os.environ, "MFSTORE_HOME": str(home)})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mfstore ui exited: {proc.stdout.read()}")  # type: ignore
            with contextlib.suppress(urllib.error.URLError, ConnectionError):
                if get(f"{url}/health")[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("mfstore ui did not answer /health")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
