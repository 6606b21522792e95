"""What uses what: the networks that hold a layer version, and the layers trained on its
outputs (their lineage holds its weights digest).

Deleting must never strand a live layer or network: a layer version is needed while a live
network holds it, or while a live layer's lineage holds its digest and no other live version
computes the same (a bit-identical repair does).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from mfstore.registry import LayerVersion, NetworkVersion, Registry


@dataclass(frozen=True)
class Usage:
    networks: list[str] = field(default_factory=list)  # live networks holding the layer
    layers: list[str] = field(default_factory=list)  # live layers trained over its outputs

    def to_dict(self) -> dict[str, list[str]]:
        return {"networks": self.networks, "layers": self.layers}

    def __bool__(self) -> bool:
        return bool(self.networks or self.layers)

    def describe(self) -> str:
        parts = [f"network {n} holds it" for n in self.networks]
        parts += [f"layer {x} was trained on its outputs" for x in self.layers]
        return "; ".join(parts)


@dataclass
class Snapshot:
    """The live rows, read once."""

    layers: list[LayerVersion]
    networks: list[NetworkVersion]

    @classmethod
    def read(cls, registry: Registry) -> Snapshot:
        return cls([v for v in registry.layers() if v.status != "deleted"],
                   [n for n in registry.networks() if n.status != "deleted"])

    def by_digest(self) -> dict[str, list[LayerVersion]]:
        out: dict[str, list[LayerVersion]] = {}
        for v in self.layers:
            out.setdefault(v.digest, []).append(v)
        return out

    def usage(self, layer: LayerVersion, leaving: Collection[str] = ()) -> Usage:
        """Who uses `layer`, ignoring the refs in `leaving` (being deleted with it)."""
        pair = (layer.name, layer.version)
        networks = [n.ref for n in self.networks if pair in n.layers and n.ref not in leaving]
        others = [v for v in self.layers if v.digest == layer.digest and v.ref != layer.ref
                  and v.ref not in leaving and v.status == "ok"]  # an intact twin serves
        layers = [] if others else [v.ref for v in self.layers if layer.digest in
                                    v.signature.chain and v.ref not in leaving]
        return Usage(networks, layers)


def first_by_digest(layers: Iterable[LayerVersion]) -> dict[str, LayerVersion]:
    """The first version (in the order given: the registry's is name, then version) that
    computes each weights digest: the one a lineage names for that digest."""
    out: dict[str, LayerVersion] = {}
    for v in layers:
        out.setdefault(v.digest, v)
    return out


def used_by(registry: Registry, layer: LayerVersion) -> Usage:
    """Every live network holding `layer`, and every live layer trained over its outputs."""
    snap = Snapshot.read(registry)
    pair = (layer.name, layer.version)
    return Usage([n.ref for n in snap.networks if pair in n.layers],
                 [v.ref for v in snap.layers if layer.digest in v.signature.chain])
