"""What a layer trains on: the train, validation and test splits of its input, and how to get
the next layer's (`after`). Held in memory (`MemoryInputs`) or read from the store's streams
(`stream_chain.StreamInputs`); the one training path (`stack.train_stack`) takes either.

    dataset ──► inputs(layer 1) ──train──► layer 1 ──after──► inputs(layer 2) ──► …
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from mfstore.batches import WHOLE, BatchSource, Part, TensorBatches
from mfstore.config import TrainConfig
from mfstore.dataset import Dataset, Split
from mfstore.modules import MFLayer
from mfstore.run_context import RunContext
from mfstore.training import layer_outputs


class LayerInputs(Protocol):
    """The splits one layer reads. `val` and `test` may be absent."""

    @property
    def train(self) -> BatchSource: ...

    @property
    def val(self) -> BatchSource | None: ...

    @property
    def test(self) -> BatchSource | None: ...

    def after(self, layer: MFLayer) -> LayerInputs:
        """The inputs of the layer trained next: these splits through the trained `layer`."""
        ...


def split_batches(split: Split, config: TrainConfig, device: torch.device,
                  part: Part = WHOLE) -> TensorBatches:
    """This process's share of one split of a dataset, batched and shuffled as `config`
    says, on `device`."""
    return TensorBatches.of_split(split.x, split.y, config.batch_size, config.seed,
                                  config.eval_batch_size, part).to(device)


@dataclass
class MemoryInputs:
    train: TensorBatches
    val: TensorBatches | None
    test: TensorBatches | None
    device: torch.device

    @classmethod
    def of_dataset(cls, dataset: Dataset, config: TrainConfig, ctx: RunContext) -> MemoryInputs:
        """This process's share of every split of `dataset`, on the device of `ctx`."""
        device, part = ctx.device, ctx.part
        return cls(split_batches(dataset.train, config, device, part),
                   split_batches(dataset.val, config, device, part),
                   split_batches(dataset.test, config, device, part), device)

    def after(self, layer: MFLayer) -> MemoryInputs:
        def through(source: TensorBatches | None) -> TensorBatches | None:
            if source is None:
                return None
            x, y = layer_outputs(layer, source, self.device)
            return TensorBatches(x, y, source.batch_size, source.seed, source.eval_batch_size,
                                 source.total, source.part)
        train = through(self.train)
        assert train is not None
        return MemoryInputs(train, through(self.val), through(self.test), self.device)
