"""Global and per-lead measurements of a resting ECG: :func:`measure`.

Pipeline (all on copies; the recording's arrays are never written):

1. The rhythm group's standard leads in µV (Channel Source code first, label second, see :mod:`.leads`); missing
   limb leads derived from two others by Einthoven's and Goldberger's relations (said so in ``notes``).
2. Zero-phase filtering for analysis only: 50 and 60 Hz notches, then 5-15 Hz for detection, 1-40 Hz for shape
   comparison, 40 Hz and 100 Hz low-pass for measurement (:mod:`.filters`).
3. QRS detection (Pan & Tompkins 1985, :mod:`.detect`), alignment and classification by normalised
   cross-correlation, dominant class kept, premature and noisy beats dropped (:mod:`.beats`).
4. Baseline wander removed by a cubic spline through each beat's PQ junction (Meyer & Keiser 1977), then the
   sample-wise median beat per lead.
5. The cart's own median beat, when the object has one and it agrees with ours, replaces ours (``source``).
6. Global fiducials over all leads (:mod:`.fiducials`), intervals, QTc (Bazett 1920, Fridericia 1920), the frontal
   QRS axis from the net QRS areas of I and aVF, and per-lead amplitudes and ST levels against the PQ junction.

Values that cannot be measured reliably are ``None`` with the reason in ``notes``; a recording that cannot be
measured at all raises :class:`~dicom_ecg_node.analysis.errors.AnalysisError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from fractions import Fraction

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal

from dicom_ecg_node.analysis.beats import NCC_THRESHOLD, median_beat, select_beats, spline_baseline
from dicom_ecg_node.analysis.detect import detect_qrs
from dicom_ecg_node.analysis.errors import AnalysisError
from dicom_ecg_node.analysis.fiducials import Fiducials, find_fiducials, pq_window
from dicom_ecg_node.analysis.filters import FloatArray, bandpass, fill_gaps, notch_mains
from dicom_ecg_node.analysis.leads import STANDARD_LEADS, canonical_lead
from dicom_ecg_node.waveform.model import MultiplexGroup, Recording

#: QTc formulas offered by :func:`measure`.
QTC_FORMULAS = ("bazett", "fridericia")
#: Shortest rhythm strip measured, seconds.
MIN_DURATION_S = 2.5
#: Lowest sampling frequency measured, Hz (AHA 2007 Part I asks for 500 Hz; 240 Hz carts exist).
MIN_SAMPLING_HZ = 100.0
#: Physical magnitude beyond which a sample is treated as invalid (unflagged padding, saturated amplifier), µV.
MAX_VALID_UV = 30_000.0
# Plausible ranges: a value outside is reported as None with a note, never as a number.
_PLAUSIBLE = {"pr_ms": (60.0, 450.0), "qrs_ms": (40.0, 250.0), "qt_ms": (180.0, 750.0)}
_UNIT_SCALE = {"uv": 1.0, "mv": 1000.0, "v": 1e6, "nv": 1e-3}
_MIN_WAVE_UV = 20.0  # smallest deflection counted as a Q, R or S wave
_PRE_S, _POST_S = 0.5, 0.7  # median-beat window around the QRS fiducial


@dataclass(frozen=True, slots=True)
class LeadMeasurements:
    """Measurements of one lead on the median beat; amplitudes in µV relative to the PQ junction.

    Attributes
    ----------
    st_j_uv, st_j60_uv, st_j80_uv : float or None
        ST level at the J point (global QRS offset) and 60 / 80 ms after it.
    t_amplitude_uv : float or None
        Signed extreme of the T wave (negative: inverted).
    r_amplitude_uv : float or None
        Largest positive QRS deflection (0 when none reaches 20 µV).
    s_amplitude_uv : float or None
        Most negative deflection after the R peak, as a negative number (0 when none).
    q_duration_ms : float or None
        From QRS onset to the end of an initial negative deflection (0 when none).
    q_amplitude_uv : float or None
        Most negative point of the initial negative deflection, negative (0 when none; a QS complex is all Q).
    """

    st_j_uv: float | None = None
    st_j60_uv: float | None = None
    st_j80_uv: float | None = None
    t_amplitude_uv: float | None = None
    r_amplitude_uv: float | None = None
    s_amplitude_uv: float | None = None
    q_duration_ms: float | None = None
    q_amplitude_uv: float | None = None


@dataclass(frozen=True, slots=True)
class MedianBeat:
    """The representative beat the measurements were made on.

    Attributes
    ----------
    samples : numpy.ndarray
        µV, (n_samples, n_leads), 100 Hz low-passed, PQ junction of each lead at 0.
    sampling_frequency : float
    leads : tuple of str
    fiducials_ms : dict of str to float
        ``p_on``, ``qrs_on``, ``qrs_off``, ``t_end`` (those found), ms from the first sample.
    """

    samples: FloatArray
    sampling_frequency: float
    leads: tuple[str, ...]
    fiducials_ms: dict[str, float]


@dataclass(frozen=True, slots=True)
class EcgMeasurements:
    """The node's own measurements of one ECG (issue 6; attribute names are relied upon by tools).

    Attributes
    ----------
    heart_rate_bpm, rr_ms : float or None
        Ventricular rate and mean RR over all detected beats.
    pr_ms, qrs_ms, qt_ms : float or None
        Global intervals: P onset to QRS onset, QRS onset to offset, QRS onset to the latest T end.
    qtc_ms : float or None
        QT corrected with ``qtc_formula``.
    qtc_formula : str
        ``"bazett"`` or ``"fridericia"``.
    qtc_bazett_ms, qtc_fridericia_ms : float or None
        Both corrections, whatever ``qtc_formula`` says.
    axis_deg : float or None
        Frontal QRS axis, degrees in (-180, 180], from the net QRS areas of leads I and aVF.
    axis_method : str
    source : str
        ``"median-computed"`` or ``"cart-median"``.
    beats_used, beats_rejected : int
        Beats in the computed median, and detected beats left out of it.
    leads : dict of str to LeadMeasurements
        By canonical lead name.
    notes : tuple of str
        Why any value is missing, and any assumption made (derived leads, units...).
    patient_sex : str or None
        ``"M"``, ``"F"`` or ``None`` (anything else).
    patient_age_years : int or None
        At acquisition, from Patient's Birth Date.
    acquisition_datetime : datetime or None
    median : MedianBeat or None
    """

    heart_rate_bpm: float | None
    rr_ms: float | None
    pr_ms: float | None
    qrs_ms: float | None
    qt_ms: float | None
    qtc_ms: float | None
    qtc_formula: str
    qtc_bazett_ms: float | None
    qtc_fridericia_ms: float | None
    axis_deg: float | None
    source: str
    beats_used: int
    beats_rejected: int
    leads: dict[str, LeadMeasurements]
    notes: tuple[str, ...] = ()
    axis_method: str = "net QRS area, leads I and aVF: atan2(2*aVF/sqrt(3), I)"
    patient_sex: str | None = None
    patient_age_years: int | None = None
    acquisition_datetime: datetime | None = None
    median: MedianBeat | None = field(default=None, repr=False)

    def qtc(self, formula: str) -> float | None:
        """QTc by ``formula`` (``"bazett"`` or ``"fridericia"``)."""
        if formula == "bazett":
            return self.qtc_bazett_ms
        if formula == "fridericia":
            return self.qtc_fridericia_ms
        raise AnalysisError(f"qtc formula {formula!r} is not one of {QTC_FORMULAS}", reason="bad-argument")


def qtc_bazett(qt_ms: float, rr_ms: float) -> float:
    """Bazett HC. An analysis of the time-relations of electrocardiograms. Heart 1920;7:353-370: QT / sqrt(RR s)."""
    return qt_ms / math.sqrt(rr_ms / 1000.0)


def qtc_fridericia(qt_ms: float, rr_ms: float) -> float:
    """Fridericia LS. Die Systolendauer im Elektrokardiogramm... Acta Med Scand 1920;53:469-486: QT / cbrt(RR s)."""
    return qt_ms / (rr_ms / 1000.0) ** (1.0 / 3.0)


# --------------------------------------------------------------------------------------------------------------
# Input


def _is_median(group: MultiplexGroup) -> bool:
    return "median" in group.label.casefold() or "average" in group.label.casefold()


def _rhythm_group(recording: Recording) -> MultiplexGroup:
    """The group labelled RHYTHM, else the longest group with standard leads that is not a median beat."""
    candidates = [g for g in recording.groups if not _is_median(g)
                  and any(canonical_lead(c) for c in g.channels)]
    if not candidates:
        raise AnalysisError("the recording has no multiplex group with standard ECG leads", reason="no-leads")
    for g in candidates:
        if g.label.strip().casefold() == "rhythm":
            return g
    return max(candidates, key=lambda g: g.duration_s)


def _lead_matrix(group: MultiplexGroup, notes: list[str]) -> tuple[FloatArray, tuple[str, ...]]:
    """Standard leads of ``group`` as a new (n, n_leads) µV array in :data:`STANDARD_LEADS` order."""
    columns: dict[str, FloatArray] = {}
    for i, ch in enumerate(group.channels):
        name = canonical_lead(ch)
        if name is None or name in columns:
            continue
        unit = (ch.units or "").strip().casefold()
        if unit not in _UNIT_SCALE:
            if ch.units is None:
                notes.append(f"lead {name}: no units sent; assumed µV")
                unit = "uv"
            else:
                notes.append(f"lead {name}: units {ch.units!r} are not a voltage; lead ignored")
                continue
        col = group.samples[:, i] * _UNIT_SCALE[unit]  # a new array: the recording is not touched
        col = np.where(np.abs(col) > MAX_VALID_UV, np.nan, col)
        columns[name] = col
    # Einthoven III = II - I; Goldberger aVR = -(I + II)/2, aVL = I - II/2, aVF = II - I/2.
    if "I" not in columns and "II" in columns and "III" in columns:
        columns["I"] = columns["II"] - columns["III"]
        notes.append("lead I derived from II and III (Einthoven)")
    if "II" not in columns and "I" in columns and "III" in columns:
        columns["II"] = columns["I"] + columns["III"]
        notes.append("lead II derived from I and III (Einthoven)")
    if "I" in columns and "II" in columns:
        lead_i, lead_ii = columns["I"], columns["II"]
        derived = {"III": lead_ii - lead_i, "aVR": -(lead_i + lead_ii) / 2.0, "aVL": lead_i - lead_ii / 2.0,
                   "aVF": lead_ii - lead_i / 2.0}
        for name, col in derived.items():
            if name not in columns:
                columns[name] = col
                notes.append(f"lead {name} derived from I and II (Einthoven/Goldberger)")
    missing = [name for name in STANDARD_LEADS if name not in columns]
    if missing:
        notes.append("leads absent: " + ", ".join(missing))
    labels = tuple(name for name in STANDARD_LEADS if name in columns)
    if not labels:
        raise AnalysisError("no standard ECG lead could be identified", reason="no-leads")
    return np.stack([columns[name] for name in labels], axis=1), labels


def _age_years(birth: str | None, when: datetime | None) -> int | None:
    if not birth or when is None:
        return None
    try:
        b = date(int(birth[0:4]), int(birth[4:6]), int(birth[6:8]))
    except ValueError:
        return None
    d = when.date()
    return d.year - b.year - ((d.month, d.day) < (b.month, b.day))


def _sex(value: str | None) -> str | None:
    v = (value or "").strip().upper()
    return v if v in ("M", "F") else None


# --------------------------------------------------------------------------------------------------------------
# Cart median


def _resample(x: FloatArray, fs_from: float, fs_to: float) -> FloatArray:
    if abs(fs_from - fs_to) < 1e-6:
        return x
    ratio = Fraction(fs_to / fs_from).limit_denominator(1000)
    return signal.resample_poly(x, ratio.numerator, ratio.denominator, axis=0, padtype="line")


def _cart_median(recording: Recording, fs: float, labels: tuple[str, ...],
                 notes: list[str]) -> FloatArray | None:
    """The cart's median beat, in ``labels`` column order at ``fs``, or ``None``."""
    for g in recording.groups:
        if not _is_median(g):
            continue
        scratch: list[str] = []
        try:
            x, cart_labels = _lead_matrix(g, scratch)
        except AnalysisError:
            return None
        if set(cart_labels) != set(labels):
            notes.append("cart median beat ignored: its leads differ from the rhythm's")
            return None
        x = x[:, [cart_labels.index(name) for name in labels]]
        x, _ = fill_gaps(x)
        return _resample(x, g.sampling_frequency, fs)
    return None


