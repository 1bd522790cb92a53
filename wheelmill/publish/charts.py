"""Charts as inline SVG, drawn on the server.

The statistics page must read without JavaScript and load nothing from elsewhere, so each chart
is a small SVG element built with ElementTree (which escapes every label) and styled by the site's
CSS through classes. Every bar and line carries a <title>, which browsers show as a tooltip and
screen readers read.
"""

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import date, timedelta

from markupsafe import Markup

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 40  # margins around the plot area
LABEL_CHARS = 28  # longer bar labels are cut to fit the left margin
SERIES_CLASSES = 8  # s0..s7 in wheelmill.css; more series reuse the colours

Series = Sequence[tuple[date, int]]


def _svg(title: str) -> ET.Element:
    svg = ET.Element(
        "svg",
        {
            "xmlns": "http://www.w3.org/2000/svg",
            "viewBox": f"0 0 {WIDTH} {HEIGHT}",
            "class": "chart",
            "role": "img",
        },
    )
    ET.SubElement(svg, "title").text = title
    return svg


def _markup(svg: ET.Element) -> Markup:
    return Markup(ET.tostring(svg, encoding="unicode"))


def _empty(title: str) -> Markup:
    svg = _svg(title)
    text = ET.SubElement(svg, "text", {"x": str(WIDTH / 2), "y": str(HEIGHT / 2), "class": "empty"})
    text.text = "No data yet"
    return _markup(svg)


def _css_class(name: str) -> str:
    """A CSS class from a data value such as an outcome: only safe characters survive."""
    return re.sub(r"[^a-z0-9-]", "-", name.lower())


def _y_axis(svg: ET.Element, top_value: int) -> float:
    """Draw gridlines at 0, half and the maximum; return the pixels per unit."""
    plot_height = HEIGHT - TOP - BOTTOM
    scale = plot_height / max(top_value, 1)
    for value in sorted({0, top_value // 2, top_value}):
        y = HEIGHT - BOTTOM - value * scale
        ET.SubElement(
            svg,
            "line",
            {"x1": str(LEFT), "x2": str(WIDTH - RIGHT), "y1": f"{y:.1f}", "y2": f"{y:.1f}", "class": "grid"},
        )
        label = ET.SubElement(svg, "text", {"x": str(LEFT - 6), "y": f"{y + 4:.1f}", "class": "axis end"})
        label.text = str(value)
    return scale


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def _x_labels(svg: ET.Element, days: list[date], step: float) -> None:
    """Label the first, middle and last day under the plot."""
    for index in sorted({0, len(days) // 2, len(days) - 1}):
        x = LEFT + (index + 0.5) * step
        label = ET.SubElement(
            svg, "text", {"x": f"{x:.1f}", "y": str(HEIGHT - BOTTOM + 18), "class": "axis middle"}
        )
        label.text = days[index].isoformat()


def _legend(svg: ET.Element, names: Sequence[str]) -> None:
    x = LEFT
    for index, name in enumerate(names):
        ET.SubElement(
            svg,
            "rect",
            {
                "x": str(x),
                "y": str(HEIGHT - 14),
                "width": "10",
                "height": "10",
                "class": f"s{index % SERIES_CLASSES}",
            },
        )
        label = ET.SubElement(svg, "text", {"x": str(x + 14), "y": str(HEIGHT - 5), "class": "axis"})
        label.text = name
        x += 24 + 7 * len(name)


def stacked_bars_by_day(title: str, series: Mapping[str, Series]) -> Markup:
    """One bar per day, its series stacked in order (e.g. succeeded under failed)."""
    counts = {name: dict(points) for name, points in series.items()}
    all_days = [day for points in counts.values() for day in points]
    if not all_days:
        return _empty(title)
    days = _days(min(all_days), max(all_days))
    totals = [sum(points.get(day, 0) for points in counts.values()) for day in days]
    svg = _svg(title)
    scale = _y_axis(svg, max(totals))
    step = (WIDTH - LEFT - RIGHT) / len(days)
    for index, day in enumerate(days):
        base = HEIGHT - BOTTOM
        for number, (name, points) in enumerate(counts.items()):
            value = points.get(day, 0)
            if not value:
                continue
            height = value * scale
            bar = ET.SubElement(
                svg,
                "rect",
                {
                    "x": f"{LEFT + index * step + step * 0.1:.1f}",
                    "y": f"{base - height:.1f}",
                    "width": f"{max(step * 0.8, 1):.1f}",
                    "height": f"{height:.1f}",
                    "class": f"s{number % SERIES_CLASSES}",
                },
            )
            ET.SubElement(bar, "title").text = f"{day.isoformat()}: {value} {name}"
            base -= height
    _x_labels(svg, days, step)
    _legend(svg, list(counts))
    return _markup(svg)


def lines_by_day(title: str, series: Mapping[str, Series]) -> Markup:
    """One line per series over the days, e.g. builds per builder."""
    counts = {name: dict(points) for name, points in series.items()}
    all_days = [day for points in counts.values() for day in points]
    if not all_days:
        return _empty(title)
    days = _days(min(all_days), max(all_days))
    svg = _svg(title)
    scale = _y_axis(svg, max(max(points.values(), default=0) for points in counts.values()))
    step = (WIDTH - LEFT - RIGHT) / len(days)
    for number, (name, points) in enumerate(counts.items()):
        coordinates = " ".join(
            f"{LEFT + (index + 0.5) * step:.1f},{HEIGHT - BOTTOM - points.get(day, 0) * scale:.1f}"
            for index, day in enumerate(days)
        )
        line = ET.SubElement(
            svg, "polyline", {"points": coordinates, "class": f"line s{number % SERIES_CLASSES}"}
        )
        ET.SubElement(line, "title").text = f"{name}: {sum(points.values())} builds"
    _x_labels(svg, days, step)
    _legend(svg, list(counts))
    return _markup(svg)


def horizontal_bars(
    title: str, values: Mapping[str, int], by_status: bool = False, css: str = "failure"
) -> Markup:
    """One labelled bar per key, largest first; coloured by status (outcomes) or by ``css``."""
    rows = sorted(values.items(), key=lambda item: (-item[1], item[0]))
    if not rows:
        return _empty(title)
    row_height = 24
    height = TOP + row_height * len(rows) + 8
    label_width = 200
    svg = _svg(title)
    svg.set("viewBox", f"0 0 {WIDTH} {height}")
    scale = (WIDTH - label_width - RIGHT - 60) / max(rows[0][1], 1)
    for index, (name, value) in enumerate(rows):
        y = TOP + index * row_height
        label = ET.SubElement(svg, "text", {"x": str(label_width - 8), "y": str(y + 15), "class": "axis end"})
        label.text = name if len(name) <= LABEL_CHARS else f"{name[: LABEL_CHARS - 1]}…"  # full in the title
        colour = f"status-{_css_class(name)}" if by_status else css
        bar = ET.SubElement(
            svg,
            "rect",
            {
                "x": str(label_width),
                "y": str(y + 3),
                "width": f"{max(value * scale, 1):.1f}",
                "height": "16",
                "class": f"bar {colour}",
            },
        )
        ET.SubElement(bar, "title").text = f"{name}: {value}"
        count = ET.SubElement(
            svg, "text", {"x": f"{label_width + value * scale + 6:.1f}", "y": str(y + 15), "class": "axis"}
        )
        count.text = str(value)
    return _markup(svg)
