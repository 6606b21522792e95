"""The models a server holds, where each comes from, and how they change while it runs.

A model comes from a folder of a Triton repository (`<repo>/<name>/config.pbtxt`,
`<repo>/<name>/<version>/model.onnx`, versions chosen by the configuration's version policy,
by default the latest) or from the registry (`NET`, `NET@3`, `NET@prod`: the version the
reference names now). `refresh` brings a model in line with its source: it loads the versions
the source names that are not loaded (or whose files changed), lists them, unlists the others
and drains them (waits for the requests they are answering) before closing them. Requests
without a version go to the source's current version (the alias's, or the newest), so a
moving alias or a new version folder switches traffic without a failed request. Loading runs
in a thread; the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mfstore.errors import ConfigError, MFStoreError, NotFoundError
from mfstore.names import check_name, read_label_lines
from mfstore.registry import parse_ref
from mfstore.workspace import Workspace
from serving import model_config as cfg
from serving.errors import RequestError
from serving.models import ModelVersion, VersionFiles, load_version
from serving.sessions import RuntimeOptions
from serving.tensors import clip

log = logging.getLogger("mfstore.serving")
VERSION_FOLDER = re.compile(r"[1-9][0-9]{0,18}")
MODEL_FILE = "model.onnx"


class Source(Protocol):
    name: str
    follows: str | None  # the alias followed, if any

    def scan(self) -> tuple[dict[int, str], int | None]:
        """The versions to serve (version -> fingerprint) and the one unversioned requests
        get; blocking."""

    def files(self, version: int) -> VersionFiles:
        """What to load a version from; blocking."""


def _stamp(path: Path) -> str:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return "-"
    return f"{stat.st_mtime_ns}:{stat.st_size}"


class FolderModel:
    """A model folder of a Triton repository."""

    follows: str | None = None

    def __init__(self, folder: Path) -> None:
        self.folder, self.name = folder, check_name(folder.name, "model")

    def scan(self) -> tuple[dict[int, str], int | None]:
        if not self.folder.is_dir():
            return {}, None
        config = cfg.read_config(self.folder)
        available = [int(v.name) for v in self.folder.iterdir()
                     if VERSION_FOLDER.fullmatch(v.name) and (v / MODEL_FILE).is_file()]
        chosen = cfg.select_versions(config, available)
        shared = _stamp(self.folder / cfg.CONFIG_FILE) + "".join(
            _stamp(self.folder / name) for name in self._label_files(config).values())
        return ({v: f"{_stamp(self.folder / str(v) / MODEL_FILE)}/{shared}" for v in chosen},
                max(chosen) if chosen else None)

    def files(self, version: int) -> VersionFiles:
        config = cfg.read_config(self.folder)
        path = self.folder / str(version) / MODEL_FILE
        labels = {output: self._labels(name)
                  for output, name in self._label_files(config).items()}
        return VersionFiles(str(path), config, labels, str(path))

    def _labels(self, name: str) -> list[str]:
        """A label file's class names, read as Triton reads them."""
        try:
            return read_label_lines((self.folder / name).read_bytes().decode("utf-8"))
        except UnicodeDecodeError as err:
            raise ConfigError(f"{self.folder / name} is not UTF-8 text (byte {err.start}); "
                              "write the label file in UTF-8") from None

    def _label_files(self, config: cfg.mc.ModelConfig | None) -> dict[str, str]:
        found = {o.name: o.label_filename for o in (config.output if config else [])
                 if o.label_filename}
        for name in found.values():
            if Path(name).name != name or not (self.folder / name).is_file():
                raise ConfigError(f"{self.folder / cfg.CONFIG_FILE}: label_filename {name!r} "
                                  "must name a file in the model's folder")
        return found


class RegistryModel:
    """A network of the registry, by version or by alias."""

    def __init__(self, ws: Workspace, name: str, selector: str | None) -> None:
        self.ws, self.name, self.selector = ws, name, selector
        self.follows = None if selector is None or (
            selector.isascii() and selector.isdigit()) else selector  # an alias it follows

    def scan(self) -> tuple[dict[int, str], int | None]:
        network = self.ws.registry.network(self.name, self.selector)
        return {network.version: "registry"}, network.version

    def files(self, version: int) -> VersionFiles:
        # start-up: torch and onnx only for a model served from the registry
        from mfstore.export import build_export, triton_model_config
        from mfstore.onnx_graph import GOODNESS  # (as above)

        export = build_export(self.ws, f"{self.name}@{version}")
        names = export.dataset.class_names
        return VersionFiles(export.data, triton_model_config(self.name, export),
                            {GOODNESS: list(names)} if names else {},
                            f"{self.name}@{version} of the registry", "registry")


