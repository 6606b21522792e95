"""One `mfstore train-layer` on a local folder + SQLite against S3 + PostgreSQL, in one run.

    python benchmarks/store_backends.py                        # digits, dense:256, 3 repeats
    python benchmarks/store_backends.py --data /usr/share/datasets/fashion-mnist --width 1000

Starts its own PostgreSQL cluster (Debian's postgresql) and S3 server (moto, on loopback),
exactly as the tests do, imports the dataset into both workspaces, then times the same
`train-layer` command (a new process each time, as a user runs it) on each backend,
alternating so that drift of a noisy machine hits both alike. The S3 server's access log
counts the requests of each run by method. Note what bounds the ratio: moto is a Python
server on the same two cores, so S3 here is slower than a real object store on another host.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from common import print_table  # noqa: E402

from tests.services import S3, Postgres  # noqa: E402

MFSTORE = str(Path(sys.executable).with_name("mfstore"))


def run(where: list[str], *args: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    out = subprocess.run([MFSTORE, *where, *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"mfstore {' '.join(args)} failed: {out.stderr}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="sklearn:digits")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"mfstore-bench-{os.getpid()}"
    work.mkdir(parents=True)
    postgres, s3 = Postgres(), S3(work)
    env = {**os.environ, **s3.env}
    bucket = s3.new_bucket()
    backends = {
        "local + SQLite": ["--home", str(work / "local")],
        "S3 + PostgreSQL": ["--home", str(work / "team"), "--registry",
                            postgres.new_database(), "--store", f"s3://{bucket}/mf"],
    }
    try:
        for where in backends.values():
            run(where, "init", env=env)
            run(where, "data", "add", "d", args.data, env=env)
        times: dict[str, list[float]] = {name: [] for name in backends}
        requests: list[dict[str, int]] = []
        command = ["train-layer", "l", "--data", "d", "--kind", "dense", "--width",
                   str(args.width), "--epochs", str(args.epochs), "--device", "cpu"]
        for _ in range(args.repeats):
            for name, where in backends.items():
                mark = s3.mark()
                times[name].append(run(where, *command, env=env))
                if name.startswith("S3"):
                    requests.append(dict(s3.requests_since(mark, bucket)))
    finally:
        postgres.stop()
        s3.stop()
        shutil.rmtree(work, ignore_errors=True)
    report(args, times, requests)
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "store_backends.json").write_text(json.dumps(
        {"args": vars(args), "seconds": times, "s3_requests": requests}, indent=1))


def report(args: argparse.Namespace, times: dict[str, list[float]],
           requests: list[dict[str, int]]) -> None:
    local, team = (statistics.median(t) for t in times.values())
    print(f"one `train-layer` (dense:{args.width}, {args.epochs} epochs) of {args.data}, "
          f"median of {args.repeats} runs, a new process each\n")
    print_table(["backend", "seconds", "ratio"],
                [["local + SQLite", f"{local:.2f}", "1.00"],
                 ["S3 + PostgreSQL", f"{team:.2f}", f"{team / local:.2f}"]])
    methods = sorted({m for r in requests for m in r})
    print("\nS3 requests per train-layer (moto's access log):")
    print_table(["run", *methods, "total"],
                [[str(i + 1), *[str(r.get(m, 0)) for m in methods], str(sum(r.values()))]
                 for i, r in enumerate(requests)])


if __name__ == "__main__":
    main()
