"""Serving figures, measured side by side in one run against `mfstore serve` started as a user
would (server and clients on one machine, so on a small machine they share its cores).

    python benchmarks/serving.py                 # every section
    python benchmarks/serving.py --only concurrency --seconds 5
    python benchmarks/serving.py --quick         # shorter runs (a smoke test of the script)

Sections:
  compute      ONNX Runtime alone, in this process: one example vs per example at batch 64
  overhead     one client, one request at a time: HTTP p50 minus ONNX Runtime's p50 is the
               server's own cost per request (single example, binary and JSON tensors)
  concurrency  64 clients sending single examples without pause, dynamic batching off and on:
               requests/s, p50/p99, mean batch formed (from the server's statistics)
  grpc         REST vs gRPC, single example, one client
  reload       8 clients x N requests while a registry alias moves twice: failed requests and
               answers unlike the version that served them (both must be 0)
  workers      64 clients against `serve --workers 1` and `--workers N` (processes sharing
               the port through SO_REUSEPORT), batching off and on

`--device cuda` serves and times on the GPU (the compute, overhead and concurrency sections).

Models: the paper's 2x1000 MLP and its CNN (conv 64-128-256-512) on 1x28x28 inputs, freshly
initialised (latency does not depend on the weights); the reload section trains three small
networks on scikit-learn's digits.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import machine, print_table

from mfstore.modules import build_layers
from mfstore.onnx_graph import build_model
from mfstore.spec import build_specs, parse_arch
from serving.model_config import BatchingOptions
from serving.models import VersionFiles, load_version
from serving.sessions import RuntimeOptions
from tests.server_run import running_server, wait_for

ARCHS = {"mlp": "dense:1000,dense:1000", "cnn": "conv:64,conv:128,conv:256,conv:512"}
SHAPE = (1, 28, 28)


def write_model(root: Path, name: str, arch: str) -> Path:
    """<root>/<name>/1/model.onnx, no config.pbtxt (the server completes one)."""
    specs = build_specs(parse_arch(arch), SHAPE, 10)
    layers = [layer.eval() for layer in build_layers(specs, 0)]
    model = build_model(layers, "bp", np.zeros((1, 1, 1), np.float32),
                        np.ones((1, 1, 1), np.float32), {})
    path = root / name / "1" / "model.onnx"
    path.parent.mkdir(parents=True)
    path.write_bytes(model.SerializeToString())
    return path


def binary_request(model: str, x: np.ndarray, binary_output: bool = True) -> bytes:
    """A whole HTTP/1.1 request with the binary tensor extension."""
    head = json.dumps({"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "parameters": {"binary_data_output": binary_output}}).encode()
    body = head + x.tobytes()
    return (f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: bench\r\n"
            f"Content-Length: {len(body)}\r\nInference-Header-Content-Length: {len(head)}\r\n"
            "\r\n").encode() + body


def json_request(model: str, x: np.ndarray) -> bytes:
    body = json.dumps({"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                                   "data": x.ravel().tolist()}]}).encode()
    return (f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: bench\r\n"
            f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\n\r\n"
            ).encode() + body


LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.I)


async def _client(port: int, request: bytes, deadline: float, warm: float,
                  latencies: list[float], limit: int | None) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0
    while time.perf_counter() < deadline and (limit is None or sent < limit):
        start = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        found = LENGTH.search(head)
        await reader.readexactly(int(found[1]) if found else 0)
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.decode(errors="replace"))
        sent += 1
        if start >= warm:
            latencies.append(time.perf_counter() - start)
    writer.close()


def closed_loop(port: int, request: bytes, clients: int, seconds: float,
                limit: int | None = None) -> tuple[list[float], float]:
    """`clients` connections, each sending `request` again as soon as it is answered, for
    `seconds` after a warm-up second; the latencies and the measured span."""
    latencies: list[float] = []

    async def run() -> float:
        warm = time.perf_counter() + (1.0 if limit is None else 0.0)
        deadline = warm + seconds
        await asyncio.gather(*(_client(port, request, deadline, warm, latencies, limit)
                               for _ in range(clients)))
        return time.perf_counter() - warm

    span = asyncio.run(run())
    return latencies, span


def ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def get_json(url: str, path: str) -> dict:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("GET", path)
    data = json.loads(conn.getresponse().read())
    conn.close()
    return data


def executions(url: str, model: str) -> tuple[int, int]:
    """(examples, executions) the server has run for `model`."""
    (stats,) = get_json(url, f"/v2/models/{model}/stats")["model_stats"]
    return stats["inference_count"], stats["execution_count"]


DEVICE = "cpu"  # --device


def direct_times(path: Path, x: np.ndarray, n: int) -> list[float]:
    """ONNX Runtime alone, with the server's session settings, in this process."""
    files = VersionFiles(str(path), None)
    model = load_version("m", 1, files, RuntimeOptions(DEVICE), BatchingOptions())
    times = []
    for i in range(n + 20):
        start = time.perf_counter()
        model.run({"x": x})
        if i >= 20:
            times.append(time.perf_counter() - start)
    return times


