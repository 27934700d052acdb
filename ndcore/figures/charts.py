"""Hand-built SVG charts (no plotting dependency). Every text from data goes through escape()."""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

from markupsafe import Markup, escape

# Fixed colors for Broden's categories (the paper's figure uses one color per category);
# other category names cycle through FALLBACK_COLORS.
CATEGORY_COLORS = {
    "object": "#4e79a7", "scene": "#f28e2b", "part": "#59a14f", "material": "#b07aa1",
    "texture": "#e15759", "color": "#edc948",
}
FALLBACK_COLORS = ("#76b7b2", "#ff9da7", "#9c755f", "#bab0ac", "#8cd17d", "#86bcb6")


def category_colors(categories: Sequence[str]) -> Dict[str, str]:
    colors, extra = {}, 0
    for cat in categories:
        if cat in CATEGORY_COLORS:
            colors[cat] = CATEGORY_COLORS[cat]
        else:
            colors[cat] = FALLBACK_COLORS[extra % len(FALLBACK_COLORS)]
            extra += 1
    return colors


FONT = 'font-family="sans-serif" font-size="11"'


SVG_NS = "http://www.w3.org/2000/svg"


def standalone(svg: Markup) -> str:
    """An inline chart as an .svg file's text (a file needs the namespace; HTML does not, and
    the report pages stay free of any http:// reference)."""
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + str(svg).replace(
        "<svg ", f'<svg xmlns="{SVG_NS}" ', 1) + "\n"


