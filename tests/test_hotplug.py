"""Earlier layers never depend on later ones: layers 1-2 of a trained 3-layer net are
bit-identical to the trained 2-layer net, in both schedules."""

from __future__ import annotations

import pytest
import torch

from mfstore.config import TrainConfig
from mfstore.inputs import split_batches
from mfstore.modules import build_layers
from mfstore.spec import build_specs, parse_arch
from mfstore.stack import train_sequential
from mfstore.training import train_simultaneous

CPU = torch.device("cpu")


@pytest.mark.parametrize("trainer", [train_sequential, train_simultaneous])
@pytest.mark.slow
def test_layers_of_a_deeper_net_equal_the_shallower_net(digits, trainer):
    config = TrainConfig(epochs=8, batch_size=64, patience=2, seed=11, device="cpu")
    train, val = split_batches(digits.train, config, CPU), split_batches(digits.val, config, CPU)
    specs = build_specs(parse_arch("dense:64,dense:48,dense:32"), digits.input_shape,
                        digits.classes)
    shallow, deep = build_layers(specs[:2], config.seed), build_layers(specs, config.seed)
    shallow_hist = trainer(shallow, train, val, config)
    deep_hist = trainer(deep, train, val, config)
    for k in range(2):
        for name, tensor in shallow[k].state_dict().items():
            assert torch.equal(tensor, deep[k].state_dict()[name]), (k, name)
        assert shallow_hist[k].epochs == deep_hist[k].epochs
    assert not torch.equal(build_layers(specs, config.seed)[0].weight, deep[0].weight)


def test_simultaneous_early_stopping_freezes_layers_in_order(digits):
    config = TrainConfig(epochs=40, batch_size=64, patience=1, seed=2, device="cpu")
    train, val = split_batches(digits.train, config, CPU), split_batches(digits.val, config, CPU)
    specs = build_specs(parse_arch("dense:64,dense:64"), digits.input_shape, digits.classes)
    layers = build_layers(specs, config.seed)
    reports = []
    histories = train_simultaneous(layers, train, val, config, callback=reports.append)
    stops = {r.layer: r.epoch for r in reports if r.stopped}
    assert 0 in stops  # patience 1 on digits stops well before 40 epochs
    assert stops.get(1, 10**9) > stops[0]
    assert histories[0].stopped_early
    assert histories[0].best_epoch <= stops[0]
