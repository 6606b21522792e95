"""Forward-Forward (FF; Hinton, 2022) as the Mono-Forward paper sets it beside MF (its eqs.
1-4): each layer learns on its own detached input, from two passes.

    positive x+: the input with its true label embedded;  negative x-: a wrong label embedded
    G_i = Σ_n a_{i,n}^2                                    goodness of layer i, (B,)
    L_i = ½ [softplus(θ_i - G_i(x+)) + softplus(G_i(x-) - θ_i)],   θ_i = n_i
    predict: embed every label in turn, take the label with the largest Σ_i G_i

The label is embedded by replacing the first `classes` input features with a one-hot vector
scaled to the example's largest absolute feature (Hinton: the first 10 pixels of an MNIST
image). Each layer reads its predecessor's activity scaled to a fixed length, so that it
cannot just pass on the goodness of the layer before (Hinton's §2.1); the first layer reads
the input so scaled. The length is sqrt(n), a root mean square of 1 per feature, and the
threshold asks the same of the layer's own units (mean square activity 1): both scales are
then independent of the width. (Scaled to length 1 instead, a layer's goodness starts some
1000x below a threshold of n and the loss only grows it for the first epochs.) The layers
are MF's, with the same shapes and
initial weights; their projections play no part. The wrong label of each negative example is
drawn from a generator seeded by the config's seed, so runs repeat exactly (trained
data-parallel, each process draws its own examples' negatives from that generator: the same
algorithm, other random negatives).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from mfstore.backprop import EndToEnd
from mfstore.batches import BatchSource
from mfstore.config import TrainConfig
from mfstore.epochs import run_epochs
from mfstore.errors import ConfigError
from mfstore.evaluation import Accuracy
from mfstore.history import LayerHistory, ProgressCallback
from mfstore.modules import MFLayer, MFNet
from mfstore.run_context import RunContext

THRESHOLD_PER_UNIT = 1.0
Negatives = Callable[[torch.Tensor], torch.Tensor]  # labels (B,) -> wrong labels (B,)


def check_inputs(layers: Sequence[MFLayer]) -> None:
    """FF writes the label into the first input features: there must be features to write."""
    spec = layers[0].spec
    if spec.kind == "embed":
        raise ConfigError("Forward-Forward embeds the label in the input features; it cannot "
                          "train a network that reads token ids (an embed first layer)")
    if spec.in_features < spec.classes:
        raise ConfigError(f"Forward-Forward embeds {spec.classes} labels in the input's first "
                          f"features, and the input has only {spec.in_features}")


def embed_label(x: torch.Tensor, labels: torch.Tensor, classes: int) -> torch.Tensor:
    """`x` with its first `classes` features replaced by `labels` one-hot, scaled to each
    example's largest absolute feature: (B, *shape)."""
    flat = x.flatten(1)  # (B, F)
    scale = flat.abs().amax(1, keepdim=True).clamp(min=1e-6)  # (B, 1)
    onehot = F.one_hot(labels, classes).to(flat.dtype) * scale  # (B, classes)
    return torch.cat([onehot, flat[:, classes:]], 1).view_as(x)


def fixed_length(a: torch.Tensor) -> torch.Tensor:
    """Each example's activity scaled to a root mean square of 1, i.e. to length sqrt(n)
    (plus 1e-4, so silence stays silence)."""
    rms = a.flatten(1).pow(2).mean(1).sqrt().view(-1, *([1] * (a.dim() - 1)))
    return a / (rms + 1e-4)


def threshold(layer: MFLayer) -> float:
    return THRESHOLD_PER_UNIT * layer.spec.out_features


def layer_goodness(layers: Sequence[MFLayer], x: torch.Tensor) -> list[torch.Tensor]:
    """Every layer's goodness Σ a^2 of the (label-embedded) input `x`, each (B,), each layer
    on its predecessor's detached activity scaled to a fixed length."""
    out, a = [], x
    for layer in layers:
        a = layer(fixed_length(a.detach()))
        out.append(a.flatten(1).pow(2).sum(1))
    return out


def ff_loss(layers: Sequence[MFLayer], positive: torch.Tensor,
            negative: torch.Tensor) -> torch.Tensor:
    """Each layer's loss on positive and negative examples passed together, summed over the
    examples: (layers,)."""
    n = positive.shape[0]
    goodness = layer_goodness(layers, torch.cat([positive, negative]))  # each (2B,)
    return torch.stack([0.5 * (F.softplus(threshold(layer) - g[:n])
                               + F.softplus(g[n:] - threshold(layer))).sum()
                        for layer, g in zip(layers, goodness, strict=True)])


class ForwardForward(nn.Module):
    """`layers` as the module a data-parallel wrapper sees; its forward is `ff_loss`."""

    def __init__(self, layers: Sequence[MFLayer]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        return ff_loss([cast(MFLayer, m) for m in self.layers], positive, negative)


def ff_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer,
            scale: float | torch.Tensor, negatives: Negatives, classes: int) -> torch.Tensor:
    """One Forward-Forward step of every layer of `model` (a `ForwardForward`, or that
    wrapped for data-parallel training); `scale`: the run's `batch_scale` of this batch.
    Returns the layer losses summed over the batch."""
    losses = model(embed_label(x, y, classes), embed_label(x, negatives(y), classes))
    opt.zero_grad(set_to_none=True)
    (losses.sum() * scale).backward()
    opt.step()
    return losses.sum().detach()


