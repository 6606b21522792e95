"""Training beyond one process: data-parallel throughput, the layer-parallel pipeline's epoch
time, the bytes it sends, and each rank's memory as the network deepens.

    python benchmarks/distributed.py                       # CPU: 1 vs 2 processes, 1 thread each
    python benchmarks/distributed.py --examples 55000 --epochs 3
    python benchmarks/distributed.py --device cuda --procs 1,2,4,8   # a multi-GPU machine

The script launches itself under `torchrun` (gloo on CPU, NCCL on CUDA) as a user would, and
every worker trains through the library's own functions (`train_layer` with
`DistributedDataParallel`, `train_simultaneous`, `train_pipelined`), so what is timed is what
`mfstore train-layer` and `mfstore train --layer-parallel` run, without the store around it.
Every CPU process gets one thread (`OMP_NUM_THREADS=1`), so on a 2-core machine 1 and 2
processes compare like for like. Epoch times skip the first epoch (warm-up).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fashion_mnist_or_synthetic, print_table

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
FLOAT, LABEL, HEADER = 4, 8, 16  # bytes: an activation, a label, a message header


# ---------------------------------------------------------------------------- the workers


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def warm_up(specs, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> None:
    """A tiny training and evaluation first, so a memory figure is what the run adds."""
    from mfstore.batches import TensorBatches
    from mfstore.config import TrainConfig
    from mfstore.modules import build_layers
    from mfstore.spec import build_specs, parse_arch
    from mfstore.training import train_layer

    tiny = build_specs(parse_arch("dense:4"), specs[0].in_shape, 10)
    (layer,) = build_layers(tiny, seed=0)
    batches = TensorBatches(x[:64].clone(), y[:64].clone(), 32).to(device)
    train_layer(layer, batches, batches, TrainConfig(epochs=1, batch_size=32, device="cpu"),
                device=device)


def worker(args: argparse.Namespace) -> None:
    from mfstore import distributed
    from mfstore.batches import WHOLE, TensorBatches
    from mfstore.config import TrainConfig
    from mfstore.inputs import MemoryInputs
    from mfstore.modules import build_layers
    from mfstore.pipeline import hand_off, train_this_rank
    from mfstore.run_context import RunContext
    from mfstore.spec import build_specs, parse_arch
    from mfstore.training import train_layer, train_simultaneous

    ctx = RunContext.enter(args.device)  # joins the group torchrun describes
    device, rank = ctx.device, ctx.cluster.rank if ctx.cluster else 0
    x, y = torch.load(args.data, mmap=True).values()  # no copy: RSS stays what the run adds
    specs = build_specs(parse_arch(args.arch), tuple(x.shape[1:]), 10)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch, seed=0, patience=None,
                         device=args.device)
    part = WHOLE if args.role == "pipe" else ctx.part  # the pipeline: rank 0 reads
    train = TensorBatches.of_split(x, y, args.batch, 0, 4096, part).to(device)
    stamps: list[float] = []
    training_peak = [0.0]

    def stamp(report) -> None:  # the end of an epoch of the last layer
        training_peak[0] = peak_mb()  # (the pipeline's ranks: see below)
        if report.layer == len(specs) - 1:
            stamps.append(time.perf_counter())

    warm_up(specs, x, y, device)  # lazily imported modules and allocator pools are not the run's
    before, sent = rss_mb(), 0
    if args.role == "dp":
        (layer,) = build_layers(specs, seed=0)
        train_layer(layer, train, None, config, device=device, callback=stamp)
    elif args.role == "single":
        train_simultaneous(build_layers(specs, seed=0), train, None, config, device=device,
                           callback=stamp)
    else:  # pipe: rank 0 alone reads the data
        inputs = MemoryInputs(train, None, None, device)
        if rank != 0:
            inputs = MemoryInputs(TensorBatches(x[:0], y[:0], args.batch), None, None, device)
        mine = train_this_rank(specs, inputs, config, ctx, stamp)
        training_peak[0] = peak_mb()  # every rank's training peak, before the hand-off
        hand_off(mine, specs, inputs)
        sent = mine.bytes_sent
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    gpu_peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    mine = {"rank": rank, "added_mb": peak_mb() - before,
            "training_mb": training_peak[0] - before, "gpu_peak_mb": gpu_peak,
            "sent": sent, "stamps": stamps}
    everyone = ctx.gather(mine)
    if rank == 0:
        Path(args.out).write_text(json.dumps(everyone))
    distributed.leave()


# ------------------------------------------------------------------------- the orchestra


def launch(args: argparse.Namespace, role: str, procs: int, arch: str, data: Path,
           batch: int) -> list[dict]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [TORCHRUN, "--standalone", "--nproc-per-node", str(procs), __file__, "--role",
                   role, "--arch", arch, "--batch", str(batch), "--epochs", str(args.epochs),
                   "--device", args.device, "--data", str(data), "--out", out.name]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        written = Path(out.name).read_text()
        if done.returncode != 0 and not written:
            raise SystemExit(f"{role} with {procs} processes failed:\n{done.stderr[-3000:]}")
        if done.returncode != 0:  # every figure was in, then a process died leaving: say so
            print(f"  note: {role} with {procs} processes exited {done.returncode} after "
                  f"writing its figures: {done.stderr.strip().splitlines()[0][:120]}",
                  file=sys.stderr)
        return json.loads(written)


def epoch_seconds(ranks: list[dict]) -> float:
    stamps = ranks[0]["stamps"]
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)  # epochs 2.. (the first warms up)


def steps_per_epoch(examples: int, batch: int) -> int:
    return -(-examples // batch)


def mf_bytes_per_step(width: int, depth: int, batch: int) -> int:
    """What the MF pipeline sends a step: each of the depth-1 links carries the labels and
    the activations forward, once."""
    return (depth - 1) * (HEADER + batch * (LABEL + width * FLOAT))


def bp_bytes_per_step(width: int, depth: int, batch: int) -> int:
    """What a BP pipeline (GPipe-style, one stage per layer) must send a step: activations
    forward and their gradients backward over every link, the labels to the last stage."""
    return (depth - 1) * (2 * HEADER + 2 * batch * width * FLOAT) + HEADER + batch * LABEL


def main(args: argparse.Namespace) -> None:
    data, source = fashion_mnist_or_synthetic(args.examples)
    x, y = data.train.x.flatten(1).contiguous(), data.train.y.contiguous()
    n = len(y)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.pt"
        torch.save({"x": x, "y": y}, path)
        print(f"{source}, {n} training examples, {args.epochs} epochs, device {args.device}, "
              f"one thread per CPU process, {os.cpu_count()} cores\n")
        result: dict[str, object] = {"examples": n, "epochs": args.epochs, "device": args.device}

        print("Data-parallel training of one layer (dense:1000), examples per second")
        rows, dp = [], []
        for batch in args.batches:
            rates = {}
            for procs in args.procs:
                rates[procs] = n / epoch_seconds(launch(args, "dp", procs, "dense:1000", path,
                                                        batch))
            one = rates[args.procs[0]]
            for procs, rate in rates.items():
                rows.append([batch, procs, f"{rate:,.0f}", f"{rate / one:.2f}x"])
                dp.append({"batch": batch, "procs": procs, "examples_per_s": rate})
        print_table(["global batch", "processes", "examples/s", "vs 1"], rows)
        result["data_parallel"] = dp

        depth, width = args.depth, 1000
        arch = ",".join([f"dense:{width}"] * depth)
        print(f"\nLayer-parallel pipeline, {depth} x dense:{width}, batch {args.batch}")
        single = launch(args, "single", 1, arch, path, args.batch)
        piped = launch(args, "pipe", depth, arch, path, args.batch)
        t1, tp = epoch_seconds(single), epoch_seconds(piped)
        print_table(["run", "s / epoch", "vs single"],
                    [["single process, simultaneous", f"{t1:.2f}", "1.00x"],
                     [f"{depth} ranks, --layer-parallel", f"{tp:.2f}", f"{t1 / tp:.2f}x"]])
        steps = args.epochs * steps_per_epoch(n, args.batch)
        measured = sum(r["sent"] for r in piped) / steps
        mf = mf_bytes_per_step(width, depth, args.batch)
        bp = bp_bytes_per_step(width, depth, args.batch)
        print(f"\nBytes sent per step ({depth} stages, batch {args.batch}, fp32)")
        print_table(["pipeline", "computed", "measured"],
                    [["MF (activations forward)", f"{mf:,}", f"{measured:,.0f}"],
                     ["BP (forward + gradients back)", f"{bp:,}", "-"],
                     ["BP / MF", f"{bp / mf:.2f}x", ""]])
        result["pipeline"] = {"depth": depth, "single_s_per_epoch": t1,
                              "piped_s_per_epoch": tp, "mf_bytes_per_step": mf,
                              "mf_bytes_per_step_measured": measured,
                              "bp_bytes_per_step": bp}

        print(f"\nPeak memory a run adds (MB, resident{', GPU' if args.device != 'cpu' else ''}),"
              f" dense:{width} layers, batch {args.batch}")
        rows, memory = [], []
        for d in args.depths:
            arch = ",".join([f"dense:{width}"] * d)
            one = launch(args, "single", 1, arch, path, args.batch)[0]
            ranks = launch(args, "pipe", d, arch, path, args.batch)
            key = "gpu_peak_mb" if args.device != "cpu" else "training_mb"
            per_rank = [r[key] for r in ranks]
            handoff = [r["added_mb"] for r in ranks]
            rows.append([d, f"{one[key]:.0f}", f"{max(per_rank):.0f}",
                         " ".join(f"{v:.0f}" for v in per_rank), f"{max(handoff):.0f}"])
            memory.append({"depth": d, "single": one[key], "per_rank": per_rank,
                           "per_rank_with_handoff": handoff})
        print_table(["layers", "single process", "max over ranks", "each rank",
                     "max incl. hand-off"], rows)
        print("(training: the peak at the last epoch's end; hand-off: every rank then receives "
              "every trained layer)")
        result["memory"] = memory
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])

    def ints(text: str) -> list[int]:
        return [int(v) for v in text.split(",")]

    p.add_argument("--examples", type=int, default=20000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--procs", type=ints, default=[1, 2], help="data-parallel process counts")
    p.add_argument("--batches", type=ints, default=[128, 1024], help="data-parallel batches")
    p.add_argument("--batch", type=int, default=128, help="the pipeline's batch")
    p.add_argument("--depth", type=int, default=4, help="the pipeline's layers")
    p.add_argument("--depths", type=ints, default=[2, 4, 6], help="depths for memory")
    p.add_argument("--json", help="also write the figures here")
    # a worker's arguments (the script runs itself under torchrun)
    p.add_argument("--role", choices=["dp", "single", "pipe"], help=argparse.SUPPRESS)
    p.add_argument("--arch", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.epochs < 2:
        p.error("--epochs must be at least 2: the first epoch warms up and is not timed")
    return args


if __name__ == "__main__":
    arguments = parse()
    if arguments.role:
        worker(arguments)
    else:
        main(arguments)
