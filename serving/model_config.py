"""A model's configuration: Triton's `ModelConfig`, read from `config.pbtxt` or completed from
the ONNX model the way Triton completes it, checked against the model, and adjusted by the
server's batching options. The configuration is the truth the server serves: the tensor shapes
clients see (batch axis first when `max_batch_size` > 0), the version policy, dynamic batching
(`max_queue_delay_microseconds`, `preferred_batch_size`), instance count and label files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import json_format, text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from tritonclient.grpc import model_config_pb2 as mc

from mfstore.errors import ConfigError, DataFormatError
from mfstore.numbers import INT32
from serving.tensors import ONNX_TYPES, TensorSpec

CONFIG_FILE = "config.pbtxt"
PLATFORMS = ("onnxruntime_onnx", "")
BACKENDS = ("onnxruntime", "")
INT64_TYPES = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64,
               FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_FIXED64,
               FieldDescriptor.TYPE_SFIXED64}


@dataclass(frozen=True)
class BatchingOptions:
    """The server's overrides of every model's batching settings; None keeps the model's."""
    enabled: bool | None = None  # dynamic batching on or off
    max_batch_size: int | None = None
    max_queue_delay_us: int | None = None

    def __post_init__(self) -> None:
        if self.max_batch_size is not None and not 1 <= self.max_batch_size <= INT32:
            raise ConfigError(f"the max batch size must lie in 1..{INT32} (Triton's int32), got "
                              f"{self.max_batch_size}")
        if self.max_queue_delay_us is not None and not 0 <= self.max_queue_delay_us <= 10**8:
            raise ConfigError(f"the max queue delay must lie in 0..100000000 microseconds, got "
                              f"{self.max_queue_delay_us}")


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_size: int
    max_queue_delay_s: float
    preferred: tuple[int, ...] = ()


def datatype(config_type: int) -> str:
    """TYPE_FP32 -> FP32 (TYPE_STRING -> BYTES)."""
    name = str(mc.DataType.Name(config_type))[len("TYPE_"):]
    return "BYTES" if name == "STRING" else name


def config_type(v2_datatype: str) -> int:
    return int(mc.DataType.Value("TYPE_STRING" if v2_datatype == "BYTES"
                                 else f"TYPE_{v2_datatype}"))


def read_config(folder: Path) -> mc.ModelConfig | None:
    """`<folder>/config.pbtxt`, None when there is none."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        return text_format.Parse(path.read_text(encoding="utf-8"), mc.ModelConfig())
    except (text_format.ParseError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{path} is not a model configuration: {err}") from None


def autocomplete(name: str, config: mc.ModelConfig | None, session: Any) -> mc.ModelConfig:
    """`config` with what it leaves out filled from the model, as Triton does: a missing
    configuration describes the model's tensors whole (`max_batch_size` 0, no batching)."""
    done = mc.ModelConfig()
    if config is not None:
        done.CopyFrom(config)
    done.name = done.name or name
    if not done.platform and not done.backend:
        done.platform = "onnxruntime_onnx"
    batch = 1 if done.max_batch_size > 0 else 0
    for wanted, actual in ((done.input, session.get_inputs()),
                           (done.output, session.get_outputs())):
        if not wanted:
            for arg in actual:
                wanted.add(name=arg.name, data_type=config_type(ONNX_TYPES.get(arg.type, "")),
                           dims=_dims(arg.shape)[batch:])
    if not done.HasField("version_policy"):
        done.version_policy.latest.num_versions = 1
    if not done.instance_group:
        done.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_AUTO)
    return done


def _dims(shape: list[Any]) -> list[int]:
    return [d if isinstance(d, int) and d > 0 else -1 for d in shape]


def model_shape(tensor: mc.ModelInput | mc.ModelOutput, batched: bool) -> list[int]:
    """The shape the ONNX model itself takes or gives (after `reshape`)."""
    inner = list(tensor.reshape.shape) if tensor.HasField("reshape") else list(tensor.dims)
    return [-1, *inner] if batched else inner


def check_config(config: mc.ModelConfig, folder_name: str, session: Any, where: str) -> None:
    """Refuse a configuration that does not describe this model (Triton's checks)."""
    if config.name != folder_name:
        raise ConfigError(f"{where}: the configuration names model {config.name!r}, its folder "
                          f"is {folder_name!r}; they must agree")
    if config.platform not in PLATFORMS or config.backend not in BACKENDS:
        raise ConfigError(f"{where}: platform {config.platform!r} / backend {config.backend!r} "
                          "is not ONNX Runtime's; only onnxruntime_onnx models are served")
    if config.HasField("dynamic_batching") and config.max_batch_size <= 0:
        raise ConfigError(f"{where}: dynamic batching needs max_batch_size > 0")
    if config.max_batch_size < 0:
        raise ConfigError(f"{where}: max_batch_size must be >= 0")
    for kind, declared, actual in (("input", config.input, session.get_inputs()),
                                   ("output", config.output, session.get_outputs())):
        _check_tensors(kind, list(declared), actual, config.max_batch_size > 0, where)


