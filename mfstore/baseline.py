"""The baselines Mono-Forward is measured against, each trained on the very layers MF starts
from (same initial weights), on the same inputs, data order, optimizer, schedule, seed and
early stopping, so each differs from MF (and from each other) only in its training step:

    bp   backprop end to end, the last projection as the linear head   (backprop)
    fa   feedback alignment: fixed random matrices in place of W^T       (feedback_alignment)
    dfa  direct feedback alignment: the output error to every layer      (direct_feedback)
    ff   Forward-Forward: goodness sum(a^2), the label in the input      (forward_forward)

bp, fa and dfa predict with the last layer's projection (BP mode); ff with the label whose
embedding gives the highest goodness summed over the layers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mfstore.backprop import fit_backprop
from mfstore.batches import BatchSource
from mfstore.config import TrainConfig
from mfstore.direct_feedback import fit_direct_feedback
from mfstore.errors import ConfigError
from mfstore.evaluation import Accuracy, accuracy_over
from mfstore.feedback_alignment import fit_feedback_alignment
from mfstore.forward_forward import evaluate_forward_forward, fit_forward_forward
from mfstore.history import LayerHistory, ProgressCallback
from mfstore.inputs import LayerInputs
from mfstore.modules import MFLayer, build_layers
from mfstore.run_context import RunContext
from mfstore.spec import LayerSpec

BASELINES = ("bp", "fa", "dfa", "ff")


def parse_baselines(value: str | Sequence[str]) -> tuple[str, ...]:
    """`"bp,fa"` (or `["bp", "fa"]`) -> `("bp", "fa")`; `"none"` -> no baseline."""
    names = [n.strip() for n in (value.split(",") if isinstance(value, str) else value)]
    if names in (["none"], [""], []):
        return ()
    for name in names:
        if name not in BASELINES:
            raise ConfigError(f"unknown baseline {name!r}; choose any of bp, fa, dfa, ff "
                              "(comma-separated), or none")
    if len(set(names)) != len(names):
        raise ConfigError(f"baseline {value!r} names an algorithm twice")
    return tuple(names)


# (layers, train, val, config, the run's context, callback) -> history
Trainer = Callable[[Sequence[MFLayer], BatchSource, BatchSource | None, TrainConfig, RunContext,
                    ProgressCallback | None], LayerHistory]
Evaluator = Callable[[Sequence[MFLayer], BatchSource, RunContext], Accuracy]


@dataclass(frozen=True)
class Algorithm:
    title: str
    train: Trainer
    evaluate: Evaluator
    mode: str  # the `Accuracy` field that is its prediction: "bp" (last layer) or "ff" (sum)


def algorithms() -> dict[str, Algorithm]:
    return {"bp": Algorithm("backprop", fit_backprop, accuracy_over, "bp"),
            "fa": Algorithm("feedback alignment", fit_feedback_alignment, accuracy_over, "bp"),
            "dfa": Algorithm("direct feedback alignment", fit_direct_feedback, accuracy_over,
                             "bp"),
            "ff": Algorithm("Forward-Forward", fit_forward_forward, evaluate_forward_forward,
                            "ff")}


@dataclass
class BaselineResult:
    algorithm: str  # one of BASELINES
    layers: list[MFLayer]
    history: LayerHistory
    test: Accuracy  # per layer, ff and bp; the algorithm's own prediction is `test_accuracy`
    val: Accuracy

    @property
    def test_accuracy(self) -> float:
        return float(getattr(self.test, algorithms()[self.algorithm].mode))

    @property
    def val_accuracy(self) -> float:
        return float(getattr(self.val, algorithms()[self.algorithm].mode))

    def to_dict(self) -> dict[str, object]:
        return {"algorithm": self.algorithm, "test": self.test_accuracy,
                "val": self.val_accuracy, "seconds": self.history.seconds,
                "history": self.history.to_dict()}


def train_baseline(specs: Sequence[LayerSpec], inputs: LayerInputs, config: TrainConfig,
                   ctx: RunContext, callback: ProgressCallback | None = None,
                   algorithm: str = "bp") -> BaselineResult:
    """`algorithm` on the very layers MF starts from (same initial weights), on the same
    inputs, data order, optimizer and seed; evaluated on the inputs' test and validation
    splits."""
    if inputs.test is None or inputs.val is None:
        raise ConfigError("the baseline is evaluated on a test and a validation split")
    (name,) = parse_baselines([algorithm])
    chosen = algorithms()[name]
    layers = build_layers(specs, config.seed, batch_size=config.batch_size)
    history = chosen.train(layers, inputs.train, inputs.val, config, ctx, callback)
    return BaselineResult(name, layers, history, chosen.evaluate(layers, inputs.test, ctx),
                          chosen.evaluate(layers, inputs.val, ctx))


def train_baselines(specs: Sequence[LayerSpec], inputs: LayerInputs, config: TrainConfig,
                    ctx: RunContext, names: Sequence[str],
                    callback: ProgressCallback | None = None) -> list[BaselineResult]:
    """Each of `names` in turn, on the same inputs."""
    return [train_baseline(specs, inputs, config, ctx, callback, name) for name in names]
