"""A small server-rendered SVG bar chart for the dashboard (no chart library, no CDN, nothing for the
Content-Security-Policy to allow: colours are SVG attributes, not styles)."""

from __future__ import annotations

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 26, 28


def bars(days: list[str], series: list[tuple[str, str, list[int]]], *, fmt=str, title: str = "") -> Markup:
    """Grouped bars: one group per day, one bar per series (label, colour, values). `fmt` turns a
    value into its label (e.g. fen → "¥12.00"). Each bar carries a <title> with its exact value."""
    top = max([v for _, _, values in series for v in values] + [0])
    scale = top if top > 0 else 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    group = plot_w / max(1, len(days))
    bar = max(2.0, (group * 0.7) / max(1, len(series)))
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>"]
    for i in range(3):  # grid lines at 0, ½ and the top
        y = TOP + plot_h * (1 - i / 2)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#dfe3ea" stroke-width="1"/>')
        parts.append(f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#6b7383">{escape(fmt(round(top * i / 2)))}</text>')
    for d, day in enumerate(days):
        x0 = LEFT + d * group + group * 0.15
        for s, (label, colour, values) in enumerate(series):
            v = values[d]
            h = plot_h * v / scale
            x = x0 + s * bar
            parts.append(f'<rect x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar - 1:.1f}" height="{h:.1f}" fill="{colour}">'
                         f"<title>{escape(day)} {escape(label)}: {escape(fmt(v))}</title></rect>")
        parts.append(f'<text x="{LEFT + d * group + group / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle" font-size="11" fill="#3b4455">{escape(day)}</text>')
    x = LEFT
    for label, colour, _ in series:  # the legend, above the plot
        parts.append(f'<rect x="{x}" y="6" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14}" y="15" font-size="11" fill="#3b4455">{escape(label)}</text>')
        x += 24 + 12 * len(label) if not label.isascii() else 24 + 7 * len(label)
    parts.append("</svg>")
    return Markup("".join(parts))
