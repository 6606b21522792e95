"""Every parser and entry point that takes outside input, tried by Hypothesis: architecture
strings, whole numbers, environment variables, data files (CSV, npz, IDX), v2 REST bodies and
binary headers, gRPC messages and UI query strings. The property, everywhere: a one-line
refusal of mfstore's own (or a 4xx / gRPC status), or a correct answer; never a traceback, a
5xx or an error of another kind."""

from __future__ import annotations

import json
import os
import unicodedata
import urllib.error
import urllib.parse
import urllib.request

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mfstore.errors import ConfigError, MFStoreError, printable
from mfstore.numbers import INT32, NumberError, env_number, whole_number
from mfstore.spec import parse_arch
from pages.facts import page_number
from tests.server_run import running_server
from tests.serving_setup import digits_repository

FAST = settings(max_examples=300, deadline=None)
FILES = settings(max_examples=40, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])
SERVED = settings(max_examples=150, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])

# text as outsiders type it: digits of every script, signs, separators, controls, letters
TEXT = st.text(st.characters(codec="utf-8"), max_size=40) | st.text(
    "0123456789²³¹٣߁-+.eE :,=_xabcdenselocalconvembedpoolmaxavgnonekernelstride\x00\x1b\n",
    max_size=40)


@FAST
@given(TEXT, st.integers(0, 10), st.integers(10, INT32))
def test_a_whole_number_is_read_or_refused(text, lo, hi):
    try:
        value = whole_number(text, lo, hi)
    except NumberError as err:
        assert all(c.isprintable() for c in str(err)) or "\\" in str(err)
    else:
        assert lo <= value <= hi and text.isascii() and text.isdigit()


@FAST
@given(st.integers(0, 10**30))
def test_every_whole_number_in_bounds_reads_back(value):
    text = str(value)
    if value <= INT32:
        assert whole_number(text, 0, INT32) == value
        assert whole_number("000" + text, 0, INT32) == value
    else:
        with pytest.raises(NumberError):
            whole_number(text, 0, INT32)


@FAST
@given(TEXT)
def test_an_environment_variable_is_read_or_refused_naming_it(text):
    assume("\x00" not in text)  # no environment holds a NUL
    os.environ["MFSTORE_PROPERTY"] = text
    try:
        env_number("MFSTORE_PROPERTY", 7, 1, 1 << 40)
    except ConfigError as err:
        assert err.message.startswith("MFSTORE_PROPERTY ")
    finally:
        del os.environ["MFSTORE_PROPERTY"]


@FAST
@given(TEXT | st.lists(st.sampled_from(
    ["dense:8", "conv:4", "local:3:kernel=2", "embed:4", "dense:²", "conv:4:pool=max",
     "dense:8:pool=avg", "local:4:stride=0", ",", ":", "=", "kernel=3", "dense:99999999999"]),
    max_size=5).map(",".join))
def test_an_architecture_is_planned_or_refused_in_one_line(text):
    try:
        plans = parse_arch(text)
    except MFStoreError as err:
        assert "\n" not in err.message and all(c.isprintable() for c in err.message)
    else:
        assert plans and all(p.width >= 0 for p in plans)


