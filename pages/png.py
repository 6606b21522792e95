"""A scene drawn as a PNG with matplotlib's Agg canvas (no browser, no network): the same
items at the same places as its SVG, at twice the resolution. matplotlib comes with the `png`
extra (`pip install 'mfstore[png]'`)."""

from __future__ import annotations

import io
from typing import Any

from mfstore.errors import ConfigError
from pages.scene import Circle, Line, Polyline, Rect, Scene, Text

DPI = 200  # 2 pixels per SVG unit at 100 units per inch
UNITS_PER_INCH = 100


def _pyplot() -> Any:
    try:
        import matplotlib  # the png extra is optional: matplotlib only for --png
    except ImportError as err:
        raise ConfigError("writing charts as PNG needs matplotlib: install mfstore[png]") from err
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # the png extra is optional: matplotlib only for --png

    return plt


def _colour(value: str) -> str:
    return "none" if value in ("", "none") else value


def _points_per_unit() -> float:
    return 72 / UNITS_PER_INCH


def _draw(ax: Any, item: object) -> None:
    from matplotlib import patches  # the png extra is optional: matplotlib only for --png

    pt = _points_per_unit()
    if isinstance(item, Rect):
        ax.add_patch(patches.FancyBboxPatch(
            (item.x, item.y), item.w, item.h, facecolor=_colour(item.fill),
            edgecolor=_colour(item.stroke), linewidth=pt,
            boxstyle=f"round,pad=0,rounding_size={item.radius}" if item.radius else "square,pad=0"))
    elif isinstance(item, Line):
        style = "-|>" if item.arrow else "-"
        ax.annotate("", (item.x2, item.y2), (item.x1, item.y1), arrowprops={
            "arrowstyle": style, "color": item.stroke, "linewidth": item.width * pt,
            "linestyle": "--" if item.dash else "-", "shrinkA": 0, "shrinkB": 0})
    elif isinstance(item, Polyline):
        xs, ys = zip(*item.points, strict=True)
        ax.plot(xs, ys, color=item.stroke, linewidth=item.width * pt,
                linestyle="--" if item.dash else "-")
    elif isinstance(item, Circle):
        ax.add_patch(patches.Circle((item.x, item.y), item.r, color=item.fill))
    elif isinstance(item, Text):
        ax.text(item.x, item.y, item.text, ha={"start": "left", "end": "right"}.get(
            item.anchor, "center"), va="baseline", fontsize=item.size * pt, color=item.fill,
            fontweight=item.weight, parse_math=False, family="sans-serif")


def to_png(scene: Scene) -> bytes:
    """The scene as PNG bytes."""
    plt = _pyplot()
    fig = plt.figure(figsize=(scene.width / UNITS_PER_INCH, scene.height / UNITS_PER_INCH),
                     dpi=DPI)
    try:
        ax = fig.add_axes((0, 0, 1, 1))
        ax.set_xlim(0, scene.width)
        ax.set_ylim(scene.height, 0)  # y grows downwards, as in SVG
        ax.axis("off")
        fig.patch.set_facecolor("white")
        for item in scene.items:
            _draw(ax, item)
        out = io.BytesIO()
        fig.savefig(out, format="png", dpi=DPI, facecolor="white")
        return out.getvalue()
    finally:
        plt.close(fig)


def check_png() -> None:
    """Refuse early, before any work, when PNGs cannot be written."""
    _pyplot()
