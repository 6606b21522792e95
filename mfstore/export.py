"""Export a network to ONNX (bp or ff mode, optionally its first K layers) and to a Triton
model repository. Every export passes `onnx.checker` (full check) and matches PyTorch through
ONNX Runtime on fresh random inputs before anything is written."""

from __future__ import annotations

import contextlib
import json
import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import fsspec
import numpy as np
import onnx
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from mfstore import __version__
from mfstore.config import DEFAULT_MAX_BATCH_SIZE
from mfstore.errors import (
    ConfigError,
    ConflictError,
    ExportError,
    StoreError,
    one_line,
    transport_error,
)
from mfstore.fixes import option
from mfstore.modules import MODES, MFLayer, MFNet
from mfstore.names import check_name, class_name_problem
from mfstore.network import load_layers
from mfstore.numbers import INT32
from mfstore.onnx_graph import GOODNESS, INPUT, LABEL, build_model, takes_tokens
from mfstore.onnx_runtime import ort
from mfstore.registry import DatasetRecord, ExportRecord, LayerVersion, NetworkVersion
from mfstore.store import Store, sha256
from mfstore.stream import StreamBatches
from mfstore.stream_chain import dataset_stream
from mfstore.workspace import Workspace

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import ModelConfig

TOLERANCE = 1e-4  # max |ort - torch| / max |torch|, CPU provider, float32


@dataclass
class Export:
    network: NetworkVersion
    dataset: DatasetRecord
    mode: str
    upto: int | None
    sha256: str
    max_relative_error: float
    data: bytes = field(repr=False)
    targets: list[str] = field(default_factory=list)


def _input_metadata(dataset: DatasetRecord) -> dict[str, str]:
    """How the model reads `x`: raw features normalised in the graph, or token ids."""
    vocab = dataset.options.get("vocab")
    if vocab is not None:
        return {"mfstore.normalization": json.dumps({"in_graph": False}),
                "mfstore.input": json.dumps({"token_ids": True, "dtype": "int64",
                                             "vocab": vocab, "padding_id": 0})}
    return {"mfstore.normalization": json.dumps({"in_graph": True,
                                                 "formula": "(x - mean) / std",
                                                 **dataset.normalizer})}


def _metadata(network: NetworkVersion, versions: list[LayerVersion], mode: str,
              upto: int | None, dataset: DatasetRecord) -> dict[str, str]:
    return {
        "mfstore.network": network.name,
        "mfstore.network_version": str(network.version),
        "mfstore.layers": json.dumps([{"ref": v.ref, "block_sha256": v.block_sha256,
                                       "digest": v.digest} for v in versions]),
        "mfstore.mode": mode,
        "mfstore.upto": "" if upto is None else str(upto),
        "mfstore.input_shape": json.dumps(list(dataset.input_shape)),
        **_input_metadata(dataset),
        "mfstore.classes": str(dataset.classes),
        "mfstore.class_names": json.dumps(dataset.class_names),
        "mfstore.dataset": dataset.name,
        "mfstore.dataset_fingerprint": dataset.fingerprint,
        "mfstore.version": __version__,
    }


def normalizer_arrays(dataset: DatasetRecord) -> tuple[np.ndarray, np.ndarray]:
    """The recorded mean and std, broadcastable to one example."""
    return (np.asarray(dataset.normalizer["mean"], np.float32),
            np.asarray(dataset.normalizer["std"], np.float32))


def random_inputs(layers: list[MFLayer], mean: np.ndarray, std: np.ndarray,
                  samples: int) -> tuple[np.ndarray, torch.Tensor]:
    """Fresh random raw inputs (as the model takes them) and what PyTorch's layers read:
    token ids (int64, some padding) as they are, features normalised."""
    rng = np.random.default_rng()
    spec = layers[0].spec
    if takes_tokens(layers):
        assert spec.vocab is not None
        ids = rng.integers(0, spec.vocab, (samples, *spec.in_shape)) * (
            rng.random((samples, *spec.in_shape)) < 0.7)  # (samples, T), about 30 % padding
        return ids.astype(np.int64), torch.from_numpy(ids).float()
    x = (mean + std * rng.standard_normal((samples, *spec.in_shape))).astype(np.float32)
    return x, (torch.from_numpy(x) - torch.from_numpy(mean)) / torch.from_numpy(std)


