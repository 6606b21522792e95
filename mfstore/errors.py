"""The exceptions mfstore raises. Each message says what is wrong and what to do.

`cli/` maps them to exit codes and `serving/` to HTTP statuses; the library never prints
or exits.
"""

from __future__ import annotations


class MFStoreError(Exception):
    """Base class of every error mfstore raises on purpose."""


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


class DeviceError(MFStoreError):
    """The requested compute device is not available."""


class NotFoundError(MFStoreError):
    """A dataset, layer, network, version or alias does not exist."""


class ConflictError(MFStoreError):
    """The name is taken by something different."""


class IntegrityError(MFStoreError):
    """A stored file is missing, truncated or does not match its sha256."""


class StoreError(MFStoreError):
    """The store URL cannot be reached or written."""


class RegistryError(MFStoreError):
    """The registry cannot be opened, or its schema is not the one this mfstore expects."""


class LineageError(MFStoreError):
    """A layer was trained on the outputs of a different upstream chain."""


class ExportError(MFStoreError):
    """An export failed its checks (ONNX checker, or parity with PyTorch)."""
