"""A drawing as data: rectangles, lines, polylines, circles and text on a canvas, written as
SVG here and drawn as PNG by `pages.png`, so the page, the report and the images show one
picture from one definition.

    Scene(width, height, title)
      ├── Rect(x, y, w, h, fill, stroke, href)      y grows downwards, as in SVG
      ├── Line(x1, y1, x2, y2, stroke, dash)
      ├── Polyline(points, stroke)                   a data series
      ├── Circle(x, y, r, fill)                      a data point
      └── Text(x, y, text, anchor, size, weight)

Every item may carry `cls` (a CSS class the tests and the stylesheet find it by) and `tip`
(a tooltip: SVG `<title>`). Text is escaped when written: names, notes and sources come from
users.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

Point = tuple[float, float]


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str = "none"
    stroke: str = "none"
    cls: str = ""
    tip: str = ""
    href: str = ""
    radius: float = 0.0


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    stroke: str = "#888"
    width: float = 1.0
    dash: bool = False
    cls: str = ""
    tip: str = ""
    arrow: bool = False


@dataclass(frozen=True)
class Polyline:
    points: tuple[Point, ...]
    stroke: str
    width: float = 2.0
    dash: bool = False
    cls: str = ""
    tip: str = ""


@dataclass(frozen=True)
class Circle:
    x: float
    y: float
    r: float
    fill: str
    cls: str = ""
    tip: str = ""


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    anchor: str = "start"  # start | middle | end
    size: float = 11.0
    fill: str = "#222"
    weight: str = "normal"
    cls: str = ""
    href: str = ""


Item = Rect | Line | Polyline | Circle | Text


@dataclass
class Scene:
    width: float
    height: float
    title: str
    cls: str = "chart"
    items: list[Item] = field(default_factory=list)

    def add(self, *items: Item) -> None:
        self.items.extend(items)


def _a(name: str, value: object) -> str:
    return f' {name}="{escape(str(value), quote=True)}"'


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _common(item: Item) -> str:
    return _a("class", item.cls) if item.cls else ""


def _tip(item: Rect | Line | Polyline | Circle) -> str:
    return f"<title>{escape(item.tip)}</title>" if item.tip else ""


def _linked(svg: str, href: str) -> str:
    return f"<a{_a('href', href)}>{svg}</a>" if href else svg


def _rect(r: Rect) -> str:
    rounded = _a("rx", _num(r.radius)) if r.radius else ""
    body = (f"<rect x=\"{_num(r.x)}\" y=\"{_num(r.y)}\" width=\"{_num(r.w)}\" "
            f"height=\"{_num(r.h)}\"{rounded}{_a('fill', r.fill)}{_a('stroke', r.stroke)}"
            f"{_common(r)}>{_tip(r)}</rect>")
    return _linked(body, r.href)


def _line(ln: Line) -> str:
    dash = ' stroke-dasharray="5 4"' if ln.dash else ""
    arrow = ' marker-end="url(#arrow)"' if ln.arrow else ""
    return (f"<line x1=\"{_num(ln.x1)}\" y1=\"{_num(ln.y1)}\" x2=\"{_num(ln.x2)}\" "
            f"y2=\"{_num(ln.y2)}\"{_a('stroke', ln.stroke)}{_a('stroke-width', ln.width)}"
            f"{dash}{arrow}{_common(ln)}>{_tip(ln)}</line>")


def _polyline(p: Polyline) -> str:
    points = " ".join(f"{_num(x)},{_num(y)}" for x, y in p.points)
    dash = ' stroke-dasharray="6 4"' if p.dash else ""
    return (f"<polyline{_a('points', points)} fill=\"none\"{_a('stroke', p.stroke)}"
            f"{_a('stroke-width', p.width)}{dash}{_common(p)}>{_tip(p)}</polyline>")


def _circle(c: Circle) -> str:
    return (f"<circle cx=\"{_num(c.x)}\" cy=\"{_num(c.y)}\" r=\"{_num(c.r)}\""
            f"{_a('fill', c.fill)}{_common(c)}>{_tip(c)}</circle>")


def _text(t: Text) -> str:
    body = (f"<text x=\"{_num(t.x)}\" y=\"{_num(t.y)}\"{_a('text-anchor', t.anchor)}"
            f"{_a('font-size', _num(t.size))}{_a('fill', t.fill)}"
            f"{_a('font-weight', t.weight)}{_common(t)}>{escape(t.text)}</text>")
    return _linked(body, t.href)


WRITERS = {Rect: _rect, Line: _line, Polyline: _polyline, Circle: _circle, Text: _text}
ARROW = ('<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
         'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
         'fill="#777"/></marker></defs>')


def to_svg(scene: Scene) -> str:
    """The scene as an inline `<svg>` element (no external reference of any kind)."""
    arrows = ARROW if any(isinstance(i, Line) and i.arrow for i in scene.items) else ""
    body = "".join(WRITERS[type(item)](item) for item in scene.items)  # type: ignore[operator]
    return (f"<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\"{_a('class', scene.cls)}"
            f" width=\"{_num(scene.width)}\" height=\"{_num(scene.height)}\""
            f" viewBox=\"0 0 {_num(scene.width)} {_num(scene.height)}\""
            f" font-family=\"sans-serif\"><title>{escape(scene.title)}</title>{arrows}{body}"
            "</svg>")
