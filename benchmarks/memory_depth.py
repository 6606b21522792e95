"""Peak training memory against depth: streamed sequential MF vs BP; and streamed vs
in-memory time for one layer.

    python benchmarks/memory_depth.py                       # depths 1 2 4 8 16, full batch
    python benchmarks/memory_depth.py --depths 1 2 4 --examples 20000

Every point runs in a fresh process (peak RSS on CPU; torch.cuda.max_memory_allocated on
CUDA). MF trains one layer at a time through the store, reading its input stream from shards
(RAM budget 0, so nothing is held in memory beyond the shards in flight) and writing its
output stream; BP trains the same layers end to end with everything in memory. Both use one
full-batch epoch by default, the setting in which the paper reports BP's growth.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import FASHION_MNIST, machine, print_table

from mfstore.config import StreamOptions, TrainConfig
from mfstore.devices import resolve_device
from mfstore.run_context import RunContext
from mfstore.workspace import Workspace

STREAMING = StreamOptions(shard_bytes=16 << 20, ram_budget=0, shuffle_buffer=8192)


def peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(algo: str, depth: int, home: str, batch: int, device_name: str) -> None:
    from mfstore.backprop import train_backprop
    from mfstore.modules import build_layers
    from mfstore.spec import build_specs, parse_arch
    from mfstore.store_training import train_network
    from mfstore.stream_chain import StreamInputs

    device = resolve_device(device_name)
    ws = Workspace.open(home=home, stream_options=STREAMING)
    config = TrainConfig(epochs=1, batch_size=batch, patience=None, device=device_name)
    arch = ",".join(["dense:1000"] * depth)
    start = time.perf_counter()
    if algo == "mf":
        train_network(ws, f"depth{depth}", "data", arch, config, "sequential")
    else:
        dataset = ws.registry.dataset("data")
        ws.stream_options = StreamOptions(ram_budget=1 << 40)  # BP holds the data in memory
        inputs = StreamInputs.of_chain(ws, dataset, [], config, RunContext.alone(device))
        specs = build_specs(parse_arch(arch), dataset.input_shape, dataset.classes)
        train_backprop(build_layers(specs, 0), inputs.train, None, config, device=device)
    print(json.dumps({"peak_mb": peak_mb(device), "seconds": time.perf_counter() - start}))


def one_layer_times(home: str, batch: int, device_name: str) -> tuple[float, float]:
    """Seconds for one dense:1000 layer, 1 epoch, from shards vs from memory."""
    from mfstore.modules import build_layers
    from mfstore.spec import build_specs, parse_arch
    from mfstore.stream_chain import StreamInputs
    from mfstore.training import train_layer

    device = resolve_device(device_name)
    ws = Workspace.open(home=home, stream_options=STREAMING)
    dataset = ws.registry.dataset("data")
    config = TrainConfig(epochs=1, batch_size=batch, patience=None, device=device_name)
    specs = build_specs(parse_arch("dense:1000"), dataset.input_shape, dataset.classes)
    times = {}
    for name, ram in (("memory", 1 << 40), ("streamed", 0), ("memory", 1 << 40),
                      ("streamed", 0)):
        ws.stream_options = StreamOptions(16 << 20, ram, 8192)
        train = StreamInputs.of_chain(ws, dataset, [], config, RunContext.alone(device)).train
        if ram:
            list(train.ordered())  # load before timing: we compare training, not loading
        start = time.perf_counter()
        train_layer(build_layers(specs, 0)[0], train, None, config, device=device)
        times[name] = min(times.get(name, 1e9), time.perf_counter() - start)
    return times["streamed"], times["memory"]


def slope(xs: list[int], ys: list[float]) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--batch", default="full", help="full or a number")
    parser.add_argument("--time-batch", type=int, default=128)
    parser.add_argument("--examples", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--png", type=Path, default=Path("benchmarks/results/memory_depth.png"))
    parser.add_argument("--time-only", action="store_true",
                        help="only streamed vs in-memory time for one layer")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        algo, depth, home = args.worker
        worker(algo, int(depth), home, int(args.batch), args.device)
        return
    home = tempfile.mkdtemp(prefix="mf-memory-")
    n = import_data(home, args.examples)
    batch = n if args.batch == "full" else int(args.batch)
    if args.time_only:
        report_times(home, args)
        return
    print(f"# peak training memory vs depth, {n} examples of 784, batch {args.batch}, "
          f"1 epoch, {machine()}")
    rows, series = [], {"mf": [], "bp": []}
    for depth in args.depths:
        for algo in ("mf", "bp"):
            out = subprocess.run([sys.executable, __file__, "--worker", algo, str(depth), home,
                                  "--batch", str(batch), "--device", args.device],
                                 capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            series[algo].append(result["peak_mb"])
            print(f"  {algo} depth {depth}: {result['peak_mb']:.0f} MB", file=sys.stderr)
        rows.append([depth, f"{series['mf'][-1]:.0f}", f"{series['bp'][-1]:.0f}"])
    print_table(["layers", "MF streamed peak MB", "BP peak MB"], rows)
    print(f"slope: MF streamed {slope(args.depths, series['mf']):.1f} MB/layer, "
          f"BP {slope(args.depths, series['bp']):.1f} MB/layer")
    deep = [i for i, d in enumerate(args.depths) if d >= 2]
    if len(deep) >= 2:  # layer 1 reads 784 features, every later layer 1000
        xs = [args.depths[i] for i in deep]
        print(f"slope from 2 layers on: MF streamed "
              f"{slope(xs, [series['mf'][i] for i in deep]):.1f} MB/layer, BP "
              f"{slope(xs, [series['bp'][i] for i in deep]):.1f} MB/layer")
    plot(args.depths, series, args.png)
    report_times(home, args)


def report_times(home: str, args: argparse.Namespace) -> None:
    streamed, memory = one_layer_times(home, args.time_batch, args.device)
    print(f"one dense:1000 layer, 1 epoch, batch {args.time_batch}: streamed {streamed:.2f} s, "
          f"in memory {memory:.2f} s, ratio {streamed / memory:.2f}x")


def import_data(home: str, examples: int | None) -> int:
    from mfstore.config import DatasetOptions
    from mfstore.importing import import_dataset

    ws = Workspace.init(home=home, stream_options=STREAMING)
    source = FASHION_MNIST
    if examples is not None or not Path(FASHION_MNIST).is_dir():
        source = synthetic_npz(home, examples or 60000)
    record = import_dataset(ws, "data", source, DatasetOptions(val_fraction=5000 / 60000))
    return record.counts["train"]


def synthetic_npz(home: str, n: int) -> str:
    """MNIST-sized stand-in (or a subset of Fashion-MNIST) as an .npz file."""
    import numpy as np

    from mfstore.readers import read_source

    path = f"{home}/data.npz"
    if Path(FASHION_MNIST).is_dir():
        raw = read_source(FASHION_MNIST)
        np.savez(path, x=raw.x_train[:n], y=raw.y_train[:n], x_test=raw.x_test,
                 y_test=raw.y_test)
    else:
        rng = np.random.default_rng(0)
        np.savez(path, x=rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8),
                 y=rng.integers(0, 10, n))
    return path


def plot(depths: list[int], series: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(depths, series["mf"], "o-", label="MF, sequential, streamed through the store")
    ax.plot(depths, series["bp"], "s-", label="BP, in memory")
    ax.set(xlabel="dense layers of 1000", ylabel="peak training memory (MB)",
           title="Peak memory against depth")
    ax.grid(alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"# plot: {path}")


if __name__ == "__main__":
    main()