def section_compute(paths: dict[str, Path], n: int) -> list[list[str]]:
    rng = np.random.default_rng(0)
    rows = []
    for name, path in paths.items():
        one = direct_times(path, rng.standard_normal((1, *SHAPE), dtype=np.float32), n)
        many = direct_times(path, rng.standard_normal((64, *SHAPE), dtype=np.float32), n // 8)
        rows.append([name, f"{ms(one, 50):.3f}", f"{ms(many, 50) / 64:.3f}",
                     f"{ms(one, 50) / (ms(many, 50) / 64):.1f}x"])
    print("\n## ONNX Runtime alone (in this process)")
    print_table(["model", "batch 1: ms/example", "batch 64: ms/example",
                 "gain from batching"], rows)
    return rows


def sequential(port: int, request: bytes, n: int) -> tuple[list[float], int]:
    """One client on one connection (a blocking socket: the cheapest client Python has), one
    request at a time: the latencies after 20 warm-up requests, and the answers' body length."""
    times = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(n + 20):
            start = time.perf_counter()
            sock.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(1 << 16)
            head, _, body = data.partition(b"\r\n\r\n")
            found = LENGTH.search(head)
            length = int(found[1]) if found else 0
            while len(body) < length:
                body += sock.recv(1 << 16)
            if i >= 20:
                times.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode(errors="replace"))
    return times, length


def floor_server(port_file: str, answer_bytes: int) -> None:
    """The floor: a server that does nothing but read one HTTP request by its Content-Length
    and write a canned answer of `answer_bytes` (uvloop, no HTTP framework)."""
    answer = (f"HTTP/1.1 200 OK\r\ncontent-length: {answer_bytes}\r\n\r\n").encode() + (
        b"x" * answer_bytes)

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport, self.data = transport, b""

        def data_received(self, data: bytes) -> None:
            self.data += data
            while b"\r\n\r\n" in self.data:
                head, _, body = self.data.partition(b"\r\n\r\n")
                found = LENGTH.search(head)
                length = int(found[1]) if found else 0
                if len(body) < length:
                    return
                self.data = body[length:]
                self.transport.write(answer)  # type: ignore[attr-defined]

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0)
        Path(port_file).write_text(str(server.sockets[0].getsockname()[1]))
        await server.serve_forever()

    import uvloop
    uvloop.run(main())


def floor_times(request: bytes, answer_bytes: int, n: int) -> list[float]:
    import subprocess

    with tempfile.TemporaryDirectory() as folder:
        port_file = Path(folder) / "port"
        process = subprocess.Popen([sys.executable, __file__, "--floor-server", str(port_file),
                                    str(answer_bytes)])
        try:
            wait_for(lambda: port_file.exists() and port_file.read_text(), 30, "the floor")
            return sequential(int(port_file.read_text()), request, n)[0]
        finally:
            process.terminate()
            process.wait()


def section_overhead(repo: Path, paths: dict[str, Path], n: int) -> None:
    """The server's own cost per request: its p50 minus ONNX Runtime's alone, and that minus
    the floor (the same client and loopback against a server that only reads the request and
    writes an answer of the same size), all measured in this run."""
    x = np.random.default_rng(1).standard_normal((1, *SHAPE), dtype=np.float32)
    base = ms(direct_times(paths["mlp"], x, n), 50)
    rows, floors = [], {}
    for batching in ("--no-batching", "--batching"):
        with running_server("serve", "--model-repo", str(repo), "--device", DEVICE,
                            "--max-batch-size", "64", batching) as server:
            port = int(server.url.rsplit(":", 1)[1])
            for kind, request in (("binary", binary_request("mlp", x)),
                                  ("JSON", json_request("mlp", x))):
                t, answer_bytes = sequential(port, request, n)
                if kind not in floors:
                    floors[kind] = ms(floor_times(request, answer_bytes, n), 50)
                rows.append([batching.removeprefix("--"), kind, f"{ms(t, 50):.3f}",
                             f"{ms(t, 99):.3f}", f"{1 / statistics.mean(t):.0f}",
                             f"{ms(t, 50) - base:.3f}", f"{floors[kind]:.3f}",
                             f"{ms(t, 50) - base - floors[kind]:.3f}"])
    print(f"\n## One client, single 2x1000-MLP examples (ONNX Runtime alone: p50 {base:.3f} ms)")
    print_table(["batching", "tensors", "p50 ms", "p99 ms", "req/s", "minus ORT p50 ms",
                 "floor p50 ms", "server's own p50 ms"], rows)


