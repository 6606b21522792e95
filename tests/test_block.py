"""Blocks: one safetensors file, rebuilt from itself alone, refused when damaged."""

from __future__ import annotations

import re

import pytest
import torch

from mfstore.block import LayerBlock, store_block
from mfstore.block_header import InputSignature
from mfstore.errors import IntegrityError
from mfstore.modules import MFNet, build_layers
from mfstore.spec import build_specs, parse_arch
from mfstore.store import Store, sha256
from mfstore.workspace import Workspace, block_path


def _block(arch="conv:4:pool=max,dense:16:act=tanh:bias=false"):
    specs = build_specs(parse_arch(arch), (1, 8, 8), 10)
    layers = build_layers(specs, seed=5)
    return layers, [LayerBlock.from_layer(lay, InputSignature(lay.spec.in_shape, ("up",) * k, "fp"),
                                          config={"seed": 5}, metrics={"test_accuracy": 0.5},
                                          history={"epochs": []})
                    for k, lay in enumerate(layers)]


def test_round_trip_gives_identical_tensors_and_predictions():
    layers, blocks = _block()
    rebuilt = [LayerBlock.from_bytes(b.to_bytes()) for b in blocks]
    for original, block, back in zip(layers, blocks, rebuilt, strict=True):
        assert back.spec == original.spec
        assert back.signature == block.signature
        assert back.metrics == {"test_accuracy": 0.5}
        assert back.digest == block.digest
        for name in ("weight", "projection"):
            assert torch.equal(back.tensors[name], getattr(original, name))
    x = torch.randn(7, 1, 8, 8)
    for mode in ("bp", "ff"):
        assert torch.equal(MFNet([b.to_layer() for b in rebuilt], mode)(x),
                           MFNet(layers, mode).eval()(x))


def test_same_tensors_same_digest_even_when_metadata_differs():
    layers, (block, _) = _block()
    other = LayerBlock.from_layer(layers[0], block.signature, history={"seconds": 9})
    assert other.digest == block.digest and other.to_bytes() != block.to_bytes()


def test_a_file_that_is_not_a_block_is_refused():
    with pytest.raises(IntegrityError, match=re.escape(
            "x.safetensors is not a readable layer block (")):
        LayerBlock.from_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}", name="x.safetensors")


def test_flipped_and_truncated_blocks_are_refused_on_load(tmp_path):
    ws = Workspace.init(home=str(tmp_path))
    _, (block, _) = _block()
    sha = store_block(ws, block)
    path = tmp_path / "store" / block_path(sha)
    data = path.read_bytes()
    message = f"{path} is damaged: its sha256 is not {sha[:12]}…; verify the store"
    path.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    with pytest.raises(IntegrityError, match=re.escape(message)):
        ws.store.get(block_path(sha), expected_sha256=sha)
    path.write_bytes(data[:-10])
    with pytest.raises(IntegrityError, match=re.escape(message)):
        ws.store.get(block_path(sha), expected_sha256=sha)
    path.unlink()
    with pytest.raises(IntegrityError, match=re.escape(f"{path} is missing; verify the store")):
        ws.store.get(block_path(sha), expected_sha256=sha)


def test_memory_store_round_trip():
    store = Store("memory://blocks-test")
    store.put("a/b.bin", b"hello")
    assert store.get("a/b.bin", expected_sha256=sha256(b"hello")) == b"hello"
    assert store.list("a") == ["a/b.bin"]
    store.delete("a/b.bin")
    assert not store.exists("a/b.bin")


def test_equal_blocks_have_equal_bytes():
    _, (block, _) = _block()
    assert len({sha256(block.to_bytes()) for _ in range(20)}) == 1