def _align_cart(own40: FloatArray, cart40: FloatArray, fid: int, fs: float) -> int | None:
    """Index in the cart median matching ``fid`` in ours: best NCC of the QRS window (+-80 ms)."""
    half = round(0.080 * fs)
    if fid - half < 0 or fid + half > own40.shape[0] or cart40.shape[0] < 2 * half + 1:
        return None
    q = own40[fid - half:fid + half]
    q = (q - q.mean(axis=0)).ravel()
    q /= np.linalg.norm(q) or 1.0
    win = sliding_window_view(cart40, 2 * half, axis=0)  # (positions, n_leads, 2*half)
    win = np.swapaxes(win, 1, 2)
    win = win - win.mean(axis=1, keepdims=True)
    flat = win.reshape(win.shape[0], -1)
    norms = np.linalg.norm(flat, axis=1)
    ncc = (flat @ q) / np.where(norms > 0, norms, 1.0)
    k = int(np.argmax(ncc))
    return k + half if ncc[k] >= NCC_THRESHOLD else None


def _window_from(x: FloatArray, centre: int, before: int, after: int) -> FloatArray:
    """``x[centre - before : centre + after]``, edge-padded where ``x`` is shorter."""
    lo, hi = centre - before, centre + after
    pad = ((max(0, -lo), max(0, hi - x.shape[0])), (0, 0))
    return np.pad(x, pad, mode="edge")[lo + pad[0][0]:hi + pad[0][0]]


