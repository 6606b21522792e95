"""Models that change while they are served: a registry alias that moves, a repository
folder that gains a version or a model, a broken new version, and the repository API."""

from __future__ import annotations

import http.client
import json
import random
import shutil
import threading
import urllib.request
from urllib.parse import urlparse

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from mfstore.export import export_network
from tests.server_run import running_server, wait_for
from tests.serving_setup import (
    digits_workspace,
    move_alias,
    pytorch_goodness,
    raw_test_examples,
    train,
)

VERSIONS = (1, 2, 3)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    home = tmp_path_factory.mktemp("reload")
    ws = digits_workspace(home)
    for seed in VERSIONS:  # three versions that answer differently
        train(ws, "net", "dense:24", epochs=1, seed=seed)
    raw = raw_test_examples(ws)
    expected = {v: pytorch_goodness(ws, f"net@{v}", "bp", raw) for v in VERSIONS}
    return {"ws": ws, "home": home, "raw": raw, "expected": expected}


def get_json(url, path):
    with urllib.request.urlopen(f"{url}{path}", timeout=30) as body:
        return json.loads(body.read())


class Clients:
    """Threads sending single and double examples without pause, each answer checked against
    PyTorch for the version that says it served it."""

    def __init__(self, url, setup, count=8):
        self.url, self.setup = urlparse(url), setup
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.served: list[list[int]] = [[] for _ in range(count)]
        self.threads = [threading.Thread(target=self.run, args=(k,)) for k in range(count)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()

    def answered_by(self, version):
        return any(version in seen for seen in self.served)

    def run(self, k):
        raw, expected = self.setup["raw"], self.setup["expected"]
        rng = random.Random(k)
        conn = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=60)
        while not self.stop.is_set():
            i, n = rng.randrange(len(raw) - 2), rng.choice([1, 2])
            body = json.dumps({"inputs": [{"name": "x", "shape": [n, 1, 8, 8],
                                           "datatype": "FP32",
                                           "data": raw[i:i + n].ravel().tolist()}]})
            conn.request("POST", "/v2/models/net/infer", body)
            response = conn.getresponse()
            answer = response.read()
            if response.status != 200:
                self.failures.append(f"{response.status}: {answer[:200]!r}")
                continue
            out = json.loads(answer)
            version = int(out["model_version"])
            goodness = np.array(out["outputs"][0]["data"], np.float32).reshape(n, -1)
            want = expected[version][i:i + n]
            if np.abs(goodness - want).max() > 1e-4 * np.abs(want).max():
                self.failures.append(f"version {version} answered unlike itself")
            self.served[k].append(version)
        conn.close()


def runs(versions):
    """[1, 1, 3, 3, 2] -> [1, 3, 2]."""
    return [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v]


@pytest.mark.slow
def test_a_moving_alias_switches_versions_under_load_without_a_failed_request(setup):
    ws = setup["ws"]
    move_alias(ws, "net", "prod", 1)
    with running_server("--home", str(setup["home"]), "serve", "net@prod",
                        "--poll-seconds", "0.1") as server, Clients(server.url, setup) as clients:
        wait_for(lambda: clients.answered_by(1), what="answers from version 1")
        for version in (3, 2):  # forward, then back: the alias decides, not the newest
            move_alias(ws, "net", "prod", version)
            wait_for(lambda v=version: get_json(server.url, "/v2/models/net")["versions"]
                     == [str(v)], what=f"version {version} alone in the metadata")
            wait_for(lambda v=version: sum(s[-1:] == [v] for s in clients.served) == 8,
                     what=f"every client answered by version {version}")
        stats = get_json(server.url, "/v2/models/stats")["model_stats"]
        assert [(s["name"], s["version"]) for s in stats] == [("net", "2")]
    assert clients.failures == []
    for seen in clients.served:
        assert runs(seen) in ([1, 3, 2], [3, 2], [2])  # never back to a drained version
    assert server.process.returncode == 0  # SIGTERM: requests finished, then a clean exit
    log = server.output()
    assert "model net version 1 unloaded" in log and "model net version 3 unloaded" in log
    assert "Traceback" not in log


def test_metadata_names_the_alias_and_the_version_in_use(setup):
    move_alias(setup["ws"], "net", "live", 2)
    with running_server("--home", str(setup["home"]), "serve", "net@live") as server:
        meta = get_json(server.url, "/v2/models/net")
        assert meta["versions"] == ["2"] and meta["parameters"]["mfstore.alias"] == "live"
        assert meta["parameters"]["mfstore.network_version"] == "2"


