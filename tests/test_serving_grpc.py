"""Triton's gRPC protocol beside REST on one `mfstore serve`, called with `tritonclient.grpc`:
health, metadata, config, inference (raw and typed contents, classification), statistics,
the repository API, the shared token, models and statistics, and errors with their codes."""

from __future__ import annotations

import json
import urllib.request

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tg
from google.protobuf import text_format
from tritonclient._plugin import InferenceServerClientPlugin
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.server_run import running_server
from tests.serving_setup import SHAPE, digits_repository, pytorch_goodness

TOKEN = "t0k"


class Bearer(InferenceServerClientPlugin):
    def __call__(self, request):
        request.headers["authorization"] = f"Bearer {TOKEN}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    home = tmp_path_factory.mktemp("grpc")
    ws, repo, raw = digits_repository(home, epochs=2)
    with running_server("--home", str(home), "serve", "--model-repo", str(repo),
                        "--grpc-port", "0", "--token", TOKEN, "--max-request-mb", "1") as server:
        client = tg.InferenceServerClient(server.grpc)
        client.register_plugin(Bearer())
        yield {"server": server, "client": client, "raw": raw, "repo": repo,
               "bp": pytorch_goodness(ws, "net@1", "bp", raw)}


def infer_input(x):
    inp = tg.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return inp


def test_health_metadata_and_config(setup):
    client = setup["client"]
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits-mlp") and not client.is_model_ready("nope")
    meta = client.get_server_metadata()
    assert meta.name == "mfstore" and "classification" in meta.extensions
    model = client.get_model_metadata("digits-mlp", as_json=True)
    assert model["versions"] == ["1"] and model["platform"] == "onnxruntime_onnx"
    assert model["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", *map(str, SHAPE)]}]
    assert [o["shape"] for o in model["outputs"]] == [["-1", "10"], ["-1", "1"]]
    served = client.get_model_config("digits-mlp").config
    on_disk = text_format.Parse((setup["repo"] / "digits-mlp" / "config.pbtxt").read_text(),
                                mc.ModelConfig())
    served.ClearField("version_policy")
    assert served == on_disk


def test_inference_equals_pytorch(setup):
    x, expected = setup["raw"][:50], setup["bp"][:50]
    result = setup["client"].infer("digits-mlp", [infer_input(x)], request_id="g-1")
    assert result.get_response().id == "g-1" and result.get_response().model_version == "1"
    goodness = result.as_numpy("goodness")
    assert np.abs(goodness - expected).max() / np.abs(expected).max() <= 1e-4
    assert np.array_equal(result.as_numpy("label"), expected.argmax(1)[:, None])


def test_typed_contents_and_classification(setup):
    """Inputs as fp32_contents (what tritonclient never sends), top-3 classes back."""
    x, expected = setup["raw"][:3], setup["bp"][:3]
    request = pb.ModelInferRequest(model_name="digits-mlp")
    tensor = request.inputs.add(name="x", datatype="FP32", shape=x.shape)
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    out = request.outputs.add(name="goodness")
    out.parameters["classification"].int64_param = 3
    with grpc.insecure_channel(setup["server"].grpc) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(request, metadata=[("authorization", f"Bearer {TOKEN}")])
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("goodness", "BYTES", [3, 3])]
    result = tg.InferResult(response)
    top = result.as_numpy("goodness")
    for row, scores in zip(top, expected, strict=True):
        assert [int(item.split(b":")[1]) for item in row] == np.argsort(-scores)[:3].tolist()


