"""A scenario's timeline as one SVG file, written by hand (no plotting dependency).

Panels share the time axis: buffer use (fill of the disk and memory tiers, memory
against its budget), event rates (created, delivered to the Core, dropped), events held
(pending in the probe, stored at the Core), then strips for the uplink state and each
alert. Marks (fault injected, restored, detected, recovered) are dashed vertical lines
across every panel, so an operator sees the failure and the recovery at a glance.
"""

from __future__ import annotations

import html
from typing import Any, Sequence

WIDTH = 1100
LEFT = 78
RIGHT = 190
PANEL_H = 130
STRIP_H = 16
GAP = 26
TOP = 76

STATE_COLOURS = {
    "connected": "#2e9d4a",
    "connecting": "#e0b000",
    "disconnected": "#e07000",
    "halted": "#c0232c",
    "down": "#555555",
    "starting": "#9aa5b1",
}
SERIES_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def _fmt(v: float) -> str:
    if abs(v) >= 1e6:
        return f"{v / 1e6:.1f}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.0f}k"
    if abs(v) >= 1e3:
        return f"{v / 1e3:.1f}k"
    if v == int(v):
        return str(int(v))
    return f"{v:.2f}"


class _Svg:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    def text(self, x: float, y: float, s: str, size: int = 11, anchor: str = "start", colour: str = "#222", weight: str = "normal") -> None:
        self.add(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{colour}" font-weight="{weight}">{html.escape(s)}</text>')

    def line(self, x1: float, y1: float, x2: float, y2: float, colour: str = "#ccc", width: float = 1, dash: str | None = None) -> None:
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.add(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}" stroke-width="{width}"{d}/>')

    def rect(self, x: float, y: float, w: float, h: float, fill: str, opacity: float = 1.0) -> None:
        self.add(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0.5):.1f}" height="{h:.1f}" fill="{fill}" fill-opacity="{opacity}"/>')

    def polyline(self, points: list[tuple[float, float]], colour: str) -> None:
        if len(points) < 2:
            if points:
                x, y = points[0]
                self.add(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="{colour}"/>')
            return
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        self.add(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="1.6"/>')


def _segments(samples: Sequence[dict[str, Any]], value_of: Any) -> list[tuple[float, float, Any]]:
    """(start, end, value) runs of equal ``value_of(sample)``."""
    out: list[tuple[float, float, Any]] = []
    for i, s in enumerate(samples):
        v = value_of(s)
        end = samples[i + 1]["t"] if i + 1 < len(samples) else s["t"]
        if out and out[-1][2] == v:
            out[-1] = (out[-1][0], end, v)
        else:
            out.append((s["t"], end, v))
    return out


def timeline_svg(title: str, samples: Sequence[dict[str, Any]], marks: Sequence[dict[str, Any]], duration: float) -> str:
    """The SVG document for one scenario run."""
    span = max(duration, samples[-1]["t"] if samples else 0.0, 1.0)
    plot_w = WIDTH - LEFT - RIGHT

    def x(t: float) -> float:
        return LEFT + plot_w * max(0.0, min(t, span)) / span

    alert_keys = sorted({a for s in samples for a in s.get("alerts", [])})
    panels: list[tuple[str, list[tuple[str, str]], float | None]] = [
        ("buffer use (fraction of quota / budget)", [("buffer_disk", "disk tier"), ("buffer_memory", "memory tier"), ("memory_budget", "memory / budget")], 1.0),
        ("events per second", [("rate_created", "created"), ("rate_delivered", "delivered (Core)"), ("rate_dropped", "dropped")], None),
        ("events held", [("pending", "pending in probe"), ("core_stored", "stored at Core"), ("dropped", "dropped (total)")], None),
    ]
    height = TOP + len(panels) * (PANEL_H + GAP) + (1 + len(alert_keys)) * (STRIP_H + 6) + 44 + 14 * ((len(marks) + 1) // 2)
    svg = _Svg()
    svg.add(f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">')
    svg.rect(0, 0, WIDTH, height, "#ffffff")
    svg.text(LEFT, 20, title, size=15, weight="bold")
    y0 = TOP
    for label, series, fixed_max in panels:
        values = [s.get(key) for s in samples for key, _ in series if s.get(key) is not None]
        top = fixed_max if fixed_max is not None else max([1.0] + [float(v) for v in values])
        if fixed_max is not None:
            top = max(top, max([0.0] + [float(v) for v in values]))
        svg.text(LEFT, y0 - 6, label, size=12, weight="bold")
        svg.rect(LEFT, y0, plot_w, PANEL_H, "#f7f7f7")
        for i in range(5):
            gy = y0 + PANEL_H - PANEL_H * i / 4
            svg.line(LEFT, gy, LEFT + plot_w, gy, "#dddddd")
            svg.text(LEFT - 6, gy + 4, _fmt(top * i / 4), size=10, anchor="end", colour="#555")
        for n, (key, name) in enumerate(series):
            colour = SERIES_COLOURS[n % len(SERIES_COLOURS)]
            run: list[tuple[float, float]] = []
            for s in samples:
                v = s.get(key)
                if v is None:  # the probe was down: break the line
                    svg.polyline(run, colour)
                    run = []
                    continue
                run.append((x(s["t"]), y0 + PANEL_H - PANEL_H * min(float(v), top) / top))
            svg.polyline(run, colour)
            ly = y0 + 14 + 16 * n
            svg.line(LEFT + plot_w + 10, ly - 4, LEFT + plot_w + 28, ly - 4, colour, 3)
            svg.text(LEFT + plot_w + 32, ly, name, size=11)
        y0 += PANEL_H + GAP
    # strips: uplink state, then one per alert
    svg.text(LEFT - 6, y0 + 12, "uplink", size=10, anchor="end")
    for start, end, state in _segments(samples, lambda s: s.get("state", "down")):
        svg.rect(x(start), y0, x(end) - x(start), STRIP_H, STATE_COLOURS.get(state, "#999"))
    legend_x = LEFT + plot_w + 10
    for i, (state, colour) in enumerate(STATE_COLOURS.items()):
        svg.rect(legend_x + (i % 2) * 90, y0 + (i // 2) * 14, 10, 10, colour)
        svg.text(legend_x + (i % 2) * 90 + 14, y0 + (i // 2) * 14 + 9, state, size=10)
    y0 += STRIP_H + 6
    for key in alert_keys:
        svg.text(LEFT - 6, y0 + 12, key[:14], size=10, anchor="end")
        svg.rect(LEFT, y0, plot_w, STRIP_H, "#f0f0f0")
        for start, end, on in _segments(samples, lambda s, k=key: k in s.get("alerts", [])):
            if on:
                svg.rect(x(start), y0, x(end) - x(start), STRIP_H, "#d62728", 0.85)
        y0 += STRIP_H + 6
    bottom = y0
    # time axis
    for i in range(11):
        t = span * i / 10
        svg.line(x(t), bottom, x(t), bottom + 4, "#555")
        svg.text(x(t), bottom + 16, f"{t:.0f} s" if span >= 10 else f"{t:.1f} s", size=10, anchor="middle", colour="#555")
    # marks across every panel, numbered; their labels listed under the time axis
    colours = {"fault": "#c0232c", "restore": "#2e9d4a", "detected": "#e07000", "recovered": "#1f77b4"}
    for i, mark in enumerate(marks):
        mx = x(mark["t"])
        colour = colours.get(mark.get("kind", ""), "#444")
        svg.line(mx, TOP - 28, mx, bottom, colour, 1.2, dash="4,3")
        svg.text(mx, TOP - 30 - 10 * (i % 2), str(i + 1), size=9, anchor="middle", colour=colour, weight="bold")
        col, row = i % 2, i // 2
        svg.text(LEFT + col * (plot_w + RIGHT) / 2, bottom + 34 + 14 * row,
                 f"{i + 1}. {mark['t']:.1f} s  {mark['label']}"[:80], size=10, colour=colour)
    svg.add("</svg>")
    return "\n".join(svg.parts)
