"""A real `mfstore serve` on a loopback port, called by plain HTTP and by Triton's client."""

from __future__ import annotations

import http.client
import json
import random
import threading
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
import tritonclient.http as triton

from mfstore.config import TrainConfig
from mfstore.export import export_network
from mfstore.importing import import_dataset
from mfstore.network import load_network
from mfstore.store_training import train_network
from mfstore.stream import StreamBatches
from mfstore.stream_chain import dataset_stream
from mfstore.workspace import Workspace
from tests.server_run import running_server

SHAPE = [1, 8, 8]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    home = tmp_path_factory.mktemp("serve")
    ws = Workspace.init(home=str(home))
    import_dataset(ws, "digits", "sklearn:digits")
    train_network(ws, "net", "digits", "dense:32,dense:32",
                  TrainConfig(epochs=3, batch_size=64, lr=0.01, device="cpu"))
    repo = home / "triton"
    export_network(ws, "net@1", "bp", triton_repo=str(repo), model_name="digits-mlp")
    export_network(ws, "net@1", "ff", triton_repo=str(repo), model_name="digits-ff")
    dataset = ws.registry.dataset("digits")
    mean, std = (np.asarray(dataset.normalizer[k], np.float32) for k in ("mean", "std"))
    source = StreamBatches(ws.store, dataset_stream(ws, dataset), "test", 1)
    x = torch.cat([b[0] for b in source.ordered()]).numpy()
    raw = (x * std + mean).astype(np.float32)  # what a client holds: pixels 0..16
    expected = {}
    with torch.no_grad():
        for mode in ("bp", "ff"):
            expected[mode] = load_network(ws, "net@1", mode)(torch.from_numpy(x)).numpy()
    with running_server("--home", str(home), "serve", "--model-repo", str(repo)) as url:
        yield {"url": url, "home": home, "raw": raw, "expected": expected}


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


def test_health_and_metadata_endpoints(setup):
    url = setup["url"]
    assert request(url, "GET", "/v2/health/live")[::2] == (200, b'{"live":true}')
    assert request(url, "GET", "/v2/health/ready")[::2] == (200, b'{"ready":true}')
    status, _, body = request(url, "GET", "/v2")
    assert status == 200 and json.loads(body)["extensions"] == ["binary_tensor_data"]
    for path in ("/v2/models/digits-mlp", "/v2/models/digits-mlp/versions/1"):
        status, _, body = request(url, "GET", path)
        meta = json.loads(body)
        assert status == 200 and meta["versions"] == ["1"]
        assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, *SHAPE]}]
        assert meta["outputs"] == [{"name": "goodness", "datatype": "FP32", "shape": [-1, 10]},
                                   {"name": "label", "datatype": "INT64", "shape": [-1]}]
        assert meta["parameters"]["execution_provider"] == "CPUExecutionProvider"
        assert meta["parameters"]["mfstore.network"] == "net"
    for path in ("/v2/models/digits-ff/ready", "/v2/models/digits-ff/versions/1/ready"):
        status, _, body = request(url, "GET", path)
        assert status == 200 and json.loads(body)["ready"] is True


@pytest.mark.parametrize("model,mode", [("digits-mlp", "bp"), ("digits-ff", "ff")])
def test_json_inference_equals_pytorch(setup, model, mode):
    x, expected = setup["raw"][:40], setup["expected"][mode][:40]
    status, _, body = request(setup["url"], "POST", f"/v2/models/{model}/infer",
                                    infer_json(x, id="req-7"))
    out = json.loads(body)
    assert status == 200 and out["id"] == "req-7" and out["model_version"] == "1"
    goodness = np.array(out["outputs"][0]["data"], np.float32).reshape(out["outputs"][0]["shape"])
    assert np.abs(goodness - expected).max() / np.abs(expected).max() <= 1e-4
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
    client = triton.InferenceServerClient(urlparse(setup["url"]).netloc)
    assert client.is_server_live() and client.is_model_ready("digits-mlp")
    x = setup["raw"][:64]
    inp = triton.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    outputs = [triton.InferRequestedOutput("goodness", binary_data=True),
               triton.InferRequestedOutput("label", binary_data=True)]
    result = client.infer("digits-mlp", [inp], outputs=outputs, request_id="bin-1")
    assert result.get_response()["id"] == "bin-1"
    assert np.array_equal(result.as_numpy("label"), setup["expected"]["bp"][:64].argmax(1))
    expected = setup["expected"]["bp"][:64]
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



