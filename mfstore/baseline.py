"""The backprop baseline: the same layers trained end to end, the last layer's projection
serving as the linear head, with the same optimizer, data order, seed and early stopping."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mfstore.batches import BatchSource
from mfstore.config import TrainConfig, resolve_device
from mfstore.evaluation import validate_stack
from mfstore.fitting import fit
from mfstore.history import LayerHistory, ProgressCallback
from mfstore.modules import MFLayer, MFNet


def backprop_parameters(net: MFNet) -> list[torch.nn.Parameter]:
    """Every weight and bias, and only the last projection (the head): earlier projections
    play no part in BP."""
    params: list[torch.nn.Parameter] = []
    for layer in net.mf_layers:
        params += [p for p in (layer.weight, layer.bias) if p is not None]
    return [*params, net.mf_layers[-1].projection]


def bp_step(net: MFNet, x: torch.Tensor, y: torch.Tensor,
            opt: torch.optim.Optimizer) -> torch.Tensor:
    """One backprop step through the whole net; no host sync (capturable as a CUDA graph)."""
    loss = F.cross_entropy(net(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def train_backprop(layers: Sequence[MFLayer], train: BatchSource, val: BatchSource | None,
                   config: TrainConfig, *,
                   callback: ProgressCallback | None = None) -> LayerHistory:
    """Train `layers` as one network with backprop from the last layer's goodness."""
    device = resolve_device(config.device)
    net = MFNet(layers, mode="bp").to(device).train()

    def validate() -> tuple[float | None, float | None]:
        losses, accuracies = validate_stack(net.mf_layers, val, device)
        return losses[-1], accuracies[-1]

    return fit(net, backprop_parameters(net), lambda x, y, opt: bp_step(net, x, y, opt), train,
               validate, config, algorithm="bp", index=None, callback=callback)