def random_negatives(seed: int, classes: int) -> Negatives:
    """A wrong label for every example, uniform over the other classes."""
    gen = torch.Generator().manual_seed(seed ^ 0xFF)

    def wrong(y: torch.Tensor) -> torch.Tensor:
        shift = torch.randint(1, classes, tuple(y.shape), generator=gen).to(y.device)
        return (y + shift) % classes
    return wrong


@torch.no_grad()
def label_goodness(layers: Sequence[MFLayer], x: torch.Tensor) -> torch.Tensor:
    """Every layer's goodness with every label embedded: (layers, B, classes)."""
    classes = layers[0].spec.classes
    per_label = [torch.stack(layer_goodness(layers, embed_label(
        x, torch.full((x.shape[0],), c, dtype=torch.long, device=x.device), classes)))
        for c in range(classes)]  # each (layers, B)
    return torch.stack(per_label, 2)


@torch.no_grad()
def scan(layers: Sequence[MFLayer], source: BatchSource,
         ctx: RunContext) -> tuple[float, Accuracy]:
    """The mean FF loss (the true label positive, every wrong label negative) and the
    accuracy of each layer's goodness, of their sum (the FF prediction) and of the last,
    over every process's share of `source`."""
    count, device = len(layers), ctx.device
    correct = torch.zeros(count + 1, dtype=torch.int64, device=device)  # layers..., sum
    loss_sum, n = torch.zeros((), dtype=torch.float64, device=device), 0
    thresholds = torch.tensor([threshold(layer) for layer in layers], device=device)
    for x, y in source.ordered():
        x, y = x.to(device), y.to(device)
        g = label_goodness(layers, x)  # (layers, B, classes)
        true = F.one_hot(y, g.shape[2]).bool()  # (B, classes)
        theta = thresholds.view(-1, 1, 1)
        pos = F.softplus(theta - g)[:, true].sum()
        neg = F.softplus(g - theta)[:, ~true].sum() / (g.shape[2] - 1)
        loss_sum += 0.5 * (pos + neg).double()
        correct[:count] += (g.argmax(2) == y).sum(1)
        correct[count] += (g.sum(0).argmax(1) == y).sum()
        n += int(y.shape[0])
    totals = ctx.all_reduce_sum(torch.cat([correct.double(), loss_sum.view(1),
                                       torch.tensor([n], dtype=torch.float64, device=device)]))
    n = int(totals[-1].item())  # examples over every process
    acc = (totals[:count + 1] / max(n, 1)).tolist()
    return float(totals[-2]) / max(n, 1), Accuracy(acc[:count], acc[count], acc[count - 1], n)


def evaluate_forward_forward(layers: Sequence[MFLayer], source: BatchSource,
                             ctx: RunContext) -> Accuracy:
    """`ff`: the FF prediction (Σ goodness); `per_layer`: each layer's goodness alone."""
    was = [layer.training for layer in layers]
    for layer in layers:
        layer.eval()
    _, accuracy = scan(layers, source, ctx)
    for layer, mode in zip(layers, was, strict=True):
        layer.train(mode)
    return accuracy


def train_forward_forward(layers: Sequence[MFLayer], train: BatchSource,
                          val: BatchSource | None, config: TrainConfig, *,
                          device: str | torch.device | None = None,
                          callback: ProgressCallback | None = None) -> LayerHistory:
    """Train `layers` with Forward-Forward; validation loss and accuracy are FF's own. On
    `device` (default: `config.device`; an API call enters here)."""
    return fit_forward_forward(layers, train, val, config,
                               RunContext.enter(device or config.device), callback)


def fit_forward_forward(layers: Sequence[MFLayer], train: BatchSource, val: BatchSource | None,
                        config: TrainConfig, ctx: RunContext,
                        callback: ProgressCallback | None = None) -> LayerHistory:
    """`train_forward_forward` inside a run, on its context."""
    check_inputs(layers)
    net = MFNet(layers, mode="bp").to(ctx.device).train()
    params = [p for layer in net.mf_layers for p in (layer.weight, layer.bias) if p is not None]
    classes = layers[0].spec.classes
    negatives = random_negatives(config.seed, classes)
    model = ctx.data_parallel(ForwardForward(net.mf_layers), unused=True)  # projections: no part

    def validate() -> tuple[float | None, float | None]:
        if val is None:
            return None, None
        loss, accuracy = scan(net.mf_layers, val, ctx)
        return loss, accuracy.ff

    scale = ctx.batch_scale
    trainee = EndToEnd("ff", ctx, net, params,
                       lambda x, y, opt: ff_step(model, x, y, opt, scale(int(y.shape[0])),
                                                 negatives, classes),
                       validate, capturable=False)  # negatives come from a host generator
    (history,) = run_epochs(trainee, train, config, ctx, keep_best=True, callback=callback)
    return history
