"""True-scale ECG printouts: one millimetre layout model drawn to SVG and to vector PDF.

Pure: no I/O; callers write the returned text or bytes. The flow is::

    Recording ──layout_ecg / layout_overlay──▶ Page (mm) ──to_svg──▶ str
                                                      └──to_pdf──▶ bytes

Public API: :class:`RenderOptions`, :func:`layout_ecg`, :func:`layout_overlay`, :class:`MedianBeats`,
:func:`median_beats`, :func:`estimate_qrs_onset`, :func:`to_svg`, :func:`to_pdf`, :func:`display_filter`,
:class:`DisplayFilter`, the model classes (:class:`Page`, :class:`Panel`, :class:`Polyline`, :class:`Grid`,
:class:`Text`, :class:`Rect`, :class:`Stroke`), :class:`RenderError`, :func:`canonical_lead` and the tables
:data:`PAPERS`, :data:`LAYOUTS`, :data:`STANDARD_LEADS`.

Heavy dependencies load late: scipy only when a display filter runs, reportlab only in :func:`to_pdf`.
"""

from dicom_ecg_node.render.filters import DisplayFilter, display_filter
from dicom_ecg_node.render.layout import (
    LAYOUTS,
    PAPERS,
    TRACE_WIDTH_MM,
    MedianBeats,
    RenderOptions,
    calibration_zone_mm,
    estimate_qrs_onset,
    layout_ecg,
    layout_overlay,
    median_beats,
)
from dicom_ecg_node.render.leads import STANDARD_LEADS, canonical_lead, lead_index
from dicom_ecg_node.render.model import PT_PER_MM, Grid, Page, Panel, Polyline, Rect, RenderError, Stroke, Text
from dicom_ecg_node.render.pdf import to_pdf
from dicom_ecg_node.render.svg import to_svg

__all__ = [
    "LAYOUTS",
    "PAPERS",
    "PT_PER_MM",
    "STANDARD_LEADS",
    "TRACE_WIDTH_MM",
    "DisplayFilter",
    "Grid",
    "MedianBeats",
    "Page",
    "Panel",
    "Polyline",
    "Rect",
    "RenderError",
    "RenderOptions",
    "Stroke",
    "Text",
    "calibration_zone_mm",
    "canonical_lead",
    "display_filter",
    "estimate_qrs_onset",
    "layout_ecg",
    "layout_overlay",
    "lead_index",
    "median_beats",
    "to_pdf",
    "to_svg",
]
