"""The v2 (KServe / Triton) inference server over ONNX Runtime: REST and gRPC, Triton's model
configuration, dynamic batching, statistics, metrics, the repository API, and models that
follow their source (a repository folder or a registry alias) while they are served."""
