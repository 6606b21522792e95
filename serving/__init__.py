"""The v2 inference server over ONNX Runtime sessions (issue 5)."""
