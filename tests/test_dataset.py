"""Splits with a fixed seed, normalisation fitted on train only, content fingerprints."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from mfstore.dataset import DatasetOptions, load_dataset
from mfstore.errors import ConfigError


def _npz(tmp_path, n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=5.0, scale=3.0, size=(n, 4))
    x[:, 0] = np.arange(n)  # example id, to trace splits
    np.savez(tmp_path / f"d{seed}.npz", x=x, y=np.arange(n) % 4)
    return str(tmp_path / f"d{seed}.npz")


def _ids(dataset, split):
    s = getattr(dataset, split)
    norm = dataset.normalizer
    return set(torch.round(s.x[:, 0] * norm.std[0] + norm.mean[0]).long().tolist())


def test_splits_are_disjoint_stratified_and_seeded(tmp_path):
    url = _npz(tmp_path)
    a = load_dataset(url, DatasetOptions(val_fraction=0.1, test_fraction=0.2, seed=3))
    b = load_dataset(url, DatasetOptions(val_fraction=0.1, test_fraction=0.2, seed=3))
    c = load_dataset(url, DatasetOptions(val_fraction=0.1, test_fraction=0.2, seed=4))
    ids = [_ids(a, s) for s in ("train", "val", "test")]
    assert sum(map(len, ids)) == 200 and len(set.union(*ids)) == 200
    assert (len(a.train), len(a.val), len(a.test)) == (144, 16, 40)
    assert torch.bincount(a.test.y).tolist() == [10, 10, 10, 10]
    assert _ids(a, "test") == _ids(b, "test") and _ids(a, "test") != _ids(c, "test")
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert a.content_sha256 == c.content_sha256


def test_normalisation_is_fitted_on_train_only(tmp_path):
    dataset = load_dataset(_npz(tmp_path))
    train = dataset.train.x
    torch.testing.assert_close(train.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(train.std(0, unbiased=False), torch.ones(4), atol=1e-4, rtol=0)
    assert dataset.val.x.mean(0).abs().max() > 1e-3  # val is scaled by train's statistics


def test_images_are_normalised_per_channel(digits):
    assert digits.normalizer.mean.shape == (1, 1, 1)
    raw = load_dataset("sklearn:digits", DatasetOptions(normalize="none"))
    assert raw.train.x.max() == 16.0
    assert digits.fingerprint != raw.fingerprint


def test_fingerprint_follows_the_content(tmp_path):
    assert load_dataset(_npz(tmp_path, seed=0)).fingerprint != load_dataset(
        _npz(tmp_path, seed=1)).fingerprint


def test_source_test_split_is_kept(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "t.npz", x=rng.normal(size=(50, 3)), y=np.arange(50) % 2,
             x_test=rng.normal(size=(7, 3)), y_test=np.arange(7) % 2)
    dataset = load_dataset(str(tmp_path / "t.npz"))
    assert len(dataset.test) == 7 and len(dataset.train) + len(dataset.val) == 50


def test_bad_options():
    with pytest.raises(ConfigError, match=re.escape(
            "val_fraction must lie strictly between 0 and 1, got 1.5")):
        DatasetOptions(val_fraction=1.5)
