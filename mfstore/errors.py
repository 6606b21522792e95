"""The exceptions mfstore raises, and what would fix them.

Each error carries its message (what is wrong) and, as data, the fixes that apply
(`mfstore.fixes`: retrain this layer on that chain, set this option, create the registry).
`cli/` renders a fix as a command line and `serving/` as an HTTP answer; a Python caller
reads `err.fixes`, and `str(err)` says them in words. The library itself never writes
command-line syntax, never prints and never exits.
"""

from __future__ import annotations

import unicodedata

from mfstore.fixes import Fix


class MFStoreError(Exception):
    """Base class of every error mfstore raises on purpose."""

    def __init__(self, message: str, *fixes: Fix) -> None:
        message = printable(message)
        super().__init__(message)
        self.message, self.fixes = message, fixes

    def __str__(self) -> str:
        if not self.fixes:
            return self.message
        first, *rest = (f.describe() for f in self.fixes)
        return f"{self.message}; {first}" + "".join(f" (or {r})" for r in rest)


class DataSourceError(MFStoreError):
    """A data URL cannot be reached or opened."""


class DataFormatError(MFStoreError):
    """A file is not in the format it claims (bad magic number, truncated, unknown format)."""


class DataValidationError(MFStoreError):
    """The examples are unusable: count mismatch, NaN or infinite values, bad labels."""


class SpecError(MFStoreError):
    """A layer specification or architecture is invalid or does not fit its input."""


class ConfigError(MFStoreError):
    """A training or command option is out of range."""


class DivergenceError(ConfigError):
    """Training diverged (a non-finite loss or weight); nothing was registered."""


class DeviceError(MFStoreError):
    """The requested compute device is not available."""


class NotFoundError(MFStoreError):
    """A dataset, layer, network, version or alias does not exist."""


class ConflictError(MFStoreError):
    """The name is taken by something different, or something still needs what is asked to go."""


class IntegrityError(MFStoreError):
    """A stored file is missing, truncated or does not match its sha256."""


class StoreError(MFStoreError):
    """The store URL cannot be reached, read or written."""


class RegistryError(MFStoreError):
    """The registry cannot be opened or written, or is not an mfstore registry."""


class LineageError(MFStoreError):
    """A layer was trained on the outputs of a different upstream chain."""


class ExportError(MFStoreError):
    """An export failed its checks (ONNX checker, or parity with PyTorch)."""


def printable(text: str) -> str:
    """`text` with every control character (a terminal's escape sequences, form feeds, bytes
    of a binary file) and every invisible format character (bidirectional overrides) written
    as its escape, `\\x1b` or `\\u202e`: what a data file holds never acts on the terminal,
    log or page a message reaches."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " or unicodedata.category(c) not in (
        "Cc", "Cf", "Cs", "Zl", "Zp") else repr(c)[1:-1] for c in text)


def one_line(err: BaseException) -> str:
    """An error's message on one line (botocore's span several; the first may say nothing)."""
    text = " ".join(part.strip() for part in str(err).splitlines() if part.strip())
    return text or type(err).__name__


def transport_error(err: BaseException) -> bool:
    """An error of a file system or its network client (OSError, botocore, aiohttp, google,
    azure…) rather than of mfstore's own code."""
    if isinstance(err, OSError):
        return True
    module = type(err).__module__.split(".")[0]
    return module in {"botocore", "aiobotocore", "aiohttp", "google", "azure", "requests",
                      "urllib3", "s3fs", "gcsfs", "adlfs", "fsspec"}
