"""IDX files (`*-ubyte`, `*-ubyte.gz`): the MNIST / Fashion-MNIST layout."""

from __future__ import annotations

import math
import posixpath
import struct

import numpy as np

from mfstore.errors import DataFormatError
from mfstore.readers import fs
from mfstore.readers.raw import RawData

_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_SPLIT_PREFIXES = {"train": ("train",), "test": ("t10k", "test")}


def parse_idx(data: bytes, name: str) -> np.ndarray:
    """Decode one IDX file: magic (0, 0, type code, rank), big-endian dims, then the data."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise DataFormatError(
            f"{name}: wrong magic number 0x{data[:4].hex()}; an IDX file starts with two zero "
            "bytes, a type code (0x08-0x0E) and the rank: check that this is an "
            "uncompressed *-ubyte or a gzipped *-ubyte.gz file"
        )
    rank = data[3]
    header = 4 + 4 * rank
    if len(data) < header:
        raise DataFormatError(f"{name} is truncated inside its header; re-download it")
    dims = struct.unpack(f">{rank}I", data[4:header])
    dtype = np.dtype(_DTYPES[data[2]])
    expected = math.prod(dims) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        raise DataFormatError(
            f"{name} is truncated or padded: its header promises {expected} bytes of data "
            f"for shape {tuple(dims)}, the file holds {found}; re-download it"
        )
    return np.frombuffer(data, dtype, offset=header).reshape(dims)


def _as_examples(images: np.ndarray, name: str) -> np.ndarray:
    if images.ndim == 3:  # (N, H, W) -> (N, 1, H, W)
        return images[:, None, :, :]
    if images.ndim in (2, 4):
        return images
    raise DataFormatError(f"{name}: expected rank 2, 3 or 4 examples, found rank {images.ndim}")


def _find(names: list[str], prefixes: tuple[str, ...], kind: str) -> str | None:
    for prefix in prefixes:
        for suffix in ("", ".gz"):
            candidate = f"{prefix}-{kind}-ubyte{suffix}"
            if candidate in names:
                return candidate
    return None


def _read_pair(images_url: str, labels_url: str) -> tuple[np.ndarray, np.ndarray]:
    images = parse_idx(fs.read_bytes(images_url), images_url)
    labels = parse_idx(fs.read_bytes(labels_url), labels_url)
    if labels.ndim != 1:
        raise DataFormatError(f"{labels_url}: labels must have rank 1, found rank {labels.ndim}")
    return _as_examples(images, images_url), labels


def read_idx(url: str) -> RawData:
    """A folder holding train-/t10k- images and labels, or one images file (labels beside it)."""
    if fs.is_dir(url):
        names = fs.list_names(url)
        pairs = {}
        for split, prefixes in _SPLIT_PREFIXES.items():
            images = _find(names, prefixes, "images-idx3")
            labels = _find(names, prefixes, "labels-idx1")
            if images and labels:
                pairs[split] = _read_pair(fs.join(url, images), fs.join(url, labels))
        if "train" not in pairs:
            raise DataFormatError(
                f"{url}: no train-images-idx3-ubyte[.gz] with train-labels-idx1-ubyte[.gz] "
                f"found (the folder holds {names[:8]})"
            )
        test = pairs.get("test", (None, None))
        return RawData(*pairs["train"], test[0], test[1], format="idx")
    base = posixpath.basename(url)
    if "images-idx" not in base:
        raise DataFormatError(
            f"{url}: give the folder, or the images file (*-images-idx3-ubyte[.gz]) "
            "with its *-labels-idx1-ubyte[.gz] beside it"
        )
    labels_url = url[: len(url) - len(base)] + base.replace("images-idx3", "labels-idx1")
    x, y = _read_pair(url, labels_url)
    return RawData(x, y, None, None, format="idx")
