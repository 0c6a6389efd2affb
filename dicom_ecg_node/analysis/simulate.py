"""Synthetic 12-lead ECGs with ground truth, for the analysis tests and ``scripts/bench_serial.py``.

Unlike :mod:`dicom_ecg_node.waveform.synth` (Gaussian waves, whose onsets and ends are a matter of convention),
every wave here has compact support, so each interval has one exact true value:

* P, Q, R, S are raised-cosine (Hann) bumps; T is an asymmetric bump (slow rise over 62 %, faster fall over 38 %,
  as real T waves are); QRS onset is the start of the Q bump, QRS offset (J) the end of the S bump, T end the end
  of the T bump, P onset the start of the P bump.
* Limb leads come from frontal-plane vectors (lead I at 0 degrees, II at +60 degrees) and III, aVR, aVL, aVF are
  derived by Einthoven's and Goldberger's relations; V1-V6 come from a table of typical R/S progression.
* An ST deviation is added per lead (any lead, independently): it ramps in over the last 20 ms of the QRS, holds
  its J level, moves linearly to the J+80 ms level (``st_slope_uv``), then tapers to zero at T end.
* Options: muscle noise (band-limited 20-150 Hz Gaussian), respiratory baseline wander, 50/60 Hz mains,
  RR jitter, premature ventricular ectopic beats with a compensatory pause, and a noise-free "MEDIAN BEAT" group.

Per-lead ground truth (:class:`LeadTruth`) is computed from the noise-free beat with the definitions
:func:`dicom_ecg_node.analysis.measure` documents, at the exact fiducials.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
from scipy import signal

from dicom_ecg_node.analysis.leads import STANDARD_LEADS
from dicom_ecg_node.waveform.model import Channel, CodedConcept, MultiplexGroup, Recording

FloatArray = npt.NDArray[np.float64]

_SCPECG = {"I": 1, "II": 2, "V1": 3, "V2": 4, "V3": 5, "V4": 6, "V5": 7, "V6": 8,
           "III": 61, "aVR": 62, "aVL": 63, "aVF": 64}
# Precordial (Q, R, S, P, T) amplitudes in µV: rS in V1 to qR in V6, transition at V3-V4.
_PRECORDIAL: dict[str, tuple[float, float, float, float, float]] = {
    "V1": (80.0, 150.0, -900.0, 60.0, 80.0),
    "V2": (60.0, 350.0, -1300.0, 70.0, 350.0),
    "V3": (0.0, 700.0, -800.0, 70.0, 450.0),
    "V4": (-50.0, 1300.0, -450.0, 70.0, 400.0),
    "V5": (-100.0, 1400.0, -250.0, 60.0, 320.0),
    "V6": (-120.0, 1100.0, -120.0, 50.0, 250.0),
}
_TRUTH_FS = 10_000.0  # evaluation grid of the ground truth


@dataclass(frozen=True, slots=True)
class LeadTruth:
    """True per-lead values (same definitions and units as :class:`~dicom_ecg_node.analysis.LeadMeasurements`)."""

    st_j_uv: float
    st_j60_uv: float
    st_j80_uv: float
    t_amplitude_uv: float
    r_amplitude_uv: float
    s_amplitude_uv: float
    q_duration_ms: float
    q_amplitude_uv: float


@dataclass(frozen=True, slots=True)
class SimulationTruth:
    """What the generator put in.

    Attributes
    ----------
    heart_rate_bpm, rr_ms : float
        From the actual beat times (all beats, ectopic ones included).
    pr_ms, qrs_ms, qt_ms, qtc_bazett_ms, qtc_fridericia_ms, axis_deg : float
        Of the dominant (sinus) beat; QTc with the mean RR.
    leads : dict of str to LeadTruth
    onsets : numpy.ndarray
        QRS onset sample of every beat.
    ectopic : numpy.ndarray of bool
        Which beats are ventricular ectopics.
    template : numpy.ndarray
        The noise-free dominant beat, (n, 12) µV, QRS onset at ``template_onset``.
    template_onset : int
    """

    heart_rate_bpm: float
    rr_ms: float
    pr_ms: float
    qrs_ms: float
    qt_ms: float
    qtc_bazett_ms: float
    qtc_fridericia_ms: float
    axis_deg: float
    leads: dict[str, LeadTruth]
    onsets: npt.NDArray[np.intp]
    ectopic: npt.NDArray[np.bool_]
    template: FloatArray
    template_onset: int


@dataclass(frozen=True, slots=True)
class SimulatedEcg:
    """A synthetic recording and its truth."""

    recording: Recording
    truth: SimulationTruth


def _hann(t: FloatArray, t0: float, d: float) -> FloatArray:
    u = (t - t0) / d
    return np.where((u >= 0) & (u <= 1), 0.5 * (1.0 - np.cos(2.0 * np.pi * u)), 0.0)


def _asym(t: FloatArray, t0: float, d: float, rise: float = 0.62) -> FloatArray:
    """Bump rising over ``rise * d`` and falling over the rest (half-cosines), peak 1."""
    dr, df = rise * d, (1.0 - rise) * d
    up = 0.5 * (1.0 - np.cos(np.pi * (t - t0) / dr))
    down = 0.5 * (1.0 + np.cos(np.pi * (t - t0 - dr) / df))
    return np.where((t >= t0) & (t < t0 + dr), up, np.where((t >= t0 + dr) & (t <= t0 + d), down, 0.0))


def _frontal(amplitude: float, angle_deg: float) -> tuple[float, float]:
    """Projections on lead I (0 degrees) and lead II (+60 degrees) of a frontal vector."""
    a = math.radians(angle_deg)
    return amplitude * math.cos(a), amplitude * math.cos(a - math.radians(60.0))


def _limb(i: FloatArray, ii: FloatArray) -> dict[str, FloatArray]:
    return {"I": i, "II": ii, "III": ii - i, "aVR": -(i + ii) / 2.0, "aVL": i - ii / 2.0, "aVF": ii - i / 2.0}


@dataclass(frozen=True, slots=True)
class _Model:
    pr: float
    qrs: float
    qt: float
    axis_deg: float
    st: Mapping[str, float]
    st_slope: Mapping[str, float]
    t_scale: Mapping[str, float]
    r_scale: float

    def beat(self, t: FloatArray) -> dict[str, FloatArray]:
        """Noise-free sinus beat per lead at times ``t`` (s) from QRS onset."""
        w = self.qrs
        p = _hann(t, -self.pr, min(0.110, 0.6 * self.pr))
        q = _hann(t, 0.0, 0.25 * w)
        r = _hann(t, 0.12 * w, 0.60 * w)
        s = _hann(t, 0.55 * w, 0.45 * w)
        tw = _asym(t, w + 0.040, self.qt - w - 0.040)
        parts: dict[str, dict[str, FloatArray]] = {}
        comps = {"P": (p, _frontal(150.0, 60.0)),
                 "QRS": (None, None),
                 "T": (tw, _frontal(300.0, 45.0))}
        # QRS: R along the axis, septal Q rightward-superior, terminal S opposite-ish
        qi, qii = _frontal(150.0, self.axis_deg + 220.0)
        ri, rii = _frontal(1200.0 * self.r_scale, self.axis_deg)
        si, sii = _frontal(300.0, self.axis_deg + 140.0)
        limb_qrs = _limb(qi * q + ri * r + si * s, qii * q + rii * r + sii * s)
        for name, (shape, (a_i, a_ii)) in ((k, v) for k, v in comps.items() if k != "QRS"):
            parts[name] = _limb(a_i * shape, a_ii * shape)
        parts["QRS"] = limb_qrs
        for lead, (qa, ra, sa, pa, ta) in _PRECORDIAL.items():
            parts["P"][lead] = pa * p
            parts["QRS"][lead] = qa * q + ra * self.r_scale * r + sa * s
            parts["T"][lead] = ta * tw
        out: dict[str, FloatArray] = {}
        for lead in STANDARD_LEADS:
            out[lead] = (parts["P"][lead] + parts["QRS"][lead] + self.t_scale.get(lead, 1.0) * parts["T"][lead]
                         + self._st(t, self.st.get(lead, 0.0), self.st_slope.get(lead, 0.0)))
        return out

    def _st(self, t: FloatArray, level: float, slope: float) -> FloatArray:
        if level == 0.0 and slope == 0.0:
            return np.zeros_like(t)
        w, end = self.qrs, self.qt
        ramp = np.where((t >= w - 0.020) & (t < w), level * 0.5 * (1.0 - np.cos(np.pi * (t - w + 0.020) / 0.020)),
                        0.0)
        hold = np.where((t >= w) & (t < w + 0.080), level + slope * (t - w) / 0.080, 0.0)
        tail_len = end - w - 0.080
        taper = np.where((t >= w + 0.080) & (t <= end),
                         (level + slope) * 0.5 * (1.0 + np.cos(np.pi * (t - w - 0.080) / tail_len)), 0.0)
        return ramp + hold + taper


def _pvc(t: FloatArray) -> dict[str, FloatArray]:
    """A wide (150 ms) ventricular ectopic beat with discordant T, no P."""
    qrs = _hann(t, 0.0, 0.150)
    tw = _asym(t, 0.200, 0.220)
    i, ii = _frontal(1500.0, -60.0)
    ti, tii = _frontal(-450.0, -60.0)
    out = _limb(i * qrs + ti * tw, ii * qrs + tii * tw)
    for k, lead in enumerate(("V1", "V2", "V3", "V4", "V5", "V6")):
        out[lead] = (1600.0 - 450.0 * k) * qrs - (500.0 - 120.0 * k) * tw
    return out


def _lead_truth(model: _Model) -> tuple[dict[str, LeadTruth], float]:
    """Per-lead truth and the QRS axis from the noise-free beat, on a 0.1 ms grid."""
    fs = _TRUTH_FS
    w, qt = model.qrs, model.qt
    t = np.arange(round(-0.05 * fs), round((qt + 0.02) * fs) + 1) / fs
    beat = model.beat(t)
    i_on = int(np.searchsorted(t, 0.0))
    i_j = int(np.searchsorted(t, w))
    out: dict[str, LeadTruth] = {}

    def at(y: FloatArray, s: float) -> float:
        return float(np.interp(s, t, y))

    for lead, y in beat.items():
        x = y[i_on:i_j + 1]
        ipk = int(np.argmax(x))
        r = float(x[ipk])
        if r < 20.0:
            r, s, q = 0.0, 0.0, float(x.min())
            back = np.flatnonzero(x[int(np.argmin(x)):] >= 0)
            q_dur = (int(np.argmin(x)) + int(back[0]) if back.size else x.size - 1) / fs * 1000.0
        else:
            pre = x[:ipk]
            q = float(pre.min()) if pre.size and pre.min() <= -20.0 else 0.0
            q_dur = 0.0
            if q < 0:
                nadir = int(np.argmin(pre))
                up = np.flatnonzero((x[nadir:ipk] < 0) & (x[nadir + 1:ipk + 1] >= 0))
                q_dur = (nadir + int(up[0]) + 1 if up.size else ipk) / fs * 1000.0
            post = x[ipk:]
            s = float(post.min()) if post.min() <= -20.0 else 0.0
        seg = y[(t >= w + 0.040) & (t <= qt)]
        out[lead] = LeadTruth(
            st_j_uv=at(y, w), st_j60_uv=at(y, w + 0.060), st_j80_uv=at(y, w + 0.080),
            t_amplitude_uv=float(seg[np.argmax(np.abs(seg))]), r_amplitude_uv=r, s_amplitude_uv=s,
            q_duration_ms=q_dur, q_amplitude_uv=q)
    a_i = float(beat["I"][i_on:i_j + 1].sum())
    a_f = float(beat["aVF"][i_on:i_j + 1].sum())
    axis = math.degrees(math.atan2(2.0 * a_f / math.sqrt(3.0), a_i))
    return out, axis


def _group(label: str, fs: float, data: FloatArray, start: datetime, label_style: str) -> MultiplexGroup:
    channels = []
    for lead in STANDARD_LEADS:
        n = _SCPECG[lead]
        if label_style == "mdc":
            source = CodedConcept(f"2:{n}", "MDC", f"MDC_ECG_LEAD_{lead.upper()}")
            text = f"MDC_ECG_LEAD_{lead.upper()}"
        else:
            source = CodedConcept(f"5.6.3-9-{n}", "SCPECG", f"Lead {lead}")
            text = f"Lead {lead} (Einthoven)" if label_style == "long" and lead == "I" else (
                f"Lead {lead}" if label_style == "long" else lead)
        channels.append(Channel(label=text, source=source, units="uV", sensitivity=1.0, correction_factor=1.0,
                                baseline=0.0, skew_s=0.0, bits_stored=16))
    raw = np.rint(data).astype(np.int32)
    return MultiplexGroup(index=0 if label == "RHYTHM" else 1, label=label, sampling_frequency=fs,
                          n_samples=data.shape[0], channels=channels, raw=raw, samples=raw.astype(np.float64),
                          start=start)


def simulate_ecg(
    *,
    heart_rate_bpm: float = 70.0,
    pr_ms: float = 160.0,
    qrs_ms: float = 90.0,
    qt_ms: float | None = None,
    axis_deg: float = 60.0,
    r_scale: float = 1.0,
    st_uv: Mapping[str, float] | None = None,
    st_slope_uv: Mapping[str, float] | None = None,
    t_scale: Mapping[str, float] | None = None,
    noise_uv: float = 0.0,
    wander_uv: float = 0.0,
    mains_uv: float = 0.0,
    mains_hz: float = 50.0,
    n_ectopic: int = 0,
    rr_jitter: float = 0.02,
    duration_s: float = 10.0,
    sampling_frequency: float = 500.0,
    include_median: bool = False,
    label_style: str = "plain",
    sex: str | None = "M",
    birth_date: str | None = "19700101",
    acquisition_datetime: datetime | None = None,
    seed: int = 0,
) -> SimulatedEcg:
    """Build a synthetic 12-lead :class:`Recording` and its ground truth.

    Parameters
    ----------
    heart_rate_bpm : float
        Mean sinus rate.
    pr_ms, qrs_ms : float
        P onset to QRS onset; QRS onset to J point.
    qt_ms : float, optional
        QRS onset to T end; default from a Bazett QTc of 400 ms.
    axis_deg : float
        Direction of the main R vector in the frontal plane (the measured net-area axis is in the truth).
    r_scale : float
        Scale of the R waves.
    st_uv, st_slope_uv : mapping of lead name to µV, optional
        ST level at J per lead, and its change from J to J+80 ms (negative: downsloping).
    t_scale : mapping of lead name to float, optional
        Multiplier of each lead's T wave (negative inverts it).
    noise_uv : float
        RMS of the muscle noise (20-150 Hz) added to each lead.
    wander_uv : float
        Amplitude of the respiratory baseline wander per lead (0.15-0.35 Hz, same rate in all leads, plus a
        0.03-0.1 Hz drift of half that amplitude).
    mains_uv, mains_hz : float
        Amplitude and frequency of mains interference.
    n_ectopic : int
        Ventricular ectopic beats (coupling 60 % of RR, full compensatory pause).
    rr_jitter : float
        Standard deviation of the relative beat-to-beat RR variation.
    duration_s : float
        Length of the rhythm strip, s.
    sampling_frequency : float
        Hz.
    include_median : bool
        Add a noise-free 1.2 s "MEDIAN BEAT" group as a cart would.
    label_style : {"plain", "long", "mdc"}
        Channel labels ``"I"``, ``"Lead I (Einthoven)"`` or ``"MDC_ECG_LEAD_I"`` (with MDC codes).
    sex, birth_date : str, optional
        Patient's Sex and Birth Date.
    acquisition_datetime : datetime, optional
        Default 2026-01-15 09:30 UTC.
    seed : int
        Seeds every random choice.

    Returns
    -------
    SimulatedEcg
    """
    rng = np.random.default_rng(seed)
    fs = float(sampling_frequency)
    rr = 60.0 / heart_rate_bpm
    qt = (qt_ms / 1000.0) if qt_ms is not None else 0.400 * math.sqrt(rr)
    model = _Model(pr=pr_ms / 1000.0, qrs=qrs_ms / 1000.0, qt=qt, axis_deg=axis_deg, st=dict(st_uv or {}),
                   st_slope=dict(st_slope_uv or {}), t_scale=dict(t_scale or {}), r_scale=r_scale)
    n = round(duration_s * fs)

    # Beat times (QRS onsets): jittered sinus rhythm, some beats replaced by premature ectopics.
    onsets_s: list[float] = []
    ectopic: list[bool] = []
    t_beat = 0.45 + rng.uniform(0.0, 0.3)
    while t_beat < duration_s - 0.05:
        onsets_s.append(t_beat)
        ectopic.append(False)
        t_beat += rr * (1.0 + rr_jitter * float(rng.standard_normal()))
    if n_ectopic:
        candidates = np.arange(2, len(onsets_s) - 2, 3)  # never two ectopics in a row
        for k in sorted(rng.choice(candidates, size=min(n_ectopic, candidates.size), replace=False)):
            # premature at 60 % of the RR; the next sinus beat keeps its time (full compensatory pause)
            onsets_s[k] = onsets_s[k - 1] + 0.6 * rr
            ectopic[k] = True
    onsets = np.round(np.asarray(onsets_s) * fs).astype(np.intp)

    pre, post = round(0.45 * fs), round((qt + 0.05) * fs)
    t_grid = np.arange(-pre, post) / fs
    sinus = model.beat(t_grid)
    sinus_m = np.stack([sinus[lead] for lead in STANDARD_LEADS], axis=1)
    pvc = _pvc(t_grid)
    pvc_m = np.stack([pvc[lead] for lead in STANDARD_LEADS], axis=1)
    data = np.zeros((n + pre + post, 12))
    for o, e in zip(onsets, ectopic, strict=True):
        data[o:o + pre + post] += pvc_m if e else sinus_m
    data = data[pre:pre + n]

    t = np.arange(n) / fs
    if noise_uv > 0:
        sos = signal.butter(4, [20.0, min(150.0, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")
        emg = signal.sosfilt(sos, rng.standard_normal((n + round(fs), 12)), axis=0)[round(fs):]
        data += emg / emg.std(axis=0) * noise_uv
    if wander_uv > 0:
        # respiration (9-21 breaths/min) at full amplitude, plus a slower electrode drift at half of it
        for (f_lo, f_hi), gain in (((0.15, 0.35), 1.0), ((0.03, 0.10), 0.5)):
            f = rng.uniform(f_lo, f_hi)
            phase = rng.uniform(0, 2 * np.pi, 12)
            data += gain * wander_uv * rng.uniform(0.7, 1.0, 12) * np.sin(2 * np.pi * f * t[:, None] + phase)
    if mains_uv > 0:
        data += mains_uv * np.sin(2 * np.pi * mains_hz * t[:, None] + rng.uniform(0, 2 * np.pi, 12))

    leads, axis = _lead_truth(model)
    rr_actual = float(np.mean(np.diff(onsets))) / fs
    start = acquisition_datetime or datetime(2026, 1, 15, 9, 30, tzinfo=UTC)
    groups = [_group("RHYTHM", fs, data, start, label_style)]
    m_pre = round(0.45 * fs)
    template = np.zeros((round(1.2 * fs), 12))
    template[:, :] = np.stack([model.beat((np.arange(template.shape[0]) - m_pre) / fs)[lead]
                               for lead in STANDARD_LEADS], axis=1)
    if include_median:
        groups.append(_group("MEDIAN BEAT", fs, template, start, label_style))
    recording = Recording(
        sop_class_uid="1.2.840.10008.5.1.4.1.1.9.1.2", sop_instance_uid=None, study_instance_uid=None,
        series_instance_uid=None, patient_id="SIM", patient_name="SIM^ECG", acquisition_datetime=start,
        groups=groups, patient_sex=sex, patient_birth_date=birth_date, modality="ECG",
    )
    truth = SimulationTruth(
        heart_rate_bpm=60.0 / rr_actual, rr_ms=rr_actual * 1000.0, pr_ms=pr_ms, qrs_ms=qrs_ms, qt_ms=qt * 1000.0,
        qtc_bazett_ms=qt * 1000.0 / math.sqrt(rr_actual), qtc_fridericia_ms=qt * 1000.0 / rr_actual ** (1 / 3),
        axis_deg=axis, leads=leads, onsets=onsets, ectopic=np.asarray(ectopic), template=template,
        template_onset=m_pre)
    return SimulatedEcg(recording=recording, truth=truth)
