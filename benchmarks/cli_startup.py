"""How long the command line takes to start, beside `python -c "import torch"`, in one run.

    python benchmarks/cli_startup.py            # 10 runs of each, alternating

Commands that only read the registry (`layers list|show`, `nets list|show`, with or without
--json) and `mfstore ui` until it listens import neither torch, onnx nor onnxruntime; `--help`
imports only the command-line layer. Each figure is the median wall time of a new process
(for `ui`: until it announces its address). Target: each ≤ 0.25× `import torch`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table

MFSTORE = str(Path(sys.executable).with_name("mfstore"))


def seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def ui_seconds(home: str) -> float:
    """`mfstore ui --port 0` until it announces where it listens; then stopped."""
    start = time.perf_counter()
    proc = subprocess.Popen([MFSTORE, "--home", home, "ui", "--port", "0"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    elapsed = time.perf_counter() - start
    proc.terminate()
    proc.wait()
    if "mfstore UI on" not in line:
        raise RuntimeError(f"the UI did not start: {line}")
    return elapsed


def imported(command: str) -> set[str]:
    """The heavy modules a command imports (via `python -X importtime`)."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c",
                          f"import sys; sys.argv = {command!r}.split(); from cli.main import main;"
                          " main()"], capture_output=True, text=True)
    names = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    return {n for n in ("torch", "onnx", "onnxruntime") if n in names}


def imported_by_ui() -> set[str]:
    """The heavy modules the UI imports before it serves (what `mfstore ui` runs first)."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c",
                          "import cli.main, serving.listening, pages.app"],
                         capture_output=True, text=True)
    names = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    return {n for n in ("torch", "onnx", "onnxruntime") if n in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    home = tempfile.mkdtemp()
    for setup in (["init"], ["data", "add", "iris", "sklearn:iris"],
                  ["train", "net", "--data", "iris", "--arch", "dense:8", "--epochs", "1",
                   "--baseline", "none"]):
        subprocess.run([MFSTORE, "--home", home, *setup], check=True, capture_output=True)
    reads = ["layers list", "layers show net.l1@1", "layers show net.l1@1 --json",
             "nets list", "nets show net", "nets show net --json"]
    commands = {'python -c "import torch"': [sys.executable, "-c", "import torch"],
                "mfstore --help": [MFSTORE, "--help"],
                **{f"mfstore {r}": [MFSTORE, "--home", home, *r.split()] for r in reads}}
    times: dict[str, list[float]] = {name: [] for name in [*commands, "mfstore ui (listening)"]}
    for _ in range(args.runs):
        for name, command in commands.items():
            times[name].append(seconds(command))
        times["mfstore ui (listening)"].append(ui_seconds(home))
    torch_time = statistics.median(times['python -c "import torch"'])
    rows = []
    for name, values in times.items():
        if name.startswith("python"):
            heavy = "—"
        elif name.startswith("mfstore ui"):
            heavy = ", ".join(sorted(imported_by_ui())) or "none"
        else:
            heavy = ", ".join(sorted(imported(" ".join(["mfstore", *commands[name][1:]])))) \
                or "none"
        rows.append([name, f"{statistics.median(values):.3f}",
                     f"{statistics.median(values) / torch_time:.2f}", heavy])
    print(f"median of {args.runs} new processes each, alternating\n")
    print_table(["command", "seconds", "× import torch", "imports torch/onnx/ort"], rows)
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / "cli_startup.json").write_text(json.dumps(times, indent=1))


if __name__ == "__main__":
    main()
