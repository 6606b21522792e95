"""`mfstore serve --workers N`: N server processes on one REST port and one gRPC port, as a
user runs it. Answers equal PyTorch's whichever process gives them; statistics and /metrics
add every process's requests; unload and load reach every process; a process that dies is
replaced; SIGTERM stops them all; what cannot start is refused in one line with nothing left
running."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tg
from typer.testing import CliRunner

from cli.main import app
from tests.server_run import running_server, wait_for
from tests.serving_setup import digits_repository, pytorch_goodness

REQUESTS = 40


def children(pid: int) -> set[int]:
    return set(map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split()))


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def infer_on_new_connection(address: str, model: str, x: np.ndarray) -> tuple[int, dict]:
    """One request on a connection of its own (SO_REUSEPORT spreads connections, not
    requests, over the processes)."""
    host, port = address.rsplit(":", 1)
    body = json.dumps({"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                                   "data": x.ravel().tolist()}]})
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("POST", f"/v2/models/{model}/infer", body,
                           {"Content-Type": "application/json"})
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as r:
        return bytes(r.read())


def post(url: str) -> int:
    request = urllib.request.Request(url, b"", method="POST")
    with urllib.request.urlopen(request, timeout=120) as r:
        return int(r.status)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    home = tmp_path_factory.mktemp("workers")
    ws, repo, raw = digits_repository(home, epochs=2)
    with running_server("--home", str(home), "serve", "--model-repo", str(repo), "--workers",
                        "2", "--grpc-port", "0", "--poll-seconds", "0") as server:
        yield {"server": server, "raw": raw, "repo": repo,
               "bp": pytorch_goodness(ws, "net@1", "bp", raw)}


def test_two_processes_answer_like_pytorch_and_their_statistics_add_up(setup):
    server, raw, bp = setup["server"], setup["raw"], setup["bp"]
    assert len(children(server.process.pid)) == 2
    stats_url = f"{server.url}/v2/models/digits-mlp/stats"
    before = json.loads(get(stats_url))["model_stats"][0]["inference_count"]
    for i in range(REQUESTS):
        status, answer = infer_on_new_connection(server.address, "digits-mlp", raw[i:i + 1])
        assert status == 200
        goodness = next(o for o in answer["outputs"] if o["name"] == "goodness")
        np.testing.assert_allclose(np.asarray(goodness["data"]).reshape(1, -1), bp[i:i + 1],
                                   rtol=1e-4, atol=1e-5)
    client = tg.InferenceServerClient(server.grpc)
    x = tg.InferInput("x", list(raw[:8].shape), "FP32")
    x.set_data_from_numpy(raw[:8])
    np.testing.assert_allclose(client.infer("digits-mlp", [x]).as_numpy("goodness"), bp[:8],
                               rtol=1e-4, atol=1e-5)
    rest = json.loads(get(stats_url))["model_stats"][0]
    assert rest["inference_count"] - before == REQUESTS + 8
    assert rest["execution_count"] >= REQUESTS + 1
    grpc_stats = client.get_inference_statistics("digits-mlp", as_json=True)["model_stats"][0]
    assert int(grpc_stats["inference_count"]) == rest["inference_count"]
    metrics = get(f"{server.url}/metrics").decode()
    assert (f'nv_inference_count{{model="digits-mlp",version="1"}} '
            f'{float(rest["inference_count"])}') in metrics


def test_unload_and_load_reach_every_process(setup):
    server, raw = setup["server"], setup["raw"]
    assert post(f"{server.url}/v2/repository/models/digits-ff/unload") == 200
    for _ in range(12):
        status, answer = infer_on_new_connection(server.address, "digits-ff", raw[:1])
        assert (status, answer) == (404, {"error": "model 'digits-ff' is not loaded "
                                                   "(unloaded)"})
    assert post(f"{server.url}/v2/repository/models/digits-ff/load") == 200
    for _ in range(12):
        assert infer_on_new_connection(server.address, "digits-ff", raw[:1])[0] == 200


@pytest.mark.slow
def test_a_process_that_dies_is_replaced_and_the_others_answer_meanwhile(setup):
    server, raw = setup["server"], setup["raw"]
    assert post(f"{server.url}/v2/repository/models/digits-ff/unload") == 200
    victim, survivor = sorted(children(server.process.pid))
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in children(server.process.pid), 30, "the supervisor to reap")
    for i in range(12):  # one socket for all: nothing waits for the replacement
        assert infer_on_new_connection(server.address, "digits-mlp", raw[i:i + 1])[0] == 200
    wait_for(lambda: "replaced and ready" in server.output(), 60, "a replacement process")
    assert len(children(server.process.pid)) == 2 and survivor in children(server.process.pid)
    assert "exited with code -9" in server.output()
    for _ in range(12):  # the replacement heard of the unload too
        assert infer_on_new_connection(server.address, "digits-ff", raw[:1])[0] == 404
    assert post(f"{server.url}/v2/repository/models/digits-ff/load") == 200
    for _ in range(12):
        assert infer_on_new_connection(server.address, "digits-ff", raw[:1])[0] == 200


def test_statistics_larger_than_a_pipe_buffer_add_up(setup):
    """Hundreds of batch sizes: each process's statistics are tens of kilobytes."""
    server, raw = setup["server"], setup["raw"]
    pids = children(server.process.pid)
    url = f"{server.url}/v2/models/digits-mlp/stats"
    before = json.loads(get(url))["model_stats"][0]["inference_count"]
    sizes = range(1, 301)
    for size in sizes:
        rows = np.resize(raw, (size, *raw.shape[1:]))
        assert infer_on_new_connection(server.address, "digits-mlp", rows)[0] == 200
    for _ in range(4):
        stats = json.loads(get(url))["model_stats"][0]
        assert stats["inference_count"] - before == sum(sizes)
        assert {b["batch_size"] for b in stats["batch_stats"]} >= set(sizes)
    assert children(server.process.pid) == pids  # nobody stopped or was replaced


