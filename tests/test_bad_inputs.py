"""Inputs that used to end in a traceback or in something silently odd: each is one line with
its exit code now, and nothing is written."""

from __future__ import annotations

import numpy as np
import pytest

from tests.cli_run import QUICK, in_home, json_of

BIG = "9" * 20  # beyond 2**63


def _one_line(out) -> str:
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


@pytest.mark.parametrize("args,code,start", [
    (["train", "--data", "digits", "--arch", "dense:1000000000", "--device", "cpu"], 2,
     "error: layer 1 (dense:1000000000 on input (1, 8, 8)) would hold 75,000,000,000 "
     "parameters: 1,117.6 GiB to train, more than the "),
    (["train-layer", "x", "--data", "digits", "--kind", "dense", "--width", "8", "--seed", "-1"],
     2, "error: the seed must lie in 0..2**63-1, got -1"),
    (["train-layer", "x", "--data", "digits", "--on", f"net.l1@{BIG}", "--kind", "dense",
      "--width", "8"], 6, f"error: layer 'net.l1' has no version {BIG}"),
    (["layers", "show", f"net.l1@{BIG}"], 6, f"error: layer 'net.l1' has no version {BIG}"),
    (["nets", "show", f"net@{BIG}"], 6, f"error: network 'net' has no version {BIG}"),
    (["eval", f"net@{BIG}"], 6, f"error: network 'net' has no version {BIG}"),
    (["verify", "--tolerance", "-1"], 2, "error: the accuracy tolerance must lie in [0, 1]"),
    (["verify", "--tolerance", "nan"], 2, "error: the accuracy tolerance must lie in [0, 1]"),
    (["data", "add", "x", "sklearn:iris", "--val-fraction", "0.999", "--test-fraction", "0.5"],
     4, "error: the train split is empty (val_fraction 0.999, test_fraction 0.5)"),
    (["data", "add", "x", "sklearn:iris", "--test-fraction", "0.9"], 4,
     "error: the validation split is empty (val_fraction 0.1, test_fraction 0.9)"),
    # digits that are not ASCII digits, numbers Python would not convert, pool on dense
    (["train", "--data", "digits", "--arch", "dense:\u00b2"], 2,
     "error: cannot read layer 'dense:\u00b2'; write KIND:WIDTH"),
    (["train", "--data", "digits", "--arch", "local:4:kernel=\u00b2"], 2,
     "error: kernel must be a whole number, got '\u00b2' in 'local:4:kernel=\u00b2'"),
    (["train", "--data", "digits", "--arch", "dense:" + "9" * 5000], 2,
     "error: the width of layer 'dense:" + "9" * 34 + "…' must lie in 0..2147483647, got a "
     "5000-digit number"),
    (["train", "--data", "digits", "--arch", "local:4:stride=" + "9" * 30], 2,
     "error: stride must lie in 0..2147483647, got 999999999999999999999999999999 in"),
    (["train", "--data", "digits", "--arch", "dense:32:pool=max"], 2,
     "error: pool= applies to conv and local layers, not dense"),
    (["train-layer", "x", "--data", "digits", "--kind", "dense", "--width", "8", "--pool",
      "max"], 2, "error: pool= applies to conv and local layers, not dense"),
    (["train", "--data", "digits", "--arch", "conv:1000000"], 2,
     "error: layer 1 (conv:1000000 on input (1, 8, 8)) would need "),
    (["train-layer", "x", "--data", "digits", "--kind", "dense", "--width", "8", "--lr",
      "1e39"], 2, "error: learning rate must be at most 3.403e+38 (what float32 weights hold), "
                  "got 1e+39"),
    (["export", "net@1", "--out", "m.onnx", "--max-batch-size", str(2**31)], 2,
     "error: max_batch_size must lie in 1..2147483647 (Triton's int32), got 2147483648"),
])
def test_bad_options_are_one_line(home, args, code, start):
    before = json_of(home, "layers", "list"), json_of(home, "data", "list")
    out = in_home(home, *args, *(QUICK[:2] if args[0].startswith("train") else []))
    assert out.returncode == code, out.stderr
    assert _one_line(out).startswith(start)
    assert (json_of(home, "layers", "list"), json_of(home, "data", "list")) == before


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def _csv(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("make,message", [
    (lambda d: _npz(d / "onehot.npz", x=np.ones((20, 3)), y=np.eye(2)[np.arange(20) % 2]),
     "train: the labels have shape (20, 2); give one integer label per example, shaped "
     "(examples,); one-hot labels? give their argmax"),
    (lambda d: _npz(d / "scalar.npz", x=np.float64(3.0), y=np.arange(1)),
     "train: the features have shape (); give one row (or image) per example, shaped "
     "(examples, features…)"),
    (lambda d: _csv(d / "big.csv", "a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(19))
                    + "1,1000000000\n"),
     "labels go up to 1000000000, which would make 1000000001 classes (at most 100000); "
     "relabel them 0..C-1"),
    (lambda d: _npz(d / "empty.npz", x=np.zeros((200, 0)), y=np.arange(200) % 2),
     "train: the features have shape (200, 0): each example holds no value; give at least one "
     "feature per example"),
    (lambda d: _csv(d / "one.csv", "a,label\n" + "".join(f"{i},1\n" for i in range(20))),
     "a classifier needs at least 2 classes among its training examples (every training "
     "label is 1)"),
])
def test_bad_data_is_one_line_and_nothing_is_imported(home, tmp_path, make, message):
    out = in_home(home, "data", "add", "bad", make(tmp_path))
    assert out.returncode == 4
    assert _one_line(out) == f"error: {message}"
    assert [d["name"] for d in json_of(home, "data", "list")] == ["digits"]


@pytest.mark.parametrize("variable,value,message", [
    ("MFSTORE_SHARD_BYTES", "abc", "MFSTORE_SHARD_BYTES must be a whole number, got 'abc' "
                                   "(bytes)"),
    ("MFSTORE_SHARD_BYTES", "0", "MFSTORE_SHARD_BYTES must lie in 1024..1099511627776, got 0 "
                                 "(bytes)"),
    ("MFSTORE_SHARD_BYTES", "-1", "MFSTORE_SHARD_BYTES must be a whole number, got '-1' "
                                  "(bytes)"),
    ("MFSTORE_RAM_BUDGET", "lots", "MFSTORE_RAM_BUDGET must be a whole number, got 'lots' "
                                   "(bytes)"),
    ("MFSTORE_RAM_BUDGET", "\u00b2", "MFSTORE_RAM_BUDGET must be a whole number, got "
                                      "'\u00b2' (bytes)"),
    ("MFSTORE_MAX_READ_BYTES", "abc", "MFSTORE_MAX_READ_BYTES must be a whole number, got "
                                      "'abc' (bytes)"),
    ("MFSTORE_MAX_READ_BYTES", "-5", "MFSTORE_MAX_READ_BYTES must be a whole number, got '-5' "
                                     "(bytes)"),
    ("MFSTORE_MAX_READ_BYTES", "9" * 5000, "MFSTORE_MAX_READ_BYTES must lie in "
                                           "1..1125899906842624, got a 5000-digit number "
                                           "(bytes)"),
])
def test_a_bad_environment_variable_is_one_line_naming_it(home, tmp_path, monkeypatch,
                                                          variable, value, message):
    np.savez(tmp_path / "d.npz", x=np.ones((40, 3)), y=np.arange(40) % 2)
    before = json_of(home, "data", "list")
    monkeypatch.setenv(variable, value)
    out = in_home(home, "data", "add", "d", str(tmp_path / "d.npz"))
    assert out.returncode == 2
    assert _one_line(out) == f"error: {message}"
    monkeypatch.delenv(variable)
    assert json_of(home, "data", "list") == before  # nothing imported


def test_a_device_is_refused_before_its_format_is_guessed(home):
    out = in_home(home, "data", "add", "z", "/dev/zero")
    assert out.returncode == 3
    assert _one_line(out) == ("error: '/dev/zero' is not a regular file (a device, pipe or "
                              "socket); give a data file")
    assert [d["name"] for d in json_of(home, "data", "list")] == ["digits"]


def test_one_feature_per_example_is_a_column(home, tmp_path):
    path = _npz(tmp_path / "x1.npz", x=np.arange(40.0), y=np.arange(40) % 2)
    assert json_of(home, "data", "add", "x1", path)["input_shape"] == [1]


def test_what_a_data_file_holds_never_acts_on_the_terminal(home, tmp_path):
    """Control characters from a file's name or its cells (an OSC title sequence, a form
    feed, a bidirectional override) are written as escapes in the one error line."""
    name = tmp_path / "x\x1b]0;pwned\x07\u202e.csv"
    name.write_text("a\x1b[2J\x0c,b\n1,0\n2,1\n")
    out = in_home(home, "data", "add", "d", str(name))
    assert out.returncode == 4
    line = _one_line(out)
    assert all(c.isprintable() for c in line), repr(line)
    assert "x\\x1b]0;pwned\\x07\\u202e.csv" in line and "a\\x1b[2J\\x0c" in line
    assert [d["name"] for d in json_of(home, "data", "list")] == ["digits"]


def test_a_dataset_name_taken_is_refused_before_anything_is_written(home):
    streams = sorted(p.name for p in (home / "store" / "streams").iterdir())
    out = in_home(home, "data", "add", "digits", "sklearn:wine")
    assert out.returncode == 10
    assert _one_line(out).startswith("error: dataset 'digits' already exists with other content")
    assert sorted(p.name for p in (home / "store" / "streams").iterdir()) == streams
