"""What the export and serving tests serve: the one place they create a workspace, train the
small networks and read the examples a client would send."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mfstore.config import TrainConfig
from mfstore.importing import import_dataset
from mfstore.network import load_network
from mfstore.store_training import train_network
from mfstore.stream import StreamBatches
from mfstore.stream_chain import dataset_stream
from mfstore.workspace import Workspace

SHAPE = [1, 8, 8]  # sklearn's digits


def digits_workspace(home: Path | str) -> Workspace:
    """A new workspace at `home` holding the digits dataset."""
    ws = Workspace.init(home=str(home))
    import_dataset(ws, "digits", "sklearn:digits")
    return ws


def train(ws: Workspace, name: str, arch: str, epochs: int = 2, seed: int = 0) -> None:
    """A network `name` on digits (a new version each call)."""
    train_network(ws, name, "digits", arch,
                  TrainConfig(epochs=epochs, batch_size=64, lr=0.01, device="cpu", seed=seed))


def digits_repository(home: Path, epochs: int) -> tuple[Workspace, Path, np.ndarray]:
    """A workspace at `home` whose `net@1` (2x32 on digits) is exported to the Triton
    repository `home/triton` in both modes (`digits-mlp`: bp, `digits-ff`: ff), and the raw
    test examples a client would send."""
    from mfstore.export import export_network

    ws = digits_workspace(home)
    train(ws, "net", "dense:32,dense:32", epochs=epochs)
    repo = home / "triton"
    export_network(ws, "net@1", "bp", triton_repo=str(repo), model_name="digits-mlp")
    export_network(ws, "net@1", "ff", triton_repo=str(repo), model_name="digits-ff")
    return ws, repo, raw_test_examples(ws)


def raw_test_examples(ws: Workspace) -> np.ndarray:
    """The test split in the units a client holds (pixels 0..16): (N, 1, 8, 8) float32."""
    dataset = ws.registry.dataset("digits")
    mean, std = (np.asarray(dataset.normalizer[k], np.float32) for k in ("mean", "std"))
    source = StreamBatches(ws.store, dataset_stream(ws, dataset), "test")
    x = torch.cat([b[0] for b in source.ordered()]).numpy()
    return (x * std + mean).astype(np.float32)


def pytorch_goodness(ws: Workspace, ref: str, mode: str, raw: np.ndarray) -> np.ndarray:
    """What PyTorch computes for raw examples: (N, classes)."""
    dataset = ws.registry.dataset("digits")
    mean, std = (np.asarray(dataset.normalizer[k], np.float32) for k in ("mean", "std"))
    with torch.no_grad():
        return load_network(ws, ref, mode)(torch.from_numpy((raw - mean) / std)).numpy()


def move_alias(ws: Workspace, network: str, alias: str, version: int) -> None:
    """What `mfstore nets alias NETWORK@VERSION ALIAS` does."""
    ws.registry.set_alias("network", network, alias, version)