def _check_tensors(kind: str, declared: list[Any], actual: list[Any], batched: bool,
                   where: str) -> None:
    model = {a.name: a for a in actual}
    if sorted(d.name for d in declared) != sorted(model):
        raise ConfigError(f"{where}: the configuration's {kind}s are "
                          f"{sorted(d.name for d in declared)}, the model's {sorted(model)}")
    for tensor in declared:
        arg = model[tensor.name]
        if datatype(tensor.data_type) != ONNX_TYPES.get(arg.type):
            raise ConfigError(f"{where}: {kind} {tensor.name!r} is declared "
                              f"{mc.DataType.Name(tensor.data_type)}, the model's is {arg.type}")
        want, got = model_shape(tensor, batched), _dims(arg.shape)
        fits = len(want) == len(got) and all(g in (-1, w) for w, g in zip(want, got, strict=True))
        if not fits or (batched and got[0] != -1):
            raise ConfigError(f"{where}: {kind} {tensor.name!r} is declared {want} (batch "
                              f"axis first when max_batch_size > 0), the model's is {got}")


def with_options(config: mc.ModelConfig, options: BatchingOptions, where: str) -> None:
    """Apply the server's batching options to `config` (in place)."""
    if options.max_batch_size is not None:
        if config.max_batch_size == 0:
            _add_batch_axis(config, where)
        config.max_batch_size = options.max_batch_size
    if options.enabled is False:
        config.ClearField("dynamic_batching")
    elif options.enabled and config.max_batch_size <= 0:
        raise ConfigError(f"{where}: dynamic batching needs a batch axis, and the model's "
                          "configuration has max_batch_size 0; give a max batch size")
    elif options.enabled:
        config.dynamic_batching.SetInParent()
    if options.max_queue_delay_us is not None and config.HasField("dynamic_batching"):
        config.dynamic_batching.max_queue_delay_microseconds = options.max_queue_delay_us


def _add_batch_axis(config: mc.ModelConfig, where: str) -> None:
    """A whole-tensor configuration turned into a batched one: the first axis of every tensor,
    variable in all of them, becomes the batch axis."""
    tensors = [*config.input, *config.output]
    if any(t.HasField("reshape") or not t.dims or t.dims[0] != -1 for t in tensors):
        raise ConfigError(f"{where}: not every tensor has a variable first axis, so the model "
                          "cannot batch; leave its max batch size alone")
    for tensor in tensors:
        del tensor.dims[0]


def tensor_specs(config: mc.ModelConfig) -> tuple[dict[str, TensorSpec], dict[str, TensorSpec]]:
    """What clients see: inputs and outputs with the batch axis (-1) first when batched."""
    batch = [-1] if config.max_batch_size > 0 else []

    def spec(t: Any) -> TensorSpec:
        return TensorSpec(t.name, datatype(t.data_type), (*batch, *t.dims))

    return ({t.name: spec(t) for t in config.input}, {t.name: spec(t) for t in config.output})


def batch_policy(config: mc.ModelConfig) -> BatchPolicy | None:
    if not config.HasField("dynamic_batching"):
        return None
    batching = config.dynamic_batching
    return BatchPolicy(config.max_batch_size, batching.max_queue_delay_microseconds / 1e6,
                       tuple(sorted(batching.preferred_batch_size)))


def instance_count(config: mc.ModelConfig) -> int:
    return max(sum(group.count or 1 for group in config.instance_group), 1)


def select_versions(config: mc.ModelConfig | None, available: list[int]) -> list[int]:
    """The versions Triton's version policy serves (default: the latest one)."""
    policy = config.version_policy if config is not None else mc.ModelVersionPolicy()
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        return sorted(available)
    if kind == "specific":
        return sorted(v for v in available if v in set(policy.specific.versions))
    latest = policy.latest.num_versions if kind == "latest" else 1
    return sorted(available)[-max(latest, 1):]


def config_json(config: mc.ModelConfig) -> dict[str, Any]:
    """The configuration as Triton's REST API gives it: proto field names, 64-bit integers as
    JSON numbers."""
    value = json_format.MessageToDict(config, preserving_proto_field_name=True,
                                      always_print_fields_with_no_presence=True)
    _int64_as_numbers(value, config.DESCRIPTOR)
    return value


def _int64_as_numbers(value: dict[str, Any], descriptor: Descriptor) -> None:
    for field in descriptor.fields:
        if field.name not in value:
            continue
        item = value[field.name]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            inner = field.message_type.fields_by_name["value"]
            if inner.message_type is not None:
                for entry in item.values():
                    _int64_as_numbers(entry, inner.message_type)
        elif field.message_type is not None:
            for entry in (item if isinstance(item, list) else [item]):
                _int64_as_numbers(entry, field.message_type)
        elif field.type in INT64_TYPES:
            value[field.name] = [int(x) for x in item] if isinstance(item, list) else int(item)
