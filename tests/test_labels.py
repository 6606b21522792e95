"""Class names travel through a Triton label file, config.pbtxt and ONNX metadata unchanged:
a name those formats can hold (a form feed, U+0085, U+2028 — characters Python's
`splitlines` breaks on but Triton's label file does not) is served as the class it names;
one they cannot (a line break) is refused at import, before anything is stored."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from mfstore.names import class_name_problem, read_label_lines
from tests.cli_run import in_home, json_of
from tests.server_run import running_server
from tests.test_serving import request

NAMES = ["form\x0cfeed", "line\u2028separator", "next\x85line", "plain", "tab\tand \"quote\""]


def _write_csv(path, names, rows_per_class=40, seed=0):
    """Four features; class k lights feature k (mod 4) and is told apart by its sign, so a
    small layer learns every class."""
    rng = np.random.default_rng(seed)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["f0", "f1", "f2", "f3", "f4", "label"])
        for k, name in enumerate(names):
            for _ in range(rows_per_class):
                x = rng.normal(0, 0.1, 5)
                x[k] += 3.0
                writer.writerow([*map(float, x), name])


@pytest.fixture
def served_home(tmp_path):
    home = tmp_path / "home"
    _write_csv(tmp_path / "named.csv", NAMES)
    for args in (["init"], ["data", "add", "named", str(tmp_path / "named.csv")],
                 ["train", "net", "--data", "named", "--arch", "dense:16", "--baseline", "none",
                  "--epochs", "30", "--lr", "0.01", "--device", "cpu"],
                 ["export", "net", "--triton-repo", str(tmp_path / "repo")]):
        out = in_home(home, *args)
        assert out.returncode == 0, out.stderr
    return home, tmp_path / "repo"


def test_names_python_would_split_are_served_as_the_class_they_name(served_home):
    home, repo = served_home
    assert json_of(home, "data", "show", "named")["class_names"] == NAMES
    assert (repo / "net" / "labels.txt").read_bytes() == "".join(
        f"{n}\n" for n in NAMES).encode()
    x = np.eye(len(NAMES), dtype=np.float32) * 3  # one clear example of each class
    body = json.dumps({"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                                   "data": x.ravel().tolist()}],
                       "outputs": [{"name": "goodness",
                                    "parameters": {"classification": len(NAMES)}}]}).encode()
    with running_server("serve", "--model-repo", str(repo)) as server:
        status, _, answer = request(server.url, "POST", "/v2/models/net/infer", body)
    assert status == 200, answer
    (output,) = json.loads(answer)["outputs"]
    assert output["shape"] == [len(NAMES), len(NAMES)]
    found = [item.split(":", 2) for item in output["data"]]  # "value:index:label"
    assert sorted(int(index) for _, index, _ in found[:len(NAMES)]) == list(range(len(NAMES)))
    assert [label for _, _, label in found] == [NAMES[int(index)] for _, index, _ in found]


@pytest.mark.parametrize("name,why", [
    ("two\nlines", "holds a line break"), ("carriage\rreturn", "holds a carriage return")])
def test_a_name_no_label_file_can_hold_is_refused_at_import(tmp_path, name, why):
    home = tmp_path / "home"
    assert in_home(home, "init").returncode == 0
    _write_csv(tmp_path / "bad.csv", ["fine", name])
    out = in_home(home, "data", "add", "bad", str(tmp_path / "bad.csv"))
    assert out.returncode == 4
    assert out.stderr.strip() == (f"error: class name {name!r} {why}, which a label file (one "
                                  "name a line) cannot hold; rename the class in the source")
    assert json_of(home, "data", "list") == []
    assert not list((home / "store").glob("streams/*"))  # nothing written


def test_a_label_file_reads_as_triton_reads_it():
    assert read_label_lines("a\u2028b\n\x85\n\x0c\n") == ["a\u2028b", "\x85", "\x0c"]
    assert read_label_lines("a\n\nb") == ["a", "", "b"]
    assert read_label_lines("") == []
    assert class_name_problem("ok\u2028") is None
    assert class_name_problem("\ud800") == ("class name '\\ud800' is not valid Unicode (a lone "
                                            "surrogate)")
    assert class_name_problem(3) == "class name 3 is not text"