def _consistent(own: FloatArray, cart: FloatArray, fids: Fiducials, fs: float) -> tuple[bool, str]:
    """Whether the cart median agrees with ours over QRS onset - 40 ms .. T end + 40 ms.

    Agreement: median over leads of the per-lead correlation >= 0.95 and RMS difference <= 25 % of our RMS.
    """
    if fids.qrs_on is None or fids.qrs_off is None:
        return False, "our median has no QRS fiducials"
    lo = max(0, fids.qrs_on - round(0.040 * fs))
    end = fids.t_end if fids.t_end is not None else fids.qrs_off + 0.3 * fs
    hi = min(own.shape[0], round(end + 0.040 * fs))
    pq = pq_window(fids.qrs_on, fs)
    a = own[lo:hi] - own[pq].mean(axis=0)
    b = cart[lo:hi] - cart[pq].mean(axis=0)
    ac, bc = a - a.mean(axis=0), b - b.mean(axis=0)
    denom = np.linalg.norm(ac, axis=0) * np.linalg.norm(bc, axis=0)
    r = np.sum(ac * bc, axis=0) / np.where(denom > 0, denom, 1.0)
    rel = float(np.sqrt(np.mean((a - b) ** 2)) / max(np.sqrt(np.mean(a**2)), 1e-9))
    text = f"median r = {np.median(r):.3f}, relative RMS difference = {rel:.2f}"
    return bool(np.median(r) >= 0.95 and rel <= 0.25), text


