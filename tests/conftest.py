from __future__ import annotations

import pytest

from mfstore.dataset import Dataset, load_dataset


@pytest.fixture(scope="session")
def digits() -> Dataset:
    return load_dataset("sklearn:digits")


@pytest.fixture(scope="session")
def breast_cancer() -> Dataset:
    return load_dataset("sklearn:breast_cancer")
