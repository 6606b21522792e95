"""Layer-parallel training: the simultaneous schedule with one process per layer, which only
Mono-Forward allows. No gradient crosses a layer boundary, so nothing travels backwards:

    rank 0: read batch t ─► layer 1 ─► send a₁(t) ─► backward, step ─► read batch t+1 …
    rank 1:                  recv a₁(t) ─► layer 2 ─► send a₂(t) ─► backward, step …
    rank 2:                                 recv a₂(t) ─► layer 3 ─► backward, step …

Each rank holds its layer, its optimizer and a bounded queue of activations in flight; the
math is the single-process schedule's (`training.train_simultaneous`), only overlapped, so the
trained layers are the same bit for bit (on CPU). Every rank runs the one epoch loop
(`epochs.run_epochs`) with this rank's layer as the one unit it holds: once an epoch, a small
collective (every layer's losses and validation figures) lets every rank apply the same
early-stopping rule to the same numbers: a layer stops only once the layers below it have.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from mfstore.batches import Batch, BatchSource
from mfstore.config import TrainConfig
from mfstore.devices import make_optimizer
from mfstore.distributed import Cluster
from mfstore.epochs import Unit, run_epochs
from mfstore.errors import ConfigError
from mfstore.fixes import LaunchFix
from mfstore.graphs import Step
from mfstore.history import LayerHistory, ProgressCallback
from mfstore.inputs import LayerInputs
from mfstore.modules import MFLayer, build_layers
from mfstore.run_context import RunContext
from mfstore.spec import LayerSpec
from mfstore.stack import Trained
from mfstore.training import goodness_loss

BATCH, END = 0, 1  # message kinds
QUEUE = 4  # batches a rank may send ahead of its neighbour


@dataclass
class Link:
    """The one-way line from rank k to rank k+1: a header (kind, batch size), the labels,
    then the activations; sends are asynchronous and at most `QUEUE` batches in flight."""

    rank: int
    world: int
    bytes_sent: int = 0
    _pending: deque[list[Any]] = field(default_factory=deque)

    def send(self, kind: int, y: torch.Tensor, a: torch.Tensor) -> None:
        if self.rank + 1 == self.world:
            return
        tensors = [torch.tensor([kind, len(y)])]
        if kind == BATCH:
            tensors += [y.cpu(), a.detach().cpu().contiguous()]
        works = [dist.isend(t, self.rank + 1) for t in tensors]
        self.bytes_sent += sum(t.numel() * t.element_size() for t in tensors)
        self._pending.append([works, tensors])
        while len(self._pending) > QUEUE:
            self._wait_oldest()

    def _wait_oldest(self) -> None:
        works, _ = self._pending.popleft()
        for work in works:
            work.wait()

    def end(self) -> None:
        """Tell the next rank this phase is over, once everything before it is delivered."""
        self.send(END, torch.zeros(0, dtype=torch.long), torch.zeros(0))
        while self._pending:
            self._wait_oldest()

    def receive(self, shape: tuple[int, ...]) -> Iterator[Batch]:
        """Batches from the rank before, until it says the phase ended."""
        while True:
            header = torch.zeros(2, dtype=torch.long)
            dist.recv(header, self.rank - 1)
            if int(header[0]) == END:
                return
            y = torch.zeros(int(header[1]), dtype=torch.long)
            a = torch.zeros(int(header[1]), *shape)
            dist.recv(y, self.rank - 1)
            dist.recv(a, self.rank - 1)
            yield a, y


@dataclass
class Stage:
    """This rank's layer and what it needs to train it."""

    layer: MFLayer
    link: Link
    device: torch.device
    config: TrainConfig

    def incoming(self, source: Iterator[Batch] | None) -> Iterator[Batch]:
        if self.link.rank == 0:
            yield from source if source is not None else ()  # None: a split this data lacks
        else:
            yield from self.link.receive(self.layer.spec.in_shape)

    def forward(self, x: torch.Tensor, y: torch.Tensor, grad: bool) -> tuple[torch.Tensor, Any]:
        """(activations, goodness); sent on before anything else is done with them."""
        x, y = x.to(self.device), y.to(self.device)
        with torch.set_grad_enabled(grad):
            a = self.layer(x.detach())
        self.link.send(BATCH, y, a)
        return a, y