# --------------------------------------------------------------------------------------------------------------
# Per-lead and global values on the median


def _mean_at(y: FloatArray, i: float, half: int) -> FloatArray | None:
    k = round(i)
    if k - half < 0 or k + half + 1 > y.shape[0]:
        return None
    return y[k - half:k + half + 1].mean(axis=0)


def _lead_values(y40: FloatArray, y100: FloatArray, f: Fiducials, fs: float, rr_s: float,
                 labels: tuple[str, ...]) -> dict[str, LeadMeasurements]:
    """Per-lead measurements; ``y40``/``y100`` are already referred to the PQ junction."""
    if f.qrs_on is None or f.qrs_off is None:
        return {name: LeadMeasurements() for name in labels}
    on, j = f.qrs_on, f.qrs_off
    half = max(1, round(0.004 * fs))  # +-4 ms average: a point value, less noise
    st_j = _mean_at(y40, j, half)
    st_60 = _mean_at(y40, j + 0.060 * fs, half)
    st_80 = _mean_at(y40, j + 0.080 * fs, half)
    t_lo = j + round(0.040 * fs)
    t_hi = round(f.t_end) if f.t_end is not None else min(y40.shape[0], on + round(max(0.7 * rr_s, 0.3) * fs))
    t_amp = None
    if t_hi - t_lo >= 3:
        seg = y40[t_lo:t_hi]
        t_amp = seg[np.argmax(np.abs(seg), axis=0), np.arange(seg.shape[1])]
    qrs = y100[on:j + 1]
    out: dict[str, LeadMeasurements] = {}
    for c, name in enumerate(labels):
        x = qrs[:, c]
        ipk = int(np.argmax(x))
        r = float(x[ipk])
        if r < _MIN_WAVE_UV:  # QS complex: the whole QRS is a Q wave
            r, s = 0.0, 0.0
            q = float(x.min())
            back = np.flatnonzero(x[int(np.argmin(x)):] >= 0)
            q_end = int(np.argmin(x)) + int(back[0]) if back.size else x.size - 1
        else:
            pre = x[:ipk]
            q = float(pre.min()) if pre.size and pre.min() <= -_MIN_WAVE_UV else 0.0
            q_end = 0
            if q < 0:
                # the Q wave ends where the signal comes back up through the baseline after its nadir
                nadir = int(np.argmin(pre))
                up = np.flatnonzero((x[nadir:ipk] < 0) & (x[nadir + 1:ipk + 1] >= 0))
                q_end = nadir + int(up[0]) + 1 if up.size else ipk
            post = x[ipk:]
            s = float(post.min()) if post.min() <= -_MIN_WAVE_UV else 0.0
        out[name] = LeadMeasurements(
            st_j_uv=None if st_j is None else round(float(st_j[c]), 1),
            st_j60_uv=None if st_60 is None else round(float(st_60[c]), 1),
            st_j80_uv=None if st_80 is None else round(float(st_80[c]), 1),
            t_amplitude_uv=None if t_amp is None else round(float(t_amp[c]), 1),
            r_amplitude_uv=round(r, 1),
            s_amplitude_uv=round(s, 1),
            q_duration_ms=round(q_end / fs * 1000.0, 1) if q < 0 else 0.0,
            q_amplitude_uv=round(q, 1),
        )
    return out


