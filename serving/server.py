"""What the REST and gRPC endpoints share: the repository of models, the token, the request
size limit, the metrics, and the answers that do not depend on the protocol."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from tritonclient.grpc import model_config_pb2 as mc

from mfstore.errors import ConfigError
from serving.errors import RequestError
from serving.metrics import exposition
from serving.models import ModelVersion
from serving.repository import Repository
from serving.statistics import VersionStats
from serving.tokens import check_token

EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration",
              "model_repository", "model_repository(unload_dependents)", "statistics"]


@dataclass
class InferenceServer:
    repository: Repository
    token: str | None = None
    max_request_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        check_token(self.token)
        if self.max_request_bytes < 1:
            raise ConfigError(f"the request size limit must be positive, got "
                              f"{self.max_request_bytes} bytes")
        self.expected = f"Bearer {self.token}".encode() if self.token else None

    def authorized(self, authorization: str | None) -> bool:
        """Whether a request's Authorization header lets it in."""
        return self.expected is None or hmac.compare_digest(
            (authorization or "").encode(), self.expected)

    def server_metadata(self) -> dict[str, object]:
        from mfstore import __version__

        return {"name": "mfstore", "version": __version__, "extensions": EXTENSIONS}

    def model(self, name: str, version: str | None = None) -> ModelVersion:
        return self.repository.get(name, version)

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        """v2 metadata; `versions` lists the versions in use, and a model that follows a
        registry alias names it (`parameters["mfstore.alias"]`)."""
        model = self.model(name, version)
        entry = self.repository.entries[name]
        meta = model.describe(sorted(entry.versions))
        if entry.source.follows:
            meta["parameters"]["mfstore.alias"] = entry.source.follows
        return meta

    def model_config(self, name: str, version: str | None = None) -> mc.ModelConfig:
        return self.model(name, version).config

    def statistics(self, name: str = "", version: str = "") -> list[VersionStats]:
        """Statistics of one version, of every loaded version of a model, or of all."""
        if version and not name:
            raise RequestError(400, "statistics of a version need the model's name")
        if version:
            return [self.model(name, version).stats]
        if name:
            self.model(name)  # unknown or unloaded: its error
        return [model.stats for model in self.repository.loaded(name or None)]

    def metrics(self) -> bytes:
        """Prometheus text of every loaded version."""
        return exposition(lambda: self.statistics())
