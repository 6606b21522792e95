"""Train a 3-layer MLP one layer at a time and watch each layer's accuracy.

Run: python examples/train_layer_by_layer.py
"""

import torch

from mfstore import TrainConfig, build_layers, build_specs, evaluate, load_dataset, parse_arch
from mfstore.inputs import split_batches
from mfstore.stack import train_sequential

data = load_dataset("sklearn:digits")
config = TrainConfig(epochs=20, batch_size=64, device="cpu")
specs = build_specs(parse_arch("dense:128,dense:128,dense:128"), data.input_shape, data.classes)
layers = build_layers(specs, config.seed)
device = torch.device("cpu")
train, val, test = (split_batches(s, config, device) for s in (data.train, data.val, data.test))
histories = train_sequential(layers, train, val, config, device=device)
accuracy = evaluate(layers, test, device)
for k, (acc, history) in enumerate(zip(accuracy.per_layer, histories, strict=True), 1):
    print(f"layer {k}: test accuracy {acc:.2%} (best epoch {history.best_epoch})")
print(f"FF mode {accuracy.ff:.2%}, BP mode {accuracy.bp:.2%}")
