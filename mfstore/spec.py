"""`LayerSpec`: what one Mono-Forward layer is, independent of its weights.

A spec travels with the weights (block header, registry row), so a layer can always be
rebuilt from its own file. Architectures are written `dense:1000,dense:1000`,
`conv:64,conv:128:pool=max`, `local:64:kernel=5:stride=2` or `embed:50,dense:100`; options
follow the width as `key=value`, separated by `:` (or, after the first, by `,`:
`local:64:kernel=5,stride=2`).

    dense:N              (F,) or any shape, flattened ─► (N,)
    conv:C               (C', H, W) ─► 3x3 conv, pad 1, act, 2x2 pool ─► (C, H/2, W/2)
    local:C              (C', H, W) ─► k x k patches at stride s, each with its own weights
                         (a convolution without weight sharing; no padding), act, no pooling
                         by default ─► (C, (H-k)/s+1, (W-k)/s+1)
    embed:D              (T,) token ids ─► mean of the ids' D-wide embeddings (id 0 is
                         padding and is left out of the mean) + b, act ─► (D,); first layer only
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from mfstore.config import MAX_VOCAB
from mfstore.errors import SpecError
from mfstore.numbers import INT32, NumberError, shown, whole_number

KINDS = ("dense", "conv", "local", "embed")
ACTIVATIONS = ("relu", "gelu", "tanh", "sigmoid", "identity")
POOLS = ("avg", "max", "none")
DEFAULT_POOL = {"local": "none"}  # every other kind: "avg" (pooling applies to conv and local)
LOCAL_KERNEL, LOCAL_STRIDE = 3, 1


@dataclass(frozen=True)
class LayerSpec:
    """One layer: `z = a W (+ b)`, `a' = act(z)` (conv: 3x3 pad 1, act, 2x2 pool; local: k x k
    patches at stride s, unshared weights; embed: mean of token embeddings), plus `M`.

    `kernel`, `stride` (local) and `vocab` (embed) are None for every other kind and are then
    left out of `to_dict`, so the spec, and the weights digest, of a dense or conv layer is
    what it was before these fields existed."""

    kind: str  # "dense", "conv", "local" or "embed"
    width: int  # units (dense, embed) or output channels (conv, local)
    in_shape: tuple[int, ...]  # one example's input: (F,), (C, H, W), or (T,) token ids (embed)
    classes: int
    activation: str = "relu"
    pool: str = "avg"  # conv and local: 2x2 average (the paper), 2x2 max, or none
    bias: bool = True
    kernel: int | None = None  # local: the side of its square patches
    stride: int | None = None  # local: the step between patches
    vocab: int | None = None  # embed: token ids lie in 0..vocab-1 (0 is padding)

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
        self._check_options()
        if self.kind in ("conv", "local"):
            if len(self.in_shape) != 3:
                raise SpecError(
                    f"a {self.kind} layer needs (channels, height, width) input, got shape "
                    f"{self.in_shape}; put {self.kind} layers before dense ones"
                )
            if self.pool != "none" and min(self.unpooled_shape()[1:]) < 2:
                raise SpecError(
                    f"a {self.kind} layer with 2x2 pooling needs inputs of at least 2x2, got "
                    f"{self.unpooled_shape()[1:]}; use fewer {self.kind} layers or pool=none"
                )
        if self.kind == "embed" and len(self.in_shape) != 1:
            raise SpecError(f"an embed layer reads sequences of token ids, shape (length,); "
                            f"got {self.in_shape}")

    def _check_options(self) -> None:
        """kernel and stride belong to local layers, vocab to embed layers, and they fit."""
        local = (self.kernel, self.stride)
        if self.kind != "local" and local != (None, None):
            raise SpecError(f"kernel= and stride= apply to local layers, not {self.kind}")
        if self.kind != "embed" and self.vocab is not None:
            raise SpecError(f"vocab= applies to embed layers, not {self.kind}")
        if self.kind == "local":
            if self.kernel is None or self.stride is None or min(self.kernel, self.stride) < 1:
                raise SpecError(f"a local layer needs kernel and stride of at least 1, got "
                                f"kernel={self.kernel}, stride={self.stride}")
            if len(self.in_shape) == 3 and self.kernel > min(self.in_shape[1:]):
                raise SpecError(f"a local layer's {self.kernel}x{self.kernel} patches do not "
                                f"fit its {self.in_shape[1]}x{self.in_shape[2]} input; use a "
                                "smaller kernel")
        if self.kind == "embed" and (self.vocab is None or not 2 <= self.vocab <= MAX_VOCAB):
            raise SpecError(f"an embed layer needs a vocabulary of 2..{MAX_VOCAB} token ids, "
                            f"got {self.vocab}")

    def unpooled_shape(self) -> tuple[int, int, int]:
        """conv and local: the activation's shape before pooling."""
        _, h, w = self.in_shape
        if self.kind == "local":
            assert self.kernel is not None and self.stride is not None
            h, w = (h - self.kernel) // self.stride + 1, (w - self.kernel) // self.stride + 1
        return self.width, h, w

    @property
    def in_features(self) -> int:
        return math.prod(self.in_shape)

    @property
    def out_shape(self) -> tuple[int, ...]:
        """One example's activation shape."""
        if self.kind in ("dense", "embed"):
            return (self.width,)
        _, h, w = self.unpooled_shape()
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
        for key in ("kernel", "stride", "vocab"):  # absent from the kinds they do not apply to
            if data[key] is None:
                del data[key]
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
    width: int = field(metadata={"help": "Units (dense, embed) or channels (conv, local)."})
    activation: str = field(default="relu", metadata={
        "help": f"Activation: {', '.join(ACTIVATIONS)}.", "flag": "act"})
    pool: str | None = field(default=None, metadata={
        "help": "conv and local pooling: avg, max or none (default: avg for conv, none for "
                "local)."})
    bias: bool = field(default=True, metadata={"help": "Learn a bias."})
    kernel: int | None = field(default=None, metadata={
        "help": f"local: the side of each patch (default {LOCAL_KERNEL})."})
    stride: int | None = field(default=None, metadata={
        "help": f"local: the step between patches (default {LOCAL_STRIDE})."})
    vocab: int | None = field(default=None, metadata={
        "help": "embed: the vocabulary size (default: the dataset's)."})

    def resolve(self, in_shape: tuple[int, ...], classes: int,
                tokens: int | None = None) -> LayerSpec:
        """The spec of this layer on `in_shape`. `tokens` is the vocabulary of the token ids
        this layer reads, None when its input is not token ids."""
        if self.kind == "embed" and tokens is None:
            raise SpecError("an embed layer reads token ids: it must be the first layer, on "
                            "token-id data (format 'tokens', or a Parquet list column)")
        if self.kind != "embed" and tokens is not None:
            raise SpecError(f"token-id data needs an embed first layer (embed:WIDTH), not "
                            f"{self.kind}")
        if self.pool is not None and self.kind not in ("conv", "local"):
            raise SpecError(f"pool= applies to conv and local layers, not {self.kind}")
        if tokens is not None and self.vocab is not None and self.vocab < tokens:
            raise SpecError(f"embed vocab={self.vocab} is smaller than the data's vocabulary "
                            f"of {tokens} token ids")
        local = self.kind == "local"
        return LayerSpec(
            self.kind, self.width, tuple(in_shape), classes, self.activation,
            self.pool or DEFAULT_POOL.get(self.kind, "avg"), self.bias,
            kernel=LOCAL_KERNEL if local and self.kernel is None else self.kernel,
            stride=LOCAL_STRIDE if local and self.stride is None else self.stride,
            vocab=(self.vocab or tokens) if self.kind == "embed" else self.vocab)

    def probe(self) -> LayerSpec:
        """This plan on an input large enough for it: checks its names and options before
        the real input shape is known."""
        if self.kind == "embed":
            return self.resolve((1,), 2, tokens=min(self.vocab or 2, MAX_VOCAB))
        side = 4 * max(self.kernel or LOCAL_KERNEL, 1) * max(self.stride or LOCAL_STRIDE, 1)
        return self.resolve((1, side, side) if self.kind in ("conv", "local") else (1,), 2)


