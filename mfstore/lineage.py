"""Does a chain of layer versions fit together? Shapes must (always); lineage should: a layer
trained on the outputs of another upstream chain computes something else on this one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import MISSING, dataclass, fields, replace
from typing import Any

from mfstore.errors import LineageError, SpecError
from mfstore.fixes import Fix, RetrainFix, option
from mfstore.registry import DatasetRecord, LayerVersion, Registry
from mfstore.spec import LayerPlan, LayerSpec
from mfstore.usage import first_by_digest


def check_shapes(dataset: DatasetRecord, layers: Sequence[LayerVersion]) -> None:
    shape = tuple(dataset.input_shape)
    where = f"dataset {dataset.name!r}"
    for layer in layers:
        if layer.spec.in_shape != shape:
            hint = "" if layer.signature.chain else "; check the chain's order"
            if where.startswith("dataset") and layer.signature.chain:
                hint = "; give its whole upstream chain, input side first"
            raise SpecError(f"{layer.ref} takes input of shape {layer.spec.in_shape} but "
                            f"{where} produces {shape}{hint}")
        if layer.spec.classes != dataset.classes:
            raise SpecError(f"{layer.ref} predicts {layer.spec.classes} classes but dataset "
                            f"{dataset.name!r} has {dataset.classes}")
        shape, where = layer.spec.out_shape, layer.ref


def describe_chain(registry: Registry, digests: Sequence[str]) -> str:
    """`[l1@1 → l2@1]` for a chain of weights digests (refs where the registry knows them)."""
    if not digests:
        return "[the raw dataset]"
    producers = first_by_digest(registry.layers())
    return "[" + " → ".join(producers[d].ref if d in producers else d[:12]
                            for d in digests) + "]"


def plan_options(spec: LayerSpec, tokens: int | None = None) -> dict[str, Any]:
    """The `LayerPlan` options that make `spec` again on its input (`tokens`: the vocabulary
    of the token ids it reads, None when it does not read token ids): kind and width, and
    each option whose default would make another layer."""
    plan = LayerPlan(**{f.name: getattr(spec, f.name) for f in fields(LayerPlan)})
    for f in fields(LayerPlan):
        if f.default is not MISSING and _makes(replace(plan, **{f.name: f.default}), spec,
                                               tokens):
            plan = replace(plan, **{f.name: f.default})
    return {f.name: getattr(plan, f.name) for f in fields(LayerPlan)
            if f.default is MISSING or getattr(plan, f.name) != f.default}


def _makes(plan: LayerPlan, spec: LayerSpec, tokens: int | None) -> bool:
    try:
        return plan.resolve(spec.in_shape, spec.classes, tokens) == spec
    except SpecError:
        return False


def other_weights(layer: LayerVersion) -> str | None:
    """Why its recipe, retrained alone on the same input, would not give `layer`'s weights
    back (None: it would, bit for bit on the CPU)."""
    run = layer.run
    if run is None or (run.alone and run.device == "cpu"):
        return None  # before runs were recorded, train-layer and train NET trained alone
    if run.schedule == "simultaneous":
        return "it was trained beside the other layers of its network (simultaneous schedule)"
    if run.schedule == "layer-parallel":
        return "it was trained beside the other layers of its network (layer-parallel)"
    if not layer.config.get("deterministic"):
        return "it was trained on CUDA, whose kernels are not deterministic"
    return None


def retrain_fix(layer: LayerVersion, dataset: DatasetRecord, upstream: Sequence[str],
                then: Fix | None = None) -> Fix:
    """Train `layer` again, its whole recipe, on the chain `upstream` (refs, input side first)
    of `dataset`; `then`, once it is trained. The recipe: its spec, its recorded training
    configuration with the device it resolved to (an `auto` run on the CPU retrains on the
    CPU), and as many processes as it was trained with."""
    tokens = None if upstream else dataset.options.get("vocab")  # as train-layer resolves it
    config = dict(layer.config)
    if config.get("device") == "auto" and layer.run is not None:
        config["device"] = layer.run.device
    data_parallel = layer.run is not None and layer.run.alone and layer.run.processes > 1
    return RetrainFix(layer.ref, layer.name, dataset.name, tuple(upstream),
                      plan_options(layer.spec, tokens), config,
                      layer.run.processes if data_parallel and layer.run else 1,
                      other_weights(layer), then)


@dataclass(frozen=True)
class Mismatch:
    """A layer whose recorded input differs from what a chain feeds it."""

    position: int  # 0-based
    message: str
    fix: Fix


def lineage_problems(registry: Registry, dataset: DatasetRecord,
                     layers: Sequence[LayerVersion]) -> list[Mismatch]:
    """Every layer whose recorded input differs from what this chain feeds it."""
    problems = []
    for k, layer in enumerate(layers):
        actual = tuple(u.digest for u in layers[:k])
        sig = layer.signature
        if sig.chain == actual and sig.dataset_fingerprint == dataset.fingerprint:
            continue
        trained = describe_chain(registry, sig.chain)
        here = describe_chain(registry, actual)
        data_note = "" if sig.dataset_fingerprint == dataset.fingerprint else (
            f" of another dataset (fingerprint {sig.dataset_fingerprint[:12]})")
        problems.append(Mismatch(k, f"{layer.ref} was trained on the outputs of {trained}"
                                    f"{data_note} but here follows {here} of dataset "
                                    f"{dataset.name!r}",
                                 retrain_fix(layer, dataset, [u.ref for u in layers[:k]])))
    return problems


def refuse(mismatch: Mismatch, why: str) -> LineageError:
    """The error for a mismatch: retrain the layer, or force `why`."""
    return LineageError(mismatch.message, mismatch.fix, option("force", why))


def check_lineage(registry: Registry, dataset: DatasetRecord,
                  layers: Sequence[LayerVersion]) -> None:
    problems = lineage_problems(registry, dataset, layers)
    if problems:
        raise refuse(problems[0], "to use it anyway")