def model_sources(repo: str | None, refs: list[str],
                  workspace: Callable[[], Workspace]) -> tuple[list[Source], list[Path]]:
    """The sources of a repository folder's models and of registry references (`NET`,
    `NET@3`, `NET@prod`; the workspace is opened only when there are any), and the folders
    to look in for new models."""
    roots = [Path(repo)] if repo is not None else []
    sources: list[Source] = [m for root in roots for m in folder_models(root)]
    ws = workspace() if refs else None
    for ref in refs:
        name, selector = parse_ref(ref)
        sources.append(RegistryModel(ws, name, selector))  # type: ignore[arg-type]
    return sources, roots


def folder_models(root: Path) -> list[FolderModel]:
    """Every model folder of a repository (hidden folders skipped)."""
    if not root.is_dir():
        raise NotFoundError(f"model repository {str(root)!r} is not a folder")
    return [FolderModel(p) for p in sorted(root.iterdir())
            if p.is_dir() and not p.name.startswith(".")]


@dataclass
class ModelEntry:
    source: Source
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    default: int | None = None
    state: str = "UNAVAILABLE"  # READY, LOADING or UNAVAILABLE (Triton's states)
    reason: str = ""
    unloaded: bool = False  # by request: polling leaves it alone until it is loaded again
    failed: dict[int, tuple[str, MFStoreError]] = field(default_factory=dict)  # by version:
    # the fingerprint of the files that failed to load, and why
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Repository:
    def __init__(self, sources: list[Source], roots: list[Path], options: RuntimeOptions,
                 batching: cfg.BatchingOptions) -> None:
        self.entries: dict[str, ModelEntry] = {}
        for source in sources:
            if source.name in self.entries:
                raise ConfigError(f"two models are named {source.name!r}; serve one of them")
            self.entries[source.name] = ModelEntry(source)
        self.roots, self.options, self.batching = roots, options, batching

    async def start(self) -> None:
        """Load every model; the first failure is raised."""
        if not self.entries:
            raise NotFoundError("nothing to serve: name a model repository and/or networks")
        for entry in self.entries.values():
            await self.refresh(entry, strict=True)
            if not entry.versions:
                raise NotFoundError(f"model {entry.source.name!r} has no version to serve "
                                    f"(no <version>/{MODEL_FILE} the version policy chooses)")

    def get(self, name: str, version: str | None = None) -> ModelVersion:
        """The named version, or the current one."""
        entry = self.entries.get(name)
        if entry is None:
            raise RequestError(404, f"unknown model {clip(name)!r}; this server has "
                                    f"{', '.join(sorted(self.entries)) or 'no models'}")
        if not entry.versions:
            if entry.state == "LOADING":
                raise RequestError(503, f"model {name!r} is loading; try again shortly")
            raise RequestError(404, f"model {name!r} is not loaded ({entry.reason})")
        if version is None:
            return entry.versions[entry.default or max(entry.versions)]
        if not VERSION_FOLDER.fullmatch(version) and version != "0":
            raise RequestError(400, f"model version must be a whole number, got "
                                    f"{clip(version, 24)!r}")
        model = entry.versions.get(int(version))
        if model is None:
            raise RequestError(404, f"model {name!r} has no version {version!r}; it has "
                                    f"{', '.join(str(v) for v in sorted(entry.versions))}")
        return model

    async def refresh(self, entry: ModelEntry, strict: bool = False) -> None:
        """Bring `entry` in line with its source. A failure is raised when `strict`, else
        logged (once) and kept as the model's reason while its loaded versions go on
        serving; a version that failed is tried again once its files change."""
        async with entry.lock:
            try:
                await self._refresh(entry)
            except MFStoreError as err:
                if strict:
                    raise
                if str(err) != entry.reason:
                    log.error("model %s: %s", entry.source.name, err)
                entry.reason = str(err)
                entry.state = "READY" if entry.versions else "UNAVAILABLE"

    async def _refresh(self, entry: ModelEntry) -> None:
        source = entry.source
        try:
            wanted, default = await asyncio.to_thread(source.scan)
        except OSError as err:  # a folder that went away while it was read, and the like
            raise NotFoundError(f"cannot read model {source.name!r}: {err}") from err
        for version, fingerprint in sorted(wanted.items()):
            current = entry.versions.get(version)
            if current is not None and current.fingerprint == fingerprint:
                continue
            failed = entry.failed.get(version)
            if failed is not None and failed[0] == fingerprint:
                raise failed[1]
            entry.state = "READY" if entry.versions else "LOADING"
            try:
                model = await asyncio.to_thread(self._load, source, version, fingerprint)
            except MFStoreError as err:
                entry.failed[version] = (fingerprint, err)
                raise
            entry.failed.pop(version, None)
            entry.versions[version] = model
            entry.default = default if default in entry.versions else version
            if current is not None:
                await current.drain()
        entry.default = default if default in entry.versions else None
        for version in [v for v in entry.versions if v not in wanted]:
            await self._retire(entry, version)
        entry.state, entry.reason = ("READY", "") if entry.versions else (
            "UNAVAILABLE", "no version to serve")

    def _load(self, source: Source, version: int, fingerprint: str) -> ModelVersion:
        try:
            files = source.files(version)
        except OSError as err:
            raise NotFoundError(f"cannot read model {source.name!r} version {version}: "
                                f"{err}") from err
        model = load_version(source.name, version, files, self.options, self.batching)
        model.fingerprint = fingerprint
        return model

    @staticmethod
    async def _retire(entry: ModelEntry, version: int) -> None:
        model = entry.versions.pop(version)
        if entry.default == version:
            entry.default = max(entry.versions) if entry.versions else None
        await model.drain()
        log.info("model %s version %d unloaded", model.name, version)

    async def poll(self, seconds: float) -> None:
        """Refresh every model, and add the repositories' new model folders, every `seconds`."""
        while True:
            await asyncio.sleep(seconds)
            try:
                await self.discover()
            except OSError as err:
                log.error("cannot look for new models: %s", err)
            for entry in list(self.entries.values()):
                if not entry.unloaded:
                    await self.refresh(entry)

    async def discover(self) -> None:
        for root in self.roots:
            for folder in sorted(root.iterdir()) if root.is_dir() else []:
                if folder.is_dir() and not folder.name.startswith(".") \
                        and folder.name not in self.entries:
                    try:
                        self.entries[folder.name] = ModelEntry(FolderModel(folder))
                    except ConfigError as err:
                        log.warning("skipping %s: %s", folder, err)

    async def load(self, name: str) -> None:
        """Load (or reload) a model by request."""
        if name not in self.entries:
            await self.discover()
        entry = self.entries.get(name)
        if entry is None:
            raise RequestError(404, f"no model named {clip(name)!r} in the repository")
        entry.unloaded = False
        entry.failed.clear()  # asked for: try every version again
        await self.refresh(entry)
        if not entry.versions or entry.reason:
            raise RequestError(400, f"failed to load {name!r}: {entry.reason}")

    async def unload(self, name: str) -> None:
        entry = self.entries.get(name)
        if entry is None:
            raise RequestError(404, f"no model named {clip(name)!r} in the repository")
        async with entry.lock:
            entry.unloaded = True
            for version in list(entry.versions):
                await self._retire(entry, version)
            entry.state, entry.reason = "UNAVAILABLE", "unloaded"

    def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        """Triton's repository index: one row per loaded version, one per model without."""
        rows = []
        for name, entry in sorted(self.entries.items()):
            if entry.versions:  # the reason, if any, is why a newer version did not load
                rows += [{"name": name, "version": str(v), "state": "READY",
                          **({"reason": entry.reason} if entry.reason else {})}
                         for v in sorted(entry.versions)]
            elif not ready_only:
                rows.append({"name": name, "state": entry.state, "reason": entry.reason})
        return rows

    def loaded(self, name: str | None = None) -> list[ModelVersion]:
        """Every loaded version (of model `name`), by name and version."""
        names = [name] if name is not None else sorted(self.entries)
        return [model for n in names
                for _, model in sorted(self.entries[n].versions.items())]

    def close(self) -> None:
        for entry in self.entries.values():
            for model in entry.versions.values():
                model.executor.close()
