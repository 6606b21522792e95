"""Datasets: validated examples split into train / validation / test, normalised on train only.

Validation is carved from train with a fixed seed (never select epochs on test); a source
without a test split gets one carved the same way. The fingerprint is the sha256 of the
examples and of the options, so the same data read the same way always has the same name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from mfstore.config import MAX_CLASSES, MAX_VOCAB, DatasetOptions
from mfstore.errors import DataValidationError
from mfstore.names import class_name_problem
from mfstore.readers import RawData, read_source


@dataclass
class Normalizer:
    """`(x - mean) / std`, with statistics per channel (images) or per feature (vectors)."""

    mean: torch.Tensor  # broadcastable to one example: (C, 1, 1) or (F,)
    std: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    @classmethod
    def identity(cls, shape: tuple[int, ...]) -> Normalizer:
        stat_shape = (shape[0],) + (1,) * (len(shape) - 1)
        return cls(torch.zeros(stat_shape), torch.ones(stat_shape))

    @classmethod
    def fit(cls, x: np.ndarray) -> Normalizer:
        """Fit on `x` (N, *shape): per channel for (C, H, W) examples, per feature otherwise."""
        axes = (0, *range(2, x.ndim))  # every axis but the channel / feature axis
        mean = x.mean(axis=axes, dtype=np.float64, keepdims=True)[0]
        std = x.std(axis=axes, dtype=np.float64, keepdims=True)[0]
        std = np.where(std < 1e-6, 1.0, std)  # constant features pass through centred
        return cls(torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32))

    def to_dict(self) -> dict[str, list]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, list]) -> Normalizer:
        return cls(torch.tensor(data["mean"], dtype=torch.float32),
                   torch.tensor(data["std"], dtype=torch.float32))


@dataclass
class Split:
    x: torch.Tensor  # (N, *input_shape) float32, normalised
    y: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass
class Dataset:
    source: str
    format: str
    train: Split
    val: Split
    test: Split
    input_shape: tuple[int, ...]
    classes: int
    normalizer: Normalizer
    fingerprint: str  # sha256 of the examples and the options
    content_sha256: str  # sha256 of the examples alone
    options: DatasetOptions = field(default_factory=DatasetOptions)
    class_names: list[str] | None = None


def _check_pair(x: np.ndarray, y: np.ndarray, split: str) -> None:
    if x.ndim < 1:
        raise DataValidationError(
            f"{split}: the features have shape {x.shape}; give one row (or image) per example, "
            "shaped (examples, features…)")
    if y.ndim != 1 and not (y.ndim == 2 and y.shape[1] == 1):
        hint = "; one-hot labels? give their argmax" if y.ndim == 2 else ""
        raise DataValidationError(
            f"{split}: the labels have shape {y.shape}; give one integer label per example, "
            f"shaped (examples,){hint}")
    if len(x) != len(y):
        raise DataValidationError(
            f"{split}: {len(x)} examples but {len(y)} labels; give one label per example"
        )
    if len(x) == 0:
        raise DataValidationError(f"{split}: no examples")
    if 0 in x.shape[1:]:
        raise DataValidationError(
            f"{split}: the features have shape {x.shape}: each example holds no value; give "
            "at least one feature per example")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise DataValidationError(f"{split}: features must be real numbers, found {x.dtype}")
    if np.issubdtype(x.dtype, np.floating):
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if bad.any():
            raise DataValidationError(
                f"{split}: {int(bad.sum())} examples hold NaN or infinite features (first at "
                f"example {int(np.flatnonzero(bad)[0])}); clean or impute them before import"
            )


def _labels(y: np.ndarray, split: str) -> np.ndarray:
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all() or not np.equal(np.mod(y, 1), 0).all():
            raise DataValidationError(f"{split}: labels must be whole numbers 0..C-1")
    elif not np.issubdtype(y.dtype, np.integer):
        raise DataValidationError(f"{split}: labels must be integers 0..C-1, found {y.dtype}")
    return y.astype(np.int64).reshape(-1)


def _check_range(labels: list[np.ndarray], classes: int | None) -> int:
    low = min(int(y.min()) for y in labels)
    high = max(int(y.max()) for y in labels)
    if classes is None and high >= MAX_CLASSES:
        raise DataValidationError(
            f"labels go up to {high}, which would make {high + 1} classes (at most "
            f"{MAX_CLASSES}); relabel them 0..C-1")
    count = classes if classes is not None else high + 1
    if low < 0 or high >= count:
        raise DataValidationError(
            f"labels must lie in 0..{count - 1} ({count} classes); found labels from {low} "
            f"to {high}; relabel them or set the number of classes"
        )
    distinct = np.unique(labels[0])
    if count < 2 or len(distinct) < 2:
        only = f" (every training label is {int(distinct[0])})" if len(distinct) == 1 else ""
        raise DataValidationError(f"a classifier needs at least 2 classes among its training "
                                  f"examples{only}")
    return count


def _check_splits(splits: dict[str, np.ndarray], options: DatasetOptions) -> None:
    """Every split holds examples (fractions of a small dataset can round to none)."""
    for name, y in splits.items():
        if len(y) == 0:
            raise DataValidationError(
                f"the {name} split is empty (val_fraction {options.val_fraction}, test_fraction "
                f"{options.test_fraction}); hold out fractions that leave examples in every "
                "split, or give more examples")


def _digest(arrays: list[np.ndarray | None]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out), holding out `fraction` of every class, both in source order."""
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        held.append(idx[: round(len(idx) * fraction)])
    held_idx = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    kept = np.ones(len(y), dtype=bool)
    kept[held_idx] = False
    return np.flatnonzero(kept), held_idx