def test_a_repository_gaining_versions_and_models_serves_them(setup, tmp_path):
    ws, repo = setup["ws"], tmp_path / "repo"
    export_network(ws, "net@1", "bp", triton_repo=str(repo), model_name="m")
    with running_server("serve", "--model-repo", str(repo), "--poll-seconds", "0.1") as server:
        client = triton.InferenceServerClient(server.address)
        x = setup["raw"][:4]
        inp = triton.InferInput("x", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        assert client.infer("m", [inp]).get_response()["model_version"] == "1"
        export_network(ws, "net@2", "bp", triton_repo=str(repo), model_name="m")
        wait_for(lambda: client.get_model_metadata("m")["versions"] == ["2"],
                 what="version 2 in use")
        result = client.infer("m", [inp])
        assert result.get_response()["model_version"] == "2"
        assert np.allclose(result.as_numpy("goodness"), setup["expected"][2][:4], rtol=1e-4,
                           atol=1e-5)
        with pytest.raises(InferenceServerException, match="model 'm' has no version '1'; it "
                                                           "has 2"):
            client.infer("m", [inp], model_version="1")
        export_network(ws, "net@3", "bp", triton_repo=str(repo), model_name="m3")
        wait_for(lambda: client.is_model_ready("m3"), what="the new model m3")
        assert client.infer("m3", [inp]).get_response()["model_version"] == "3"
        shutil.rmtree(repo / "m3")  # a model folder removed: unloaded, as in Triton's poll mode
        wait_for(lambda: not client.is_model_ready("m3"), what="m3 to go")
        assert {"name": "m3", "state": "UNAVAILABLE", "reason": "no version to serve"} in \
            client.get_model_repository_index()
        assert client.is_model_ready("m")


def test_a_broken_new_version_keeps_the_old_one_serving(setup, tmp_path):
    ws, repo = setup["ws"], tmp_path / "repo"
    export_network(ws, "net@1", "bp", triton_repo=str(repo), model_name="m")
    with running_server("serve", "--model-repo", str(repo), "--poll-seconds", "0.05") as server:
        client = triton.InferenceServerClient(server.address)
        broken = repo / "m" / "5" / "model.onnx"
        broken.parent.mkdir()
        broken.write_bytes((repo / "m" / "1" / "model.onnx").read_bytes()[:500])
        reason = wait_for(lambda: client.get_model_repository_index()[0].get("reason"),
                          what="the failure in the index")
        assert reason.startswith(f"cannot load model 'm' version 5 ({broken}): ONNX Runtime says")
        assert client.get_model_repository_index() == [
            {"name": "m", "version": "1", "state": "READY", "reason": reason}]
        assert client.get_model_metadata("m")["versions"] == ["1"]
        assert server.output().count("cannot load model 'm' version 5") == 1  # logged once
        shutil.rmtree(broken.parent)
        wait_for(lambda: "reason" not in client.get_model_repository_index()[0],
                 what="the failure to clear")
        assert "Traceback" not in server.output()


def test_unload_and_load_by_request(setup, tmp_path):
    ws, repo = setup["ws"], tmp_path / "repo"
    export_network(ws, "net@1", "bp", triton_repo=str(repo), model_name="m")
    with running_server("serve", "--model-repo", str(repo), "--poll-seconds", "0") as server:
        client = triton.InferenceServerClient(server.address)
        export_network(ws, "net@2", "bp", triton_repo=str(repo), model_name="m")
        assert client.get_model_metadata("m")["versions"] == ["1"]  # no polling: as it was
        client.load_model("m")  # looks again
        assert client.get_model_metadata("m")["versions"] == ["2"]
        client.unload_model("m")
        assert not client.is_model_ready("m")
        with pytest.raises(InferenceServerException, match=r"model 'm' is not loaded "
                                                           r"\(unloaded\)"):
            client.get_model_metadata("m")
        assert client.get_model_repository_index() == [
            {"name": "m", "state": "UNAVAILABLE", "reason": "unloaded"}]
        (repo / "m" / "2" / "model.onnx").write_bytes(b"not onnx")
        with pytest.raises(InferenceServerException, match=r"failed to load 'm': cannot load "
                                                           r"model 'm' version 2"):
            client.load_model("m")
        with pytest.raises(InferenceServerException, match="no model named 'x' in the "
                                                           "repository"):
            client.load_model("x")
        shutil.rmtree(repo / "m" / "2")
        client.load_model("m")
        assert client.get_model_metadata("m")["versions"] == ["1"]
