"""The store: an fsspec root holding `blocks/`, `streams/` and `exports/`.

A reader never sees a partial file. On object stores (S3, GCS, Azure, memory) one PUT is
atomic, so each object is written once, directly. On file systems a file is written under a
temporary name and moved into place; on local disks the data is fsynced before the move and
the move before returning, so a file is durable before any registry row points at it. Reads
verify the sha256.

Only `create()` (run by init) makes anything at the root: the folder or bucket, and the marker
`mfstore-store.json` that names the registry the store belongs to, which tells a store from a
mistyped URL and keeps a second registry from collecting a store that is not its own.
Opening a store and reading from it never creates anything. Failures to reach, read or write
the store are one-line `StoreError`s (a missing object is `FileNotFoundError` from
`get_optional`, or an `IntegrityError` where the registry promised it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

from mfstore.errors import IntegrityError, StoreError, one_line, transport_error
from mfstore.fixes import InitFix, SettingFix, VerifyFix
from mfstore.urls import mask_credentials

T = TypeVar("T")
OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "memory"}
MARKER = "mfstore-store.json"
CHECK_URL = SettingFix("store")
VERIFY = VerifyFix()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def display(url: str) -> str:
    """A store URL as it may be shown: credentials in it masked."""
    return mask_credentials(url)


def _defaults(url: str) -> dict[str, object]:
    """Storage options where the user set none (fsspec reads `FSSPEC_S3_*` settings): on S3,
    each read is one GET (s3fs otherwise sends a HEAD first to size a concurrent download),
    and an endpoint that does not answer is reported within seconds, not minutes."""
    if not url.startswith(("s3://", "s3a://")):
        return {}
    options: dict[str, object] = {}
    if "FSSPEC_S3_MAX_CONCURRENCY" not in os.environ:
        options["max_concurrency"] = 1
    if "FSSPEC_S3_CONFIG_KWARGS" not in os.environ:
        options["config_kwargs"] = {"connect_timeout": 5,
                                    "retries": {"max_attempts": 2, "mode": "standard"}}
    return options


class Store:
    """Bytes under relative paths of one fsspec root."""

    def __init__(self, url: str) -> None:
        self.url, self.shown = url, display(url)
        try:
            self.fs, root = fsspec.core.url_to_fs(url, **_defaults(url))
        except (ValueError, ImportError) as err:
            hint = " (install mfstore[s3] for s3://)" if url.startswith("s3") else ""
            raise StoreError(f"cannot reach store {self.shown!r}: {err}{hint}",
                             CHECK_URL) from err
        self.root = root.rstrip("/")
        self.local = isinstance(self.fs, LocalFileSystem)
        if url.startswith(("s3://", "s3a://")):
            self.fs.retries = 2  # s3fs's own retries, on top of botocore's (5 by default)
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (
            self.fs.protocol,)
        self.object_store = any(p in OBJECT_STORES for p in protocols)

    @contextmanager
    def _reaching(self, doing: str) -> Iterator[None]:
        """Errors of the file system or its network client, as one line."""
        try:
            yield
        except (IntegrityError, StoreError, FileNotFoundError):
            raise
        except Exception as err:
            if not (transport_error(err) or isinstance(err, ValueError)):
                raise
            reason = one_line(err)
            if isinstance(err, PermissionError):
                reason = f"permission denied ({reason})"
            raise StoreError(f"cannot {doing}: {reason}", CHECK_URL) from err

    def _call(self, doing: str, fn: Callable[[], T]) -> T:
        with self._reaching(doing):
            return fn()

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def url_of(self, rel: str) -> str:
        """A URL a user can read, for messages."""
        return self.path(rel) if self.local else f"{self.shown.rstrip('/')}/{rel}"

    # the store itself ------------------------------------------------------------------------

    def create(self, registry_id: str) -> None:
        """Make the root (folder or bucket) and its marker, which names the registry the store
        belongs to; a no-op on this registry's existing store, refused on another's."""
        def make() -> None:
            bucket = self.root.split("/")[0]
            if self.object_store and not self.fs.exists(bucket):
                with contextlib.suppress(FileExistsError):  # another process made it first
                    self.fs.mkdir(bucket)
            elif not self.object_store:
                self.fs.makedirs(self.root, exist_ok=True)
            marker = json.dumps({"format": "mfstore.store/1", "registry": registry_id},
                                sort_keys=True).encode()
            self.put(MARKER, marker, exclusive=True)
        self._call(f"create store {self.shown!r}", make)
        self.check(registry_id)

    def check(self, registry_id: str) -> None:
        """Refuse a root that is not the store of registry `registry_id` (one request: the
        marker `create` wrote)."""
        try:
            marker = json.loads(self.get_optional(MARKER))
            owner = marker.get("registry") if isinstance(marker, dict) else None
        except FileNotFoundError:
            raise StoreError(f"there is no mfstore store at {self.shown!r}", InitFix(),
                             CHECK_URL) from None
        except ValueError:
            owner = None
        if owner != registry_id:
            raise StoreError(f"the store {self.shown!r} belongs to another registry (its marker "
                             f"names {str(owner)[:12]}, this registry is {registry_id[:12]}); "
                             "use the registry and the store that belong together",
                             CHECK_URL, SettingFix("registry"))

    # objects -----------------------------------------------------------------------------

    def put(self, rel: str, data: bytes, exclusive: bool = False) -> bool:
        """Write `data` at `rel` atomically (and durably on local disks). With `exclusive`,
        only if nothing is there yet (atomically on local disks and S3); returns whether it
        was written."""
        final = self.path(rel)
        with self._reaching(f"write {self.url_of(rel)}"):
            if self.object_store:
                return self._put_object(final, data, exclusive)
            tmp = f"{posixpath.dirname(final)}/.tmp-{uuid.uuid4().hex}-{posixpath.basename(final)}"
            self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
            if self.local:
                return _put_local(tmp, final, data, exclusive)
            if exclusive and self.fs.exists(final):
                return False
            try:
                self.fs.pipe_file(tmp, data)
                self.fs.mv(tmp, final)
            except BaseException:
                with contextlib.suppress(Exception):  # the failure's own error is raised
                    self.fs.rm(tmp)
                raise
            return True

    def _put_object(self, final: str, data: bytes, exclusive: bool) -> bool:
        """One PUT; exclusive through a conditional write (If-None-Match) where the client
        offers one (s3fs), else after a check."""
        if not exclusive:
            self.fs.pipe_file(final, data)
            return True
        if self.fs.protocol in ("s3", ("s3", "s3a")) or "s3" in self.fs.protocol:
            try:
                self.fs.pipe_file(final, data, mode="create")
                return True
            except FileExistsError:
                return False
        if self.fs.exists(final):
            return False
        self.fs.pipe_file(final, data)
        return True

    def get(self, rel: str, expected_sha256: str | None = None) -> bytes:
        """The bytes at `rel`, which must exist; with `expected_sha256`, refused unless they
        match."""
        try:
            data = self.get_optional(rel)
        except FileNotFoundError as err:
            raise IntegrityError(f"{self.url_of(rel)} is missing", VERIFY) from err
        if expected_sha256 is not None and sha256(data) != expected_sha256:
            raise IntegrityError(
                f"{self.url_of(rel)} is damaged: its sha256 is not {expected_sha256[:12]}…",
                VERIFY)
        return data

    def get_optional(self, rel: str) -> bytes:
        """The bytes at `rel` in one request; `FileNotFoundError` when there are none."""
        def read() -> bytes:
            if self.local and os.path.isdir(self.path(rel)):
                raise FileNotFoundError(self.path(rel))
            return bytes(self.fs.cat_file(self.path(rel)))
        return self._call(f"read {self.url_of(rel)}", read)

    def exists(self, rel: str) -> bool:
        return bool(self._call(f"reach {self.url_of(rel)}",
                               lambda: self.fs.exists(self.path(rel))))

    def size(self, rel: str) -> int:
        return int(self._call(f"reach {self.url_of(rel)}", lambda: self.fs.size(self.path(rel))))

    def size_or_zero(self, rel: str) -> int:
        """The size of `rel`, or 0 once another process removed it."""
        try:
            return self.size(rel)
        except FileNotFoundError:
            return 0

    def modified(self, rel: str) -> float | None:
        """Seconds since the epoch of the last write of `rel`: None when it is gone, 0.0
        where the store cannot say (everything counts as old there)."""
        try:
            return float(self.fs.modified(self.path(rel)).timestamp())
        except FileNotFoundError:
            return None
        except (NotImplementedError, OSError, AttributeError, KeyError):
            return 0.0

    def delete(self, rel: str) -> None:
        """Remove the file or folder `rel`; a missing one (removed by another process, say)
        is fine."""
        def remove() -> None:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(self.path(rel), recursive=True)
        self._call(f"delete {self.url_of(rel)}", remove)

    def list(self, prefix: str) -> list[str]:
        """Relative paths of every file under `prefix` (temporary files included)."""
        base, root = self.path(prefix), self.root + "/"

        def find() -> list[str]:
            return sorted(p[len(root):] if p.startswith(root) else p
                          for p in self.fs.find(base))
        return self._call(f"list {self.url_of(prefix)}", find)


def _put_local(tmp: str, final: str, data: bytes, exclusive: bool) -> bool:
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:  # a full disk, say: no half-written temporary file is left
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if exclusive:
        try:
            os.link(tmp, final)  # fails where a file is already in place
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
    else:
        os.replace(tmp, final)
    dir_fd = os.open(os.path.dirname(final), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True
