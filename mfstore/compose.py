"""Networks from layer versions: compose, extend with a new layer, swap one layer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mfstore.config import TrainConfig
from mfstore.errors import ConfigError, LineageError, SpecError
from mfstore.fixes import option
from mfstore.history import ProgressCallback
from mfstore.lineage import Mismatch, check_shapes, lineage_problems, refuse
from mfstore.modules import MODES
from mfstore.names import check_name
from mfstore.registry import DatasetRecord, LayerVersion, NetworkVersion, parse_ref
from mfstore.run_context import RunContext
from mfstore.spec import LayerPlan
from mfstore.store_training import LayerJob, resolve_layers, train_registered_layer
from mfstore.verify import require_intact
from mfstore.workspace import Workspace


def _refs(layers: Sequence[LayerVersion]) -> list[tuple[str, int]]:
    return [(layer.name, layer.version) for layer in layers]


def _forced_note(problems: list[Mismatch]) -> str:
    return "forced despite: " + "; ".join(p.message for p in problems)


def compose(ws: Workspace, name: str, refs: Sequence[str], mode: str = "bp",
            force: bool = False) -> NetworkVersion:
    """Register network `name` version N+1 from `refs` (LAYER@VERSION or LAYER@ALIAS).
    Shapes must fit; lineage must fit unless `force`, which is recorded."""
    check_name(name, "network")
    if mode not in MODES:
        raise ConfigError(f"unknown prediction mode {mode!r}; choose bp or ff")
    if not refs:
        raise ConfigError("a network needs at least one layer: LAYER@VERSION …")
    layers = resolve_layers(ws, refs)
    dataset = ws.registry.dataset(layers[0].dataset)
    check_shapes(dataset, layers)
    problems = lineage_problems(ws.registry, dataset, layers)
    if problems and not force:
        raise refuse(problems[0], "to compose it anyway")
    require_intact(ws, layers)
    return ws.registry.add_network(name, _refs(layers), mode, dataset.name,
                                   forced=bool(problems),
                                   note=_forced_note(problems) if problems else "composed")


@dataclass
class Extension:
    network: NetworkVersion
    layer: LayerVersion


@dataclass(frozen=True)
class ExtensionJob:
    """A network's extension, every argument checked (see `store_training.LayerJob`)."""

    network: NetworkVersion
    layer: LayerJob

    def run(self, callback: ProgressCallback | None = None) -> Extension:
        """Train the new layer, then register the longer network."""
        layer, ws = self.layer.run(callback), self.layer.ws
        extended = ws.registry.add_network(
            self.network.name, _refs([*self.layer.upstream, layer]), self.network.mode,
            self.layer.dataset.name, forced=self.network.forced,
            note=f"{self.network.ref} extended with {layer.ref}")
        return Extension(extended, layer)


def plan_extension(ws: Workspace, ref: str, plan: LayerPlan,
                   config: TrainConfig) -> ExtensionJob:
    """One new layer on the network's output stream, checked and ready to train; the new
    network version keeps the very same blocks for every earlier layer."""
    network = ws.registry.resolve_network(ref)
    layers = ws.registry.network_layers(network)
    require_intact(ws, layers)
    dataset = ws.registry.dataset(network.dataset)
    spec = plan.resolve(layers[-1].spec.out_shape, dataset.classes)
    name = check_name(f"{network.name}.l{len(layers) + 1}", "layer")
    ctx = RunContext.enter(config.device)
    return ExtensionJob(network, LayerJob(ws, name, dataset, layers, spec, config, ctx,
                                          f"extends {network.ref}"))


def extend(ws: Workspace, ref: str, plan: LayerPlan, config: TrainConfig,
           callback: ProgressCallback | None = None) -> Extension:
    """`plan_extension`, then run it."""
    return plan_extension(ws, ref, plan, config).run(callback)


def retrain(ws: Workspace, layer: LayerVersion, dataset: DatasetRecord,
            upstream: Sequence[LayerVersion], callback: ProgressCallback | None = None,
            repairs: int | None = None, note: str = "",
            ctx: RunContext | None = None) -> LayerVersion:
    """A new version of `layer` trained on `upstream` with its recorded spec, config and seed
    (in the run `ctx` instead of on the recorded device, when given)."""
    recorded = TrainConfig.from_dict(layer.config)
    config = recorded if ctx is None else TrainConfig.from_dict(
        {**layer.config, "device": ctx.device.type})
    return train_registered_layer(ws, layer.name, dataset, upstream, layer.spec, config,
                                  ctx or RunContext.enter(recorded.device), callback,
                                  repairs=repairs, note=note)


@dataclass
class Swap:
    network: NetworkVersion
    stale: list[str] = field(default_factory=list)  # downstream layers whose lineage broke
    retrained: list[LayerVersion] = field(default_factory=list)


def swap(ws: Workspace, ref: str, position: int, with_ref: str,
         retrain_downstream: bool = False, force: bool = False,
         callback: ProgressCallback | None = None) -> Swap:
    """Replace layer `position` (1-based) by another version. A replacement that does not fit
    its upstream is refused unless `force`; downstream layers whose lineage no longer fits are
    listed and, with `retrain_downstream`, retrained in order."""
    network = ws.registry.resolve_network(ref)
    chain = ws.registry.network_layers(network)
    if not 1 <= position <= len(chain):
        raise SpecError(f"the layer to swap must lie in 1..{len(chain)} for {network.ref}, got "
                        f"{position}", option("layer"))
    chain[position - 1] = ws.registry.layer(*parse_ref(with_ref))
    dataset = ws.registry.dataset(network.dataset)
    check_shapes(dataset, chain)
    problems = lineage_problems(ws.registry, dataset, chain)
    own = [p for p in problems if p.position < position]
    if own and not force:
        raise refuse(own[0], "to swap it in anyway")
    require_intact(ws, chain)
    result = Swap(network, stale=[chain[p.position].ref for p in problems
                                  if p.position >= position])
    if result.stale and retrain_downstream:
        for k in range(position, len(chain)):
            if any(p.position == k
                   for p in lineage_problems(ws.registry, dataset, chain[:k + 1])):
                chain[k] = retrain(ws, chain[k], dataset, chain[:k], callback,
                                   note=f"retrained after swapping layer {position} of "
                                        f"{network.ref}")
                result.retrained.append(chain[k])
    elif result.stale and not force:
        raise LineageError(
            f"swapping in {chain[position - 1].ref} leaves downstream layers trained on another "
            f"chain: {', '.join(result.stale)}", option("retrain_downstream", "to retrain them"),
            option("force", "to keep them"))
    remaining = lineage_problems(ws.registry, dataset, chain)
    result.network = ws.registry.add_network(
        network.name, _refs(chain), network.mode, dataset.name, forced=bool(remaining),
        note=(_forced_note(remaining) if remaining else
              f"{network.ref} with layer {position} swapped for {chain[position - 1].ref}"))
    return result
