"""`verify`: is every block readable, unchanged (sha256) and finite, is every stream a network
depends on complete and unchanged, and does every layer still reach the accuracy recorded when
it was trained? Damaged layer versions and streams are marked in the registry. Over the whole
store, every network version that names a damaged layer is reported too (unless a newer intact
version replaces it and no alias still names it)."""

from __future__ import annotations

from collections.abc import Sequence

from mfstore.block import LayerBlock
from mfstore.errors import IntegrityError
from mfstore.evaluation import stack_metrics
from mfstore.fixes import Fix, RepairFix
from mfstore.integrity import (
    LayerCheck,
    StreamCheck,
    VerifyReport,
    block_problems,
    check_streams,
    check_tolerance,
    network_checks,
    stored_problems,
)
from mfstore.manifest import stream_id
from mfstore.registry import DatasetRecord, LayerVersion, NetworkVersion
from mfstore.run_context import RunContext
from mfstore.stream import StreamBatches
from mfstore.stream_chain import chain_stream
from mfstore.usage import Snapshot, first_by_digest
from mfstore.workspace import Workspace


def layer_accuracy(ws: Workspace, block: LayerBlock, dataset: DatasetRecord,
                   upstream: Sequence[LayerVersion], ctx: RunContext) -> float:
    """Test accuracy of one layer on its own, fed by the stream of `upstream`."""
    manifest = chain_stream(ws, dataset, upstream, ctx)
    source = StreamBatches(ws.store, manifest, "test", options=ws.stream_options)
    return stack_metrics([block.to_layer()], source, ctx).accuracies[0]


def _layer_fix(snap: Snapshot, layer: LayerVersion, network: NetworkVersion | None,
               position: int | None) -> Fix:
    if network is not None and position is not None:
        return RepairFix(network.ref, position)
    pair = (layer.name, layer.version)
    for net in snap.networks:
        if pair in net.layers:
            return RepairFix(net.ref, net.layers.index(pair) + 1)
    return RepairFix(auto=True)


def _scope(ws: Workspace, ref: str | None) -> tuple[NetworkVersion | None, list[LayerVersion]]:
    if ref is not None:
        network = ws.registry.resolve_network(ref)
        return network, ws.registry.network_layers(network)
    return None, [v for v in ws.registry.layers() if v.status != "deleted"]


def verify(ws: Workspace, ref: str | None = None, dataset_name: str | None = None,
           tolerance: float = 0.02, device: str = "auto",
           streams: bool = True) -> VerifyReport:
    """Check the blocks of network `ref` (or of every live layer version) and, with `streams`,
    the streams they depend on; with a dataset, compare each layer's test accuracy on it with
    the accuracy recorded at training time."""
    check_tolerance(tolerance)
    ctx = RunContext.alone(device)  # verifying: this process, whatever launched it
    ws.store  # noqa: B018 - a store that is not there is an error, even with nothing to check
    network, layers = _scope(ws, ref)
    dataset = ws.registry.dataset(dataset_name) if dataset_name else None
    snap = Snapshot.read(ws.registry)
    by_digest = first_by_digest(snap.layers)
    stream_checks = check_streams(ws, network, layers) if streams else []
    broken = {s.id for s in stream_checks if not s.ok}
    repaired_by = {(v.name, v.repairs): v.ref for v in snap.layers if v.repairs is not None}
    checks: list[LayerCheck] = []
    intact: dict[str, bool] = {}  # digest -> block intact, for the layers checked so far
    for i, layer in enumerate(layers):
        check = LayerCheck(layer, i + 1 if network else None,
                           repaired_by=repaired_by.get((layer.name, layer.version)))
        stored = ws.read_block(layer)
        check.problems = stored_problems(ws, layer, stored)
        intact[layer.digest] = intact.get(layer.digest, False) or not check.problems
        if dataset is not None and stored.data is not None and stored.header is not None:
            block = LayerBlock.from_bytes(stored.data, layer.ref)
            _check_accuracy(ws, check, block, dataset, by_digest, intact, broken, tolerance,
                            ctx)
        if not check.ok and check.repaired_by is None:
            check.fixes.append(_layer_fix(snap, layer, network, check.position))
        checks.append(check)
    _record(ws, checks, stream_checks)
    networks = [] if network is not None else network_checks(
        snap.networks, checks, ws.registry.all_aliases("network"))
    return VerifyReport(network, checks, dataset.name if dataset else None, stream_checks,
                        networks)


def _record(ws: Workspace, checks: list[LayerCheck], streams: list[StreamCheck]) -> None:
    for check in checks:
        status = "ok" if check.ok else "damaged"
        if check.layer.status != status:
            ws.registry.set_layer_status(check.layer.name, check.layer.version, status)
    for stream in streams:
        ws.registry.set_stream_status(stream.id, "ok" if stream.ok else "damaged")


def _check_accuracy(ws: Workspace, check: LayerCheck, block: LayerBlock, dataset: DatasetRecord,
                    by_digest: dict[str, LayerVersion], intact: dict[str, bool],
                    broken: set[str], tolerance: float, ctx: RunContext) -> None:
    chain = check.layer.signature.chain
    if not all(d in by_digest and intact.get(d, True) for d in chain):
        check.note = "accuracy not checked: an upstream layer is damaged or unknown"
        return
    upstream = [by_digest[d] for d in chain]
    if any(stream_id(dataset.fingerprint, chain[:k]) in broken for k in range(len(chain) + 1)):
        check.note = "accuracy not checked: its input stream is damaged"
        return
    check.accuracy = layer_accuracy(ws, block, dataset, upstream, ctx)
    check.recorded = check.layer.metrics.get("test_accuracy")
    if check.recorded is not None and check.recorded - check.accuracy > tolerance:
        check.problems.append(
            f"test accuracy {check.accuracy:.2%} against {check.recorded:.2%} recorded at "
            f"training (a drop of {100 * (check.recorded - check.accuracy):.1f} points, more "
            f"than the {100 * tolerance:.1f} tolerated)")


def require_intact(ws: Workspace, layers: Sequence[LayerVersion]) -> None:
    """Refuse to build on a layer marked damaged or whose block is damaged now (marked so)."""
    snap = Snapshot.read(ws.registry)
    for layer in layers:
        problems = ["it is marked damaged"] if layer.status == "damaged" else (
            block_problems(ws, layer))
        if problems:
            if layer.status != "damaged":
                ws.registry.set_layer_status(layer.name, layer.version, "damaged")
            raise IntegrityError(f"layer {layer.ref} is damaged ({'; '.join(problems)}); "
                                 "nothing was built on it",
                                 _layer_fix(snap, layer, None, None))
