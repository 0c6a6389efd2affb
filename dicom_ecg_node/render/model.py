"""The layout model: one printed page in millimetres, drawn unchanged by the SVG and PDF writers.

Coordinates are millimetres from the page's top-left corner, x to the right and y downwards (SVG's convention; the
PDF writer flips y). Everything a writer draws is in here, already placed: a writer makes no layout decision, so
both outputs agree to the hundredth of a millimetre and the tests can check geometry on the model itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from dicom_ecg_node.errors import RenderError

#: Millimetres per PostScript point's inverse: 1 mm = 72 / 25.4 pt.
PT_PER_MM: float = 72.0 / 25.4


@dataclass(frozen=True, slots=True)
class Stroke:
    """How a line is drawn.

    Attributes
    ----------
    colour : str
        ``#rrggbb``.
    width_mm : float
        Line width in millimetres.
    dash_mm : tuple of float
        Dash pattern in millimetres (on, off, ...); empty for a solid line.
    """

    colour: str = "#000000"
    width_mm: float = 0.2
    dash_mm: tuple[float, ...] = ()


@dataclass(slots=True, eq=False)
class Polyline:
    """An open polyline (a waveform trace, a calibration pulse, a separator tick).

    Attributes
    ----------
    points : numpy.ndarray
        float64 ``(n, 2)`` page coordinates in mm (x, y), y downwards.
    stroke : Stroke
    role : str
        ``"trace"``, ``"prior"`` (serial overlay), ``"calibration"`` or ``"separator"``.
    lead : str or None
        Lead shown, for traces and pulses.
    t0_s, t1_s : float or None
        Time window shown (seconds from the group start, or from the alignment point in an overlay).
    clip : bool
        Clip to the page's grid (waveforms taller than their row must not run into the header).
    """

    points: npt.NDArray[np.float64]
    stroke: Stroke
    role: str
    lead: str | None = None
    t0_s: float | None = None
    t1_s: float | None = None
    clip: bool = True


@dataclass(frozen=True, slots=True)
class Text:
    """One line of text.

    Attributes
    ----------
    x, y : float
        Anchor point in mm; ``y`` is the baseline.
    text : str
    size_mm : float
        Font size (em height) in mm.
    anchor : str
        ``"start"``, ``"middle"`` or ``"end"``.
    bold : bool
    colour : str
    role : str
        What it is (``"header"``, ``"lead-label"``, ``"footer"``, ``"note"``...), for tests and styling.
    """

    x: float
    y: float
    text: str
    size_mm: float = 3.0
    anchor: str = "start"
    bold: bool = False
    colour: str = "#000000"
    role: str = "header"


@dataclass(frozen=True, slots=True)
class Rect:
    """A rectangle (a changed-lead mark in a serial overlay), in mm; ``fill`` ``None`` for an outline."""

    x: float
    y: float
    width: float
    height: float
    stroke: Stroke
    fill: str | None = None
    role: str = "mark"


@dataclass(frozen=True, slots=True)
class Grid:
    """The millimetre paper: minor lines every ``minor_mm``, major lines every ``major_mm``.

    The rectangle's sides are whole multiples of ``major_mm`` so that it starts and ends on major lines.
    """

    x: float
    y: float
    width: float
    height: float
    minor_mm: float = 1.0
    major_mm: float = 5.0
    minor: Stroke = Stroke("#f6c4c4", 0.06)
    major: Stroke = Stroke("#e48a8a", 0.16)

    def lines(self, major: bool) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Page x of the vertical lines and page y of the horizontal lines of one kind.

        Parameters
        ----------
        major : bool
            ``True`` for the major lines, ``False`` for the minor lines that are not also major ones.

        Returns
        -------
        (numpy.ndarray, numpy.ndarray)
            x positions of vertical lines, y positions of horizontal lines (mm).
        """
        ratio = round(self.major_mm / self.minor_mm)

        def positions(origin: float, length: float) -> npt.NDArray[np.float64]:
            n = round(length / self.minor_mm)
            k = np.arange(n + 1)
            keep = (k % ratio == 0) if major else (k % ratio != 0)
            return origin + k[keep] * self.minor_mm

        return positions(self.x, self.width), positions(self.y, self.height)


@dataclass(frozen=True, slots=True)
class Panel:
    """Where one lead's trace lives on the page (for tests, calipers and the web viewer).

    Attributes
    ----------
    lead : str
    x : float
        Page x (mm) of time ``t0_s``.
    baseline_y : float
        Page y (mm) of 0 mV.
    width : float
        mm (``(t1_s - t0_s) * speed``).
    t0_s, t1_s : float
        Time window shown, seconds.
    row, column : int
    drawn : bool
        ``False`` when the lead is absent from the recording (the label is printed, nothing else).
    changed : bool
        Marked as changed in a serial overlay.
    """

    lead: str
    x: float
    baseline_y: float
    width: float
    t0_s: float
    t1_s: float
    row: int
    column: int
    drawn: bool = True
    changed: bool = False


@dataclass(slots=True, eq=False)
class Page:
    """One laid-out page.

    Attributes
    ----------
    width_mm, height_mm : float
        Paper size (landscape).
    grid : Grid or None
    speed_mm_s, gain_mm_mv : float
        The scale every trace on the page was drawn at.
    layout : str
        ``"3x4+1"``, ``"6x2"``, ``"12x1"``, ``"channels"`` (leads not identified) or ``"overlay"``.
    title : str
        Document title (PDF metadata, SVG ``<title>``).
    panels : list of Panel
    polylines : list of Polyline
    texts : list of Text
    rects : list of Rect
    notes : list of str
        Plain-language remarks printed on the page (missing leads, short recording...).
    """

    width_mm: float
    height_mm: float
    grid: Grid | None
    speed_mm_s: float
    gain_mm_mv: float
    layout: str
    title: str = "ECG"
    panels: list[Panel] = field(default_factory=list)
    polylines: list[Polyline] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)
    rects: list[Rect] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def traces(self, role: str = "trace") -> list[Polyline]:
        """The polylines of one role (``"trace"``, ``"prior"``, ``"calibration"``, ``"separator"``)."""
        return [p for p in self.polylines if p.role == role]

    def panel(self, lead: str, column: int | None = None) -> Panel:
        """The first panel showing ``lead`` (in ``column`` when given).

        Raises
        ------
        KeyError
            No such panel.
        """
        for p in self.panels:
            if p.lead == lead and (column is None or p.column == column):
                return p
        raise KeyError(lead)


__all__ = ["PT_PER_MM", "Grid", "Page", "Panel", "Polyline", "Rect", "RenderError", "Stroke", "Text"]
