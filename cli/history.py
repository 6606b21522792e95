"""The per-epoch history `--json` shows, read from each block's header."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mfstore.errors import IntegrityError

if TYPE_CHECKING:
    from mfstore.registry import LayerVersion
    from mfstore.workspace import Workspace


def history_of(ws: Workspace, layer: LayerVersion) -> dict[str, Any] | None:
    """The layer's learning curve (`epochs`: train_loss, val_loss, val_accuracy per epoch;
    `best_epoch`, `stopped_early`, `seconds`), or None when its block is damaged."""
    try:
        return ws.load_block(layer).history
    except IntegrityError:
        return None
