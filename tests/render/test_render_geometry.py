"""True-scale geometry of the printout, checked numerically on the layout model and on the parsed SVG."""

from __future__ import annotations

import numpy as np
import pytest
from rendersupport import (
    LEADS,
    parse_svg,
    svg_grid_lines,
    svg_points,
    svg_polylines,
    svg_texts,
    twelve_lead,
)

from dicom_ecg_node.render import (
    TRACE_WIDTH_MM,
    RenderError,
    RenderOptions,
    calibration_zone_mm,
    layout_ecg,
    to_svg,
)

TOL = 0.011  # SVG coordinates carry two decimals (traces) or three (everything else)


def flat(name, t):
    return np.zeros_like(t)


def pulse_size(points: np.ndarray) -> tuple[float, float, float]:
    """(width, height, baseline y) of a calibration pulse polyline."""
    baseline = points[0, 1]
    top = points[:, 1].min()
    up = points[points[:, 1] == top]
    return float(up[:, 0].max() - up[:, 0].min()), float(baseline - top), float(baseline)


@pytest.mark.parametrize(("speed", "gain"), [(25, 10), (50, 20), (50, 10), (25, 5), (25, 20), (12.5, 20)])
def test_calibration_pulse_is_1mv_by_200ms_at_the_page_scale(speed, gain):
    page = layout_ecg(twelve_lead(flat), RenderOptions(speed_mm_s=speed, gain_mm_mv=gain))
    root = parse_svg(to_svg(page))
    pulses = svg_polylines(root, "calibration")
    assert len(pulses) == 4  # one per row: three lead rows and the rhythm strip
    for el, panel_row in zip(pulses, sorted({p.row for p in page.panels}), strict=True):
        width, height, baseline = pulse_size(svg_points(el))
        assert width == pytest.approx(0.2 * speed, abs=TOL)  # 200 ms
        assert height == pytest.approx(1.0 * gain, abs=TOL)  # 1 mV
        assert baseline == pytest.approx(next(p.baseline_y for p in page.panels if p.row == panel_row))
        # The pulse sits in the calibration zone, left of the first trace.
        assert svg_points(el)[:, 0].max() < page.grid.x + calibration_zone_mm(speed)


def test_defaults_give_a_10_by_5_mm_pulse():
    page = layout_ecg(twelve_lead(flat))
    width, height, _ = pulse_size(page.traces("calibration")[0].points)
    assert (width, height) == (pytest.approx(5.0), pytest.approx(10.0))


@pytest.mark.parametrize("gain", [5, 10, 20])
def test_one_millivolt_step_is_gain_mm_high(gain):
    # 0 mV for the first second, then 1 mV: with baseline centring off the step sits exactly on the row grid.
    rec = twelve_lead(lambda name, t: np.where(t >= 1.0, 1.0, 0.0))
    page = layout_ecg(rec, RenderOptions(gain_mm_mv=gain, center_baseline=False))
    root = parse_svg(to_svg(page))
    rhythm = next(el for el in svg_polylines(root, "trace")
                  if (el.attrib["data-lead"], el.attrib["data-t0"], el.attrib["data-t1"]) == ("II", "0", "10"))
    pts = svg_points(rhythm)
    panel = page.panels[-1]
    assert panel.lead == "II" and panel.row == 3
    assert np.allclose(pts[pts[:, 0] < panel.x + 25.0 - 0.01, 1], panel.baseline_y, atol=TOL)
    assert np.allclose(pts[pts[:, 0] >= panel.x + 25.0, 1], panel.baseline_y - gain, atol=TOL)


def test_sine_of_1_mv_amplitude_spans_20_mm_peak_to_peak():
    rec = twelve_lead(lambda name, t: np.sin(2 * np.pi * 1.0 * t))
    page = layout_ecg(rec)  # baseline centring on: the sine's median is ~0
    for poly in page.traces():
        span = poly.points[:, 1].max() - poly.points[:, 1].min()
        assert span == pytest.approx(20.0, abs=0.01)
        mid = (poly.points[:, 1].max() + poly.points[:, 1].min()) / 2
        panel = next(p for p in page.panels if (p.lead, p.t0_s, p.t1_s) == (poly.lead, poly.t0_s, poly.t1_s))
        assert mid == pytest.approx(panel.baseline_y, abs=0.01)


@pytest.mark.parametrize("speed", [25, 50])
def test_one_second_is_speed_mm(speed):
    # A 1 mV spike every second on lead II (rhythm strip): spike-to-spike distance is the paper speed.
    rec = twelve_lead(lambda name, t: np.where(np.isclose(t % 1.0, 0.5), 1.0, 0.0))
    page = layout_ecg(rec, RenderOptions(speed_mm_s=speed, center_baseline=False))
    strip = next(p for p in page.traces() if p.lead == "II" and p.t1_s - p.t0_s == pytest.approx(250 / speed))
    tops = strip.points[strip.points[:, 1] == strip.points[:, 1].min(), 0]
    assert len(tops) == round(250 / speed)
    assert np.allclose(np.diff(tops), speed, atol=1e-9)
    assert tops[0] - page.panels[-1].x == pytest.approx(0.5 * speed)


