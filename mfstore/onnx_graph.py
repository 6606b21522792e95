"""The ONNX graph of a network, built node by node at opset 17.

    x (B, *input_shape) raw ──(x - mean) / std──► layer 1 ──► … ──► layer K
                                                    │                  │
                                   ff: G_1 + … + G_K ◄─────────────────┤ bp: G_K
                                                    ▼
                                     goodness (B, classes) ──ArgMax──► label (B, 1)

In BP mode only the last projection is part of the graph; FF mode sums every layer's goodness.
The normaliser is in the graph, so the model takes the same raw input the dataset had. A
network whose first layer is `embed` takes token ids instead: `x` is int64 (B, T), and there
is no normaliser.
`label` keeps its class axis, `(B, 1)`, the shape Triton gives a batched output of one value per
example, so the ONNX file, its Triton configuration and `mfstore serve` report one shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mfstore import layer_math
from mfstore.modules import MFLayer

OPSET = 17
INPUT, GOODNESS, LABEL = "x", "goodness", "label"


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], name: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], name=name, **attrs))
        return name


def takes_tokens(layers: Sequence[MFLayer]) -> bool:
    """Whether the network reads token ids (int64) rather than raw features (float32)."""
    return layers[0].spec.kind == "embed"


def _layer(g: _Graph, layer: MFLayer, a: str, k: int) -> str:
    """Activations of layer k: (B, *out_shape), as `layer_math` defines its kind."""
    return layer_math.kind(layer.spec.kind).onnx(g, layer, a, f"layer{k}")


def _goodness(g: _Graph, layer: MFLayer, a: str, k: int) -> str:
    """`G_k = a M^T`: (B, classes)."""
    flat = g.op("Flatten", [a], f"layer{k}/flat", axis=1) if len(layer.spec.out_shape) > 1 else a
    m = g.const(f"layer{k}/projection", layer.projection.detach().cpu().numpy())
    return g.op("Gemm", [flat, m], f"layer{k}/goodness", transB=1)


def build_model(layers: Sequence[MFLayer], mode: str, mean: np.ndarray, std: np.ndarray,
                metadata: dict[str, str], doc: str = "") -> onnx.ModelProto:
    """The ONNX model of `layers` predicting in `mode` ("bp" or "ff") on raw input."""
    g = _Graph()
    tokens = takes_tokens(layers)
    a = INPUT
    if not tokens:
        x = g.op("Sub", [INPUT, g.const("norm/mean", mean.astype(np.float32))], "norm/centred")
        a = g.op("Div", [x, g.const("norm/std", std.astype(np.float32))], "norm/scaled")
    total = ""  # the name of the goodness summed so far
    for k, layer in enumerate(layers, 1):
        a = _layer(g, layer, a, k)
        if mode == "ff" or k == len(layers):
            goodness = _goodness(g, layer, a, k)
            total = g.op("Add", [total, goodness], f"sum{k}") if total else goodness
    g.nodes.append(helper.make_node("Identity", [total], [GOODNESS], name=GOODNESS))
    g.nodes.append(helper.make_node("ArgMax", [GOODNESS], [LABEL], name=LABEL, axis=1,
                                    keepdims=1))  # (B, 1)
    classes = layers[-1].spec.classes
    graph = helper.make_graph(
        g.nodes, "mfstore", [helper.make_tensor_value_info(
            INPUT, TensorProto.INT64 if tokens else TensorProto.FLOAT,
            ["batch", *layers[0].spec.in_shape])],
        [helper.make_tensor_value_info(GOODNESS, TensorProto.FLOAT, ["batch", classes]),
         helper.make_tensor_value_info(LABEL, TensorProto.INT64, ["batch", 1])],
        g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="mfstore", doc_string=doc)
    model.ir_version = 8  # readable by every ONNX Runtime that knows opset 17
    helper.set_model_props(model, metadata)
    return model
