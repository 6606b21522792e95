"""Layer-parallel training: the simultaneous schedule with one process per layer, which only
Mono-Forward allows. No gradient crosses a layer boundary, so nothing travels backwards:

    rank 0: read batch t ─► layer 1 ─► send a₁(t) ─► backward, step ─► read batch t+1 …
    rank 1:                  recv a₁(t) ─► layer 2 ─► send a₂(t) ─► backward, step …
    rank 2:                                 recv a₂(t) ─► layer 3 ─► backward, step …

Each rank holds its layer, its optimizer and a bounded queue of activations in flight; the
math is the single-process schedule's (`training.train_simultaneous`), only overlapped, so the
trained layers are the same bit for bit (on CPU). Once an epoch, a small collective (every
rank's losses, accuracy and stopping state) applies the same early-stopping rule on every rank:
a layer stops only once the layers below it have.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from mfstore import distributed
from mfstore.batches import Batch, BatchSource
from mfstore.config import TrainConfig
from mfstore.devices import deterministic_mode, make_optimizer, make_schedule
from mfstore.errors import ConfigError
from mfstore.fixes import LaunchFix
from mfstore.history import EarlyStopping, EpochReport, LayerHistory, ProgressCallback, check_finite
from mfstore.inputs import LayerInputs
from mfstore.modules import MFLayer, build_layers
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


def check_pipeline(specs: Sequence[LayerSpec], schedule: str) -> distributed.Cluster:
    """Refuse what cannot run as a pipeline, before anything trains."""
    cluster = distributed.current()
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


def _train_epoch(stage: Stage, source: Iterator[Batch] | None, frozen: bool,
                 opt: torch.optim.Optimizer) -> float:
    """One pass; this rank's layer's loss sum over the epoch."""
    total = torch.zeros((), dtype=torch.float64, device=stage.device)  # as `epochs.run_epochs`
    for x, y in stage.incoming(source):
        a, y = stage.forward(x, y, grad=not frozen)
        if frozen:
            continue
        loss = goodness_loss(stage.layer, a, y, reduction="sum")
        opt.zero_grad(set_to_none=True)
        (loss * (1.0 / max(len(y), 1))).backward()
        opt.step()
        total += loss.detach()
    stage.link.end()
    return float(total)


@torch.no_grad()
def _measure(stage: Stage, source: BatchSource | None) -> tuple[float | None, float | None, int]:
    """(mean loss, accuracy, examples) of this rank's layer on a split read by rank 0;
    (None, None, 0) for a split that is absent or empty, as in one process."""
    loss_sum = torch.zeros((), dtype=torch.float64, device=stage.device)
    correct, n = torch.zeros((), dtype=torch.int64, device=stage.device), 0
    for x, y in stage.incoming(source.ordered() if source is not None else None):
        a, y = stage.forward(x, y, grad=False)
        g = stage.layer.goodness(a)  # (B, classes)
        loss_sum += F.cross_entropy(g, y, reduction="sum").double()
        correct += (g.argmax(1) == y).sum()
        n += len(y)
    stage.link.end()
    if n == 0:
        return None, None, 0
    return float(loss_sum) / n, float(correct.double() / n), n


@dataclass
class _State:
    """What every rank knows of every layer after an epoch (one small collective)."""

    train_loss: float
    val_loss: float | None
    val_accuracy: float | None
    improved: bool
    should_stop: bool
    finite: bool


def _exchange(state: _State) -> list[_State]:
    return distributed.gather(state)


def _epoch(stage: Stage, inputs: LayerInputs, epoch: int, frozen: bool,
           opt: torch.optim.Optimizer, n: int) -> tuple[float, bool]:
    source = inputs.train.batches(epoch) if stage.link.rank == 0 else None
    loss_sum = _train_epoch(stage, source, frozen, opt)
    train_loss = loss_sum / max(n, 1)
    finite = frozen or (torch.isfinite(torch.tensor(train_loss)).item() and all(
        bool(torch.isfinite(p).all()) for p in stage.layer.parameters()))
    return train_loss, bool(finite)


def _stop_rule(states: list[_State], first_active: int, rank: int, stopper: EarlyStopping,
               stage: Stage, history: LayerHistory) -> int:
    """The single-process rule, applied by every rank to the gathered states."""
    if not states[first_active].should_stop:
        return first_active
    if rank == first_active:
        stopper.restore(stage.layer)
        history.best_epoch, history.stopped_early = stopper.best_epoch, True
    elif rank > first_active:
        stopper.reset()
    return first_active + 1


@dataclass
class RankTraining:
    """What one rank holds once its layer has trained, before the hand-off."""

    stage: Stage
    history: LayerHistory
    seconds: float

    @property
    def bytes_sent(self) -> int:
        return self.stage.link.bytes_sent


def train_pipelined(specs: Sequence[LayerSpec], inputs: LayerInputs, config: TrainConfig,
                    device: torch.device, callback: ProgressCallback | None = None,
                    first_index: int = 0) -> tuple[list[Trained], int]:
    """Train `specs` with rank k training layer k; rank 0 reads `inputs`. Returns every
    trained layer (on every rank) and the bytes this rank sent."""
    mine = train_this_rank(specs, inputs, config, device, callback, first_index)
    return hand_off(mine, specs, inputs), mine.bytes_sent


def train_this_rank(specs: Sequence[LayerSpec], inputs: LayerInputs, config: TrainConfig,
                    device: torch.device, callback: ProgressCallback | None = None,
                    first_index: int = 0) -> RankTraining:
    """This rank's part of `train_pipelined`: its layer, trained (rank 0 reads `inputs`)."""
    cluster = check_pipeline(specs, "simultaneous")
    rank = cluster.rank
    (layer,) = build_layers([specs[rank]], config.seed, first_index=first_index + rank)
    stage = Stage(layer.to(device).train(), Link(rank, cluster.world), device, config)
    history = LayerHistory()
    stopper = EarlyStopping(config.patience, config.min_delta, config.monitor)
    n = distributed.broadcast(len(inputs.train) if rank == 0 else 0)
    first_active, start = 0, time.perf_counter()
    with deterministic_mode(config.deterministic):
        opt = make_optimizer(list(layer.parameters()), config, device)
        schedule = make_schedule(opt, config)
        for epoch in range(config.epochs):
            if first_active == len(specs):
                break
            train_loss, finite = _epoch(stage, inputs, epoch, rank < first_active, opt, n)
            _check_all(_exchange(_State(train_loss, None, None, False, False, finite)),
                       first_active, epoch, config)
            if schedule is not None:
                schedule.step()
            val_loss, val_acc, _ = _measure(stage, inputs.val if rank == 0 else None)
            improved = (rank >= first_active
                        and stopper.update(epoch + 1, val_loss, layer, val_acc))
            states = _exchange(_State(train_loss, val_loss, val_acc, improved,
                                      stopper.should_stop, finite))
            was_active = first_active
            first_active = _stop_rule(states, first_active, rank, stopper, stage, history)
            _report(states, was_active, first_active, epoch, config, rank, history, callback)
    return RankTraining(stage, history, time.perf_counter() - start)


