"""How to train (`TrainConfig`) and how a source becomes a dataset (`DatasetOptions`).

Each field is declared once, here, with its default and its help; the command line derives
its options from these fields (`cli/options.py`). Nothing here imports torch, so a command
that only reads the registry starts fast.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mfstore.errors import ConfigError

OPTIMIZERS = ("adam", "adamw")
LR_SCHEDULES = ("constant", "cosine")
MONITORS = ("val_loss", "val_accuracy")
SCHEDULES = ("sequential", "simultaneous")  # layer after layer, or all on each batch
DEFAULT_SCHEDULE = "simultaneous"  # in memory: chosen on validation (README "Why these
# defaults")
STORE_SCHEDULE = "sequential"  # registering layers: each block then depends on its input
# stream alone, so that repair retrains a damaged one bit for bit
DEFAULT_BASELINE = "bp"  # trained beside MF unless told otherwise (none when layer-parallel)
MAX_SEED = 2**63 - 1
FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32: weights, learning rates
FORMATS = ("idx", "cifar", "npz", "csv", "parquet", "sklearn", "tokens")  # data readers
DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]{1,3})?")  # the device names a run may be given
DEFAULT_MAX_BATCH_SIZE = 1024  # of an exported Triton model and of the server's batches


def check_device(name: str) -> str:
    """`name` if it names a device mfstore computes on (auto, cpu, cuda, cuda:N), else a
    `ConfigError`: a bad option, whether or not the machine has the device."""
    if not isinstance(name, str) or not DEVICE.fullmatch(name):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    return name


RUN_SCHEDULES = ("sequential", "simultaneous", "layer-parallel")


@dataclass(frozen=True)
class TrainingRun:
    """How a layer was trained beyond its `TrainConfig`: what else its weights depend on.
    Recorded with every layer version, so that a retrain can say whether it gives the same
    weights back (only one layer trained alone, `sequential`, depends on its input alone)."""

    schedule: str = "sequential"  # one of RUN_SCHEDULES
    processes: int = 1  # data-parallel processes (torchrun); layer-parallel: one per layer
    device: str = "cpu"  # the device type it ran on: "cpu" or "cuda"

    def __post_init__(self) -> None:
        if self.schedule not in RUN_SCHEDULES or self.processes < 1:
            raise ConfigError(f"not a training run: {self!r}")

    @property
    def alone(self) -> bool:
        """Trained as one layer on a fixed input (what `train-layer` does)."""
        return self.schedule == "sequential"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingRun:
        return cls(**data)


def _help(text: str, **more: Any) -> dict[str, Any]:
    return {"help": text, **more}


@dataclass(frozen=True)
class TrainConfig:
    """How to train: shared by Mono-Forward and the baselines. Fields with a `help` are
    command-line options. The defaults were chosen on Fashion-MNIST's validation split
    (benchmarks/defaults.py; README "Why these defaults")."""

    epochs: int = field(default=30, metadata=_help("Most epochs per layer."))
    batch_size: int = field(default=128, metadata=_help("Examples per step."))
    lr: float = field(default=1e-3, metadata=_help("Learning rate."))
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = field(default=0.01, metadata=_help(
        "Weight decay (L2 for adam, decoupled for adamw)."))
    optimizer: str = field(default="adamw", metadata=_help("adam or adamw."))
    lr_schedule: str = field(default="cosine", metadata=_help(
        "constant or cosine (over the epochs)."))
    patience: int | None = field(default=None, metadata=_help(
        "Stop a layer after this many epochs without a better monitored value (see "
        "monitor); 0 = never stop early.", none_is=0))
    monitor: str = field(default="val_accuracy", metadata=_help(
        "What early stopping watches, and so which epoch's weights are kept: val_loss or "
        "val_accuracy."))
    min_delta: float = 0.0
    seed: int = field(default=0, metadata=_help("Seed of initialisation and data order."))
    deterministic: bool = field(default=False, metadata=_help(
        "Deterministic kernels (bit-reproducible)."))
    device: str = field(default="auto", metadata=_help(
        "auto (CUDA when present), cpu, cuda or cuda:N."))
    cuda_graphs: bool = field(default=True, metadata=_help(
        "On CUDA, capture each training step as a CUDA graph and replay it (same numbers, "
        "far fewer launches); no effect on the CPU."))
    overlap: bool = field(default=False, metadata=_help(
        "On CUDA, the simultaneous schedule runs each layer on its own CUDA stream: layer k's "
        "backward and update overlap layer k+1's forward (same blocks)."))
    eval_batch_size: int = 4096

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch size must be at least 1, got {self.batch_size}"),
            (self.eval_batch_size >= 1, "the evaluation batch size must be at least 1"),
            (math.isfinite(self.lr) and self.lr > 0,
             f"learning rate must be a positive number, got {self.lr}"),
            (self.lr <= FLOAT32_MAX or not math.isfinite(self.lr),
             f"learning rate must be at most {FLOAT32_MAX:.4g} (what float32 weights hold), "
             f"got {self.lr:g}"),
            (all(0 <= b < 1 for b in self.betas), f"betas must lie in [0, 1), got {self.betas}"),
            (math.isfinite(self.weight_decay) and self.weight_decay >= 0,
             f"weight decay must be >= 0, got {self.weight_decay}"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}"),
            (self.lr_schedule in LR_SCHEDULES, f"lr schedule must be one of {LR_SCHEDULES}"),
            (self.patience is None or self.patience >= 1, "patience must be at least 1"),
            (self.monitor in MONITORS,
             f"monitor must be val_loss or val_accuracy, got {self.monitor!r}"),
            (0 <= self.seed <= MAX_SEED, f"the seed must lie in 0..2**63-1, got {self.seed}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        check_device(self.device)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """A configuration from its `to_dict()` (a block's, a registry row's); a key that is
        not a setting is refused, never ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training setting{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(map(repr, unknown))}; the settings are "
                              f"{', '.join(sorted(known))}")
        kwargs = dict(data)
        if "betas" in kwargs:
            kwargs["betas"] = tuple(kwargs["betas"])
        return cls(**kwargs)


