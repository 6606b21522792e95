"""Training through the store: one layer version at a time on the stream its upstream chain
produces (`train_layer_version`), or a whole network (`train_network`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mfstore.baseline import train_backprop
from mfstore.block import InputSignature, LayerBlock
from mfstore.config import TrainConfig, resolve_device
from mfstore.errors import ConfigError
from mfstore.evaluation import evaluate, stack_metrics
from mfstore.experiment import BASELINES, BaselineResult
from mfstore.history import LayerHistory, ProgressCallback
from mfstore.lineage import check_lineage, check_shapes
from mfstore.materialize import chain_stream, next_stream, split_sources
from mfstore.modules import MFLayer, build_layers
from mfstore.names import check_name
from mfstore.registry import DatasetRecord, LayerVersion, NetworkVersion, parse_ref
from mfstore.spec import LayerPlan, LayerSpec, build_specs, parse_arch
from mfstore.stream import StreamBatches, release_freed_memory
from mfstore.training import SCHEDULES, train_layer, train_simultaneous
from mfstore.verify import require_intact
from mfstore.workspace import Workspace


def resolve_layers(ws: Workspace, refs: Sequence[str]) -> list[LayerVersion]:
    return [ws.registry.layer(*parse_ref(ref)) for ref in refs]


def layer_metrics(layers: Sequence[MFLayer], sources: dict[str, StreamBatches],
                  device: torch.device) -> list[dict[str, float]]:
    """Each layer's own validation and test loss and accuracy (layer-k mode)."""
    out: list[dict[str, float]] = [{} for _ in layers]
    for split in ("val", "test"):
        m = stack_metrics(layers, sources[split], device)
        for k in range(len(layers)):
            out[k][f"{split}_accuracy"] = m.accuracies[k]
            out[k][f"{split}_loss"] = m.losses[k]
    return out


def register_layer(ws: Workspace, name: str, layer: MFLayer, dataset: DatasetRecord,
                   upstream: Sequence[LayerVersion] | Sequence[str], config: TrainConfig,
                   metrics: dict[str, float], history: LayerHistory,
                   repairs: int | None = None, note: str = "") -> LayerVersion:
    """Store the block durably, then register the next version of `name`."""
    chain = tuple(u if isinstance(u, str) else u.digest for u in upstream)
    signature = InputSignature(layer.spec.in_shape, chain, dataset.fingerprint)
    block = LayerBlock.from_layer(layer, signature, config=config.to_dict(), metrics=metrics,
                                  history=history.to_dict())
    sha = ws.put_block(block)
    return ws.registry.add_layer(name, sha, block.digest, layer.spec, signature, dataset.name,
                                 config.to_dict(), metrics, repairs=repairs, note=note)


def fit_layer(ws: Workspace, name: str, dataset: DatasetRecord,
              upstream: Sequence[LayerVersion], spec: LayerSpec, config: TrainConfig,
              callback: ProgressCallback | None = None, repairs: int | None = None,
              note: str = "") -> LayerVersion:
    """Train `spec` on the stream of `upstream`, register it, and write its output stream."""
    source = chain_stream(ws, dataset, upstream, config.device)
    sources = split_sources(ws, source, config)
    (layer,) = build_layers([spec], config.seed, first_index=len(upstream))
    history = train_layer(layer, sources["train"], sources["val"], config,
                          index=len(upstream), callback=callback)
    (metrics,) = layer_metrics([layer], sources, resolve_device(config.device))
    version = register_layer(ws, name, layer, dataset, upstream, config, metrics, history,
                             repairs, note)
    del sources  # splits held in memory go before the output stream is written
    next_stream(ws, dataset, source, version, config.device, trained=layer)
    release_freed_memory()
    return version


