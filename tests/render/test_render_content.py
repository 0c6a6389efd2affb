"""What the printout says and how it copes: header, footer, display filters, odd files, the serial overlay."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from helpers import all_samples, sample
from rendersupport import (
    LEADS,
    PATIENT_ID,
    cart_measurements,
    group,
    parse_svg,
    recording,
    svg_polylines,
    svg_texts,
    twelve_lead,
)

from dicom_ecg_node.render import (
    MedianBeats,
    RenderError,
    RenderOptions,
    canonical_lead,
    display_filter,
    estimate_qrs_onset,
    layout_ecg,
    layout_overlay,
    median_beats,
    to_pdf,
    to_svg,
)
from dicom_ecg_node.render.filters import apply_filter
from dicom_ecg_node.render.header import cart_measurements as read_cart
from dicom_ecg_node.render.leads import lead_from_code, lead_from_label
from dicom_ecg_node.waveform import decode
from dicom_ecg_node.waveform.model import Channel, CodedConcept


def sine(name, t):
    return 0.5 * np.sin(2 * np.pi * 1.2 * t)


def all_text(page) -> str:
    return "\n".join(t.text for t in page.texts)


# ------------------------------------------------------------------------------------------- header/footer


def test_header_carries_patient_time_device_and_cart_measurements():
    from datetime import datetime, timedelta, timezone

    when = datetime(2026, 3, 29, 3, 30, tzinfo=timezone(timedelta(hours=2)))
    rec = twelve_lead(sine, acquisition_datetime=when, measurements=cart_measurements(),
                      statements=["Sinus rhythm", "Normal ECG"])
    page = layout_ecg(rec)
    root = parse_svg(to_svg(page))
    patient = svg_texts(root, "patient")[0].text
    assert PATIENT_ID in patient and "TEST, RENDER" in patient and "1970-01-01" in patient and "sex F" in patient
    text = all_text(page)
    assert "2026-03-29 03:30:00 +02:00" in text and "UTC 2026-03-29 01:30:00" in text
    assert "ACME Cart-1" in text
    assert "HR 60 bpm" in text and "PR 160 ms" in text and "QRS 90 ms" in text and "QT/QTc 400/410 ms" in text
    assert "-/45/30°" in text  # T axis from code 5.10.3-15 although its meaning says "QRS Axis"
    assert {"Sinus rhythm", "Normal ECG"} <= {el.text for el in svg_texts(root, "statement")}


def test_node_measurements_and_comparison_flags_are_printed():
    node = SimpleNamespace(heart_rate_bpm=72.4, pr_ms=150.0, qrs_ms=96.0, qt_ms=380.0, qtc_ms=415.0,
                           axis_deg=-20.0)
    flags = [SimpleNamespace(rule="QRS duration +20 ms", leads=()),
             SimpleNamespace(rule="new Q wave", leads=["V1", "V2"])]
    text = all_text(layout_ecg(twelve_lead(sine), node_measurements=node, flags=flags))
    assert "Node:  HR 72 bpm   PR 150 ms   QRS 96 ms   QT/QTc 380/415 ms   QRS axis -20°" in text
    assert "Compared with prior: QRS duration +20 ms; new Q wave (V1, V2)" in text
    assert "Cart:  no measurements sent" in text


def test_cart_measurements_of_the_real_mortara_file():
    m = read_cart(decode(sample("pydicom/waveform_ecg.dcm")))
    assert round(m.heart_rate_bpm) == 61  # 60000 / RR 982 ms
    assert (m.pr_ms, m.qrs_ms, m.qt_ms, m.qtc_ms) == (161.0, 75.0, 368.0, 370.0)
    assert (m.p_axis_deg, m.axis_deg, m.t_axis_deg) == (74.0, 52.0, 57.0)
    gm = read_cart(decode(sample("pixelmed/39da47b7.dcm")))
    assert gm.heart_rate_bpm == 69.0 and gm.pr_ms is None


def test_footer_states_device_band_scale_and_display_filter():
    rec = twelve_lead(sine)
    text = all_text(layout_ecg(rec))
    assert "Device filters: 0.05-150 Hz, notch 50 Hz" in text
    assert "Display filter: none" in text and "25 mm/s" in text and "10 mm/mV" in text
    opts = RenderOptions(speed_mm_s=50, gain_mm_mv=5, display_filter=display_filter("diagnostic", 60.0))
    text = all_text(layout_ecg(rec, opts))
    assert "Display filter: zero-phase 0.05-150 Hz, notch 60 Hz" in text and "50 mm/s" in text
    assert "5 mm/mV" in text


# ------------------------------------------------------------------------------------------------ filters


def test_display_filter_never_changes_the_stored_samples():
    rec = twelve_lead(lambda name, t: sine(name, t) + 0.3 * np.sin(2 * np.pi * 50 * t) + 2.0)
    before = rec.groups[0].samples.copy()
    filtered = layout_ecg(rec, RenderOptions(display_filter=display_filter("monitor", 50.0)))
    assert np.array_equal(rec.groups[0].samples, before)
    plain = layout_ecg(rec)
    ii_f = next(p for p in filtered.traces() if p.lead == "II" and p.t1_s == 10.0).points[:, 1]
    ii_p = next(p for p in plain.traces() if p.lead == "II" and p.t1_s == 10.0).points[:, 1]
    assert np.ptp(ii_f) < np.ptp(ii_p)  # the 50 Hz ripple is gone on the page only


def test_display_filter_is_zero_phase():
    fs = 500.0
    t = np.arange(5000) / fs
    x = np.sin(2 * np.pi * 5.0 * t) + 0.5 * np.sin(2 * np.pi * 60 * t)
    y = apply_filter(x, fs, display_filter("monitor", 60.0))
    inner = slice(1000, 4000)  # away from the edges
    clean = np.sin(2 * np.pi * 5.0 * t)
    lag = np.argmax(np.correlate(y[inner], clean[inner], mode="full")) - (3000 - 1)
    assert lag == 0
    assert np.max(np.abs(y[inner] - clean[inner])) < 0.05


def test_filter_bridges_padding_and_puts_it_back():
    x = np.sin(np.linspace(0, 20, 2000))
    x[500:520] = np.nan
    y = apply_filter(x, 500.0, display_filter("diagnostic"))
    assert np.isnan(y[500:520]).all() and np.isfinite(np.delete(y, range(500, 520))).all()
    assert np.isnan(x[500:520]).all()


def test_unknown_filter_preset_is_an_error():
    with pytest.raises(RenderError):
        display_filter("hifi")


# ---------------------------------------------------------------------------------------------- leads


@pytest.mark.parametrize(("scheme", "value", "lead"), [
    ("SCPECG", "5.6.3-9-1", "I"), ("SCPECG", "5.6.3-9-61", "III"), ("SCPECG", "5.6.3-9-64", "aVF"),
    ("SCPECG", "5.6.3-9-8", "V6"), ("MDC", "2:1", "I"), ("MDC", "2:62", "aVR"), ("MDC", "2:3", "V1"),
    ("MDC", "131073", "I"), ("MDC", "131329", "I"), ("MDC", "131135", "aVL"), ("MDC", "2:257", "I"),
    ("SCPECG", "5.6.3-9-20", None), ("DCM", "109006", None),
])
def test_lead_from_code(scheme, value, lead):
    assert lead_from_code(value, scheme) == lead


@pytest.mark.parametrize(("label", "lead"), [
    ("Lead I (Einthoven)", "I"), ("I", "I"), ("lead avr", "aVR"), ("MDC_ECG_LEAD_AVF", "aVF"), ("V 4", "V4"),
    ("Lead III", "III"), ("Triangle", None), ("Lead V7", None),
])
def test_lead_from_label(label, lead):
    assert lead_from_label(label) == lead


def test_code_wins_over_label():
    ch = Channel("Lead I", CodedConcept("5.6.3-9-2", "SCPECG", "Lead II"), "uV", 1, 1, 0, 0, 16)
    assert canonical_lead(ch) == "II"


# ------------------------------------------------------------------------------------------- odd files


def test_single_lead_renders_what_it_has_with_a_note():
    t = np.arange(1000) / 500.0
    rec = recording([group({"I": sine("I", t)}, 500.0)])
    page = layout_ecg(rec)
    drawn = {p.lead for p in page.panels if p.drawn}
    assert drawn == {"I"}
    assert page.panels[-1].lead == "I"  # rhythm strip falls back to the lead there is
    assert any("lead II is absent" in n for n in page.notes)
    assert any("absent from the recording: II, III" in n for n in page.notes)
    assert any("recording lasts 2.00 s" in n for n in page.notes)
    root = parse_svg(to_svg(page))
    assert any(el.text.startswith("Note: ") for el in svg_texts(root, "note"))
    assert {el.attrib["data-lead"] for el in svg_polylines(root, "trace")} == {"I"}
    to_pdf(page)


def test_unidentified_channels_are_drawn_in_file_order():
    t = np.arange(2500) / 500.0
    g = group({"I": sine("I", t), "II": sine("II", t)}, 500.0, coded=False)
    g.channels = [Channel(name, None, "mV", 1, 1, 0, 0, 16) for name in ("Chest A", "Chest B")]
    page = layout_ecg(recording([g]))
    assert page.layout == "channels"
    assert [p.lead for p in page.panels] == ["Chest A", "Chest B"]
    assert any("not identified" in n for n in page.notes)


def test_channels_without_voltage_units_are_not_drawn():
    t = np.arange(500) / 500.0
    g = group({"I": sine("I", t)}, 500.0)
    g.channels = [Channel("I", None, None, 1, 1, 0, 0, 16)]
    page = layout_ecg(recording([g]))
    assert not page.traces()
    assert any("nothing to draw" in n for n in page.notes)
    to_pdf(page)
    parse_svg(to_svg(page))


def test_padding_breaks_the_trace():
    rec = twelve_lead(sine)
    rec.groups[0].samples[1000:1100, :] = np.nan
    page = layout_ecg(rec)
    rhythm = [p for p in page.traces() if p.lead == "II" and p.t1_s == 10.0]
    assert len(rhythm) == 2
    assert all(np.isfinite(p.points).all() for p in page.traces())


def test_millivolt_channels_are_scaled_like_microvolt_ones():
    uv = layout_ecg(twelve_lead(sine, units="uV"))
    mv = layout_ecg(twelve_lead(sine, units="mV"))
    for a, b in zip(uv.traces(), mv.traces(), strict=True):
        assert np.allclose(a.points, b.points)


@pytest.mark.parametrize("path", all_samples(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_sample_file_renders(path):
    rec = decode(path)
    for layout in ("3x4+1", "6x2", "12x1"):
        page = layout_ecg(rec, RenderOptions(layout=layout))
        svg = to_svg(page)
        root = parse_svg(svg)
        assert svg_polylines(root, "trace")
        assert to_pdf(page).startswith(b"%PDF-")
        if rec.patient_id:
            assert rec.patient_id in svg


# -------------------------------------------------------------------------------------------- overlay


def beat(t: np.ndarray, onset: float, amplitude: float = 1.0) -> np.ndarray:
    """A QRS-like triangle starting at ``onset`` (40 ms up, 40 ms down) and a T wave."""
    qrs = np.clip(1 - np.abs(t - onset - 0.04) / 0.04, 0, None) * amplitude
    twave = 0.25 * np.exp(-(((t - onset - 0.3) / 0.06) ** 2))
    return qrs + twave


def serial_pair(shift_s: float = 0.05):
    fs = 500.0
    t = np.arange(600) / fs
    rhythm_t = np.arange(5000) / fs
    rhythm = {name: np.zeros_like(rhythm_t) for name in LEADS}

    def rec(onset: float, amp: float, pid: str = PATIENT_ID):
        medians = {name: beat(t, onset, amp if name == "V2" else 1.0) for name in LEADS}
        return recording([group(rhythm, fs), group(medians, fs, label="MEDIAN BEAT", index=1)], patient_id=pid)

    return rec(0.40, 1.0), rec(0.40 + shift_s, 0.5)


def test_estimated_onset_finds_the_qrs_start():
    cur, prior = serial_pair()
    assert estimate_qrs_onset(median_beats(cur)) == pytest.approx(200, abs=3)
    assert estimate_qrs_onset(median_beats(prior)) == pytest.approx(225, abs=3)


def test_overlay_aligns_both_beats_on_qrs_onset_and_marks_changed_leads():
    cur, prior = serial_pair(shift_s=0.05)
    page = layout_overlay(cur, prior, changed_leads=["V2"])
    assert page.layout == "overlay"
    for lead in LEADS:
        panel = page.panel(lead)
        (c,) = [p for p in page.traces("trace") if p.lead == lead]
        (p,) = [p for p in page.traces("prior") if p.lead == lead]
        # The R peaks (40 ms after onset) land on the same x: 0.4 s + 0.04 s after the panel start.
        peaks = [poly.points[np.argmin(poly.points[:, 1]), 0] for poly in (c, p)]
        assert abs(peaks[0] - peaks[1]) <= 0.05 + 1e-6  # within one sample (2 ms = 0.05 mm)
        assert peaks[0] == pytest.approx(panel.x + (0.40 + 0.04) * 25.0, abs=0.15)
        assert p.stroke.dash_mm and not c.stroke.dash_mm and p.stroke.colour != c.stroke.colour
        assert panel.changed == (lead == "V2")
    assert [r.role for r in page.rects] == ["changed"]
    rect = page.rects[0]
    v2 = page.panel("V2")
    assert rect.x < v2.x < rect.x + rect.width
    root = parse_svg(to_svg(page))
    assert any(el.text == "V2  changed" for el in svg_texts(root, "lead-label"))
    assert len(svg_polylines(root, "prior")) == 12
    to_pdf(page)


def test_overlay_accepts_median_arrays_and_explicit_alignment():
    cur, prior = serial_pair()
    t = np.arange(300) / 250.0
    beats = MedianBeats({"II": beat(t, 0.6)}, 250.0, align_index=150)
    page = layout_overlay(cur, prior, current_beats=beats)
    (c,) = [p for p in page.traces("trace") if p.lead == "II"]
    panel = page.panel("II")
    assert c.points[np.argmin(c.points[:, 1]), 0] == pytest.approx(panel.x + 0.44 * 25.0, abs=0.1)
    assert any("median beat absent" in n and "V1 (current)" in n for n in page.notes)
    with pytest.raises(RenderError):
        layout_overlay(cur, prior, current_beats=MedianBeats({"II": beat(t, 0.6)}, 250.0, align_index=999))


def test_overlay_needs_median_beats():
    rec = twelve_lead(sine)
    with pytest.raises(RenderError, match="MEDIAN"):
        layout_overlay(rec, rec)


def test_overlay_of_real_files():
    cur = decode(sample("pydicom/waveform_ecg.dcm"))
    prior = decode(sample("ecgtoolkit/Example.dcm"))
    page = layout_overlay(cur, prior, RenderOptions(speed_mm_s=50), changed_leads=["V2", "V9"])
    assert len(page.traces("prior")) >= 12 and len(page.traces("trace")) >= 12
    assert any("V9" in n for n in page.notes)
    assert any("differs" in n for n in page.notes)  # different patients: said on the page
    # The ECG Toolkit median ends with a -82 mV garbage sample: alignment ignores it.
    assert 200 <= estimate_qrs_onset(median_beats(prior)) <= 230
    assert to_pdf([layout_ecg(cur), page]).startswith(b"%PDF-")