def _split(x: np.ndarray, y: np.ndarray, norm: Normalizer) -> Split:
    tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return Split(norm(tensor).contiguous(), torch.from_numpy(y))


def _vocabulary(raw: RawData, options: DatasetOptions) -> DatasetOptions:
    """Token ids: check them and record the vocabulary in the options (given, or the largest
    id + 1). Other data must not name a vocabulary."""
    if not raw.tokens:
        if options.vocab is not None:
            raise DataValidationError("vocab applies to token-id data (format 'tokens', or a "
                                      "Parquet list column)")
        return options
    ids = [x for x in (raw.x_train, raw.x_test) if x is not None]
    if any(x.ndim != 2 or x.shape[1] < 1 for x in ids):
        raise DataValidationError(f"token ids must be shaped (examples, length), got "
                                  f"{raw.x_train.shape}")
    if any(not np.issubdtype(x.dtype, np.integer) for x in ids):
        raise DataValidationError(f"token ids must be integers, found {raw.x_train.dtype}")
    low, high = min(int(x.min()) for x in ids), max(int(x.max()) for x in ids)
    vocab = options.vocab or max(high + 1, 2)
    if low < 0 or high >= vocab or vocab > MAX_VOCAB:
        raise DataValidationError(
            f"token ids must lie in 0..{min(vocab, MAX_VOCAB) - 1} (0 is padding); found ids "
            f"from {low} to {high}")
    return replace(options, vocab=vocab)


def _check_class_names(names: list[str] | None) -> None:
    """Class names that every file they are written to (label file, model metadata) gives
    back unchanged; refused at import, before anything is stored."""
    problems = [p for p in map(class_name_problem, names or []) if p]
    if problems:
        raise DataValidationError(f"{problems[0]}; rename the class in the source")


def build_dataset(raw: RawData, source: str, options: DatasetOptions) -> Dataset:
    """Validate, split, normalise and fingerprint examples that a reader returned. Token ids
    are not normalised, and their vocabulary is recorded in the options."""
    _check_pair(raw.x_train, raw.y_train, "train")
    options = _vocabulary(raw, options)
    if raw.x_train.ndim == 1:  # one feature per example
        raw = replace(raw, x_train=raw.x_train[:, None],
                      x_test=None if raw.x_test is None else raw.x_test.reshape(-1, 1))
    labels = [_labels(raw.y_train, "train")]
    if raw.x_test is not None and raw.y_test is not None:
        _check_pair(raw.x_test, raw.y_test, "test")
        labels.append(_labels(raw.y_test, "test"))
        if raw.x_test.shape[1:] != raw.x_train.shape[1:]:
            raise DataValidationError(
                f"test examples have shape {raw.x_test.shape[1:]}, train examples "
                f"{raw.x_train.shape[1:]}; both splits need the same shape"
            )
    classes = _check_range(labels, options.classes or raw.classes)
    _check_class_names(raw.class_names)
    content = _digest([raw.x_train, labels[0], raw.x_test, labels[1] if len(labels) > 1 else None])
    seeds = np.random.SeedSequence(options.seed).generate_state(2)
    x_pool, y_pool = raw.x_train, labels[0]
    if raw.x_test is not None and len(labels) > 1:
        x_test, y_test = raw.x_test, labels[1]
    else:
        keep, held = stratified_split(y_pool, options.test_fraction, int(seeds[0]))
        x_test, y_test, x_pool, y_pool = x_pool[held], y_pool[held], x_pool[keep], y_pool[keep]
    keep, held = stratified_split(y_pool, options.val_fraction, int(seeds[1]))
    _check_splits({"train": y_pool[keep], "validation": y_pool[held], "test": y_test}, options)
    shape = tuple(int(d) for d in raw.x_train.shape[1:])
    x_train = np.asarray(x_pool[keep], dtype=np.float32)
    norm = Normalizer.fit(x_train) if options.normalize == "standard" and not raw.tokens else (
        Normalizer.identity(shape))
    opts = json.dumps(options.fingerprinted(), sort_keys=True)
    return Dataset(
        source=source, format=raw.format,
        train=_split(x_train, y_pool[keep], norm),
        val=_split(x_pool[held], y_pool[held], norm),
        test=_split(x_test, y_test, norm),
        input_shape=shape, classes=classes, normalizer=norm,
        fingerprint=hashlib.sha256(f"{content}:{opts}".encode()).hexdigest(),
        content_sha256=content, options=options, class_names=raw.class_names,
    )


def load_dataset(url: str, options: DatasetOptions | None = None) -> Dataset:
    """Read `url` (any fsspec URL, or `sklearn:NAME`) into a split, normalised dataset."""
    options = options or DatasetOptions()
    raw = read_source(url, options.format, label_column=options.label_column)
    return build_dataset(first_examples(raw, options.max_examples), url, options)


def first_examples(raw: RawData, count: int | None) -> RawData:
    """The first `count` examples of each split `raw` holds (all of them for None)."""
    if count is None:
        return raw
    return replace(raw, x_train=raw.x_train[:count], y_train=raw.y_train[:count],
                   x_test=None if raw.x_test is None else raw.x_test[:count],
                   y_test=None if raw.y_test is None else raw.y_test[:count])
