"""Training through the store: the one training path (`stack.train_stack`) on the streams of
the store, every trained layer registered as soon as it is trained (its block stored first).

- `train_registered_layer`: one new version of a layer on the stream its upstream chain
  makes (`mfstore train-layer`, and `extend`, `swap` and `repair` retraining a layer);
- `train_network`: every layer of an architecture, registered as `NET.l1, NET.l2, …`, and
  the network `NET`, with the baselines (BP, FA, DFA, FF) beside it when asked.

Streams are written when a layer is trained on them: the last layer's output is never
written unless a later command trains on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mfstore.baseline import BaselineResult, algorithms, parse_baselines, train_baselines
from mfstore.batches import WHOLE
from mfstore.block import LayerBlock, layer_tensors, store_block, weights_digest
from mfstore.block_header import InputSignature
from mfstore.checkpoints import Checkpoint, job_key
from mfstore.config import STORE_SCHEDULE, TrainConfig, TrainingRun
from mfstore.errors import ConfigError
from mfstore.fixes import option
from mfstore.history import ProgressCallback
from mfstore.importing import registered_dataset
from mfstore.lineage import check_lineage, check_shapes
from mfstore.modules import build_layers, check_mode
from mfstore.names import check_name
from mfstore.pipeline import check_pipeline, train_pipelined
from mfstore.registry import DatasetRecord, LayerVersion, NetworkVersion, parse_ref
from mfstore.run_context import RunContext
from mfstore.spec import LayerPlan, LayerSpec, build_specs, parse_arch
from mfstore.stack import Trained, check_schedule, train_stack
from mfstore.stream_chain import StreamInputs
from mfstore.verify import require_intact
from mfstore.workspace import Workspace


def resolve_layers(ws: Workspace, refs: Sequence[str]) -> list[LayerVersion]:
    return [ws.registry.layer(*parse_ref(ref)) for ref in refs]


def training_run(schedule: str, ctx: RunContext) -> TrainingRun:
    """How this run trains: `schedule` (or layer-parallel), its processes, its device."""
    return TrainingRun(schedule, ctx.processes, ctx.device.type)


def register(ws: Workspace, ctx: RunContext, name: str, trained: Trained, dataset: DatasetRecord,
             chain: Sequence[str], config: TrainConfig, run: TrainingRun,
             repairs: int | None = None, note: str = "") -> LayerVersion:
    """Store the block durably, then register the next version of `name`. With several
    processes (which hold the same layer), rank 0 alone writes and tells the others."""
    def write() -> LayerVersion:
        layer = trained.layer
        signature = InputSignature(layer.spec.in_shape, tuple(chain), dataset.fingerprint)
        block = LayerBlock.from_layer(layer, signature, config=config.to_dict(),
                                      metrics=trained.metrics,
                                      history=trained.history.to_dict(), run=run.to_dict())
        sha = store_block(ws, block)
        return ws.registry.add_layer(name, sha, block.digest, layer.spec, signature,
                                     dataset.name, config.to_dict(), trained.metrics,
                                     repairs=repairs, note=note, run=run)
    return ctx.on_main(write)


def train_registered_layer(ws: Workspace, name: str, dataset: DatasetRecord,
                           upstream: Sequence[LayerVersion], spec: LayerSpec,
                           config: TrainConfig, ctx: RunContext,
                           callback: ProgressCallback | None = None,
                           repairs: int | None = None, note: str = "") -> LayerVersion:
    """Train `spec` on the stream of `upstream` and register it as the next version of
    `name`, on the device and processes of `ctx`."""
    inputs = StreamInputs.of_chain(ws, dataset, upstream, config, ctx)
    (layer,) = build_layers([spec], config.seed, first_index=len(upstream),
                            batch_size=config.batch_size)
    chain = [u.digest for u in upstream]
    key = job_key("layer", name=name, dataset=dataset.fingerprint, chain=chain,
                  spec=spec.to_dict(), config=config.to_dict(), processes=ctx.processes)
    registered: list[LayerVersion] = []
    train_stack([layer], inputs, config, ctx, schedule="sequential", first_index=len(upstream),
                callback=callback, checkpoint=Checkpoint(ws, key, ctx),
                on_trained=lambda trained: registered.append(register(
                    ws, ctx, name, trained, dataset, chain, config,
                    training_run("sequential", ctx), repairs, note)))
    return registered[0]


@dataclass(frozen=True)
class LayerJob:
    """One layer's training, every argument checked: what `train-layer` runs. A caller may
    do what must happen before training (reach a tracking server, say) between planning and
    running it."""

    ws: Workspace
    name: str
    dataset: DatasetRecord
    upstream: list[LayerVersion]
    spec: LayerSpec
    config: TrainConfig
    ctx: RunContext
    note: str

    def run(self, callback: ProgressCallback | None = None) -> LayerVersion:
        return train_registered_layer(self.ws, self.name, self.dataset, self.upstream,
                                      self.spec, self.config, self.ctx, callback,
                                      note=self.note)


def plan_layer(ws: Workspace, name: str, dataset_name: str, on: Sequence[str],
               plan: LayerPlan, config: TrainConfig, force: bool = False) -> LayerJob:
    """The next version of `name`, on the outputs of the chain `on`, checked and ready to
    train (`force`: over a chain whose lineage does not fit, recorded)."""
    check_name(name, "layer")
    ctx = RunContext.enter(config.device)
    dataset = registered_dataset(ws, dataset_name)
    upstream = resolve_layers(ws, on)
    check_shapes(dataset, upstream)
    if not force:
        check_lineage(ws.registry, dataset, upstream)
    require_intact(ws, upstream)
    in_shape = upstream[-1].spec.out_shape if upstream else tuple(dataset.input_shape)
    spec = plan.resolve(in_shape, dataset.classes,
                        tokens=None if upstream else dataset.options.get("vocab"))
    return LayerJob(ws, name, dataset, upstream, spec, config, ctx,
                    "forced onto a foreign chain" if force else "")


def train_layer_on_chain(ws: Workspace, name: str, dataset_name: str, on: Sequence[str],
                         plan: LayerPlan, config: TrainConfig,
                         callback: ProgressCallback | None = None,
                         force: bool = False) -> LayerVersion:
    """`plan_layer`, then run it: the next version of `name` on the outputs of `on`."""
    return plan_layer(ws, name, dataset_name, on, plan, config, force).run(callback)


@dataclass
class NetworkTraining:
    network: NetworkVersion
    layers: list[LayerVersion]
    baselines: list[BaselineResult]

    @property
    def baseline(self) -> BaselineResult | None:
        """The first baseline trained, None without one."""
        return self.baselines[0] if self.baselines else None


@dataclass(frozen=True)
class NetworkJob:
    """A network's training through the store, every argument checked: what `train NET`
    runs (see `LayerJob`)."""

    ws: Workspace
    net: str
    dataset: DatasetRecord
    specs: list[LayerSpec]
    config: TrainConfig
    schedule: str
    mode: str
    baselines: tuple[str, ...]
    layer_parallel: bool
    ctx: RunContext

    def run(self, callback: ProgressCallback | None = None) -> NetworkTraining:
        """Train and register every layer, then the network, then train the baselines."""
        ws, config, ctx = self.ws, self.config, self.ctx
        inputs = StreamInputs.of_chain(ws, self.dataset, [], config, ctx,
                                       WHOLE if self.layer_parallel else None)
        note = f"trained {self.schedule}" + (" layer-parallel" if self.layer_parallel else "")
        run = training_run("layer-parallel" if self.layer_parallel else self.schedule, ctx)
        checkpoint = Checkpoint(ws, job_key(
            "network", net=self.net, dataset=self.dataset.fingerprint,
            specs=[s.to_dict() for s in self.specs], config=config.to_dict(),
            schedule=self.schedule, processes=ctx.processes), ctx)
        done_before, pending = checkpoint.progress()  # what a killed run had registered
        versions = [ws.registry.layer(name, str(version)) for name, version in done_before]
        if pending is not None:  # killed while registering it: registered, or not at all
            versions += [v for v in ws.registry.layers(pending[0])
                         if v.digest == pending[1]][-1:]
        already = len(versions)

        def registered(trained: Trained) -> None:
            if self.schedule == "simultaneous" and trained.position < already:
                return  # trained all at once again, registered before the kill
            name = f"{self.net}.l{len(versions) + 1}"
            done = [(v.name, v.version) for v in versions]
            checkpoint.record(done, (name, weights_digest(trained.layer.spec,
                                                          layer_tensors(trained.layer))))
            versions.append(register(ws, ctx, name, trained, self.dataset,
                                     [v.digest for v in versions], config, run, note=note))
            checkpoint.record([*done, (versions[-1].name, versions[-1].version)])

        if self.layer_parallel:  # not checkpointed: each rank holds one layer
            for trained in train_pipelined(self.specs, inputs, config, ctx, callback)[0]:
                registered(trained)
        else:
            layers = build_layers(self.specs, config.seed, batch_size=config.batch_size)
            done = len(versions) if self.schedule == "sequential" else 0
            if done:  # the layers registered before the kill feed the next one
                inputs = StreamInputs.of_chain(ws, self.dataset, versions, config, ctx)
            train_stack(layers[done:], inputs, config, ctx, schedule=self.schedule,
                        first_index=done, callback=callback, on_trained=registered,
                        checkpoint=checkpoint)
        network = ctx.on_main(lambda: ws.registry.add_network(
            self.net, [(v.name, v.version) for v in versions], self.mode, self.dataset.name,
            note=note))
        checkpoint.clear()
        baselines = train_baselines(
            self.specs, StreamInputs.of_chain(ws, self.dataset, [], config, ctx), config,
            ctx, self.baselines, callback) if self.baselines else []
        return NetworkTraining(network, versions, baselines)


def plan_network(ws: Workspace, net: str, dataset_name: str, arch: str | Sequence[LayerPlan],
                 config: TrainConfig, schedule: str = STORE_SCHEDULE, mode: str = "bp",
                 baseline: str | Sequence[str] = "none",
                 layer_parallel: bool = False) -> NetworkJob:
    """Layers `NET.l1`, `NET.l2`, … and the network `NET`, with the baselines `baseline`
    names (`"bp,fa"`, …; not registered), checked and ready to train. `layer_parallel`: one
    process per layer (`pipeline.py`)."""
    check_name(net, "network")
    check_schedule(schedule)
    check_mode(mode)
    names = parse_baselines(baseline)
    ctx = RunContext.enter(config.device)
    dataset = registered_dataset(ws, dataset_name)
    plans = parse_arch(arch) if isinstance(arch, str) else list(arch)
    specs = build_specs(plans, dataset.input_shape, dataset.classes,
                        dataset.options.get("vocab"))
    check_name(f"{net}.l{len(specs)}", "layer")  # the longest name its layers will get
    if layer_parallel:
        if names:  # before the launch check: the launch it suggests must be able to run
            titles = " and ".join(algorithms()[n].title for n in names)
            raise ConfigError(f"the {titles} baseline{'s' if len(names) > 1 else ''} cannot "
                              "run layer-parallel (a baseline trains every layer in each "
                              "process); train it in a run of its own",
                              option("baseline", value="none"))
        check_pipeline(specs, schedule, ctx)
    return NetworkJob(ws, net, dataset, specs, config, schedule, mode, names, layer_parallel,
                      ctx)


def train_network(ws: Workspace, net: str, dataset_name: str, arch: str | Sequence[LayerPlan],
                  config: TrainConfig, schedule: str = STORE_SCHEDULE, mode: str = "bp",
                  callback: ProgressCallback | None = None,
                  baseline: str | Sequence[str] = "none",
                  layer_parallel: bool = False) -> NetworkTraining:
    """`plan_network`, then run it."""
    return plan_network(ws, net, dataset_name, arch, config, schedule, mode, baseline,
                        layer_parallel).run(callback)
