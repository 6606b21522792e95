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


def digits_as_tokens() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's digits as token-id sequences: one token per lit pixel, id = position * 16 +
    intensity (1..16), so 0 stays padding; each row padded with 0 to the longest. A real,
    small token dataset: (1797, T) int64 ids 0..1024, and the digits' labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = digits.data.astype(np.int64)  # (N, 64), 0..16
    rows = [np.flatnonzero(p) * 16 + p[p > 0] for p in pixels]
    ids = np.zeros((len(rows), max(len(r) for r in rows)), np.int64)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
    return ids, digits.target.astype(np.int64)


def write_token_parquet(path: Path, ids: np.ndarray, y: np.ndarray) -> Path:
    """Token ids as a Parquet list column (each row's ids without its padding) and a label."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    lists = [row[row > 0].tolist() for row in ids]
    pq.write_table(pa.table({"text": pa.array(lists, pa.list_(pa.int64())), "label": y}), path)
    return path