@pytest.mark.parametrize("path,body,headers,status,message", [
    ("/v2/models/digits-mlp/infer", b"{not json", {}, 400, "malformed JSON: "),
    ("/v2/models/digits-mlp/infer", b"[1, 2]", {}, 400, "the request must be a JSON object"),
    ("/v2/models/nope/infer", b"{}", {}, 404,
     "unknown model 'nope'; this server has digits-ff, digits-mlp"),
    ("/v2/models/digits-mlp/versions/7/infer", b"{}", {}, 404,
     "model 'digits-mlp' has no version '7'; it has 1"),
    ("/v2/models/digits-mlp/infer", b'{"inputs": []}', {}, 400,
     "the request needs a non-empty list of inputs"),
    ("/v2/models/digits-mlp/infer",
     b'{"inputs": [{"name": "y", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": []}]}', {},
     400, "unknown input 'y'; the model takes x"),
    ("/v2/models/digits-mlp/infer",
     b'{"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": []}]}', {}, 400,
     "input 'x' has shape [1, 64], the model expects [-1, 1, 8, 8] (-1: any size >= 1)"),
    ("/v2/models/digits-mlp/infer",
     b'{"inputs": [{"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP64", "data": []}]}', {},
     400, "input 'x' has datatype 'FP64', the model expects FP32"),
    ("/v2/models/digits-mlp/infer", json.dumps({"inputs": [{
        "name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 63}]}).encode(),
     {}, 400, "input 'x' has 63 values, shape [1, 1, 8, 8] needs 64"),
    ("/v2/models/digits-mlp/infer", json.dumps({"inputs": [{
        "name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": ["a"] * 64}]}).encode(),
     {}, 400, "input 'x': data must be (nested lists of) numbers"),
    ("/v2/models/digits-mlp/infer", json.dumps({"inputs": [{
        "name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}],
        "outputs": [{"name": "probs"}]}).encode(), {}, 400,
     "unknown output 'probs'; the model gives goodness, label"),
    ("/v2/models/digits-mlp/infer", b'{"inputs": []}', {"Inference-Header-Content-Length": "99"},
     400, "Inference-Header-Content-Length is 99 but the body holds 14 bytes"),
    ("/v2/models/digits-mlp/infer", b'{"inputs": []}', {"Inference-Header-Content-Length": "x"},
     400, "Inference-Header-Content-Length must be a whole number, got 'x'"),
    ("/v2/models/digits-mlp/infer", json.dumps({"inputs": [{
        "name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32",
        "parameters": {"binary_data_size": 100}}]}).encode(), {}, 400,
     "input 'x': binary_data_size is 100 but shape [1, 1, 8, 8] of FP32 needs 256 bytes"),
    ("/v2/models/digits-mlp/infer", json.dumps({"inputs": [{
        "name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32",
        "parameters": {"binary_data_size": 256}}]}).encode(), {}, 400,
     "input 'x': the body ends 256 bytes before its binary data does"),
    ("/v2/nowhere", b"", {}, 404, "Not Found: see the v2 protocol's endpoints under /v2"),
])
def test_bad_requests_get_a_4xx_and_the_server_keeps_serving(setup, path, body, headers, status,
                                                             message):
    method = "POST" if path.endswith("infer") else "GET"
    got, _, data = request(setup["url"], method, path, body, headers)
    assert got == status
    assert json.loads(data)["error"].startswith(message)
    ok, _, answer = request(setup["url"], "POST", "/v2/models/digits-mlp/infer",
                            infer_json(setup["raw"][:1]))
    assert ok == 200 and json.loads(answer)["outputs"][1]["data"] == [
        int(setup["expected"]["bp"][0].argmax())]


def test_trailing_bytes_and_wrong_method(setup):
    x = setup["raw"][:1]
    head = json.dumps({"inputs": [{"name": "x", "shape": [1, *SHAPE], "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}]}).encode()
    status, _, body = request(setup["url"], "POST", "/v2/models/digits-mlp/infer",
                              head + x.tobytes() + b"junk",
                              {"Inference-Header-Content-Length": str(len(head))})
    assert status == 400
    assert json.loads(body)["error"] == "the body holds 4 bytes after the announced binary data"
    status, _, body = request(setup["url"], "GET", "/v2/models/digits-mlp/infer")
    assert status == 405 and json.loads(body)["error"].startswith("Method Not Allowed")


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
            conn.request("POST", "/v2/models/digits-mlp/infer", infer_json(raw[i:i + n]))
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


def test_serving_a_registered_network_with_a_token_and_a_size_limit(setup):
    args = ("--home", str(setup["home"]), "serve", "net@1", "--token", "s3cret",
            "--max-request-mb", "0.001")
    with running_server(*args) as url:
        status, _, body = request(url, "GET", "/v2/models/net")
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
    assert out.stderr.strip().splitlines() == [
        "model net version 1 runs on CPUExecutionProvider",  # the provider in use is logged
        "error: --require-gpu: net version 1 would run on CPUExecutionProvider; no usable CUDA "
        "device"]
