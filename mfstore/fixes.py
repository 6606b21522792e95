"""The ways out of an error, as typed data: one dataclass per kind of step.

An `MFStoreError` carries the fixes that apply. The library says what to do, never how to
type it: `cli/fixes.py` renders each kind as the command line that applies it, the web UI and
the report phrase it the same way through that renderer, `serving/` carries fixes between
processes as `to_dict`/`from_dict`, and a Python caller reads `err.fixes` (or `describe()`).

    InitFix      create the registry and store            UpgradeFix  bring a schema up to date
    OptionFix    set an option (to a value)               SettingFix  check a location
    ListFix      see what there is                        VerifyFix   check a network / store
    RepairFix    mend a network's layer, or everything    ImportFix   import a dataset
    DeleteFix    delete what needs it first              LaunchFix   start under torchrun
    RetrainFix   train a layer again from its whole recipe
    AliasFix     point a network's alias at another version
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


@dataclass(frozen=True)
class Fix:
    """One way out of an error."""

    kinds: ClassVar[dict[str, type[Fix]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Fix.kinds[cls.__name__] = cls

    def describe(self) -> str:
        """The fix in words, for a Python caller."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """As plain data (JSON), `fix` naming the class."""
        data: dict[str, Any] = {"fix": type(self).__name__}
        for f in fields(self):
            value = getattr(self, f.name)
            data[f.name] = value.to_dict() if isinstance(value, Fix) else (
                list(value) if isinstance(value, tuple) else value)
        return data

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Fix:
        values = dict(data)
        cls = Fix.kinds[values.pop("fix")]
        for f in fields(cls):
            if isinstance(values.get(f.name), dict) and "fix" in values[f.name]:
                values[f.name] = Fix.from_dict(values[f.name])
            elif isinstance(values.get(f.name), list):
                values[f.name] = tuple(values[f.name])
        return cls(**values)


@dataclass(frozen=True)
class InitFix(Fix):
    """Create the registry and the store (`Workspace.init`)."""

    def describe(self) -> str:
        return "initialise the registry and store first (Workspace.init)"


@dataclass(frozen=True)
class UpgradeFix(Fix):
    """Bring an older registry's schema up to date (`Workspace.init` does)."""

    def describe(self) -> str:
        return "upgrade it (Workspace.init)"


@dataclass(frozen=True)
class OptionFix(Fix):
    """Set option `name` (to `value` when given); `why` says what it does."""

    name: str
    why: str = ""
    value: Any = None

    def describe(self) -> str:
        value = "" if self.value is None else f" to {self.value!r}"
        return f"set {self.name!r}{value}" + (f" {self.why}" if self.why else "")


def option(name: str, why: str = "", value: Any = None) -> OptionFix:
    """Shorthand: set option `name` (to `value`)."""
    return OptionFix(name, why, value)


@dataclass(frozen=True)
class SettingFix(Fix):
    """Check where a workspace part lives: `home`, `registry` or `store`."""

    name: str

    def describe(self) -> str:
        return f"check the {self.name} location"


@dataclass(frozen=True)
class ListFix(Fix):
    """See what there is: `datasets`, `layers` or `networks`."""

    what: str

    def describe(self) -> str:
        return f"see the {self.what} there are"


@dataclass(frozen=True)
class VerifyFix(Fix):
    """Check network `network` (the whole store when None)."""

    network: str | None = None

    def describe(self) -> str:
        return f"verify {self.network or 'the store'}"


@dataclass(frozen=True)
class RepairFix(Fix):
    """Mend layer `layer` (1-based) of `network`, or (`auto`) what verify finds damaged in
    `network` or, without one, in the whole store."""

    network: str | None = None
    layer: int | None = None
    auto: bool = False

    def describe(self) -> str:
        what = f"layer {self.layer} of " if self.layer is not None else ""
        return f"repair {what}{self.network or 'the store'}"


@dataclass(frozen=True)
class ImportFix(Fix):
    """Import dataset `name` from `url` with `options` (a `DatasetOptions` dict). None: the
    user's to choose (a name), or only they know (where the data is now)."""

    name: str | None = None
    url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        name = repr(self.name) if self.name else "it under a name of your choosing"
        url = repr(self.url) if self.url else "where its data is now"
        return f"import {name} from {url}" + (
            " with its recorded DatasetOptions" if self.options else "")


@dataclass(frozen=True)
class DeleteFix(Fix):
    """Delete what needs it first, in this order: the live `networks`, then `layers`."""

    networks: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()

    def describe(self) -> str:
        return "first delete " + " and ".join([*self.networks, *self.layers])


@dataclass(frozen=True)
class LaunchFix(Fix):
    """Start the same command under torchrun, `processes` processes, one per `per`."""

    processes: int
    per: str = "layer"

    def describe(self) -> str:
        return (f"start {self.processes} processes, one per {self.per} (torch.distributed's "
                "launcher)")


@dataclass(frozen=True)
class RetrainFix(Fix):
    """Train layer `name` again with the whole recipe of version `ref`: on dataset `data`
    over the chain `on` (refs, input side first), with `spec` (the `LayerPlan` options that
    make its spec) and `config` (its recorded `TrainConfig` dict, the device it resolved to);
    `processes`: data parallel, as many as it was trained with; `other_weights`: why the
    recipe alone cannot give its weights back; `then`: the step after it."""

    ref: str
    name: str
    data: str
    on: tuple[str, ...] = ()
    spec: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    processes: int = 1
    other_weights: str | None = None
    then: Fix | None = None

    def describe(self) -> str:
        chain = ", ".join(self.on) or "the raw dataset"
        plan = ", ".join(f"{k}={v!r}" for k, v in self.spec.items())
        return (f"retrain {self.ref} on {chain} of dataset {self.data!r} as "
                f"LayerPlan({plan}) with its recorded TrainConfig"
                + (f" (other weights: {self.other_weights})" if self.other_weights else "")
                + (f" in {self.processes} processes" if self.processes > 1 else "")
                + (f", then {self.then.describe()}" if self.then is not None else ""))


@dataclass(frozen=True)
class AliasFix(Fix):
    """Point alias `alias` of a network at version `network` (NET@N)."""

    network: str
    alias: str

    def describe(self) -> str:
        return f"point {self.alias} at {self.network}"
