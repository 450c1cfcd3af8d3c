"""Inline SVG charts for the monitoring dashboard, drawn as plain strings in Python.

Why not matplotlib: the dashboard is one self-contained HTML file (no CDN, under 2 MB) that the gateway
also serves inside a sandboxed frame whose Content-Security-Policy allows no inline ``style=``
attributes. matplotlib's SVGs carry ``style=`` on every element, embed fonts as paths and weigh
tens of kilobytes each; these charts use presentation attributes only (``fill=``, ``stroke=``), the
page's own font, and one transparent hover band per window whose ``<title>`` lists every series'
value in it — a tooltip without JavaScript. The same strings display in a notebook
(``IPython.display.SVG``).

Two kinds of chart: :func:`line_chart` (metrics over time, one line per route / model version,
an optional threshold line) and :func:`scatter_chart` (the 2-D projection of corpus and query
embeddings). Values are formatted by unit (:func:`format_value`) the same way in axes, tooltips and
the report's tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np
import pandas as pd

#: Colour-blind-safe, readable on white (Okabe–Ito, darkened where a thin line needs contrast).
PALETTE = ("#0b62a4", "#d55e00", "#009e73", "#cc79a7", "#7a5195", "#b8860b", "#56b4e9", "#5c5c5c")
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
INK, MUTED, GRID, AXIS, ALERT = "#1d2330", "#5a6275", "#e6e9ef", "#9aa2b1", "#c0392b"
#: The most lines one chart draws; the rest are named in a note under the legend.
MAX_SERIES = 8


@dataclass(frozen=True)
class Series:
    """One line: a name (route · model version), window starts and their values (None/NaN = no data)."""

    name: str
    x: Sequence[pd.Timestamp]
    y: Sequence[float | None]
    #: series of one group share a colour (a route's p50 and its dashed p95); default: the name
    group: str = ""


# --- numbers ------------------------------------------------------------------------------------

def format_value(value: float | None, unit: str = "") -> str:
    """A metric value as a person reads it: shares as percent, ms/s as durations, big counts with k/M."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    v = float(value)
    if unit == "share":
        return f"{v * 100:.1f}%" if abs(v) < 0.1 and v != 0 else f"{v * 100:.0f}%"
    if unit == "ms":
        return f"{v / 1000:.2g} s" if abs(v) >= 1000 else f"{v:.0f} ms"
    if unit == "s":
        for size, name in ((86400, "d"), (3600, "h"), (60, "min")):
            if abs(v) >= size:
                return f"{v / size:.1f}".rstrip("0").rstrip(".") + f" {name}"
        return f"{v:.0f} s"
    if unit == "USD":
        return f"${v:.2f}" if abs(v) >= 1 else f"${v:.4f}".rstrip("0").rstrip(".") if v else "$0"
    if unit in ("AUC", "score"):
        return f"{v:.2f}"
    return _compact(v)


