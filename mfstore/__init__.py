"""mfstore: Mono-Forward training with every layer kept as a versioned, verifiable block."""

from mfstore.config import TrainConfig
from mfstore.dataset import Dataset, DatasetOptions, load_dataset
from mfstore.evaluation import Accuracy, evaluate
from mfstore.experiment import ExperimentResult, run_experiment
from mfstore.modules import MFLayer, MFNet, build_layers
from mfstore.spec import LayerSpec, build_specs, parse_arch
from mfstore.training import train_layer, train_sequential, train_simultaneous

__version__ = "0.1.0"

__all__ = [
    "Accuracy", "Dataset", "DatasetOptions", "ExperimentResult", "LayerSpec", "MFLayer",
    "MFNet", "TrainConfig", "__version__", "build_layers", "build_specs", "evaluate",
    "load_dataset", "parse_arch", "run_experiment", "train_layer", "train_sequential",
    "train_simultaneous",
]
