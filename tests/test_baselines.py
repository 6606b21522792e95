"""The baselines beside MF: one update of each (FA, DFA, FF) against a hand computation in
numpy, the FF prediction by hand, and all of them from one run on real data."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from mfstore.baseline import parse_baselines
from mfstore.config import TrainConfig
from mfstore.devices import make_optimizer
from mfstore.direct_feedback import DirectFeedback, dfa_step, direct_feedback_matrices
from mfstore.errors import ConfigError
from mfstore.experiment import run_experiment
from mfstore.feedback_alignment import FeedbackAlignment, fa_step, feedback_matrices
from mfstore.forward_forward import (
    ForwardForward,
    embed_label,
    evaluate_forward_forward,
    ff_step,
    label_goodness,
)
from mfstore.modules import MFLayer
from mfstore.run_context import RunContext
from mfstore.spec import LayerSpec

CPU = torch.device("cpu")
X = np.array([[1.0, 2.0, -1.0], [0.5, -1.0, 2.0], [-1.5, 0.3, 0.7]])
Y = np.array([0, 1, 1])
START = {  # layer 1: 3 -> 4, layer 2: 4 -> 3, projections (2, 4), (2, 3)
    "w1": np.array([[0.5, -0.2, 0.1], [-0.3, 0.4, 0.2], [0.2, 0.3, -0.4], [0.6, 0.1, 0.3]]),
    "b1": np.array([0.1, -0.1, 0.05, 0.0]),
    "m1": np.array([[1.0, -0.5, 0.2, 0.1], [0.25, 0.75, -0.3, 0.4]]),
    "w2": np.array([[0.3, -0.6, 0.2, 0.5], [-0.2, 0.4, 0.7, -0.1], [0.5, 0.2, -0.3, 0.6]]),
    "b2": np.array([0.05, 0.1, -0.2]),
    "m2": np.array([[0.6, -0.4, 0.3], [-0.2, 0.5, 0.8]]),
}


def _net() -> list[MFLayer]:
    first, second = MFLayer(LayerSpec("dense", 4, (3,), 2)), MFLayer(LayerSpec("dense", 3, (4,), 2))
    with torch.no_grad():
        for layer, k in ((first, "1"), (second, "2")):
            layer.weight.copy_(torch.tensor(START[f"w{k}"]))
            layer.bias.copy_(torch.tensor(START[f"b{k}"]))
            layer.projection.copy_(torch.tensor(START[f"m{k}"]))
    return [first, second]


def _softmax(g: np.ndarray) -> np.ndarray:
    p = np.exp(g - g.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def _adam_first_step(start: np.ndarray, grad: np.ndarray, lr: float) -> np.ndarray:
    return start - lr * grad / (np.abs(grad) + 1e-8)  # m̂ = g, v̂ = g², bias-corrected


def _check(layers: list[MFLayer], grads: dict[str, np.ndarray], lr: float) -> None:
    """Each parameter's gradient, and the parameter after Adam's first step."""
    params = {"w1": layers[0].weight, "b1": layers[0].bias, "m1": layers[0].projection,
              "w2": layers[1].weight, "b2": layers[1].bias, "m2": layers[1].projection}
    for name, param in params.items():
        if name not in grads:
            assert param.grad is None, name
            continue
        np.testing.assert_allclose(param.grad.numpy(), grads[name], rtol=1e-5, atol=1e-7,
                                   err_msg=name)
        np.testing.assert_allclose(param.detach().numpy(), _adam_first_step(
            START[name], grads[name], lr), rtol=1e-5, atol=1e-7, err_msg=name)


def _step(layers: list[MFLayer], params: list[torch.nn.Parameter], step, lr=0.01) -> None:
    config = TrainConfig(lr=lr, optimizer="adam", weight_decay=0.0, lr_schedule="constant",
                         device="cpu")
    step(torch.tensor(X, dtype=torch.float32), torch.tensor(Y),
         make_optimizer(params, config, CPU))


def _weights(layers: list[MFLayer], head: bool) -> list[torch.nn.Parameter]:
    params = [p for layer in layers for p in (layer.weight, layer.bias)]
    return [*params, layers[-1].projection] if head else params


def _forward(s: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    z1 = X @ s["w1"].T + s["b1"]
    a1 = np.maximum(z1, 0)
    z2 = a1 @ s["w2"].T + s["b2"]
    a2 = np.maximum(z2, 0)
    return z1, a1, z2, a2


def test_one_feedback_alignment_step_by_hand():
    layers = _net()
    feedback = feedback_matrices(layers, seed=7, device=CPU)
    b2, head = (f.numpy() for f in feedback[1:])  # b2 like W2 (3, 4); head like M2 (2, 3)
    assert feedback[0] is None and b2.shape == (3, 4) and head.shape == (2, 3)
    z1, a1, z2, a2 = _forward(START)
    dg = (_softmax(a2 @ START["m2"].T) - np.eye(2)[Y]) / len(Y)  # dL/dG
    dz2 = (dg @ head) * (z2 > 0)  # BP would use M2 here …
    dz1 = (dz2 @ b2) * (z1 > 0)  # … and W2 here
    grads = {"m2": dg.T @ a2, "w2": dz2.T @ a1, "b2": dz2.sum(0), "w1": dz1.T @ X,
             "b1": dz1.sum(0)}
    _step(layers, _weights(layers, head=True),
          lambda x, y, opt: fa_step(FeedbackAlignment(layers, feedback), x, y, opt,
                                    1.0 / len(y)))
    _check(layers, grads, 0.01)
    bp_dz1 = ((dg @ START["m2"]) * (z2 > 0) @ START["w2"]) * (z1 > 0)
    assert not np.allclose(bp_dz1.T @ X, grads["w1"])  # it is not backprop


def test_one_direct_feedback_alignment_step_by_hand():
    layers = _net()
    d1, d2 = (d.numpy() for d in direct_feedback_matrices(layers, seed=7, device=CPU))
    assert d1.shape == (2, 4) and d2.shape == (2, 3)
    z1, a1, z2, a2 = _forward(START)
    e = (_softmax(a2 @ START["m2"].T) - np.eye(2)[Y]) / len(Y)  # the output error dL/dG
    dz2 = (e @ d2) * (z2 > 0)  # straight from the output, through D_2 …
    dz1 = (e @ d1) * (z1 > 0)  # … and through D_1, not through layer 2
    grads = {"m2": e.T @ a2, "w2": dz2.T @ a1, "b2": dz2.sum(0), "w1": dz1.T @ X,
             "b1": dz1.sum(0)}
    _step(layers, _weights(layers, head=True),
          lambda x, y, opt: dfa_step(DirectFeedback(layers, [
              torch.tensor(d1, dtype=torch.float32), torch.tensor(d2, dtype=torch.float32)]),
              x, y, opt, 1.0 / len(y)))
    _check(layers, grads, 0.01)


def _softplus_grad(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def _ff_layer(u: np.ndarray, w: np.ndarray, b: np.ndarray, n_pos: int, theta: float):
    """One FF layer on its (fixed-length) input `u` of positives then negatives: (grad W,
    grad b, activations)."""
    z = u @ w.T + b
    a = np.maximum(z, 0)
    g = (a ** 2).sum(1)
    dg = np.concatenate([-_softplus_grad(theta - g[:n_pos]),
                         _softplus_grad(g[n_pos:] - theta)]) * 0.5 / n_pos
    dz = dg[:, None] * 2 * a * (z > 0)
    return dz.T @ u, dz.sum(0), a


def _rms_scaled(a: np.ndarray) -> np.ndarray:
    return a / (np.sqrt((a ** 2).mean(1, keepdims=True)) + 1e-4)


def test_one_forward_forward_step_by_hand():
    layers = _net()
    wrong = (Y + 1) % 2
    scale = np.abs(X).max(1, keepdims=True)
    x_pos = np.concatenate([np.eye(2)[Y] * scale, X[:, 2:]], 1)  # the label in features 0-1
    x_neg = np.concatenate([np.eye(2)[wrong] * scale, X[:, 2:]], 1)
    u1 = _rms_scaled(np.concatenate([x_pos, x_neg]))
    gw1, gb1, a1 = _ff_layer(u1, START["w1"], START["b1"], len(Y), theta=4.0)  # θ = n_1
    gw2, gb2, _ = _ff_layer(_rms_scaled(a1), START["w2"], START["b2"], len(Y), theta=3.0)
    _step(layers, _weights(layers, head=False),
          lambda x, y, opt: ff_step(ForwardForward(layers), x, y, opt, 1.0 / len(y),
                                    lambda labels: (labels + 1) % 2, classes=2))
    _check(layers, {"w1": gw1, "b1": gb1, "w2": gw2, "b2": gb2}, 0.01)


def test_forward_forward_predicts_the_label_with_the_most_goodness():
    layers = _net()
    x = torch.tensor(X, dtype=torch.float32)
    assert torch.equal(embed_label(x, torch.tensor([1, 0, 1]), 2)[:, 2], x[:, 2])
    g = label_goodness(layers, x)  # (layers, B, classes)
    by_hand = []
    for label in (0, 1):
        u = _rms_scaled(np.concatenate([np.eye(2)[[label] * 3] * np.abs(X).max(1, keepdims=True),
                                        X[:, 2:]], 1))
        a1 = np.maximum(u @ START["w1"].T + START["b1"], 0)
        a2 = np.maximum(_rms_scaled(a1) @ START["w2"].T + START["b2"], 0)
        by_hand.append([(a1 ** 2).sum(1), (a2 ** 2).sum(1)])
    np.testing.assert_allclose(g.numpy(), np.array(by_hand).transpose(1, 2, 0), rtol=1e-5)
    from mfstore.batches import TensorBatches

    accuracy = evaluate_forward_forward(layers, TensorBatches(x, torch.tensor(Y)),
                                        RunContext.alone(CPU))
    total = np.array(by_hand).sum(1).T  # (B, classes)
    assert accuracy.ff == pytest.approx((total.argmax(1) == Y).mean())
    assert accuracy.per_layer[0] == pytest.approx((np.array(by_hand)[:, 0].T.argmax(1)
                                                   == Y).mean())


@pytest.mark.parametrize("value,expected", [("bp", ("bp",)), ("none", ()),
                                            ("bp,fa,dfa,ff", ("bp", "fa", "dfa", "ff")),
                                            (" ff , dfa", ("ff", "dfa")), (["fa"], ("fa",))])
def test_baselines_are_any_subset(value, expected):
    assert parse_baselines(value) == expected


@pytest.mark.parametrize("value,message", [
    ("sgd", "unknown baseline 'sgd'; choose any of bp, fa, dfa, ff (comma-separated), or none"),
    ("bp,bp", "baseline 'bp,bp' names an algorithm twice"),
    ("bp,none", "unknown baseline 'none'; choose any of bp, fa, dfa, ff"),
])
def test_bad_baselines_are_refused(value, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_baselines(value)


@pytest.mark.slow
def test_every_baseline_learns_digits_beside_mf(digits):
    config = TrainConfig(epochs=12, batch_size=64, seed=0, device="cpu")
    result = run_experiment(digits, "dense:64,dense:64", config, "simultaneous",
                            "bp,fa,dfa,ff")
    assert [b.algorithm for b in result.baselines] == ["bp", "fa", "dfa", "ff"]
    assert result.baseline is result.baselines[0]
    for b in result.baselines:  # FF learns slowest (chance: 0.1)
        assert b.test_accuracy >= (0.6 if b.algorithm == "ff" else 0.85), b.algorithm
        assert b.history.epochs and b.history.epochs[0]["val_accuracy"] is not None
    report = result.to_dict()
    assert [b["algorithm"] for b in report["baselines"]] == ["bp", "fa", "dfa", "ff"]
    assert report["baseline"]["algorithm"] == "bp"


def test_forward_forward_refuses_token_ids():
    from mfstore.forward_forward import check_inputs

    with pytest.raises(ConfigError, match=re.escape(
            "Forward-Forward embeds the label in the input features; it cannot train a network "
            "that reads token ids (an embed first layer)")):
        check_inputs([MFLayer(LayerSpec("embed", 4, (5,), 2, vocab=10))])
