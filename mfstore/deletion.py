"""Deleting networks and layer versions without stranding anything live.

Rows are marked `deleted` (versions are never reused); `gc` later frees the blocks and streams
nothing live needs. A layer version stays while a live network holds it or a live layer was
trained over its outputs (`usage.Snapshot.usage`): deleting it is refused with what keeps it,
and deleting a network keeps such layers and says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mfstore.errors import ConflictError
from mfstore.fixes import DeleteFix
from mfstore.registry import LayerVersion, NetworkVersion, parse_ref
from mfstore.usage import Snapshot, Usage
from mfstore.workspace import Workspace


@dataclass
class Deletion:
    networks: list[NetworkVersion] = field(default_factory=list)
    layers: list[LayerVersion] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # layer ref -> what keeps it


def _doomed_networks(ws: Workspace, ref: str) -> list[NetworkVersion]:
    name, selector = parse_ref(ref)
    if selector is not None:
        return [ws.registry.resolve_network(ref)]
    doomed = [n for n in ws.registry.networks(name) if n.status != "deleted"]
    if not doomed:
        ws.registry.resolve_network(name)  # raises NotFoundError
    return doomed


def _keep_rule(live: list[LayerVersion], networks: list[NetworkVersion],
               leaving: set[str]) -> dict[str, str]:
    """{layer ref: why it stays} for the layers of `leaving` something live still needs;
    what stays keeps the layers it was trained over, so repeat to a fixpoint."""
    snap = Snapshot(live, networks)
    candidates = [v for v in live if v.ref in leaving]
    going, kept = {v.ref for v in candidates}, {}
    changed = True
    while changed:
        changed = False
        for layer in candidates:
            usage = snap.usage(layer, going) if layer.ref in going else None
            if usage:
                kept[layer.ref] = usage.describe()
                going.discard(layer.ref)
                changed = True
    return kept


def delete_network(ws: Workspace, ref: str, keep_layers: bool = False) -> Deletion:
    """Mark NET@V (or every version of NET) deleted, and the layer versions nothing else
    live needs, unless `keep_layers` — in one transaction, so a layer registered over one of
    them meanwhile keeps it."""
    doomed = _doomed_networks(ws, ref)
    pairs = [] if keep_layers else list(dict.fromkeys(
        p for network in doomed for p in network.layers))
    before = {v.ref: v for v in ws.registry.layers() if v.status != "deleted"}
    kept = ws.registry.delete_unneeded([(n.name, n.version) for n in doomed], pairs, _keep_rule)
    gone = [before[f"{n}@{v}"] for n, v in pairs
            if f"{n}@{v}" in before and f"{n}@{v}" not in kept]
    return Deletion(doomed, gone, kept)


def delete_layer(ws: Workspace, ref: str) -> LayerVersion:
    """Mark one layer version deleted; refused while anything live needs it."""
    layer = ws.registry.layer(*parse_ref(ref))
    if parse_ref(ref)[1] is None:
        raise ConflictError(f"say which version of layer {layer.name!r} to delete, e.g. "
                            f"{layer.ref}")
    kept = ws.registry.delete_unneeded([], [(layer.name, layer.version)], _keep_rule)
    if kept:
        first = _deleted_first(Snapshot.read(ws.registry), layer)
        raise ConflictError(f"layer {layer.ref} is still needed: {kept[layer.ref]}",
                            DeleteFix(tuple(first.networks), tuple(first.layers)))
    return layer


def _deleted_first(snap: Snapshot, layer: LayerVersion) -> Usage:
    """What must go before `layer` can: every live layer trained over its outputs, deepest
    first (each is refused while one trained over it lives), and every live network holding
    `layer` or one of them."""
    below = [v for v in snap.layers if v.ref in snap.usage(layer).layers]
    below.sort(key=lambda v: len(v.signature.chain), reverse=True)
    held = {(layer.name, layer.version), *((v.name, v.version) for v in below)}
    networks = [n.ref for n in snap.networks if held & {tuple(p) for p in n.layers}]
    return Usage(networks, [v.ref for v in below])
