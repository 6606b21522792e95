"""Does a chain of layer versions fit together? Shapes must (always); lineage should: a layer
trained on the outputs of another upstream chain computes something else on this one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import MISSING, dataclass, fields, replace
from typing import Any

from mfstore.errors import Fix, LineageError, SpecError, option
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


TRAINED_BESIDE_OTHERS = "trained simultaneous"  # the note `train NET --schedule simultaneous`
# gives every layer it registers


def retrain_fix(layer: LayerVersion, dataset: DatasetRecord, upstream: Sequence[LayerVersion],
                then: Fix | None = None) -> Fix:
    """Train `layer` again, its whole recipe (spec and recorded training configuration), on
    the chain `upstream` of `dataset`; `then`, once it is trained."""
    tokens = None if upstream else dataset.options.get("vocab")  # as train-layer resolves it
    args: dict[str, Any] = {
        "ref": layer.ref, "name": layer.name, "data": dataset.name,
        "on": [u.ref for u in upstream], "spec": plan_options(layer.spec, tokens),
        "config": dict(layer.config)}
    if TRAINED_BESIDE_OTHERS in layer.note:  # its weights depend on its neighbours' too
        args["same_weights"] = False
    if then is not None:
        args["then"] = {"action": then.action, "args": dict(then.args)}
    return Fix("train_layer", args)


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
                                 retrain_fix(layer, dataset, layers[:k])))
    return problems


def refuse(mismatch: Mismatch, why: str) -> LineageError:
    """The error for a mismatch: retrain the layer, or force `why`."""
    return LineageError(mismatch.message, mismatch.fix, option("force", why))


def check_lineage(registry: Registry, dataset: DatasetRecord,
                  layers: Sequence[LayerVersion]) -> None:
    problems = lineage_problems(registry, dataset, layers)
    if problems:
        raise refuse(problems[0], "to use it anyway")
