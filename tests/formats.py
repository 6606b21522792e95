"""Writers of small files in the real formats the readers accept."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

IDX_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype(">i2"): 0x0B,
             np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim])
    return header + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def mnist_like(n: int, seed: int = 0, size: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, size, size), dtype=np.uint8),
            (np.arange(n) % 10).astype(np.uint8))


def write_mnist_folder(folder: Path, gz: bool = True, n_train: int = 40, n_test: int = 20) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x, y = mnist_like(n, seed=n)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", x, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", y, gz)
    return folder


def cifar_batch(n: int, classes: int, label_key: bytes, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    batch = {b"batch_label": b"test batch", label_key: [int(v) for v in np.arange(n) % classes],
             b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"filenames": [b"x.png"] * n}
    return pickle.dumps(batch, protocol=2)


def cifar10_members(n: int = 10) -> dict[str, bytes]:
    members = {f"data_batch_{i}": cifar_batch(n, 10, b"labels", i) for i in range(1, 6)}
    members["test_batch"] = cifar_batch(n, 10, b"labels", 9)
    members["batches.meta"] = pickle.dumps({b"label_names": [b"c"] * 10}, protocol=2)
    return members


def cifar100_members(n: int = 120) -> dict[str, bytes]:
    return {"train": cifar_batch(n, 100, b"fine_labels", 1),
            "test": cifar_batch(n // 2, 100, b"fine_labels", 2),
            "meta": pickle.dumps({b"fine_label_names": [b"c"] * 100}, protocol=2)}


def write_folder(folder: Path, members: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in members.items():
        (folder / name).write_bytes(data)
    return folder


def write_tar_gz(path: Path, top: str, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path