@dataclass(frozen=True)
class StreamOptions:
    """How streams are written and read (`stream.py`)."""

    shard_bytes: int = 64 << 20  # target size of one shard
    ram_budget: int = 1 << 30  # a split up to this size is held in memory
    shuffle_buffer: int = 16384  # examples kept for shuffling across shards
    prefetch: int = 2  # shards read ahead in the background
    pin_memory: bool = False  # page-locked shards for fast, asynchronous copies to CUDA


@dataclass(frozen=True)
class DatasetOptions:
    """How a source becomes a dataset. Part of the fingerprint. Fields with a `help` are
    command-line options (`flag` renames one)."""

    val_fraction: float = field(default=0.1, metadata=_help(
        "Share of train held out for validation."))
    test_fraction: float = field(default=0.2, metadata=_help(
        "Share held out for test when the source has no test split."))
    seed: int = field(default=0, metadata=_help("Seed of the splits.", flag="split-seed"))
    normalize: str = "standard"  # "standard" (mean/std fitted on train) or "none"
    label_column: str = field(default="label", metadata=_help(
        "Label column of CSV / Parquet data."))
    format: str | None = field(default=None, metadata=_help(
        "idx, cifar, npz, csv, parquet, sklearn or tokens (default: from the URL)."))
    classes: int | None = None  # None: fixed by the format, else max label + 1
    vocab: int | None = field(default=None, metadata=_help(
        "Token-id data: the vocabulary size, ids 0..vocab-1 with 0 as padding (default: the "
        "largest id + 1)."))
    max_examples: int | None = field(default=None, metadata=_help(
        "Keep only the first N examples of each split the source holds (train, and test "
        "where it has one), to try a large source quickly; part of the fingerprint. 0: all.",
        envvar="MFSTORE_MAX_EXAMPLES", none_is=0))

    def __post_init__(self) -> None:
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ConfigError(f"{name} must lie strictly between 0 and 1, got {value}")
        if self.normalize not in ("standard", "none"):
            raise ConfigError(f"normalize must be 'standard' or 'none', got {self.normalize!r}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"the split seed must lie in 0..2**63-1, got {self.seed}")
        if self.classes is not None and not 2 <= self.classes <= MAX_CLASSES:
            raise ConfigError(f"classes must lie in 2..{MAX_CLASSES}, got {self.classes}")
        if self.vocab is not None and not 2 <= self.vocab <= MAX_VOCAB:
            raise ConfigError(f"vocab must lie in 2..{MAX_VOCAB}, got {self.vocab}")
        if self.max_examples is not None and not 1 <= self.max_examples <= MAX_EXAMPLES:
            raise ConfigError(f"max examples must lie in 1..{MAX_EXAMPLES} (or be unset: "
                              f"all), got {self.max_examples}")
        if self.format is not None and self.format not in FORMATS:
            raise ConfigError(f"unknown format {self.format!r}; choose one of: "
                              f"{', '.join(FORMATS)}")

    def fingerprinted(self) -> dict[str, Any]:
        """The options as the fingerprint reads them: a field added later is left out while
        unset, so a dataset imported before it existed keeps its fingerprint."""
        data = asdict(self)
        if data["max_examples"] is None:
            del data["max_examples"]
        return data


MAX_CLASSES = 100_000
MAX_EXAMPLES = 2**40
MAX_VOCAB = 2**24  # token ids travel as float32 in streams: exact below 2**24
