"""How the default training settings were chosen: candidate `TrainConfig`s trained exactly as
`mfstore train --data <Fashion-MNIST> --arch dense:1000,dense:1000` trains (the same loader,
default dataset options with their 10 % validation split, `run_experiment`), each run's
validation and test accuracy appended to `benchmarks/results/defaults.jsonl`.

    python benchmarks/defaults.py --candidates current adamw-cosine-acc      # a few
    python benchmarks/defaults.py --seeds 0 1 2 --candidates chosen --baseline bp
    python benchmarks/defaults.py --table                                   # every run so far

The choice reads validation accuracy only (MF, the mean of FF and BP prediction); test
figures are recorded beside it and reported once the choice is made, never used for it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import FASHION_MNIST, machine, print_table

from mfstore.config import DEFAULT_SCHEDULE, TrainConfig
from mfstore.dataset import load_dataset
from mfstore.experiment import run_experiment

RESULTS = Path("benchmarks/results/defaults.jsonl")
ARCH = "dense:1000,dense:1000"
BEFORE = TrainConfig(epochs=20, batch_size=128, lr=1e-3, optimizer="adam", weight_decay=0.0,
                     lr_schedule="constant", patience=5, monitor="val_loss")
COSINE = replace(BEFORE, optimizer="adamw", weight_decay=0.01, lr=5e-4, lr_schedule="cosine",
                 epochs=30, patience=None)
CANDIDATES: dict[str, tuple[TrainConfig, str]] = {
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
    "chosen": (TrainConfig(), DEFAULT_SCHEDULE),  # whatever the defaults are now
}


def run(name: str, seed: int, baseline: str, data) -> dict:
    config, schedule = CANDIDATES[name]
    config = replace(config, seed=seed, device="cpu")
    start = time.perf_counter()
    result = run_experiment(data, ARCH, config, schedule, baseline)
    record = {"candidate": name, "seed": seed, "schedule": schedule,
              "config": config.to_dict(), "machine": machine(),
              "seconds": round(time.perf_counter() - start, 1),
              "val": {"ff": result.val.ff, "bp": result.val.bp,
                      "per_layer": result.val.per_layer},
              "test": {"ff": result.test.ff, "bp": result.test.bp,
                       "per_layer": result.test.per_layer},
              "best_epochs": [h.best_epoch for h in result.histories],
              "baselines": {b.algorithm: {"val": b.val_accuracy, "test": b.test_accuracy,
                                          "best_epoch": b.history.best_epoch}
                            for b in result.baselines}}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(record) + "\n")
    return record


def table() -> None:
    runs = [json.loads(line) for line in RESULTS.read_text().splitlines()] if (
        RESULTS.exists()) else []
    by_name: dict[str, list[dict]] = {}
    for r in runs:
        by_name.setdefault(r["candidate"], []).append(r)

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
                     " ".join("/".join(map(str, r["best_epochs"])) for r in rs),
                     f"{statistics.mean(r['seconds'] for r in rs):.0f}"])
    rows.sort(key=lambda r: r[3], reverse=True)
    print_table(["candidate", "schedule", "runs", "MF val (mean FF, BP)", "MF test FF",
                 "MF test BP", "BP test", "kept epochs", "s/run"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=[])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--baseline", default="none")
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    if args.candidates:
        data = load_dataset(FASHION_MNIST)
        for name in args.candidates:
            for seed in args.seeds:
                r = run(name, seed, args.baseline, data)
                print(f"{name} seed {seed}: val FF {r['val']['ff']:.2%} BP {r['val']['bp']:.2%}"
                      f" ({r['seconds']:.0f} s)", file=sys.stderr, flush=True)
    table()


if __name__ == "__main__":
    main()
