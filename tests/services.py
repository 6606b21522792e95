"""Real servers for the tests, started on loopback ports in temporary folders.

- PostgreSQL: Debian's `postgresql` package (`apt-get install postgresql`; `.ci/run` does it),
  a cluster of its own made by `initdb` (as the `postgres` user when run as root, which
  `initdb` refuses), one fresh database per test.
- S3: moto's standalone server (`moto[server]`, the S3 API that s3fs's own tests use), one
  fresh bucket per test; its access log counts the requests a command makes.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(ready, what: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start within {timeout} s")
        time.sleep(0.05)


class Postgres:
    """A PostgreSQL cluster of our own, in a folder of its own under /tmp (the `postgres`
    user cannot enter pytest's root-only temporary folders)."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [
            shutil.which("initdb") or ""]
        if not found[-1]:
            raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql "
                               "(.ci/run installs it)")
        self.bin = Path(found[-1]).parent
        self.folder = folder = Path(tempfile.mkdtemp(prefix="mfstore-pg-"))
        self.port = free_port()
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(folder, "postgres")
        self._run("initdb", "-D", str(folder / "data"), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8")
        self.proc = subprocess.Popen(
            [*self.as_user, str(self.bin / "postgres"), "-D", str(folder / "data"),
             "-p", str(self.port), "-k", str(folder), "-c", "listen_addresses=127.0.0.1",
             "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=open(folder / "log", "w"))  # noqa: SIM115
        _wait(self._accepting, "postgres", self.proc)

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_user, str(self.bin / tool), *args], check=True,
                       capture_output=True)

    def _accepting(self) -> bool:
        return subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p",
                               str(self.port)], capture_output=True).returncode == 0

    def url(self, database: str, password: str | None = None) -> str:
        user = "postgres" + (f":{password}" if password else "")
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)


class S3:
    """moto's S3 server; its access log is read to count requests."""

    def __init__(self, folder: Path) -> None:
        self.port, self.log = free_port(), folder / "moto.log"
        self.endpoint = f"http://127.0.0.1:{self.port}"
        moto = Path(sys.executable).with_name("moto_server")
        self.proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "w"))  # noqa: SIM115
        _wait(self._up, "moto_server", self.proc)
        self.env = {**S3_ENV, "AWS_ENDPOINT_URL": self.endpoint}

    def _up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):
                return True
        except OSError:
            return False

    def new_bucket(self) -> str:
        """A bucket name no test used yet (not created: `init` creates it)."""
        return f"b-{uuid.uuid4().hex[:12]}"

    def mark(self) -> int:
        return self.log.stat().st_size

    def requests_since(self, mark: int, bucket: str) -> Counter[str]:
        """HTTP methods of the requests on `bucket` logged since `mark`."""
        with open(self.log, "rb") as f:
            f.seek(mark)
            text = f.read().decode(errors="replace")
        return Counter(m.group(1) for m in re.finditer(
            rf'"(GET|PUT|HEAD|POST|DELETE) /{re.escape(bucket)}[/? ]', text))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
