"""Server-rendered SVG charts (no JavaScript, no CDN): trends of scores and rates over months."""

from __future__ import annotations

from html import escape


def line_chart(points: list[tuple[str, float | None]], *, title: str, maximum: float = 100.0,
               unit: str = "", width: int = 640, height: int = 220) -> str:
    """A line chart of values over labelled periods; None = no data (a gap).

    The chart scales with the page: on a phone it is drawn at about half its width, so site.css
    enlarges its texts there (`.chart text`) and hides the period labels of class `minor`: every
    other one, counted from the last, so the latest period keeps its label. The margins leave
    room for the enlarged texts, and the last label, centred on the plot's right edge, fits."""
    left, right, top, bottom = 56, 36, 16, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(points), 1)
    step = plot_w / max(n - 1, 1)

    def x(i: int) -> float:
        return left + (i * step if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h - (max(0.0, min(v, maximum)) / maximum) * plot_h

    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}"'
             f' role="img" aria-labelledby="chart-title">',
             f'<title id="chart-title">{escape(title)}</title>']
    for frac in (0, 0.25, 0.5, 0.75, 1):
        gy = top + plot_h - frac * plot_h
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{gy:.1f}" y2="{gy:.1f}"'
                     ' stroke="#d9dde3" stroke-width="1"/>')
        parts.append(f'<text class="y" x="{left - 6}" y="{gy + 4:.1f}" text-anchor="end"'
                     f' font-size="12" fill="#4d5560">{maximum * frac:g}{escape(unit)}</text>')
    segments: list[list[tuple[float, float]]] = [[]]
    for i, (_label, v) in enumerate(points):
        if v is None:
            segments.append([])
        else:
            segments[-1].append((x(i), y(v)))
    for seg in segments:
        if len(seg) > 1:
            d = " ".join(f"{px:.1f},{py:.1f}" for px, py in seg)
            parts.append(f'<polyline points="{d}" fill="none" stroke="#a3141b" stroke-width="2.5"/>')
    for i, (label, v) in enumerate(points):
        if v is not None:
            parts.append(f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3.5" fill="#a3141b">'
                         f'<title>{escape(label)}: {v:g}{escape(unit)}</title></circle>')
    every = max(1, n // 12)
    labelled = [i for i in range(len(points)) if (len(points) - 1 - i) % every == 0]
    for rank, i in enumerate(labelled):
        kind = "x minor" if (len(labelled) - 1 - rank) % 2 else "x"
        parts.append(f'<text class="{kind}" x="{x(i):.1f}" y="{height - 14}"'
                     f' text-anchor="middle" font-size="12" fill="#4d5560">'
                     f'{escape(points[i][0])}</text>')
    parts.append("</svg>")
    return "".join(parts)
