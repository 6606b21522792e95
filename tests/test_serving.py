"""A real `mfstore serve` on a loopback port, called by plain HTTP and by Triton's client:
the v2 REST core, Triton's config / statistics / metrics endpoints, classification, and every
bad request answered with a 4xx while the server goes on serving."""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import re
import socket
import subprocess
import threading
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
import tritonclient.http as triton
from google.protobuf import json_format, text_format
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import model_config_pb2 as mc

from tests.cli_run import MFSTORE
from tests.server_run import running_server, wait_for
from tests.serving_setup import SHAPE, digits_repository, pytorch_goodness


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    home = tmp_path_factory.mktemp("serve")
    ws, repo, raw = digits_repository(home, epochs=3)
    expected = {mode: pytorch_goodness(ws, "net@1", mode, raw) for mode in ("bp", "ff")}
    user = tmp_path_factory.mktemp("user")  # the server's $HOME: ONNX Runtime must leave it be
    with running_server("--home", str(home), "serve", "--model-repo", str(repo), "net@1",
                        env={"HOME": str(user), "XDG_CACHE_HOME": str(user / ".cache")}
                        ) as server:
        yield {"url": server.url, "server": server, "home": home, "repo": repo, "raw": raw,
               "expected": expected, "user": user, "ws": ws}


def request(url, method, path, body=None, headers=None):
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), data


def infer_json(x, **extra):
    return json.dumps({"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                                   "data": x.ravel().tolist()}], **extra}).encode()


def get_json(url, path):
    status, _, body = request(url, "GET", path)
    assert status == 200, body
    return json.loads(body)


def test_health_and_metadata_endpoints(setup):
    url = setup["url"]
    assert request(url, "GET", "/v2/health/live")[::2] == (200, b'{"live":true}')
    assert request(url, "GET", "/v2/health/ready")[::2] == (200, b'{"ready":true}')
    assert get_json(url, "/v2")["extensions"] == [
        "binary_tensor_data", "classification", "model_configuration", "model_repository",
        "model_repository(unload_dependents)", "statistics"]
    for path in ("/v2/models/digits-mlp", "/v2/models/digits-mlp/versions/1"):
        meta = get_json(url, path)
        assert meta["versions"] == ["1"]
        assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, *SHAPE]}]
        assert meta["outputs"] == [{"name": "goodness", "datatype": "FP32", "shape": [-1, 10]},
                                   {"name": "label", "datatype": "INT64", "shape": [-1, 1]}]
        assert meta["parameters"]["execution_provider"] == "CPUExecutionProvider"
        assert meta["parameters"]["mfstore.network"] == "net"
        assert meta["parameters"]["dynamic_batching"] is True
    for path in ("/v2/models/digits-ff/ready", "/v2/models/digits-ff/versions/1/ready"):
        assert get_json(url, path)["ready"] is True


@pytest.mark.parametrize("model,mode", [("digits-mlp", "bp"), ("digits-ff", "ff"), ("net", "bp")])
def test_json_inference_equals_pytorch(setup, model, mode):
    x, expected = setup["raw"][:40], setup["expected"][mode][:40]
    status, _, body = request(setup["url"], "POST", f"/v2/models/{model}/infer",
                              infer_json(x, id="req-7"))
    out = json.loads(body)
    assert status == 200 and out["id"] == "req-7" and out["model_version"] == "1"
    goodness = np.array(out["outputs"][0]["data"], np.float32).reshape(out["outputs"][0]["shape"])
    assert np.abs(goodness - expected).max() / np.abs(expected).max() <= 1e-4
    assert out["outputs"][1]["shape"] == [40, 1]
    assert out["outputs"][1]["data"] == expected.argmax(1).tolist()


def test_nested_data_and_selected_outputs(setup):
    x = setup["raw"][:3]
    body = json.dumps({"inputs": [{"name": "x", "shape": [3, *SHAPE], "datatype": "FP32",
                                   "data": x.tolist()}], "outputs": [{"name": "label"}]})
    status, _, data = request(setup["url"], "POST", "/v2/models/digits-mlp/versions/1/infer",
                              body.encode())
    out = json.loads(data)
    assert status == 200 and [o["name"] for o in out["outputs"]] == ["label"]
    assert out["outputs"][0]["data"] == setup["expected"]["bp"][:3].argmax(1).tolist()


