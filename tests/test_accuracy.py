"""Mono-Forward reaches the paper's accuracy on small real datasets, in both modes."""

from __future__ import annotations

import pytest

from mfstore.config import TrainConfig
from mfstore.experiment import run_experiment


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["sequential", "simultaneous"])
def test_digits_mlp_2x256(digits, schedule):
    config = TrainConfig(epochs=30, batch_size=64, seed=0, device="cpu")
    result = run_experiment(digits, "dense:256,dense:256", config, schedule, baseline="bp")
    assert result.test.ff >= 0.95
    assert result.test.bp >= 0.95
    assert result.baseline.test.bp >= 0.95
    assert result.test.examples == len(digits.test)


@pytest.mark.parametrize("schedule", ["sequential", "simultaneous"])
def test_breast_cancer_mlp_2x100(breast_cancer, schedule):
    config = TrainConfig(epochs=50, batch_size=32, seed=0, device="cpu")
    result = run_experiment(breast_cancer, "dense:100,dense:100", config, schedule, baseline="none")
    assert result.test.ff >= 0.95
    assert result.test.bp >= 0.95
    assert result.baseline is None


def test_conv_layers_train_on_images(digits):
    config = TrainConfig(epochs=15, batch_size=64, lr=3e-3, seed=0, device="cpu")
    result = run_experiment(digits, "conv:16,conv:32", config, "sequential", baseline="bp")
    assert [s.out_shape for s in result.specs] == [(16, 4, 4), (32, 2, 2)]
    assert result.test.ff >= 0.93
    assert result.test.per_layer[0] >= 0.93
    assert result.baseline.test.bp >= 0.9
