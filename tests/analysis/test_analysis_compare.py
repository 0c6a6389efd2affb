"""compare(): every rule just above and just below its threshold, both sexes, both age bands, contiguity."""

from __future__ import annotations

import dataclasses

import pytest

from dicom_ecg_node.analysis import THRESHOLDS, AnalysisError, EcgMeasurements, LeadMeasurements, compare, evaluate
from dicom_ecg_node.analysis.compare import axis_category
from dicom_ecg_node.analysis.leads import STANDARD_LEADS

EPS = 1.0


def ecg(*, st: dict[str, float] | None = None, st80: dict[str, float] | None = None,
        t: dict[str, float] | None = None, r: dict[str, float] | None = None, s: dict[str, float] | None = None,
        qtc: float = 420.0, qrs: float = 90.0, axis: float = 45.0, hr: float = 70.0, sex: str | None = "M",
        age: int | None = 55) -> EcgMeasurements:
    """Hand-made measurements: flat ST, upright T, R 800 / S -200 in every lead unless said otherwise."""
    st, st80, t, r, s = st or {}, st80 or {}, t or {}, r or {}, s or {}
    leads = {}
    for name in STANDARD_LEADS:
        j = st.get(name, 0.0)
        # aVR mirrors the other leads: T negative, R small
        leads[name] = LeadMeasurements(
            st_j_uv=j, st_j60_uv=j, st_j80_uv=st80.get(name, j),
            t_amplitude_uv=t.get(name, -200.0 if name == "aVR" else 250.0),
            r_amplitude_uv=r.get(name, 100.0 if name == "aVR" else 800.0),
            s_amplitude_uv=s.get(name, -700.0 if name == "aVR" else -200.0), q_duration_ms=0.0, q_amplitude_uv=0.0)
    rr = 60000.0 / hr
    return EcgMeasurements(heart_rate_bpm=hr, rr_ms=rr, pr_ms=160.0, qrs_ms=qrs, qt_ms=qtc * (rr / 1000) ** 0.5,
                           qtc_ms=qtc, qtc_formula="bazett", qtc_bazett_ms=qtc, qtc_fridericia_ms=qtc - 10,
                           axis_deg=axis, source="median-computed", beats_used=10, beats_rejected=0, leads=leads,
                           patient_sex=sex, patient_age_years=age)


def rules(flags: list) -> set[str]:
    return {f.rule for f in flags}


# ---- st-elevation: UDMI 2018 cut-points ---------------------------------------------------------------------

@pytest.mark.parametrize(("sex", "age", "cut"), [("M", 40, 200.0), ("M", 65, 200.0), ("M", 39, 250.0),
                                                 ("M", 25, 250.0), ("F", 30, 150.0), ("F", 70, 150.0)])
@pytest.mark.parametrize("delta", [+EPS, -EPS, 0.0])
def test_st_elevation_v2_v3_cut_points(sex: str, age: int, cut: float, delta: float) -> None:
    prior = ecg(sex=sex, age=age)
    current = ecg(st={"V2": cut + delta, "V3": cut + delta}, sex=sex, age=age)
    flags = [f for f in compare(current, prior) if f.rule == "st-elevation"]
    if delta >= 0:  # ">= cut-point"
        assert len(flags) == 1
        flag = flags[0]
        assert flag.leads == ("V2", "V3")
        assert flag.threshold == {"V2": cut, "V3": cut}
        assert flag.values["V2.st_j_uv"] == (0.0, cut + delta)
        assert "V3.st_j60_uv" in flag.values and "V3.st_j80_uv" in flag.values
        assert "Thygesen" in flag.source
    else:
        assert flags == []


@pytest.mark.parametrize("delta", [+EPS, 0.0, -EPS])
@pytest.mark.parametrize(("leads", "sex"), [(("II", "aVF"), "M"), (("V4", "V5"), "F"), (("aVL", "I"), "F"),
                                            (("V1", "V2"), "M")])
def test_st_elevation_other_leads_100_uv(leads: tuple[str, str], sex: str, delta: float) -> None:
    # V1-V2 pair: V1 uses 100 µV, V2 the V2-V3 cut (men >= 40: 200)
    values = {lead: (200.0 if lead in ("V2", "V3") else 100.0) + delta for lead in leads}
    flags = [f for f in compare(ecg(st=values, sex=sex), ecg(sex=sex)) if f.rule == "st-elevation"]
    assert (len(flags) == 1) == (delta >= 0)


