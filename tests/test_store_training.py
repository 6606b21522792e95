"""Training through the store equals training in memory."""

from __future__ import annotations

import pytest
import torch

from mfstore.config import StreamOptions, TrainConfig
from mfstore.evaluation import evaluate
from mfstore.importing import import_dataset
from mfstore.inputs import split_batches
from mfstore.modules import build_layers
from mfstore.network import evaluate_network, load_layers
from mfstore.run_context import RunContext
from mfstore.spec import build_specs, parse_arch
from mfstore.stack import train_sequential
from mfstore.store_training import train_network
from mfstore.training import train_simultaneous
from mfstore.workspace import Workspace

CPU = torch.device("cpu")

ARCH = "dense:64,dense:48,dense:32"
CONFIG = TrainConfig(epochs=6, batch_size=64, patience=2, seed=4, device="cpu")


def _in_memory(digits, trainer, config=CONFIG):
    specs = build_specs(parse_arch(ARCH), digits.input_shape, digits.classes)
    layers = build_layers(specs, config.seed)
    train, val, test = (split_batches(s, config, CPU)
                        for s in (digits.train, digits.val, digits.test))
    trainer(layers, train, val, config)
    return layers, evaluate(layers, test, torch.device("cpu"))


@pytest.mark.parametrize("schedule,trainer", [("sequential", train_sequential),
                                              ("simultaneous", train_simultaneous)])
@pytest.mark.slow
def test_store_training_matches_in_memory_bit_for_bit(tmp_path, digits, schedule, trainer):
    ws = Workspace.init(home=str(tmp_path))
    import_dataset(ws, "digits", "sklearn:digits")
    result = train_network(ws, "n", "digits", ARCH, CONFIG, schedule)
    stored = load_layers(ws, ws.registry.network_layers(result.network))
    memory, accuracy = _in_memory(digits, trainer)
    for a, b in zip(stored, memory, strict=True):
        for name, tensor in a.state_dict().items():
            assert torch.equal(tensor, b.state_dict()[name]), name
    _, stored_accuracy = evaluate_network(ws, "n@1")
    assert stored_accuracy == accuracy


@pytest.mark.slow
def test_streamed_from_shards_with_a_bounded_buffer_reaches_the_same_accuracy(tmp_path, digits):
    options = StreamOptions(shard_bytes=64 << 10, ram_budget=0, shuffle_buffer=256)
    ws = Workspace.init(home=str(tmp_path), stream_options=options)
    import_dataset(ws, "digits", "sklearn:digits")
    # Adam at a constant rate, stopping on the validation loss: the defaults are chosen for
    # Fashion-MNIST; here 1,200 examples train, and 144 make validation accuracy too coarse
    config = TrainConfig(epochs=20, batch_size=64, optimizer="adam", weight_decay=0.0,
                         lr_schedule="constant", patience=5, monitor="val_loss", seed=4,
                         device="cpu")
    result = train_network(ws, "n", "digits", ARCH, config, "sequential")
    manifest_shards = [s for s in ws.store.list("streams") if s.endswith(".safetensors")]
    assert len(manifest_shards) > 4 * 3  # several shards per split, 4 streams
    _, streamed = evaluate_network(ws, result.network.ref)
    _, accuracy = _in_memory(digits, train_sequential, config)
    assert streamed.bp >= 0.95 and abs(streamed.bp - accuracy.bp) < 0.03
    assert abs(streamed.ff - accuracy.ff) < 0.03


def test_streams_are_written_when_read_and_reused(tmp_path):
    ws = Workspace.init(home=str(tmp_path))
    import_dataset(ws, "digits", "sklearn:digits")
    train_network(ws, "n", "digits", "dense:16,dense:8", CONFIG)
    assert len(ws.registry.streams()) == 2  # the examples, and what layer 2 trained on
    from mfstore.stream_chain import chain_stream

    dataset = ws.registry.dataset("digits")
    layers = [ws.registry.layer("n.l1"), ws.registry.layer("n.l2")]
    # asked for: the last layer's output, written once
    chain_stream(ws, dataset, layers, RunContext.alone(CPU))
    files = {p: ws.store.modified(p) for p in ws.store.list("streams")}
    chain_stream(ws, dataset, layers, RunContext.alone(CPU))
    assert {p: ws.store.modified(p) for p in ws.store.list("streams")} == files
    assert len(ws.registry.streams()) == 3
