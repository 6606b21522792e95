"""Models the server holds: one ONNX Runtime session per model version, shared by requests.

Execution providers: CUDA first where ONNX Runtime has it and a GPU is present, CPU as the
fallback; the provider really in use is read back from the session, logged and reported.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from mfstore.errors import DeviceError, NotFoundError
from serving.errors import RequestError
from serving.protocol import TensorSpec

log = logging.getLogger("mfstore.serving")
ONNX_TYPES = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(float16)": "FP16",
              "tensor(int64)": "INT64", "tensor(int32)": "INT32", "tensor(int16)": "INT16",
              "tensor(int8)": "INT8", "tensor(uint8)": "UINT8", "tensor(bool)": "BOOL"}


@dataclass
class ServedModel:
    name: str
    version: int
    session: ort.InferenceSession
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    provider: str
    metadata: dict[str, str] = field(default_factory=dict)

    def run(self, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        return dict(zip(outputs, self.session.run(outputs, inputs), strict=True))

    def describe(self, versions: list[int]) -> dict[str, Any]:
        """v2 model metadata, with the provider in use and the mfstore metadata."""
        return {"name": self.name, "versions": [str(v) for v in versions],
                "platform": "onnxruntime_onnx",
                "inputs": [s.to_dict() for s in self.inputs.values()],
                "outputs": [s.to_dict() for s in self.outputs.values()],
                "parameters": {"execution_provider": self.provider, **self.metadata}}


def gpu_present() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


def providers(device: str, tf32: bool = False) -> list[Any]:
    """Execution providers to ask for, best first."""
    if device not in ("auto", "cpu", "cuda"):
        raise DeviceError(f"unknown device {device!r}; use auto, cpu or cuda")
    cuda_built = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "cuda" and not cuda_built:
        raise DeviceError("CUDA was requested but this ONNX Runtime has no CUDA provider; "
                          "install onnxruntime-gpu, or use --device cpu")
    if device == "cuda" or (device == "auto" and cuda_built and gpu_present()):
        return [("CUDAExecutionProvider", {"use_tf32": int(tf32)}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session_options(threads: int | None) -> ort.SessionOptions:
    """A server's settings: a few intra-op threads that do not spin between requests (the
    event loop shares the cores), one inter-op thread, every graph optimisation."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or min(os.cpu_count() or 1, 4)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def _specs(args: list[Any]) -> dict[str, TensorSpec]:
    return {a.name: TensorSpec(a.name, ONNX_TYPES.get(a.type, a.type),
                               tuple(d if isinstance(d, int) else -1 for d in a.shape))
            for a in args}


def load_model(name: str, version: int, model: bytes | str, device: str = "auto",
               threads: int | None = None, tf32: bool = False) -> ServedModel:
    session = ort.InferenceSession(model, session_options(threads),
                                   providers=providers(device, tf32))
    provider = session.get_providers()[0]
    if device == "cuda" and provider != "CUDAExecutionProvider":
        raise DeviceError(f"CUDA was requested for {name} but ONNX Runtime could not use it; "
                          "check the CUDA libraries, or use --device cpu")
    log.info("model %s version %d runs on %s", name, version, provider)
    meta = session.get_modelmeta().custom_metadata_map
    return ServedModel(name, version, session, _specs(session.get_inputs()),
                       _specs(session.get_outputs()), provider, dict(meta))


def scan_repository(root: str) -> list[tuple[str, int, str]]:
    """(name, version, path) of every `<root>/<name>/<version>/model.onnx` (Triton layout)."""
    base = Path(root)
    if not base.is_dir():
        raise NotFoundError(f"model repository {root!r} is not a folder")
    found = [(m.name, int(v.name), str(v / "model.onnx"))
             for m in sorted(base.iterdir()) if m.is_dir()
             for v in sorted(m.iterdir(), key=lambda p: p.name)
             if re.fullmatch(r"\d+", v.name) and (v / "model.onnx").is_file()]
    if not found:
        raise NotFoundError(f"model repository {root!r} holds no <name>/<version>/model.onnx")
    return found


class ModelSet:
    """Every served model version, by name and version."""

    def __init__(self, models: list[ServedModel]) -> None:
        self.by_name: dict[str, dict[int, ServedModel]] = {}
        for model in models:
            self.by_name.setdefault(model.name, {})[model.version] = model

    def versions(self, name: str) -> list[int]:
        return sorted(self.by_name.get(name, {}))

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The named version, or the newest one (Triton's default policy)."""
        versions = self.by_name.get(name)
        if not versions:
            raise RequestError(404, f"unknown model {name!r}; this server has "
                                    f"{', '.join(sorted(self.by_name)) or 'no models'}")
        if version is None:
            return versions[max(versions)]
        if not version.isdigit() or int(version) not in versions:
            raise RequestError(404, f"model {name!r} has no version {version!r}; it has "
                                    f"{', '.join(str(v) for v in sorted(versions))}")
        return versions[int(version)]

    def all(self) -> list[ServedModel]:
        return [m for versions in self.by_name.values() for m in versions.values()]


def load_models(repo: str | None, networks: list[tuple[str, int, bytes]], device: str = "auto",
                threads: int | None = None, tf32: bool = False,
                require_gpu: bool = False) -> ModelSet:
    """Sessions for every model of a Triton-layout repository and every exported network
    (name, version, ONNX bytes). `require_gpu` refuses unless every session runs on CUDA."""
    sources: list[tuple[str, int, bytes | str]] = list(networks)
    if repo is not None:
        sources += scan_repository(repo)
    if not sources:
        raise NotFoundError("nothing to serve: give --model-repo DIR and/or NET[@VERSION]")
    models = [load_model(name, version, src, device, threads, tf32)
              for name, version, src in sources]
    if require_gpu:
        for model in models:
            if model.provider != "CUDAExecutionProvider":
                raise DeviceError(f"--require-gpu: {model.name} version {model.version} would "
                                  f"run on {model.provider}; no usable CUDA device")
    return ModelSet(models)
