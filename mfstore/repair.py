"""`repair`: mend what `verify` finds damaged, retraining as little as possible.

- A damaged layer is retrained alone, on its intact upstream stream, with its recorded spec,
  config and seed. Deterministic CPU training reproduces the original tensors bit for bit, so
  the layers above stay valid; otherwise they are re-evaluated on the new chain and retrained
  when their accuracy fell beyond the tolerance.
- A damaged derived stream is a cache: it is removed and written again from its upstream
  blocks (now, or when next needed if an upstream layer is itself being repaired).
- A damaged stream(0) is read again from the dataset's recorded source, which must still hold
  the same examples.

With a network, its layers and streams are mended and a new network version registered; with
none (`auto`), every damaged stream and layer version of the store, then a new version of
every network whose latest version names a damaged layer (its repaired versions in their
place, the layers above re-checked), so that no network is left broken.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mfstore.block import load_block
from mfstore.compose import retrain
from mfstore.errors import ConfigError, IntegrityError, MFStoreError, SpecError
from mfstore.fixes import Fix, RepairFix, option
from mfstore.history import ProgressCallback
from mfstore.importing import reimport
from mfstore.integrity import StreamCheck, VerifyReport, check_tolerance
from mfstore.lineage import lineage_problems, other_weights, retrain_fix
from mfstore.registry import DatasetRecord, LayerVersion, NetworkVersion
from mfstore.run_context import RunContext
from mfstore.stream_chain import chain_stream
from mfstore.usage import Snapshot, first_by_digest
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
    network: NetworkVersion | None  # the new network version; None when none was registered
    networks: list[NetworkVersion] = field(default_factory=list)  # every one registered
    repaired: list[Repaired] = field(default_factory=list)
    retrained_downstream: list[LayerVersion] = field(default_factory=list)
    kept_downstream: list[str] = field(default_factory=list)
    streams: list[str] = field(default_factory=list)  # ids of the streams rebuilt or dropped
    left: dict[str, MFStoreError] = field(default_factory=dict)  # not mended, and why

    @property
    def nothing(self) -> bool:
        return not (self.repaired or self.streams or self.left or self.networks)


def intact_by_digest(ws: Workspace) -> dict[str, LayerVersion]:
    """An intact (status ok) live version for every weights digest that has one."""
    out: dict[str, LayerVersion] = {}
    for digest, versions in Snapshot.read(ws.registry).by_digest().items():
        ok = [v for v in versions if v.status == "ok"]
        if ok:
            out[digest] = ok[0]
    return out


def repair_streams(ws: Workspace, damaged: list[StreamCheck], ctx: RunContext,
                   result: RepairResult) -> None:
    """Re-import damaged dataset streams; drop damaged derived streams and write them again
    where their upstream layers are intact. What cannot be mended goes in `result.left`."""
    datasets = ws.registry.datasets()
    records = {s.id: s for s in ws.registry.streams()}
    by_digest = intact_by_digest(ws)
    for check in damaged:
        roots = [d for d in datasets if d.stream_id == check.id]
        if roots:
            try:
                reimport(ws, roots[0])
            except MFStoreError as err:
                result.left[f"stream {check.id[:12]}"] = err
                continue
            result.streams.append(check.id)
            continue
        ws.store.delete(f"streams/{check.id}")
        ws.registry.delete_stream(check.id)
        result.streams.append(check.id)
        record = records.get(check.id)
        owners = [d for d in datasets if record and d.fingerprint == record.dataset_fingerprint]
        if record and owners and all(d in by_digest for d in record.chain):
            chain_stream(ws, owners[0], [by_digest[d] for d in record.chain], ctx)


def _targets(ws: Workspace, ref: str, position: int | None, auto: bool, count: int,
             report: VerifyReport | None) -> list[int]:
    if position is not None:
        if not 1 <= position <= count:
            raise SpecError(f"the layer to repair must lie in 1..{count} for {ref}, got "
                            f"{position}", option("layer"))
        return [position]
    assert report is not None
    return [c.position for c in report.damaged if c.position is not None]


@dataclass(frozen=True)
class RepairJob:
    """A repair, every argument checked (see `store_training.LayerJob`)."""

    ws: Workspace
    network: NetworkVersion | None  # None: the whole store
    position: int | None
    auto: bool
    tolerance: float
    device: str | None  # as given: None keeps each layer's recorded device
    ctx: RunContext | None  # the run on the device given (torchrun joined); None: as recorded

    def run(self, callback: ProgressCallback | None = None) -> RepairResult:
        ws, network, device, ctx = self.ws, self.network, self.device, self.ctx
        if network is None:
            return repair_store(ws, self.tolerance, ctx, callback)
        report = None
        result = RepairResult(None)
        if self.auto:
            report = verify(ws, network.ref, network.dataset, self.tolerance, device or "auto")
            repair_streams(ws, report.damaged_streams, ctx or RunContext.alone("auto"), result)
            if result.streams:  # accuracy can be checked now that the streams are whole again
                report = verify(ws, network.ref, network.dataset, self.tolerance,
                                device or "auto")
        chain = ws.registry.network_layers(network)
        targets = _targets(ws, network.ref, self.position, self.auto, len(chain), report)
        if targets:
            result.network = _repair_layers(ws, network, chain, targets, self.tolerance, ctx,
                                            callback, result)
            result.networks.append(result.network)
        return result


def plan_repair(ws: Workspace, ref: str | None = None, position: int | None = None,
                auto: bool = False, tolerance: float = 0.02,
                device: str | None = None) -> RepairJob:
    """Mend the damaged layers and streams of `ref` (or, with `auto` and no `ref`, of the
    whole store): checked and ready to run."""
    if position is None and not auto:
        raise ConfigError("say what to repair: a layer of a network, or everything verify "
                          "finds damaged", option("layer"), option("auto"))
    if position is not None and ref is None:
        raise ConfigError(f"say which network's layer {position} to repair: NET, NET@VERSION "
                          "or NET@ALIAS")
    check_tolerance(tolerance)
    ctx = None if device is None else RunContext.enter(device)
    network = None if ref is None else ws.registry.resolve_network(ref)
    if network is not None and position is not None:  # refused now rather than after verify
        _targets(ws, network.ref, position, auto, len(network.layers), None)
    return RepairJob(ws, network, position, auto, tolerance, device, ctx)


def repair(ws: Workspace, ref: str | None = None, position: int | None = None,
           auto: bool = False, tolerance: float = 0.02, device: str | None = None,
           callback: ProgressCallback | None = None) -> RepairResult:
    """`plan_repair`, then run it."""
    return plan_repair(ws, ref, position, auto, tolerance, device).run(callback)


def _repair_layers(ws: Workspace, network: NetworkVersion, chain: list[LayerVersion],
                   targets: list[int], tolerance: float, ctx: RunContext | None,
                   callback: ProgressCallback | None, result: RepairResult) -> NetworkVersion:
    dataset = ws.registry.dataset(network.dataset)
    for k in sorted(targets):
        old = chain[k - 1]
        new = retrain(ws, old, dataset, chain[:k - 1], callback, repairs=old.version,
                      note=f"repairs {old.ref}", ctx=ctx)
        ws.registry.set_layer_status(old.name, old.version, "damaged")
        chain[k - 1] = new
        result.repaired.append(Repaired(old, new))
        if not result.repaired[-1].identical:
            _recheck_downstream(ws, chain, k, set(targets), dataset, tolerance, ctx, callback,
                                result)
    return _register_mended(ws, network, chain, dataset, result.repaired)


def _register_mended(ws: Workspace, network: NetworkVersion, chain: list[LayerVersion],
                     dataset: DatasetRecord, repaired: list[Repaired]) -> NetworkVersion:
    """The next version of `network`: `chain`, its damaged layers replaced by `repaired`."""
    remaining = lineage_problems(ws.registry, dataset, chain)
    note = f"{network.ref} repaired: " + ", ".join(
        f"{r.old.ref} → {r.new.ref}" + (" (bit-identical)" if r.identical else "")
        for r in repaired)
    return ws.registry.add_network(network.name, [(v.name, v.version) for v in chain],
                                   network.mode, dataset.name, forced=bool(remaining),
                                   note=note)


def repair_store(ws: Workspace, tolerance: float = 0.02, ctx: RunContext | None = None,
                 callback: ProgressCallback | None = None) -> RepairResult:
    """Every damaged stream and layer version of the store (layers retrained on the chain
    their lineage records, input side first; in the run `ctx` when given, else each on its
    recorded device)."""
    report = verify(ws, None, None, tolerance, ctx.device.type if ctx else "auto")
    result = RepairResult(None)
    repair_streams(ws, report.damaged_streams, ctx or RunContext.alone("auto"), result)
    by_digest = intact_by_digest(ws)
    for check in sorted(report.damaged, key=lambda c: len(c.layer.signature.chain)):  # inputs first
        old = check.layer
        upstream = [by_digest.get(d) for d in old.signature.chain]
        if any(u is None for u in upstream):
            result.left[old.ref] = lost_upstream(ws, old, by_digest)
            continue
        dataset = ws.registry.dataset(old.dataset)
        new = retrain(ws, old, dataset, [u for u in upstream if u is not None], callback,
                      repairs=old.version, note=f"repairs {old.ref}", ctx=ctx)
        result.repaired.append(Repaired(old, new))
        by_digest.setdefault(new.digest, new)
    _mend_networks(ws, tolerance, ctx, callback, result)
    return result


def _repairing_versions(layers: list[LayerVersion]) -> dict[tuple[str, int], LayerVersion]:
    """(name, version) of a layer -> its newest intact version that repairs it."""
    out: dict[tuple[str, int], LayerVersion] = {}
    for v in sorted(layers, key=lambda v: v.version):
        if v.repairs is not None and v.status == "ok":
            out[(v.name, v.repairs)] = v
    return out


def _mend_networks(ws: Workspace, tolerance: float, ctx: RunContext | None,
                   callback: ProgressCallback | None, result: RepairResult) -> None:
    """A new version of every network whose latest version names a damaged layer: each
    damaged layer replaced by the version that repairs it (following repairs of repairs),
    the layers above kept or retrained as `repair NET --layer K` does; a network that
    cannot be mended goes in `result.left`, naming the layer."""
    snap = Snapshot.read(ws.registry)
    repairs = _repairing_versions(snap.layers)
    latest: dict[str, NetworkVersion] = {}
    for net in snap.networks:
        if net.name not in latest or net.version > latest[net.name].version:
            latest[net.name] = net
    for network in sorted(latest.values(), key=lambda n: n.name):
        chain = ws.registry.network_layers(network)
        targets = [k for k, v in enumerate(chain, 1) if v.status == "damaged"]
        if not targets:
            continue
        mended: list[Repaired] = []
        for k in targets:
            old, new = chain[k - 1], chain[k - 1]
            for _ in range(len(snap.layers)):  # a repair that was itself repaired, and so on
                if new.status != "damaged" or (new.name, new.version) not in repairs:
                    break
                new = repairs[(new.name, new.version)]
            if new.status == "damaged":
                why = ("was not repaired (said above)" if old.ref in result.left
                       else "is damaged and was not repaired")
                result.left[network.ref] = IntegrityError(f"its layer {k} {old.ref} {why}")
                break
            chain[k - 1] = new
            mended.append(Repaired(old, new))
        else:
            dataset = ws.registry.dataset(network.dataset)
            for k, r in zip(targets, mended, strict=True):
                if not r.identical:
                    _recheck_downstream(ws, chain, k, set(targets), dataset, tolerance, ctx,
                                        callback, result)
            result.networks.append(_register_mended(ws, network, chain, dataset, mended))


def lost_upstream(ws: Workspace, layer: LayerVersion,
                  by_digest: dict[str, LayerVersion]) -> IntegrityError:
    """Why `layer` cannot be retrained: a layer it was trained over has no intact version left.
    While the registry still holds the version that computed it (its block lost or damaged)
    over an intact chain, the way out is that version's recipe on that chain. Where that gives
    its weights back bit for bit (one layer trained alone, on the CPU), repairing again then
    mends `layer`; otherwise `layer` itself is retrained over the new version."""
    why = "(that layer was retrained with other weights, or lost)"
    missing = next(d for d in layer.signature.chain if d not in by_digest)
    lost = first_by_digest(ws.registry.layers()).get(missing)
    if lost is None or any(d not in by_digest for d in lost.signature.chain):
        return IntegrityError(f"no intact version of a layer it was trained over is left {why}")
    dataset = ws.registry.dataset(lost.dataset)
    then: Fix = RepairFix(auto=True)
    if other_weights(lost) is not None:
        coming = f"{lost.name}@{max(v.version for v in ws.registry.layers(lost.name)) + 1}"
        on = [coming if d == missing else by_digest[d].ref if d in by_digest else None
              for d in layer.signature.chain]
        if None in on:
            return IntegrityError(f"no intact version of a layer it was trained over is left "
                                  f"{why}")
        then = retrain_fix(layer, dataset, [ref for ref in on if ref is not None])
    fix = retrain_fix(lost, dataset, [by_digest[d].ref for d in lost.signature.chain], then)
    return IntegrityError(f"no intact version of {lost.ref}, which it was trained over, is "
                          f"left {why}", fix)


def _recheck_downstream(ws: Workspace, chain: list[LayerVersion], k: int, targets: set[int],
                        dataset: DatasetRecord, tolerance: float, ctx: RunContext | None,
                        callback: ProgressCallback | None, result: RepairResult) -> None:
    """After a repair that changed layer k's tensors: keep each later layer whose accuracy on
    the new chain holds, retrain those whose accuracy fell."""
    measure = ctx or RunContext.alone("auto")
    for j in range(k, len(chain)):
        if j + 1 in targets:
            continue
        layer = chain[j]
        accuracy = layer_accuracy(ws, load_block(ws, layer), dataset, chain[:j], measure)
        recorded = layer.metrics.get("test_accuracy", 0.0)
        if recorded - accuracy > tolerance:
            chain[j] = retrain(ws, layer, dataset, chain[:j], callback,
                               note=f"retrained: its input changed when {chain[k - 1].ref} "
                                    "was repaired", ctx=ctx)
            result.retrained_downstream.append(chain[j])
        else:
            result.kept_downstream.append(layer.ref)
