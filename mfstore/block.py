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

from mfstore import __version__
from mfstore.block_header import HEADER_KEY, BlockHeader, InputSignature
from mfstore.errors import IntegrityError, MFStoreError
from mfstore.fixes import VerifyFix
from mfstore.modules import MFLayer
from mfstore.registry import LayerVersion
from mfstore.spec import LayerSpec
from mfstore.store import sha256
from mfstore.workspace import Workspace, block_path

TENSORS = ("weight", "bias", "projection")


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

    @property
    def header(self) -> BlockHeader:
        return BlockHeader(self.spec, self.signature, self.config, self.metrics, self.history,
                           self.version, self.run)

    def to_bytes(self) -> bytes:
        """The block file. The header is one JSON string under one key: safetensors writes
        several metadata keys in hash-map order, which would make equal blocks differ."""
        return st_save(self.tensors, metadata={HEADER_KEY: self.header.to_json()})

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "block") -> LayerBlock:
        """Rebuild a block from its file; a file that is not a valid block is refused."""
        h = BlockHeader.from_bytes(data, name)
        try:
            block = cls(h.spec, st_load(data), h.signature, h.config, h.metrics, h.history,
                        h.version, h.run)
            _check_shapes(block)
            return block
        except (SafetensorError, ValueError, KeyError, TypeError, MFStoreError) as err:
            raise IntegrityError(f"{name} is not a readable layer block ({err})",
                                 VerifyFix()) from err


def store_block(ws: Workspace, block: LayerBlock) -> str:
    """Store a block (durably) and return its address, the sha256 of its bytes."""
    data = block.to_bytes()
    sha = sha256(data)
    if not ws.store.exists(block_path(sha)):
        ws.store.put(block_path(sha), data)
    return sha


def load_block(ws: Workspace, layer: LayerVersion) -> LayerBlock:
    """The block of a layer version, verified against its sha256."""
    path = block_path(layer.block_sha256)
    data = ws.store.get(path, expected_sha256=layer.block_sha256)
    return LayerBlock.from_bytes(data, name=f"{ws.store.url_of(path)} ({layer.ref})")


def _check_shapes(block: LayerBlock) -> None:
    probe = MFLayer(block.spec)
    expected = {"weight": probe.weight.shape, "projection": probe.projection.shape,
                "bias": probe.bias.shape if probe.bias is not None else torch.Size([0])}
    for name in TENSORS:
        if name not in block.tensors or block.tensors[name].shape != expected[name]:
            got = tuple(block.tensors[name].shape) if name in block.tensors else None
            raise ValueError(f"tensor {name!r} has shape {got}, the spec needs "
                             f"{tuple(expected[name])}")
