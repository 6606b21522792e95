"""What the REST and gRPC endpoints share: the repository of models, the token, the request
size limit, the metrics, and the answers that do not depend on the protocol."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tritonclient.grpc import model_config_pb2 as mc

from mfstore import __version__
from mfstore.errors import ConfigError
from serving.bearer import check_token
from serving.errors import RequestError
from serving.metrics import exposition
from serving.models import ModelVersion
from serving.repository import Repository
from serving.statistics import VersionStats, merged

if TYPE_CHECKING:
    from serving.siblings import Siblings

EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration",
              "model_repository", "model_repository(unload_dependents)", "statistics"]


@dataclass
class InferenceServer:
    repository: Repository
    token: str | None = None
    max_request_bytes: int = 64 << 20
    siblings: Siblings | None = field(default=None, repr=False)  # `serve --workers`: the
    # other processes on this port, whose statistics are added and which load what this loads

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

    async def all_statistics(self, name: str = "", version: str = "") -> list[VersionStats]:
        """`statistics`, added over every server process (`serve --workers`): a name or
        version this process does not know is its error."""
        mine = self.statistics(name, version)
        if self.siblings is None:
            return mine
        answers = await self.siblings.everyone("statistics", name, version)
        return merged([VersionStats.from_record(r) for answer in answers for r in answer])

    async def metrics(self) -> bytes:
        """Prometheus text of every loaded version, of every server process."""
        stats = await self.all_statistics()
        return exposition(lambda: stats)

    async def load(self, name: str) -> None:
        """Load (or reload) a model by request, in every server process."""
        if self.siblings is None:
            await self.repository.load(name)
        else:
            await self.siblings.everyone("load", name)

    async def unload(self, name: str) -> None:
        """Unload a model by request, in every server process."""
        if self.siblings is None:
            await self.repository.unload(name)
        else:
            await self.siblings.everyone("unload", name)

    async def answer_sibling(self, op: str, args: tuple[Any, ...]) -> Any:
        """What this process does when another asks every process (`serve --workers`)."""
        if op == "statistics":
            try:
                return [s.record() for s in self.statistics(*args)]
            except RequestError:  # not loaded here (yet): nothing to add
                return []
        if op == "load":
            return await self.repository.load(*args)
        if op == "unload":
            return await self.repository.unload(*args)
        raise RequestError(500, f"unknown request between server processes: {op!r}")