def check_pipeline(specs: Sequence[LayerSpec], schedule: str, ctx: RunContext) -> Cluster:
    """Refuse what cannot run as a pipeline on the processes of `ctx`, before anything
    trains."""
    cluster = ctx.cluster
    if schedule != "simultaneous":
        raise ConfigError("layer-parallel training is the simultaneous schedule; a layer of "
                          "the sequential schedule waits for the one below it to finish")
    launch = LaunchFix(len(specs))
    if cluster is None:
        raise ConfigError("layer-parallel training needs one process per layer", launch)
    if cluster.world != len(specs):
        raise ConfigError(f"layer-parallel training needs one process per layer: "
                          f"{len(specs)} layers, {cluster.world} processes", launch)
    return cluster


class Relay:
    """This rank's batches: rank 0 reads the data, rank k > 0 receives rank k-1's
    activations; once a pass is over, the next rank is told so. Its length is the examples
    this rank reads (0 past rank 0), so their sum over the ranks is the split's."""

    def __init__(self, stage: Stage, source: BatchSource | None) -> None:
        self.stage, self.source = stage, source if stage.link.rank == 0 else None

    def __len__(self) -> int:
        return 0 if self.source is None else len(self.source)

    def batches(self, epoch: int) -> Iterator[Batch]:
        yield from self.stage.incoming(self.source.batches(epoch) if self.source else None)
        self.stage.link.end()

    def ordered(self) -> Iterator[Batch]:
        yield from self.stage.incoming(self.source.ordered() if self.source else None)
        self.stage.link.end()


@torch.no_grad()
def _measure(stage: Stage, source: BatchSource | None) -> tuple[float | None, float | None]:
    """(mean loss, accuracy) of this rank's layer on a split read by rank 0; (None, None)
    for a split that is absent or empty, as in one process."""
    loss_sum = torch.zeros((), dtype=torch.float64, device=stage.device)
    correct, n = torch.zeros((), dtype=torch.int64, device=stage.device), 0
    for x, y in Relay(stage, source).ordered():
        a, y = stage.forward(x, y, grad=False)
        g = stage.layer.goodness(a)  # (B, classes)
        loss_sum += F.cross_entropy(g, y, reduction="sum").double()
        correct += (g.argmax(1) == y).sum()
        n += len(y)
    if n == 0:
        return None, None
    return float(loss_sum) / n, float(correct.double() / n)


class LayerParallel:
    """Mono-Forward, one layer per rank, as the epoch loop's trainee: every rank follows
    every layer (a unit), holding the module of its own alone. A step forwards this rank's
    layer, sends the activations on at once, then (unless the layer is frozen) steps on the
    layer's own loss; the loop's sum of the loss sums over the ranks gives every rank every
    layer's loss, and `validate` gathers every layer's validation figures, so each rank
    applies the same stopping rule to the same numbers."""

    algorithm, capturable = "mf", False  # a step sends to another process

    def __init__(self, stage: Stage, layers: int, val: BatchSource | None, ctx: RunContext,
                 first_index: int = 0) -> None:
        self.stage, self.val, self.ctx, self.rank = stage, val, ctx, stage.link.rank
        self.units = [Unit(stage.layer if k == self.rank else None, first_index + k)
                      for k in range(layers)]

    def optimizers(self, config: TrainConfig, capturable: bool) -> list[torch.optim.Optimizer]:
        return [make_optimizer(list(self.stage.layer.parameters()), config, self.ctx.device)]

    def step(self, first_active: int, opts: list[torch.optim.Optimizer]) -> Step:
        frozen, width = self.rank < first_active, len(self.units) - first_active
        stage = self.stage

        def step(x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer) -> torch.Tensor:
            a, y = stage.forward(x, y, grad=not frozen)
            sums = torch.zeros(width, device=stage.device)  # (active layers,): this rank's
            if frozen:
                return sums
            loss = goodness_loss(stage.layer, a, y, reduction="sum")
            opt.zero_grad(set_to_none=True)
            (loss * (1.0 / max(len(y), 1))).backward()  # the batch is whole on every rank
            opt.step()
            sums[self.rank - first_active] = loss.detach()
            return sums

        return step

    def validate(self) -> tuple[list[float | None], list[float | None]]:
        figures = self.ctx.gather(_measure(self.stage, self.val))
        return [loss for loss, _ in figures], [accuracy for _, accuracy in figures]


