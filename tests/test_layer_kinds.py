"""The `local` and `embed` layer kinds: how they are written, their math by hand, their ONNX
graph against PyTorch, their blocks, and specs that read as they did before they existed."""

from __future__ import annotations

import json
import re
import urllib.request

import numpy as np
import onnxruntime as ort
import pytest
import torch

from mfstore import layer_math
from mfstore.block import LayerBlock
from mfstore.block_header import InputSignature
from mfstore.errors import SpecError
from mfstore.modules import MFLayer, MFNet, build_layers
from mfstore.onnx_graph import build_model
from mfstore.spec import LayerSpec, build_specs, parse_arch


def test_local_options_in_either_style_and_their_defaults():
    assert parse_arch("local:64:kernel=5:stride=2") == parse_arch("local:64:kernel=5,stride=2")
    first, second, head = build_specs(parse_arch("local:8:kernel=4:stride=2,local:4,dense:10"),
                                      (3, 32, 32), 10)
    assert (first.kernel, first.stride, first.pool, first.out_shape) == (4, 2, "none",
                                                                         (8, 15, 15))
    assert (second.kernel, second.stride, second.out_shape) == (3, 1, (4, 13, 13))
    assert head.in_shape == (4, 13, 13)
    pooled = build_specs(parse_arch("local:2:pool=avg"), (1, 6, 6), 3)[0]
    assert pooled.out_shape == (2, 2, 2)