def test_binary_tensors_with_the_triton_client(setup):
    client = triton.InferenceServerClient(setup["server"].address)
    assert client.is_server_live() and client.is_model_ready("digits-mlp")
    x = setup["raw"][:64]
    inp = triton.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    outputs = [triton.InferRequestedOutput("goodness", binary_data=True),
               triton.InferRequestedOutput("label", binary_data=True)]
    result = client.infer("digits-mlp", [inp], outputs=outputs, request_id="bin-1")
    expected = setup["expected"]["bp"][:64]
    assert result.get_response()["id"] == "bin-1"
    assert np.array_equal(result.as_numpy("label"), expected.argmax(1)[:, None])
    assert np.abs(result.as_numpy("goodness") - expected).max() / np.abs(expected).max() <= 1e-4


def test_binary_framing_by_hand(setup):
    x = setup["raw"][:2]
    head = json.dumps({"inputs": [{"name": "x", "shape": [2, *SHAPE], "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
    status, headers, body = request(setup["url"], "POST", "/v2/models/digits-mlp/infer",
                                    head + x.tobytes(),
                                    {"Inference-Header-Content-Length": str(len(head))})
    assert status == 200 and headers["content-type"] == "application/octet-stream"
    size = int(headers["inference-header-content-length"])
    meta = json.loads(body[:size])
    goodness_bytes = meta["outputs"][0]["parameters"]["binary_data_size"]
    label = np.frombuffer(body[size + goodness_bytes:], np.int64)
    assert label.tolist() == setup["expected"]["bp"][:2].argmax(1).tolist()


def test_classification_gives_top_k_with_labels(setup):
    """Triton's classification extension: "value:index:label", largest first, per example."""
    client = triton.InferenceServerClient(setup["server"].address)
    x, expected = setup["raw"][:5], setup["expected"]["bp"][:5]
    inp = triton.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    for binary in (True, False):
        result = client.infer("digits-mlp", [inp], outputs=[
            triton.InferRequestedOutput("goodness", binary_data=binary, class_count=3)])
        top = result.as_numpy("goodness")
        assert top.shape == (5, 3) and result.get_output("goodness")["datatype"] == "BYTES"
        for row, scores in zip(top, expected, strict=True):
            parts = [item.decode().split(":") if isinstance(item, bytes) else item.split(":")
                     for item in row]
            order = np.argsort(-scores)[:3]
            assert [int(p[1]) for p in parts] == order.tolist()
            assert [p[2] for p in parts] == [str(i) for i in order]  # digits' class names
            assert np.allclose([float(p[0]) for p in parts], scores[order], atol=1e-5)


def test_non_finite_results_are_valid_json(setup):
    """An infinite input (binary data) makes NaN goodness: JSON gets "NaN" strings, which
    Triton's client reads back as NaN, never a bare NaN no JSON parser takes."""
    x = setup["raw"][:2].copy()
    x[0, 0, 0, 0] = np.inf
    head = json.dumps({"inputs": [{"name": "x", "shape": [2, *SHAPE], "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}]}).encode()
    status, _, body = request(setup["url"], "POST", INFER, head + x.tobytes(),
                              {"Inference-Header-Content-Length": str(len(head))})

    def strict(constant):
        raise ValueError(f"bare {constant}")

    out = json.loads(body, parse_constant=strict)
    assert status == 200
    goodness = np.array(out["outputs"][0]["data"], np.float32).reshape(2, 10)
    assert set(out["outputs"][0]["data"][:10]) <= {"NaN", "Infinity", "-Infinity"}
    assert not np.isfinite(goodness[0]).any() and np.isfinite(goodness[1]).all()


def test_config_endpoint_is_the_repository_config(setup):
    client = triton.InferenceServerClient(setup["server"].address)
    on_disk = text_format.Parse((setup["repo"] / "digits-mlp" / "config.pbtxt").read_text(),
                                mc.ModelConfig())
    served = json_format.ParseDict(client.get_model_config("digits-mlp"), mc.ModelConfig())
    assert served.version_policy.latest.num_versions == 1 and served.instance_group[0].count == 1
    served.ClearField("version_policy")  # what the server completes, as Triton does
    assert served == on_disk
    config = get_json(setup["url"], "/v2/models/net/versions/1/config")
    assert config["max_batch_size"] == 1024 and config["input"][0]["dims"] == SHAPE
    assert config["output"][0]["label_filename"] == "labels.txt"
    assert config["parameters"]["mfstore.mode"] == {"string_value": "bp"}


def _stats(url, model):
    (stats,) = get_json(url, f"/v2/models/{model}/stats")["model_stats"]
    return stats


def test_statistics_count_requests_examples_and_failures(setup):
    url = setup["url"]
    before = _stats(url, "digits-ff")
    for n in (1, 3, 5):
        assert request(url, "POST", "/v2/models/digits-ff/infer",
                       infer_json(setup["raw"][:n]))[0] == 200
    assert request(url, "POST", "/v2/models/digits-ff/infer", b"{}")[0] == 400
    after = _stats(url, "digits-ff")
    s0, s1 = before["inference_stats"], after["inference_stats"]
    assert (after["name"], after["version"]) == ("digits-ff", "1")
    assert s1["success"]["count"] - s0["success"]["count"] == 3
    assert s1["fail"]["count"] - s0["fail"]["count"] == 1
    assert after["inference_count"] - before["inference_count"] == 9
    assert after["execution_count"] - before["execution_count"] == 3  # one client: no batches
    for part in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
        assert s1[part]["ns"] > s0[part]["ns"]
    sizes = {b["batch_size"] for b in after["batch_stats"]}
    assert {1, 3, 5} <= sizes
    everything = triton.InferenceServerClient(setup["server"].address).get_inference_statistics()
    assert [(s["name"], s["version"]) for s in everything["model_stats"]] == [
        ("digits-ff", "1"), ("digits-mlp", "1"), ("net", "1")]


SAMPLE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)')


def _metric(url, name, **labels):
    """A sample's value as Prometheus stores it: under the name the text gives it (what a
    dashboard's query names), None when there is none."""
    status, _, body = request(url, "GET", "/metrics")
    assert status == 200
    text = body.decode()
    list(text_string_to_metric_families(text))  # the text parses as Prometheus text
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        sample, pairs, value = SAMPLE.fullmatch(line).groups()
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', pairs or ""))
        if sample == name and all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


def test_metrics_are_prometheus_text_named_like_triton(setup):
    url = setup["url"]
    assert request(url, "POST", "/v2/models/net/infer", infer_json(setup["raw"][:4]))[0] == 200
    assert request(url, "POST", "/v2/models/net/infer", b"[]")[0] == 400
    stats = _stats(url, "net")
    net = {"model": "net", "version": "1"}
    assert _metric(url, "nv_inference_request_success", **net) == \
        stats["inference_stats"]["success"]["count"]
    assert _metric(url, "nv_inference_count", **net) == stats["inference_count"]
    assert _metric(url, "nv_inference_exec_count", **net) == stats["execution_count"]
    assert _metric(url, "nv_inference_request_failure", reason="REJECTED", **net) == \
        stats["inference_stats"]["fail"]["count"]
    assert _metric(url, "mfstore_inference_request_duration_seconds_count", **net) == \
        stats["inference_stats"]["success"]["count"]
    assert _metric(url, "mfstore_inference_batch_size_bucket", le="4.0", **net) >= 1
    assert _metric(url, "nv_inference_compute_infer_duration_us", **net) == pytest.approx(
        stats["inference_stats"]["compute_infer"]["ns"] / 1000)
    assert _metric(url, "nv_gpu_memory_used_bytes") is None  # no NVIDIA driver here
    types = dict(line.split()[2:4] for line in request(url, "GET", "/metrics")[2].decode()
                 .splitlines() if line.startswith("# TYPE "))
    assert types["nv_inference_request_success"] == types["nv_inference_count"] == "counter"
    assert types["mfstore_inference_batch_size"] == "histogram"


BAD = json.dumps({"inputs": [{"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32",
                              "data": [0.0] * 64}]})


def bad_input(**changes):
    item = {"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}
    return json.dumps({"inputs": [{**item, **changes}]}).encode()


def with_output(**output):
    return json.dumps({"inputs": json.loads(BAD)["inputs"], "outputs": [output]}).encode()


INFER = "/v2/models/digits-mlp/infer"


@pytest.mark.parametrize("path,body,headers,status,message", [
    (INFER, b"{not json", {}, 400, "malformed JSON: Expecting property name"),
    (INFER, b"[1, 2]", {}, 400, "the request must be a JSON object"),
    (INFER, b"[" * 5000 + b"]" * 5000, {}, 400, "malformed JSON: nested too deeply"),
    (INFER, BAD.replace("0.0", "NaN", 1).encode(), {}, 400,
     "malformed JSON: NaN is not JSON; send such values as binary data"),
    ("/v2/models/nope/infer", b"{}", {}, 404,
     "unknown model 'nope'; this server has digits-ff, digits-mlp, net"),
    ("/v2/models/digits-mlp/versions/7/infer", b"{}", {}, 404,
     "model 'digits-mlp' has no version '7'; it has 1"),
    ("/v2/models/digits-mlp/versions/" + "9" * 5000 + "/infer", b"{}", {}, 400,
     "model version must be a whole number, got '999999999999999999999999…'"),
    ("/v2/models/digits-mlp/versions/1.0/infer", b"{}", {}, 400,
     "model version must be a whole number, got '1.0'"),
    (INFER, b'{"inputs": []}', {}, 400, "the request needs a non-empty list of inputs"),
    (INFER, bad_input(name="y"), {}, 400, "unknown input 'y'; the model takes x"),
    (INFER, bad_input(name=["x"]), {}, 400, "unknown input ['x']; the model takes x"),
    (INFER, bad_input(name={"x": 1}), {}, 400, "unknown input {'x': 1}; the model takes x"),
    (INFER, json.dumps({"inputs": [json.loads(BAD)["inputs"][0]] * 2}).encode(), {}, 400,
     "input 'x' is given twice"),
    (INFER, bad_input(shape=[1, 64]), {}, 400,
     "input 'x' has shape [1, 64], the model expects [-1, 1, 8, 8] (-1: any size >= 1)"),
    (INFER, bad_input(shape="1,1,8,8"), {}, 400,
     "input 'x': shape must be a list of whole numbers >= 0"),
    (INFER, bad_input(datatype="FP64"), {}, 400,
     "input 'x' has datatype 'FP64', the model expects FP32"),
    (INFER, bad_input(data=[0.0] * 63), {}, 400,
     "input 'x' has 63 values, shape [1, 1, 8, 8] needs 64"),
    (INFER, bad_input(data=["a"] * 64), {}, 400,
     "input 'x': data must be (nested lists of) numbers for FP32"),
    (INFER, bad_input(data=["1"] * 64), {}, 400,
     "input 'x': data must be (nested lists of) numbers for FP32"),
    (INFER, bad_input(data=[[0.0] * 8] * 7 + [[0.0] * 9]), {}, 400,
     "input 'x': data must be (nested lists of) numbers of one shape"),
    (INFER, bad_input(data=[10 ** 400] + [0] * 63), {}, 400,
     "input 'x': data holds a number that FP32 cannot hold"),
    (INFER, bad_input(data=[1e39] + [0] * 63), {}, 400,
     "input 'x': a value lies outside the range of FP32"),
    (INFER, bad_input(shape=[1025, 1, 8, 8], data=[0.0] * 1025 * 64), {}, 400,
     "inference request batch-size must be <= 1024 for 'digits-mlp', got 1025"),
    (INFER, with_output(name="probs"), {}, 400,
     "unknown output 'probs'; the model gives goodness, label"),
    (INFER, with_output(name=["label"]), {}, 400,
     "unknown output ['label']; the model gives goodness, label"),
    (INFER, with_output(name="label", parameters={"binary_data": "yes"}), {}, 400,
     "output 'label': binary_data must be true or false"),
    (INFER, with_output(name="goodness", parameters={"classification": 11}), {}, 400,
     "output 'goodness': classification must be a whole number in 1..10 (its values per "
     "example), got 11"),
    (INFER, with_output(name="goodness", parameters={"classification": "3"}), {}, 400,
     "output 'goodness': classification must be a whole number in 1..10 (its values per "
     "example), got '3'"),
    (INFER, with_output(name="label", parameters={"classification": 2}), {}, 400,
     "output 'label': classification must be a whole number in 1..1"),
    (INFER, b'{"inputs": []}', {"Inference-Header-Content-Length": "99"},
     400, "Inference-Header-Content-Length is 99 but the body holds 14 bytes"),
    (INFER, b'{"inputs": []}', {"Inference-Header-Content-Length": "x"},
     400, "Inference-Header-Content-Length must be a whole number, got 'x'"),
    (INFER, b'{"inputs": []}', {"Inference-Header-Content-Length": "\u00b2"},
     400, "Inference-Header-Content-Length must be a whole number, got '\u00b2'"),
    (INFER, b'{"inputs": []}', {"Inference-Header-Content-Length": "9" * 5000},
     400, "Inference-Header-Content-Length must lie in 0..9223372036854775807, got a "
          "5000-digit number"),
    (INFER, json.dumps({"inputs": [{
        "name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32",
        "parameters": {"binary_data_size": 100}}]}).encode(), {}, 400,
     "input 'x': binary_data_size is 100 but shape [1, 1, 8, 8] of FP32 needs 256 bytes"),
    (INFER, json.dumps({"inputs": [{
        "name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32",
        "parameters": {"binary_data_size": 256}}]}).encode(), {}, 400,
     "input 'x': the body ends 256 bytes before its binary data does"),
    ("/v2/models/nope/config", b"", {}, 404, "unknown model 'nope'"),
    ("/v2/models/digits-mlp/versions/x/stats", b"", {}, 400,
     "model version must be a whole number, got 'x'"),
    ("/v2/repository/models/digits-mlp/load", b'{"parameters": {"config": "{}"}}', {}, 400,
     "loading with a configuration or files given in the request is not supported"),
    ("/v2/repository/models/nope/unload", b"", {}, 404,
     "no model named 'nope' in the repository"),
    ("/v2/repository/index", b'{"ready": "yes"}', {}, 400, "ready must be true or false"),
    ("/v2/nowhere", b"", {}, 404, "Not Found: see the v2 protocol's endpoints under /v2"),
])
def test_bad_requests_get_a_4xx_and_the_server_keeps_serving(setup, path, body, headers, status,
                                                             message):
    method = "POST" if path.endswith(("infer", "load", "unload", "index")) else "GET"
    got, _, data = request(setup["url"], method, path, body, headers)
    assert got == status
    assert json.loads(data)["error"].startswith(message)
    ok, _, answer = request(setup["url"], "POST", INFER, infer_json(setup["raw"][:1]))
    assert ok == 200 and json.loads(answer)["outputs"][1]["data"] == [
        int(setup["expected"]["bp"][0].argmax())]


def test_trailing_bytes_and_wrong_method(setup):
    x = setup["raw"][:1]
    head = json.dumps({"inputs": [{"name": "x", "shape": [1, *SHAPE], "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}]}).encode()
    status, _, body = request(setup["url"], "POST", INFER, head + x.tobytes() + b"junk",
                              {"Inference-Header-Content-Length": str(len(head))})
    assert status == 400
    assert json.loads(body)["error"] == "the body holds 4 bytes after the announced binary data"
    status, _, body = request(setup["url"], "GET", INFER)
    assert status == 405 and json.loads(body)["error"].startswith("Method Not Allowed")


def test_a_client_leaving_mid_upload_is_one_canceled_request_not_a_traceback(setup):
    url, server = setup["url"], setup["server"]
    u = urlparse(url)
    before = _metric(url, "nv_inference_request_failure", model="digits-mlp",
                     version="1", reason="CANCELED")
    for _ in range(3):
        with socket.create_connection((u.hostname, u.port)) as sock:
            sock.sendall(b"POST /v2/models/digits-mlp/infer HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: 100000\r\n\r\n" + b"{" * 1000)
    wait_for(lambda: _metric(url, "nv_inference_request_failure", model="digits-mlp",
                             version="1", reason="CANCELED") == before + 3,
             what="three canceled requests")
    assert request(url, "POST", INFER, infer_json(setup["raw"][:1]))[0] == 200
    assert "Traceback" not in server.output() and "Exception" not in server.output()


def test_sixteen_concurrent_clients_two_thousand_requests(setup):
    raw, labels = setup["raw"], setup["expected"]["bp"].argmax(1)
    u = urlparse(setup["url"])
    failures: list[str] = []

    def client(seed: int) -> None:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        for _ in range(125):
            i = rng.randrange(len(raw) - 4)
            n = rng.choice([1, 2, 4])
            conn.request("POST", INFER, infer_json(raw[i:i + n]))
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                failures.append(f"{response.status} {body[:100]!r}")
            elif json.loads(body)["outputs"][1]["data"] != labels[i:i + n].tolist():
                failures.append(f"wrong answer for examples {i}..{i + n}")
        conn.close()

    threads = [threading.Thread(target=client, args=(s,)) for s in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_onnx_runtime_left_the_users_home_alone(setup):
    assert list(setup["user"].iterdir()) == []


def test_serving_a_registered_network_with_a_token_and_a_size_limit(setup):
    args = ("--home", str(setup["home"]), "serve", "net@1", "--token", "s3cret",
            "--max-request-mb", "0.001")
    with running_server(*args) as server:
        url = server.url
        for path in ("/v2/models/net", "/v2/models/net/config", "/v2/models/net/stats",
                     "/metrics"):
            status, _, body = request(url, "GET", path)
            assert status == 401 and json.loads(body) == {"error": "missing or wrong bearer token"}
        auth = {"Authorization": "Bearer s3cret"}
        status, _, body = request(url, "GET", "/v2/models/net", headers=auth)
        assert status == 200 and json.loads(body)["parameters"]["mfstore.mode"] == "bp"
        status, _, body = request(url, "POST", "/v2/models/net/infer",
                                  infer_json(setup["raw"][:1]), auth)
        assert status == 200
        big = infer_json(setup["raw"][:20])
        status, _, body = request(url, "POST", "/v2/models/net/infer", big, auth)
        assert status == 413
        assert json.loads(body)["error"] == (f"request of {len(big)} bytes exceeds the limit of "
                                             "1048 bytes")


def test_require_gpu_refuses_to_start_without_cuda(setup):
    from tests.cli_run import mfstore

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = mfstore("--home", str(setup["home"]), "serve", "net@1", "--require-gpu")
    assert out.returncode == 5
    assert out.stderr.strip().splitlines()[-1] == (
        "error: CUDA was requested, but model 'net' version 1 (net@1 of the registry) would run "
        "on CPUExecutionProvider: ONNX Runtime could not use CUDA; check the CUDA libraries, or "
        "serve on the CPU")
    assert "listening" not in out.stderr


def test_a_client_too_slow_with_its_headers_is_cut_off_and_others_are_served(setup):
    """slowloris: connections that trickle their headers (or send nothing) are closed once
    --header-timeout passes; a prompt client on a kept-alive connection is served meanwhile,
    however long it stays connected between requests."""
    import time

    home, repo = setup["home"], setup["repo"]
    with running_server("--home", str(home), "serve", "--model-repo", str(repo),
                        "--header-timeout", "1", "--poll-seconds", "0") as server:
        host, port = server.address.split(":")
        slow = [socket.create_connection((host, int(port)), timeout=10) for _ in range(20)]
        silent = socket.create_connection((host, int(port)), timeout=10)
        for s in slow:
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
        prompt = http.client.HTTPConnection(host, int(port), timeout=10)  # one kept-alive
        started = time.monotonic()
        for _ in range(4):  # 2 s of trickled headers, longer than the timeout
            for s in slow:
                with contextlib.suppress(OSError):  # once cut off, sending may fail
                    s.sendall(b"X-Slow: 1\r\n")
            prompt.request("GET", "/v2/health/live")
            answer = prompt.getresponse()
            assert (answer.status, answer.read()) == (200, b'{"live":true}')
            time.sleep(0.5)
        for s in [*slow, silent]:
            s.settimeout(5)
            rest = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := s.recv(4096):
                    rest += chunk
            assert rest == b""  # closed, never answered
        assert time.monotonic() - started < 8
        prompt.close()
        for s in [*slow, silent]:
            s.close()
    bad = subprocess.run([MFSTORE, "--home", str(home), "serve", "--model-repo", str(repo),
                          "--header-timeout", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: the header timeout must lie in (0, 3600] seconds, got 0.0"
