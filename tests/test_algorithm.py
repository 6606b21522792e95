"""Mono-Forward exactly: local loss on G = a M^T, detached inputs, one Adam step by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mfstore.batches import TensorBatches
from mfstore.config import TrainConfig
from mfstore.modules import MFLayer, build_layers
from mfstore.spec import LayerSpec, build_specs, parse_arch
from mfstore.training import local_loss, train_layer, train_simultaneous


def _tiny_layer() -> MFLayer:
    layer = MFLayer(LayerSpec("dense", 2, (3,), 2))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -0.2, 0.1], [-0.3, 0.4, 0.2]]))
        layer.bias.copy_(torch.tensor([0.1, -0.1]))
        layer.projection.copy_(torch.tensor([[1.0, -0.5], [0.25, 0.75]]))
    return layer


def test_goodness_loss_and_one_adam_step_match_a_hand_computation():
    x = np.array([[1.0, 2.0, -1.0], [0.5, -1.0, 2.0]])
    y = np.array([0, 1])
    W = np.array([[0.5, -0.2, 0.1], [-0.3, 0.4, 0.2]])
    b = np.array([0.1, -0.1])
    M = np.array([[1.0, -0.5], [0.25, 0.75]])
    z = x @ W.T + b
    a = np.maximum(z, 0)
    G = a @ M.T  # (2, classes)
    p = np.exp(G - G.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    loss = -np.log(p[np.arange(2), y]).mean()

    layer = _tiny_layer()
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    a_t, loss_t = local_loss(layer, xt, yt)
    np.testing.assert_allclose(layer.goodness(a_t).detach().numpy(), G, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(loss_t.item(), loss, rtol=1e-6)

    dG = (p - np.eye(2)[y]) / 2  # dL/dG for the mean over the batch
    dM = dG.T @ a
    dz = (dG @ M) * (z > 0)
    grads = {"weight": dz.T @ x, "bias": dz.sum(0), "projection": dM}
    start = {"weight": W, "bias": b, "projection": M}
    lr, (b1, b2), eps = 0.01, (0.9, 0.999), 1e-8
    config = TrainConfig(epochs=1, batch_size=2, lr=lr, optimizer="adam", weight_decay=0.0,
                         lr_schedule="constant", patience=None, device="cpu")
    train_layer(layer, TensorBatches(xt, yt, batch_size=2), None, config)
    for name, g in grads.items():
        m_hat = (1 - b1) * g / (1 - b1)
        v_hat = (1 - b2) * g * g / (1 - b2)
        expected = start[name] - lr * m_hat / (np.sqrt(v_hat) + eps)
        np.testing.assert_allclose(getattr(layer, name).detach().numpy(), expected,
                                   rtol=1e-5, atol=1e-7, err_msg=name)


def test_no_gradient_crosses_a_layer_boundary(digits):
    specs = build_specs(parse_arch("dense:32,dense:16"), digits.input_shape, digits.classes)
    x, y = digits.train.x[:64], digits.train.y[:64]
    config = TrainConfig(epochs=1, batch_size=64, patience=None, device="cpu")

    def layer1_after_one_step(projection_2: torch.Tensor) -> MFLayer:
        layers = build_layers(specs, seed=3)
        with torch.no_grad():
            layers[1].projection.copy_(projection_2)
        train_simultaneous(layers, TensorBatches(x, y, 64), None, config)
        return layers[0]

    zeros = torch.zeros(digits.classes, 16)
    noise = torch.randn(digits.classes, 16, generator=torch.Generator().manual_seed(9)) * 100
    first, second = layer1_after_one_step(zeros), layer1_after_one_step(noise)
    untouched = build_layers(specs, seed=3)[0]
    for name in ("weight", "bias", "projection"):
        assert torch.equal(getattr(first, name), getattr(second, name)), name
        assert not torch.equal(getattr(first, name), getattr(untouched, name)), name

    layers = build_layers(specs, seed=3)
    a1, _ = local_loss(layers[0], x, y)
    _, loss2 = local_loss(layers[1], a1, y)
    grads = torch.autograd.grad(loss2, list(layers[0].parameters()), allow_unused=True)
    assert all(g is None for g in grads)


def test_bp_mode_uses_the_last_goodness_and_ff_mode_their_sum(digits):
    from mfstore.modules import MFNet

    specs = build_specs(parse_arch("dense:8,dense:8"), digits.input_shape, digits.classes)
    layers = build_layers(specs, seed=0)
    x = digits.test.x[:5]
    g1 = layers[0].goodness(layers[0](x))
    g2 = layers[1].goodness(layers[1](layers[0](x)))
    torch.testing.assert_close(MFNet(layers, "bp")(x), g2)
    torch.testing.assert_close(MFNet(layers, "ff")(x), g1 + g2)
    torch.testing.assert_close(MFNet(layers, "bp", upto=1)(x), g1)


def test_evaluation_counts_layer_ff_and_bp_predictions_by_hand(digits):
    from mfstore.evaluation import evaluate, stack_metrics
    from mfstore.run_context import RunContext

    specs = build_specs(parse_arch("dense:8,dense:8"), digits.input_shape, digits.classes)
    layers = build_layers(specs, seed=0)
    x, y = digits.test.x[:50], digits.test.y[:50]
    with torch.no_grad():
        g1 = layers[0].goodness(layers[0](x))
        g2 = layers[1].goodness(layers[1](layers[0](x)))
    right = [int((g.argmax(1) == y).sum()) for g in (g1, g2, g1 + g2)]
    accuracy = evaluate(layers, TensorBatches(x, y, eval_batch_size=7), torch.device("cpu"))
    assert accuracy.per_layer == [right[0] / 50, right[1] / 50]
    assert (accuracy.ff, accuracy.bp, accuracy.examples) == (right[2] / 50, right[1] / 50, 50)
    losses = stack_metrics(layers, TensorBatches(x, y, eval_batch_size=7),
                           RunContext.alone("cpu")).losses
    for got, g in zip(losses, (g1, g2), strict=True):
        assert got == pytest.approx(F.cross_entropy(g, y).item(), rel=1e-6)


def test_the_cuda_switches_change_nothing_on_the_cpu(digits):
    """`cuda_graphs` and `overlap` are CUDA-only: on the CPU a run with them is the same run,
    bit for bit (their GPU behaviour is checked in test_gpu.py)."""
    states = []
    for graphs, overlap in ((False, False), (True, True)):
        config = TrainConfig(epochs=3, batch_size=100, patience=None, cuda_graphs=graphs,
                             overlap=overlap, device="cpu")
        specs = build_specs(parse_arch("dense:16,dense:16"), digits.input_shape, digits.classes)
        layers = build_layers(specs, 0)
        train = TensorBatches(digits.train.x, digits.train.y, 100)
        train_simultaneous(layers, train, None, config, device=torch.device("cpu"))
        states.append([t.clone() for layer in layers for t in layer.state_dict().values()])
    assert all(torch.equal(a, b) for a, b in zip(*states, strict=True))


def test_batches_are_fed_in_order_on_the_cpu():
    from mfstore.feeding import on_device

    batches = [(torch.full((3, 2), float(i)), torch.full((3,), i)) for i in range(4)]
    fed = list(on_device(iter(batches), torch.device("cpu")))
    assert [int(y[0]) for _, y in fed] == [0, 1, 2, 3]
    assert all(torch.equal(x, bx) for (x, _), (bx, _) in zip(fed, batches, strict=True))