@dataclass
class RankTraining:
    """What one rank holds once its layer has trained, before the hand-off."""

    stage: Stage
    history: LayerHistory
    ctx: RunContext

    @property
    def bytes_sent(self) -> int:
        return self.stage.link.bytes_sent


def train_pipelined(specs: Sequence[LayerSpec], inputs: LayerInputs, config: TrainConfig,
                    ctx: RunContext, callback: ProgressCallback | None = None,
                    first_index: int = 0) -> tuple[list[Trained], int]:
    """Train `specs` with rank k of `ctx` training layer k; rank 0 reads `inputs`. Returns
    every trained layer (on every rank) and the bytes this rank sent."""
    mine = train_this_rank(specs, inputs, config, ctx, callback, first_index)
    return hand_off(mine, specs, inputs), mine.bytes_sent


def train_this_rank(specs: Sequence[LayerSpec], inputs: LayerInputs, config: TrainConfig,
                    ctx: RunContext, callback: ProgressCallback | None = None,
                    first_index: int = 0) -> RankTraining:
    """This rank's part of `train_pipelined`: its layer, trained on the one epoch loop
    (rank 0 reads `inputs` and alone reports progress)."""
    cluster = check_pipeline(specs, "simultaneous", ctx)
    rank = cluster.rank
    (layer,) = build_layers([specs[rank]], config.seed, first_index=first_index + rank,
                            batch_size=config.batch_size)
    stage = Stage(layer.to(ctx.device).train(), Link(rank, cluster.world), ctx.device, config)
    trainee = LayerParallel(stage, len(specs), inputs.val if rank == 0 else None, ctx,
                            first_index)
    histories = run_epochs(trainee, Relay(stage, inputs.train), config, ctx,
                           keep_best=False, callback=callback if rank == 0 else None)
    return RankTraining(stage, histories[rank], ctx)


def hand_off(mine: RankTraining, specs: Sequence[LayerSpec],
             inputs: LayerInputs) -> list[Trained]:
    """Close each rank's history, measure each layer alone, and give every rank every
    layer (a hand-off that grows with depth)."""
    stage, history = mine.stage, mine.history
    rank = stage.link.rank
    metrics: dict[str, float] = {}
    for split in ("val", "test"):
        source = getattr(inputs, split) if rank == 0 else None
        loss, accuracy = _measure(stage, source)
        if loss is not None and accuracy is not None:  # as `stack.layer_metrics`: none if absent
            metrics[f"{split}_accuracy"], metrics[f"{split}_loss"] = accuracy, loss
    layer_state = ({k: v.detach().cpu() for k, v in stage.layer.state_dict().items()},
                   history.to_dict(), metrics)
    trained = []
    for k, (state, past, measured) in enumerate(mine.ctx.gather(layer_state)):
        layer = MFLayer(specs[k])
        layer.load_state_dict(state)
        trained.append(Trained(k, layer.eval(), LayerHistory(**past), measured))
    return trained
