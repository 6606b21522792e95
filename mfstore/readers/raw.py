"""`RawData`: what every reader returns, before splitting and normalisation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RawData:
    """Examples as read from the source. `x_test` is None when the source has no test split."""

    x_train: np.ndarray  # (N, *example_shape), any real dtype
    y_train: np.ndarray  # (N,) integer labels
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    format: str
    classes: int | None = None  # fixed by the format (CIFAR-100: 100); None = inferred
    class_names: list[str] | None = None
    tokens: bool = False  # x holds token ids (N, T), 0 = padding: no normalisation