@pytest.mark.parametrize("arch,shape,vocab,message", [
    ("dense:8:kernel=3", (4,), None, "kernel= and stride= apply to local layers, not dense"),
    ("conv:8:vocab=10", (1, 4, 4), None, "vocab= applies to embed layers, not conv"),
    ("local:8:kernel=5", (1, 4, 4), None,
     "a local layer's 5x5 patches do not fit its 4x4 input; use a smaller kernel"),
    ("local:8:stride=0", (1, 4, 4), None,
     "a local layer needs kernel and stride of at least 1, got kernel=3, stride=0"),
    ("local:8:kernel=x", (1, 4, 4), None,
     "kernel must be a whole number, got 'x' in 'local:8:kernel=x'"),
    ("dense:8,local:4", (1, 4, 4), None,
     "a local layer needs (channels, height, width) input, got shape (8,)"),
    ("dense:8,embed:4", (6,), None, "an embed layer reads token ids: it must be the first layer"),
    ("embed:4", (6,), None, "an embed layer reads token ids: it must be the first layer, on "
                            "token-id data (format 'tokens', or a Parquet list column)"),
    ("dense:8", (6,), 50, "token-id data needs an embed first layer (embed:WIDTH), not dense"),
    ("embed:4:vocab=20", (6,), 50,
     "embed vocab=20 is smaller than the data's vocabulary of 50 token ids"),
])
def test_bad_local_and_embed_layers(arch, shape, vocab, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        build_specs(parse_arch(arch), shape, 3, vocab)


def test_local_layer_by_hand():
    """Every output unit has its own weights over its own patch: no sharing."""
    spec = build_specs(parse_arch("local:2:kernel=2:stride=2"), (2, 4, 5), 3)[0]
    (layer,) = build_layers([spec], seed=1)
    x = np.random.default_rng(0).standard_normal((3, 2, 4, 5)).astype(np.float32)
    w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()  # (L, C, J), (C, H', W')
    assert w.shape == (4, 2, 8) and b.shape == (2, 2, 2) and spec.out_shape == (2, 2, 2)
    expected = np.zeros((3, 2, 2, 2), np.float32)
    for i in range(2):
        for j in range(2):
            patch = x[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].reshape(3, -1)  # (B, C_in k k)
            expected[:, :, i, j] = np.maximum(patch @ w[i * 2 + j].T + b[:, i, j], 0)
    with torch.no_grad():
        got = layer(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_embed_layer_by_hand():
    """The mean of the ids' embeddings, padding (0) left out; padding only gives act(b)."""
    spec = build_specs(parse_arch("embed:3:act=tanh"), (4,), 2, vocab=6)[0]
    (layer,) = build_layers([spec], seed=1)
    assert layer.bias is not None and not layer.bias.any()  # starts at zero
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    e, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    ids = np.array([[1, 5, 5, 0], [0, 0, 0, 0], [2, 0, 3, 0]])
    expected = np.tanh(np.stack([e[[1, 5, 5]].mean(0), np.zeros(3), e[[2, 3]].mean(0)]) + b)
    with torch.no_grad():  # ids come as float32 from a stream, or as int64
        for x in (torch.tensor(ids, dtype=torch.float32), torch.tensor(ids)):
            np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch,shape", [
    ("local:3:kernel=2,dense:4", (1, 5, 5)),
    ("local:4:kernel=3:stride=2:pool=max:act=gelu,conv:2:pool=none", (2, 9, 9)),
    ("conv:3,local:2:kernel=2:bias=false:pool=avg", (1, 8, 8)),
])
def test_local_pytorch_and_onnx_agree(arch, shape):
    layers = build_layers(build_specs(parse_arch(arch), shape, 3), seed=5)
    stats = np.zeros((shape[0], 1, 1), np.float32)
    model = build_model(layers, "ff", stats, stats + 1, {})
    x = np.random.default_rng(0).standard_normal((7, *shape)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (goodness,) = session.run(["goodness"], {"x": x})
    with torch.no_grad():
        expected = MFNet(layers, "ff")(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(goodness, expected, rtol=1e-5, atol=1e-5)


def test_embed_pytorch_and_onnx_agree_on_int64_ids():
    layers = build_layers(build_specs(parse_arch("embed:6,dense:4"), (5,), 3, vocab=11), 1)
    with torch.no_grad():
        layers[0].bias.uniform_(-1, 1)
    model = build_model(layers, "bp", np.zeros(5, np.float32), np.ones(5, np.float32), {})
    assert model.graph.input[0].type.tensor_type.elem_type == 7  # INT64
    assert not [n for n in model.graph.node if n.name.startswith("norm/")]
    ids = np.array([[1, 2, 0, 0, 0], [0, 0, 0, 0, 0], [3, 3, 3, 10, 1]], np.int64)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (goodness,) = session.run(["goodness"], {"x": ids})
    with torch.no_grad():
        expected = MFNet(layers, "bp")(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(goodness, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch,shape,vocab", [("local:3:kernel=2:stride=2", (2, 6, 6), None),
                                              ("embed:4", (7,), 30)])
def test_blocks_of_the_new_kinds_round_trip(arch, shape, vocab):
    (layer,) = build_layers(build_specs(parse_arch(arch), shape, 3, vocab), seed=2)
    block = LayerBlock.from_layer(layer, InputSignature(shape, (), "fp"))
    again = LayerBlock.from_bytes(block.to_bytes())
    assert again.spec == layer.spec and again.digest == block.digest
    x = torch.randint(0, 30, (4, *shape)).float()
    with torch.no_grad():
        torch.testing.assert_close(again.to_layer()(x), layer.eval()(x))


def test_dense_and_conv_specs_read_and_digest_as_before():
    """Specs of the kinds that existed keep their dict (and so their weights digest); a spec
    written before kernel, stride and vocab existed still loads."""
    spec = build_specs(parse_arch("conv:4,dense:8"), (1, 4, 4), 3)
    old_keys = {"kind", "width", "in_shape", "classes", "activation", "pool", "bias"}
    assert all(set(s.to_dict()) == old_keys for s in spec)
    old = {"kind": "dense", "width": 8, "in_shape": [4], "classes": 3, "activation": "relu",
           "pool": "avg", "bias": True}
    assert LayerSpec.from_dict(old) == LayerSpec("dense", 8, (4,), 3)
    local = build_specs(parse_arch("local:2"), (1, 4, 4), 3)[0].to_dict()
    assert (local["kernel"], local["stride"], "vocab" in local) == (3, 1, False)


@pytest.mark.parametrize("kind", sorted(layer_math.KINDS))
def test_each_kind_is_its_linear_part_then_its_finish(kind):
    """What feedback alignment takes apart (`linear`, `finish`) is what the layer computes."""
    arch, shape, vocab = {"dense": ("dense:5", (2, 3), None), "conv": ("conv:3", (2, 4, 4), None),
                          "local": ("local:3:pool=max", (2, 6, 6), None),
                          "embed": ("embed:5", (6,), 9)}[kind]
    (layer,) = build_layers(build_specs(parse_arch(arch), shape, 3, vocab), seed=3)
    with torch.no_grad():
        layer.bias.uniform_(-0.5, 0.5)
    math = layer_math.kind(kind)
    x = torch.randint(0, 9, (4, *shape)).float()
    with torch.no_grad():
        apart = math.finish(layer.spec, math.linear(layer.spec, x, layer.weight), layer.bias)
        torch.testing.assert_close(apart, layer(x), rtol=1e-5, atol=1e-6)
    assert MFLayer(layer.spec).weight.shape == layer.weight.shape


@pytest.fixture(scope="module")
def served_local(tmp_path_factory):
    """A locally connected network on digits (1x8x8) trained through the store beside FA and
    DFA, exported in FF mode to a Triton repository."""
    from mfstore.config import TrainConfig
    from mfstore.export import export_network
    from mfstore.importing import import_dataset
    from mfstore.store_training import train_network
    from mfstore.workspace import Workspace

    home = tmp_path_factory.mktemp("local-home")
    ws = Workspace.init(home=str(home))
    import_dataset(ws, "digits", "sklearn:digits")
    config = TrainConfig(epochs=3, batch_size=64, lr=0.01, device="cpu")
    trained = train_network(ws, "patches", "digits", "local:4:kernel=3,local:4:kernel=2", config,
                            baseline="fa,dfa")
    export = export_network(ws, "patches@1", "ff", triton_repo=str(home / "repo"))
    return {"ws": ws, "home": home, "trained": trained, "export": export}


@pytest.mark.slow
def test_local_network_through_the_store_and_onnx(served_local):
    trained, export = served_local["trained"], served_local["export"]
    assert [v.spec.out_shape for v in trained.layers] == [(4, 6, 6), (4, 5, 5)]
    assert [b.algorithm for b in trained.baselines] == ["fa", "dfa"]
    assert all(b.test_accuracy > 0.3 for b in trained.baselines)  # chance: 0.1
    assert export.max_relative_error <= 1e-4


def test_serving_a_local_network(served_local):
    from mfstore.export import normalizer_arrays
    from mfstore.network import load_network
    from tests.server_run import running_server

    x = np.random.default_rng(0).uniform(0, 16, (3, 1, 8, 8)).astype(np.float32)
    body = {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                        "data": x.ravel().tolist()}]}
    with running_server("serve", "--model-repo", str(served_local["home"] / "repo")) as server:
        answer = json.load(urllib.request.urlopen(urllib.request.Request(
            f"{server.url}/v2/models/patches/infer", json.dumps(body).encode())))
    goodness = next(o for o in answer["outputs"] if o["name"] == "goodness")
    mean, std = normalizer_arrays(served_local["export"].dataset)
    with torch.no_grad():  # the server normalises in the graph
        expected = load_network(served_local["ws"], "patches@1", "ff")(
            torch.from_numpy((x - mean) / std))
    np.testing.assert_allclose(np.array(goodness["data"]).reshape(3, -1), expected.numpy(),
                               rtol=1e-4, atol=1e-4)
