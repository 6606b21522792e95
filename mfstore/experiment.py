"""Train MF (either schedule) and the BP baseline on one dataset and evaluate both, so every
MF figure stands beside a BP figure from the same run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mfstore.baseline import BaselineResult, check_baseline, train_baseline
from mfstore.config import TrainConfig
from mfstore.dataset import Dataset
from mfstore.devices import training_device
from mfstore.evaluation import Accuracy, evaluate
from mfstore.history import LayerHistory, ProgressCallback
from mfstore.inputs import MemoryInputs
from mfstore.modules import MFLayer, build_layers
from mfstore.spec import LayerPlan, LayerSpec, build_specs, parse_arch
from mfstore.stack import check_schedule, train_stack


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


def run_experiment(dataset: Dataset, arch: str | Sequence[LayerPlan], config: TrainConfig,
                   schedule: str = "sequential", baseline: str = "bp",
                   callback: ProgressCallback | None = None,
                   device: torch.device | None = None) -> ExperimentResult:
    """Train `arch` on `dataset` with Mono-Forward and (unless `baseline="none"`) backprop,
    in memory; nothing is registered."""
    check_schedule(schedule)
    check_baseline(baseline)
    device = device or training_device(config.device)
    plans = parse_arch(arch) if isinstance(arch, str) else list(arch)
    specs = build_specs(plans, dataset.input_shape, dataset.classes)
    inputs = MemoryInputs.of_dataset(dataset, config, device)
    layers = build_layers(specs, config.seed)
    trained = train_stack(layers, inputs, config, device, schedule=schedule, callback=callback)
    assert inputs.test is not None and inputs.val is not None
    result = ExperimentResult(specs, schedule, config, layers, [t.history for t in trained],
                              evaluate(layers, inputs.test, device),
                              evaluate(layers, inputs.val, device), None)
    if baseline == "bp":
        result.baseline = train_baseline(specs, inputs, config, device, callback)
    return result
