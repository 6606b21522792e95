"""Every bad input gets a named error whose message says what to do."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mfstore.dataset import DatasetOptions, load_dataset
from mfstore.errors import ConfigError, DataFormatError, DataSourceError, DataValidationError
from tests.formats import idx_bytes, mnist_like, write_idx, write_mnist_folder


def test_idx_with_wrong_magic_number(tmp_path):
    folder = write_mnist_folder(tmp_path / "m", gz=False)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(b"\x12\x34" + path.read_bytes()[2:])
    with pytest.raises(DataFormatError, match=re.escape(
            f"{path}: wrong magic number 0x12340803; an IDX file starts with two zero bytes")):
        load_dataset(str(folder))


def test_truncated_idx(tmp_path):
    folder = write_mnist_folder(tmp_path / "m", gz=False)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DataFormatError, match=re.escape(
            f"{path} is truncated or padded: its header promises 1440 bytes of data for "
            "shape (40, 6, 6), the file holds 1433; re-download it")):
        load_dataset(str(folder))


def test_truncated_gzip(tmp_path):
    folder = write_mnist_folder(tmp_path / "m", gz=True)
    path = folder / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataFormatError, match="is not a valid gzip file"):
        load_dataset(str(folder))


def test_images_and_labels_counts_differ(tmp_path):
    x, _ = mnist_like(10)
    write_idx(tmp_path / "train-images-idx3-ubyte", x)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(9, np.uint8))
    with pytest.raises(DataValidationError, match=re.escape(
            "train: 10 examples but 9 labels; give one label per example")):
        load_dataset(str(tmp_path))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_features(tmp_path, bad):
    x = np.ones((20, 3))
    x[7, 1] = bad
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(20) % 2)
    with pytest.raises(DataValidationError, match=re.escape(
            "train: 1 examples hold NaN or infinite features (first at example 7); "
            "clean or impute them before import")):
        load_dataset(str(tmp_path / "d.npz"))


def test_empty_csv_cell_is_refused_as_nan(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n1,2,0\n3,,1\n5,6,0\n7,8,1\n")
    with pytest.raises(DataValidationError, match="NaN or infinite features"):
        load_dataset(str(path))


def test_labels_outside_the_class_range(tmp_path):
    np.savez(tmp_path / "neg.npz", x=np.ones((10, 2)), y=np.array([0, 1, -1, 0, 1, 0, 1, 0, 1, 0]))
    with pytest.raises(DataValidationError, match=re.escape(
            "labels must lie in 0..1 (2 classes); found labels from -1 to 1; relabel them or "
            "set the number of classes")):
        load_dataset(str(tmp_path / "neg.npz"))
    np.savez(tmp_path / "big.npz", x=np.ones((10, 2)), y=np.arange(10) % 5)
    with pytest.raises(DataValidationError, match=re.escape(
            "labels must lie in 0..2 (3 classes); found labels from 0 to 4")):
        load_dataset(str(tmp_path / "big.npz"), DatasetOptions(classes=3))


def test_fractional_labels(tmp_path):
    np.savez(tmp_path / "f.npz", x=np.ones((4, 2)), y=np.array([0.0, 0.5, 1.0, 1.0]))
    with pytest.raises(DataValidationError, match=re.escape("train: labels must be whole numbers")):
        load_dataset(str(tmp_path / "f.npz"))


def test_unknown_format(tmp_path):
    (tmp_path / "data.bin").write_bytes(b"\x00" * 16)
    with pytest.raises(DataFormatError, match=re.escape(
            f"cannot tell the format of '{tmp_path}/data.bin'; set 'format' (one of: idx, "
            "cifar, npz, csv, parquet, sklearn, tokens)")):
        load_dataset(str(tmp_path / "data.bin"))
    with pytest.raises(ConfigError, match=re.escape(  # an option, refused before any read
            "unknown format 'hdf5'; choose one of: idx, cifar, npz, csv, parquet, sklearn, "
            "tokens")):
        load_dataset(str(tmp_path / "data.bin"), DatasetOptions(format="hdf5"))


def test_unreachable_urls(tmp_path):
    with pytest.raises(DataSourceError, match=re.escape(
            f"cannot reach '{tmp_path}/missing.npz': no such file or folder; check the path")):
        load_dataset(str(tmp_path / "missing.npz"))
    with pytest.raises(DataSourceError, match=re.escape(
            "cannot reach 'nosuchproto://bucket/x.npz': Protocol not known: nosuchproto; check "
            "the URL's protocol or install its fsspec backend")):
        load_dataset("nosuchproto://bucket/x.npz")
    with pytest.raises(DataSourceError, match=re.escape(
            "unknown bundled dataset 'sklearn:mnist'; choose one of sklearn:digits")):
        load_dataset("sklearn:mnist")


def test_csv_without_the_label_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,target\n1,2,0\n3,4,1\n")
    with pytest.raises(DataFormatError, match=re.escape(
            f"{path}: no label column 'label'; columns are ['a', 'b', 'target']; set "
            "'label_column' naming the label column")):
        load_dataset(str(path))


def test_non_numeric_feature_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,colour,label\n1,red,0\n3,blue,1\n")
    with pytest.raises(DataFormatError, match=re.escape(
            f"{path}: feature column 'colour' is string, not numeric; drop or encode it")):
        load_dataset(str(path))


def test_npz_without_x_and_y(tmp_path):
    np.savez(tmp_path / "d.npz", features=np.ones((2, 2)))
    with pytest.raises(DataFormatError, match=re.escape(
            f"{tmp_path}/d.npz: a .npz must hold arrays 'x' and 'y'; found ['features']")):
        load_dataset(str(tmp_path / "d.npz"))


def test_cifar_pickle_that_would_run_code_is_refused(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    folder = tmp_path / "cifar"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}, protocol=2))
    with pytest.raises(DataFormatError, match=re.escape(
            "data_batch_1: not a CIFAR python batch (refusing to load __builtin__.print)")):
        load_dataset(str(folder))


def test_idx_labels_of_wrong_rank(tmp_path):
    x, _ = mnist_like(4)
    write_idx(tmp_path / "train-images-idx3-ubyte", x)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros((4, 2), np.uint8)))
    with pytest.raises(DataFormatError, match="labels must have rank 1, found rank 2"):
        load_dataset(str(tmp_path))
