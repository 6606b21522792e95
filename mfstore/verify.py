"""`verify`: is every block readable, unchanged (sha256) and finite, and does every layer still
reach the accuracy recorded when it was trained? Damaged versions are marked in the registry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from mfstore.block import LayerBlock
from mfstore.config import resolve_device
from mfstore.errors import IntegrityError, StoreError
from mfstore.evaluation import stack_metrics
from mfstore.lineage import retrain_command
from mfstore.materialize import chain_stream
from mfstore.network import network_layers, resolve_network
from mfstore.registry import DatasetRecord, LayerVersion, NetworkVersion
from mfstore.store import sha256
from mfstore.stream import StreamBatches
from mfstore.workspace import Workspace, block_path


@dataclass
class LayerCheck:
    layer: LayerVersion
    position: int | None  # 1-based place in the verified network
    problems: list[str] = field(default_factory=list)
    accuracy: float | None = None  # measured now, with --data
    recorded: float | None = None  # recorded at training time
    note: str = ""
    repair: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class VerifyReport:
    network: NetworkVersion | None
    checks: list[LayerCheck]
    dataset: str | None

    @property
    def damaged(self) -> list[LayerCheck]:
        return [c for c in self.checks if not c.ok]


def _integrity(ws: Workspace, layer: LayerVersion) -> tuple[list[str], LayerBlock | None]:
    """Problems with the block file, and the block when its bytes still parse."""
    path = block_path(layer.block_sha256)
    try:
        data = ws.store.get(path)
    except (IntegrityError, StoreError):
        return [f"its block file {ws.store.url_of(path)} is missing or unreadable"], None
    problems = []
    if sha256(data) != layer.block_sha256:
        problems.append(f"its block file {ws.store.url_of(path)} does not match its sha256 "
                        "(changed, flipped or truncated bytes)")
    try:
        block = LayerBlock.from_bytes(data, name=ws.store.url_of(path))
    except IntegrityError:
        return [*problems, "its block file is not a readable layer block"], None
    bad = [name for name, t in block.tensors.items() if not torch.isfinite(t).all()]
    if bad:
        problems.append(f"non-finite values in {', '.join(bad)}")
    return problems, block


def layer_accuracy(ws: Workspace, block: LayerBlock, dataset: DatasetRecord,
                   upstream: Sequence[LayerVersion], device: torch.device) -> float:
    """Test accuracy of one layer on its own, fed by the stream of `upstream`."""
    manifest = chain_stream(ws, dataset, upstream, str(device))
    source = StreamBatches(ws.store, manifest, "test", 1, options=ws.stream_options)
    return stack_metrics([block.to_layer()], source, device).accuracies[0]


def _repair_hint(ws: Workspace, layer: LayerVersion, network: NetworkVersion | None,
                 position: int | None) -> str:
    if network is not None and position is not None:
        return f"mfstore repair {network.ref} --layer {position}"
    pair = (layer.name, layer.version)
    for net in ws.registry.networks():
        if net.status != "deleted" and pair in net.layers:
            return f"mfstore repair {net.ref} --layer {net.layers.index(pair) + 1}"
    return retrain_command(layer, layer.dataset, [])


def _scope(ws: Workspace, ref: str | None) -> tuple[NetworkVersion | None, list[LayerVersion]]:
    if ref is not None:
        network = resolve_network(ws, ref)
        return network, network_layers(ws, network)
    return None, [v for v in ws.registry.layers() if v.status != "deleted"]


def verify(ws: Workspace, ref: str | None = None, dataset_name: str | None = None,
           tolerance: float = 0.02, device: str = "auto") -> VerifyReport:
    """Check the blocks of network `ref` (or of every live layer version); with a dataset,
    compare each layer's test accuracy on it with the accuracy recorded at training time."""
    network, layers = _scope(ws, ref)
    dataset = ws.registry.dataset(dataset_name) if dataset_name else None
    by_digest = {v.digest: v for v in ws.registry.layers() if v.status != "deleted"}
    checks: list[LayerCheck] = []
    intact: dict[str, bool] = {}  # digest -> block intact, for the layers checked so far
    for i, layer in enumerate(layers):
        check = LayerCheck(layer, i + 1 if network else None)
        check.problems, block = _integrity(ws, layer)
        intact[layer.digest] = intact.get(layer.digest, False) or not check.problems
        if dataset is not None and block is not None:
            _check_accuracy(ws, check, block, dataset, by_digest, intact, tolerance,
                            resolve_device(device))
        if not check.ok:
            check.repair = _repair_hint(ws, layer, network, check.position)
        checks.append(check)
    for check in checks:
        status = "ok" if check.ok else "damaged"
        if check.layer.status != status:
            ws.registry.set_layer_status(check.layer.name, check.layer.version, status)
    return VerifyReport(network, checks, dataset.name if dataset else None)


def _check_accuracy(ws: Workspace, check: LayerCheck, block: LayerBlock,
                    dataset: DatasetRecord, by_digest: dict[str, LayerVersion],
                    intact: dict[str, bool], tolerance: float, device: torch.device) -> None:
    chain = check.layer.signature.chain
    if not all(d in by_digest and intact.get(d, True) for d in chain):
        check.note = "accuracy not checked: an upstream layer is damaged or unknown"
        return
    upstream = [by_digest[d] for d in chain]
    check.accuracy = layer_accuracy(ws, block, dataset, upstream, device)
    check.recorded = check.layer.metrics.get("test_accuracy")
    if check.recorded is not None and check.recorded - check.accuracy > tolerance:
        check.problems.append(
            f"test accuracy {check.accuracy:.2%} against {check.recorded:.2%} recorded at "
            f"training (a drop of {100 * (check.recorded - check.accuracy):.1f} points, more "
            f"than the {100 * tolerance:.1f} tolerated)")