def _axis(y100: FloatArray, f: Fiducials, labels: tuple[str, ...], notes: list[str]) -> float | None:
    """Frontal QRS axis from the net QRS areas of I and aVF.

    Lead I projects the frontal vector on 0 degrees, aVF on +90 degrees with gain sqrt(3)/2 (Goldberger), hence
    atan2(2 aVF / sqrt(3), I).
    """
    if f.qrs_on is None or f.qrs_off is None or "I" not in labels or "aVF" not in labels:
        notes.append("QRS axis not measured: needs leads I and aVF and the QRS limits")
        return None
    seg = y100[f.qrs_on:f.qrs_off + 1]
    a_i = float(seg[:, labels.index("I")].sum())
    a_f = float(seg[:, labels.index("aVF")].sum())
    magnitude = math.hypot(a_i, 2.0 * a_f / math.sqrt(3.0))
    peak = float(np.abs(seg).max()) * seg.shape[0]
    if magnitude < 0.02 * peak:
        notes.append("QRS axis indeterminate: net areas of I and aVF are both near zero")
        return None
    return round(math.degrees(math.atan2(2.0 * a_f / math.sqrt(3.0), a_i)), 1)


def _plausible(name: str, value: float | None, notes: list[str]) -> float | None:
    if value is None:
        return None
    lo, hi = _PLAUSIBLE[name]
    if not lo <= value <= hi:
        notes.append(f"{name[:-3].upper()} of {value:.0f} ms is outside {lo:.0f}-{hi:.0f} ms: not reported")
        return None
    return round(value, 1)


# --------------------------------------------------------------------------------------------------------------
# Public API


