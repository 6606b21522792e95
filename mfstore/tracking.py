"""MLflow logging: one run per layer version, one per export.

    experiment "mfstore" (or $MLFLOW_EXPERIMENT_NAME)
      ├── run "net.l1@1"   params  spec.*, config.*          (what was trained, and how)
      │                    metrics train_loss, val_loss, val_accuracy at step = epoch
      │                            test_accuracy, test_loss, kept_val_accuracy, kept_val_loss
      │                            (the kept weights), best_epoch
      │                    tags    mfstore.block_sha256, mfstore.digest, mfstore.lineage,
      │                            mfstore.dataset_fingerprint, …
      │                    artifact block/net.l1-v1.safetensors (the block file itself)
      └── run "export net@1 (bp)"  artifact model/ (MLflow's onnx flavour: runs:/ID/model
                                   loads it), tags its sha256 and layers

The history comes from the block header, so a layer trained long ago logs the same run as one
trained now. MLflow is an optional dependency (the `mlflow` extra); everything here talks to it
through `MlflowClient` on an explicit tracking URI, never through global state.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import onnx

from mfstore.errors import ConfigError, IntegrityError, MFStoreError
from mfstore.export import Export
from mfstore.fixes import VerifyFix, option
from mfstore.numbers import shown
from mfstore.registry import LayerVersion
from mfstore.registry.engine import display_url as display
from mfstore.usage import first_by_digest
from mfstore.workspace import Workspace

EXPERIMENT = "mfstore"
PER_EPOCH = ("train_loss", "val_loss", "val_accuracy")
BATCH = 500  # metrics per request (MLflow accepts up to 1000)


class TrackingError(MFStoreError):
    """The MLflow tracking server or store refused or could not be reached."""


@contextmanager
def reaching(uri: str) -> Iterator[None]:
    """MLflow's and its transports' errors as one `TrackingError` line."""
    try:
        yield
    except MFStoreError:
        raise
    except Exception as err:
        if not isinstance(err, OSError) and type(err).__module__.split(".")[0] not in {
                "mlflow", "requests", "urllib3", "sqlalchemy"}:
            raise
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise TrackingError(f"MLflow at {uri!r} failed: {first}") from err


def require_mlflow() -> Any:
    """The `mlflow` module, or a one-line error naming the extra that installs it."""
    try:
        import mlflow  # the mlflow extra is optional: imported only with --mlflow
    except ImportError as err:
        raise ConfigError("MLflow logging needs the mlflow package: install mfstore[mlflow]"
                          ) from err
    return mlflow


def tracking_uri(uri: str | None) -> str:
    """`uri`, else $MLFLOW_TRACKING_URI; refused when neither says where to log."""
    found = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not found:
        raise ConfigError("say where MLflow runs go: give a tracking URI (e.g. "
                          "sqlite:///mlflow.db or http://mlflow:5000) or set "
                          "MLFLOW_TRACKING_URI", option("mlflow"))
    try:
        urllib.parse.urlsplit(found)
    except ValueError as err:
        raise ConfigError(f"the MLflow tracking URI {shown(found)} cannot be read ({err}); give "
                          "one such as sqlite:///mlflow.db or http://mlflow:5000",
                          option("mlflow")) from None
    return found


class Tracker:
    """Logs to one MLflow tracking server or store, into one experiment."""

    def __init__(self, uri: str | None, experiment: str | None = None) -> None:
        require_mlflow()
        # the mlflow extra is optional: imported only with --mlflow
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri(uri)
        with reaching(self.uri):
            self.client = MlflowClient(tracking_uri=self.uri)
        self.experiment = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
        self._experiment_id: str | None = None

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment)
            if found is None:
                try:
                    self._experiment_id = str(self.client.create_experiment(self.experiment))
                except Exception:  # created by another process meanwhile
                    found = self.client.get_experiment_by_name(self.experiment)
                    if found is None:
                        raise
            if found is not None:
                self._experiment_id = str(found.experiment_id)
        return str(self._experiment_id)

    @contextmanager
    def run(self, name: str, tags: dict[str, str]) -> Iterator[str]:
        """A run that ends FINISHED, or FAILED when logging to it fails."""
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        run_id = run.info.run_id
        try:
            yield run_id
        except BaseException:
            self.client.set_terminated(run_id, "FAILED")
            raise
        self.client.set_terminated(run_id, "FINISHED")

    def log(self, run_id: str, params: dict[str, Any], metrics: list[tuple[str, float, int]]
            ) -> None:
        # the mlflow extra is optional: imported only with --mlflow
        from mlflow.entities import Metric, Param

        self.client.log_batch(run_id, params=[Param(k, _text(v)) for k, v in params.items()])
        stamp = _now_ms()
        entries = [Metric(k, float(v), stamp, step) for k, v, step in metrics]
        for start in range(0, len(entries), BATCH):
            self.client.log_batch(run_id, metrics=entries[start:start + BATCH])


def _now_ms() -> int:
    return int(time.time() * 1000)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def flatten(prefix: str, data: dict[str, Any]) -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"prefix.a.b": 1}`."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(f"{prefix}.{key}", value))
        else:
            out[f"{prefix}.{key}"] = value
    return out


def epoch_metrics(layer: LayerVersion, history: dict[str, Any]) -> list[tuple[str, float, int]]:
    """Per-epoch series (step = epoch), then the recorded metrics of the kept weights."""
    out = [(key, float(e[key]), int(e["epoch"])) for e in history.get("epochs", [])
           for key in PER_EPOCH if e.get(key) is not None]
    for key, value in sorted(layer.metrics.items()):
        if isinstance(value, int | float):
            out.append((f"kept_{key}" if key in PER_EPOCH else key, float(value), 0))
    if isinstance(history.get("best_epoch"), int):
        out.append(("best_epoch", float(history["best_epoch"]), 0))
    return out


def layer_tags(ws: Workspace, layer: LayerVersion) -> dict[str, str]:
    producers = first_by_digest(ws.registry.layers())
    chain = layer.signature.chain
    tags = {"mfstore.layer": layer.ref, "mfstore.block_sha256": layer.block_sha256,
            "mfstore.digest": layer.digest, "mfstore.dataset": layer.dataset,
            "mfstore.dataset_fingerprint": layer.signature.dataset_fingerprint,
            "mfstore.lineage": json.dumps([producers[d].ref if d in producers else d
                                           for d in chain]),
            "mfstore.lineage_digests": json.dumps(list(chain)),
            "mfstore.status": layer.status, "mfstore.registry": ws.registry.shown}
    if layer.repairs is not None:
        tags["mfstore.repairs"] = f"{layer.name}@{layer.repairs}"
    if layer.note:
        tags["mfstore.note"] = layer.note
    return tags


def log_layer(tracker: Tracker, ws: Workspace, layer: LayerVersion) -> str:
    """One run for `layer`: its spec and config, its per-epoch history, its lineage and its
    block file. Returns the run id."""
    stored = ws.read_block(layer)
    if stored.data is None or stored.history is None:
        raise IntegrityError(f"the block of {layer.ref} is missing or damaged: nothing to log",
                             VerifyFix())
    with tracker.run(layer.ref, layer_tags(ws, layer)) as run_id:
        tracker.log(run_id, {**flatten("spec", layer.spec.to_dict()),
                             **flatten("config", layer.config)},
                    epoch_metrics(layer, stored.history))
        with tempfile.TemporaryDirectory(prefix="mfstore-mlflow-") as folder:
            path = Path(folder) / f"{layer.name}-v{layer.version}.safetensors"
            path.write_bytes(stored.data)
            tracker.client.log_artifact(run_id, str(path), artifact_path="block")
    return run_id


# MLflow's HTTP client tries an unreachable server 8 times with a growing backoff and a
# 120 s timeout: minutes before the check fails. The check tries twice, 10 s each, unless
# the user set these; logging after training keeps MLflow's patience.
CHECK_PATIENCE = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
                  "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


@contextmanager
def impatient() -> Iterator[None]:
    """MLflow's HTTP settings (read from the environment on each request) as `CHECK_PATIENCE`
    where the user left them unset, for the duration of the block."""
    unset = [key for key in CHECK_PATIENCE if key not in os.environ]
    os.environ.update({key: CHECK_PATIENCE[key] for key in unset})
    try:
        yield
    finally:
        for key in unset:
            os.environ.pop(key, None)


def check_tracking(uri: str | None, experiment: str | None = None) -> str:
    """Reach the tracking store and its experiment (creating the experiment when missing)
    before any work, so a wrong URI fails in seconds rather than after training; the URI."""
    with reaching(display(tracking_uri(uri))), impatient():
        tracker = Tracker(uri, experiment)
        tracker.experiment_id  # noqa: B018  (reached, and created when missing)
        return tracker.uri


def log_layers(ws: Workspace, layers: Sequence[LayerVersion], uri: str | None,
               experiment: str | None = None) -> list[str]:
    """One MLflow run per layer version; their run ids."""
    with reaching(display(tracking_uri(uri))):
        tracker = Tracker(uri, experiment)
        return [log_layer(tracker, ws, layer) for layer in layers]


def log_export(export: Export, uri: str | None, experiment: str | None = None) -> str:
    """One MLflow run holding the exported ONNX model (MLflow's onnx flavour)."""
    with reaching(display(tracking_uri(uri))):
        return _log_model(Tracker(uri, experiment), require_mlflow(), export)


def _log_model(tracker: Tracker, mlflow: Any, export: Export) -> str:
    network = export.network
    tags = {"mfstore.network": network.ref, "mfstore.onnx_sha256": export.sha256,
            "mfstore.mode": export.mode, "mfstore.dataset": export.dataset.name,
            "mfstore.dataset_fingerprint": export.dataset.fingerprint,
            "mfstore.layers": json.dumps([f"{n}@{v}" for n, v in network.layers])}
    with tracker.run(f"export {network.ref} ({export.mode})", tags) as run_id:
        tracker.log(run_id, {"network": network.ref, "mode": export.mode,
                             "upto": export.upto or "all", "layers": len(network.layers)},
                    [("max_relative_error", export.max_relative_error, 0)])
        with tempfile.TemporaryDirectory(prefix="mfstore-mlflow-") as folder:
            model = Path(folder) / "model"  # MLflow's onnx flavour: MLmodel, model.onnx, …
            mlflow.onnx.save_model(onnx.load_from_string(export.data), str(model),
                                   save_as_external_data=False)
            tracker.client.log_artifacts(run_id, str(model), artifact_path="model")
    return run_id
