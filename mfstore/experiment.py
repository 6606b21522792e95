"""Train MF (either schedule) and the BP baseline on one dataset and evaluate both, so every
MF figure stands beside a BP figure from the same run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mfstore.baseline import train_backprop
from mfstore.batches import TensorBatches
from mfstore.config import TrainConfig, resolve_device
from mfstore.dataset import Dataset, Split
from mfstore.errors import ConfigError
from mfstore.evaluation import Accuracy, evaluate
from mfstore.history import LayerHistory, ProgressCallback
from mfstore.modules import MFLayer, build_layers
from mfstore.spec import LayerPlan, LayerSpec, build_specs, parse_arch
from mfstore.training import SCHEDULES, train_sequential, train_simultaneous

BASELINES = ("bp", "none")


@dataclass
class BaselineResult:
    layers: list[MFLayer]
    history: LayerHistory
    test: Accuracy  # only .bp is meaningful: BP trains no projection but the last
    val: Accuracy


@dataclass
class ExperimentResult:
    specs: list[LayerSpec]
    schedule: str
    config: TrainConfig
    layers: list[MFLayer]
    histories: list[LayerHistory]
    test: Accuracy
    val: Accuracy
    baseline: BaselineResult | None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "schedule": self.schedule,
            "config": self.config.to_dict(),
            "layers": [s.to_dict() for s in self.specs],
            "test": self.test.to_dict(),
            "val": self.val.to_dict(),
            "mf_seconds": sum(h.seconds for h in self.histories)
            if self.schedule == "sequential" else self.histories[0].seconds,
            "histories": [h.to_dict() for h in self.histories],
        }
        if self.baseline is not None:
            out["baseline"] = {"algorithm": "bp", "test": self.baseline.test.bp,
                               "val": self.baseline.val.bp,
                               "seconds": self.baseline.history.seconds,
                               "history": self.baseline.history.to_dict()}
        return out


def split_batches(split: Split, config: TrainConfig) -> TensorBatches:
    device = resolve_device(config.device)
    return TensorBatches(split.x, split.y, config.batch_size, config.seed,
                         config.eval_batch_size).to(device)


def run_experiment(dataset: Dataset, arch: str | Sequence[LayerPlan], config: TrainConfig,
                   schedule: str = "sequential", baseline: str = "bp",
                   callback: ProgressCallback | None = None) -> ExperimentResult:
    """Train `arch` on `dataset` with Mono-Forward and (unless `baseline="none"`) backprop."""
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {schedule!r}; choose sequential or simultaneous")
    if baseline not in BASELINES:
        raise ConfigError(f"unknown baseline {baseline!r}; choose bp or none")
    plans = parse_arch(arch) if isinstance(arch, str) else list(arch)
    specs = build_specs(plans, dataset.input_shape, dataset.classes)
    device = resolve_device(config.device)
    train, val, test = (split_batches(s, config)
                        for s in (dataset.train, dataset.val, dataset.test))
    layers = build_layers(specs, config.seed)
    trainer = train_sequential if schedule == "sequential" else train_simultaneous
    histories = trainer(layers, train, val, config, callback=callback)
    result = ExperimentResult(specs, schedule, config, layers, histories,
                              evaluate(layers, test, device), evaluate(layers, val, device), None)
    if baseline == "bp":
        bp_layers = build_layers(specs, config.seed)  # the same initial weights as MF
        history = train_backprop(bp_layers, train, val, config, callback=callback)
        result.baseline = BaselineResult(bp_layers, history, evaluate(bp_layers, test, device),
                                         evaluate(bp_layers, val, device))
    return result