def test_st_elevation_age_from_patient_age_override() -> None:
    current = ecg(st={"V2": 220.0, "V3": 220.0}, age=None)
    assert rules(compare(current, ecg(age=None), age_years=35)) == set()  # 250 for men < 40
    assert rules(compare(current, ecg(age=None), age_years=45)) == {"st-elevation"}


def test_st_elevation_fallbacks_are_said() -> None:
    # unknown sex: lowest cut-point (women's 150) and the flag says so
    flags = compare(ecg(st={"V2": 160.0, "V3": 160.0}, sex=None), ecg(sex=None))
    assert [f.rule for f in flags] == ["st-elevation"]
    assert "sex unknown" in flags[0].detail and flags[0].threshold["V2"] == 150.0
    # man of unknown age: the lower men's cut-point (200), said
    flags = compare(ecg(st={"V2": 205.0, "V3": 205.0}, age=None), ecg(age=None))
    assert "age unknown" in flags[0].detail and flags[0].threshold["V2"] == 200.0
    # explicit sex argument wins over the recordings'
    assert compare(ecg(st={"V2": 160.0, "V3": 160.0}, sex=None), ecg(sex=None), sex="M") == []


def test_st_elevation_contiguity() -> None:
    prior = ecg()
    assert compare(ecg(st={"V3": 400.0}), prior) == []  # single lead
    assert compare(ecg(st={"V2": 400.0, "V4": 400.0}), prior) == []  # not contiguous
    assert compare(ecg(st={"I": 150.0, "II": 150.0}), prior) == []  # -aVR lies between I and II
    assert compare(ecg(st={"aVL": 150.0, "III": 150.0}), prior) == []  # ends of the Cabrera order
    assert compare(ecg(st={"aVR": 150.0, "II": 150.0}), prior) == []  # aVR elevation is -aVR depression
    flags = compare(ecg(st={"aVR": -150.0, "II": 150.0}), prior)  # -aVR elevated, next to II
    assert flags[0].leads == ("-aVR", "II")
    assert flags[0].values["-aVR.st_j_uv"] == (-0.0, 150.0)
    flags = compare(ecg(st={"II": 150.0, "aVF": 150.0, "III": 150.0, "V5": 150.0}), prior)
    assert flags[0].leads == ("II", "aVF", "III")  # V5 alone is not part of it


def test_st_elevation_must_be_new() -> None:
    st = {"V2": 300.0, "V3": 300.0}
    assert compare(ecg(st=st), ecg(st=st)) == []  # already there
    assert compare(ecg(st={"V2": 300.0, "V3": 300.0, "V4": 150.0}), ecg(st=st)) == []  # only V4 new: alone
    flags = compare(ecg(st={**st, "V4": 150.0, "V5": 150.0}), ecg(st=st))
    assert flags[0].leads == ("V4", "V5")


# ---- st-depression ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("j", "j80", "flagged"), [
    (-50.0, -50.0, True), (-49.0, -49.0, False), (-60.0, -90.0, True),  # horizontal, just below, downsloping
    (-60.0, -35.0, True), (-60.0, -34.0, False),  # rise of 25 µV is still horizontal, 26 µV is upsloping
])
def test_st_depression(j: float, j80: float, flagged: bool) -> None:
    current = ecg(st={"V5": j, "V6": j}, st80={"V5": j80, "V6": j80})
    assert ("st-depression" in rules(compare(current, ecg()))) is flagged
    assert "st-depression" not in rules(compare(ecg(st={"V5": j}, st80={"V5": j80}), ecg()))  # one lead


# ---- t-inversion --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("t", "r", "s", "flagged"), [
    (-101.0, 800.0, -200.0, True), (-100.0, 800.0, -200.0, False),  # "> 1 mm"
    (-150.0, 500.0, -900.0, True),  # prominent R (>= 500 µV) though R/S < 1
    (-150.0, 499.0, -900.0, False),  # neither prominent R nor R/S > 1
    (-150.0, 301.0, -300.0, True), (-150.0, 300.0, -300.0, False),  # R/S just above / at 1
])
def test_t_inversion(t: float, r: float, s: float, flagged: bool) -> None:
    current = ecg(t={"V4": t, "V5": t}, r={"V4": r, "V5": r}, s={"V4": s, "V5": s})
    assert ("t-inversion" in rules(compare(current, ecg()))) is flagged