INT_OPTIONS = ("kernel", "stride", "vocab")


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
    if key in INT_OPTIONS:
        try:
            changes: dict[str, Any] = {key: whole_number(value, 0, INT32)}
        except NumberError as err:
            raise SpecError(f"{key} {err} in {shown(item)}") from None
        return replace(plan, **changes)
    raise SpecError(f"unknown option {key!r} in {item!r}; use act=, pool=, bias=, kernel=, "
                    "stride= or vocab=")


def _items(arch: str) -> list[str]:
    """The layers of an architecture string. A comma-separated part that is only `key=value`
    continues the layer before it, so `local:64:kernel=5,stride=2` is one layer."""
    items: list[str] = []
    for part in (p.strip() for p in arch.split(",")):
        if items and OPTION.fullmatch(part):
            items[-1] += f":{part}"
        else:
            items.append(part)
    return items


OPTION = re.compile(r"[a-z_]+=[^:]*")


def parse_arch(arch: str) -> list[LayerPlan]:
    """`"dense:1000,dense:1000"` -> two plans. Raises `SpecError` naming the bad item."""
    plans = []
    for item in _items(arch):
        fields = item.split(":")
        width = None
        if len(fields) >= 2 and fields[1].isascii() and fields[1].isdigit():
            try:
                width = whole_number(fields[1], 0, INT32)
            except NumberError as err:
                raise SpecError(f"the width of layer {shown(item)} {err}") from None
        if width is None:
            raise SpecError(
                f"cannot read layer {shown(item)}; write KIND:WIDTH[:key=value…], e.g. "
                "dense:1000 or conv:64:pool=max"
            )
        plan = LayerPlan(fields[0], width)
        for option in fields[2:]:
            plan = _parse_option(plan, option, item)
        plan.probe()  # validate names and options early
        plans.append(plan)
    return plans


def build_specs(plans: list[LayerPlan], in_shape: tuple[int, ...], classes: int,
                vocab: int | None = None) -> list[LayerSpec]:
    """Chain plans: each layer's input shape is the previous layer's output shape. `vocab`:
    the dataset's vocabulary when its examples are token ids (the first layer reads them)."""
    specs = []
    shape = tuple(in_shape)
    for k, plan in enumerate(plans):
        spec = plan.resolve(shape, classes, tokens=vocab if k == 0 else None)
        specs.append(spec)
        shape = spec.out_shape
    return specs
