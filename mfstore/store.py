"""The store: an fsspec root holding `blocks/`, `streams/` and `exports/`.

Writes are atomic (a temporary name, then a move), so a reader never sees a partial file;
on local disks the data is fsynced before the move and the move before returning, so a
file is durable before any registry row points at it. Reads verify the sha256.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import uuid

import fsspec
from fsspec.implementations.local import LocalFileSystem

from mfstore.errors import IntegrityError, StoreError

VERIFY_HINT = "run `mfstore verify` to find and repair damaged layers"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Store:
    """Bytes under relative paths of one fsspec root."""

    def __init__(self, url: str, create: bool = True) -> None:
        self.url = url
        try:
            self.fs, self.root = fsspec.core.url_to_fs(url)
        except (ValueError, ImportError) as err:
            raise StoreError(f"cannot reach store {url!r}: {err}; check --store / "
                             "MFSTORE_STORE or install the protocol's fsspec backend") from err
        self.root = self.root.rstrip("/")
        self.local = isinstance(self.fs, LocalFileSystem)
        try:
            if create:
                self.fs.makedirs(self.root, exist_ok=True)
            elif not self.fs.isdir(self.root):
                raise StoreError(f"store {url!r} does not exist; run `mfstore init`")
        except OSError as err:
            raise StoreError(f"cannot reach store {url!r}: {err}; check --store / "
                             "MFSTORE_STORE") from err

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def url_of(self, rel: str) -> str:
        """A URL a user can read, for messages."""
        return self.path(rel) if self.local else f"{self.url.rstrip('/')}/{rel}"

    def put(self, rel: str, data: bytes) -> None:
        """Write `data` at `rel` atomically (and durably on local disks)."""
        final = self.path(rel)
        tmp = f"{posixpath.dirname(final)}/.tmp-{uuid.uuid4().hex}-{posixpath.basename(final)}"
        try:
            self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
            if self.local:
                self._put_local(tmp, final, data)
            else:
                self.fs.pipe_file(tmp, data)
                self.fs.mv(tmp, final)
        except OSError as err:
            raise StoreError(f"cannot write {self.url_of(rel)}: {err}") from err

    @staticmethod
    def _put_local(tmp: str, final: str, data: bytes) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        dir_fd = os.open(os.path.dirname(final), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def get(self, rel: str, expected_sha256: str | None = None) -> bytes:
        """The bytes at `rel`; with `expected_sha256`, refused unless they match."""
        try:
            data = self.fs.cat_file(self.path(rel))
        except FileNotFoundError as err:
            raise IntegrityError(f"{self.url_of(rel)} is missing; {VERIFY_HINT}") from err
        except OSError as err:
            raise StoreError(f"cannot read {self.url_of(rel)}: {err}") from err
        if expected_sha256 is not None and sha256(data) != expected_sha256:
            raise IntegrityError(
                f"{self.url_of(rel)} is damaged: its sha256 is not {expected_sha256[:12]}…; "
                f"{VERIFY_HINT}"
            )
        return data

    def exists(self, rel: str) -> bool:
        return bool(self.fs.exists(self.path(rel)))

    def size(self, rel: str) -> int:
        return int(self.fs.size(self.path(rel)))

    def delete(self, rel: str) -> None:
        if self.exists(rel):
            self.fs.rm(self.path(rel), recursive=True)

    def list(self, prefix: str) -> list[str]:
        """Relative paths of every file under `prefix` (temporary files included)."""
        base = self.path(prefix)
        if not self.fs.exists(base):
            return []
        root = self.root + "/"
        return sorted(p[len(root):] if p.startswith(root) else p
                      for p in self.fs.find(base))
