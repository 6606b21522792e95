"""Serving latency over loopback against a direct ONNX Runtime call (the server's overhead).

    python benchmarks/serving.py                  # 2x1000 MLP on 784 inputs, as in the paper
    python benchmarks/serving.py --requests 500

Starts `mfstore serve` as a user would, then times requests one at a time over one keep-alive
connection (p50, p99, requests per second), single examples and batches of 256, JSON and
binary tensors; the same session settings are timed in this process without HTTP. The
weights are freshly initialised: latency does not depend on them.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import machine, print_table

from mfstore.modules import build_layers
from mfstore.onnx_graph import build_model
from mfstore.spec import build_specs, parse_arch
from serving.models import load_model
from tests.server_run import running_server


def write_repo(root: Path, arch: str) -> None:
    specs = build_specs(parse_arch(arch), (1, 28, 28), 10)
    layers = [layer.eval() for layer in build_layers(specs, 0)]
    model = build_model(layers, "bp", np.zeros((1, 1, 1), np.float32),
                        np.ones((1, 1, 1), np.float32), {})
    (root / "mlp" / "1").mkdir(parents=True)
    (root / "mlp" / "1" / "model.onnx").write_bytes(model.SerializeToString())


def body(x: np.ndarray, binary: bool) -> tuple[bytes, dict[str, str]]:
    if not binary:
        return json.dumps({"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                                       "data": x.ravel().tolist()}]}).encode(), {}
    head = json.dumps({"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
    return head + x.tobytes(), {"Inference-Header-Content-Length": str(len(head))}


def time_requests(port: int, x: np.ndarray, binary: bool, n: int) -> list[float]:
    payload, headers = body(x, binary)
    conn = http.client.HTTPConnection("127.0.0.1", port)
    times = []
    for i in range(n + 20):
        start = time.perf_counter()
        conn.request("POST", "/v2/models/mlp/infer", payload, headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
        if i >= 20:  # warm-up excluded
            times.append(time.perf_counter() - start)
    conn.close()
    return times


def time_direct(model, x: np.ndarray, n: int) -> list[float]:
    times = []
    for i in range(n + 20):
        start = time.perf_counter()
        model.run({"x": x}, ["goodness", "label"])
        if i >= 20:
            times.append(time.perf_counter() - start)
    return times


def throughput(port: int, x: np.ndarray, clients: int, seconds: float) -> float:
    payload, headers = body(x, True)
    done = [0] * clients
    stop = time.perf_counter() + seconds

    def run(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        while time.perf_counter() < stop:
            conn.request("POST", "/v2/models/mlp/infer", payload, headers)
            conn.getresponse().read()
            done[k] += 1

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / seconds


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="dense:1000,dense:1000")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=None, help="server ORT threads")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mf-serving-"))
    write_repo(root / "repo", args.arch)
    direct = load_model("mlp", 1, str(root / "repo" / "mlp" / "1" / "model.onnx"), "cpu",
                        args.threads)
    rng = np.random.default_rng(0)
    cases = {"single": rng.standard_normal((1, 1, 28, 28)).astype(np.float32),
             "batch 256": rng.standard_normal((256, 1, 28, 28)).astype(np.float32)}
    serve_args = ["serve", "--model-repo", str(root / "repo"), "--device", "cpu"]
    if args.threads:
        serve_args += ["--threads", str(args.threads)]
    rows = []
    with running_server(*serve_args) as url:
        port = int(url.rsplit(":", 1)[1])
        for case, x in cases.items():
            n = args.requests if case == "single" else max(args.requests // 8, 50)
            base = time_direct(direct, x, n)
            rows.append([case, "direct ORT", f"{pct(base, 50):.3f}", f"{pct(base, 99):.3f}",
                         f"{1 / statistics.mean(base):.0f}", "—"])
            for binary in (False, True):
                t = time_requests(port, x, binary, n)
                rows.append([case, "HTTP binary" if binary else "HTTP JSON",
                             f"{pct(t, 50):.3f}", f"{pct(t, 99):.3f}",
                             f"{1 / statistics.mean(t):.0f}",
                             f"{pct(t, 50) - pct(base, 50):.3f}"])
        rps = throughput(port, cases["single"], 4, 5.0)
    print(f"# serving {args.arch} on 784 inputs, {machine()}, server and client on one machine")
    print_table(["request", "path", "p50 ms", "p99 ms", "req/s (one client)",
                 "overhead p50 ms"], rows)
    print(f"single binary requests, 4 concurrent clients: {rps:.0f} req/s")


if __name__ == "__main__":
    main()
