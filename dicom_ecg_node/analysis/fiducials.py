"""Global fiducial points of a median beat: P onset, QRS onset, QRS offset (J point), T end.

* QRS onset and offset: threshold on the spatial velocity (the norm over all leads of the first derivative), the
  multi-lead form of the derivative-threshold methods (Laguna P, Jane R, Caminal P. Automatic detection of wave
  boundaries in multilead ECG signals: validation with the CSE database. Comput Biomed Res 1994;27:45-60). Over all
  leads at once, this gives the earliest onset and the latest offset of any lead with a visible deflection, as the
  global-fiducial convention asks (Kligfield et al. 2007, AHA/ACCF/HRS Part I).
* T end: tangent method per lead (the tangent at the steepest point of the T-wave's descending limb crosses the
  isoelectric level; Lepeschkin E, Surawicz B. The measurement of the Q-T interval of the electrocardiogram.
  Circulation 1952;6:378-388), in every lead with a prominent T wave; the global T end is the latest of them
  (Rautaharju et al. 2009, AHA/ACCF/HRS Part IV, QT interval: "earliest onset of QRS to the latest end of T").
* P onset: threshold on the RMS over leads, searching back from the P peak.
* Isoelectric reference: the PQ junction, mean over 4-16 ms before the QRS onset.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dicom_ecg_node.analysis.filters import FloatArray

#: Fraction of the spatial-velocity peak (above its floor) that marks QRS activity.
QRS_ONSET_FRACTION = 0.05
QRS_OFFSET_FRACTION = 0.06
#: Quiet run (ms) that must follow the QRS offset or precede its onset.
QUIET_MS = 10.0


@dataclass(slots=True)
class Fiducials:
    """Fiducial sample indices within a median beat (``None`` when not found) and why not.

    Attributes
    ----------
    qrs_on, qrs_off, t_end, p_on : int or None
    pq : int
        Centre of the isoelectric (PQ junction) window.
    t_end_by_lead : dict of str to float
        Per-lead tangent T end (fractional sample index), for the leads with a prominent T wave.
    notes : list of str
    """

    qrs_on: int | None = None
    qrs_off: int | None = None
    t_end: float | None = None
    p_on: int | None = None
    pq: int = 0
    t_end_by_lead: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def pq_window(qrs_on: int, fs: float) -> slice:
    """Samples of the PQ-junction window: 16 ms to 4 ms before the QRS onset."""
    return slice(max(0, qrs_on - round(0.016 * fs)), max(1, qrs_on - round(0.004 * fs)))


def _quiet_run_back(active: np.ndarray, start: int, run: int) -> int:
    """Walking back from ``start``, the first index after which ``run`` samples are all inactive (the onset)."""
    quiet = 0
    for i in range(start, -1, -1):
        quiet = quiet + 1 if not active[i] else 0
        if quiet >= run:
            return i + run
    return 0


def _quiet_run_forward(active: np.ndarray, start: int, run: int) -> int:
    """Walking forward from ``start``, the last active index before ``run`` inactive samples (the offset)."""
    quiet = 0
    for i in range(start, active.size):
        quiet = quiet + 1 if not active[i] else 0
        if quiet >= run:
            return i - run
    return active.size - 1


def find_fiducials(beat: FloatArray, fs: float, fid: int, rr_s: float, labels: tuple[str, ...]) -> Fiducials:
    """Global fiducials of a median beat.

    Parameters
    ----------
    beat : numpy.ndarray
        Low-passed (40 Hz) median beat, (n_samples, n_leads), µV.
    fs : float
        Sampling frequency, Hz.
    fid : int
        Index of the alignment fiducial (QRS energy peak) in ``beat``.
    rr_s : float
        Mean RR interval, s (bounds the P and T searches).
    labels : tuple of str
        Lead names in column order.

    Returns
    -------
    Fiducials
    """
    out = Fiducials()
    n = beat.shape[0]
    sv = np.sqrt(np.einsum("ij,ij->i", d := np.gradient(beat, axis=0) * fs / 1000.0, d))  # µV/ms
    lo, hi = max(0, fid - round(0.080 * fs)), min(n, fid + round(0.080 * fs) + 1)
    peak_i = lo + int(np.argmax(sv[lo:hi]))
    floor = float(np.percentile(sv, 10))
    peak = float(sv[peak_i])
    if peak <= 3.0 * floor or peak <= 0:
        out.notes.append("no QRS complex stands out in the median beat")
        return out
    run = max(2, round(QUIET_MS / 1000.0 * fs))
    on_active = sv > floor + QRS_ONSET_FRACTION * (peak - floor)
    off_active = sv > floor + QRS_OFFSET_FRACTION * (peak - floor)
    # bounded searches: onset within 200 ms before the peak, offset within 250 ms after it
    on_lo = max(0, peak_i - round(0.200 * fs))
    on = on_lo + _quiet_run_back(on_active[on_lo:peak_i + 1], peak_i - on_lo, run)
    off_hi = min(n, peak_i + round(0.250 * fs))
    off = peak_i + _quiet_run_forward(off_active[peak_i:off_hi], 0, run)
    out.qrs_on, out.qrs_off = on, off
    pq = pq_window(on, fs)
    out.pq = (pq.start + pq.stop) // 2
    y = beat - beat[pq].mean(axis=0)

    # ---- T end, per lead (tangent method)
    t_lo = off + round(0.040 * fs)
    t_peak_hi = min(n - 2, on + round(max(0.70 * rr_s, 0.30) * fs))
    if t_peak_hi - t_lo < round(0.040 * fs):
        out.notes.append("no room for a T wave after the QRS in the median beat")
    else:
        seg = y[t_lo:t_peak_hi]
        t_amp = np.abs(seg).max(axis=0)
        prominent = t_amp >= max(50.0, 0.3 * float(t_amp.max()))
        d_y = np.gradient(y, axis=0)
        ends: dict[str, float] = {}
        for c in np.flatnonzero(prominent):
            tp = t_lo + int(np.argmax(np.abs(seg[:, c])))
            sign = np.sign(y[tp, c])
            tail_hi = min(n - 1, tp + round(0.200 * fs))
            if tail_hi - tp < 3:
                continue
            # steepest return towards the baseline after the peak
            k = tp + int(np.argmin(sign * d_y[tp:tail_hi, c]))
            slope = d_y[k, c]
            if sign * slope >= 0:
                continue
            end = k - y[k, c] / slope
            if tp < end < n:
                ends[labels[c]] = float(end)
        if ends:
            values = sorted(ends.values())
            # one lead alone far later than all others is more likely noise than repolarisation
            latest = values[-1]
            if len(values) >= 3 and latest - values[-2] > 0.040 * fs:
                out.notes.append("T end of one lead discarded as an outlier (>40 ms after the next latest)")
                latest = values[-2]
            out.t_end = latest
            out.t_end_by_lead = ends
        else:
            out.notes.append("no T wave end found")

    # ---- P onset (RMS over leads, threshold at 10 % of the P peak)
    p_lo = max(0, on - round(min(0.30, 0.45 * rr_s) * fs))
    p_hi = on - round(0.030 * fs)
    if p_hi - p_lo > round(0.040 * fs):
        rms = np.sqrt(np.mean(y[p_lo:p_hi] ** 2, axis=1))
        # skip the tail of the previous T wave: start at the first local minimum
        rising = np.flatnonzero(np.diff(rms) > 0)
        first = int(rising[0]) if rising.size else 0
        pk = first + int(np.argmax(rms[first:]))
        p_amp = float(rms[pk])
        qrs_rms = float(np.sqrt(np.mean(y[on:off + 1] ** 2, axis=1)).max())
        # the TP level may differ from the PQ level (atrial repolarisation): measure from the lowest point in the
        # 120 ms before the P peak (a P wave rises over less than that)
        floor = float(rms[max(0, pk - round(0.120 * fs)):pk + 1].min())
        if p_amp - floor >= 15.0 and p_amp >= 0.03 * qrs_rms and pk > 0:
            below = np.flatnonzero(rms[:pk] < floor + 0.10 * (p_amp - floor))
            if below.size:
                out.p_on = p_lo + int(below[-1]) + 1
            else:
                out.notes.append("P onset not found within the search window")
        else:
            out.notes.append("no P wave found before the QRS (atrial fibrillation or flutter, or junctional rhythm?)")
    else:
        out.notes.append("no room for a P wave before the QRS")
    return out
