"""Every reader on small files written in the real format, local and memory://."""

from __future__ import annotations

import io

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mfstore.dataset import load_dataset
from mfstore.readers import detect_format, read_source
from tests.formats import (
    cifar10_members,
    cifar100_members,
    idx_bytes,
    mnist_like,
    write_folder,
    write_idx,
    write_mnist_folder,
    write_tar_gz,
)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_with_train_and_test(tmp_path, gz):
    folder = write_mnist_folder(tmp_path / "mnist", gz=gz)
    raw = read_source(str(folder))
    assert raw.format == "idx"
    assert raw.x_train.shape == (40, 1, 6, 6) and raw.x_test.shape == (20, 1, 6, 6)
    x, y = mnist_like(40, seed=40)
    np.testing.assert_array_equal(raw.x_train[:, 0], x)
    np.testing.assert_array_equal(raw.y_train, y)


def test_idx_single_images_file_finds_its_labels(tmp_path):
    folder = write_mnist_folder(tmp_path / "m", gz=True)
    raw = read_source(str(folder / "train-images-idx3-ubyte.gz"))
    assert raw.x_train.shape == (40, 1, 6, 6) and raw.x_test is None


def test_idx_of_every_dtype_decodes(tmp_path):
    for dtype in (">i2", ">i4", ">f4", ">f8", "i1"):
        a = np.arange(24).reshape(2, 3, 4).astype(dtype)
        from mfstore.readers.idx import parse_idx

        np.testing.assert_array_equal(parse_idx(idx_bytes(a), "a"), a)


def test_idx_from_memory_url():
    x, y = mnist_like(100)
    mem = fsspec.filesystem("memory")
    mem.pipe("/idx/train-images-idx3-ubyte", idx_bytes(x))
    mem.pipe("/idx/train-labels-idx1-ubyte", idx_bytes(y))
    dataset = load_dataset("memory://idx")
    assert len(dataset.train) + len(dataset.val) + len(dataset.test) == 100
    assert dataset.input_shape == (1, 6, 6)


@pytest.mark.parametrize("packed", ["folder", "tar"])
def test_cifar10(tmp_path, packed):
    members = cifar10_members(n=10)
    url = (write_folder(tmp_path / "cifar-10-batches-py", members) if packed == "folder"
           else write_tar_gz(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py", members))
    raw = read_source(str(url))
    assert raw.format == "cifar10" and raw.classes == 10
    assert raw.x_train.shape == (50, 3, 32, 32) and raw.x_test.shape == (10, 3, 32, 32)
    assert raw.y_train.tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


def test_cifar100_tar(tmp_path):
    url = write_tar_gz(tmp_path / "cifar-100-python.tar.gz", "cifar-100-python", cifar100_members())
    raw = read_source(str(url))
    assert raw.format == "cifar100" and raw.classes == 100
    assert raw.x_train.shape == (120, 3, 32, 32) and raw.y_test.shape == (60,)


def test_npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    np.savez(path, x=rng.normal(size=(50, 4)), y=np.arange(50) % 3)
    dataset = load_dataset(str(path))
    assert dataset.classes == 3 and dataset.input_shape == (4,)
    assert len(dataset.train) + len(dataset.val) + len(dataset.test) == 50


def _table(n: int = 60) -> pa.Table:
    rng = np.random.default_rng(1)
    return pa.table({"a": rng.normal(size=n), "b": rng.integers(0, 5, n),
                     "species": [["x", "y", "z"][i % 3] for i in range(n)]})


def test_csv_with_named_label_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("f1,f2,label\n" + "".join(f"{i},{i * 2},{i % 2}\n" for i in range(40)))
    raw = read_source(str(path))
    assert raw.format == "csv" and raw.x_train.shape == (40, 2)
    assert raw.y_train.tolist()[:4] == [0, 1, 0, 1]


def test_parquet_with_string_labels(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(_table(), path)
    raw = read_source(str(path), label_column="species")
    assert raw.class_names == ["x", "y", "z"]
    assert raw.x_train.shape == (60, 2) and raw.y_train.tolist()[:3] == [0, 1, 2]


def test_parquet_from_memory_url():
    buf = io.BytesIO()
    pq.write_table(_table(), buf)
    fsspec.filesystem("memory").pipe("/tables/t.parquet", buf.getvalue())
    dataset = load_dataset("memory://tables/t.parquet",
                           __import__("mfstore").DatasetOptions(label_column="species"))
    assert dataset.classes == 3


@pytest.mark.parametrize("name,shape,classes", [("sklearn:digits", (1, 8, 8), 10),
                                                ("sklearn:breast_cancer", (30,), 2)])
def test_bundled_sklearn(name, shape, classes):
    dataset = load_dataset(name)
    assert dataset.input_shape == shape and dataset.classes == classes


def test_format_detection(tmp_path):
    folder = write_mnist_folder(tmp_path / "f")
    assert detect_format(str(folder)) == "idx"
    assert detect_format(str(write_folder(tmp_path / "c", cifar10_members(2)))) == "cifar"
    assert detect_format("anything.parquet") == "parquet"
    assert detect_format("sklearn:digits") == "sklearn"
    write_idx(tmp_path / "lone-ubyte", np.zeros((2, 2), np.uint8))
    assert detect_format(str(tmp_path / "lone-ubyte")) == "idx"
