"""`mfstore report`: one network as one self-contained HTML file (and its charts as PNG)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.context import workspace
from cli.errors import call_of
from cli.fixes import render_fix
from cli.render import stdout
from mfstore.errors import ConfigError
from mfstore.fixes import option

if TYPE_CHECKING:
    from pages.scene import Scene


def _write(path: Path, data: bytes) -> None:
    """Write `data` at `path` whole or not at all (a temporary file moved into place)."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {err.strerror or err}",
                          option("out" if path.suffix != ".png" else "png")) from err


def _check_target(path: Path, folder: bool) -> None:
    """Refuse, before any work, a target whose folder is missing, a report file that is a
    folder, or a chart folder that is a file."""
    name = "png" if folder else "out"
    if not path.parent.is_dir():
        raise ConfigError(f"cannot write {path}: there is no folder {path.parent}", option(name))
    if folder and path.exists() and not path.is_dir():
        raise ConfigError(f"cannot write charts into {path}: it is a file, not a folder",
                          option(name))
    if not folder and path.is_dir():
        raise ConfigError(f"cannot write {path}: it is a folder, not a file", option(name))


def _check_targets(out: Path, png: Path | None) -> None:
    """Both targets, and matplotlib where charts are asked for, before the report is made."""
    from pages.png import check_png  # start-up: only when this command runs

    _check_target(out, folder=False)
    if png is not None:
        _check_target(png, folder=True)
        check_png()


def _charts(figures: dict[str, Scene]) -> dict[str, bytes]:
    """Each chart drawn as PNG (before anything is written), by file name."""
    from pages.png import to_png  # start-up: only when this command runs

    return {f"{stem}.png": to_png(scene) for stem, scene in figures.items()}


def _write_charts(png: Path, images: dict[str, bytes]) -> None:
    png.mkdir(exist_ok=True)
    for name, data in images.items():
        _write(png / name, data)


def report(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NET, NET@VERSION or NET@ALIAS.")],
    out: Annotated[Path, typer.Option(help="HTML file to write.")],
    png: Annotated[Path | None, typer.Option(
        help="Also write every chart as a PNG into this folder, made if missing (needs "
             "matplotlib: mfstore\\[png]).")] = None,
) -> None:
    """Write one self-contained HTML report of a network (per-layer accuracy, FF and BP mode,
    verify status with repair commands, lineage, learning curves, dataset, exports) to attach
    to a review or a ticket; it opens offline in any browser.

    Example: mfstore report digits-mlp@1 --out report.html --png charts
    """
    # start-up: SQLAlchemy only when a command opens the registry
    from pages.report import network_report

    _check_targets(out, png)
    result = network_report(workspace(ctx), ref, lambda fix: render_fix(fix, call_of(ctx)))
    images = _charts(result.figures) if png is not None else {}
    _write(out, result.html.encode())
    if png is not None:
        _write_charts(png, images)
    stdout.print(f"wrote {out}" + (f" and {len(images)} charts in {png}" if images else ""),
                 highlight=False)
