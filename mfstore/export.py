"""Export a network to ONNX (bp or ff mode, optionally its first K layers) and to a Triton
model repository. Every export passes `onnx.checker` (full check) and matches PyTorch through
ONNX Runtime on fresh random inputs before anything is written."""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
import torch

from mfstore.errors import ConfigError, ExportError
from mfstore.modules import MODES, MFLayer, MFNet
from mfstore.network import load_layers, network_layers, resolve_network
from mfstore.onnx_graph import GOODNESS, INPUT, LABEL, build_model
from mfstore.registry import DatasetRecord, ExportRecord, LayerVersion, NetworkVersion
from mfstore.store import Store, sha256
from mfstore.workspace import Workspace

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


def _metadata(network: NetworkVersion, versions: list[LayerVersion], mode: str,
              upto: int | None, dataset: DatasetRecord) -> dict[str, str]:
    from mfstore import __version__

    return {
        "mfstore.network": network.name,
        "mfstore.network_version": str(network.version),
        "mfstore.layers": json.dumps([{"ref": v.ref, "block_sha256": v.block_sha256,
                                       "digest": v.digest} for v in versions]),
        "mfstore.mode": mode,
        "mfstore.upto": "" if upto is None else str(upto),
        "mfstore.input_shape": json.dumps(list(dataset.input_shape)),
        "mfstore.normalization": json.dumps({"in_graph": True, "formula": "(x - mean) / std",
                                             **dataset.normalizer}),
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


def parity_error(data: bytes, layers: list[MFLayer], mode: str, mean: np.ndarray,
                 std: np.ndarray, samples: int = 64) -> float:
    """Max relative error of ONNX Runtime (CPU provider) against PyTorch on fresh random raw
    inputs; infinite when the predicted labels differ."""
    rng = np.random.default_rng()
    x = (mean + std * rng.standard_normal((samples, *layers[0].spec.in_shape))).astype(np.float32)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    goodness, label = session.run([GOODNESS, LABEL], {INPUT: x})
    with torch.no_grad():
        normalised = (torch.from_numpy(x) - torch.from_numpy(mean)) / torch.from_numpy(std)
        expected = MFNet(layers, mode).eval()(normalised).numpy()  # (samples, classes)
    error = float(np.abs(goodness - expected).max() / max(np.abs(expected).max(), 1e-12))
    top2 = np.sort(expected, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4 * np.abs(expected).max()  # not a near-tie
    if not np.array_equal(label[clear], expected.argmax(1)[clear]):
        return float("inf")
    return error


def build_export(ws: Workspace, ref: str, mode: str | None = None,
                 upto: int | None = None) -> Export:
    """Build and check the ONNX model of a network; nothing is written."""
    network = resolve_network(ws, ref)
    mode = mode or network.mode
    if mode not in MODES:
        raise ConfigError(f"unknown prediction mode {mode!r}; choose bp or ff")
    versions = network_layers(ws, network)
    if upto is not None and not 1 <= upto <= len(versions):
        raise ConfigError(f"--upto must lie in 1..{len(versions)} for {network.ref}")
    versions = versions[:upto] if upto else versions
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


def _write(target: str, data: bytes) -> None:
    """Write a file at a path or fsspec URL atomically."""
    folder, name = posixpath.split(target.rstrip("/"))
    Store(folder or ".").put(name, data)


def triton_config(name: str, export: Export, max_batch_size: int) -> str:
    """config.pbtxt for Triton's onnxruntime backend; `label` (B,) is served as (B, 1)."""
    dims = ", ".join(str(d) for d in export.dataset.input_shape)
    classes = export.dataset.classes
    return f"""name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: {max_batch_size}
input [
  {{
    name: "{INPUT}"
    data_type: TYPE_FP32
    dims: [ {dims} ]
  }}
]
output [
  {{
    name: "{GOODNESS}"
    data_type: TYPE_FP32
    dims: [ {classes} ]
  }},
  {{
    name: "{LABEL}"
    data_type: TYPE_INT64
    dims: [ 1 ]
    reshape: {{ shape: [ ] }}
  }}
]
dynamic_batching {{ }}
instance_group [
  {{
    count: 1
    kind: KIND_AUTO
  }}
]
parameters {{
  key: "mfstore.network"
  value: {{ string_value: "{export.network.ref}" }}
}}
parameters {{
  key: "mfstore.mode"
  value: {{ string_value: "{export.mode}" }}
}}
"""


def export_network(ws: Workspace, ref: str, mode: str | None = None, upto: int | None = None,
                   out: str | None = None, triton_repo: str | None = None,
                   model_name: str | None = None, max_batch_size: int = 1024) -> Export:
    """Export to `out` and/or a Triton repository; record every export in the registry."""
    if out is None and triton_repo is None:
        raise ConfigError("say where to export: --out FILE.onnx and/or --triton-repo DIR")
    if max_batch_size < 1:
        raise ConfigError(f"--max-batch-size must be at least 1, got {max_batch_size}")
    export = build_export(ws, ref, mode, upto)
    stored = f"exports/{export.sha256}.onnx"
    if not ws.store.exists(stored):
        ws.store.put(stored, export.data)
    if out is not None:
        _write(out, export.data)
        export.targets.append(out)
    if triton_repo is not None:
        name = model_name or export.network.name
        folder = f"{triton_repo.rstrip('/')}/{name}"
        _write(f"{folder}/{export.network.version}/model.onnx", export.data)
        _write(f"{folder}/config.pbtxt", triton_config(name, export, max_batch_size).encode())
        export.targets.append(f"{folder}/{export.network.version}/model.onnx")
    for target in export.targets:
        ws.registry.add_export(ExportRecord(export.network.name, export.network.version,
                                            export.mode, export.upto, export.sha256, stored,
                                            target))
    return export


def onnx_accuracy(ws: Workspace, export: Export, split: str = "test") -> tuple[float, int]:
    """Accuracy of an exported model run by ONNX Runtime on a split of its dataset, fed raw
    examples (the stored normalised ones mapped back through the recorded statistics)."""
    from mfstore.stream import StreamBatches
    from mfstore.stream_chain import dataset_stream

    mean, std = normalizer_arrays(export.dataset)
    session = ort.InferenceSession(export.data, providers=["CPUExecutionProvider"])
    source = StreamBatches(ws.store, dataset_stream(ws, export.dataset), split,
                           options=ws.stream_options)
    correct = total = 0
    for x, y in source.ordered():
        raw = x.numpy() * std + mean  # (B, *input_shape), the units the dataset came in
        (label,) = session.run([LABEL], {INPUT: raw.astype(np.float32)})
        correct += int((label == y.numpy()).sum())
        total += len(label)
    return correct / max(total, 1), total