def _compact(v: float) -> str:
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.1f}M"
    if a >= 1e4:
        return f"{v / 1e3:.0f}k"
    if a >= 1e3:
        return f"{v / 1e3:.1f}k"
    if a == int(a):
        return f"{int(v)}"
    return (f"{v:.2f}" if a < 10 else f"{v:.1f}").rstrip("0").rstrip(".")


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """About ``count`` round tick values (1, 2, 2.5, 5 × 10^k) covering [lo, hi]."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step + 1e-9) * step
    ticks, t = [], start
    while t < hi + step * 0.999:
        ticks.append(round(t, 12))
        t += step
    return ticks


_DURATION_SCALES = {"s": ((86400 * 2, 86400, "d"), (3600 * 2, 3600, "h"), (120, 60, "min"), (0, 1, "s")),
                    "ms": ((1000, 1000, "s"), (0, 1, "ms"))}


def axis_ticks(lo: float, hi: float, unit: str, count: int = 4) -> list[tuple[float, str]]:
    """Tick values and their labels; durations tick at round numbers of the unit that reads best
    (0, 6, 12, 18 h rather than 0, 6.9, 13.9, 20.8 h)."""
    if unit in _DURATION_SCALES:
        size, name = next((size, name) for limit, size, name in _DURATION_SCALES[unit] if max(abs(lo), abs(hi)) >= limit)
        return [(t * size, f"{_compact(t)} {name}") for t in nice_ticks(lo / size, hi / size, count)]
    return [(t, format_value(t, unit)) for t in nice_ticks(lo, hi, count)]


_TIME_STEPS = [pd.Timedelta(s) for s in ("1min", "5min", "15min", "30min", "1h", "2h", "3h", "6h", "12h", "1D",
                                          "2D", "7D", "14D", "30D")]


def _time_ticks(t0: pd.Timestamp, t1: pd.Timestamp, count: int = 5) -> list[pd.Timestamp]:
    span = max(t1 - t0, pd.Timedelta("1min"))
    step = next((s for s in _TIME_STEPS if span / s <= count), _TIME_STEPS[-1])
    first = t0.ceil(step) if step < pd.Timedelta("1D") else t0.ceil("1D")
    return list(pd.date_range(first, t1, freq=step))


def _time_label(t: pd.Timestamp, with_date: bool) -> str:
    return t.strftime("%d %b %H:%M") if with_date else t.strftime("%H:%M")


# --- SVG helpers ----------------------------------------------------------------------------------

def _open_svg(width: int, height: int, title: str) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{escape(title)}" font-family="{escape(FONT)}" '
            f'font-size="11" class="chart"><title>{escape(title)}</title>',
            f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
            f'<text x="10" y="18" font-size="13" font-weight="600" fill="{INK}">{escape(title)}</text>']


def _text_width(text: str, size: float = 11) -> float:
    return len(text) * size * 0.56


def _legend(names: Sequence[str], colors: Sequence[str], x0: float, y0: float, width: float,
            dashed: Sequence[bool] = ()) -> tuple[list[str], float]:
    """Legend items laid out in rows from (x0, y0); returns the elements and the height used."""
    out, x, y = [], x0, y0
    for i, (name, color) in enumerate(zip(names, colors, strict=True)):
        item_w = 22 + _text_width(name) + 14
        if x + item_w > x0 + width and x > x0:
            x, y = x0, y + 16
        dash = ' stroke-dasharray="5 3"' if i < len(dashed) and dashed[i] else ""
        out.append(f'<line x1="{x:.1f}" y1="{y - 4:.1f}" x2="{x + 16:.1f}" y2="{y - 4:.1f}" stroke="{color}" '
                   f'stroke-width="2.5"{dash}/>')
        out.append(f'<text x="{x + 21:.1f}" y="{y:.1f}" fill="{INK}">{escape(name)}</text>')
        x += item_w
    return out, (y - y0) + 16 if names else 0


def _path(points: list[tuple[float, float] | None]) -> list[str]:
    """SVG path data per run of consecutive points (a None breaks the line: a window without data)."""
    runs, cur = [], []
    for p in points:
        if p is None:
            if cur:
                runs.append(cur)
            cur = []
        else:
            cur.append(p)
    if cur:
        runs.append(cur)
    return ["M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in run) for run in runs]


def _finite(values: Sequence[float | None]) -> list[float]:
    out = []
    for v in values:
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            out.append(float(v))
    return out


# --- charts -------------------------------------------------------------------------------------

def line_chart(series: Sequence[Series], *, title: str, unit: str = "", threshold: float | None = None,
               threshold_label: str = "threshold", y_range: tuple[float, float] | None = None,
               window: pd.Timedelta | None = None, width: int = 380, height: int = 200,
               dashed: Sequence[str] = ()) -> str:
    """Metric values over time, one line per series; hover a window for every series' value in it.

    ``y_range`` is the least the y axis shows (it grows to fit the data and the threshold); shares
    start at 0. ``dashed`` names series drawn dashed (e.g. a second statistic on the same axis)."""
    series = [s for s in series if _finite(s.y)]
    hidden = len(series) - MAX_SERIES
    series = series[:MAX_SERIES]
    groups = list(dict.fromkeys(s.group or s.name for s in series))
    colors = [PALETTE[groups.index(s.group or s.name) % len(PALETTE)] for s in series]
    legend_w = width - 20
    legend, legend_h = _legend([s.name for s in series], colors, 14, 0, legend_w,
                               [s.name in dashed for s in series])
    top, left, right = 30, 46, 14
    bottom = 22 + legend_h + (14 if hidden > 0 else 0)
    total_h = height + legend_h + (14 if hidden > 0 else 0)
    out = _open_svg(width, total_h, title)
    plot_h = total_h - top - bottom
    plot_w = width - left - right
    if not series:
        out.append(f'<text x="{width / 2:.0f}" y="{top + plot_h / 2:.0f}" text-anchor="middle" fill="{MUTED}">'
                   "no data in these windows</text></svg>")
        return "".join(out)

    xs = sorted({pd.Timestamp(t) for s in series for t in s.x})
    step = window or (min(b - a for a, b in zip(xs, xs[1:], strict=False)) if len(xs) > 1 else pd.Timedelta("1h"))
    half, gap = step / 2, step * 1.5
    t0, t1 = xs[0] - half * 0.2, xs[-1] + half * 0.2
    if len(xs) == 1:
        t0, t1 = xs[0] - half, xs[0] + half
    span = (t1 - t0).total_seconds() or 1.0

    def sx(t: pd.Timestamp) -> float:
        return left + (pd.Timestamp(t) - t0).total_seconds() / span * plot_w

    values = [v for s in series for v in _finite(s.y)]
    lo, hi = min(values), max(values)
    # a threshold far above the data would flatten it: then it is named at the top, not drawn
    off_chart = threshold is not None and hi > 0 and threshold > 2.5 * hi and (y_range is None or threshold > y_range[1])
    if threshold is not None and not off_chart:
        lo, hi = min(lo, threshold), max(hi, threshold)
    if y_range is not None:
        lo, hi = min(lo, y_range[0]), max(hi, y_range[1])
    elif lo >= 0:
        lo = 0.0
    if unit == "share":
        hi = min(max(hi, 0.05), 1.0) if hi <= 1 else hi
    ticks = axis_ticks(lo, hi if hi > lo else lo + 1, unit)
    y_lo, y_hi = ticks[0][0], ticks[-1][0]

    def sy(v: float) -> float:
        return top + plot_h - (v - y_lo) / ((y_hi - y_lo) or 1.0) * plot_h

    # grid and axes
    for t, label in ticks:
        y = sy(t)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(f'<text x="{left - 5}" y="{y + 3.5:.1f}" text-anchor="end" fill="{MUTED}">'
                   f'{escape(label)}</text>')
    out.append(f'<line x1="{left}" y1="{top + plot_h:.1f}" x2="{width - right}" y2="{top + plot_h:.1f}" '
               f'stroke="{AXIS}"/>')
    with_date = (xs[-1] - xs[0]) >= pd.Timedelta("20h") or xs[0].date() != xs[-1].date()
    tick_times = _time_ticks(t0, t1, count=max(2, int(plot_w // (100 if with_date else 70))))
    for t in tick_times:
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" y1="{top + plot_h:.1f}" x2="{x:.1f}" y2="{top + plot_h + 4:.1f}" '
                   f'stroke="{AXIS}"/>')
        out.append(f'<text x="{x:.1f}" y="{top + plot_h + 15:.1f}" text-anchor="middle" fill="{MUTED}">'
                   f'{escape(_time_label(t, with_date))}</text>')

    if off_chart:
        out.append(f'<text x="{width - right - 2}" y="{top - 3}" text-anchor="end" fill="{ALERT}" font-size="10">'
                   f'\u2191 {escape(threshold_label)} {escape(format_value(threshold, unit))}</text>')
    elif threshold is not None:
        y = sy(threshold)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="{ALERT}" '
                   'stroke-width="1.2" stroke-dasharray="6 4"/>')
        label = f"{threshold_label} {format_value(threshold, unit)}"
        out.append(f'<text x="{width - right - 2}" y="{y - 4:.1f}" text-anchor="end" fill="{ALERT}" '
                   f'font-size="10">{escape(label)}</text>')

    # lines; a point stands alone (neighbours without data) or is the newest: draw a dot
    by_series = []
    for s, color in zip(series, colors, strict=True):
        lookup = {pd.Timestamp(t): (None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v))
                  for t, v in zip(s.x, s.y, strict=True)}
        by_series.append(lookup)
        pts: list[tuple[float, float] | None] = []
        for i, t in enumerate(xs):
            if i and xs[i] - xs[i - 1] > gap:
                pts.append(None)  # windows without data (the job did not run): a break, not a bridge
            pts.append(None if lookup.get(t) is None else (sx(t), sy(lookup[t])))
        dash = ' stroke-dasharray="5 3"' if s.name in dashed else ""
        for d in _path(pts):
            out.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="1.8" stroke-linejoin="round" '
                       f'stroke-linecap="round"{dash}/>')
        last = max((i for i, p in enumerate(pts) if p is not None), default=None)
        for i, p in enumerate(pts):
            if p is None:
                continue
            alone = (i == 0 or pts[i - 1] is None) and (i == len(pts) - 1 or pts[i + 1] is None)
            if alone or i == last:
                out.append(f'<circle cx="{p[0]:.1f}" cy="{p[1]:.1f}" r="2.6" fill="{color}"/>')

    # hover bands: one per window, its tooltip lists every series' value there
    for i, t in enumerate(xs):
        xa = left if i == 0 else (sx(xs[i - 1]) + sx(t)) / 2
        xb = width - right if i == len(xs) - 1 else (sx(t) + sx(xs[i + 1])) / 2
        lines = [t.strftime("%Y-%m-%d %H:%M UTC")]
        lines += [f"{s.name}: {format_value(lk.get(t), unit)}" for s, lk in zip(series, by_series, strict=True)]
        out.append(f'<rect x="{xa:.1f}" y="{top}" width="{max(xb - xa, 0.5):.1f}" height="{plot_h:.1f}" '
                   f'fill="#000" fill-opacity="0"><title>{escape(chr(10).join(lines))}</title></rect>')

    legend_y = top + plot_h + 32
    out.append(f'<g transform="translate(0 {legend_y:.1f})">{"".join(legend)}</g>')
    if hidden > 0:
        out.append(f'<text x="14" y="{legend_y + legend_h + 2:.1f}" fill="{MUTED}" font-size="10">'
                   f'+{hidden} more series not drawn</text>')
    out.append("</svg>")
    return "".join(out)


def scatter_chart(groups: Sequence[tuple[str, np.ndarray, Sequence[str] | None]], *, title: str,
                  width: int = 1200, height: int = 460) -> str:
    """2-D points in groups (name, n×2 array, optional hover label per point), drawn in order (the
    later groups on top). Axes carry no units: only distances between points mean something."""
    colors = ("#9aa2b1", "#d55e00", "#0b62a4", "#009e73")
    top, left, right, bottom = 30, 14, 14, 34
    out = _open_svg(width, height, title)
    plot_w, plot_h = width - left - right, height - top - bottom
    arrays = [np.asarray(xy, dtype=float).reshape(-1, 2) for _, xy, _ in groups]
    stacked = np.vstack([a for a in arrays if len(a)]) if any(len(a) for a in arrays) else np.zeros((0, 2))
    stacked = stacked[np.isfinite(stacked).all(axis=1)]
    out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fbfcfd" stroke="{GRID}"/>')
    if not len(stacked):
        out.append(f'<text x="{width / 2:.0f}" y="{top + plot_h / 2:.0f}" text-anchor="middle" fill="{MUTED}">'
                   "no embeddings to project</text></svg>")
        return "".join(out)
    lo, hi = stacked.min(axis=0), stacked.max(axis=0)
    pad = (hi - lo) * 0.04 + 1e-9
    lo, hi = lo - pad, hi + pad

    def sxy(p: np.ndarray) -> tuple[float, float]:
        return (left + (p[0] - lo[0]) / (hi[0] - lo[0]) * plot_w, top + plot_h - (p[1] - lo[1]) / (hi[1] - lo[1]) * plot_h)

    names, used = [], []
    for gi, ((name, _, labels), xy) in enumerate(zip(groups, arrays, strict=True)):
        color = colors[gi % len(colors)]
        names.append(f"{name} ({len(xy)})")
        used.append(color)
        first = gi == 0
        for j, p in enumerate(xy):
            if not np.isfinite(p).all():
                continue
            x, y = sxy(p)
            tip = f"<title>{escape(labels[j][:160])}</title>" if labels is not None and j < len(labels) else ""
            if first:  # the background cloud: small, light, no outline
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="{color}" fill-opacity="0.5">{tip}'
                           "</circle>" if tip else
                           f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="{color}" fill-opacity="0.5"/>')
            else:
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.6" fill="{color}" fill-opacity="0.85" '
                           f'stroke="#ffffff" stroke-width="0.8">{tip}</circle>')
    x = left
    for name, color in zip(names, used, strict=True):
        out.append(f'<circle cx="{x + 5}" cy="{height - 13}" r="4" fill="{color}"/>')
        out.append(f'<text x="{x + 14}" y="{height - 9}" fill="{INK}">{escape(name)}</text>')
        x += 30 + _text_width(name)
    out.append("</svg>")
    return "".join(out)


__all__ = ["MAX_SERIES", "PALETTE", "Series", "axis_ticks", "format_value", "line_chart", "nice_ticks", "scatter_chart"]
