"""A served model version: an ONNX Runtime session, the configuration it is served by, its
executor (one by one or dynamically batched) and its statistics.

Clients see the configuration's shapes (`dims`, batch axis first); the session takes and gives
the model's own (`reshape`, where the configuration has one); `run` converts between the two.
A version counts the requests it is answering so that a reload can drain it before closing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from mfstore.errors import DataFormatError
from serving import model_config as cfg
from serving.batching import Arrays, Executor
from serving.errors import RequestError, failure_reason
from serving.requests import InferRequest, RequestedOutput
from serving.sessions import CUDA, RUN_ERRORS, RuntimeOptions, create_session, run_bound
from serving.statistics import VersionStats
from serving.tensors import DATATYPES, classification

log = logging.getLogger("mfstore.serving")


@dataclass(frozen=True)
class VersionFiles:
    """What a model version is loaded from."""
    model: bytes | str  # ONNX bytes or a path
    config: mc.ModelConfig | None  # None: completed from the model
    labels: dict[str, list[str]] = field(default_factory=dict)  # by output
    where: str = ""  # for messages: the file, or the registry reference
    fingerprint: str = ""  # changes when the files do


class ModelVersion:
    def __init__(self, name: str, version: int, session: Any, provider: str,
                 config: mc.ModelConfig, files: VersionFiles) -> None:
        self.name, self.version, self.session, self.provider = name, version, session, provider
        self.config, self.labels, self.fingerprint = config, files.labels, files.fingerprint
        self.inputs, self.outputs = cfg.tensor_specs(config)
        # where the configuration reshapes: the model's per-example shape of an input, the
        # client's of an output
        self.reshape_in = {t.name: tuple(t.reshape.shape) for t in config.input
                           if t.HasField("reshape")}
        self.reshape_out = {t.name: tuple(t.dims) for t in config.output
                            if t.HasField("reshape")}
        self.metadata = dict(session.get_modelmeta().custom_metadata_map)
        self.io_binding = provider == CUDA
        self.stats = VersionStats(name, version)
        self.executor = Executor(self.run, self.stats, cfg.batch_policy(config),
                                 cfg.instance_count(config))
        self.active = 0
        self.drained: asyncio.Event | None = None

    @property
    def max_batch_size(self) -> int:
        return int(self.config.max_batch_size)

    def run(self, inputs: Arrays) -> Arrays:
        """Every output for `inputs` (client shapes in, client shapes out); thread-safe."""
        names = list(self.outputs)
        feed = {n: self._reshaped(a, self.reshape_in.get(n)) for n, a in inputs.items()}
        if self.io_binding:
            device = "cuda" if self.provider == CUDA else "cpu"
            results = run_bound(self.session, feed, names, device)
        else:
            results = self.session.run(names, feed)
        return {n: self._reshaped(r, self.reshape_out.get(n))
                for n, r in zip(names, results, strict=True)}

    def _reshaped(self, array: np.ndarray, inner: tuple[int, ...] | None) -> np.ndarray:
        if inner is None:
            return array
        return array.reshape((len(array), *inner) if self.max_batch_size else inner)

    async def infer(self, request: InferRequest) -> Arrays:
        """The requested outputs, classification applied."""
        try:
            results = await self.executor.infer(request.inputs, request.rows, self.active == 1)
        except RUN_ERRORS as err:
            raise RequestError(400, f"the model refused the input: {err}") from None
        return {out.name: classification(results[out.name], out.class_count,
                                         self.labels.get(out.name))
                if out.class_count else results[out.name] for out in request.outputs}

    def output_datatype(self, out: RequestedOutput) -> str:
        return "BYTES" if out.class_count else self.outputs[out.name].datatype

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Count a request while it is answered; record its duration and outcome."""
        self.active += 1
        start = time.perf_counter_ns()
        try:
            yield
        except BaseException as err:
            self.stats.request_done(time.perf_counter_ns() - start, failure_reason(err))
            raise
        else:
            self.stats.request_done(time.perf_counter_ns() - start)
        finally:
            self.active -= 1
            if self.drained is not None and self.active == 0:
                self.drained.set()

    async def drain(self) -> None:
        """Wait until no request is being answered (none can arrive: it is unlisted)."""
        self.drained = asyncio.Event()
        if self.active:
            await self.drained.wait()
        self.executor.close()

    def describe(self, versions: list[int]) -> dict[str, Any]:
        """v2 model metadata, with the provider in use and the model's own metadata."""
        return {"name": self.name, "versions": [str(v) for v in versions],
                "platform": "onnxruntime_onnx",
                "inputs": [s.to_dict() for s in self.inputs.values()],
                "outputs": [s.to_dict() for s in self.outputs.values()],
                "parameters": {"execution_provider": self.provider,
                               "max_batch_size": self.max_batch_size,
                               "dynamic_batching": self.executor.policy is not None,
                               **self.metadata}}

    def warm_up(self) -> None:
        """One example through the session, so that the first request does not pay for
        ONNX Runtime's first call; skipped when an axis has no fixed size."""
        specs = list(self.inputs.values())
        shapes = [tuple(1 if i == 0 and self.max_batch_size else d
                        for i, d in enumerate(s.shape)) for s in specs]
        if any(d < 0 for shape in shapes for d in shape) or any(
                s.datatype == "BYTES" for s in specs):
            return
        self.run({s.name: np.zeros(shape, DATATYPES[s.datatype])
                  for s, shape in zip(specs, shapes, strict=True)})


def load_version(name: str, version: int, files: VersionFiles, options: RuntimeOptions,
                 batching: cfg.BatchingOptions) -> ModelVersion:
    """Open, configure, check and warm up a model version (blocking: call it off the loop)."""
    what = f"model {name!r} version {version} ({files.where})"
    session, provider = create_session(files.model, what, options)
    config = cfg.autocomplete(name, files.config, session)
    cfg.with_options(config, batching, what)
    cfg.check_config(config, name, session, what)
    model = ModelVersion(name, version, session, provider, config, files)
    try:
        model.warm_up()
    except Exception as err:  # a model ONNX Runtime loads but cannot run
        raise DataFormatError(f"{what} fails on a zero example: {err}") from None
    log.info("model %s version %d runs on %s", name, version, provider)
    return model
