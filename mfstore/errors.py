"""The exceptions mfstore raises, and what would fix them.

Each error carries its message (what is wrong) and, as data, the fixes that apply (`Fix`):
an action and its arguments — retrain this layer on that chain, set this option, create the
registry. `cli/` renders a fix as a command line and `serving/` as an HTTP answer; a Python
caller reads `err.fixes`, and `str(err)` says them in words. The library itself never writes
command-line syntax, never prints and never exits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Fix:
    """One way out of an error.

    `action` is one of:
      - `init`: create the registry and store (`Workspace.init`);
      - `upgrade`: bring an older registry's schema up to date (`Workspace.init` does);
      - `option`: set option `name` (to `value` when given); `why` says what it does;
      - `train_layer`: train layer `name` again with the whole recipe of version `ref`: on
        dataset `data` over the chain `on` (refs, input side first), with `spec` (the
        `LayerPlan` options that make its spec: kind, width and each option whose default
        would make another layer) and `config` (its recorded `TrainConfig.to_dict()`);
        `then`: a fix, as {"action", "args"}, to apply once it is trained; `processes`: data
        parallel, as many as it was trained with; `other_weights`: why the recipe alone
        cannot give its weights back (trained beside other layers, or on CUDA);
      - `verify` / `repair`: check or mend `network` (or the whole store), `layer` = position;
      - `import`: import dataset `name` from `url` with `options` (a `DatasetOptions` dict);
        no `name`: one of the user's choosing; no `url`: one only the user knows (where
        the data is now);
      - `delete`: delete the live `networks` and `layers` that need it first (all of them);
      - `launch`: start the command under torchrun, `processes` processes, one `per` layer.
    """

    action: str
    args: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """The fix in words, for Python callers."""
        words = _DESCRIBE.get(self.action)
        return words(self.args) if words else self.action


def _option_text(a: dict[str, Any]) -> str:
    value = f" to {a['value']!r}" if "value" in a else ""
    return f"set {a['name']!r}{value}" + (f" {a['why']}" if a.get("why") else "")


def _train_layer_words(a: dict[str, Any]) -> str:
    chain = ", ".join(a.get("on", [])) or "the raw dataset"
    plan = ", ".join(f"{k}={v!r}" for k, v in a.get("spec", {}).items())
    then = a.get("then")
    return (f"retrain {a.get('ref', a['name'])} on {chain} of dataset {a['data']!r} as "
            f"LayerPlan({plan}) with its recorded TrainConfig"
            + (f" (other weights: {a['other_weights']})" if a.get("other_weights") else "")
            + (f" in {a['processes']} processes" if a.get("processes", 1) > 1 else "")
            + (f", then {Fix(then['action'], then.get('args', {})).describe()}" if then else ""))


def _import_words(a: dict[str, Any]) -> str:
    name = repr(a["name"]) if a.get("name") else "it under a name of your choosing"
    url = repr(a["url"]) if a.get("url") else "where its data is now"
    options = " with its recorded DatasetOptions" if a.get("options") else ""
    return f"import {name} from {url}{options}"


def _target(a: dict[str, Any]) -> str:
    return str(a.get("network") or a.get("ref") or a.get("name") or "the store")


_DESCRIBE: dict[str, Callable[[dict[str, Any]], str]] = {
    "option": _option_text,
    "train_layer": _train_layer_words,
    "import": _import_words,
    "delete": lambda a: "first delete " + " and ".join([*a.get("networks", []),
                                                        *a.get("layers", [])]),
    "init": lambda a: "initialise the registry and store first (Workspace.init)",
    "upgrade": lambda a: "upgrade it (Workspace.init)",
    "setting": lambda a: f"check the {a.get('name')} location",
    "list": lambda a: f"see the {a.get('what')} there are",
    "verify": lambda a: f"verify {_target(a)}",
    "repair": lambda a: f"repair {_target(a)}",
    "launch": lambda a: (f"start {a.get('processes', 'several')} processes, one per "
                         f"{a.get('per')} (torch.distributed's launcher)"),
}


def option(name: str, why: str = "", value: Any = None) -> Fix:
    """Shorthand: the fix is to set option `name` (to `value`)."""
    args: dict[str, Any] = {"name": name}
    if why:
        args["why"] = why
    if value is not None:
        args["value"] = value
    return Fix("option", args)


class MFStoreError(Exception):
    """Base class of every error mfstore raises on purpose."""

    def __init__(self, message: str, *fixes: Fix) -> None:
        super().__init__(message)
        self.message, self.fixes = message, fixes

    def __str__(self) -> str:
        if not self.fixes:
            return self.message
        first, *rest = (f.describe() for f in self.fixes)
        return f"{self.message}; {first}" + "".join(f" (or {r})" for r in rest)


class DataSourceError(MFStoreError):
    """A data URL cannot be reached or opened."""


class DataFormatError(MFStoreError):
    """A file is not in the format it claims (bad magic number, truncated, unknown format)."""


class DataValidationError(MFStoreError):
    """The examples are unusable: count mismatch, NaN or infinite values, bad labels."""


class SpecError(MFStoreError):
    """A layer specification or architecture is invalid or does not fit its input."""


class ConfigError(MFStoreError):
    """A training or command option is out of range."""


class DivergenceError(ConfigError):
    """Training diverged (a non-finite loss or weight); nothing was registered."""


class DeviceError(MFStoreError):
    """The requested compute device is not available."""


class NotFoundError(MFStoreError):
    """A dataset, layer, network, version or alias does not exist."""


class ConflictError(MFStoreError):
    """The name is taken by something different, or something still needs what is asked to go."""


class IntegrityError(MFStoreError):
    """A stored file is missing, truncated or does not match its sha256."""


class StoreError(MFStoreError):
    """The store URL cannot be reached, read or written."""


class RegistryError(MFStoreError):
    """The registry cannot be opened or written, or is not an mfstore registry."""


class LineageError(MFStoreError):
    """A layer was trained on the outputs of a different upstream chain."""


class ExportError(MFStoreError):
    """An export failed its checks (ONNX checker, or parity with PyTorch)."""


def one_line(err: BaseException) -> str:
    """An error's message on one line (botocore's span several; the first may say nothing)."""
    text = " ".join(part.strip() for part in str(err).splitlines() if part.strip())
    return text or type(err).__name__


def transport_error(err: BaseException) -> bool:
    """An error of a file system or its network client (OSError, botocore, aiohttp, google,
    azure…) rather than of mfstore's own code."""
    if isinstance(err, OSError):
        return True
    module = type(err).__module__.split(".")[0]
    return module in {"botocore", "aiobotocore", "aiohttp", "google", "azure", "requests",
                      "urllib3", "s3fs", "gcsfs", "adlfs", "fsspec"}
