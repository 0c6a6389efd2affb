"""The ground-truth generator itself: what it puts in is what it says it put in."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from dicom_ecg_node.analysis.leads import STANDARD_LEADS, canonical_lead
from dicom_ecg_node.analysis.simulate import simulate_ecg


def test_intervals_and_rate_are_exact_on_the_clean_beat() -> None:
    sim = simulate_ecg(heart_rate_bpm=75, pr_ms=170, qrs_ms=100, qt_ms=390, rr_jitter=0.0, seed=3)
    truth = sim.truth
    assert truth.heart_rate_bpm == pytest.approx(75, abs=0.2)
    assert (truth.pr_ms, truth.qrs_ms, truth.qt_ms) == (170, 100, pytest.approx(390))
    fs = sim.recording.groups[0].sampling_frequency
    beat, on = truth.template, truth.template_onset
    active = np.abs(beat).max(axis=1) > 0.5
    first, last = np.flatnonzero(active)[[0, -1]]
    assert (on - first) / fs * 1000 == pytest.approx(170, abs=4)  # P onset
    assert (last - on) / fs * 1000 == pytest.approx(390, abs=4)  # T end
    assert np.abs(beat[on + round(0.100 * fs):on + round(0.140 * fs)]).max() < 1.0  # silent ST before T starts


def test_st_offsets_and_t_scale_per_lead() -> None:
    sim = simulate_ecg(st_uv={"V2": 250.0, "III": -120.0}, st_slope_uv={"III": -40.0}, t_scale={"V5": -1.0})
    leads = sim.truth.leads
    assert leads["V2"].st_j_uv == pytest.approx(250.0)
    assert leads["III"].st_j_uv == pytest.approx(-120.0)
    assert leads["III"].st_j80_uv < leads["III"].st_j_uv  # downsloping
    assert leads["I"].st_j_uv == pytest.approx(0.0, abs=1e-9)
    assert leads["V5"].t_amplitude_uv < -250.0


def test_einthoven_and_goldberger_hold_without_per_lead_changes() -> None:
    x = simulate_ecg(seed=1).recording.groups[0].samples
    lead = {name: x[:, i] for i, name in enumerate(STANDARD_LEADS)}
    assert np.abs(lead["III"] - (lead["II"] - lead["I"])).max() <= 2.0  # 1 µV rounding each
    assert np.abs(lead["aVF"] - (lead["II"] - lead["I"] / 2)).max() <= 2.0


def test_noise_wander_and_mains_have_the_asked_size() -> None:
    clean = simulate_ecg(seed=5).recording.groups[0].samples
    fs = 500.0
    noisy = simulate_ecg(seed=5, noise_uv=30.0).recording.groups[0].samples
    assert np.std(noisy - clean, axis=0).mean() == pytest.approx(30.0, rel=0.1)
    mains = simulate_ecg(seed=5, mains_uv=100.0, mains_hz=60.0).recording.groups[0].samples - clean
    f, p = signal.periodogram(mains[:, 0], fs)
    assert f[np.argmax(p)] == pytest.approx(60.0, abs=0.2)
    wander = simulate_ecg(seed=5, wander_uv=300.0).recording.groups[0].samples - clean
    assert 150.0 < np.abs(wander).max() < 800.0
    f, p = signal.periodogram(wander[:, 1], fs)
    assert f[np.argmax(p)] < 0.5


def test_ectopic_beats_are_premature_and_followed_by_a_pause() -> None:
    sim = simulate_ecg(heart_rate_bpm=60, n_ectopic=2, rr_jitter=0.0, seed=2)
    onsets, ectopic = sim.truth.onsets, sim.truth.ectopic
    assert ectopic.sum() == 2
    rr = np.diff(onsets)
    for k in np.flatnonzero(ectopic):
        assert rr[k - 1] == pytest.approx(300, abs=2)  # 60 % of 500 samples
        assert rr[k] == pytest.approx(700, abs=2)  # compensatory pause


@pytest.mark.parametrize("style", ["plain", "long", "mdc"])
def test_label_styles_map_back_to_the_standard_leads(style: str) -> None:
    rec = simulate_ecg(label_style=style, include_median=True).recording
    for group in rec.groups:
        assert tuple(canonical_lead(c) for c in group.channels) == STANDARD_LEADS
    assert rec.group("MEDIAN BEAT").n_samples == 600