def test_t_inversion_new_and_contiguous_only() -> None:
    inverted = {"V1": -200.0, "V2": -200.0}
    assert "t-inversion" not in rules(compare(ecg(t=inverted), ecg(t=inverted)))
    assert "t-inversion" not in rules(compare(ecg(t={"V1": -200.0, "V3": -200.0}), ecg()))
    # -aVR: aVR's T turning positive is an inverted T in -aVR; R of -aVR is aVR's S (700 µV: prominent)
    flags = compare(ecg(t={"aVR": 150.0, "I": -150.0}), ecg())
    assert flags[0].rule == "t-inversion" and flags[0].leads == ("I", "-aVR")


# ---- global rules -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("before", "after", "qrs", "flagged"), [
    (450.0, 501.0, 90.0, True), (450.0, 500.0, 90.0, False),  # > 500
    (400.0, 461.0, 90.0, True), (400.0, 460.0, 90.0, False),  # rise > 60
    (480.0, 540.0, 130.0, False), (490.0, 551.0, 130.0, True),  # QRS > 120: limit 550 (rise 60 not > 60)
    (480.0, 520.0, 120.0, True),  # QRS exactly 120: the 500 ms limit still applies
    (510.0, 520.0, 90.0, False),  # already above 500, small rise: not new
])
def test_qtc_prolongation(before: float, after: float, qrs: float, flagged: bool) -> None:
    flags = [f for f in compare(ecg(qtc=after, qrs=qrs), ecg(qtc=before, qrs=qrs)) if f.rule == "qtc-prolongation"]
    assert bool(flags) is flagged
    if flags:
        assert flags[0].values["qtc_ms"] == (before, after) and flags[0].leads == ()
        assert "Drew" in flags[0].source


@pytest.mark.parametrize(("before", "after", "flagged"), [
    (110.0, 120.0, True), (110.0, 119.0, False), (120.0, 140.0, False), (119.0, 121.0, True)])
def test_qrs_widening(before: float, after: float, flagged: bool) -> None:
    assert ("qrs-widening" in rules(compare(ecg(qrs=after), ecg(qrs=before)))) is flagged


@pytest.mark.parametrize(("before", "after", "flagged"), [
    (-25.0, -35.0, True), (-28.0, -32.0, False),  # crosses -30; the second moves less than 10 degrees
    (-30.0, -40.0, True), (85.0, 95.0, True), (90.0, 100.0, True), (80.0, 89.0, False),
    (60.0, 120.0, True), (-60.0, -80.0, False), (-80.0, -100.0, True), (170.0, -170.0, True),
])
def test_axis_change(before: float, after: float, flagged: bool) -> None:
    assert ("axis-change" in rules(compare(ecg(axis=after), ecg(axis=before)))) is flagged


def test_axis_categories() -> None:
    assert [axis_category(a) for a in (-30, 90, -31, 91, 180, -90, -91, -180)] == [
        "normal", "normal", "left", "right", "right", "left", "extreme", "right"]


@pytest.mark.parametrize(("before", "after", "flagged"), [(70.0, 90.0, True), (70.0, 89.0, False),
                                                          (90.0, 70.0, True), (90.0, 71.0, False)])
def test_hr_change(before: float, after: float, flagged: bool) -> None:
    assert ("hr-change" in rules(compare(ecg(hr=after), ecg(hr=before)))) is flagged


# ---- the table ----------------------------------------------------------------------------------------------

def test_every_threshold_has_a_source_and_overrides_work() -> None:
    assert all(t.source and t.unit for t in THRESHOLDS.values())
    current, prior = ecg(hr=80.0), ecg(hr=70.0)
    assert compare(current, prior) == []
    flags = compare(current, prior, thresholds={"hr_change_bpm": 10})
    assert flags[0].rule == "hr-change" and flags[0].threshold == {"hr_change_bpm": 10.0}
    assert "overridden" in flags[0].source
    with pytest.raises(AnalysisError, match="unknown name"):
        compare(current, prior, thresholds={"hr_change": 10})
    with pytest.raises(AnalysisError, match="not a number"):
        compare(current, prior, thresholds={"hr_change_bpm": "ten"})
    with pytest.raises(TypeError):
        THRESHOLDS["hr_change_bpm"] = THRESHOLDS["qrs_wide_ms"]  # type: ignore[index]


def test_missing_values_are_listed_not_flagged() -> None:
    current = dataclasses.replace(ecg(), qtc_ms=None, qtc_bazett_ms=None, qt_ms=None, axis_deg=None)
    result = evaluate(current, ecg())
    assert result.flags == []
    assert set(result.not_evaluated) == {"qtc-prolongation", "axis-change"}
