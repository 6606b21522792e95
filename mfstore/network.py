"""Networks from registered layer versions: load, evaluate, predict."""

from __future__ import annotations

import torch

from mfstore.block import load_block
from mfstore.devices import resolve_device
from mfstore.errors import SpecError
from mfstore.evaluation import Accuracy, evaluate
from mfstore.fixes import option
from mfstore.lineage import check_shapes
from mfstore.manifest import Manifest
from mfstore.modules import MFLayer, MFNet
from mfstore.registry import LayerVersion, NetworkVersion
from mfstore.stream import StreamBatches
from mfstore.stream_chain import dataset_stream
from mfstore.workspace import Workspace


def load_layers(ws: Workspace, layers: list[LayerVersion]) -> list[MFLayer]:
    """Every layer rebuilt from its verified block."""
    return [load_block(ws, layer).to_layer() for layer in layers]


def check_upto(network: NetworkVersion, upto: int | None, count: int) -> int:
    """How many layers to use: all, or the first `upto` (degraded mode)."""
    if upto is None:
        return count
    if not 1 <= upto <= count:
        raise SpecError(f"the number of layers to use must lie in 1..{count} for "
                        f"{network.ref}, got {upto}", option("upto"))
    return upto


def evaluate_layers(ws: Workspace, versions: list[LayerVersion], manifest: Manifest,
                    device: torch.device, split: str = "test") -> Accuracy:
    """Per-layer, FF and BP accuracy of a chain of layer versions on a split of a stream."""
    source = StreamBatches(ws.store, manifest, split, options=ws.stream_options)
    return evaluate(load_layers(ws, versions), source, device)


def evaluate_network(ws: Workspace, ref: str, dataset_name: str | None = None,
                     upto: int | None = None, device: str = "auto",
                     split: str = "test") -> tuple[NetworkVersion, Accuracy]:
    """Per-layer, FF and BP accuracy of a network (or of its first `upto` layers)."""
    network = ws.registry.resolve_network(ref)
    dataset = ws.registry.dataset(dataset_name or network.dataset)
    versions = ws.registry.network_layers(network)
    versions = versions[:check_upto(network, upto, len(versions))]
    check_shapes(dataset, versions)
    return network, evaluate_layers(ws, versions, dataset_stream(ws, dataset),
                                    resolve_device(device), split)


def load_network(ws: Workspace, ref: str, mode: str | None = None,
                upto: int | None = None) -> MFNet:
    """A network as a `torch.nn.Module` (goodness in its prediction mode). With `upto=K` only
    the first K blocks are read, so a network whose later layers are broken still answers."""
    network = ws.registry.resolve_network(ref)
    versions = ws.registry.network_layers(network)
    return MFNet(load_layers(ws, versions[:check_upto(network, upto, len(versions))]),
                 mode or network.mode)