def parity_error(data: bytes, layers: list[MFLayer], mode: str, mean: np.ndarray,
                 std: np.ndarray, samples: int = 64) -> float:
    """Max relative error of ONNX Runtime (CPU provider) against PyTorch on fresh random raw
    inputs; infinite when the predicted labels differ."""
    x, normalised = random_inputs(layers, mean, std, samples)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    goodness, label = session.run([GOODNESS, LABEL], {INPUT: x})
    with torch.no_grad():
        expected = MFNet(layers, mode).eval()(normalised).numpy()  # (samples, classes)
    error = float(np.abs(goodness - expected).max() / max(np.abs(expected).max(), 1e-12))
    top2 = np.sort(expected, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4 * np.abs(expected).max()  # not a near-tie
    if not np.array_equal(label[clear, 0], expected.argmax(1)[clear]):
        return float("inf")
    return error


@dataclass(frozen=True)
class ExportPlan:
    """What to export, every argument checked: a network's first `upto` layers (all: None)
    in prediction `mode`."""

    ws: Workspace
    network: NetworkVersion
    versions: list[LayerVersion]
    mode: str
    upto: int | None

    def build(self) -> Export:
        return _build(self)


def plan_export(ws: Workspace, ref: str, mode: str | None = None,
                upto: int | None = None) -> ExportPlan:
    network = ws.registry.resolve_network(ref)
    mode = mode or network.mode
    if mode not in MODES:
        raise ConfigError(f"unknown prediction mode {mode!r}; choose bp or ff")
    versions = ws.registry.network_layers(network)
    if upto is not None and not 1 <= upto <= len(versions):
        raise ConfigError(f"upto must lie in 1..{len(versions)} for {network.ref}, the "
                          "number of its layers to export")
    return ExportPlan(ws, network, versions[:upto] if upto else versions, mode, upto)


def build_export(ws: Workspace, ref: str, mode: str | None = None,
                 upto: int | None = None) -> Export:
    """Build and check the ONNX model of a network; nothing is written."""
    return plan_export(ws, ref, mode, upto).build()


def _build(plan: ExportPlan) -> Export:
    ws, network, versions, mode, upto = plan.ws, plan.network, plan.versions, plan.mode, \
        plan.upto
    dataset = ws.registry.dataset(network.dataset)
    layers = load_layers(ws, versions)
    mean, std = normalizer_arrays(dataset)
    model = build_model(layers, mode, mean, std, _metadata(network, versions, mode, upto, dataset),
                        doc=f"mfstore {network.ref}, {mode} mode")
    model.model_version = network.version
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"the ONNX model of {network.ref} fails onnx.checker: {err}") from err
    data = model.SerializeToString()
    error = parity_error(data, layers, mode, mean, std)
    if not error <= TOLERANCE:
        raise ExportError(f"ONNX Runtime disagrees with PyTorch on {network.ref} (relative error "
                          f"{error:.2e} > {TOLERANCE:.0e}); nothing was written")
    return Export(network, dataset, mode, upto, sha256(data), error, data)


LABELS_FILE = "labels.txt"  # class names, one a line: Triton's label_filename of `goodness`


