"""GPU memory per device, read through NVML (the driver's `libnvidia-ml.so.1`), the source of
Triton's `nv_gpu_memory_*` metrics. No CUDA context is created; without a driver there is
nothing to report."""

from __future__ import annotations

import ctypes
import functools
import logging

log = logging.getLogger("mfstore.serving")


class _Memory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong),
                ("used", ctypes.c_ulonglong)]


@functools.lru_cache(maxsize=1)
def _nvml() -> ctypes.CDLL | None:
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return None
    if nvml.nvmlInit_v2() != 0:
        log.warning("NVML did not start: GPU memory is not reported")
        return None
    return nvml


def gpu_memory() -> list[tuple[str, int, int]]:
    """(uuid, used bytes, total bytes) of every GPU; empty without an NVIDIA driver."""
    nvml = _nvml()
    if nvml is None:
        return []
    count = ctypes.c_uint()
    if nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
        return []
    found = []
    for index in range(count.value):
        handle, memory = ctypes.c_void_p(), _Memory()
        uuid = ctypes.create_string_buffer(96)
        if (nvml.nvmlDeviceGetHandleByIndex_v2(index, ctypes.byref(handle)) == 0
                and nvml.nvmlDeviceGetUUID(handle, uuid, 96) == 0
                and nvml.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory)) == 0):
            found.append((uuid.value.decode(), int(memory.used), int(memory.total)))
    return found
