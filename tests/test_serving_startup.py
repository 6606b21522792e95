"""`mfstore serve` refuses what it cannot serve with one line and an exit code, before it
says it is listening: impossible ports, a port in use, an empty token, a request limit that is
not a positive number, unreadable or inconsistent models and configurations. (In process: the
refusals happen before any serving starts.)"""

from __future__ import annotations

import shutil
import socket

import pytest
from typer.testing import CliRunner

from cli.main import app
from mfstore.export import export_network
from tests.serving_setup import digits_workspace, train


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    home = tmp_path_factory.mktemp("startup")
    ws = digits_workspace(home)
    train(ws, "net", "dense:16", epochs=1)
    export_network(ws, "net@1", "bp", triton_repo=str(home / "triton"), model_name="m")
    return home / "triton"


@pytest.fixture(scope="module")
def taken_port():
    """A port in use: should a refusal ever fail to come, the server cannot bind and exits
    (with a message the test does not expect) instead of serving forever."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


@pytest.fixture
def serve(taken_port):
    def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
        """Exit code and the lines written to stderr (a later --port wins)."""
        result = CliRunner().invoke(app, ["serve", "--port", str(taken_port), *args], env=env)
        return result.exit_code, result.stderr.strip().splitlines()
    return invoke


def broken_copy(repo, tmp_path, config: str | None = None, model: bytes | None = None):
    """A copy of the repository with its config.pbtxt or model.onnx replaced."""
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy)
    if config is not None:
        (copy / "m" / "config.pbtxt").write_text(config)
    if model is not None:
        (copy / "m" / "1" / "model.onnx").write_bytes(model)
    return copy


@pytest.mark.parametrize("args,message", [
    (["--port", "99999"], "port 99999 does not exist: use 1..65535, or 0 for any free port"),
    (["--port", "-1"], "port -1 does not exist: use 1..65535, or 0 for any free port"),
    (["--grpc-port", "70000"],
     "gRPC port 70000 does not exist: use 1..65535, or 0 for any free port"),
    (["--token", ""], "the bearer token is empty, which would let anyone in; give a token, or "
                      "none to serve without authentication"),
    (["--max-request-mb", "0"], "the request size limit must be a positive number of MB, got 0.0"),
    (["--max-request-mb", "-5"],
     "the request size limit must be a positive number of MB, got -5.0"),
    (["--max-request-mb", "nan"],
     "the request size limit must be a positive number of MB, got nan"),
    (["--max-request-mb", "inf"],
     "the request size limit must be a positive number of MB, got inf"),
    (["--poll-seconds", "-1"],
     "the polling interval must be a number of seconds >= 0 (0: never), got -1.0"),
    (["--max-batch-size", "0"],
     "the max batch size must lie in 1..2147483647 (Triton's int32), got 0"),
    (["--max-batch-size", str(2**31)],
     "the max batch size must lie in 1..2147483647 (Triton's int32), got 2147483648"),
    (["--max-queue-delay-us", "-1"],
     "the max queue delay must lie in 0..100000000 microseconds, got -1"),
    (["--threads", "0"], "ONNX Runtime threads must lie in 1..1024, got 0"),
    (["--device", "tpu"], "unknown device 'tpu'; use auto, cpu, cuda or cuda:N"),
])
def test_impossible_options_are_refused_in_one_line(serve, repo, args, message):
    code, lines = serve("--model-repo", str(repo), *args)
    assert code == 2 and lines == [f"error: {message}"]


def test_an_empty_token_variable_is_refused_like_an_empty_option(serve, repo):
    code, lines = serve("--model-repo", str(repo), env={"MFSTORE_TOKEN": ""})
    assert code == 2 and lines == ["error: the bearer token is empty, which would let anyone "
                                   "in; give a token, or none to serve without authentication"]


def test_a_port_in_use_is_refused_and_listening_is_never_announced(serve, repo, taken_port):
    code, lines = serve("--model-repo", str(repo))
    assert code == 2
    assert lines[-1] == (f"error: cannot listen on 127.0.0.1:{taken_port}: Address already in "
                         "use; pass --port")
    assert not any("listening" in line for line in lines)


def test_a_truncated_model_is_refused_in_one_line(serve, repo, tmp_path):
    model = (repo / "m" / "1" / "model.onnx").read_bytes()
    copy = broken_copy(repo, tmp_path, model=model[:len(model) // 2])
    code, lines = serve("--model-repo", str(copy))
    assert code == 4 and len(lines) == 1
    assert lines[0].startswith(f"error: cannot load model 'm' version 1 "
                               f"({copy}/m/1/model.onnx): ONNX Runtime says: ")
    assert lines[0].endswith("; export it again")


@pytest.mark.parametrize("config,code,message", [
    ("name: 'm' max_batch_size: [", 4, "{copy}/m/config.pbtxt is not a model configuration: "),
    ("name: 'other' max_batch_size: 4", 2, "model 'm' version 1 ({copy}/m/1/model.onnx): the "
     "configuration names model 'other', its folder is 'm'; they must agree"),
    ("name: 'm' platform: 'tensorrt_plan'", 2, "model 'm' version 1 ({copy}/m/1/model.onnx): "
     "platform 'tensorrt_plan' / backend '' is not ONNX Runtime's"),
    ("name: 'm' max_batch_size: 4 input { name: 'x' data_type: TYPE_FP32 dims: [64] }", 2,
     "model 'm' version 1 ({copy}/m/1/model.onnx): input 'x' is declared [-1, 64] (batch axis "
     "first when max_batch_size > 0), the model's is [-1, 1, 8, 8]"),
    ("name: 'm' max_batch_size: 4 input { name: 'x' data_type: TYPE_INT64 dims: [1, 8, 8] }", 2,
     "model 'm' version 1 ({copy}/m/1/model.onnx): input 'x' is declared TYPE_INT64, the "
     "model's is tensor(float)"),
    ("name: 'm' max_batch_size: 0 dynamic_batching {}", 2,
     "model 'm' version 1 ({copy}/m/1/model.onnx): dynamic batching needs max_batch_size > 0"),
    ("name: 'm' version_policy { specific { versions: [7] } }", 6,
     "model 'm' has no version to serve (no <version>/model.onnx the version policy chooses)"),
    ("name: 'm' max_batch_size: 4 output { name: 'goodness' data_type: TYPE_FP32 dims: [10] "
     "label_filename: '../../etc/passwd' }", 2, "{copy}/m/config.pbtxt: label_filename "
     "'../../etc/passwd' must name a file in the model's folder"),
])
def test_a_bad_configuration_is_refused_in_one_line(serve, repo, tmp_path, config, code,
                                                   message):
    copy = broken_copy(repo, tmp_path, config=config)
    got, lines = serve("--model-repo", str(copy))
    assert got == code and len(lines) in (1, 2)  # a model that did load is logged first
    assert lines[-1].startswith("error: " + message.format(copy=copy))


def test_a_model_without_configuration_batches_only_when_told_how(serve, repo, tmp_path):
    copy = broken_copy(repo, tmp_path)
    (copy / "m" / "config.pbtxt").unlink()
    (copy / "m" / "labels.txt").unlink()
    code, lines = serve("--model-repo", str(copy), "--batching")
    assert code == 2 and lines[-1] == (
        f"error: model 'm' version 1 ({copy}/m/1/model.onnx): dynamic batching needs a batch "
        "axis, and the model's configuration has max_batch_size 0; give a max batch size")


@pytest.mark.parametrize("layout,code,message", [
    (["bad name/1"], 2, "invalid model name 'bad name': use letters, digits, '.', '_' and '-'"),
    ([], 6, "nothing to serve: name a model repository and/or networks"),
    (["m/extra"], 6, "model 'm' has no version to serve"),
])
def test_a_repository_without_models_is_refused(serve, tmp_path, layout, code, message):
    for folder in layout:
        (tmp_path / folder).mkdir(parents=True)
    got, lines = serve("--model-repo", str(tmp_path))
    assert got == code and lines[-1].startswith(f"error: {message}")
