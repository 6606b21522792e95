"""mfstore: Mono-Forward training with every layer kept as a versioned, verifiable block.

The names below are imported on first use, so `import mfstore` (and every command that only
reads the registry) does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_WHERE = {
    "TrainConfig": "mfstore.config", "DatasetOptions": "mfstore.config",
    "Dataset": "mfstore.dataset", "load_dataset": "mfstore.dataset",
    "Accuracy": "mfstore.evaluation", "evaluate": "mfstore.evaluation",
    "ExperimentResult": "mfstore.experiment", "run_experiment": "mfstore.experiment",
    "MFLayer": "mfstore.modules", "MFNet": "mfstore.modules", "build_layers": "mfstore.modules",
    "LayerSpec": "mfstore.spec", "build_specs": "mfstore.spec", "parse_arch": "mfstore.spec",
    "train_layer": "mfstore.training", "train_simultaneous": "mfstore.training",
    "train_sequential": "mfstore.stack", "train_stack": "mfstore.stack",
    "MemoryInputs": "mfstore.inputs", "Workspace": "mfstore.workspace",
}

__all__ = [
    "Accuracy", "Dataset", "DatasetOptions", "ExperimentResult", "LayerSpec", "MFLayer",
    "MFNet", "MemoryInputs", "TrainConfig", "Workspace", "__version__", "build_layers",
    "build_specs", "evaluate", "load_dataset", "parse_arch", "run_experiment", "train_layer",
    "train_sequential", "train_simultaneous", "train_stack",
]

if TYPE_CHECKING:
    from mfstore.config import DatasetOptions, TrainConfig
    from mfstore.dataset import Dataset, load_dataset
    from mfstore.evaluation import Accuracy, evaluate
    from mfstore.experiment import ExperimentResult, run_experiment
    from mfstore.inputs import MemoryInputs
    from mfstore.modules import MFLayer, MFNet, build_layers
    from mfstore.spec import LayerSpec, build_specs, parse_arch
    from mfstore.stack import train_sequential, train_stack
    from mfstore.training import train_layer, train_simultaneous
    from mfstore.workspace import Workspace


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'mfstore' has no attribute {name!r}")
