"""CIFAR-10 and CIFAR-100 python batches, from a folder or the original `.tar.gz`.

The batches are pickles. They are decoded with an unpickler that only rebuilds NumPy arrays
and plain containers, so a crafted file cannot run code.
"""

from __future__ import annotations

import io
import pickle
import posixpath
import tarfile

import numpy as np

from mfstore.errors import DataFormatError
from mfstore.readers import fs
from mfstore.readers.raw import RawData

_CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _decode_batch(data: bytes, name: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as err:  # any unpickling failure means: not a CIFAR batch
        raise DataFormatError(f"{name}: not a CIFAR python batch ({err})") from err
    if not isinstance(batch, dict):
        raise DataFormatError(f"{name}: not a CIFAR python batch (expected a dict)")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or label_key not in batch:
        raise DataFormatError(f"{name}: a CIFAR batch needs 'data' and '{label_key}' entries")
    x = np.asarray(batch["data"], dtype=np.uint8)
    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
        raise DataFormatError(f"{name}: 'data' must be (N, 3072) bytes, found {x.shape}")
    return x.reshape(-1, 3, 32, 32), np.asarray(batch[label_key], dtype=np.int64)


def _members(url: str) -> dict[str, bytes]:
    """Base name -> bytes of the batch files, from a folder or a tar archive."""
    wanted = {*_CIFAR10_TRAIN, "test_batch", "train", "test"}
    if fs.is_dir(url):
        names = [n for n in fs.list_names(url) if n in wanted]
        return {n: fs.read_bytes(fs.join(url, n)) for n in names}
    data, cap = fs.read_bytes(url), fs.max_read_bytes()
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            members = [m for m in tar.getmembers()
                       if m.isfile() and posixpath.basename(m.name) in wanted]
            if sum(m.size for m in members) > cap:
                raise DataFormatError(f"{url}: its batches unpack to more than the {cap} bytes "
                                      "a data file may hold (MFSTORE_MAX_READ_BYTES)")
            return {posixpath.basename(m.name): tar.extractfile(m).read()  # type: ignore[union-attr]
                    for m in members}
    except tarfile.TarError as err:
        raise DataFormatError(f"{url}: not a readable tar archive ({err})") from err


def read_cifar(url: str) -> RawData:
    """CIFAR-10 (`data_batch_1..5`, `test_batch`) or CIFAR-100 (`train`, `test`, fine labels)."""
    members = _members(url)
    if all(n in members for n in _CIFAR10_TRAIN):
        parts = [_decode_batch(members[n], n, "labels") for n in _CIFAR10_TRAIN]
        x_train = np.concatenate([p[0] for p in parts])
        y_train = np.concatenate([p[1] for p in parts])
        test = _decode_batch(members["test_batch"], "test_batch", "labels") if (
            "test_batch" in members) else (None, None)
        return RawData(x_train, y_train, test[0], test[1], format="cifar10", classes=10)
    if "train" in members:
        x_train, y_train = _decode_batch(members["train"], "train", "fine_labels")
        test = _decode_batch(members["test"], "test", "fine_labels") if (
            "test" in members) else (None, None)
        return RawData(x_train, y_train, test[0], test[1], format="cifar100", classes=100)
    raise DataFormatError(
        f"{url}: no CIFAR batches found; expected data_batch_1..5 and test_batch (CIFAR-10) "
        f"or train and test (CIFAR-100), found {sorted(members)}"
    )
