"""Draw :class:`~.model.Page` objects as a vector PDF with reportlab: one PDF page per layout page.

The page's user space is scaled to millimetres (1 mm = 72 / 25.4 pt) and y is flipped by hand (the model's y runs
down, PDF's up), so every coordinate of the model lands unchanged. Waveforms, grid and pulses are stroked paths
(``m``/``l``/``S`` operators); nothing is rasterised. Text uses the standard Helvetica fonts, which need no
embedding and cover Latin-1: characters outside it print as ``?`` (a name in another script still shows its
patient ID next to it).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from dicom_ecg_node import __version__
from dicom_ecg_node.render.model import PT_PER_MM, Page, Polyline, RenderError, Stroke, Text

if TYPE_CHECKING:
    from reportlab.pdfgen.canvas import Canvas


def _rgb(colour: str) -> tuple[float, float, float]:
    c = colour.lstrip("#")
    return int(c[0:2], 16) / 255.0, int(c[2:4], 16) / 255.0, int(c[4:6], 16) / 255.0


def _safe_text(text: str) -> str:
    # Helvetica is a WinAnsi font; anything it cannot encode would print as a black box or break encoding.
    return text.encode("cp1252", errors="replace").decode("cp1252")


def _path_ops(points: npt.NDArray[np.float64], height: float) -> str:
    """PDF path operators for one polyline in the mm user space (y flipped)."""
    xy = np.round(np.column_stack((points[:, 0], height - points[:, 1])), 3)
    coords = [f"{x:.3f} {y:.3f}" for x, y in xy.tolist()]
    return coords[0] + " m\n" + " l\n".join(coords[1:]) + (" l\n" if len(coords) > 1 else "")


class _Writer:
    """Draws one page on a reportlab canvas already scaled to mm."""

    def __init__(self, canvas: Canvas, page: Page) -> None:
        self.c = canvas
        self.page = page
        self.h = page.height_mm

    def stroke(self, stroke: Stroke) -> None:
        c = self.c
        c.setStrokeColorRGB(*_rgb(stroke.colour))
        c.setLineWidth(stroke.width_mm)
        c.setDash(list(stroke.dash_mm) if stroke.dash_mm else [])

    def lines(self, stroke: Stroke, segments: list[tuple[float, float, float, float]]) -> None:
        if not segments:
            return
        self.stroke(stroke)
        ops = "".join(f"{x0:.3f} {self.h - y0:.3f} m {x1:.3f} {self.h - y1:.3f} l\n"
                      for x0, y0, x1, y1 in segments)
        # One literal path per line set: thousands of grid and trace segments as reportlab path objects cost
        # ten times more; the operators are the same m/l/S ones a PDFPathObject would emit.
        self.c.addLiteral(ops + "S")

    def polylines(self, polys: Sequence[Polyline]) -> None:
        current: Stroke | None = None
        chunks: list[str] = []
        for p in polys:
            if p.points.shape[0] < 1:
                continue
            if p.stroke != current:
                if chunks:
                    self.c.addLiteral("".join(chunks) + "S")
                    chunks = []
                self.stroke(p.stroke)
                current = p.stroke
            pts = p.points if p.points.shape[0] > 1 else np.vstack([p.points, p.points])
            chunks.append(_path_ops(pts, self.h))
        if chunks:
            self.c.addLiteral("".join(chunks) + "S")

    def text(self, t: Text) -> None:
        c = self.c
        c.setFillColorRGB(*_rgb(t.colour))
        c.setFont("Helvetica-Bold" if t.bold else "Helvetica", t.size_mm)
        y = self.h - t.y
        text = _safe_text(t.text)
        if t.anchor == "middle":
            c.drawCentredString(t.x, y, text)
        elif t.anchor == "end":
            c.drawRightString(t.x, y, text)
        else:
            c.drawString(t.x, y, text)

    def draw(self) -> None:
        c, page, h = self.c, self.page, self.h
        c.saveState()
        c.scale(PT_PER_MM, PT_PER_MM)
        c.setLineCap(1)
        c.setLineJoin(1)
        grid = page.grid
        if grid is not None:
            for major in (False, True):
                xs, ys = grid.lines(major)
                segs = [(x, grid.y, x, grid.y + grid.height) for x in xs.tolist()]
                segs += [(grid.x, y, grid.x + grid.width, y) for y in ys.tolist()]
                self.lines(grid.major if major else grid.minor, segs)
        for r in page.rects:
            self.stroke(r.stroke)
            if r.fill:
                c.setFillColorRGB(*_rgb(r.fill))
            c.rect(r.x, h - r.y - r.height, r.width, r.height, stroke=1, fill=1 if r.fill else 0)
        clipped = [p for p in page.polylines if p.clip and grid is not None]
        free = [p for p in page.polylines if not (p.clip and grid is not None)]
        if clipped and grid is not None:
            c.saveState()
            clip = c.beginPath()
            clip.rect(grid.x, h - grid.y - grid.height, grid.width, grid.height)
            c.clipPath(clip, stroke=0, fill=0)
            self.polylines(clipped)
            c.restoreState()
        self.polylines(free)
        for t in page.texts:
            self.text(t)
        c.restoreState()


def to_pdf(pages: Page | Sequence[Page], *, compress: bool = True) -> bytes:
    """Draw one or more pages as a vector PDF document.

    Parameters
    ----------
    pages : Page or sequence of Page
        One PDF page each, in order, each at its own paper size.
    compress : bool
        Compress page content streams (``False`` leaves the operators readable, for tests and debugging).

    Returns
    -------
    bytes
        The PDF file. Output is reproducible: reportlab's invariant mode leaves out the creation time and random
        document ID.

    Raises
    ------
    RenderError
        No page was given.
    """
    from reportlab.pdfgen.canvas import Canvas  # reportlab only when a PDF is asked for

    seq = [pages] if isinstance(pages, Page) else list(pages)
    if not seq:
        raise RenderError("no page to draw")
    buf = io.BytesIO()
    first = seq[0]
    c = Canvas(buf, pagesize=(first.width_mm * PT_PER_MM, first.height_mm * PT_PER_MM),
               pageCompression=1 if compress else 0, invariant=1)
    c.setTitle(_safe_text(first.title))
    c.setAuthor("dicom-ecg-node")
    c.setCreator(f"dicom-ecg-node {__version__} (reportlab)")
    c.setSubject("Electrocardiogram printout, true scale")
    for page in seq:
        c.setPageSize((page.width_mm * PT_PER_MM, page.height_mm * PT_PER_MM))
        _Writer(c, page).draw()
        c.showPage()
    c.save()
    return buf.getvalue()


__all__ = ["to_pdf"]
