"""Train MF (either schedule) and the baselines (BP, FA, DFA, FF: any of them) on one dataset
and evaluate them all, so every MF figure stands beside the baselines' from the same run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mfstore.baseline import BaselineResult, parse_baselines, train_baselines
from mfstore.config import DEFAULT_BASELINE, DEFAULT_SCHEDULE, TrainConfig
from mfstore.dataset import Dataset
from mfstore.evaluation import Accuracy, accuracy_over
from mfstore.history import LayerHistory, ProgressCallback
from mfstore.inputs import MemoryInputs
from mfstore.modules import MFLayer, build_layers
from mfstore.run_context import RunContext
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
    baselines: list[BaselineResult]

    @property
    def baseline(self) -> BaselineResult | None:
        """The first baseline trained (BP when asked for first), None without one."""
        return self.baselines[0] if self.baselines else None

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
            out["baseline"] = self.baseline.to_dict()
            out["baselines"] = [b.to_dict() for b in self.baselines]
        return out


def run_experiment(dataset: Dataset, arch: str | Sequence[LayerPlan], config: TrainConfig,
                   schedule: str = DEFAULT_SCHEDULE,
                   baseline: str | Sequence[str] = DEFAULT_BASELINE,
                   callback: ProgressCallback | None = None,
                   device: str | torch.device | None = None) -> ExperimentResult:
    """Train `arch` on `dataset` with Mono-Forward and the baselines `baseline` names
    (`"bp"`, `"bp,fa,dfa,ff"`, any subset, or `"none"`), in memory; nothing is
    registered. On `device` (default: `config.device`; a command or API call enters here:
    under torchrun each process trains on its share, data parallel)."""
    check_schedule(schedule)
    names = parse_baselines(baseline)
    ctx = RunContext.enter(device or config.device)
    plans = parse_arch(arch) if isinstance(arch, str) else list(arch)
    specs = build_specs(plans, dataset.input_shape, dataset.classes, dataset.options.vocab)
    inputs = MemoryInputs.of_dataset(dataset, config, ctx)
    layers = build_layers(specs, config.seed, batch_size=config.batch_size)
    trained = train_stack(layers, inputs, config, ctx, schedule=schedule, callback=callback)
    assert inputs.test is not None and inputs.val is not None
    result = ExperimentResult(specs, schedule, config, layers, [t.history for t in trained],
                              accuracy_over(layers, inputs.test, ctx),
                              accuracy_over(layers, inputs.val, ctx), [])
    result.baselines = train_baselines(specs, inputs, config, ctx, names, callback)
    return result
