"""Token-id data and the `embed` layer end to end: the readers (`.npz`, Parquet list
columns), validation, the store's streams, training with its baselines, ONNX export with an
int64 input, and serving it."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

from mfstore.config import DatasetOptions, TrainConfig
from mfstore.dataset import load_dataset
from mfstore.errors import DataFormatError, DataValidationError
from tests.formats import digits_as_tokens, write_token_parquet


@pytest.fixture(scope="module")
def token_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokens")
    ids, y = digits_as_tokens()
    np.savez(folder / "digits.npz", x=ids, y=y)
    return {"ids": ids, "y": y, "npz": folder / "digits.npz",
            "parquet": write_token_parquet(folder / "digits.parquet", ids, y)}


def test_npz_and_parquet_token_ids_read_alike(token_files):
    from_npz = load_dataset(str(token_files["npz"]), DatasetOptions(format="tokens"))
    from_parquet = load_dataset(str(token_files["parquet"]))  # found by its list column
    for data in (from_npz, from_parquet):
        assert data.input_shape == (token_files["ids"].shape[1],)
        assert data.options.vocab == 1025  # the largest id + 1
        ids = torch.cat([data.train.x, data.val.x, data.test.x])
        assert torch.equal(ids, ids.round()) and int(ids.max()) == 1024  # not normalised
    assert torch.equal(from_npz.train.x, from_parquet.train.x)
    assert from_npz.content_sha256 == from_parquet.content_sha256
    given = load_dataset(str(token_files["parquet"]), DatasetOptions(vocab=1025))
    assert given.fingerprint == from_parquet.fingerprint  # the same vocabulary, said or not
    assert load_dataset(str(token_files["parquet"]), DatasetOptions(vocab=2000)).options.vocab \
        == 2000


def test_parquet_rows_of_any_length_are_padded_with_zero(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"ids": pa.array([[3, 1], [], [2, 2, 2, 5]], pa.list_(pa.int32())),
                             "label": [0, 1, 1]}), tmp_path / "t.parquet")
    from mfstore.readers import read_source

    raw = read_source(str(tmp_path / "t.parquet"))
    assert raw.tokens and raw.x_train.tolist() == [[3, 1, 0, 0], [0, 0, 0, 0], [2, 2, 2, 5]]


@pytest.mark.parametrize("x,options,message", [
    (np.array([[1, -2], [3, 0]] * 5), {}, "token ids must lie in 0..3 (0 is padding); found ids "
                                          "from -2 to 3"),
    (np.array([[1, 9], [3, 0]] * 5), {"vocab": 5}, "token ids must lie in 0..4 (0 is padding); "
                                                   "found ids from 0 to 9"),
    (np.array([[1.5, 2.0], [3.0, 0.0]] * 5), {}, "token ids must be integers, found float64"),
    (np.array([1, 2, 3, 4] * 5), {}, "token ids must be shaped (examples, length), got (20,)"),
])
def test_bad_token_ids_are_refused(tmp_path, x, options, message):
    np.savez(tmp_path / "t.npz", x=x, y=np.arange(len(x)) % 2)
    with pytest.raises((DataValidationError, DataFormatError), match=re.escape(message)):
        load_dataset(str(tmp_path / "t.npz"), DatasetOptions(format="tokens", **options))


def test_vocab_is_for_token_data_only():
    with pytest.raises(DataValidationError, match=re.escape(
            "vocab applies to token-id data (format 'tokens', or a Parquet list column)")):
        load_dataset("sklearn:iris", DatasetOptions(vocab=10))


@pytest.mark.slow
def test_embed_model_in_memory_beside_a_baseline(token_files):
    from mfstore.experiment import run_experiment

    data = load_dataset(str(token_files["parquet"]))
    config = TrainConfig(epochs=5, batch_size=64, lr=0.01, seed=0, device="cpu")
    result = run_experiment(data, "embed:32,dense:32", config, "simultaneous", "fa")
    assert result.specs[0].vocab == 1025 and result.specs[1].in_shape == (32,)
    assert result.test.ff >= 0.7 and result.test.per_layer[0] >= 0.7  # chance: 0.1
    assert result.baseline is not None and result.baseline.test_accuracy >= 0.5


@pytest.fixture(scope="module")
def served_tokens(token_files, tmp_path_factory):
    """An embed network trained through the store, exported to a Triton repository."""
    from mfstore.export import export_network, onnx_accuracy
    from mfstore.importing import import_dataset
    from mfstore.network import evaluate_network
    from mfstore.store_training import train_network
    from mfstore.workspace import Workspace

    home = tmp_path_factory.mktemp("token-home")
    ws = Workspace.init(home=str(home))
    import_dataset(ws, "words", str(token_files["parquet"]))
    config = TrainConfig(epochs=3, batch_size=64, lr=0.01, device="cpu")
    trained = train_network(ws, "bag", "words", "embed:16,dense:16", config, baseline="bp")
    _, accuracy = evaluate_network(ws, trained.network.ref, device="cpu")
    export = export_network(ws, "bag@1", "ff", triton_repo=str(home / "repo"))
    return {"ws": ws, "home": home, "export": export, "accuracy": accuracy,
            "onnx": onnx_accuracy(ws, export), "trained": trained}


def test_embed_network_through_the_store_and_onnx(served_tokens):
    trained, export = served_tokens["trained"], served_tokens["export"]
    assert trained.layers[0].spec.vocab == 1025
    assert trained.baseline is not None and trained.baseline.test_accuracy > 0.2  # chance: 0.1
    assert export.max_relative_error <= 1e-4
    meta = {p.key: p.value for p in __import__("onnx").load_from_string(
        export.data).metadata_props}
    assert json.loads(meta["mfstore.input"]) == {"token_ids": True, "dtype": "int64",
                                                 "vocab": 1025, "padding_id": 0}
    accuracy, examples = served_tokens["onnx"]
    assert examples == served_tokens["accuracy"].examples
    assert accuracy == pytest.approx(served_tokens["accuracy"].ff, abs=1 / examples)
    config = (served_tokens["home"] / "repo" / "bag" / "config.pbtxt").read_text()
    assert "TYPE_INT64" in config.split("output")[0]


def test_serving_an_embed_network_takes_int64_ids(served_tokens, token_files):
    from tests.server_run import running_server

    ids = token_files["ids"][:3]
    with running_server("serve", "--model-repo", str(served_tokens["home"] / "repo")) as server:
        meta = json.load(urllib.request.urlopen(f"{server.url}/v2/models/bag"))
        assert meta["inputs"] == [{"name": "x", "datatype": "INT64",
                                   "shape": [-1, ids.shape[1]]}]
        body = {"inputs": [{"name": "x", "shape": list(ids.shape), "datatype": "INT64",
                            "data": ids.ravel().tolist()}]}
        answer = json.load(urllib.request.urlopen(urllib.request.Request(
            f"{server.url}/v2/models/bag/infer", json.dumps(body).encode())))
        goodness = next(o for o in answer["outputs"] if o["name"] == "goodness")
        from mfstore.network import load_network

        with torch.no_grad():
            expected = load_network(served_tokens["ws"], "bag@1", "ff")(
                torch.from_numpy(ids)).numpy()
        np.testing.assert_allclose(np.array(goodness["data"]).reshape(3, -1), expected,
                                   rtol=1e-4, atol=1e-5)
        body["inputs"][0]["data"][0] = 5000  # beyond the vocabulary
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(
                f"{server.url}/v2/models/bag/infer", json.dumps(body).encode()))
        assert refused.value.code == 400
        assert "the model refused the input" in json.load(refused.value)["error"]
