"""ONNX Runtime sessions as a server wants them.

Providers: CUDA first where ONNX Runtime has it and a GPU is present, CPU as the fallback; the
provider really in use is read back from the session. Before the first CUDA session the CUDA
and cuDNN libraries that pip's `nvidia-*` wheels carry are preloaded (`preload_dlls`, ONNX
Runtime >= 1.21), or ONNX Runtime may not find them and fall back to CPU. On CUDA, batches run
through I/O binding: inputs are copied to the device once, outputs allocated there and copied
back once.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from mfstore.config import check_device
from mfstore.errors import ConfigError, DataFormatError, DeviceError
from mfstore.onnx_runtime import ort

log = logging.getLogger("mfstore.serving")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
ort.set_default_logger_severity(3)  # ONNX Runtime's own warnings off; its errors still show
_state = ort.capi.onnxruntime_pybind11_state
RUN_ERRORS = (_state.InvalidArgument, _state.Fail)  # a call ONNX Runtime refuses


@dataclass(frozen=True)
class RuntimeOptions:
    """How sessions are made: device (auto, cpu, cuda), intra-op threads (None: cores, at most
    4), TF32 on CUDA, and whether a session not on CUDA is refused."""
    device: str = "auto"
    threads: int | None = None
    tf32: bool = False
    require_gpu: bool = False

    def __post_init__(self) -> None:
        providers(self.device)  # an unknown device is refused now, not at the first model
        if self.threads is not None and not 1 <= self.threads <= 1024:
            raise ConfigError(f"ONNX Runtime threads must lie in 1..1024, got {self.threads}")


def gpu_present() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


def cuda_options(tf32: bool, device_id: int = 0) -> dict[str, str]:
    """The CUDA provider's options, each chosen for a server with dynamic batching."""
    return {
        "device_id": str(device_id),
        # batch sizes vary from call to call: EXHAUSTIVE (the default) would benchmark the
        # convolution algorithms again for every new shape, in the middle of requests
        "cudnn_conv_algo_search": "HEURISTIC",
        # grow the memory arena by what a batch needs, not by doubling it
        "arena_extend_strategy": "kSameAsRequested",
        # float32 answers unless the user trades accuracy (~5e-4 relative) for speed
        "use_tf32": str(int(tf32)),
    }


def providers(device: str, tf32: bool = False) -> list[Any]:
    """Execution providers to ask for, best first (`cuda:N`: the CUDA provider on GPU N)."""
    kind, _, index = check_device(device).partition(":")
    cuda_built = CUDA in ort.get_available_providers()
    if kind == "cuda" and not cuda_built:
        raise DeviceError("CUDA was requested but this ONNX Runtime has no CUDA provider; "
                          "install onnxruntime-gpu, or serve on the CPU")
    if kind == "cuda" or (kind == "auto" and cuda_built and gpu_present()):
        return [(CUDA, cuda_options(tf32, int(index or 0))), CPU]
    return [CPU]


_preloaded = False


def preload_cuda_libraries() -> None:
    """`onnxruntime.preload_dlls()` once, where it exists; what it prints goes to the log."""
    global _preloaded
    preload = getattr(ort, "preload_dlls", None)
    if _preloaded or preload is None:
        return
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        preload(cuda=True, cudnn=True, msvc=True)
    for line in printed.getvalue().splitlines():
        log.warning("preload_dlls: %s", line)
    log.info("CUDA and cuDNN libraries preloaded (onnxruntime.preload_dlls)")
    _preloaded = True


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


def create_session(model: bytes | str, what: str,
                   options: RuntimeOptions) -> tuple[ort.InferenceSession, str]:
    """A session and the provider it really uses; a file ONNX Runtime cannot read is a
    `DataFormatError` naming it, a session off CUDA when CUDA is required a `DeviceError`."""
    wanted = providers(options.device, options.tf32)
    if wanted[0] != CPU:
        preload_cuda_libraries()
    try:
        session = ort.InferenceSession(model, session_options(options.threads),
                                       providers=wanted)
    except Exception as err:  # ONNX Runtime raises its own unrelated classes
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataFormatError(f"cannot load {what}: ONNX Runtime says: {first}; export it "
                              "again") from None
    provider = session.get_providers()[0]
    if provider != CUDA and (options.device.startswith("cuda") or options.require_gpu):
        raise DeviceError(f"CUDA was requested, but {what} would run on {provider}: ONNX "
                          "Runtime could not use CUDA; check the CUDA libraries, or serve on "
                          "the CPU")
    return session, provider


def run_bound(session: ort.InferenceSession, inputs: dict[str, np.ndarray],
              outputs: list[str], device: str) -> list[np.ndarray]:
    """One call through I/O binding: each input copied to `device` once, each output
    allocated there and copied back once."""
    binding = session.io_binding()
    for name, array in inputs.items():
        binding.bind_ortvalue_input(
            name, ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), device, 0))
    for name in outputs:
        binding.bind_output(name, device)
    session.run_with_iobinding(binding)
    return list(binding.copy_outputs_to_cpu())
