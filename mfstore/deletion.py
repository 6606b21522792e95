"""Deleting networks and layer versions without stranding anything live.

Rows are marked `deleted` (versions are never reused); `gc` later frees the blocks and streams
nothing live needs. A layer version stays while a live network holds it or a live layer was
trained over its outputs (`usage.Snapshot.usage`): deleting it is refused with what keeps it,
and deleting a network keeps such layers and says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mfstore.errors import ConflictError, Fix
from mfstore.network import resolve_network
from mfstore.registry import LayerVersion, NetworkVersion, parse_ref
from mfstore.usage import Snapshot
from mfstore.workspace import Workspace


@dataclass
class Deletion:
    networks: list[NetworkVersion] = field(default_factory=list)
    layers: list[LayerVersion] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # layer ref -> what keeps it


def _doomed_networks(ws: Workspace, ref: str) -> list[NetworkVersion]:
    name, selector = parse_ref(ref)
    if selector is not None:
        return [resolve_network(ws, ref)]
    doomed = [n for n in ws.registry.networks(name) if n.status != "deleted"]
    if not doomed:
        resolve_network(ws, name)  # raises NotFoundError
    return doomed


def delete_network(ws: Workspace, ref: str, keep_layers: bool = False) -> Deletion:
    """Mark NET@V (or every version of NET) deleted, and the layer versions nothing else
    live needs, unless `keep_layers`."""
    doomed = _doomed_networks(ws, ref)
    for network in doomed:
        ws.registry.set_network_status(network.name, network.version, "deleted")
    result = Deletion(doomed)
    if keep_layers:
        return result
    snap = Snapshot.read(ws.registry)
    candidates = {f"{n}@{v}" for network in doomed for n, v in network.layers}
    layers = [v for v in snap.layers if v.ref in candidates]
    leaving = {v.ref for v in layers}
    changed = True
    while changed:  # what is kept keeps the layers it was trained over: repeat to a fixpoint
        changed = False
        for layer in layers:
            usage = snap.usage(layer, leaving) if layer.ref in leaving else None
            if usage:
                result.kept[layer.ref] = usage.describe()
                leaving.discard(layer.ref)
                changed = True
    for layer in layers:
        if layer.ref in leaving:
            ws.registry.set_layer_status(layer.name, layer.version, "deleted")
            result.layers.append(layer)
    return result


def delete_layer(ws: Workspace, ref: str) -> LayerVersion:
    """Mark one layer version deleted; refused while anything live needs it."""
    layer = ws.registry.layer(*parse_ref(ref))
    if parse_ref(ref)[1] is None:
        raise ConflictError(f"say which version of layer {layer.name!r} to delete, e.g. "
                            f"{layer.ref}")
    usage = Snapshot.read(ws.registry).usage(layer)
    if usage:
        fixes = [Fix("delete", {"ref": n, "kind": "network"}) for n in usage.networks]
        fixes += [Fix("delete", {"ref": x, "kind": "layer"}) for x in usage.layers]
        raise ConflictError(f"layer {layer.ref} is still needed: {usage.describe()}", *fixes)
    ws.registry.set_layer_status(layer.name, layer.version, "deleted")
    return layer