def section_concurrency(repo: Path, clients: int, seconds: float, delays: list[int]) -> None:
    x = np.random.default_rng(2).standard_normal((1, *SHAPE), dtype=np.float32)
    settings = [("off", ["--no-batching"]), ("on", ["--batching"])] + [
        (f"on, delay {d} us", ["--batching", "--max-queue-delay-us", str(d)]) for d in delays]
    rows, rps = [], {}
    for name in ARCHS:
        for label, flags in settings:
            with running_server("serve", "--model-repo", str(repo), "--device", DEVICE,
                                "--max-batch-size", "64", *flags) as server:
                port = int(server.url.rsplit(":", 1)[1])
                closed_loop(port, binary_request(name, x), clients, 0.5)  # warm every size
                before = executions(server.url, name)
                latencies, span = closed_loop(port, binary_request(name, x), clients, seconds)
                after = executions(server.url, name)
            examples, runs = (a - b for a, b in zip(after, before, strict=True))
            rps[name, label] = len(latencies) / span
            rows.append([name, label, f"{rps[name, label]:.0f}",
                         f"{rps[name, label] / rps[name, 'off']:.2f}x",
                         f"{ms(latencies, 50):.2f}", f"{ms(latencies, 99):.2f}",
                         f"{examples / max(runs, 1):.1f}"])
    print(f"\n## {clients} clients, single examples, closed loop, {seconds:.0f} s each")
    print_table(["model", "dynamic batching", "req/s", "vs off", "p50 ms", "p99 ms",
                 "mean batch"], rows)


def section_grpc(repo: Path, n: int) -> None:
    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc

    x = np.random.default_rng(3).standard_normal((1, *SHAPE), dtype=np.float32)
    request = pb.ModelInferRequest(model_name="mlp", raw_input_contents=[x.tobytes()])
    request.inputs.add(name="x", datatype="FP32", shape=x.shape)
    rows = []
    with running_server("serve", "--model-repo", str(repo), "--device", DEVICE,
                        "--grpc-port", "0") as server:
        port = int(server.url.rsplit(":", 1)[1])
        rest = sequential(port, binary_request("mlp", x), n)
        with grpc.insecure_channel(server.grpc) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            times = []
            for i in range(n + 20):
                start = time.perf_counter()
                stub.ModelInfer(request)
                if i >= 20:
                    times.append(time.perf_counter() - start)
    for label, t in (("REST (binary tensors)", rest), ("gRPC (raw contents)", times)):
        rows.append([label, f"{ms(t, 50):.3f}", f"{ms(t, 99):.3f}",
                     f"{1 / statistics.mean(t):.0f}"])
    print("\n## REST vs gRPC, one client, single 2x1000-MLP examples")
    print_table(["protocol", "p50 ms", "p99 ms", "req/s"], rows)


