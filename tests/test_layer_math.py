"""Each layer kind and activation is defined once (`layer_math`), and the PyTorch module and
the ONNX graph built from that one definition agree on every combination."""

from __future__ import annotations

import re

import numpy as np
import onnxruntime as ort
import pytest
import torch

from mfstore import layer_math
from mfstore.errors import SpecError
from mfstore.modules import MFLayer, MFNet, build_layers
from mfstore.onnx_graph import build_model
from mfstore.spec import ACTIVATIONS, KINDS, POOLS, LayerSpec, build_specs, parse_arch


def test_every_name_the_spec_accepts_has_its_math():
    assert set(layer_math.ACTIVATIONS) == set(ACTIVATIONS)
    assert set(layer_math.KINDS) == set(KINDS)


@pytest.mark.parametrize("arch", [f"dense:6:act={a}" for a in ACTIVATIONS]
                         + [f"conv:3:pool={p},dense:4" for p in POOLS]
                         + ["conv:2:act=gelu:bias=false,dense:3:act=sigmoid:bias=false"])
def test_pytorch_and_onnx_agree(arch):
    specs = build_specs(parse_arch(arch), (1, 4, 4), 3)
    layers = build_layers(specs, seed=5)
    mean, std = np.zeros((1, 1, 1), np.float32), np.ones((1, 1, 1), np.float32)
    model = build_model(layers, "ff", mean, std, {})
    x = np.random.default_rng(0).standard_normal((7, 1, 4, 4)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (goodness,) = session.run(["goodness"], {"x": x})
    with torch.no_grad():
        expected = MFNet(layers, "ff")(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(goodness, expected, rtol=1e-5, atol=1e-5)


def test_a_name_without_math_is_an_error_not_an_identity():
    spec = LayerSpec("dense", 4, (3,), 2)
    object.__setattr__(spec, "activation", "swish")  # a name no table knows
    with pytest.raises(SpecError, match=re.escape("unknown activation 'swish'; choose one of: "
                                                  "relu, gelu, tanh, sigmoid, identity")):
        MFLayer(spec)
    with pytest.raises(SpecError, match=re.escape("unknown activation 'swish'")):
        layer_math.activation("swish").onnx(None, "x", "p")  # type: ignore[arg-type]