@pytest.mark.parametrize(("speed", "window"), [(25, 2.5), (50, 1.25)])
def test_3x4_columns_start_at_documented_offsets_and_show_the_same_window(speed, window):
    # A ramp of 0.2 mV/s: the first y of each column tells which time the column starts at.
    fs = 500.0
    rec = twelve_lead(lambda name, t: 0.2 * t, fs=fs)
    page = layout_ecg(rec, RenderOptions(speed_mm_s=speed, center_baseline=False))
    grid, cal = page.grid, calibration_zone_mm(speed)
    rows = [["I", "aVR", "V1", "V4"], ["II", "aVL", "V2", "V5"], ["III", "aVF", "V3", "V6"]]
    for r, row in enumerate(rows):
        for k, lead in enumerate(row):
            panel = page.panel(lead, k)
            assert panel.row == r
            assert panel.x == pytest.approx(grid.x + cal + k * 62.5)
            assert (panel.t0_s, panel.t1_s) == (pytest.approx(k * window), pytest.approx((k + 1) * window))
            (trace,) = [p for p in page.traces() if (p.lead, p.t0_s, p.t1_s) == (lead, panel.t0_s, panel.t1_s)]
            first, last = trace.points[0], trace.points[-1]
            assert first[0] == pytest.approx(panel.x)
            assert first[1] == pytest.approx(panel.baseline_y - 0.2 * panel.t0_s * 10.0)
            assert last[0] == pytest.approx(panel.x + (window - 1 / fs) * speed)
            assert len(trace.points) == round(window * fs)
    # Same window in every row of a column.
    for k in range(4):
        assert len({(p.t0_s, p.t1_s) for p in page.panels if p.column == k and p.row < 3}) == 1
    rhythm = page.panels[-1]
    assert (rhythm.lead, rhythm.row, rhythm.column) == ("II", 3, 0)
    assert (rhythm.t0_s, rhythm.t1_s) == (0.0, pytest.approx(TRACE_WIDTH_MM / speed))
    assert rhythm.width == TRACE_WIDTH_MM


def test_3x4_lead_labels_are_printed_in_their_panels():
    page = layout_ecg(twelve_lead(flat))
    root = parse_svg(to_svg(page))
    labels = {(el.text, round(float(el.attrib["x"]), 2)) for el in svg_texts(root, "lead-label")}
    for panel in page.panels:
        assert (panel.lead, round(panel.x + 1.2, 2)) in labels


def test_6x2_and_12x1_layouts():
    rec = twelve_lead(flat)
    six = layout_ecg(rec, RenderOptions(layout="6x2"))
    assert len(six.panels) == 12
    assert [six.panel(lead).column for lead in LEADS] == [0] * 6 + [1] * 6
    v1 = six.panel("V1")
    assert v1.x == pytest.approx(six.grid.x + 10 + 125) and (v1.t0_s, v1.t1_s) == (5.0, 10.0)
    twelve = layout_ecg(rec, RenderOptions(layout="12x1"))
    assert [p.lead for p in twelve.panels] == LEADS
    assert all((p.t0_s, p.t1_s, p.width) == (0.0, 10.0, 250.0) for p in twelve.panels)
    pitches = np.diff([p.baseline_y for p in twelve.panels])
    assert np.allclose(pitches, pitches[0])
    assert twelve.panels[-1].baseline_y < twelve.grid.y + twelve.grid.height


@pytest.mark.parametrize(("paper", "size"), [("a4", (297.0, 210.0)), ("letter", (279.4, 215.9))])
def test_paper_size_and_mm_viewbox(paper, size):
    page = layout_ecg(twelve_lead(flat), RenderOptions(paper=paper))
    root = parse_svg(to_svg(page))
    w, h = size
    assert root.attrib["width"] == f"{w:g}mm" and root.attrib["height"] == f"{h:g}mm"
    assert [float(v) for v in root.attrib["viewBox"].split()] == [0.0, 0.0, w, h]
    g = page.grid
    assert g.x >= 4 and g.x + g.width <= w - 4 and g.y + g.height <= h - 10
    assert g.x == pytest.approx((w - g.width) / 2)


@pytest.mark.parametrize("speed", [25, 50])
def test_grid_lines_every_1_mm_and_5_mm(speed):
    page = layout_ecg(twelve_lead(flat), RenderOptions(speed_mm_s=speed))
    root = parse_svg(to_svg(page))
    g = page.grid
    assert g.width % 5 == 0 and g.height % 5 == 0
    major_x, major_y = svg_grid_lines(root, "grid-major")
    minor_x, minor_y = svg_grid_lines(root, "grid-minor")
    assert np.allclose(np.diff(major_x), 5.0, atol=0.002) and np.allclose(np.diff(major_y), 5.0, atol=0.002)
    all_x, all_y = sorted(major_x + minor_x), sorted(major_y + minor_y)
    assert np.allclose(np.diff(all_x), 1.0, atol=0.002) and np.allclose(np.diff(all_y), 1.0, atol=0.002)
    assert all_x[0] == pytest.approx(g.x, abs=0.001) and all_x[-1] == pytest.approx(g.x + g.width, abs=0.001)
    assert len(major_x) == g.width / 5 + 1 and len(all_y) == g.height + 1
    # Traces start on a major line: the calibration zone is a whole number of 5 mm squares.
    assert min(abs(x - page.panels[0].x) for x in major_x) < 0.002
    # Row baselines sit on major lines too (row pitch is a multiple of 5 mm in 3x4+1).
    for p in page.panels:
        assert min(abs(y - p.baseline_y) for y in major_y) < 0.002


def test_options_are_validated():
    for kwargs in ({"layout": "4x3"}, {"paper": "a3"}, {"speed_mm_s": 0}, {"gain_mm_mv": 100},
                   {"rhythm_lead": "V7"}, {"start_s": -1}):
        with pytest.raises(RenderError):
            RenderOptions(**kwargs)


def test_start_offset_shifts_every_window():
    page = layout_ecg(twelve_lead(flat, seconds=20), RenderOptions(start_s=10.0))
    assert page.panel("V4").t0_s == pytest.approx(17.5)
    assert (page.panels[-1].t0_s, page.panels[-1].t1_s) == (10.0, 20.0)
    assert not page.notes
