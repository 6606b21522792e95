"""What a layer block says about itself, read without its tensors (and without torch): the
input signature and the header of its safetensors file.

    block file = 8-byte header length | JSON header {"__metadata__": {"mfstore": HEADER}, …}
                 | tensors weight, bias, projection (block.py reads those)

HEADER (one JSON string) = format, spec, input (the signature), config, metrics, history,
mfstore_version and, from 0.2 on, run (how it was trained). Reading a registry, a page or
`layers show --json` needs only this, so it never pays for importing torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mfstore.errors import IntegrityError, MFStoreError
from mfstore.fixes import VerifyFix
from mfstore.spec import LayerSpec

FORMAT = "mfstore.layer-block/1"
HEADER_KEY = "mfstore"


@dataclass(frozen=True)
class InputSignature:
    """What a layer was trained on: the shape of its input, the layers that produced it
    (their weights digests, first layer first) and the dataset."""

    input_shape: tuple[int, ...]
    chain: tuple[str, ...]
    dataset_fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        return {"input_shape": list(self.input_shape), "chain": list(self.chain),
                "dataset_fingerprint": self.dataset_fingerprint}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSignature:
        return cls(tuple(data["input_shape"]), tuple(data["chain"]), data["dataset_fingerprint"])


@dataclass(frozen=True)
class BlockHeader:
    """Everything a block holds but its tensors."""

    spec: LayerSpec
    signature: InputSignature
    config: dict[str, Any] = field(default_factory=dict)  # TrainConfig.to_dict(), seed inside
    metrics: dict[str, Any] = field(default_factory=dict)
    history: dict[str, Any] = field(default_factory=dict)
    version: str = ""  # mfstore version that wrote it
    run: dict[str, Any] | None = None  # TrainingRun.to_dict(); None in blocks from before it

    def to_json(self) -> str:
        """The header string, keys sorted: equal blocks are equal bytes."""
        header = {"format": FORMAT, "spec": self.spec.to_dict(),
                  "input": self.signature.to_dict(), "config": self.config,
                  "metrics": self.metrics, "history": self.history,
                  "mfstore_version": self.version}
        if self.run is not None:
            header["run"] = self.run
        return json.dumps(header, sort_keys=True)

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "block") -> BlockHeader:
        """The header of a block file; a file that is not a block is refused (its tensors are
        not read: `LayerBlock.from_bytes` checks those)."""
        try:
            header = json.loads(safetensors_metadata(data)[HEADER_KEY])
            if header.get("format") != FORMAT:
                raise ValueError(f"format {header.get('format')!r}")
            return cls(LayerSpec.from_dict(header["spec"]),
                       InputSignature.from_dict(header["input"]), header["config"],
                       header["metrics"], header["history"], header["mfstore_version"],
                       header.get("run"))
        except (ValueError, KeyError, TypeError, AttributeError, MFStoreError) as err:
            raise IntegrityError(f"{name} is not a readable layer block ({err})",
                                 VerifyFix()) from err


def safetensors_metadata(data: bytes) -> dict[str, str]:
    """The string metadata of a safetensors file (8-byte length, then JSON)."""
    size = int.from_bytes(data[:8], "little")
    if size <= 0 or 8 + size > len(data):
        raise ValueError("header length out of range")
    metadata = json.loads(data[8:8 + size]).get("__metadata__", {})
    if not isinstance(metadata, dict):
        raise ValueError("metadata is not a table")
    return metadata
