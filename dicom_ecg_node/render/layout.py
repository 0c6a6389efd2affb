"""Lay out an ECG printout (and a serial median-beat overlay) as a millimetre :class:`~.model.Page`.

Geometry, fixed so that the tests and the web viewer can rely on it:

- Paper is landscape: A4 297 x 210 mm, US Letter 279.4 x 215.9 mm.
- Every row holds :data:`TRACE_WIDTH_MM` = 250 mm of trace after a calibration zone (10 mm at 25 mm/s, 15 mm at
  50 mm/s) in which a 1 mV x 200 ms pulse is drawn at the page's gain and speed, starting 2.5 mm from the grid's
  left edge. The grid is centred horizontally; its top is 37 mm from the top of the page.
- The time shown per row is therefore 250 mm / speed: 10 s at 25 mm/s, 5 s at 50 mm/s. Columns split it evenly
  and every lead in a column shows the same window. In ``3x4+1`` column k (k = 0..3) shows
  ``[start + k*w, start + (k+1)*w)`` with ``w = 62.5 mm / speed`` (2.5 s at 25 mm/s, 1.25 s at 50 mm/s, i.e. the
  first 5 s of the recording), and starts at ``x = grid.x + calibration zone + k * 62.5 mm``. The rhythm strip
  (lead II unless told otherwise) shows ``[start, start + 250 mm / speed)``. ``6x2``: two 125 mm columns (limb
  leads, chest leads). ``12x1``: one 250 mm column per lead.
- Rows are evenly spaced; the row pitch is a whole number of 5 mm squares when it is 20 mm or more, else a whole
  number of mm, and the baseline (0 mV) is in the middle of the row.
- Traces are baseline-centred by default: each lead's median over the whole recording is subtracted (ECG
  amplifiers are AC-coupled, so the absolute offset carries no meaning and would push leads off their row).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from dicom_ecg_node import __version__
from dicom_ecg_node.render import header as hdr
from dicom_ecg_node.render.filters import DisplayFilter, apply_filter
from dicom_ecg_node.render.leads import STANDARD_LEADS, canonical_lead, lead_index
from dicom_ecg_node.render.model import Grid, Page, Panel, Polyline, Rect, RenderError, Stroke, Text
from dicom_ecg_node.waveform.model import MultiplexGroup, Recording

#: Paper sizes, landscape (width, height) in mm.
PAPERS: dict[str, tuple[float, float]] = {"a4": (297.0, 210.0), "letter": (279.4, 215.9)}
#: Layouts :func:`layout_ecg` knows.
LAYOUTS: tuple[str, ...] = ("3x4+1", "6x2", "12x1")
#: Millimetres of trace per row, whatever the speed.
TRACE_WIDTH_MM: float = 250.0
#: Calibration pulse: 1 mV for 200 ms.
CAL_MV: float = 1.0
CAL_S: float = 0.2
#: Page y (mm) of the top of the grid.
GRID_TOP_MM: float = 37.0
#: Room kept below the grid for the notes and the footer.
FOOTER_MM: float = 13.0

_LEAD_ROWS: dict[str, list[list[str]]] = {
    "3x4+1": [["I", "aVR", "V1", "V4"], ["II", "aVL", "V2", "V5"], ["III", "aVF", "V3", "V6"]],
    "6x2": [["I", "V1"], ["II", "V2"], ["III", "V3"], ["aVR", "V4"], ["aVL", "V5"], ["aVF", "V6"]],
    "12x1": [[lead] for lead in STANDARD_LEADS],
}
# Units of voltage (UCUM, as in Channel Sensitivity Units Sequence) -> factor to mV.
_TO_MV: dict[str, float] = {"nV": 1e-6, "uV": 1e-3, "µV": 1e-3, "mV": 1.0, "V": 1e3}
_MAX_GENERIC_ROWS = 12
_EPS = 1e-9

TRACE_STROKE = Stroke("#000000", 0.22)
PRIOR_STROKE = Stroke("#1f5fbf", 0.25, (1.2, 0.8))
CAL_STROKE = Stroke("#000000", 0.22)
SEPARATOR_STROKE = Stroke("#000000", 0.3)
CHANGED_COLOUR = "#c00000"


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """How to print.

    Attributes
    ----------
    layout : {"3x4+1", "6x2", "12x1"}
    speed_mm_s : float
        Paper speed; 25 by default, 50 for detail (any value from 5 to 100 is accepted).
    gain_mm_mv : float
        Gain; 10 by default, 5 or 20 for large or small complexes (any value from 1 to 40 is accepted).
    paper : {"a4", "letter"}
    display_filter : DisplayFilter
        Zero-phase filter applied to a copy of the samples for display (none by default).
    rhythm_lead : str
        Lead of the ``3x4+1`` rhythm strip.
    start_s : float
        Seconds from the start of the recording at which the page begins.
    center_baseline : bool
        Subtract each lead's median before drawing (see the module docstring).
    """

    layout: str = "3x4+1"
    speed_mm_s: float = 25.0
    gain_mm_mv: float = 10.0
    paper: str = "a4"
    display_filter: DisplayFilter = field(default_factory=DisplayFilter)
    rhythm_lead: str = "II"
    start_s: float = 0.0
    center_baseline: bool = True

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise RenderError(f"layout {self.layout!r} is not one of {', '.join(LAYOUTS)}")
        if self.paper not in PAPERS:
            raise RenderError(f"paper {self.paper!r} is not one of {', '.join(PAPERS)}")
        if not (isinstance(self.speed_mm_s, int | float) and 5.0 <= self.speed_mm_s <= 100.0):
            raise RenderError(f"speed_mm_s must be between 5 and 100 mm/s, not {self.speed_mm_s!r}")
        if not (isinstance(self.gain_mm_mv, int | float) and 1.0 <= self.gain_mm_mv <= 40.0):
            raise RenderError(f"gain_mm_mv must be between 1 and 40 mm/mV, not {self.gain_mm_mv!r}")
        if not (math.isfinite(self.start_s) and self.start_s >= 0):
            raise RenderError(f"start_s must be a non-negative number of seconds, not {self.start_s!r}")
        if self.rhythm_lead not in STANDARD_LEADS:
            raise RenderError(f"rhythm_lead {self.rhythm_lead!r} is not one of {', '.join(STANDARD_LEADS)}")

    @property
    def seconds_per_row(self) -> float:
        """Seconds shown across a full row (250 mm / speed)."""
        return TRACE_WIDTH_MM / self.speed_mm_s

    def column_window(self, column: int, n_columns: int) -> tuple[float, float]:
        """Time window ``[t0, t1)`` (seconds) of ``column`` when a row is split in ``n_columns``."""
        width = self.seconds_per_row / n_columns
        t0 = self.start_s + column * width
        return t0, t0 + width


def calibration_zone_mm(speed_mm_s: float) -> float:
    """Width (mm, a multiple of 5) left of the traces for the calibration pulse and its margins."""
    return 5.0 * math.ceil((2.5 + CAL_S * speed_mm_s + 2.5) / 5.0 - _EPS)


def calibration_pulse(x: float, baseline_y: float, speed_mm_s: float, gain_mm_mv: float) -> Polyline:
    """A 1 mV x 200 ms pulse: baseline, up ``gain`` mm, across ``0.2 * speed`` mm, down, baseline.

    Parameters
    ----------
    x : float
        Page x (mm) of the left edge of the grid (the pulse rises 2.5 mm to its right).
    baseline_y : float
        Page y (mm) of the row's 0 mV line.
    speed_mm_s, gain_mm_mv : float
        Page scale: the pulse is ``0.2 * speed_mm_s`` mm wide and ``gain_mm_mv`` mm high.
    """
    width = CAL_S * speed_mm_s
    height = CAL_MV * gain_mm_mv
    rise = x + 2.5
    end = x + calibration_zone_mm(speed_mm_s) - 1.0
    pts = np.array([[x + 0.5, baseline_y], [rise, baseline_y], [rise, baseline_y - height],
                    [rise + width, baseline_y - height], [rise + width, baseline_y], [end, baseline_y]])
    return Polyline(pts, CAL_STROKE, "calibration")


# --------------------------------------------------------------------------------------------------- data


@dataclass(slots=True, eq=False)
class _Signals:
    """The samples to draw: mV, centred and display-filtered copies; never the stored arrays."""

    group: MultiplexGroup
    mv: npt.NDArray[np.float64]
    leads: dict[str, int]
    drawable: list[int]
    notes: list[str]


def _is_median(group: MultiplexGroup) -> bool:
    return "MEDIAN" in group.label.upper()


def _voltage_factor(units: str | None) -> float | None:
    return None if units is None else _TO_MV.get(units.strip())


def _signals(group: MultiplexGroup, flt: DisplayFilter, center: bool) -> _Signals:
    notes: list[str] = []
    factors = [_voltage_factor(c.units) for c in group.channels]
    drawable = [i for i, f in enumerate(factors) if f is not None]
    skipped = [group.channels[i].label for i, f in enumerate(factors) if f is None]
    if skipped:
        notes.append(f"not drawn (units not a voltage): {', '.join(skipped)}")
    mv = np.full(group.samples.shape, np.nan)
    for i in drawable:
        mv[:, i] = group.samples[:, i] * factors[i]  # type: ignore[operator]
    if center and drawable:
        for i in drawable:
            col = mv[:, i]
            finite = np.isfinite(col)
            if finite.any():
                mv[:, i] = col - np.median(col[finite])
    if drawable and not flt.is_identity:
        mv[:, drawable] = apply_filter(mv[:, drawable], group.sampling_frequency, flt)
    leads = {lead: i for lead, i in lead_index(group).items() if i in drawable}
    return _Signals(group, mv, leads, drawable, notes)


def pick_rhythm_group(recording: Recording) -> MultiplexGroup | None:
    """The group to print: not a median beat, most standard leads in voltage units, then labelled RHYTHM, longest."""
    best: tuple[int, int, int, float] | None = None
    chosen: MultiplexGroup | None = None
    for g in recording.groups:
        if _is_median(g) or g.n_samples == 0:
            continue
        volt = [i for i, c in enumerate(g.channels) if _voltage_factor(c.units) is not None]
        n_leads = len({canonical_lead(g.channels[i]) for i in volt} - {None})
        key = (n_leads, len(volt), int(g.label.upper() == "RHYTHM"), g.duration_s)
        if best is None or key > best:
            best, chosen = key, g
    return chosen


def pick_median_group(recording: Recording) -> MultiplexGroup | None:
    """The first group whose label says it holds median (or representative) beats."""
    for g in recording.groups:
        if _is_median(g):
            return g
    return None


# ------------------------------------------------------------------------------------------ page frame


def _row_pitch(available: float, n_rows: int) -> float:
    raw = available / n_rows
    return 5.0 * math.floor(raw / 5.0) if raw >= 20.0 else max(math.floor(raw), 3.0)


def _frame(options: RenderOptions, n_rows: int) -> tuple[float, float, Grid, float]:
    """Page size, the grid and the row pitch for ``n_rows`` rows."""
    width, height = PAPERS[options.paper]
    cal = calibration_zone_mm(options.speed_mm_s)
    grid_w = cal + TRACE_WIDTH_MM
    if grid_w > width - 4.0:
        raise RenderError(f"{grid_w:g} mm of grid do not fit on {options.paper} paper")
    pitch = _row_pitch(height - GRID_TOP_MM - FOOTER_MM, n_rows)
    grid_h = 5.0 * math.ceil(pitch * n_rows / 5.0 - _EPS)
    grid = Grid(x=(width - grid_w) / 2.0, y=GRID_TOP_MM, width=grid_w, height=grid_h)
    return width, height, grid, pitch


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _header_texts(recording: Recording, grid: Grid, lines: Sequence[str], right: Sequence[str],
                  right_title: str) -> list[Text]:
    name = hdr.format_name(recording.patient_name)
    sex = recording.patient_sex or "-"
    texts = [Text(grid.x, 9.5, _short(f"{name}    ID {recording.patient_id or '(none)'}    born "
                                      f"{hdr.format_date(recording.patient_birth_date)}    sex {sex}", 90),
                  size_mm=3.8, bold=True, role="patient")]
    y = 14.5
    for line in lines[:5]:  # the room above the grid holds five lines
        texts.append(Text(grid.x, y, _short(line, 110), size_mm=2.9, role="header"))
        y += 4.3
    x_right = grid.x + grid.width * 0.62
    if right:
        texts.append(Text(x_right, 14.5, right_title, size_mm=2.9, bold=True, role="statements"))
        shown = list(right[:4])
        if len(right) > 4:
            shown[-1] = f"... and {len(right) - 3} more"
        for i, line in enumerate(shown):
            texts.append(Text(x_right, 18.8 + 4.3 * i, _short(line, 58), size_mm=2.9, role="statement"))
    return texts


def _footer_texts(page_h: float, grid: Grid, footer: str, notes: Sequence[str],
                  sop_uid: str | None) -> list[Text]:
    # Bottom line: scale and filters; above it the notes; the instance UID and the producing software sit in
    # the top margin, where nothing else competes for the width.
    ident = f"SOP Instance UID {_short(sop_uid, 64)}    " if sop_uid else ""
    texts = [Text(grid.x, page_h - 4.5, footer, size_mm=2.7, role="footer"),
             Text(grid.x + grid.width, 5.0, f"{ident}dicom-ecg-node {__version__}", size_mm=2.2, anchor="end",
                  colour="#555555", role="footer")]
    if notes:
        texts.append(Text(grid.x, page_h - 8.8, _short("Note: " + "; ".join(notes), 180), size_mm=2.5,
                          colour="#7a4b00", role="note"))
    return texts


def _trace(t: npt.NDArray[np.float64], v: npt.NDArray[np.float64], t0: float, t1: float, x0: float,
           baseline: float, speed: float, gain: float, stroke: Stroke, role: str, lead: str) -> list[Polyline]:
    """Polylines (split at NaN gaps) of the samples with ``t0 <= t < t1``, time ``t0`` at page x ``x0``."""
    sel = (t >= t0 - _EPS) & (t < t1 - _EPS)
    if not sel.any():
        return []
    x = x0 + (t[sel] - t0) * speed
    y = baseline - v[sel] * gain
    ok = np.isfinite(y)
    out: list[Polyline] = []
    # Runs of finite samples: a padded (NaN) stretch breaks the line rather than being drawn as 0 mV.
    edges = np.flatnonzero(np.diff(np.concatenate(([0], ok.astype(np.int8), [0]))))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        if stop - start >= 1:
            pts = np.column_stack((x[start:stop], y[start:stop]))
            out.append(Polyline(pts, stroke, role, lead, t0, t1))
    return out


def _separator(x: float, baseline: float) -> Polyline:
    return Polyline(np.array([[x, baseline - 2.5], [x, baseline + 2.5]]), SEPARATOR_STROKE, "separator")


# ------------------------------------------------------------------------------------------ main page


def layout_ecg(recording: Recording, options: RenderOptions | None = None, *,
               node_measurements: Any | None = None, flags: Sequence[Any] = ()) -> Page:
    """Lay out the standard printout of ``recording``.

    Parameters
    ----------
    recording : Recording
        A decoded waveform object; its arrays are not modified.
    options : RenderOptions, optional
        Layout, speed, gain, paper and display filter (defaults: 3x4+1, 25 mm/s, 10 mm/mV, A4, no filter).
    node_measurements : object, optional
        The node's own measurements (attributes ``heart_rate_bpm``, ``pr_ms``, ``qrs_ms``, ``qt_ms``, ``qtc_ms``,
        ``axis_deg``), printed next to the cart's.
    flags : sequence, optional
        Serial-comparison flags (attributes ``rule`` and ``leads``), printed in the header.

    Returns
    -------
    Page
        When the leads cannot be identified as the standard twelve the channels are drawn one per row in file
        order (``layout == "channels"``); when nothing can be drawn the page carries the header and a note.
    """
    options = options or RenderOptions()
    notes: list[str] = []
    group = pick_rhythm_group(recording)
    sig = _signals(group, options.display_filter, options.center_baseline) if group is not None else None
    if sig is not None:
        notes.extend(sig.notes)
    if sig is None or not sig.drawable:
        notes.append("no ECG channel in voltage units: nothing to draw")

    if sig is not None and sig.leads:
        layout = options.layout
        rows: list[list[Any]] = [list(r) for r in _LEAD_ROWS[layout]]
        if layout == "3x4+1":
            rhythm = options.rhythm_lead
            if rhythm not in sig.leads:
                fallback = next((lead for lead in ("II", *STANDARD_LEADS) if lead in sig.leads), rhythm)
                notes.append(f"rhythm strip shows {fallback}: lead {rhythm} is absent")
                rhythm = fallback
            rows.append([("rhythm", rhythm)])
        missing = [lead for lead in STANDARD_LEADS if lead not in sig.leads]
        if missing:
            notes.append(f"absent from the recording: {', '.join(missing)}")
    elif sig is not None and sig.drawable:
        layout = "channels"
        shown = sig.drawable[:_MAX_GENERIC_ROWS]
        rows = [[("channel", i)] for i in shown]
        notes.append("leads not identified as the standard twelve: channels drawn in file order")
        if len(sig.drawable) > len(shown):
            notes.append(f"only the first {len(shown)} of {len(sig.drawable)} channels drawn")
    else:
        layout = "channels"
        rows = []

    width, height, grid, pitch = _frame(options, max(len(rows), 1))
    cal = calibration_zone_mm(options.speed_mm_s)
    speed, gain = options.speed_mm_s, options.gain_mm_mv
    page = Page(width, height, grid, speed, gain, layout, title=_title(recording))

    for r, row in enumerate(rows):
        baseline = grid.y + pitch * (r + 0.5)
        row_top = baseline - pitch / 2.0
        page.polylines.append(calibration_pulse(grid.x, baseline, speed, gain))
        n_cols = len(row)
        for c, item in enumerate(row):
            if isinstance(item, tuple):  # a full-width row: rhythm strip or a channel of unknown lead
                kind, ref = item
                t0, t1 = options.column_window(0, 1)
                if kind == "rhythm":
                    lead, index = str(ref), (sig.leads.get(str(ref)) if sig else None)
                else:
                    index = int(ref)
                    lead = sig.group.channels[index].label if sig else str(ref)
            else:
                lead = item
                t0, t1 = options.column_window(c, n_cols)
                index = sig.leads.get(lead) if sig else None
            x0 = grid.x + cal + c * TRACE_WIDTH_MM / n_cols
            page.panels.append(Panel(lead, x0, baseline, TRACE_WIDTH_MM / n_cols, t0, t1, r, c,
                                     drawn=index is not None))
            label = lead if index is not None else f"{lead} (absent)"
            page.texts.append(Text(x0 + 1.2, row_top + min(4.0, pitch * 0.45), _short(label, 40),
                                   size_mm=min(3.2, pitch * 0.4), bold=True, role="lead-label"))
            if c > 0:
                page.polylines.append(_separator(x0, baseline))
            if index is not None and sig is not None:
                page.polylines.extend(_trace(sig.group.times(index), sig.mv[:, index], t0, t1, x0, baseline,
                                             speed, gain, TRACE_STROKE, "trace", lead))

    if sig is not None and rows:
        end = max(p.t1_s for p in page.panels)
        # One sample short of the window (4999 samples at 500 Hz) is a full recording, not a short one.
        if sig.group.duration_s < end - 1.5 / sig.group.sampling_frequency:
            notes.append(f"recording lasts {sig.group.duration_s:.2f} s: the page covers "
                         f"{options.start_s:g}-{end:g} s, the rest is blank")

    cart = hdr.cart_measurements(recording)
    lines = [hdr.format_times(recording), hdr.format_device(recording),
             "Cart:  " + (hdr.format_measurements(cart) if not cart.empty else "no measurements sent")]
    if node_measurements is not None:
        lines.append("Node:  " + hdr.format_measurements(hdr.from_node(node_measurements)))
    flag_lines = hdr.format_flags(flags)
    if flag_lines:
        lines.append("Compared with prior: " + "; ".join(flag_lines))
    page.texts.extend(_header_texts(recording, grid, lines, recording.statements, "Statements"))
    channels = sig.group.channels if sig is not None else []
    footer = (f"Device filters: {hdr.format_device_filters(channels)}    Display filter: "
              f"{options.display_filter.describe()}    {speed:g} mm/s    {gain:g} mm/mV    "
              f"{options.paper.upper() if options.paper == 'a4' else 'Letter'}    layout {layout}")
    page.notes = notes
    page.texts.extend(_footer_texts(height, grid, footer, notes, recording.sop_instance_uid))
    return page


def _title(recording: Recording) -> str:
    when = recording.acquisition_datetime
    return (f"ECG {recording.patient_id or ''} {when:%Y-%m-%d %H:%M}" if when else
            f"ECG {recording.patient_id or ''}").strip()


# ----------------------------------------------------------------------------------------- overlay page


@dataclass(slots=True, eq=False)
class MedianBeats:
    """Median (representative) beats of one recording, ready to overlay.

    Attributes
    ----------
    leads : dict of str to numpy.ndarray
        Canonical lead → float64 samples in mV (1-D, same length for every lead).
    sampling_frequency : float
        Hz.
    align_index : int or None
        Sample index of the QRS onset to align on; ``None`` estimates it (:func:`estimate_qrs_onset`).
    """

    leads: dict[str, npt.NDArray[np.float64]]
    sampling_frequency: float
    align_index: int | None = None

    def __post_init__(self) -> None:
        if not self.leads:
            raise RenderError("median beats need at least one lead")
        if not (self.sampling_frequency > 0):
            raise RenderError(f"sampling_frequency must be positive, not {self.sampling_frequency!r}")
        lengths = {np.asarray(v).shape for v in self.leads.values()}
        if len(lengths) != 1 or len(next(iter(lengths))) != 1:
            raise RenderError("median beats must be 1-D arrays of one common length")

    @property
    def n_samples(self) -> int:
        """Samples per lead."""
        return int(np.asarray(next(iter(self.leads.values()))).shape[0])


def median_beats(recording: Recording, align_index: int | None = None) -> MedianBeats:
    """The median-beat group of ``recording`` as :class:`MedianBeats` (mV, baseline-centred on the first 5 %).

    Raises
    ------
    RenderError
        The recording has no median-beat group with identified leads in voltage units.
    """
    group = pick_median_group(recording)
    if group is None:
        raise RenderError(f"{recording.sop_instance_uid or 'recording'} has no MEDIAN BEAT group to overlay")
    sig = _signals(group, DisplayFilter(), center=False)
    if not sig.leads:
        raise RenderError("the median-beat group has no identified lead in voltage units")
    head = max(1, group.n_samples // 20)
    leads: dict[str, npt.NDArray[np.float64]] = {}
    for lead, i in sig.leads.items():
        v = sig.mv[:, i].copy()
        # Median beats start on the isoelectric stretch before P: take it as 0 mV so both beats share a baseline.
        ref = np.nanmedian(v[:head]) if np.isfinite(v[:head]).any() else 0.0
        leads[lead] = v - ref
    return MedianBeats(leads, group.sampling_frequency, align_index)


def estimate_qrs_onset(beats: MedianBeats) -> int:
    """A display alignment point: where the spatial velocity first reaches 10 % of its peak before that peak.

    This is not a measurement (``dicom_ecg_node.analysis`` owns fiducials; pass its QRS onset as
    ``align_index`` when known). The spatial velocity is the sum over leads of ``|dv/dt|``; its peak falls in
    the QRS, and walking back to 10 % of it finds the QRS onset within a few ms on clean medians. The peak is
    sought away from the beat's ends (5 %), and samples beyond +-10 mV (padding or garbage some writers leave at
    the end of a median, e.g. the ECG Toolkit's -82 mV last sample) are ignored. Falls back to the peak itself,
    and to 0 for a flat beat.
    """
    arr = np.vstack([np.asarray(v, dtype=np.float64) for v in beats.leads.values()])
    arr = np.where(np.isfinite(arr) & (np.abs(arr) <= 10.0), arr, np.nan)
    if arr.shape[1] < 3:
        return 0
    vel = np.nan_to_num(np.abs(np.diff(arr, axis=1))).sum(axis=0)
    k = max(1, round(beats.sampling_frequency * 0.01))  # 10 ms moving average against sample noise
    vel = np.convolve(vel, np.ones(k) / k, mode="same")
    edge = max(1, vel.shape[0] // 20)
    inner = vel[edge:-edge] if vel.shape[0] > 2 * edge + 1 else vel
    offset = edge if inner is not vel else 0
    peak = int(np.argmax(inner)) + offset
    if vel[peak] <= 0:
        return 0
    below = np.flatnonzero(vel[: peak + 1] < 0.1 * vel[peak])
    return int(below[-1] + 1) if below.size else peak


#: Window around the alignment point shown per lead in an overlay (seconds before, after).
OVERLAY_WINDOW_S: tuple[float, float] = (0.4, 0.7)


def layout_overlay(current: Recording, prior: Recording, options: RenderOptions | None = None, *,
                   current_beats: MedianBeats | None = None, prior_beats: MedianBeats | None = None,
                   changed_leads: Sequence[str] = (), flags: Sequence[Any] = ()) -> Page:
    """Lay out the serial overlay: current and prior median beats per lead on one grid, aligned on QRS onset.

    Leads are placed as in ``3x4`` (columns I-III, aVR-aVF, V1-V3, V4-V6, 62.5 mm apart); each panel shows
    :data:`OVERLAY_WINDOW_S` around the alignment point (x of the alignment point = panel x + 0.4 s * speed). The
    current beat is a solid black line, the prior a dashed blue one; leads in ``changed_leads`` get a red frame
    and a red label.

    Parameters
    ----------
    current, prior : Recording
        For the header (patient, times, measurements) and, unless given, the median beats.
    options : RenderOptions, optional
        Speed, gain and paper (layout and filter are ignored: median beats are drawn as sent).
    current_beats, prior_beats : MedianBeats, optional
        Median beats to draw instead of the recordings' MEDIAN BEAT groups (e.g. the node's own medians).
    changed_leads : sequence of str
        Canonical lead names to mark.
    flags : sequence
        Comparison flags (``rule``, ``leads``) for the header.

    Raises
    ------
    RenderError
        A recording has no median beats and none were given.
    """
    options = options or RenderOptions()
    cur = current_beats if current_beats is not None else median_beats(current)
    pri = prior_beats if prior_beats is not None else median_beats(prior)
    speed, gain = options.speed_mm_s, options.gain_mm_mv
    rows = _LEAD_ROWS["3x4+1"]
    width, height, grid, pitch = _frame(options, len(rows))
    cal = calibration_zone_mm(speed)
    page = Page(width, height, grid, speed, gain, "overlay", title="Serial overlay " + _title(current))
    pre, post = OVERLAY_WINDOW_S
    col_pitch = TRACE_WIDTH_MM / 4
    panel_w = min((pre + post) * speed, col_pitch - 2.5)
    t_post = panel_w / speed - pre
    changed = set(changed_leads)
    unknown = sorted(changed - set(STANDARD_LEADS))
    notes: list[str] = [f"unknown changed lead(s) ignored: {', '.join(unknown)}"] if unknown else []
    aligns = []
    for beats in (cur, pri):
        idx = beats.align_index if beats.align_index is not None else estimate_qrs_onset(beats)
        if not 0 <= idx < beats.n_samples:
            raise RenderError(f"align_index {idx} is outside the median beat (0..{beats.n_samples - 1})")
        aligns.append(idx / beats.sampling_frequency)
    missing: list[str] = []

    for r, row in enumerate(rows):
        baseline = grid.y + pitch * (r + 0.5)
        row_top = baseline - pitch / 2.0
        page.polylines.append(calibration_pulse(grid.x, baseline, speed, gain))
        for c, lead in enumerate(row):
            x0 = grid.x + cal + c * col_pitch
            is_changed = lead in changed
            drawn = lead in cur.leads or lead in pri.leads
            page.panels.append(Panel(lead, x0, baseline, panel_w, -pre, t_post, r, c, drawn=drawn,
                                     changed=is_changed))
            for beats, align, stroke, role in ((pri, aligns[1], PRIOR_STROKE, "prior"),
                                               (cur, aligns[0], TRACE_STROKE, "trace")):
                v = beats.leads.get(lead)
                if v is None:
                    missing.append(f"{lead} ({role if role == 'prior' else 'current'})")
                    continue
                t = np.arange(v.shape[0]) / beats.sampling_frequency - align
                page.polylines.extend(_trace(t, np.asarray(v, dtype=np.float64), -pre, t_post, x0, baseline,
                                             speed, gain, stroke, role, lead))
            xa = x0 + pre * speed
            page.polylines.append(Polyline(np.array([[xa, row_top + 1.0], [xa, row_top + pitch - 1.0]]),
                                           Stroke("#777777", 0.12, (0.5, 0.8)), "alignment", lead))
            colour = CHANGED_COLOUR if is_changed else "#000000"
            page.texts.append(Text(x0 + 1.2, row_top + min(4.0, pitch * 0.45),
                                   f"{lead}  changed" if is_changed else lead, size_mm=min(3.2, pitch * 0.4),
                                   bold=True, colour=colour, role="lead-label"))
            if is_changed:
                page.rects.append(Rect(x0 - 1.0, row_top + 0.5, panel_w + 2.0, pitch - 1.0,
                                       Stroke(CHANGED_COLOUR, 0.45), role="changed"))
    if missing:
        notes.append(f"median beat absent: {', '.join(missing)}")

    def when(rec: Recording) -> str:
        utc = rec.acquisition_utc
        return f"{utc:%Y-%m-%d %H:%M} UTC" if utc else (f"{rec.acquisition_datetime:%Y-%m-%d %H:%M} (zone unknown)"
                                                        if rec.acquisition_datetime else "time unknown")

    lines = [f"Overlay on QRS onset: current {when(current)} (solid black), prior {when(prior)} (dashed blue)",
             "Current cart: " + hdr.format_measurements(hdr.cart_measurements(current)),
             "Prior cart:   " + hdr.format_measurements(hdr.cart_measurements(prior))]
    flag_lines = hdr.format_flags(flags)
    if changed:
        lines.append("Changed leads: " + ", ".join(lead for lead in STANDARD_LEADS if lead in changed))
    if prior.patient_id != current.patient_id:
        notes.append(f"prior patient ID {prior.patient_id!r} differs from {current.patient_id!r}")
    page.texts.extend(_header_texts(current, grid, lines, flag_lines, "Comparison with prior"))
    footer = (f"Median beats as sent, no display filter    {speed:g} mm/s    {gain:g} mm/mV    "
              f"window -{pre:g}..+{t_post:.2f} s around QRS onset")
    page.notes = notes
    page.texts.extend(_footer_texts(height, grid, footer, notes, current.sop_instance_uid))
    return page


__all__ = [
    "CAL_MV",
    "CAL_S",
    "GRID_TOP_MM",
    "LAYOUTS",
    "OVERLAY_WINDOW_S",
    "PAPERS",
    "TRACE_WIDTH_MM",
    "MedianBeats",
    "RenderOptions",
    "calibration_pulse",
    "calibration_zone_mm",
    "estimate_qrs_onset",
    "layout_ecg",
    "layout_overlay",
    "median_beats",
    "pick_median_group",
    "pick_rhythm_group",
]