def test_rest_and_grpc_share_models_and_statistics(setup):
    client, server = setup["client"], setup["server"]

    def successes():
        (stats,) = client.get_inference_statistics("digits-ff", as_json=True)["model_stats"]
        return int(stats["inference_stats"]["success"].get("count", 0))

    before = successes()
    client.infer("digits-ff", [infer_input(setup["raw"][:2])])
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, *SHAPE], "datatype": "FP32",
                                   "data": setup["raw"][0].ravel().tolist()}]}).encode()
    rest = urllib.request.Request(f"{server.url}/v2/models/digits-ff/infer", body,
                                  {"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(rest) as answer:
        assert answer.status == 200
    assert successes() == before + 2
    stats = client.get_inference_statistics().model_stats
    assert [(s.name, s.version) for s in stats] == [("digits-ff", "1"), ("digits-mlp", "1")]


def test_repository_index_unload_and_load(setup):
    client = setup["client"]
    index = client.get_model_repository_index(as_json=True)["models"]
    assert index == [{"name": "digits-ff", "version": "1", "state": "READY"},
                     {"name": "digits-mlp", "version": "1", "state": "READY"}]
    client.unload_model("digits-ff")
    assert not client.is_model_ready("digits-ff")
    with pytest.raises(InferenceServerException) as err:
        client.infer("digits-ff", [infer_input(setup["raw"][:1])])
    assert (err.value.status(), err.value.message()) == (
        "StatusCode.NOT_FOUND", "model 'digits-ff' is not loaded (unloaded)")
    assert client.get_model_repository_index(as_json=True)["models"][0] == {
        "name": "digits-ff", "state": "UNAVAILABLE", "reason": "unloaded"}
    client.load_model("digits-ff")
    assert client.is_model_ready("digits-ff")
    assert client.infer("digits-ff", [infer_input(setup["raw"][:1])]).as_numpy("label").shape \
        == (1, 1)


def raw_request(name="x", datatype="FP32", shape=(1, *SHAPE), raw=(b"\0" * 256,),
                output=None) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="digits-mlp", raw_input_contents=raw)
    request.inputs.add(name=name, datatype=datatype, shape=shape)
    if output is not None:
        request.outputs.add(name=output)
    return request


@pytest.mark.parametrize("request_,metadata,code,message", [
    (raw_request(), [], "UNAUTHENTICATED", "missing or wrong bearer token"),
    (pb.ModelInferRequest(model_name="nope"), None, "NOT_FOUND",
     "unknown model 'nope'; this server has digits-ff, digits-mlp"),
    (pb.ModelInferRequest(model_name="digits-mlp", model_version="2"), None, "NOT_FOUND",
     "model 'digits-mlp' has no version '2'; it has 1"),
    (pb.ModelInferRequest(model_name="digits-mlp", model_version="9" * 5000), None,
     "INVALID_ARGUMENT", "model version must be a whole number, got '9999999999999999999999"),
    (raw_request(name="y"), None, "INVALID_ARGUMENT", "unknown input 'y'; the model takes x"),
    (raw_request(datatype="FP16"), None, "INVALID_ARGUMENT",
     "input 'x' has datatype 'FP16', the model expects FP32"),
    (raw_request(shape=[1, 64]), None, "INVALID_ARGUMENT",
     "input 'x' has shape [1, 64], the model expects [-1, 1, 8, 8] (-1: any size >= 1)"),
    (raw_request(raw=[b"\0" * 255]), None, "INVALID_ARGUMENT",
     "input 'x': 255 bytes of data, shape [1, 1, 8, 8] of FP32 needs 256"),
    (raw_request(raw=[b"\0" * 256] * 2), None, "INVALID_ARGUMENT",
     "raw_input_contents holds 2 tensors for 1 inputs"),
    (raw_request(raw=[]), None, "INVALID_ARGUMENT", "input 'x' has 0 values, shape [1, 1, 8, 8] "
     "needs 64"),
    (raw_request(output="probs"), None, "INVALID_ARGUMENT",
     "unknown output 'probs'; the model gives goodness, label"),
])
def test_bad_requests_get_their_code_and_the_server_keeps_serving(setup, request_, metadata,
                                                                  code, message):
    auth = [("authorization", f"Bearer {TOKEN}")] if metadata is None else metadata
    with grpc.insecure_channel(setup["server"].grpc) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(request_, metadata=auth)
    assert err.value.code().name == code
    assert err.value.details().startswith(message)
    ok = setup["client"].infer("digits-mlp", [infer_input(setup["raw"][:1])])
    assert ok.as_numpy("label")[0, 0] == setup["bp"][0].argmax()


def test_a_message_over_the_request_limit_is_refused_by_the_server(setup):
    """--max-request-mb 1 bounds gRPC messages as it bounds REST bodies."""
    big = np.zeros((1024 * 5, *SHAPE), np.float32)  # 1.3 MB
    with pytest.raises(InferenceServerException) as err:
        setup["client"].infer("digits-mlp", [infer_input(big)])
    assert err.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert err.value.message() == "SERVER: Received message larger than max (1310754 vs. 1048576)"


def test_bytes_that_are_not_the_message_are_invalid_argument_and_nothing_is_logged(setup):
    """A client sending junk (or another method's message) gets INVALID_ARGUMENT naming the
    method; a method the server does not offer is UNIMPLEMENTED; the log shows no traceback."""
    server = setup["server"]
    with grpc.insecure_channel(server.grpc) as channel:
        for junk in (b"\xff\xff\xff\xff", b"\x0a\x05abc"):  # not a message; a truncated one
            call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
            with pytest.raises(grpc.RpcError) as caught:
                call(junk, metadata=[("authorization", f"Bearer {TOKEN}")], timeout=10)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert caught.value.details() == "the request is not a valid ModelInfer message"
        stream = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")
        with pytest.raises(grpc.RpcError) as caught:
            list(stream(iter([pb.ModelInferRequest().SerializeToString()]), timeout=10))
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert caught.value.details() == "ModelStreamInfer is not offered by this server"
        shm = channel.unary_unary("/inference.GRPCInferenceService/SystemSharedMemoryStatus")
        with pytest.raises(grpc.RpcError) as caught:
            shm(b"", timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert setup["client"].is_server_live()  # still answering
    log = server.log.read_text()
    assert "Traceback" not in log and "NotImplementedError" not in log, log[-2000:]