def triton_model_config(name: str, export: Export,
                        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE) -> ModelConfig:
    """The Triton model configuration of an export (`onnxruntime_onnx`, batch axis implied).
    It holds only what every version of the model shares; the version's own facts (network
    version, blocks) are in the ONNX metadata."""
    config = mc.ModelConfig(name=check_name(name, "model"), platform="onnxruntime_onnx",
                            max_batch_size=max_batch_size,
                            dynamic_batching=mc.ModelDynamicBatching())
    tokens = export.dataset.options.get("vocab") is not None
    config.input.add(name=INPUT, data_type=mc.TYPE_INT64 if tokens else mc.TYPE_FP32,
                     dims=export.dataset.input_shape)
    config.output.add(name=GOODNESS, data_type=mc.TYPE_FP32, dims=[export.dataset.classes],
                      label_filename=LABELS_FILE if export.dataset.class_names else "")
    config.output.add(name=LABEL, data_type=mc.TYPE_INT64, dims=[1])  # (B, 1) as in the graph
    config.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_AUTO)
    for key, value in (("mfstore.network", export.network.name), ("mfstore.mode", export.mode),
                       ("mfstore.upto", "" if export.upto is None else str(export.upto))):
        config.parameters[key].string_value = value
    return config


def class_labels(names: list[str] | None) -> bytes | None:
    """The label file of a dataset's class names (None when it has none)."""
    if not names:
        return None
    problems = [p for p in map(class_name_problem, names) if p]
    if problems:
        raise ExportError(f"{problems[0]}; rename the class")
    return "".join(f"{n}\n" for n in names).encode()


def triton_files(repo: str, name: str, export: Export,
                 max_batch_size: int) -> list[tuple[str, bytes]]:
    """(path, bytes) of the export in a Triton repository, the version's model last so that a
    repository poller never sees a model before its configuration."""
    folder = f"{repo.rstrip('/')}/{name}"
    config = triton_model_config(name, export, max_batch_size)
    files = [(f"{folder}/config.pbtxt", text_format.MessageToString(config).encode())]
    labels = class_labels(export.dataset.class_names)
    if labels is not None:
        files.append((f"{folder}/{LABELS_FILE}", labels))
    return [*files, (f"{folder}/{export.network.version}/model.onnx", export.data)]


@dataclass(frozen=True)
class Target:
    """One file an export writes: where (a path or fsspec URL), its bytes, whether other
    bytes there may be replaced, and the option that named it (for the way out of a failure)."""

    path: str
    data: bytes
    replaceable: bool
    option: str  # "out" or "triton_repo"

    @contextmanager
    def reaching(self, doing: str) -> Iterator[None]:
        """A file system's or its client's errors as one line naming this target's option."""
        try:
            yield
        except (ConfigError, ConflictError):
            raise
        except StoreError as err:  # the store's own line, with this export's way out
            raise StoreError(err.message, option(self.option)) from None
        except Exception as err:
            if not (transport_error(err) or isinstance(err, ValueError)):
                raise
            raise StoreError(f"cannot {doing} {self.path}: {one_line(err)}",
                             option(self.option)) from None

    def existing(self) -> bytes | None:
        """The bytes there now, None when nothing is there."""
        with self.reaching("read"):
            fs, path = fsspec.core.url_to_fs(self.path)
            if fs.isdir(path):
                raise ConfigError(f"cannot write {self.path}: it is a folder; name a file",
                                  option(self.option))
            return fs.cat_file(path) if fs.isfile(path) else None

    def plan(self) -> str:
        """"same" when it holds these bytes already, "new" when it holds nothing, else
        "replace"; replacing is refused in a Triton repository (a version, its configuration
        and labels are what a running server serves)."""
        current = self.existing()
        if current is None:
            return "new"
        if current == self.data:
            return "same"
        if not self.replaceable:
            raise ConflictError(f"{self.path} already exists with other content (another "
                                "mode, layer count or batch size); export under another model "
                                "name")
        return "replace"

    def write(self) -> None:
        """Atomically: a temporary file beside it, renamed (removed again on failure)."""
        folder, name = posixpath.split(self.path.rstrip("/"))
        with self.reaching("write"):
            Store(folder or ".").put(name, self.data)

    def remove(self) -> None:
        with contextlib.suppress(Exception):  # best effort: the write's own error is raised
            fs, path = fsspec.core.url_to_fs(self.path)
            if fs.isfile(path):
                fs.rm(path)