def section_reload(root: Path, clients: int, requests: int) -> None:
    from mfstore.config import TrainConfig
    from mfstore.importing import import_dataset
    from mfstore.store_training import train_network
    from mfstore.workspace import Workspace
    from tests.serving_setup import pytorch_goodness, raw_test_examples

    ws = Workspace.init(home=str(root / "home"))
    import_dataset(ws, "digits", "sklearn:digits")
    for seed in (1, 2, 3):
        train_network(ws, "net", "digits", "dense:64",
                      TrainConfig(epochs=1, batch_size=64, device="cpu", seed=seed))
    raw = raw_test_examples(ws)
    expected = {v: pytorch_goodness(ws, f"net@{v}", "bp", raw) for v in (1, 2, 3)}
    ws.registry.set_alias("network", "net", "prod", 1)
    done = [0] * clients
    failed, wrong, served = [], [], {1: 0, 2: 0, 3: 0}
    with running_server("--home", str(root / "home"), "serve", "net@prod",
                        "--poll-seconds", "0.2") as server:
        port = int(server.url.rsplit(":", 1)[1])

        def client(k: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for r in range(requests):
                i = (k * 997 + r * 31) % len(raw)
                conn.request("POST", "/v2/models/net/infer", *binary_request_body(raw[i:i + 1]))
                answer = conn.getresponse()
                body = answer.read()
                done[k] += 1
                if answer.status != 200:
                    failed.append(body[:200])
                    continue
                version, goodness = decode_goodness(answer, body)
                served[version] += 1
                want = expected[version][i:i + 1]
                if np.abs(goodness - want).max() > 1e-4 * np.abs(want).max():
                    wrong.append(version)
            conn.close()

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        total = clients * requests
        for version, share in ((2, 1 / 3), (3, 2 / 3)):
            wait_for(lambda s=share: sum(done) >= s * total, timeout=600)
            ws.registry.set_alias("network", "net", "prod", version)
        for t in threads:
            t.join()
        span = time.perf_counter() - start
    print(f"\n## Hot reload: {clients} clients x {requests} requests while net@prod moves "
          "1 -> 2 -> 3")
    print_table(["requests", "failed", "unlike their version", "served by v1 / v2 / v3",
                 "req/s"],
                [[str(total), str(len(failed)), str(len(wrong)),
                  " / ".join(str(served[v]) for v in (1, 2, 3)), f"{total / span:.0f}"]])


def section_workers(repo: Path, clients: int, seconds: float, workers: int) -> None:
    x = np.random.default_rng(4).standard_normal((1, *SHAPE), dtype=np.float32)
    request, rows, rps = binary_request("mlp", x), [], {}
    for batching in ("--no-batching", "--batching"):
        for count in (1, workers):
            with running_server("serve", "--model-repo", str(repo), "--device", DEVICE,
                                "--max-batch-size", "64", batching, "--workers", str(count),
                                "--poll-seconds", "0") as server:
                port = int(server.url.rsplit(":", 1)[1])
                closed_loop(port, request, clients, 0.5)
                before = executions(server.url, "mlp")
                latencies, span = closed_loop(port, request, clients, seconds)
                after = executions(server.url, "mlp")
            examples, runs = (a - b for a, b in zip(after, before, strict=True))
            key = batching.removeprefix("--")
            rps[key, count] = len(latencies) / span
            rows.append([key, str(count), f"{rps[key, count]:.0f}",
                         f"{rps[key, count] / rps[key, 1]:.2f}x", f"{ms(latencies, 50):.2f}",
                         f"{ms(latencies, 99):.2f}", f"{examples / max(runs, 1):.1f}"])
    print(f"\n## {clients} clients, single 2x1000-MLP examples: `serve --workers N` "
          f"(processes sharing the port)")
    print_table(["dynamic batching", "processes", "req/s", "vs 1 process", "p50 ms", "p99 ms",
                 "mean batch"], rows)


def binary_request_body(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    head = json.dumps({"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "outputs": [{"name": "goodness",
                                    "parameters": {"binary_data": True}}]}).encode()
    return head + x.tobytes(), {"Inference-Header-Content-Length": str(len(head))}


def decode_goodness(answer: http.client.HTTPResponse, body: bytes) -> tuple[int, np.ndarray]:
    size = int(answer.headers["Inference-Header-Content-Length"])
    head = json.loads(body[:size])
    return int(head["model_version"]), np.frombuffer(body[size:], np.float32).reshape(1, -1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="compute,overhead,concurrency,grpc,reload,workers")
    parser.add_argument("--requests", type=int, default=2000, help="per sequential run")
    parser.add_argument("--seconds", type=float, default=8.0, help="per concurrency run")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--delay-us", type=int, nargs="*", default=[500],
                        help="also batch with these max_queue_delay_microseconds")
    parser.add_argument("--reload-requests", type=int, default=2000, help="per reload client")
    parser.add_argument("--workers", type=int, default=2, help="processes, workers section")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--quick", action="store_true", help="short runs")
    parser.add_argument("--floor-server", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_server:
        floor_server(args.floor_server[0], int(args.floor_server[1]))
        return
    global DEVICE
    DEVICE = args.device
    if args.quick:
        args.requests, args.seconds, args.reload_requests = 200, 1.0, 100
    root = Path(tempfile.mkdtemp(prefix="mf-serving-"))
    paths = {name: write_model(root / "repo", name, arch) for name, arch in ARCHS.items()}
    sections: dict[str, Callable[[], object]] = {
        "compute": lambda: section_compute(paths, args.requests),
        "overhead": lambda: section_overhead(root / "repo", paths, args.requests),
        "concurrency": lambda: section_concurrency(root / "repo", args.clients, args.seconds,
                                                   args.delay_us),
        "grpc": lambda: section_grpc(root / "repo", args.requests),
        "reload": lambda: section_reload(root, 8, args.reload_requests),
        "workers": lambda: section_workers(root / "repo", args.clients, args.seconds,
                                           args.workers),
    }
    print(f"# mfstore serve on {machine()}; server and clients on this machine")
    for name in args.only.split(","):
        sections[name]()


if __name__ == "__main__":
    main()