def train_layer_version(ws: Workspace, name: str, dataset_name: str, on: Sequence[str],
                        plan: LayerPlan, config: TrainConfig,
                        callback: ProgressCallback | None = None,
                        force: bool = False) -> LayerVersion:
    """`mfstore train-layer`: the next version of `name`, on the outputs of `on`."""
    check_name(name, "layer")
    dataset = ws.registry.dataset(dataset_name)
    upstream = resolve_layers(ws, on)
    check_shapes(dataset, upstream)
    if not force:
        check_lineage(ws.registry, dataset, upstream)
    require_intact(ws, upstream)
    in_shape = upstream[-1].spec.out_shape if upstream else tuple(dataset.input_shape)
    spec = plan.resolve(in_shape, dataset.classes)
    return fit_layer(ws, name, dataset, upstream, spec, config, callback,
                     note="forced onto a foreign chain" if force else "")


@dataclass
class NetworkTraining:
    network: NetworkVersion
    layers: list[LayerVersion]
    baseline: BaselineResult | None = None


def train_baseline(ws: Workspace, dataset: DatasetRecord, specs: Sequence[LayerSpec],
                   config: TrainConfig,
                   callback: ProgressCallback | None = None) -> BaselineResult:
    """Backprop on the same layers, data order, optimizer and seed (kept in memory only)."""
    sources = split_sources(ws, chain_stream(ws, dataset, [], config.device), config)
    layers = build_layers(specs, config.seed)
    history = train_backprop(layers, sources["train"], sources["val"], config,
                             callback=callback)
    device = resolve_device(config.device)
    return BaselineResult(layers, history, evaluate(layers, sources["test"], device),
                          evaluate(layers, sources["val"], device))


def train_network(ws: Workspace, net: str, dataset_name: str, arch: str | Sequence[LayerPlan],
                  config: TrainConfig, schedule: str = "sequential", mode: str = "bp",
                  callback: ProgressCallback | None = None,
                  baseline: str = "none") -> NetworkTraining:
    """Train every layer through the store and register them as layers `NET.l1`, `NET.l2`, …
    and the network `NET`. Sequential = one `train-layer` after another."""
    check_name(net, "network")
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {schedule!r}; choose sequential or simultaneous")
    if mode not in ("bp", "ff"):
        raise ConfigError(f"unknown prediction mode {mode!r}; choose bp or ff")
    if baseline not in BASELINES:
        raise ConfigError(f"unknown baseline {baseline!r}; choose bp or none")
    dataset = ws.registry.dataset(dataset_name)
    plans = parse_arch(arch) if isinstance(arch, str) else list(arch)
    specs = build_specs(plans, dataset.input_shape, dataset.classes)
    if schedule == "sequential":
        versions: list[LayerVersion] = []
        for k, spec in enumerate(specs):
            versions.append(fit_layer(ws, f"{net}.l{k + 1}", dataset, versions, spec, config,
                                      callback))
    else:
        versions = _train_simultaneously(ws, net, dataset, specs, config, callback)
    network = ws.registry.add_network(net, [(v.name, v.version) for v in versions], mode,
                                      dataset.name, note=f"trained {schedule}")
    result = NetworkTraining(network, versions)
    if baseline == "bp":
        result.baseline = train_baseline(ws, dataset, specs, config, callback)
    return result


def _train_simultaneously(ws: Workspace, net: str, dataset: DatasetRecord,
                          specs: Sequence[LayerSpec], config: TrainConfig,
                          callback: ProgressCallback | None) -> list[LayerVersion]:
    sources = split_sources(ws, chain_stream(ws, dataset, [], config.device), config)
    layers = build_layers(specs, config.seed)
    histories = train_simultaneous(layers, sources["train"], sources["val"], config,
                                   callback=callback)
    metrics = layer_metrics(layers, sources, resolve_device(config.device))
    digests: list[str] = []
    versions = []
    for k, layer in enumerate(layers):
        version = register_layer(ws, f"{net}.l{k + 1}", layer, dataset, list(digests), config,
                                 metrics[k], histories[k], note="trained simultaneous")
        digests.append(version.digest)
        versions.append(version)
    return versions
