"""`LayerSpec`: what one Mono-Forward layer is, independent of its weights.

A spec travels with the weights (block header, registry row), so a layer can always be
rebuilt from its own file. Architectures are written `dense:1000,dense:1000` or
`conv:64,conv:128:pool=max`; options follow the width as `key=value`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from mfstore.errors import SpecError

KINDS = ("dense", "conv")
ACTIVATIONS = ("relu", "gelu", "tanh", "sigmoid", "identity")
POOLS = ("avg", "max", "none")


@dataclass(frozen=True)
class LayerSpec:
    """One layer: `z = a W (+ b)`, `a' = act(z)` (conv: 3x3 pad 1, act, 2x2 pool), plus `M`."""

    kind: str  # "dense" or "conv"
    width: int  # units (dense) or output channels (conv)
    in_shape: tuple[int, ...]  # one example's input: (F,) or (C, H, W); dense flattens it
    classes: int
    activation: str = "relu"
    pool: str = "avg"  # conv only: 2x2 average (the paper), 2x2 max, or none
    bias: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SpecError(f"unknown layer kind {self.kind!r}; choose one of: {', '.join(KINDS)}")
        if self.width < 1:
            raise SpecError(f"a {self.kind} layer needs a width of at least 1, got {self.width}")
        if self.classes < 2:
            raise SpecError(f"a layer needs at least 2 classes, got {self.classes}")
        if self.activation not in ACTIVATIONS:
            raise SpecError(
                f"unknown activation {self.activation!r}; choose one of: {', '.join(ACTIVATIONS)}"
            )
        if self.pool not in POOLS:
            raise SpecError(f"unknown pooling {self.pool!r}; choose one of: {', '.join(POOLS)}")
        if not self.in_shape or any(d < 1 for d in self.in_shape):
            raise SpecError(f"invalid input shape {self.in_shape}")
        if self.kind == "conv":
            if len(self.in_shape) != 3:
                raise SpecError(
                    f"a conv layer needs (channels, height, width) input, got shape "
                    f"{self.in_shape}; put conv layers before dense ones"
                )
            if self.pool != "none" and min(self.in_shape[1:]) < 2:
                raise SpecError(
                    f"a conv layer with 2x2 pooling needs inputs of at least 2x2, got "
                    f"{self.in_shape[1:]}; use fewer conv layers or pool=none"
                )

    @property
    def in_features(self) -> int:
        return math.prod(self.in_shape)

    @property
    def out_shape(self) -> tuple[int, ...]:
        """One example's activation shape."""
        if self.kind == "dense":
            return (self.width,)
        _, h, w = self.in_shape
        if self.pool != "none":
            h, w = h // 2, w // 2
        return (self.width, h, w)

    @property
    def out_features(self) -> int:
        """Columns of the projection `M` (classes, out_features)."""
        return math.prod(self.out_shape)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["in_shape"] = list(self.in_shape)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerSpec:
        try:
            return cls(**{**data, "in_shape": tuple(data["in_shape"])})
        except (KeyError, TypeError) as err:
            raise SpecError(f"not a layer spec: {data!r} ({err})") from err


@dataclass(frozen=True)
class LayerPlan:
    """A layer as written in an architecture string, before its input shape is known. Fields
    with a `help` are command-line options of the commands that train one layer."""

    kind: str = field(metadata={"help": f"Layer kind: {', '.join(KINDS)}."})
    width: int = field(metadata={"help": "Units (dense) or channels (conv)."})
    activation: str = field(default="relu", metadata={
        "help": f"Activation: {', '.join(ACTIVATIONS)}.", "flag": "act"})
    pool: str = field(default="avg", metadata={"help": "conv pooling: avg, max or none."})
    bias: bool = field(default=True, metadata={"help": "Learn a bias."})

    def resolve(self, in_shape: tuple[int, ...], classes: int) -> LayerSpec:
        return LayerSpec(self.kind, self.width, tuple(in_shape), classes,
                         self.activation, self.pool, self.bias)


def _parse_option(plan: LayerPlan, option: str, item: str) -> LayerPlan:
    key, sep, value = option.partition("=")
    if not sep:
        raise SpecError(f"option {option!r} in {item!r} must be key=value")
    if key in ("act", "activation"):
        return replace(plan, activation=value)
    if key == "pool":
        return replace(plan, pool=value)
    if key == "bias":
        if value not in ("true", "false"):
            raise SpecError(f"bias must be true or false in {item!r}")
        return replace(plan, bias=value == "true")
    raise SpecError(f"unknown option {key!r} in {item!r}; use act=, pool= or bias=")


def parse_arch(arch: str) -> list[LayerPlan]:
    """`"dense:1000,dense:1000"` -> two plans. Raises `SpecError` naming the bad item."""
    plans = []
    for item in (part.strip() for part in arch.split(",")):
        fields = item.split(":")
        if len(fields) < 2 or not fields[1].isdigit():
            raise SpecError(
                f"cannot read layer {item!r}; write KIND:WIDTH[:key=value…], e.g. dense:1000 "
                "or conv:64:pool=max"
            )
        plan = LayerPlan(fields[0], int(fields[1]))
        for option in fields[2:]:
            plan = _parse_option(plan, option, item)
        plan.resolve((1, 2, 2) if plan.kind == "conv" else (1,), 2)  # validate names early
        plans.append(plan)
    return plans


def build_specs(plans: list[LayerPlan], in_shape: tuple[int, ...], classes: int) -> list[LayerSpec]:
    """Chain plans: each layer's input shape is the previous layer's output shape."""
    specs = []
    shape = tuple(in_shape)
    for plan in plans:
        spec = plan.resolve(shape, classes)
        specs.append(spec)
        shape = spec.out_shape
    return specs