def _check_all(states: list[_State], first_active: int, epoch: int,
               config: TrainConfig) -> None:
    """Every rank raises the same divergence error, naming the first layer that diverged."""
    for k in range(first_active, len(states)):
        if not states[k].finite:
            check_finite("mf", k, epoch + 1, float("nan"), config.lr)


def _report(states: list[_State], was_active: int, first_active: int, epoch: int,
            config: TrainConfig, rank: int, history: LayerHistory,
            callback: ProgressCallback | None) -> None:
    for k in range(was_active, len(states)):
        s = states[k]
        report = EpochReport("mf", k, epoch + 1, config.epochs, s.train_loss, s.val_loss,
                             s.val_accuracy, s.improved, k < first_active)
        if k == rank:
            history.add(report)
        if callback is not None and rank == 0:
            callback(report)


def hand_off(mine: RankTraining, specs: Sequence[LayerSpec],
             inputs: LayerInputs) -> list[Trained]:
    """Close each rank's history, measure each layer alone, and give every rank every
    layer (a hand-off that grows with depth)."""
    stage, history, seconds = mine.stage, mine.history, mine.seconds
    history.seconds = seconds
    history.keep(history.best_epoch)  # None: still active at the end, last weights kept
    rank = stage.link.rank
    metrics: dict[str, float] = {}
    for split in ("val", "test"):
        source = getattr(inputs, split) if rank == 0 else None
        loss, accuracy, _ = _measure(stage, source)
        if loss is not None and accuracy is not None:  # as `stack.layer_metrics`: none if absent
            metrics[f"{split}_accuracy"], metrics[f"{split}_loss"] = accuracy, loss
    stage.layer.eval()
    layer_state = ({k: v.detach().cpu() for k, v in stage.layer.state_dict().items()},
                   history.to_dict(), metrics)
    trained = []
    for k, (state, past, measured) in enumerate(distributed.gather(layer_state)):
        layer = MFLayer(specs[k])
        layer.load_state_dict(state)
        trained.append(Trained(k, layer.eval(), LayerHistory(**past), measured))
    return trained
