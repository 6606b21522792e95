"""ONNX export: parity with PyTorch in both modes, what the graph holds, Triton repositories."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from mfstore.errors import ConfigError, ConflictError, ExportError, MFStoreError
from mfstore.export import export_network
from mfstore.network import load_network
from tests.serving_setup import digits_workspace, train


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = digits_workspace(tmp_path_factory.mktemp("export"))
    train(ws, "mlp", "dense:32,dense:16:act=gelu")
    train(ws, "cnn", "conv:8,conv:8:pool=max,dense:16:act=tanh")
    return ws


def _raw_inputs(ws, n=50):
    dataset = ws.registry.dataset("digits")
    mean, std = (np.asarray(dataset.normalizer[k], np.float32) for k in ("mean", "std"))
    x = np.random.default_rng(1).uniform(0, 16, (n, 1, 8, 8)).astype(np.float32)  # raw pixels
    return x, mean, std


@pytest.mark.parametrize("net", ["mlp", "cnn"])
@pytest.mark.parametrize("mode", ["bp", "ff"])
def test_export_matches_pytorch(ws, tmp_path, net, mode):
    result = export_network(ws, f"{net}@1", mode, out=str(tmp_path / "m.onnx"))
    assert result.max_relative_error <= 1e-4
    model = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 17
    x, mean, std = _raw_inputs(ws)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    goodness, label = session.run(["goodness", "label"], {"x": x})
    with torch.no_grad():
        expected = load_network(ws, f"{net}@1", mode)(torch.from_numpy((x - mean) / std)).numpy()
    assert np.abs(goodness - expected).max() / np.abs(expected).max() <= 1e-4
    assert label.shape == (len(x), 1) and label.dtype == np.int64  # (B, 1), as Triton has it
    assert np.array_equal(label[:, 0], expected.argmax(1))
    assert [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim][:1] == ["batch"]
    projections = [i.name for i in model.graph.initializer if i.name.endswith("projection")]
    layers = len(json.loads(_props(model)["mfstore.layers"]))
    assert len(projections) == (1 if mode == "bp" else layers)


def _props(model):
    return {p.key: p.value for p in model.metadata_props}


def test_metadata_records_network_blocks_mode_shape_and_normalisation(ws, tmp_path):
    export_network(ws, "mlp@1", "ff", upto=1, out=str(tmp_path / "m.onnx"))
    props = _props(onnx.load(str(tmp_path / "m.onnx")))
    layer = ws.registry.layer("mlp.l1", "1")
    assert props["mfstore.network"] == "mlp" and props["mfstore.network_version"] == "1"
    assert json.loads(props["mfstore.layers"]) == [
        {"ref": "mlp.l1@1", "block_sha256": layer.block_sha256, "digest": layer.digest}]
    assert props["mfstore.mode"] == "ff" and props["mfstore.upto"] == "1"
    assert json.loads(props["mfstore.input_shape"]) == [1, 8, 8]
    norm = json.loads(props["mfstore.normalization"])
    assert norm["in_graph"] and norm["mean"] == ws.registry.dataset("digits").normalizer["mean"]
    records = ws.registry.exports("mlp")
    assert records[-1].target == str(tmp_path / "m.onnx") and records[-1].upto == 1


def test_triton_repository_matches_the_model(ws, tmp_path):
    repo = tmp_path / "triton"
    result = export_network(ws, "cnn@1", "bp", upto=2, triton_repo=str(repo),
                            max_batch_size=256)
    config = text_format.Parse((repo / "cnn" / "config.pbtxt").read_text(), mc.ModelConfig())
    model = onnx.load(str(repo / "cnn" / "1" / "model.onnx"))
    assert result.targets == [str(repo / "cnn" / "1" / "model.onnx")]
    assert (config.name, config.platform) == ("cnn", "onnxruntime_onnx")
    assert config.max_batch_size == 256
    assert config.HasField("dynamic_batching") and len(config.instance_group) == 1
    assert {k: v.string_value for k, v in config.parameters.items()} == {
        "mfstore.network": "cnn", "mfstore.mode": "bp", "mfstore.upto": "2"}
    onnx_types = {1: "TYPE_FP32", 7: "TYPE_INT64"}
    pairs = ((config.input, model.graph.input), (config.output, model.graph.output))
    for declared, actual in pairs:
        assert [d.name for d in declared] == [a.name for a in actual]
        for d, a in zip(declared, actual, strict=True):
            dims = [x.dim_value or -1 for x in a.type.tensor_type.shape.dim]
            assert mc.DataType.Name(d.data_type) == onnx_types[a.type.tensor_type.elem_type]
            assert dims[0] == -1  # the batch axis, which Triton leaves out of dims
            assert list(d.dims) == dims[1:] and not d.HasField("reshape")  # one truth
    labels = (repo / "cnn" / "labels.txt").read_text().splitlines()
    assert config.output[0].label_filename == "labels.txt"
    assert labels == ws.registry.dataset("digits").class_names == [str(i) for i in range(10)]


@pytest.mark.parametrize("name", ["../../evil", "a/b", "x\ny", ".hidden", ""])
def test_a_model_name_is_checked_like_a_layer_name(ws, tmp_path, name):
    with pytest.raises(ConfigError, match=re.escape(
            f"invalid model name {name!r}: use letters, digits, '.', '_' and '-'")):
        export_network(ws, "mlp@1", triton_repo=str(tmp_path / "repo"), model_name=name)
    assert list(tmp_path.iterdir()) == []


def test_a_repository_version_is_never_overwritten(ws, tmp_path):
    repo = tmp_path / "repo"
    export_network(ws, "mlp@1", "bp", triton_repo=str(repo))
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    again = export_network(ws, "mlp@1", "bp", triton_repo=str(repo))  # same bytes: a no-op
    assert again.targets == [str(repo / "mlp" / "1" / "model.onnx")]
    with pytest.raises(ConflictError, match=re.escape(
            f"{repo}/mlp/config.pbtxt already exists with other content (another mode, layer "
            "count or batch size); export under another model name")):
        export_network(ws, "mlp@1", "ff", triton_repo=str(repo))
    with pytest.raises(ConflictError, match=re.escape(f"{repo}/mlp/config.pbtxt already exists")):
        export_network(ws, "mlp@1", "bp", triton_repo=str(repo), max_batch_size=8)
    assert {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()} == before
    export_network(ws, "mlp@1", "ff", triton_repo=str(repo), model_name="mlp-ff")  # its own
    assert (repo / "mlp-ff" / "1" / "model.onnx").exists()


def test_a_failed_write_leaves_no_out_file(ws, tmp_path):
    out = tmp_path / "m.onnx"
    blocker = tmp_path / "repo"
    blocker.write_text("a file where the repository folder should be")
    with pytest.raises(MFStoreError):
        export_network(ws, "mlp@1", "bp", out=str(out), triton_repo=str(blocker))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]
    with pytest.raises(ConfigError, match=re.escape(
            f"cannot write {tmp_path}: it is a folder; name a file")):
        export_network(ws, "mlp@1", "bp", out=str(tmp_path))


def test_a_full_disk_leaves_nothing_and_names_the_option_that_chose_the_file(ws, tmp_path,
                                                                            monkeypatch):
    """The disk holding --out fills while the file is written: one error naming --out (not
    the store), no temporary file, no half-written model, no export recorded."""
    import errno
    import os

    import mfstore.store

    folder = tmp_path / "full"
    folder.mkdir()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(folder)):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(mfstore.store.os, "fsync", fsync)
    before = len(ws.registry.exports())
    with pytest.raises(MFStoreError) as caught:
        export_network(ws, "mlp@1", "bp", out=str(folder / "m.onnx"))
    assert str(caught.value) == (f"cannot write {folder}/m.onnx: [Errno 28] No space left on "
                                 "device; set 'out'")
    assert list(folder.iterdir()) == [] and len(ws.registry.exports()) == before


@pytest.mark.parametrize("target,option,message", [
    ("nosuch://x/y.onnx", "out", "cannot read nosuch://x/y.onnx: Protocol not known: nosuch"),
    ("nosuch://x/repo", "triton_repo",
     "cannot read nosuch://x/repo/mlp/config.pbtxt: Protocol not known: nosuch"),
])
def test_a_target_no_file_system_knows_is_one_line_naming_its_option(ws, target, option,
                                                                     message):
    before = len(ws.registry.exports())
    with pytest.raises(MFStoreError) as caught:
        export_network(ws, "mlp@1", "bp", **{option: target})
    assert caught.value.message == message
    assert [f.name for f in caught.value.fixes] == [option]
    assert len(ws.registry.exports()) == before


def test_a_failed_parity_check_is_an_error_and_writes_nothing(ws, tmp_path, monkeypatch):
    import mfstore.export

    before = len(ws.registry.exports())
    monkeypatch.setattr(mfstore.export, "TOLERANCE", 0.0)  # the real check, made impossible
    with pytest.raises(ExportError, match=re.escape(
            "ONNX Runtime disagrees with PyTorch on mlp@1 (relative error")):
        export_network(ws, "mlp@1", "bp", out=str(tmp_path / "m.onnx"),
                       triton_repo=str(tmp_path / "repo"))
    assert list(tmp_path.iterdir()) == [] and len(ws.registry.exports()) == before


def test_export_needs_a_target_and_a_valid_upto(ws):
    with pytest.raises(ConfigError, match=re.escape(
            "say where to export: an ONNX file, a Triton repository or both")):
        export_network(ws, "mlp@1")
    with pytest.raises(ConfigError, match=re.escape(
            "upto must lie in 1..2 for mlp@1, the number of its layers to export")):
        export_network(ws, "mlp@1", upto=3, out="x.onnx")


@pytest.mark.slow
def test_export_through_the_cli(ws, tmp_path):
    from tests.cli_run import mfstore

    out = mfstore("--home", ws.home, "export", "mlp@1", "--mode", "ff", "--out",
                  str(tmp_path / "f.onnx"), "--triton-repo", str(tmp_path / "repo"), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["mode"] == "ff" and report["max_relative_error"] <= 1e-4
    assert report["targets"] == [str(tmp_path / "f.onnx"), str(tmp_path / "repo/mlp/1/model.onnx")]
    assert (tmp_path / "repo" / "mlp" / "config.pbtxt").exists()
    bad = mfstore("--home", ws.home, "export", "mlp@1", "--mode", "sum", "--out", "x.onnx")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: unknown prediction mode 'sum'; choose bp or ff"


def test_export_leaves_no_telemetry_in_the_users_home(ws, tmp_path):
    """ONNX Runtime would create ~/.cache/Microsoft/DeveloperTools unless told not to."""
    from tests.cli_run import mfstore

    home = tmp_path / "user"
    home.mkdir()
    out = mfstore("--home", ws.home, "export", "mlp@1", "--out", str(tmp_path / "m.onnx"),
                  env={"HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")})
    assert out.returncode == 0, out.stderr
    assert list(home.iterdir()) == []


def test_cuda_serving_is_refused_without_a_gpu(ws):
    from tests.cli_run import mfstore

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = mfstore("--home", ws.home, "serve", "mlp@1", "--device", "cuda")
    assert out.returncode == 5
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith("error: CUDA was requested, but model 'mlp' version 1")
    preloaded = "CUDA and cuDNN libraries preloaded (onnxruntime.preload_dlls)"
    assert preloaded in lines  # before the first CUDA session, which then failed
    assert "listening" not in out.stderr
