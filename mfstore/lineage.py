"""Does a chain of layer versions fit together? Shapes must (always); lineage should: a layer
trained on the outputs of another upstream chain computes something else on this one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mfstore.errors import Fix, LineageError, SpecError, option
from mfstore.registry import DatasetRecord, LayerVersion, Registry
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


def retrain_fix(layer: LayerVersion, dataset: str, upstream: Sequence[LayerVersion]) -> Fix:
    """Train `layer`'s spec again on the chain `upstream` of `dataset`."""
    return Fix("train_layer", {"name": layer.name, "data": dataset,
                               "on": [u.ref for u in upstream], "kind": layer.spec.kind,
                               "width": layer.spec.width})


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
                                 retrain_fix(layer, dataset.name, layers[:k])))
    return problems


def refuse(mismatch: Mismatch, why: str) -> LineageError:
    """The error for a mismatch: retrain the layer, or force `why`."""
    return LineageError(mismatch.message, mismatch.fix, option("force", why))


def check_lineage(registry: Registry, dataset: DatasetRecord,
                  layers: Sequence[LayerVersion]) -> None:
    problems = lineage_problems(registry, dataset, layers)
    if problems:
        raise refuse(problems[0], "to use it anyway")
