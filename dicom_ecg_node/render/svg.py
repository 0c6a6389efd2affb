"""Draw a :class:`~.model.Page` as SVG: ``width``/``height`` in mm and a viewBox in mm, so 1 user unit = 1 mm.

Elements carry classes and ``data-`` attributes (lead, time window) so that tests and the web viewer can find
them: ``<g id="grid-minor">`` / ``<g id="grid-major">`` of ``<line>``, ``<polyline class="trace|prior|calibration|
separator|alignment">``, ``<text class="patient|header|lead-label|footer|note...">``.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

import numpy as np
import numpy.typing as npt

from dicom_ecg_node.render.model import Page, Polyline, Stroke, Text

_FONT = "Helvetica, Arial, 'Liberation Sans', sans-serif"


def _f(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _stroke_attrs(stroke: Stroke) -> str:
    attrs = f'stroke="{stroke.colour}" stroke-width="{_f(stroke.width_mm)}"'
    if stroke.dash_mm:
        attrs += f' stroke-dasharray="{" ".join(_f(d) for d in stroke.dash_mm)}"'
    return attrs


def _points(points: npt.NDArray[np.float64]) -> str:
    # Two decimals (10 µm) is far below any printer's dot; it keeps a 10 s 1 kHz trace small.
    return " ".join(f"{x:.2f},{y:.2f}" for x, y in np.round(points, 2).tolist())


def _polyline(p: Polyline) -> str:
    data = ""
    if p.lead is not None:
        data += f" data-lead={quoteattr(p.lead)}"
    if p.t0_s is not None and p.t1_s is not None:
        data += f' data-t0="{_f(p.t0_s)}" data-t1="{_f(p.t1_s)}"'
    return (f'<polyline class="{p.role}"{data} {_stroke_attrs(p.stroke)} fill="none" '
            f'points="{_points(p.points)}"/>')


def _text(t: Text) -> str:
    weight = ' font-weight="bold"' if t.bold else ""
    return (f'<text class="{t.role}" x="{_f(t.x)}" y="{_f(t.y)}" font-size="{_f(t.size_mm)}" '
            f'text-anchor="{t.anchor}" fill="{t.colour}"{weight}>{escape(t.text)}</text>')


def to_svg(page: Page) -> str:
    """Serialise ``page`` as a standalone SVG document.

    Parameters
    ----------
    page : Page
        The laid-out page.

    Returns
    -------
    str
        UTF-8 SVG text; 1 user unit = 1 mm.
    """
    w, h = _f(page.width_mm), _f(page.height_mm)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{w}mm" height="{h}mm" '
        f'viewBox="0 0 {w} {h}" data-speed-mm-s="{_f(page.speed_mm_s)}" data-gain-mm-mv="{_f(page.gain_mm_mv)}" '
        f'data-layout="{page.layout}">',
        f"<title>{escape(page.title)}</title>",
    ]
    grid = page.grid
    if grid is not None:
        out.append(f'<defs><clipPath id="grid-clip"><rect x="{_f(grid.x)}" y="{_f(grid.y)}" '
                   f'width="{_f(grid.width)}" height="{_f(grid.height)}"/></clipPath></defs>')
    out.append(f'<rect x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/>')
    if grid is not None:
        for major in (False, True):
            stroke = grid.major if major else grid.minor
            xs, ys = grid.lines(major)
            gid = "grid-major" if major else "grid-minor"
            out.append(f'<g id="{gid}" {_stroke_attrs(stroke)} shape-rendering="crispEdges">')
            y0, y1 = _f(grid.y), _f(grid.y + grid.height)
            x0, x1 = _f(grid.x), _f(grid.x + grid.width)
            out.extend(f'<line x1="{_f(x)}" y1="{y0}" x2="{_f(x)}" y2="{y1}"/>' for x in xs.tolist())
            out.extend(f'<line x1="{x0}" y1="{_f(y)}" x2="{x1}" y2="{_f(y)}"/>' for y in ys.tolist())
            out.append("</g>")
    for r in page.rects:
        fill = r.fill or "none"
        out.append(f'<rect class="{r.role}" x="{_f(r.x)}" y="{_f(r.y)}" width="{_f(r.width)}" '
                   f'height="{_f(r.height)}" fill="{fill}" {_stroke_attrs(r.stroke)}/>')
    clipped = [p for p in page.polylines if p.clip and grid is not None]
    free = [p for p in page.polylines if not (p.clip and grid is not None)]
    if clipped:
        out.append('<g clip-path="url(#grid-clip)" stroke-linejoin="round" stroke-linecap="round">')
        out.extend(_polyline(p) for p in clipped)
        out.append("</g>")
    out.extend(_polyline(p) for p in free)
    out.append(f'<g font-family="{_FONT}">')
    out.extend(_text(t) for t in page.texts)
    out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


__all__ = ["to_svg"]
