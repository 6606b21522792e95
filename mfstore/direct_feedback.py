"""Direct feedback alignment (DFA; Nøkland, 2016): the output error goes straight to every
layer through a fixed random matrix of its own; nothing travels from layer to layer.

    forward:   a_i = finish(linear(a_{i-1}, W_i) + b_i)  (input detached),  G = a_L M^T
    error:     e = dL/dG = (softmax(G) - onehot(y)) / B                       (B, classes)
    backward:  δa_i = e D_i for every layer i (D_i fixed, random, (classes, n_i));
               M gets its true gradient, a_L^T e

With autograd: every layer's input is detached (as in MF), the head reads `a_L` detached,
and the loss gains `Σ_i <a_i, (e D_i) detached>`, whose gradient with respect to `a_i` is
exactly `e D_i`; one backward call serves every layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mfstore.baseline import backprop_parameters
from mfstore.batches import BatchSource
from mfstore.config import TrainConfig
from mfstore.devices import resolve_device
from mfstore.epochs import run_epochs
from mfstore.evaluation import last_layer_validation
from mfstore.feedback_alignment import feedback_generator, random_matrix
from mfstore.history import LayerHistory, ProgressCallback
from mfstore.modules import MFLayer, MFNet


def direct_feedback_matrices(layers: Sequence[MFLayer], seed: int,
                             device: torch.device) -> list[torch.Tensor]:
    """`D_i` (classes, n_i) for every layer, drawn as the projections are."""
    return [random_matrix((layer.spec.classes, layer.spec.out_features),
                          layer.spec.out_features,
                          feedback_generator(seed, k, 0xDFA)).to(device)
            for k, layer in enumerate(layers)]


def dfa_step(layers: Sequence[MFLayer], feedback: Sequence[torch.Tensor], x: torch.Tensor,
             y: torch.Tensor, opt: torch.optim.Optimizer) -> torch.Tensor:
    """One direct-feedback-alignment step; no host sync. Returns the cross-entropy."""
    a, outputs = x, []
    for layer in layers:
        a = layer(a.detach())  # (B, *out_shape)
        outputs.append(a.flatten(1))
    goodness = layers[-1].goodness(outputs[-1].detach())  # (B, classes)
    loss = F.cross_entropy(goodness, y)
    onehot = F.one_hot(y, goodness.shape[1]).to(goodness.dtype)
    error = ((torch.softmax(goodness, 1) - onehot) / y.shape[0]).detach()  # dL/dG
    signal = torch.stack([(out * (error @ d)).sum() for out, d in zip(outputs, feedback,
                                                                      strict=True)]).sum()
    opt.zero_grad(set_to_none=True)
    (loss + signal).backward()
    opt.step()
    return loss.detach()


def train_direct_feedback(layers: Sequence[MFLayer], train: BatchSource, val: BatchSource | None,
                          config: TrainConfig, *, device: torch.device | None = None,
                          callback: ProgressCallback | None = None) -> LayerHistory:
    """Train `layers` (the last projection as the head) with direct feedback alignment; its
    feedback matrices come from `config.seed`."""
    device = device or resolve_device(config.device)
    net = MFNet(layers, mode="bp").to(device).train()
    feedback = direct_feedback_matrices(net.mf_layers, config.seed, device)
    return run_epochs(net, backprop_parameters(net),
                      lambda x, y, opt: dfa_step(net.mf_layers, feedback, x, y, opt), train,
                      last_layer_validation(net.mf_layers, val, device), config, device,
                      algorithm="dfa", index=None, callback=callback)
