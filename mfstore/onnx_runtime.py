"""ONNX Runtime, imported with its telemetry off: the one place mfstore imports it.

ONNX Runtime 1.2x on Linux and macOS creates a device id and an event database under
`~/.cache/Microsoft/DeveloperTools` as it starts, outside every folder the user named, unless
`ORT_DISABLE_TELEMETRY` is set before its first import; `disable_telemetry_events()` then stops
whatever a process that imported it earlier would still send. A caller who set the variable
keeps their choice.
"""

from __future__ import annotations

import os

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import onnxruntime as ort

ort.disable_telemetry_events()

__all__ = ["ort"]
