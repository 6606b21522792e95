"""Plain records the registry hands out: no ORM object leaves the registry package."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mfstore.block_header import InputSignature
from mfstore.config import TrainingRun
from mfstore.errors import NotFoundError
from mfstore.spec import LayerSpec

LAYER_STATUSES = ("ok", "damaged", "deleted")
STREAM_STATUSES = ("ok", "damaged")


@dataclass(frozen=True)
class DatasetRecord:
    name: str
    fingerprint: str
    source: str
    format: str
    input_shape: tuple[int, ...]
    classes: int
    counts: dict[str, int]  # train / val / test
    normalizer: dict[str, Any]  # Normalizer.to_dict()
    stream_id: str  # stream(0): the imported examples
    options: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] | None = None
    created: datetime | None = None


@dataclass(frozen=True)
class LayerVersion:
    name: str
    version: int
    block_sha256: str  # address of the block file
    digest: str  # weights digest: what the layer computes
    spec: LayerSpec
    signature: InputSignature
    dataset: str
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    repairs: int | None = None  # the version of this name it repairs
    note: str = ""
    created: datetime | None = None
    run: TrainingRun | None = None  # how it was trained; None: before mfstore recorded it

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class NetworkVersion:
    name: str
    version: int
    layers: tuple[tuple[str, int], ...]  # (layer name, version), input side first
    mode: str  # default prediction mode: bp or ff
    dataset: str
    forced: bool = False  # composed with a lineage mismatch on purpose
    note: str = ""
    status: str = "ok"
    created: datetime | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class ExportRecord:
    network: str
    version: int
    mode: str
    upto: int | None
    sha256: str
    path: str  # in the store
    target: str  # the file or Triton repository the user asked for
    created: datetime | None = None


@dataclass(frozen=True)
class StreamRecord:
    id: str
    dataset_fingerprint: str
    chain: tuple[str, ...]
    bytes: int
    status: str = "ok"
    created: datetime | None = None


def parse_ref(text: str) -> tuple[str, str | None]:
    """`name`, `name@3` or `name@prod` -> (name, selector or None)."""
    name, sep, selector = text.partition("@")
    if not name or (sep and not selector) or "@" in selector:
        raise NotFoundError(f"cannot read {text!r}; write NAME, NAME@VERSION or NAME@ALIAS")
    return name, selector or None