def test_a_killed_supervisor_takes_its_processes_with_it(setup):
    with running_server("serve", "--model-repo", str(setup["repo"]), "--workers", "2",
                        "--poll-seconds", "0") as server:
        workers = children(server.process.pid)
        server.process.kill()
        server.process.wait(30)
        wait_for(lambda: not any(alive(pid) for pid in workers), 30, "the processes to stop")


def test_ctrl_c_while_the_models_load_stops_everything_quietly(setup, tmp_path):
    """Ctrl-C half a second after the processes start: a repository of 40 models is still
    loading then, however fast the machine (two models could already be served)."""
    import shutil
    import subprocess
    import time

    from tests.cli_run import MFSTORE_COMMAND

    many = tmp_path / "many"
    for k in range(40):
        shutil.copytree(setup["repo"] / "digits-mlp", many / f"m{k}")
        config = many / f"m{k}" / "config.pbtxt"
        config.write_text(config.read_text().replace('name: "digits-mlp"', f'name: "m{k}"'))
    process = subprocess.Popen([*MFSTORE_COMMAND, "serve", "--model-repo", str(many),
                                "--workers", "2", "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: len(children(process.pid)) == 2, 30, "the processes to start")
    workers = children(process.pid)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    assert "Traceback" not in output and "listening" not in output
    assert not any(alive(pid) for pid in workers)


def test_sigterm_stops_every_process(tmp_path, setup):
    with running_server("serve", "--model-repo", str(setup["repo"]), "--workers", "3",
                        "--poll-seconds", "0") as server:
        workers = children(server.process.pid)
        assert len(workers) == 3
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(60) == 0
    assert not any(alive(pid) for pid in workers)


@pytest.fixture
def taken_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def serve(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["serve", *args])
    return result.exit_code, result.stderr.strip().splitlines()


@pytest.mark.parametrize("count", ["0", "-2", "257"])
def test_an_impossible_number_of_processes_is_refused(setup, count):
    code, lines = serve("--model-repo", str(setup["repo"]), "--workers", count)
    assert code == 2 and lines == [f"error: the number of server processes must lie in "
                                   f"1..256, got {count}"]


@pytest.mark.parametrize("flag,option", [("--port", "--port"), ("--grpc-port", "--grpc-port")])
def test_a_port_in_use_is_refused_before_any_process_starts(setup, taken_port, flag, option):
    code, lines = serve("--model-repo", str(setup["repo"]), "--workers", "2", "--port", "0",
                        flag, str(taken_port))
    assert code == 2 and lines == [f"error: cannot listen on 127.0.0.1:{taken_port}: Address "
                                   f"already in use; pass {option}"]


def test_a_port_another_multi_process_server_holds_is_refused(setup):
    with running_server("serve", "--model-repo", str(setup["repo"]), "--workers", "2",
                        "--poll-seconds", "0") as first:
        port = first.address.rsplit(":", 1)[1]
        code, lines = serve("--model-repo", str(setup["repo"]), "--workers", "2", "--port",
                            port)
        assert code == 2 and lines == [f"error: cannot listen on 127.0.0.1:{port}: Address "
                                       f"already in use; pass --port"]


def test_a_model_that_cannot_load_is_refused_in_one_line_and_nothing_runs(setup, tmp_path):
    import shutil

    copy = tmp_path / "repo"
    shutil.copytree(setup["repo"], copy)
    model = copy / "digits-mlp" / "1" / "model.onnx"
    model.write_bytes(model.read_bytes()[:1000])
    before = children(os.getpid())
    code, lines = serve("--model-repo", str(copy), "--workers", "2", "--port", "0")
    assert code == 4 and len(lines) == 1
    assert lines[0].startswith(f"error: cannot load model 'digits-mlp' version 1 ({model}): "
                               f"ONNX Runtime says: ")
    assert not any(alive(pid) for pid in children(os.getpid()) - before)


def test_what_processes_send_each_other_is_plain_json():
    """Statistics, the spec and start-up errors travel as JSON, never as pickles, and come
    back whole."""
    import pickle

    from serving.launch import Listen, ServeSpec
    from serving.siblings import HEADER, frame, receive
    from serving.statistics import Execution, VersionStats

    stats = VersionStats("m", 3)
    stats.executed(Execution(5, 2, [10, 20], 1, 2, 3))
    stats.request_done(1000)
    stats.request_done(500, "REJECTED")
    back = VersionStats.from_record(json.loads(json.dumps(stats.record())))
    assert back == stats
    spec = ServeSpec(Listen(port=0, grpc_port=0), "repo", ("net@prod",), ("h", None, None))
    assert ServeSpec.from_record(json.loads(json.dumps(spec.to_record()))) == spec
    a, b = socket.socketpair()
    with a, b:
        a.sendall(frame(["ready"]))
        assert receive(b) == ["ready"]
        data = pickle.dumps(("ready",))
        a.sendall(HEADER.pack(len(data)) + data)
        with pytest.raises(ValueError):
            receive(b)
