"""Feedback alignment (FA; Lillicrap et al., 2016): backprop's forward pass and loss, but the
error travels back through fixed random matrices in place of the transposed weights.

    forward:   z_i = linear(a_{i-1}, W_i) + b_i,  a_i = finish(z_i),  G = a_L M^T   (as BP)
    backward:  δa_{i-1} = linear^T(δz_i, B_i),  δa_L = δG B_head   (B fixed, random; BP: W_i, M)
               every weight still gets its own gradient, δW_i from δz_i and a_{i-1}

With autograd: `z = linear(a.detach(), W) + (t - t.detach())`, `t = linear(a, B)`. The second
term is zero going forward and carries the error back to `a` through `B`; the first gives `W`
its gradient and cuts the path back through `W`. It works for every layer kind, because each
kind's `linear` (`layer_math`) is linear in its weights. Layer 1 needs no `B`: its input is
the data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mfstore import layer_math
from mfstore.baseline import backprop_parameters
from mfstore.batches import BatchSource
from mfstore.config import TrainConfig
from mfstore.devices import resolve_device
from mfstore.epochs import run_epochs
from mfstore.evaluation import last_layer_validation
from mfstore.history import LayerHistory, ProgressCallback
from mfstore.modules import MFLayer, MFNet


def feedback_generator(seed: int, index: int, salt: int) -> torch.Generator:
    """The RNG of the fixed feedback matrix `index` of an algorithm (`salt`), apart from the
    layers' own initialisation."""
    state = np.random.SeedSequence([seed, index, salt]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def random_matrix(shape: Sequence[int], fan_in: int, gen: torch.Generator) -> torch.Tensor:
    """Uniform in ±1/sqrt(fan_in): the distribution the layers' own weights start from."""
    bound = 1.0 / math.sqrt(fan_in)
    return torch.empty(*shape).uniform_(-bound, bound, generator=gen)


def feedback_matrices(layers: Sequence[MFLayer], seed: int,
                      device: torch.device) -> list[torch.Tensor | None]:
    """`B_i` for every layer (None for layer 1) shaped as its weight, and `B_head` shaped as
    the last projection (classes, n_L), last."""
    out: list[torch.Tensor | None] = [None]
    for k, layer in enumerate(layers[1:], 1):
        kind = layer_math.kind(layer.spec.kind)
        out.append(random_matrix(kind.weight_shape(layer.spec), kind.fan_in(layer.spec),
                                 feedback_generator(seed, k, 0xFA)).to(device))
    head = layers[-1].spec
    out.append(random_matrix((head.classes, head.out_features), head.out_features,
                             feedback_generator(seed, len(layers), 0xFA)).to(device))
    return out


def _through(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """`z` going forward; the gradient of `t` going back."""
    return z + (t - t.detach())


def feedback_forward(layers: Sequence[MFLayer], feedback: Sequence[torch.Tensor | None],
                     x: torch.Tensor) -> torch.Tensor:
    """The network's goodness (B, classes), wired so that backward runs feedback alignment."""
    a = x
    for layer, b in zip(layers, feedback, strict=False):
        kind, spec = layer_math.kind(layer.spec.kind), layer.spec
        z = kind.linear(spec, a.detach(), layer.weight)
        if b is not None:
            z = _through(z, kind.linear(spec, a, b))
        a = kind.finish(spec, z, layer.bias)
    flat = a.flatten(1)  # (B, n_L)
    head = feedback[-1]
    assert head is not None
    return _through(F.linear(flat.detach(), layers[-1].projection), F.linear(flat, head))


def fa_step(layers: Sequence[MFLayer], feedback: Sequence[torch.Tensor | None],
            x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer) -> torch.Tensor:
    """One feedback-alignment step; no host sync."""
    loss = F.cross_entropy(feedback_forward(layers, feedback, x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def train_feedback_alignment(layers: Sequence[MFLayer], train: BatchSource,
                             val: BatchSource | None, config: TrainConfig, *,
                             device: torch.device | None = None,
                             callback: ProgressCallback | None = None) -> LayerHistory:
    """Train `layers` as one network (the last projection as its head) with feedback
    alignment; its feedback matrices come from `config.seed`."""
    device = device or resolve_device(config.device)
    net = MFNet(layers, mode="bp").to(device).train()
    feedback = feedback_matrices(net.mf_layers, config.seed, device)
    return run_epochs(net, backprop_parameters(net),
                      lambda x, y, opt: fa_step(net.mf_layers, feedback, x, y, opt), train,
                      last_layer_validation(net.mf_layers, val, device), config, device,
                      algorithm="fa", index=None, callback=callback)
