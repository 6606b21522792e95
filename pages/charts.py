"""Charts as scenes: a layer's learning curves (train / validation loss, validation accuracy,
per epoch, from its block's history) and accuracy bars (every layer on its own, FF and BP
mode).

    loss ▲  train ───  validation - - -      accuracy ▲             best epoch ┆
         │╲___                                        │   ____•──•──•
         │    ‾‾──────                                │ _╱
         └──────────► epoch                           └──────────► epoch
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pages.scene import Circle, Line, Polyline, Rect, Scene, Text

TRAIN, VAL, ACC, BEST = "#1f77b4", "#ff7f0e", "#2ca02c", "#999"
WIDTH, HEIGHT = 420, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 16, 28, 36


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    raw = (hi - lo) / max(count - 1, 1)
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if m * step >= raw)
    first = math.floor(lo / step) * step
    ticks = [first]
    while ticks[-1] < hi - 1e-9 * step:
        ticks.append(ticks[-1] + step)
    return [round(t, 10) for t in ticks]


def _label(value: float) -> str:
    return f"{value:.4g}"


@dataclass
class Frame:
    """The plotting area of a chart and its scales."""

    scene: Scene
    xs: tuple[float, float]
    ys: tuple[float, float]

    def x(self, value: float) -> float:
        lo, hi = self.xs
        return LEFT + (value - lo) / ((hi - lo) or 1) * (self.scene.width - LEFT - RIGHT)

    def y(self, value: float) -> float:
        lo, hi = self.ys
        return self.scene.height - BOTTOM - (value - lo) / ((hi - lo) or 1) * (
            self.scene.height - TOP - BOTTOM)


def _frame(title: str, cls: str, epochs: int, values: Sequence[float], ylabel: str,
           percent: bool = False) -> Frame:
    scene = Scene(WIDTH, HEIGHT, title, cls=f"chart {cls}")
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    ticks = nice_ticks(lo, hi)
    frame = Frame(scene, (1, max(epochs, 2)), (ticks[0], ticks[-1]))
    scene.add(Text(WIDTH / 2, 16, title, "middle", 12, weight="bold", cls="chart-title"))
    for t in ticks:
        scene.add(Line(LEFT, frame.y(t), WIDTH - RIGHT, frame.y(t), "#e5e5e5"),
                  Text(LEFT - 6, frame.y(t) + 4, f"{t:.0%}" if percent else _label(t), "end",
                       10, "#555", cls="tick"))
    for e in nice_ticks(1, max(epochs, 2), 6):
        if 1 <= e <= max(epochs, 2) and float(e).is_integer():
            scene.add(Text(frame.x(e), HEIGHT - BOTTOM + 14, str(int(e)), "middle", 10, "#555",
                           cls="tick"))
    scene.add(Line(LEFT, HEIGHT - BOTTOM, WIDTH - RIGHT, HEIGHT - BOTTOM, "#444"),
              Line(LEFT, TOP, LEFT, HEIGHT - BOTTOM, "#444"),
              Text(WIDTH / 2, HEIGHT - 6, "epoch", "middle", 10, "#555"),
              Text(12, TOP - 8, ylabel, "start", 10, "#555"))
    return frame


def _series(frame: Frame, points: list[tuple[int, float]], colour: str, name: str,
            cls: str, dash: bool = False, percent: bool = False) -> None:
    if not points:
        return
    shown = (lambda v: f"{v:.2%}") if percent else _label
    frame.scene.add(Polyline(tuple((frame.x(e), frame.y(v)) for e, v in points), colour,
                             dash=dash, cls=f"series {cls}", tip=name))
    for e, v in points:
        frame.scene.add(Circle(frame.x(e), frame.y(v), 2.5, colour, cls=f"point {cls}",
                               tip=f"{name}, epoch {e}: {shown(v)}"))


def _legend(frame: Frame, entries: list[tuple[str, str, bool]]) -> None:
    x = frame.scene.width - RIGHT - 8
    for k, (name, colour, dash) in enumerate(entries):
        y = TOP + 10 + 14 * k
        frame.scene.add(Line(x - 110, y - 4, x - 92, y - 4, colour, 2, dash),
                        Text(x - 88, y, name, "start", 10, "#333", cls="legend"))


def _best(frame: Frame, best: Any) -> None:
    if isinstance(best, int):
        frame.scene.add(Line(frame.x(best), TOP, frame.x(best), HEIGHT - BOTTOM, BEST, 1, True,
                             cls="best-epoch", tip=f"best epoch {best} (weights kept)"))


def _points(epochs: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    return [(int(e["epoch"]), float(e[key])) for e in epochs
            if e.get(key) is not None and math.isfinite(float(e[key]))]


def loss_chart(history: dict[str, Any], title: str = "loss") -> Scene:
    """Train and validation loss per epoch; the kept (best) epoch marked."""
    epochs = history.get("epochs", [])
    train, val = _points(epochs, "train_loss"), _points(epochs, "val_loss")
    frame = _frame(title, "loss-chart", len(epochs), [v for _, v in train + val],
                   "cross-entropy")
    _best(frame, history.get("best_epoch"))
    _series(frame, train, TRAIN, "train loss", "train-loss")
    _series(frame, val, VAL, "validation loss", "val-loss", dash=True)
    _legend(frame, [("train", TRAIN, False), ("validation", VAL, True)])
    return frame.scene


def accuracy_chart(history: dict[str, Any], title: str = "validation accuracy") -> Scene:
    """Validation accuracy per epoch; the kept (best) epoch marked."""
    epochs = history.get("epochs", [])
    acc = _points(epochs, "val_accuracy")
    frame = _frame(title, "accuracy-chart", len(epochs), [v for _, v in acc], "accuracy",
                   percent=True)
    _best(frame, history.get("best_epoch"))
    _series(frame, acc, ACC, "validation accuracy", "val-accuracy", percent=True)
    return frame.scene


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None  # measured accuracy, None when it could not be measured
    recorded: float | None = None  # recorded at training time, drawn as a tick
    kind: str = "layer"  # layer | ff | bp
    href: str = ""
    damaged: bool = False


BAR_COLOURS = {"layer": "#4c78a8", "ff": "#54a24b", "bp": "#b279a2"}


def accuracy_bars(bars: Sequence[Bar], title: str = "test accuracy") -> Scene:
    """One horizontal bar per prediction (0–100 %), recorded values as black ticks."""
    row, label_w, width = 26, 150, 560
    scene = Scene(width, TOP + row * len(bars) + 30, title, cls="chart accuracy-bars")
    scale = width - label_w - 70
    scene.add(Text(width / 2, 16, title, "middle", 12, weight="bold", cls="chart-title"))
    for k, bar in enumerate(bars):
        y = TOP + k * row
        colour = "#d62728" if bar.damaged else BAR_COLOURS[bar.kind]
        scene.add(Text(label_w - 8, y + 15, bar.label, "end", 11, href=bar.href,
                       cls=f"bar-label {bar.kind}"),
                  Rect(label_w, y + 3, scale, row - 8, "#f1f1f1"))
        if bar.value is not None:
            scene.add(Rect(label_w, y + 3, scale * bar.value, row - 8, colour,
                           cls=f"bar {bar.kind}", tip=f"{bar.label}: {bar.value:.2%}"),
                      Text(label_w + scale + 6, y + 15, f"{bar.value:.2%}", "start", 11,
                           cls="bar-value"))
        else:
            scene.add(Text(label_w + 6, y + 15, "not measured", "start", 11, "#d62728",
                           cls="bar-missing"))
        if bar.recorded is not None:
            x = label_w + scale * bar.recorded
            scene.add(Line(x, y + 1, x, y + row - 3, "#000", 2, cls="recorded",
                           tip=f"recorded at training: {bar.recorded:.2%}"))
    axis_y = TOP + row * len(bars) + 4
    for t in (0, 0.25, 0.5, 0.75, 1):
        scene.add(Text(label_w + scale * t, axis_y + 12, f"{t:.0%}", "middle", 10, "#555",
                       cls="tick"))
    return scene
