"""Architectures, shapes and the errors that name the fix."""

from __future__ import annotations

import re

import pytest

from mfstore.errors import SpecError
from mfstore.spec import LayerSpec, build_specs, parse_arch


def test_parse_and_chain_shapes():
    specs = build_specs(parse_arch("conv:64,conv:128:pool=max,dense:100:act=tanh:bias=false"),
                        (1, 28, 28), 10)
    assert [s.out_shape for s in specs] == [(64, 14, 14), (128, 7, 7), (100,)]
    assert specs[2].in_shape == (128, 7, 7) and specs[2].in_features == 6272
    assert (specs[1].pool, specs[2].activation, specs[2].bias) == ("max", "tanh", False)
    assert LayerSpec.from_dict(specs[0].to_dict()) == specs[0]


def test_paper_cnn_on_fashion_mnist_shapes():
    specs = build_specs(parse_arch("conv:64,conv:128,conv:256,conv:512"), (1, 28, 28), 10)
    assert [s.out_shape for s in specs][-1] == (512, 1, 1)


@pytest.mark.parametrize("arch,message", [
    ("dense:x", "cannot read layer 'dense:x'; write KIND:WIDTH[:key=value…], e.g. dense:1000"),
    ("mlp:10", "unknown layer kind 'mlp'; choose one of: dense, conv"),
    ("dense:0", "a dense layer needs a width of at least 1, got 0"),
    ("dense:10:act=swish", "unknown activation 'swish'; choose one of: relu, gelu, tanh"),
    ("conv:8:pool=huge", "unknown pooling 'huge'; choose one of: avg, max, none"),
    ("dense:10:dropout=0.5", "unknown option 'dropout' in 'dense:10:dropout=0.5'"),
])
def test_bad_architectures(arch, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_arch(arch)


def test_conv_after_dense_is_refused():
    with pytest.raises(SpecError, match=re.escape(
            "a conv layer needs (channels, height, width) input, got shape (10,); put conv "
            "layers before dense ones")):
        build_specs(parse_arch("dense:10,conv:8"), (1, 8, 8), 10)


def test_too_many_pooling_layers_are_refused():
    with pytest.raises(SpecError, match=re.escape(
            "a conv layer with 2x2 pooling needs inputs of at least 2x2, got (1, 1)")):
        build_specs(parse_arch("conv:4,conv:4,conv:4,conv:4"), (1, 8, 8), 10)