def write_all(plans: list[tuple[Target, str]]) -> None:
    """Write every target as planned (`Target.plan`, every one checked before the first is
    written); the files this call created are removed again if a later write fails."""
    created: list[Target] = []
    try:
        for target, plan in plans:
            if plan != "same":
                target.write()
            if plan == "new":
                created.append(target)
    except BaseException:
        for target in created:
            target.remove()
        raise


@dataclass(frozen=True)
class ExportJob:
    """An export to a file and/or a Triton repository, every argument checked."""

    plan: ExportPlan
    out: str | None
    triton_repo: str | None
    model_name: str | None
    max_batch_size: int

    def run(self) -> Export:
        return _write_export(self)


def plan_network_export(ws: Workspace, ref: str, mode: str | None = None,
                        upto: int | None = None, out: str | None = None,
                        triton_repo: str | None = None, model_name: str | None = None,
                        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE) -> ExportJob:
    """Export to `out` and/or a Triton repository, checked and ready to build and write."""
    if out is None and triton_repo is None:
        raise ConfigError("say where to export: an ONNX file, a Triton repository or both")
    if not 1 <= max_batch_size <= INT32:
        raise ConfigError(f"max_batch_size must lie in 1..{INT32} (Triton's int32), got "
                          f"{max_batch_size}")
    if model_name is not None:
        check_name(model_name, "model")
    return ExportJob(plan_export(ws, ref, mode, upto), out, triton_repo, model_name,
                     max_batch_size)


def export_network(ws: Workspace, ref: str, mode: str | None = None, upto: int | None = None,
                   out: str | None = None, triton_repo: str | None = None,
                   model_name: str | None = None,
                   max_batch_size: int = DEFAULT_MAX_BATCH_SIZE) -> Export:
    """Export to `out` and/or a Triton repository; record every export in the registry.
    Nothing is written unless every check passes and every target is free (or already holds
    the same bytes); `out` is replaced, a Triton repository's files never are."""
    return plan_network_export(ws, ref, mode, upto, out, triton_repo, model_name,
                               max_batch_size).run()


def _write_export(job: ExportJob) -> Export:
    ws, out, triton_repo = job.plan.ws, job.out, job.triton_repo
    model_name, max_batch_size = job.model_name, job.max_batch_size
    export = job.plan.build()
    targets: list[Target] = []
    if out is not None:
        targets.append(Target(out, export.data, True, "out"))
        export.targets.append(out)
    if triton_repo is not None:
        name = model_name or export.network.name
        targets += [Target(path, data, False, "triton_repo")
                    for path, data in triton_files(triton_repo, name, export, max_batch_size)]
        export.targets.append(targets[-1].path)
    plans = [(t, t.plan()) for t in targets]  # each reachable and free before any write
    stored = f"exports/{export.sha256}.onnx"
    if not ws.store.exists(stored):  # the store's copy first: a full store writes no target
        ws.store.put(stored, export.data)
    write_all(plans)
    for where in export.targets:
        ws.registry.add_export(ExportRecord(export.network.name, export.network.version,
                                            export.mode, export.upto, export.sha256, stored,
                                            where))
    return export


def onnx_accuracy(ws: Workspace, export: Export, split: str = "test") -> tuple[float, int]:
    """Accuracy of an exported model run by ONNX Runtime on a split of its dataset, fed raw
    examples (the stored normalised ones mapped back through the recorded statistics; token
    ids as int64)."""
    mean, std = normalizer_arrays(export.dataset)
    session = ort.InferenceSession(export.data, providers=["CPUExecutionProvider"])
    source = StreamBatches(ws.store, dataset_stream(ws, export.dataset), split,
                           options=ws.stream_options)
    correct = total = 0
    tokens = export.dataset.options.get("vocab") is not None
    for x, y in source.ordered():
        raw = x.numpy() * std + mean  # (B, *input_shape), the units the dataset came in
        (label,) = session.run([LABEL], {INPUT: raw.astype(np.int64 if tokens else np.float32)})
        correct += int((label[:, 0] == y.numpy()).sum())
        total += len(label)
    return correct / max(total, 1), total
