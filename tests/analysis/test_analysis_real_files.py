"""Real ECGs in sample_data/: measured, and compared with the cart's own measurements stored in them.

Not a pass/fail against the cart (carts disagree among themselves by 10-20 ms): the differences are printed
(``pytest -s``) and only sanity ranges are asserted.
"""

from __future__ import annotations

import pytest
from helpers import sample

from dicom_ecg_node.analysis import AnalysisError, compare, measure
from dicom_ecg_node.waveform import decode

# cart concept meaning (as sent) -> our attribute
_CART = {"heart rate": "heart_rate_bpm", "rr interval": "rr_ms", "pr interval": "pr_ms", "qrs duration": "qrs_ms",
         "qt interval": "qt_ms", "qtc interval": "qtc_ms"}

FILES = ["pydicom/waveform_ecg.dcm", "pixelmed/39da47b7.dcm", "pixelmed/1074466202.fixed.dcm",
         "ecgtoolkit/Example.dcm", "cabolabs-dicom-waveform/Example.dcm"]


@pytest.mark.parametrize("rel", FILES)
def test_real_file_measured_and_compared_with_the_cart(rel: str) -> None:
    rec = decode(sample(rel))
    m = measure(rec)
    cart = {}
    for item in rec.measurements:
        meaning = item.concept.meaning.casefold()
        if meaning in _CART:
            cart[_CART[meaning]] = item.value
        elif meaning == "qrs axis" and item.concept.value == "5.10.3-13":
            cart["axis_deg"] = item.value
    print(f"\n{rel}: source {m.source}, beats used {m.beats_used}, rejected {m.beats_rejected}")
    for name in ("heart_rate_bpm", "rr_ms", "pr_ms", "qrs_ms", "qt_ms", "qtc_ms", "axis_deg"):
        ours, theirs = getattr(m, name), cart.get(name)
        diff = "" if ours is None or theirs is None else f"  (ours - cart = {ours - theirs:+.1f})"
        print(f"  {name:15s} ours {ours!s:>7}  cart {theirs!s:>7}{diff}")
    print("  notes:", "; ".join(m.notes) or "-")

    assert 40 <= m.heart_rate_bpm <= 120
    assert m.qrs_ms is not None and 60 <= m.qrs_ms <= 200
    assert m.qt_ms is not None and 300 <= m.qt_ms <= 500
    assert m.pr_ms is None or 100 <= m.pr_ms <= 250
    assert len(m.leads) == 12
    assert all(lm.st_j_uv is not None and abs(lm.st_j_uv) < 300 for lm in m.leads.values())
    if "heart_rate_bpm" in cart:
        assert abs(m.heart_rate_bpm - cart["heart_rate_bpm"]) <= 3
    if "qrs_ms" in cart:
        assert abs(m.qrs_ms - cart["qrs_ms"]) <= 30
    if "qt_ms" in cart:
        assert abs(m.qt_ms - cart["qt_ms"]) <= 40
    # an ECG compared with itself changes nothing
    assert compare(m, m) == []


def test_cart_median_used_in_the_mortara_file() -> None:
    m = measure(decode(sample("pydicom/waveform_ecg.dcm")))
    assert m.source == "cart-median"
    own = measure(decode(sample("pydicom/waveform_ecg.dcm")), use_cart_median=False)
    assert own.source == "median-computed"
    assert abs(m.qt_ms - own.qt_ms) <= 20


def test_one_lead_second_long_file_is_refused() -> None:
    with pytest.raises(AnalysisError) as err:
        measure(decode(sample("cabolabs-dicom-waveform/out2_attrs.dcm")))
    assert err.value.reason == "too-short"
