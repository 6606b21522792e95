"""Dynamic batching on a real model version and a real ONNX Runtime session, driven in
process by concurrent callers on one event loop (so that which requests are queued together
is known exactly): batch formation, limits, delays, each caller's rows, failures."""

from __future__ import annotations

import asyncio

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from mfstore.export import build_export, triton_model_config
from serving.model_config import BatchingOptions
from serving.models import ModelVersion, VersionFiles, load_version
from serving.requests import InferRequest, RequestedOutput
from serving.sessions import RuntimeOptions
from tests.serving_setup import digits_workspace, raw_test_examples, train


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    ws = digits_workspace(tmp_path_factory.mktemp("batching"))
    train(ws, "net", "dense:32,dense:32", epochs=1)
    export = build_export(ws, "net@1")
    return export, raw_test_examples(ws)


def served(export, max_batch_size=64, **batching) -> ModelVersion:
    files = VersionFiles(export.data, triton_model_config("m", export, max_batch_size))
    return load_version("m", 1, files, RuntimeOptions("cpu"), BatchingOptions(**batching))


def request(x: np.ndarray) -> InferRequest:
    return InferRequest(None, {"x": x}, [RequestedOutput("goodness"), RequestedOutput("label")],
                        len(x))


async def together(model: ModelVersion, requests: list[InferRequest]) -> list[dict]:
    """Every request submitted in the same turn of the event loop."""
    return await asyncio.gather(*(model.infer(r) for r in requests))


def test_concurrent_requests_form_one_batch_and_each_caller_gets_its_rows(digits):
    export, raw = digits
    model = served(export)
    sizes = [1, 3, 2, 1, 4, 1, 2, 3, 1, 1] * 3  # 57 rows
    starts = np.cumsum([0, *sizes[:-1]])
    requests = [request(raw[s:s + n]) for s, n in zip(starts, sizes, strict=True)]
    results = asyncio.run(together(model, requests))
    assert model.stats.execution_count == 1 and model.stats.inference_count == 57
    assert [b for b in model.stats.batches] == [57]
    whole = model.run({"x": raw[:57]})  # the same batch in one call: the same bits
    for start, n, result in zip(starts, sizes, results, strict=True):
        assert np.array_equal(result["goodness"], whole["goodness"][start:start + n])
        assert np.array_equal(result["label"], whole["label"][start:start + n])
        alone = model.run({"x": raw[start:start + n]})
        assert np.allclose(result["goodness"], alone["goodness"], rtol=1e-5, atol=1e-6)
        assert result["label"].shape == (n, 1)
    queue = model.stats.parts["queue"]
    assert queue.count == len(sizes) and queue.ns > 0


def test_batches_never_exceed_max_batch_size_nor_split_a_request(digits):
    export, raw = digits
    model = served(export, max_batch_size=8)
    sizes = [3, 3, 3, 8, 1, 1, 5, 2]  # 3+3+1+1 | 3+5 | 8 | 2: the oldest first, then what fits
    starts = np.cumsum([0, *sizes[:-1]])
    results = asyncio.run(together(model, [request(raw[s:s + n])
                                           for s, n in zip(starts, sizes, strict=True)]))
    assert {size: b["compute_infer"].count for size, b in model.stats.batches.items()} == {
        8: 3, 2: 1}
    assert [len(r["label"]) for r in results] == sizes


def test_without_batching_each_request_runs_alone(digits):
    export, raw = digits
    model = served(export, enabled=False)
    assert model.executor.policy is None
    results = asyncio.run(together(model, [request(raw[i:i + 2]) for i in range(0, 40, 2)]))
    assert model.stats.execution_count == 20 and list(model.stats.batches) == [2]
    assert np.array_equal(np.concatenate([r["label"] for r in results]),
                          model.run({"x": raw[:40]})["label"])


def test_a_queue_delay_waits_for_later_requests(digits):
    export, raw = digits
    model = served(export, max_queue_delay_us=2_000_000)  # 2 s: far longer than the test

    async def staggered() -> None:
        first = asyncio.ensure_future(model.infer(request(raw[:1])))
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(model.infer(request(raw[1:3])))
        await asyncio.sleep(0.01)
        assert not first.done()  # still waiting for more
        third = model.infer(request(raw[3:64]))  # fills the batch: it runs at once
        await asyncio.wait_for(asyncio.gather(first, second, third), 1.0)

    asyncio.run(staggered())
    assert model.stats.execution_count == 1 and list(model.stats.batches) == [64]


def test_a_preferred_batch_size_runs_without_waiting_out_the_delay(digits):
    export, raw = digits
    files = VersionFiles(export.data, triton_model_config("m", export, 64))
    files.config.dynamic_batching.preferred_batch_size.append(4)
    files.config.dynamic_batching.max_queue_delay_microseconds = 100_000_000  # 100 s
    model = load_version("m", 1, files, RuntimeOptions("cpu"), BatchingOptions())

    async def four() -> None:
        await asyncio.wait_for(together(model, [request(raw[i:i + 1]) for i in range(4)]), 5.0)

    asyncio.run(four())
    assert list(model.stats.batches) == [4]


def _variable_width_model() -> bytes:
    """y = relu(x) with x of shape (batch, n), n free: requests of other widths cannot share
    a batch."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "n"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "n"])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_only_requests_of_one_shape_share_a_batch():
    files = VersionFiles(_variable_width_model(), None)
    model = load_version("relu", 1, files, RuntimeOptions("cpu"),
                         BatchingOptions(enabled=True, max_batch_size=16))
    assert model.inputs["x"].shape == (-1, -1)
    widths = [3, 5, 3, 5, 3]
    requests = [InferRequest(None, {"x": np.full((1, w), -float(i), np.float32) + i * 2},
                             [RequestedOutput("y")], 1) for i, w in enumerate(widths)]
    results = asyncio.run(together(model, requests))
    assert model.stats.execution_count == 2 and dict(
        (size, b["compute_infer"].count) for size, b in model.stats.batches.items()) == {3: 1,
                                                                                        2: 1}
    for i, (w, result) in enumerate(zip(widths, results, strict=True)):
        assert np.array_equal(result["y"], np.full((1, w), float(i), np.float32))


def test_a_failed_batch_fails_its_callers_and_the_next_batch_runs(digits):
    export, raw = digits
    model = served(export)
    wrong = InferRequest(None, {"x": raw[:2].astype(np.float64)}, [RequestedOutput("label")], 2)

    async def mixed() -> list:
        return await asyncio.gather(model.infer(wrong), model.infer(request(raw[:2])),
                                    return_exceptions=True)

    failed = asyncio.run(mixed())
    assert all(str(f).startswith("the model refused the input: ") for f in failed)
    (again,) = asyncio.run(together(model, [request(raw[:2])]))
    assert np.array_equal(again["label"], model.run({"x": raw[:2]})["label"])


def test_io_binding_gives_the_same_answers_as_a_plain_call(digits):
    """The CUDA path binds inputs and outputs; on CPU the same code runs against the CPU."""
    export, raw = digits
    model = served(export)
    plain = model.run({"x": raw[:33]})
    model.io_binding = True
    bound = model.run({"x": raw[:33]})
    assert bound.keys() == plain.keys()
    for name in plain:
        assert np.array_equal(bound[name], plain[name]) and bound[name].dtype == plain[name].dtype
