"""The CUDA fast path: graphed steps give the eager steps' numbers, the layer-overlap variant
the same blocks as without it, device feeding keeps order, and `serve --require-gpu` answers
like PyTorch on the GPU. Marked `gpu`: they run only where CUDA is present
(`benchmarks/gpu_check.sh` runs them on a GPU machine).

Tolerances: float32 with TF32 off (PyTorch's default for matmul; set off for cuDNN here).
Graphed vs eager: the same kernels on the same inputs, but cuBLAS may pick another algorithm
inside a capture, so 1e-5 absolute on weights after training. Overlap vs no overlap: the
same kernels per layer in the same order, so bit-identical is expected; checked at 1e-6.
ONNX Runtime CUDA vs PyTorch CUDA: 1e-4 absolute on goodness (different kernels)."""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest
import torch

from mfstore.config import TrainConfig
from mfstore.devices import make_optimizer
from mfstore.feeding import on_device
from mfstore.graphs import WARMUP, GraphedStep, Step
from mfstore.inputs import split_batches
from mfstore.modules import build_layers
from mfstore.spec import build_specs, parse_arch
from mfstore.training import LocalLosses, mf_step, train_layer, train_simultaneous

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
CUDA = torch.device("cuda")
GRAPH_TOL = 1e-5


@pytest.fixture(autouse=True)
def no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture
def captures(monkeypatch):
    """How many steps were captured as CUDA graphs, and how many overlapped steps built."""
    import mfstore.graphs
    import mfstore.training

    counts = {"captured": 0, "overlapped": 0}
    capture, overlapped = mfstore.graphs.GraphedStep._capture, mfstore.training.overlapped_mf_step

    def counted_capture(self, *args):
        done = capture(self, *args)
        counts["captured"] += int(done)
        return done

    def counted_overlap(*args):
        counts["overlapped"] += 1
        return overlapped(*args)

    monkeypatch.setattr(mfstore.graphs.GraphedStep, "_capture", counted_capture)
    monkeypatch.setattr(mfstore.training, "overlapped_mf_step", counted_overlap)
    return counts


def _layers(digits, arch, seed=0):
    specs = build_specs(parse_arch(arch), digits.input_shape, digits.classes)
    return build_layers(specs, seed)


def _batches(split, config):
    return split_batches(split, config, CUDA)


def _state(layers):
    return [t.detach().cpu() for layer in layers for t in layer.state_dict().values()]


def _close(a, b, tol):
    for x, y in zip(a, b, strict=True):
        assert torch.allclose(x, y, atol=tol, rtol=0), (x - y).abs().max()


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_a_graphed_layer_trains_to_the_eager_numbers(digits, schedule, captures):
    # 1437 training examples at batch 100: a short last batch every epoch runs eagerly.
    results = []
    for graphs in (False, True):
        config = TrainConfig(epochs=4, batch_size=100, patience=None, lr_schedule=schedule,
                             cuda_graphs=graphs, deterministic=True)
        layer, = _layers(digits, "dense:64")
        history = train_layer(layer, _batches(digits.train, config),
                              _batches(digits.val, config), config, device=CUDA)
        results.append((_state([layer]), [e["train_loss"] for e in history.epochs]))
        assert (captures["captured"] > 0) == graphs
    _close(results[0][0], results[1][0], GRAPH_TOL)
    assert np.allclose(results[0][1], results[1][1], atol=1e-5)


def _one_process_step(objective: LocalLosses) -> Step:
    """`mf_step` as one process runs it (the loss of a batch of B scaled by 1/B)."""
    return lambda x, y, opt: mf_step(objective, x, y, opt, 1.0 / len(y))


def test_the_step_is_captured_and_replayed(digits):
    config = TrainConfig(batch_size=64)
    outs = []
    for graphs in (False, True):
        layers = [layer.to(CUDA) for layer in _layers(digits, "dense:32,dense:32")]
        objective = LocalLosses(layers)
        opt = make_optimizer([p for layer in layers for p in layer.parameters()], config, CUDA,
                             capturable=graphs)
        step = GraphedStep(_one_process_step(objective), CUDA, graphs)
        batches = list(_batches(digits.train, config).batches(0))
        sums = [step(x, y, opt) for x, y in batches[:WARMUP + 4]]
        assert step.captured == graphs
        outs.append((torch.stack(sums).cpu(), _state(layers)))
    assert torch.allclose(outs[0][0], outs[1][0], atol=1e-4)
    _close(outs[0][1], outs[1][1], GRAPH_TOL)