def _svg(width: float, height: float, body: List[str], title: str) -> Markup:
    return Markup(
        f'<svg width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )


def _nice_max(value: float) -> int:
    """A round axis maximum >= value (1, 2, 5, 10, 20, 50, ...)."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if step * m >= value:
                return step * m
        step *= 10


def _y_axis(x0: float, top: float, plot_h: float, vmax: int, width: float) -> List[str]:
    body = []
    ticks = 5 if vmax >= 5 else vmax
    for t in range(ticks + 1):
        v = vmax * t / ticks
        y = top + plot_h - plot_h * t / ticks
        body.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{width - 10}" y2="{y:.1f}" '
                    f'stroke="#ddd" stroke-width="1"/>')
        body.append(f'<text x="{x0 - 4}" y="{y + 4:.1f}" text-anchor="end" {FONT}>{v:g}</text>')
    return body


def units_per_concept(groups: Sequence[Tuple[str, Sequence[Tuple[str, int]]]],
                      title: str = "detector units per concept") -> Markup:
    """Bars of detector units per concept, grouped by category; empty Markup when no bar.

    ``groups``: (category, [(label, units), ...]) in display order.
    """
    colors = category_colors([c for c, _ in groups])  # the same colors as the unit cards
    groups = [(cat, list(bars)) for cat, bars in groups if bars]
    if not groups:
        return Markup("")
    bar_w, gap, group_gap = 16, 4, 18
    # a group is at least as wide as its category caption, so captions never overlap
    spans = [max(len(bars) * (bar_w + gap), 7 * len(cat) + 4) for cat, bars in groups]
    longest = max(len(label) for _, bars in groups for label, _ in bars)
    left, top, label_h = 36, 28, min(170, 16 + int(5.5 * longest))  # room for rotated labels
    plot_h = 150
    width = left + gap + sum(spans) + group_gap * (len(groups) - 1) + 20
    height = top + plot_h + label_h
    vmax = _nice_max(max(n for _, bars in groups for _, n in bars))
    body = _y_axis(left, top, plot_h, vmax, width)
    x0 = left + gap
    for (cat, bars), span in zip(groups, spans):
        x = x0
        for label, n in bars:
            h = plot_h * n / vmax
            y = top + plot_h - h
            body.append(f'<rect x="{x}" y="{y:.1f}" width="{bar_w}" height="{h:.1f}" '
                        f'fill="{colors[cat]}"><title>{escape(label)} ({escape(cat)}): '
                        f'{n} unit{"s" if n != 1 else ""}</title></rect>')
            lx, ly = x + bar_w / 2 + 4, top + plot_h + 6
            body.append(f'<text x="{lx:.1f}" y="{ly}" transform="rotate(-60 {lx:.1f} {ly})" '
                        f'text-anchor="end" {FONT}>{escape(label)}</text>')
            x += bar_w + gap
        body.append(f'<text x="{x0}" y="{top - 10}" {FONT} font-weight="bold" '
                    f'fill="{colors[cat]}">{escape(cat)}</text>')
        x0 += span + group_gap
    return _svg(width, height, body, title)


def stacked_bars(bars: Sequence[Tuple[str, Dict[str, int]]], categories: Sequence[str],
                 title: str, groups: Sequence[Tuple[str, int]] = ()) -> Markup:
    """One bar per x label, stacked by category, with a legend (the paper's figure of unique
    detectors per category for each layer). ``groups``: optional (name, bar count) captions
    spanning consecutive bars (the runs of a comparison)."""
    colors = category_colors(categories)
    bar_w, gap = 34, 14
    longest = max([len(label) for label, _ in bars] + [4])
    left, top, label_h = 40, 52 if groups else 30, min(170, 16 + int(4.5 * longest))
    plot_h = 200
    legend_w = 110
    # x of each bar; a group of bars is at least as wide as its caption
    groups = list(groups) or [("", len(bars))]
    xs, spans, x = [], [], left + gap
    for name, count in groups:
        span = max(count * (bar_w + gap), 6.5 * len(name) + gap)
        xs += [x + (span - count * (bar_w + gap)) / 2 + i * (bar_w + gap) for i in range(count)]
        spans.append((x, span - gap, name))
        x += span
    width = x + gap + legend_w
    height = top + plot_h + label_h
    totals = [sum(v.get(c, 0) for c in categories) for _, v in bars]
    vmax = _nice_max(max(totals + [1]))
    body = [f'<rect width="{width:.0f}" height="{height:.0f}" fill="#fff"/>']
    body += _y_axis(left, top, plot_h, vmax, width - legend_w)
    body.append(f'<text x="{left}" y="14" {FONT} font-weight="bold">{escape(title)}</text>')
    for (label, values), x, total in zip(bars, xs, totals):
        y = top + plot_h
        for cat in categories:
            n = values.get(cat, 0)
            if n <= 0:
                continue
            h = plot_h * n / vmax
            y -= h
            body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w}" height="{h:.1f}" '
                        f'fill="{colors[cat]}"><title>{escape(label)}: {n} {escape(cat)}'
                        f'</title></rect>')
        body.append(f'<text x="{x + bar_w / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle" '
                    f'{FONT}>{total}</text>')
        lx, ly = x + bar_w / 2 + 4, top + plot_h + 8
        body.append(f'<text x="{lx:.1f}" y="{ly}" transform="rotate(-45 {lx:.1f} {ly})" '
                    f'text-anchor="end" {FONT}>{escape(label)}</text>')
    for gx, span, name in spans:
        if name:
            body.append(f'<line x1="{gx:.1f}" y1="{top - 14}" x2="{gx + span:.1f}" '
                        f'y2="{top - 14}" stroke="#888"/><text x="{gx + span / 2:.1f}" '
                        f'y="{top - 18}" text-anchor="middle" {FONT}>{escape(name)}</text>')
    ly, lx = top, width - legend_w + 10
    for cat in categories:
        body.append(f'<rect x="{lx:.1f}" y="{ly}" width="12" height="12" fill="{colors[cat]}"/>'
                    f'<text x="{lx + 17:.1f}" y="{ly + 10}" {FONT}>{escape(cat)}</text>')
        ly += 18
    return _svg(width, height, body, title)


def rotation_curves(curves: Sequence[Tuple[str, Sequence[Tuple[float, int, Dict[str, int]]]]],
                    categories: Sequence[str],
                    title: str = "random rotation: detectors against alpha") -> Markup:
    """The paper's rotation figure: for each rotated layer, unique detectors (black) and
    detectors per category (the category colours) against alpha in [0, 1]; one panel per
    layer. ``curves``: (layer, [(alpha, unique detectors, {category: detectors}), ...])."""
    curves = [(name, sorted(points)) for name, points in curves if points]
    if not curves:
        return Markup("")
    colors = category_colors(categories)
    panel_w, panel_h, left, top, gap, legend_w = 260, 170, 40, 44, 30, 130
    width = left + len(curves) * (panel_w + gap) + legend_w
    height = top + panel_h + 40
    body = [f'<rect width="{width:.0f}" height="{height:.0f}" fill="#fff"/>',
            f'<text x="{left}" y="14" {FONT} font-weight="bold">{escape(title)}</text>']
    for k, (name, points) in enumerate(curves):
        x0 = left + k * (panel_w + gap)
        vmax = _nice_max(max([u for _, u, _ in points] +
                             [v for _, _, per in points for v in per.values()] + [1]))
        body += _y_axis(x0, top, panel_h, vmax, x0 + panel_w + 10)
        body.append(f'<text x="{x0 + panel_w / 2:.1f}" y="{top - 10}" text-anchor="middle" '
                    f'{FONT} font-weight="bold">{escape(name)}</text>')
        for t in (0, 0.25, 0.5, 0.75, 1):
            x = x0 + panel_w * t
            body.append(f'<text x="{x:.1f}" y="{top + panel_h + 14}" text-anchor="middle" '
                        f'{FONT}>{t:g}</text>')
        body.append(f'<text x="{x0 + panel_w / 2:.1f}" y="{top + panel_h + 30}" '
                    f'text-anchor="middle" {FONT}>alpha</text>')

        def line(values, color, label, dash=""):
            xy = [(x0 + panel_w * a, top + panel_h - panel_h * v / vmax)
                  for a, v in zip([a for a, _, _ in points], values)]
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
            body.append(f'<polyline points="{path}" fill="none" stroke="{color}" '
                        f'stroke-width="2"{dash}><title>{escape(name)}: {escape(label)}'
                        f'</title></polyline>')
            for (x, y), (a, v) in zip(xy, zip([a for a, _, _ in points], values)):
                body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}">'
                            f'<title>{escape(name)} alpha {a:g}: {v} {escape(label)}</title>'
                            f'</circle>')

        for cat in categories:
            line([per.get(cat, 0) for _, _, per in points], colors[cat], f"{cat} detectors")
        line([u for _, u, _ in points], "#000", "unique detectors", ' stroke-dasharray="5,3"')
    lx, ly = width - legend_w + 10, top
    for label, color in [("unique detectors", "#000")] + \
            [(f"{c} detectors", colors[c]) for c in categories]:
        body.append(f'<rect x="{lx:.1f}" y="{ly}" width="12" height="3" fill="{color}"/>'
                    f'<text x="{lx + 17:.1f}" y="{ly + 5}" {FONT}>{escape(label)}</text>')
        ly += 16
    return _svg(width, height, body, title)


def evenly_spaced(values: Sequence[float]) -> bool:
    """Whether x values (sorted, distinct) are better drawn at equal spacing than to scale: when
    to scale the closest two would sit under a quarter of the mean gap apart, as a log-ish spread
    of iterations does (0, 10, 100, 1000 would put 0 and 10 on top of each other)."""
    if len(values) < 3:
        return False
    gaps = [b - a for a, b in zip(values, values[1:])]
    return min(gaps) < (values[-1] - values[0]) / len(gaps) / 4


def x_text(value: float) -> str:
    """An x value in full: iteration 1500000, not 1.5e+06."""
    return str(int(value)) if value == int(value) else f"{value:g}"


def x_tick_label(value: float) -> str:
    """A short tick label: 100 -> '100', 5000 -> '5k', 1024 -> '1024' (exact while short),
    65536 -> '65.5k', 1500000 -> '1.5M', 0.5 -> '0.5'."""
    if value == int(value) and abs(value) >= 1000:
        for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= scale:
                short = f"{value / scale:.3g}{suffix}"
                exact = float(f"{value / scale:.3g}") * scale == value
                return short if exact or abs(value) >= 10_000 else x_text(value)
    return x_text(value)


def series_panels(members: Sequence[Tuple[str, float, Dict[str, Dict[str, int]]]],
                  categories: Sequence[str], x_label: str,
                  title: str = "") -> Markup:
    """The paper's figure of unique detectors per category against training iteration: one
    panel per layer, one line per category (the category colours) over the members that have
    the layer, ticks at the members' x values. ``members``: (name, x,
    {layer: {category: unique detectors}}). A log-ish spread of x values is drawn evenly spaced
    (:func:`evenly_spaced`), which the axis title says. Empty Markup when no member has a layer.
    """
    members = [m for m in members if m[2]]
    if not members:
        return Markup("")
    title = title or f"unique detectors per category against {x_label}"
    colors = category_colors(categories)
    layers: List[str] = []
    for _, _, per_layer in members:  # layers in first-seen order: members may differ
        layers += [layer for layer in per_layer if layer not in layers]
    values = sorted({x for _, x, _ in members})
    even = evenly_spaced(values)

    def at(x: float) -> float:  # the place of x along a panel, 0..1
        if len(values) == 1:
            return 0.5
        if even:
            return values.index(x) / (len(values) - 1)
        return (x - values[0]) / (values[-1] - values[0])

    axis_title = f"{x_label} (evenly spaced, not to scale)" if even else x_label
    panel_w, panel_h, left, top, gap, legend_w, cols = 260, 170, 40, 44, 36, 110, 3
    ticks = _spaced_ticks([(at(v), x_tick_label(v)) for v in values], panel_w)
    members = sorted(members, key=lambda m: m[1])  # lines run left to right
    cols = min(cols, len(layers))
    rows = -(-len(layers) // cols)
    row_h = panel_h + 78  # the panel, its ticks, its axis title and the next panel's caption
    width = left + cols * (panel_w + gap) + legend_w
    height = top + rows * row_h - 30
    body = [f'<rect width="{width:.0f}" height="{height:.0f}" fill="#fff"/>',
            f'<text x="{left}" y="14" {FONT} font-weight="bold">{escape(title)}</text>']
    for k, layer in enumerate(layers):
        x0, y0 = left + (k % cols) * (panel_w + gap), top + (k // cols) * row_h
        points = [(name, x, per_layer[layer]) for name, x, per_layer in members
                  if layer in per_layer]
        vmax = _nice_max(max([n for _, _, per in points for n in per.values()] + [1]))
        body.append(f'<g class="panel" data-layer="{escape(layer)}">')
        body += _y_axis(x0, y0, panel_h, vmax, x0 + panel_w + 10)
        body.append(f'<text x="{x0 + panel_w / 2:.1f}" y="{y0 - 10}" text-anchor="middle" '
                    f'{FONT} font-weight="bold">{escape(layer)}</text>')
        base = y0 + panel_h
        for t, label in ticks:
            x = x0 + panel_w * t
            body.append(f'<line x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base + 4}" '
                        f'stroke="#888"/>')
            if label:
                body.append(f'<text x="{x:.1f}" y="{base + 15}" text-anchor="middle" '
                            f'{FONT}>{escape(label)}</text>')
        body.append(f'<text x="{x0 + panel_w / 2:.1f}" y="{base + 31}" text-anchor="middle" '
                    f'{FONT}>{escape(axis_title)}</text>')
        for cat in categories:
            xy = [(x0 + panel_w * at(x), base - panel_h * per.get(cat, 0) / vmax)
                  for _, x, per in points]
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in xy)
            body.append(f'<polyline points="{path}" fill="none" stroke="{colors[cat]}" '
                        f'stroke-width="2"><title>{escape(layer)}: unique {escape(cat)} '
                        f'detectors</title></polyline>')
            for (px, py), (name, x, per) in zip(xy, points):
                body.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{colors[cat]}">'
                            f'<title>{escape(name)} ({escape(x_label)} {x_text(x)}), '
                            f'{escape(layer)}: {per.get(cat, 0)} unique {escape(cat)} '
                            f'detectors</title></circle>')
        body.append("</g>")
    lx, ly = width - legend_w + 10, top
    for cat in categories:
        body.append(f'<rect x="{lx:.1f}" y="{ly}" width="12" height="3" fill="{colors[cat]}"/>'
                    f'<text x="{lx + 17:.1f}" y="{ly + 5}" {FONT}>{escape(cat)}</text>')
        ly += 16
    return _svg(width, height, body, title)


def _spaced_ticks(ticks: Sequence[Tuple[float, str]], span: float) -> List[Tuple[float, str]]:
    """Tick labels that do not overlap along ``span`` pixels: the first and the last always,
    those between where they fit (the others keep their tick mark, with an empty label)."""
    def edges(t: float, label: str) -> Tuple[float, float]:
        half = 3.3 * len(label) + 3  # about half the label's width at font-size 11
        return span * t - half, span * t + half

    shown: List[int] = []
    for i, (t, label) in enumerate(ticks):
        if not shown or edges(t, label)[0] >= edges(*ticks[shown[-1]])[1]:
            shown.append(i)
    last = len(ticks) - 1
    if shown[-1] != last:  # make room for the last label, dropping the ones before it
        while len(shown) > 1 and edges(*ticks[last])[0] < edges(*ticks[shown[-1]])[1]:
            shown.pop()
        shown.append(last)
    return [(t, label if i in shown else "") for i, (t, label) in enumerate(ticks)]


def iou_curve(edges, ious, label: str, width: int = 190, height: int = 86) -> Markup:
    """IoU against the threshold (a unit, one concept), with the best threshold marked."""
    import numpy as np

    edges, ious = np.asarray(edges, float), np.asarray(ious, float)
    best = int(np.argmax(ious))
    left, right, top, bottom = 30, 6, 8, 18
    lo, hi = float(edges[0]), float(edges[-1])
    span = hi - lo if hi > lo else 1.0
    y_max = max(float(ious.max()), 1e-9)

    def x(v):
        return left + (width - left - right) * (v - lo) / span

    def y(v):
        return top + (height - top - bottom) * (1 - v / y_max)

    points = " ".join(f"{x(e):.1f},{y(v):.1f}" for e, v in zip(edges, ious))
    body = [
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" '
        f'stroke="#999"/>',
        f'<polyline points="{points}" fill="none" stroke="#2c6fbb" stroke-width="1.5"/>',
        f'<circle cx="{x(edges[best]):.1f}" cy="{y(ious[best]):.1f}" r="3" fill="#c0392b"/>',
        f'<text x="{left - 3}" y="{top + 8}" text-anchor="end" {FONT}>{y_max:.2f}</text>',
        f'<text x="{left - 3}" y="{height - bottom}" text-anchor="end" {FONT}>0</text>',
        f'<text x="{left}" y="{height - 4}" {FONT}>threshold {lo:.2g}..{hi:.2g}; best '
        f'{edges[best]:.3g}</text>',
    ]
    return _svg(width, height, body, f"IoU with {label} against the threshold")


def removal_curve_svg(curve: Dict, width: int = 420, height: int = 260) -> str:
    """The concept's share of pixels against the number of its top units ablated."""
    points = [(0, curve["before"])] + [(p["k"], p["fraction"]) for p in curve["points"]]
    left, right, top, bottom = 56, 16, 28, 40
    x_max = max(k for k, _ in points) or 1
    y_max = max(v for _, v in points) or 1.0

    def xy(k, v):
        return (left + (width - left - right) * k / x_max,
                top + (height - top - bottom) * (1 - v / y_max))

    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}"
                    for i, (x, y) in enumerate(xy(k, v) for k, v in points))
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"/>'
                   for x, y in (xy(k, v) for k, v in points))
    ticks = "".join(
        f'<text x="{xy(k, 0)[0]:.1f}" y="{height - bottom + 16}" text-anchor="middle">{k}</text>'
        for k, _ in points)
    title = escape(f"Removing {curve['concept']!r}: top units of {curve['layer']} ablated")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">'
        f'<text x="{left}" y="16" font-size="12">{title}</text>'
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" '
        f'stroke="#888"/><line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" '
        f'stroke="#888"/>{ticks}'
        f'<text x="{(left + width - right) / 2}" y="{height - 6}" text-anchor="middle">'
        f'units ablated</text>'
        f'<text x="12" y="{(top + height - bottom) / 2}" transform="rotate(-90 12 '
        f'{(top + height - bottom) / 2})" text-anchor="middle">share of pixels</text>'
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{y_max:.3f}</text>'
        f'<text x="{left - 4}" y="{height - bottom}" text-anchor="end">0</text>'
        f'<path d="{path}" fill="none" stroke="#c0392b" stroke-width="2"/>'
        f'<g fill="#c0392b">{dots}</g></svg>')
