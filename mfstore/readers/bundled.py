"""Datasets that ship inside scikit-learn: `sklearn:digits`, `sklearn:breast_cancer`, …"""

from __future__ import annotations

from mfstore.errors import DataSourceError
from mfstore.readers.raw import RawData

BUNDLED = ("digits", "breast_cancer", "iris", "wine")


def read_bundled(url: str) -> RawData:
    name = url.split(":", 1)[1]
    if name not in BUNDLED:
        raise DataSourceError(
            f"unknown bundled dataset {url!r}; choose one of "
            + ", ".join(f"sklearn:{n}" for n in BUNDLED)
        )
    from sklearn import datasets  # start-up: scikit-learn (~1 s) only for sklearn: sources

    loaded = getattr(datasets, f"load_{name}")()
    x = loaded.images[:, None, :, :] if name == "digits" else loaded.data  # digits: (N, 1, 8, 8)
    names = [str(n) for n in loaded.target_names]
    return RawData(x, loaded.target, None, None, format="sklearn", classes=len(names),
                   class_names=names)