def _baseline_knots(fids: npt.NDArray[np.intp], dominant: npt.NDArray[np.bool_], pq_offset: int,
                    rough: Fiducials, before: int, fs: float) -> npt.NDArray[np.intp]:
    """Spline knots: each dominant beat's PQ junction, plus the middle of the TP segment when it is >= 80 ms.

    The TP knots double the knot density at slow rates, where respiratory wander moves between two PQ junctions.
    """
    knots = [int(f) + pq_offset for f in fids[dominant]]
    if rough.t_end is not None:
        p_rel = (rough.p_on - before) if rough.p_on is not None else pq_offset - round(0.120 * fs)
        t_rel = rough.t_end - before
        margin = round(0.040 * fs)
        for i in range(fids.size - 1):
            if dominant[i] and dominant[i + 1]:
                lo, hi = fids[i] + t_rel + margin, fids[i + 1] + p_rel - margin
                if hi - lo >= round(0.080 * fs):
                    knots.append(round((lo + hi) / 2))
    return np.unique(np.asarray(knots, dtype=np.intp))


def measure(recording: Recording, *, qtc_formula: str = "bazett", use_cart_median: bool = True) -> EcgMeasurements:
    """Measure an ECG recording.

    Parameters
    ----------
    recording : Recording
        A decoded ECG (its arrays are read, never modified).
    qtc_formula : {"bazett", "fridericia"}
        Which correction ``qtc_ms`` holds (both are always in ``qtc_bazett_ms`` / ``qtc_fridericia_ms``).
    use_cart_median : bool
        Use the object's own median-beat group when it agrees with the computed one.

    Returns
    -------
    EcgMeasurements
        Values that could not be measured are ``None``, with the reason in ``notes``.

    Raises
    ------
    AnalysisError
        No standard leads, a strip shorter than 2.5 s or sampled below 100 Hz, fewer than two QRS complexes, or no
        beat fit for a median.
    """
    if qtc_formula not in QTC_FORMULAS:
        raise AnalysisError(f"qtc_formula must be one of {QTC_FORMULAS}, not {qtc_formula!r}", reason="bad-argument")
    notes: list[str] = []
    group = _rhythm_group(recording)
    fs = float(group.sampling_frequency)
    if fs < MIN_SAMPLING_HZ:
        raise AnalysisError(f"sampling frequency {fs:g} Hz is below {MIN_SAMPLING_HZ:g} Hz", reason="low-rate")
    if group.duration_s < MIN_DURATION_S:
        raise AnalysisError(f"rhythm strip of {group.duration_s:.2f} s is shorter than {MIN_DURATION_S} s",
                            reason="too-short")
    raw, labels = _lead_matrix(group, notes)
    raw, n_gaps = fill_gaps(raw)
    if n_gaps:
        notes.append(f"{n_gaps} missing or invalid samples interpolated")

    x = notch_mains(raw, fs)
    peaks = detect_qrs(x, fs)
    if peaks.size < 2:
        raise AnalysisError(f"{peaks.size} QRS complex(es) detected: cannot measure", reason="no-beats")
    before, after = round(_PRE_S * fs), round(_POST_S * fs)
    xc = bandpass(x, fs, 1.0, 40.0, order=2)
    sel = select_beats(xc, peaks, fs, before, after)
    kept = sel.fiducials[sel.kept]
    if kept.size == 0:
        raise AnalysisError("no beat of the dominant class fits a median-beat window", reason="no-beats")
    if sel.reasons:
        counts: dict[str, int] = {}
        for why in sel.reasons.values():
            counts[why] = counts.get(why, 0) + 1
        notes.append("beats left out of the median: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if kept.size < 3:
        notes.append(f"median beat from only {kept.size} beat(s)")
    rr_ms = float(np.mean(np.diff(sel.fiducials))) / fs * 1000.0
    rr_s = rr_ms / 1000.0

    # Baseline: spline through each dominant beat's PQ junction, located on a provisional band-passed median.
    x40 = bandpass(x, fs, None, 40.0, order=4)
    x100 = bandpass(x, fs, None, 100.0, order=4)
    rough = find_fiducials(median_beat(xc, kept, before, after), fs, before, rr_s, labels)
    pq_offset = (pq_window(rough.qrs_on, fs).start + pq_window(rough.qrs_on, fs).stop) // 2 - before \
        if rough.qrs_on is not None else -round(0.060 * fs)
    base = spline_baseline(x40, _baseline_knots(sel.fiducials, sel.ncc >= NCC_THRESHOLD, pq_offset, rough,
                                                before, fs), fs)
    m40 = median_beat(x40 - base, kept, before, after)
    m100 = median_beat(x100 - base, kept, before, after)
    fid = find_fiducials(m40, fs, before, rr_s, labels)
    source = "median-computed"

    if use_cart_median:
        cart = _cart_median(recording, fs, labels, notes)
        if cart is not None:
            centre = _align_cart(m40, bandpass(cart, fs, None, 40.0, order=4), before, fs)
            if centre is None:
                notes.append("cart median beat not used: its QRS does not match ours")
            else:
                c100 = _window_from(cart, centre, before, after)
                c100 = bandpass(c100, fs, None, 100.0, order=4)
                c40 = bandpass(c100, fs, None, 40.0, order=4)
                ok, why = _consistent(m40, c40, fid, fs)
                if ok:
                    cart_fid = find_fiducials(c40, fs, before, rr_s, labels)
                    if cart_fid.qrs_on is not None:
                        m40, m100, fid, source = c40, c100, cart_fid, "cart-median"
                        notes.append(f"cart median beat used ({why})")
                    else:
                        notes.append("cart median beat not used: no QRS limits found in it")
                else:
                    notes.append(f"cart median beat not used: it disagrees with ours ({why})")

    notes.extend(fid.notes)
    if fid.qrs_on is not None:
        pq = pq_window(fid.qrs_on, fs)
        m40 = m40 - m40[pq].mean(axis=0)
        m100 = m100 - m100[pq].mean(axis=0)
    to_ms = 1000.0 / fs
    qrs_ms = pr_ms = qt_ms = None
    if fid.qrs_on is not None and fid.qrs_off is not None:
        qrs_ms = (fid.qrs_off - fid.qrs_on) * to_ms
        if fid.t_end is not None:
            qt_ms = (fid.t_end - fid.qrs_on) * to_ms
        if fid.p_on is not None:
            pr_ms = (fid.qrs_on - fid.p_on) * to_ms
    qrs_ms = _plausible("qrs_ms", qrs_ms, notes)
    pr_ms = _plausible("pr_ms", pr_ms, notes)
    qt_ms = _plausible("qt_ms", qt_ms, notes)
    if not 20.0 <= 60000.0 / rr_ms <= 300.0:
        notes.append(f"heart rate {60000.0 / rr_ms:.0f} bpm is outside 20-300 bpm: check the detection")
    qtc_b = round(qtc_bazett(qt_ms, rr_ms), 1) if qt_ms is not None else None
    qtc_f = round(qtc_fridericia(qt_ms, rr_ms), 1) if qt_ms is not None else None
    if qrs_ms is None:  # without trustworthy QRS limits no per-lead value is trustworthy either
        fid = Fiducials(notes=fid.notes)
    leads = _lead_values(m40, m100, fid, fs, rr_s, labels)
    axis = _axis(m100, fid, labels, notes)
    fiducials_ms = {name: float(v) * to_ms for name, v in
                    (("p_on", fid.p_on), ("qrs_on", fid.qrs_on), ("qrs_off", fid.qrs_off), ("t_end", fid.t_end))
                    if v is not None}
    return EcgMeasurements(
        heart_rate_bpm=round(60000.0 / rr_ms, 1),
        rr_ms=round(rr_ms, 1),
        pr_ms=pr_ms,
        qrs_ms=qrs_ms,
        qt_ms=qt_ms,
        qtc_ms=qtc_b if qtc_formula == "bazett" else qtc_f,
        qtc_formula=qtc_formula,
        qtc_bazett_ms=qtc_b,
        qtc_fridericia_ms=qtc_f,
        axis_deg=axis,
        source=source,
        beats_used=int(kept.size),
        beats_rejected=int(sel.fiducials.size - kept.size),
        leads=leads,
        notes=tuple(notes),
        patient_sex=_sex(recording.patient_sex),
        patient_age_years=_age_years(recording.patient_birth_date, recording.acquisition_datetime),
        acquisition_datetime=recording.acquisition_datetime,
        median=MedianBeat(samples=m100, sampling_frequency=fs, leads=labels, fiducials_ms=fiducials_ms),
    )
