"""`LayerBlock`: one trained layer as one safetensors file.

Tensors `weight`, `bias` (empty when the layer has none) and `projection`; the string header
holds the `LayerSpec`, training config and seed, metrics, history, input signature and the
mfstore version, so a block can be rebuilt from its file alone. Its address is the sha256 of
its bytes. Its `weights_digest` (sha256 of spec and tensors) names what the layer computes:
lineage and streams are keyed on it, so a repair that reproduces the tensors bit for bit
leaves every downstream layer valid.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from mfstore.errors import Fix, IntegrityError, MFStoreError
from mfstore.modules import MFLayer
from mfstore.spec import LayerSpec

FORMAT = "mfstore.layer-block/1"
HEADER_KEY = "mfstore"
TENSORS = ("weight", "bias", "projection")


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


def layer_tensors(layer: MFLayer) -> dict[str, torch.Tensor]:
    """The tensors a block holds of `layer` (an empty `bias` when it has none)."""
    bias = layer.bias if layer.bias is not None else torch.zeros(0)
    return {"weight": layer.weight, "bias": bias, "projection": layer.projection}


def weights_digest(spec: LayerSpec, tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode())
    for name in TENSORS:
        t = tensors[name].detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


@dataclass
class LayerBlock:
    spec: LayerSpec
    tensors: dict[str, torch.Tensor]  # weight, bias, projection (float32, CPU)
    signature: InputSignature
    config: dict[str, Any] = field(default_factory=dict)  # TrainConfig.to_dict(), seed inside
    metrics: dict[str, Any] = field(default_factory=dict)
    history: dict[str, Any] = field(default_factory=dict)
    version: str = ""  # mfstore version that wrote it
    run: dict[str, Any] | None = None  # TrainingRun.to_dict(); None in blocks from before it

    @property
    def digest(self) -> str:
        return weights_digest(self.spec, self.tensors)

    @classmethod
    def from_layer(cls, layer: MFLayer, signature: InputSignature, **meta: Any) -> LayerBlock:
        from mfstore import __version__

        tensors = {n: t.detach().to("cpu", torch.float32).contiguous().clone()
                   for n, t in layer_tensors(layer).items()}
        return cls(layer.spec, tensors, signature, version=__version__, **meta)

    def to_layer(self) -> MFLayer:
        layer = MFLayer(self.spec)
        with torch.no_grad():
            layer.weight.copy_(self.tensors["weight"])
            if layer.bias is not None:
                layer.bias.copy_(self.tensors["bias"])
            layer.projection.copy_(self.tensors["projection"])
        return layer.eval()

    def to_bytes(self) -> bytes:
        """The block file. The header is one JSON string under one key: safetensors writes
        several metadata keys in hash-map order, which would make equal blocks differ."""
        header = {"format": FORMAT, "spec": self.spec.to_dict(),
                  "input": self.signature.to_dict(), "config": self.config,
                  "metrics": self.metrics, "history": self.history, "mfstore_version": self.version}
        if self.run is not None:
            header["run"] = self.run
        return st_save(self.tensors, metadata={HEADER_KEY: json.dumps(header, sort_keys=True)})

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "block") -> LayerBlock:
        """Rebuild a block from its file; a file that is not a valid block is refused."""
        try:
            tensors = st_load(data)
            header = json.loads(_header(data)[HEADER_KEY])
            if header.get("format") != FORMAT:
                raise ValueError(f"format {header.get('format')!r}")
            spec = LayerSpec.from_dict(header["spec"])
            block = cls(spec, tensors, InputSignature.from_dict(header["input"]),
                        header["config"], header["metrics"], header["history"],
                        header["mfstore_version"], header.get("run"))
            _check_shapes(block)
            return block
        except (SafetensorError, ValueError, KeyError, TypeError, MFStoreError) as err:
            raise IntegrityError(f"{name} is not a readable layer block ({err})",
                                 Fix("verify", {})) from err


def _header(data: bytes) -> dict[str, str]:
    """The string metadata of a safetensors file (8-byte length, then JSON)."""
    size = int.from_bytes(data[:8], "little")
    if size <= 0 or 8 + size > len(data):
        raise ValueError("header length out of range")
    return json.loads(data[8:8 + size]).get("__metadata__", {})


def _check_shapes(block: LayerBlock) -> None:
    probe = MFLayer(block.spec)
    expected = {"weight": probe.weight.shape, "projection": probe.projection.shape,
                "bias": probe.bias.shape if probe.bias is not None else torch.Size([0])}
    for name in TENSORS:
        if name not in block.tensors or block.tensors[name].shape != expected[name]:
            got = tuple(block.tensors[name].shape) if name in block.tensors else None
            raise ValueError(f"tensor {name!r} has shape {got}, the spec needs "
                             f"{tuple(expected[name])}")
