"""`repair`: retrain only the damaged layers of a network, on their intact upstream streams,
with their recorded spec, config and seed. Deterministic CPU training reproduces the original
tensors bit for bit, so the layers above stay valid; otherwise they are re-evaluated on the
new chain and retrained when their accuracy fell beyond the tolerance."""

from __future__ import annotations

from dataclasses import dataclass, field

from mfstore.compose import retrain
from mfstore.config import resolve_device
from mfstore.errors import ConfigError, SpecError
from mfstore.history import ProgressCallback
from mfstore.lineage import lineage_problems
from mfstore.network import network_layers, resolve_network
from mfstore.registry import DatasetRecord, LayerVersion, NetworkVersion
from mfstore.verify import layer_accuracy, verify
from mfstore.workspace import Workspace


@dataclass
class Repaired:
    old: LayerVersion
    new: LayerVersion

    @property
    def identical(self) -> bool:
        """The retrained tensors equal the original ones bit for bit."""
        return self.old.digest == self.new.digest


@dataclass
class RepairResult:
    network: NetworkVersion | None  # the new network version; None when nothing was damaged
    repaired: list[Repaired] = field(default_factory=list)
    retrained_downstream: list[LayerVersion] = field(default_factory=list)
    kept_downstream: list[str] = field(default_factory=list)


def _targets(ws: Workspace, ref: str, position: int | None, auto: bool, count: int,
             tolerance: float) -> list[int]:
    if position is not None:
        if not 1 <= position <= count:
            raise SpecError(f"--layer must lie in 1..{count} for {ref}")
        return [position]
    if not auto:
        raise ConfigError("say which layer to repair: --layer K, or --auto to repair every "
                          "layer that `mfstore verify` finds damaged")
    network = resolve_network(ws, ref)
    report = verify(ws, ref, network.dataset, tolerance)
    return [c.position for c in report.damaged if c.position is not None]


def repair(ws: Workspace, ref: str, position: int | None = None, auto: bool = False,
           tolerance: float = 0.02, device: str | None = None,
           callback: ProgressCallback | None = None) -> RepairResult:
    """Retrain the damaged layers of `ref` and register a new network version."""
    network = resolve_network(ws, ref)
    chain = network_layers(ws, network)
    targets = _targets(ws, ref, position, auto, len(chain), tolerance)
    if not targets:
        return RepairResult(None)
    dataset = ws.registry.dataset(network.dataset)
    result = RepairResult(None)
    for k in sorted(targets):
        old = chain[k - 1]
        new = retrain(ws, old, dataset, chain[:k - 1], callback, repairs=old.version,
                      note=f"repairs {old.ref}", device=device)
        ws.registry.set_layer_status(old.name, old.version, "damaged")
        chain[k - 1] = new
        result.repaired.append(Repaired(old, new))
        if not result.repaired[-1].identical:
            _recheck_downstream(ws, chain, k, set(targets), dataset, tolerance, device, callback,
                                result)
    remaining = lineage_problems(ws.registry, dataset, chain)
    note = f"{network.ref} repaired: " + ", ".join(
        f"{r.old.ref} → {r.new.ref}" + (" (bit-identical)" if r.identical else "")
        for r in result.repaired)
    result.network = ws.registry.add_network(network.name, [(v.name, v.version) for v in chain],
                                             network.mode, dataset.name,
                                             forced=bool(remaining), note=note)
    return result


def _recheck_downstream(ws: Workspace, chain: list[LayerVersion], k: int, targets: set[int],
                        dataset: DatasetRecord, tolerance: float, device: str | None,
                        callback: ProgressCallback | None, result: RepairResult) -> None:
    """After a repair that changed layer k's tensors: keep each later layer whose accuracy on
    the new chain holds, retrain those whose accuracy fell."""
    dev = resolve_device(device or "auto")
    for j in range(k, len(chain)):
        if j + 1 in targets:
            continue
        layer = chain[j]
        accuracy = layer_accuracy(ws, ws.load_block(layer), dataset, chain[:j], dev)
        recorded = layer.metrics.get("test_accuracy", 0.0)
        if recorded - accuracy > tolerance:
            chain[j] = retrain(ws, layer, dataset, chain[:j], callback,
                               note=f"retrained: its input changed when {chain[k - 1].ref} "
                                    "was repaired", device=device)
            result.retrained_downstream.append(chain[j])
        else:
            result.kept_downstream.append(layer.ref)