def test_graphed_backprop_matches_eager(digits, captures):
    from mfstore.backprop import train_backprop

    states = []
    for graphs in (False, True):
        config = TrainConfig(epochs=3, batch_size=128, patience=None, cuda_graphs=graphs,
                             deterministic=True)
        layers = _layers(digits, "dense:64,dense:64")
        train_backprop(layers, _batches(digits.train, config), _batches(digits.val, config),
                       config, device=CUDA)
        states.append(_state(layers))
        assert (captures["captured"] > 0) == graphs
    _close(states[0], states[1], GRAPH_TOL)


@pytest.mark.parametrize("graphs", [False, True])
def test_layer_overlap_gives_the_same_blocks(digits, graphs, captures):
    states = []
    for overlap in (False, True):
        config = TrainConfig(epochs=6, batch_size=64, patience=2, cuda_graphs=graphs,
                             overlap=overlap, deterministic=True)
        layers = _layers(digits, "dense:64,dense:64,dense:64")
        train_simultaneous(layers, _batches(digits.train, config),
                           _batches(digits.val, config), config, device=CUDA)
        states.append(_state(layers))
        assert (captures["overlapped"] > 0) == overlap
    assert (captures["captured"] > 0) == graphs
    _close(states[0], states[1], 1e-6)


def test_batches_fed_from_host_memory_arrive_in_order():
    xs = [torch.randn(33, 5) for _ in range(7)]
    ys = [torch.randint(0, 3, (33,)) for _ in range(7)]
    got = list(on_device(zip(xs, ys, strict=True), CUDA))
    assert len(got) == 7
    for (x, y), (gx, gy) in zip(zip(xs, ys, strict=True), got, strict=True):
        assert gx.is_cuda and gy.is_cuda
        assert torch.equal(gx.cpu(), x) and torch.equal(gy.cpu(), y)


def test_cuda_training_through_the_store(tmp_path, captures):
    from tests.cli_run import in_home

    for args in (["init"], ["data", "add", "digits", "sklearn:digits"],
                 ["train", "net", "--data", "digits", "--arch", "dense:64,dense:64",
                  "--epochs", "3", "--device", "cuda", "--json"]):
        out = in_home(tmp_path, *args)
        assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert captures["captured"] > 0  # the store path took the graphed step
    assert result["network"]["name"] == "net" and len(result["layers"]) == 2
    assert result["test"]["ff"] > 0.5  # 3 epochs: ~0.78 on the CPU


def test_serving_on_the_cuda_provider_matches_pytorch_on_the_gpu(tmp_path):
    from mfstore.export import export_network
    from mfstore.network import load_network
    from tests.server_run import running_server
    from tests.serving_setup import digits_workspace, raw_test_examples, train

    ws = digits_workspace(tmp_path)
    train(ws, "net", "dense:64,dense:64", epochs=3)
    repo = tmp_path / "triton"
    export_network(ws, "net@1", "ff", triton_repo=str(repo), model_name="m")
    raw = raw_test_examples(ws)
    dataset = ws.registry.dataset("digits")
    mean, std = (np.asarray(dataset.normalizer[k], np.float32) for k in ("mean", "std"))
    with torch.no_grad():  # PyTorch on the GPU, float32
        net = load_network(ws, "net@1", "ff").to(CUDA)
        expected = net(torch.from_numpy((raw - mean) / std).to(CUDA)).cpu().numpy()
    with running_server("--home", str(tmp_path), "serve", "--model-repo", str(repo),
                        "--require-gpu") as server:
        meta = json.load(urllib.request.urlopen(f"{server.url}/v2/models/m"))
        assert meta["parameters"]["execution_provider"] == "CUDAExecutionProvider"
        body = json.dumps({"inputs": [{"name": "x", "shape": list(raw.shape),
                                       "datatype": "FP32", "data": raw.ravel().tolist()}],
                           "outputs": [{"name": "goodness"}]}).encode()
        request = urllib.request.Request(f"{server.url}/v2/models/m/infer", data=body,
                                         headers={"Content-Type": "application/json"})
        answer = json.load(urllib.request.urlopen(request))
    goodness = np.array(answer["outputs"][0]["data"], dtype=np.float32).reshape(expected.shape)
    assert np.abs(goodness - expected).max() <= 1e-4
