"""measure() against the ground-truth generator, partial and failed measurements, and read-only inputs."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from dicom_ecg_node.analysis import AnalysisError, EcgMeasurements, measure
from dicom_ecg_node.analysis.simulate import SimulatedEcg, simulate_ecg
from dicom_ecg_node.errors import EcgNodeError
from dicom_ecg_node.waveform.model import Recording

# Issue 6 tolerances.
HR_TOL, QRS_TOL, QT_TOL, ST_TOL = 2.0, 20.0, 30.0, 30.0
_ST = {"V2": 150.0, "V3": 220.0, "V4": 120.0, "II": -80.0, "aVF": 110.0, "III": 130.0}

GRID = [
    pytest.param(hr, qrs, noise, artefacts,
                 id=f"hr{hr}-qrs{qrs}-noise{noise}{'-wander-mains-pvc' if artefacts else ''}")
    for hr, qrs, noise, artefacts in itertools.product((50, 75, 100, 130), (80, 110, 140), (0, 10, 25), (False, True))
]


def _case(hr: int, qrs: int, noise: int, artefacts: bool) -> SimulatedEcg:
    return simulate_ecg(heart_rate_bpm=hr, qrs_ms=qrs, noise_uv=noise, st_uv=_ST,
                        wander_uv=300.0 if artefacts else 0.0, mains_uv=150.0 if artefacts else 0.0,
                        mains_hz=60.0 if hr % 2 else 50.0, n_ectopic=1 if artefacts else 0, seed=hr * 7 + qrs + noise)


@pytest.mark.parametrize(("hr", "qrs", "noise", "artefacts"), GRID)
def test_accuracy_grid(hr: int, qrs: int, noise: int, artefacts: bool) -> None:
    sim = _case(hr, qrs, noise, artefacts)
    m = measure(sim.recording)
    t = sim.truth
    assert m.source == "median-computed"
    assert m.heart_rate_bpm == pytest.approx(t.heart_rate_bpm, abs=HR_TOL)
    assert m.qrs_ms == pytest.approx(t.qrs_ms, abs=QRS_TOL)
    assert m.qt_ms == pytest.approx(t.qt_ms, abs=QT_TOL)
    assert m.pr_ms == pytest.approx(t.pr_ms, abs=30.0)
    assert m.axis_deg == pytest.approx(t.axis_deg, abs=10.0)
    for lead, truth in t.leads.items():
        got = m.leads[lead]
        assert got.st_j_uv == pytest.approx(truth.st_j_uv, abs=ST_TOL), lead
        assert got.st_j60_uv == pytest.approx(truth.st_j60_uv, abs=ST_TOL + 15), lead
        assert got.st_j80_uv == pytest.approx(truth.st_j80_uv, abs=ST_TOL + 25), lead
        assert got.r_amplitude_uv == pytest.approx(truth.r_amplitude_uv, abs=0.05 * truth.r_amplitude_uv + 40), lead
        assert got.s_amplitude_uv == pytest.approx(truth.s_amplitude_uv, abs=0.05 * -truth.s_amplitude_uv + 40), lead
        assert got.t_amplitude_uv == pytest.approx(truth.t_amplitude_uv, abs=0.1 * abs(truth.t_amplitude_uv) + 30)
    if artefacts:
        assert m.beats_rejected >= 1  # the ectopic beat at least


def test_ectopic_beats_are_left_out_but_counted_in_the_rate() -> None:
    sim = simulate_ecg(heart_rate_bpm=60, n_ectopic=2, seed=11)
    m = measure(sim.recording)
    assert m.beats_used + m.beats_rejected == len(sim.truth.onsets)
    assert m.beats_rejected >= 2
    assert any("morphology 2" in n for n in m.notes)
    assert m.heart_rate_bpm == pytest.approx(sim.truth.heart_rate_bpm, abs=HR_TOL)


@pytest.mark.parametrize("fs", [250.0, 1000.0])
def test_other_sampling_rates(fs: float) -> None:
    sim = simulate_ecg(sampling_frequency=fs, st_uv={"V2": 200.0, "V3": 200.0}, noise_uv=10.0, seed=4)
    m = measure(sim.recording)
    assert m.qrs_ms == pytest.approx(sim.truth.qrs_ms, abs=QRS_TOL)
    assert m.qt_ms == pytest.approx(sim.truth.qt_ms, abs=QT_TOL)
    assert m.leads["V2"].st_j_uv == pytest.approx(200.0, abs=ST_TOL)


def test_qtc_formulas() -> None:
    sim = simulate_ecg(heart_rate_bpm=90, seed=2)
    bazett = measure(sim.recording)
    fridericia = measure(sim.recording, qtc_formula="fridericia")
    rr_s = bazett.rr_ms / 1000
    assert bazett.qtc_formula == "bazett" and fridericia.qtc_formula == "fridericia"
    assert bazett.qtc_ms == pytest.approx(bazett.qt_ms / rr_s ** 0.5, abs=0.2)
    assert fridericia.qtc_ms == pytest.approx(bazett.qt_ms / rr_s ** (1 / 3), abs=0.2)
    assert bazett.qtc_fridericia_ms == fridericia.qtc_ms
    assert bazett.qtc("fridericia") == fridericia.qtc_ms
    with pytest.raises(AnalysisError):
        measure(sim.recording, qtc_formula="hodges")


def test_arrays_of_the_recording_are_not_modified() -> None:
    sim = simulate_ecg(noise_uv=20.0, wander_uv=300.0, mains_uv=100.0, include_median=True, seed=8)
    before = [(g.samples.copy(), g.raw.copy()) for g in sim.recording.groups]
    for g in sim.recording.groups:
        g.samples.flags.writeable = False  # any in-place write would raise
    measure(sim.recording)
    for g, (samples, raw) in zip(sim.recording.groups, before, strict=True):
        assert np.array_equal(g.samples, samples)
        assert np.array_equal(g.raw, raw)


def test_cart_median_used_when_consistent() -> None:
    sim = simulate_ecg(include_median=True, noise_uv=10.0, st_uv={"V2": 200.0, "V3": 200.0}, seed=9)
    m = measure(sim.recording)
    assert m.source == "cart-median"
    assert m.leads["V2"].st_j_uv == pytest.approx(200.0, abs=ST_TOL)
    assert measure(sim.recording, use_cart_median=False).source == "median-computed"


def test_cart_median_ignored_when_it_disagrees() -> None:
    sim = simulate_ecg(include_median=True, seed=9)
    other = simulate_ecg(include_median=True, axis_deg=-60.0, t_scale=dict.fromkeys(("V2", "V3", "V4"), -1.0),
                         seed=9)
    rec = dataclasses.replace(sim.recording, groups=[sim.recording.groups[0], other.recording.groups[1]])
    m = measure(rec)
    assert m.source == "median-computed"
    assert any("cart median beat not used" in n for n in m.notes)


def _with_channels(rec: Recording, keep: list[int]) -> Recording:
    g = rec.groups[0]
    group = dataclasses.replace(g, channels=[g.channels[i] for i in keep], raw=g.raw[:, keep],
                                samples=g.samples[:, keep])
    return dataclasses.replace(rec, groups=[group])


def test_missing_leads_give_a_partial_result_with_notes() -> None:
    sim = simulate_ecg(seed=3)
    rec = _with_channels(sim.recording, [1, 2, 6, 7, 8])  # II, III, V1-V3 only
    m = measure(rec)
    assert "I" in m.leads and "aVF" in m.leads  # derived from II and III
    assert "V4" not in m.leads
    assert any("lead I derived" in n for n in m.notes)
    assert any("leads absent: V4, V5, V6" in n for n in m.notes)
    assert m.axis_deg == pytest.approx(sim.truth.axis_deg, abs=10)

    rec = _with_channels(sim.recording, [6, 7, 8, 9, 10, 11])  # precordial only: no axis
    m = measure(rec)
    assert m.axis_deg is None
    assert any("QRS axis not measured" in n for n in m.notes)
    assert m.qrs_ms is not None


def test_no_p_wave_gives_pr_none_with_a_reason() -> None:
    sim = simulate_ecg(seed=3)
    x = sim.recording.groups[0].samples.copy()
    # remove the P waves: subtract the generator's own P contribution by rebuilding without it is not exposed, so
    # blank the 200 ms before each QRS onset instead (flat PR region: junctional rhythm)
    for on in sim.truth.onsets:
        lo = max(0, on - 100)
        x[lo:on] = x[lo - 1] if lo > 0 else 0.0
    group = dataclasses.replace(sim.recording.groups[0], samples=x)
    m = measure(dataclasses.replace(sim.recording, groups=[group]))
    assert m.pr_ms is None
    assert any("no P wave" in n for n in m.notes)
    assert m.qrs_ms is not None


@pytest.mark.parametrize(("case", "reason"), [
    ("short", "too-short"), ("flat", "no-beats"), ("no-leads", "no-leads"), ("low-rate", "low-rate"),
])
def test_unmeasurable_recordings_raise(case: str, reason: str) -> None:
    rec = simulate_ecg(seed=1).recording
    g = rec.groups[0]
    if case == "short":
        group = dataclasses.replace(g, n_samples=800, samples=g.samples[:800], raw=g.raw[:800])
    elif case == "flat":
        group = dataclasses.replace(g, samples=np.zeros_like(g.samples))
    elif case == "no-leads":
        group = dataclasses.replace(g, channels=[dataclasses.replace(c, label="Resp", source=None)
                                                 for c in g.channels])
    else:
        group = dataclasses.replace(g, sampling_frequency=80.0)
    with pytest.raises(AnalysisError) as err:
        measure(dataclasses.replace(rec, groups=[group]))
    assert err.value.reason == reason
    assert isinstance(err.value, EcgNodeError)


def test_millivolt_channels_are_scaled() -> None:
    rec = simulate_ecg(st_uv={"V2": 200.0, "V3": 200.0}, seed=6).recording
    g = rec.groups[0]
    group = dataclasses.replace(g, samples=g.samples / 1000.0,
                                channels=[dataclasses.replace(c, units="mV") for c in g.channels])
    m = measure(dataclasses.replace(rec, groups=[group]))
    assert m.leads["V2"].st_j_uv == pytest.approx(200.0, abs=ST_TOL)


def test_patient_fields_and_median_are_returned() -> None:
    m = measure(simulate_ecg(sex="F", birth_date="19900615", seed=1).recording)
    assert isinstance(m, EcgMeasurements)
    assert m.patient_sex == "F" and m.patient_age_years == 35
    assert m.median is not None and m.median.leads[0] == "I"
    assert set(m.median.fiducials_ms) == {"p_on", "qrs_on", "qrs_off", "t_end"}
