"""The PDF output: true-scale vector paths, no raster image, readable text, page sizes."""

from __future__ import annotations

import re

import numpy as np
import pytest
from rendersupport import PATIENT_ID, pdf_streams, pdf_subpaths, twelve_lead

from dicom_ecg_node.render import PT_PER_MM, RenderOptions, layout_ecg, to_pdf


def spikes(name, t):
    return np.where(np.isclose(t % 1.0, 0.5), 1.0, 0.0)


@pytest.fixture(scope="module")
def page():
    return layout_ecg(twelve_lead(spikes), RenderOptions(center_baseline=False))


def content(data: bytes) -> bytes:
    """The page content stream (the one with path operators)."""
    return max(pdf_streams(data), key=len)


def test_pdf_is_vector_paths_without_any_image(page):
    for compress in (False, True):
        data = to_pdf(page, compress=compress)
        assert data.startswith(b"%PDF-")
        # ProcSet names /ImageB etc. are boilerplate; an image would be an XObject of Subtype /Image.
        assert b"/Subtype /Image" not in data and b"/XObject" not in data
        stream = content(data)
        assert not re.search(rb"\bDo\b|\bBI\b", stream)  # no XObject drawn, no inline image
        subpaths = pdf_subpaths(stream)
        # 12 lead panels + rhythm strip, each one polyline of 1250 / 5000 samples at 500 Hz, plus the grid.
        long_paths = [p for p in subpaths if len(p) >= 1000]
        assert len(long_paths) == 13
        assert stream.count(b" l\n") > 12 * 1250


def test_pdf_user_space_is_millimetres_and_traces_are_true_scale(page):
    stream = content(to_pdf(page, compress=False))
    scales = [float(a) for a, b in re.findall(rb"([\d.]+) 0 0 ([\d.]+) 0 0 cm", stream) if a == b]
    assert scales[-1] == pytest.approx(PT_PER_MM, rel=1e-5)
    h = page.height_mm
    # The calibration pulses: 6-point paths 5 mm wide and 10 mm high (in mm user space, y up).
    pulses = [p for p in pdf_subpaths(stream) if len(p) == 6 and np.ptp(p[:, 1]) > 0]
    assert len(pulses) == 4
    for p in pulses:
        assert np.ptp(p[:, 1]) == pytest.approx(10.0, abs=0.002)
        top = p[p[:, 1] == p[:, 1].max()]
        assert np.ptp(top[:, 0]) == pytest.approx(5.0, abs=0.002)
        assert (np.ptp(p[:, 1]) * PT_PER_MM) == pytest.approx(28.346, abs=0.01)  # in points on paper
    # Rhythm strip: spikes 1 mV high, 25 mm apart.
    strip = page.panels[-1]
    (path,) = [p for p in pdf_subpaths(stream) if len(p) == 5000]
    tops = path[path[:, 1] == path[:, 1].max()]
    assert np.allclose(np.diff(tops[:, 0]), 25.0, atol=0.002)
    assert tops[0, 1] - (h - strip.baseline_y) == pytest.approx(10.0, abs=0.002)


@pytest.mark.parametrize(("paper", "mediabox"), [("a4", (841.89, 595.28)), ("letter", (792.0, 612.0))])
def test_pdf_page_size_landscape(paper, mediabox):
    data = to_pdf(layout_ecg(twelve_lead(spikes), RenderOptions(paper=paper)))
    m = re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", data)
    assert m is not None
    assert (float(m.group(1)), float(m.group(2))) == (pytest.approx(mediabox[0], abs=0.01),
                                                      pytest.approx(mediabox[1], abs=0.01))


def test_pdf_text_carries_patient_id_and_scale(page):
    stream = content(to_pdf(page, compress=False))
    shown = b"".join(re.findall(rb"\((.*?)\) Tj", stream))
    assert PATIENT_ID.encode() in shown
    assert b"25 mm/s" in shown and b"10 mm/mV" in shown
    assert b"Display filter: none" in shown


def test_pdf_is_reproducible_and_multi_page(page):
    assert to_pdf(page) == to_pdf(page)
    two = to_pdf([page, page])
    assert len(re.findall(rb"/Type /Page\b(?!s)", two)) == 2


def test_non_latin1_name_does_not_break_the_pdf():
    rec = twelve_lead(spikes, patient_name="山田^太郎", patient_id="JP-1")
    data = to_pdf(layout_ecg(rec), compress=False)
    assert b"JP-1" in content(data)