@FAST
@given(st.text(max_size=60))
def test_a_message_is_always_printable(text):
    shown = printable(text)
    assert not [c for c in shown if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")]
    assert printable(shown) == shown


@FAST
@given(st.none() | TEXT)
def test_a_ui_page_number_is_read_or_refused(text):
    try:
        page = page_number(text)
    except ConfigError as err:
        assert err.message.startswith("page ")
    else:
        assert 1 <= page <= INT32


# data files ------------------------------------------------------------------------------

@FILES
@given(st.binary(max_size=64) | st.builds(
    lambda dims, body: bytes([0, 0, 0x08, len(dims)]) + b"".join(
        d.to_bytes(4, "big") for d in dims) + body,
    st.lists(st.integers(0, 2**32 - 1), max_size=4), st.binary(max_size=64)))
def test_an_idx_file_is_read_or_refused(data):
    from mfstore.readers.idx import parse_idx

    try:
        array = parse_idx(data, "f")
    except MFStoreError:
        return
    assert isinstance(array, np.ndarray)


CSV_CELLS = st.text("0123456789.-e,abc \"\n\r\x1b\x0c\x00", max_size=200)


@FILES
@given(st.sampled_from(["a,label\n", "label\n", "a,b,label\n", ""]), CSV_CELLS)
def test_a_csv_file_is_imported_or_refused(tmp_path, header, cells):
    from mfstore.dataset import load_dataset

    path = tmp_path / "data.csv"
    path.write_bytes((header + cells).encode("utf-8", "surrogatepass"))
    try:
        dataset = load_dataset(str(path))
    except MFStoreError as err:
        assert "\n" not in err.message
        return
    assert len(dataset.train) > 0 and dataset.classes >= 2


@FILES
@given(st.integers(0, 3), st.integers(0, 40), st.integers(0, 3),
       st.sampled_from(["float32", "float64", "int64", "bool", "complex64", "U3"]),
       st.sampled_from(["int64", "float64", "U2", "bool"]), st.booleans())
def test_an_npz_file_is_imported_or_refused(tmp_path, rank, n, width, x_type, y_type, nan):
    from mfstore.dataset import load_dataset

    rng = np.random.default_rng(n)
    shape = (n, *([width] * rank))
    x = rng.integers(0, 5, shape).astype(x_type)
    if nan and x.dtype.kind == "f" and x.size:
        x.flat[0] = np.nan
    y = (np.arange(n) % 3).astype(y_type)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    try:
        dataset = load_dataset(str(tmp_path / "d.npz"))
    except MFStoreError as err:
        assert "\n" not in err.message
        return
    assert len(dataset.train) > 0


# the server: REST bodies, binary headers and gRPC messages ---------------------------------

@pytest.fixture(scope="module")
def served(tmp_path_factory):
    home = tmp_path_factory.mktemp("properties")
    _, repo, _ = digits_repository(home, epochs=1)
    with running_server("--home", str(home), "serve", "--model-repo", str(repo),
                        "--grpc-port", "0", "--max-request-mb", "1",
                        "--poll-seconds", "0") as server:
        yield server


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=20)
INPUT = st.fixed_dictionaries({
    "name": st.sampled_from(["x", "y", ""]) | st.text(max_size=4),
    "shape": st.lists(st.integers(-2, 70) | st.integers(-2**70, 2**70), max_size=5),
    "datatype": st.sampled_from(["FP32", "FP64", "INT64", "BYTES", "BOOL", "FP16", "X"]),
}, optional={"data": JSON_VALUES,
             "parameters": st.dictionaries(st.sampled_from(["binary_data_size",
                                                            "classification"]),
                                           st.integers(-5, 2**40) | st.text(max_size=3),
                                           max_size=2)})
REQUEST = st.fixed_dictionaries({"inputs": st.lists(INPUT, max_size=2)}, optional={
    "id": JSON_VALUES, "outputs": st.lists(st.fixed_dictionaries(
        {"name": st.sampled_from(["goodness", "label", "nope"])},
        optional={"parameters": st.dictionaries(st.sampled_from(
            ["binary_data", "classification"]), JSON_VALUES, max_size=2)}), max_size=3),
    "parameters": JSON_VALUES})


@SERVED
@given(REQUEST, st.binary(max_size=64), st.none() | st.sampled_from(
    ["0", "1", "5", "99", "-1", "x", "²", "9" * 30]))
def test_a_rest_inference_request_is_answered_or_refused_never_5xx(served, request, tail,
                                                                   header_length):
    body = json.dumps(request).encode() + tail
    headers = {"content-type": "application/octet-stream"}
    if header_length is not None:
        headers["Inference-Header-Content-Length"] = (
            str(len(body) - len(tail)) if header_length == "5" else header_length)
    status, answer = _post(f"{served.url}/v2/models/digits-mlp/infer", body, headers)
    assert status == 200 or 400 <= status < 500, (status, answer[:300])
    if status != 200:
        assert json.loads(answer)["error"]


@SERVED
@given(st.binary(max_size=200))
def test_any_bytes_as_a_grpc_infer_request_get_a_status_of_their_own(served, data):
    with grpc.insecure_channel(served.grpc) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        try:
            call(data, timeout=30)
        except grpc.RpcError as err:
            assert err.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), (
                err.code(), err.details())


@SERVED
@given(st.dictionaries(st.sampled_from(["page", "q", "sort", "status", "dataset", "kind"]),
                       TEXT, max_size=3))
def test_a_ui_query_string_is_answered_or_refused_never_5xx(ui, query):
    for page in ("/layers", "/networks"):
        url = f"{ui}{page}?{urllib.parse.urlencode(query)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as answer:
                status = answer.status
        except urllib.error.HTTPError as err:
            status = err.code
        assert status == 200 or 400 <= status < 500, (url, status)


@pytest.fixture(scope="module")
def ui(trained_home):
    from tests.ui_run import ui_server

    with ui_server(trained_home) as url:
        yield url
