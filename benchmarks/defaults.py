"""How the default training settings were chosen: candidate `TrainConfig`s trained exactly as
`mfstore train --data <Fashion-MNIST> --arch dense:1000,dense:1000` trains (the same loader,
default dataset options with their 10 % validation split, `run_experiment`), each run's
validation and test accuracy appended to `benchmarks/results/defaults.jsonl`.

    python benchmarks/defaults.py --candidates current adamw-cosine-acc      # a few
    python benchmarks/defaults.py --seeds 0 1 2 --candidates chosen --baseline bp
    python benchmarks/defaults.py --table                                   # every run so far

The choice reads validation accuracy only (MF, the mean of FF and BP prediction); test
figures are recorded beside it and reported once the choice is made, never used for it.
Training-set accuracy is recorded too (MF's and each baseline's): whether a gap comes from
fitting less or from generalising worse.

Some candidates (the MF >= BP study) change what `TrainConfig` cannot: the projections'
initial scale, their learning rate or weight decay, a layer's learning rate. None of them
beat the defaults on validation, so they are not options; they live here alone (`Lever`),
applied around one run and undone after it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
from common import FASHION_MNIST, machine, print_table

from mfstore import experiment, training
from mfstore.baseline import algorithms
from mfstore.config import DEFAULT_SCHEDULE, DatasetOptions, TrainConfig
from mfstore.dataset import load_dataset
from mfstore.devices import make_optimizer, resolve_device
from mfstore.evaluation import evaluate
from mfstore.experiment import run_experiment
from mfstore.inputs import MemoryInputs
from mfstore.run_context import RunContext

RESULTS = Path("benchmarks/results/defaults.jsonl")
ARCH = "dense:1000,dense:1000"
BEFORE = TrainConfig(epochs=20, batch_size=128, lr=1e-3, optimizer="adam", weight_decay=0.0,
                     lr_schedule="constant", patience=5, monitor="val_loss")
COSINE = replace(BEFORE, optimizer="adamw", weight_decay=0.01, lr=5e-4, lr_schedule="cosine",
                 epochs=30, patience=None)


@dataclass(frozen=True)
class Lever:
    """What a study candidate changes besides its `TrainConfig` (MF's simultaneous loop only):
    the projections' initial values times `projection_scale` (0: zeros), their learning rate
    times `projection_lr`, their weight decay, and layer k's learning rate times
    `layer_lr[k]`."""

    projection_scale: float = 1.0
    projection_lr: float = 1.0
    projection_weight_decay: float | None = None
    layer_lr: tuple[float, ...] = ()

    def groups(self, layers, config: TrainConfig) -> list[dict]:
        out = []
        for k, layer in enumerate(layers):
            lr = config.lr * (self.layer_lr[k] if k < len(self.layer_lr) else 1.0)
            own = [p for name, p in layer.named_parameters() if name != "projection"]
            out.append({"params": own, "lr": lr})
            head: dict = {"params": [layer.projection], "lr": lr * self.projection_lr}
            if self.projection_weight_decay is not None:
                head["weight_decay"] = self.projection_weight_decay
            out.append(head)
        return out

    @contextmanager
    def applied(self) -> Iterator[None]:
        if self == Lever():
            yield
            return
        build = experiment.build_layers

        def built(specs, seed):
            layers = build(specs, seed)
            with torch.no_grad():
                for layer in layers:
                    layer.projection.mul_(self.projection_scale)
            return layers

        def optimizers(trainee, config, capturable):
            groups = self.groups(trainee.layers, config)
            opt = make_optimizer([p for g in groups for p in g["params"]], config,
                                 trainee.ctx.device, capturable)
            defaults = opt.param_groups[0]
            opt.param_groups.clear()
            for group in groups:
                opt.add_param_group({**defaults, "params": [], **group})
            return [opt]

        with mock.patch.object(experiment, "build_layers", built), \
                mock.patch.object(training.MonoForward, "optimizers", optimizers):
            yield


CHOSEN = TrainConfig()
STUDY = "simultaneous"  # the loop whose optimizer Lever replaces (one, no --overlap)
CANDIDATES: dict[str, tuple[TrainConfig, str] | tuple[TrainConfig, str, Lever]] = {
    "current": (BEFORE, "sequential"),
    "current-acc": (replace(BEFORE, monitor="val_accuracy"), "sequential"),
    "adamw-cosine-loss": (COSINE, "sequential"),
    "adamw-cosine-acc": (replace(COSINE, monitor="val_accuracy"), "sequential"),
    "adamw-cosine-acc-p5": (replace(COSINE, monitor="val_accuracy", patience=5), "sequential"),
    "adam-cosine20-acc": (replace(COSINE, optimizer="adam", weight_decay=0.0, lr=1e-3,
                                  epochs=20, monitor="val_accuracy"), "sequential"),
    "adamw-cosine20-acc": (replace(COSINE, epochs=20, monitor="val_accuracy"), "sequential"),
    "adamw-cosine-acc-1e-3": (replace(COSINE, lr=1e-3, monitor="val_accuracy"), "sequential"),
    "adamw-cosine-acc-simultaneous": (replace(COSINE, monitor="val_accuracy"), "simultaneous"),
    # the MF >= BP study (README "Why the defaults"): one lever at a time around the above
    "adamw-cosine-acc-3e-4": (replace(COSINE, lr=3e-4, monitor="val_accuracy"), "sequential"),
    "adamw-cosine-acc-wd0.05": (replace(COSINE, weight_decay=0.05, monitor="val_accuracy"),
                                "sequential"),
    "adamw-cosine-acc-b64": (replace(COSINE, batch_size=64, monitor="val_accuracy"),
                             "sequential"),
    "simultaneous-1e-3": (replace(COSINE, lr=1e-3), "simultaneous"),
    "chosen": (CHOSEN, DEFAULT_SCHEDULE),  # whatever the defaults are now
    # MF >= BP, around the chosen settings: what TrainConfig cannot say (Lever), and the rest
    "projection-lr-x3": (CHOSEN, STUDY, Lever(projection_lr=3.0)),
    "projection-lr-x0.3": (CHOSEN, STUDY, Lever(projection_lr=0.3)),
    "projection-init-x0.1": (CHOSEN, STUDY, Lever(projection_scale=0.1)),
    "projection-init-x3": (CHOSEN, STUDY, Lever(projection_scale=3.0)),
    "projection-init-zero": (CHOSEN, STUDY, Lever(projection_scale=0.0)),
    "projection-wd0": (CHOSEN, STUDY, Lever(projection_weight_decay=0.0)),
    "layer2-lr-x0.5": (CHOSEN, STUDY, Lever(layer_lr=(1.0, 0.5))),
    "layer2-lr-x2": (CHOSEN, STUDY, Lever(layer_lr=(1.0, 2.0))),
    "chosen-b64": (replace(CHOSEN, batch_size=64), STUDY),
    "chosen-45-epochs": (replace(CHOSEN, epochs=45), STUDY),
}


def run(name: str, seed: int, baseline: str, data, split_seed: int = 0) -> dict:
    config, schedule, *rest = CANDIDATES[name]
    lever = rest[0] if rest else Lever()
    config = replace(config, seed=seed, device="cpu")
    start = time.perf_counter()
    with lever.applied():
        result = run_experiment(data, ARCH, config, schedule, baseline)
    seconds = time.perf_counter() - start
    device = resolve_device("cpu")
    train = MemoryInputs.of_dataset(data, config, RunContext.alone(device)).train
    fit = evaluate(result.layers, train, device)
    record = {"candidate": name, "seed": seed, "split_seed": split_seed, "schedule": schedule,
              "config": config.to_dict(), "machine": machine(),
              "seconds": round(seconds, 1),
              "train": {"ff": fit.ff, "bp": fit.bp},
              "val": {"ff": result.val.ff, "bp": result.val.bp,
                      "per_layer": result.val.per_layer},
              "test": {"ff": result.test.ff, "bp": result.test.bp,
                       "per_layer": result.test.per_layer},
              "best_epochs": [h.best_epoch for h in result.histories],
              "baselines": {b.algorithm: {"val": b.val_accuracy, "test": b.test_accuracy,
                                          "train": _fit(b, train, device),
                                          "best_epoch": b.history.best_epoch}
                            for b in result.baselines}}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(record) + "\n")
    return record


def _fit(baseline, train, device) -> float | None:
    """A baseline's training-set accuracy where it predicts with the last projection."""
    if algorithms()[baseline.algorithm].mode != "bp":
        return None
    return evaluate(baseline.layers, train, device).bp


def table() -> None:
    runs = [json.loads(line) for line in RESULTS.read_text().splitlines()] if (
        RESULTS.exists()) else []
    latest = {(r["candidate"], r["seed"], r.get("split_seed", 0)): r
              for r in runs}  # a rerun replaces its seed
    by_name: dict[str, list[dict]] = {}
    for (name, _, split), r in latest.items():
        by_name.setdefault(f"{name} (split seed {split})" if split else name, []).append(r)

    def cell(values: list[float]) -> str:
        mean = 100 * statistics.mean(values)
        std = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{mean:.2f} ± {std:.2f}" if len(values) > 1 else f"{mean:.2f}"

    rows = []
    for name, rs in by_name.items():
        bp = [r["baselines"]["bp"] for r in rs if "bp" in r["baselines"]]
        rows.append([name, rs[0]["schedule"], len(rs),
                     cell([(r["val"]["ff"] + r["val"]["bp"]) / 2 for r in rs]),
                     cell([r["test"]["ff"] for r in rs]), cell([r["test"]["bp"] for r in rs]),
                     cell([b["test"] for b in bp]) if bp else "—",
                     cell([r["train"]["ff"] for r in rs]) if all("train" in r for r in rs)
                     else "—",
                     cell([b["train"] for b in bp]) if bp and all("train" in b for b in bp)
                     else "—",
                     " ".join("/".join(map(str, r["best_epochs"])) for r in rs),
                     f"{statistics.mean(r['seconds'] for r in rs):.0f}"])
    rows.sort(key=lambda r: r[3], reverse=True)
    print_table(["candidate", "schedule", "runs", "MF val (mean FF, BP)", "MF test FF",
                 "MF test BP", "BP test", "MF train FF", "BP train", "kept epochs", "s/run"], rows)
    versus(by_name)


def versus(by_name: dict[str, list[dict]]) -> None:
    """MF (FF prediction) minus BP, paired by seed (same initial weights and data order), with
    a paired t-test's two-sided p: is a gap more than the seeds' noise?"""
    from scipy.stats import ttest_rel

    rows = []
    for name, rs in by_name.items():
        rs = [r for r in rs if "bp" in r["baselines"]]
        if len(rs) < 2:
            continue
        cells: list[object] = [name, len(rs)]
        for split in ("val", "test", "train"):
            if not all(split in r and split in r["baselines"]["bp"] for r in rs):
                cells += ["—", "—"]
                continue
            mf = [100 * r[split]["ff"] for r in rs]
            bp = [100 * r["baselines"]["bp"][split] for r in rs]
            gaps = [a - b for a, b in zip(mf, bp, strict=True)]
            cells += [f"{statistics.mean(gaps):+.2f} ± {statistics.stdev(gaps):.2f}",
                      f"{ttest_rel(mf, bp).pvalue:.2f}"]
        rows.append(cells)
    if rows:
        print()
        print_table(["MF (FF pred) − BP, paired by seed", "seeds", "val", "p", "test", "p",
                     "train", "p"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=[])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--baseline", default="none")
    parser.add_argument("--split-seed", type=int, default=0,
                        help="another validation split of the training images (the test set "
                             "stays F-MNIST's own)")
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    if args.candidates:
        data = load_dataset(FASHION_MNIST, DatasetOptions(seed=args.split_seed))
        for name in args.candidates:
            for seed in args.seeds:
                r = run(name, seed, args.baseline, data, args.split_seed)
                print(f"{name} seed {seed}: val FF {r['val']['ff']:.2%} BP {r['val']['bp']:.2%}"
                      f" ({r['seconds']:.0f} s)", file=sys.stderr, flush=True)
    table()


if __name__ == "__main__":
    main()
