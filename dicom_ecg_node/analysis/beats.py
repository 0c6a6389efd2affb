"""Beat alignment, classification and the sample-wise median beat.

Beats are aligned on the QRS by maximising the normalised cross-correlation (NCC) with a provisional template over
a lag of up to 20 ms, classified by their NCC with the dominant-class template over the QRS window, and the
dominant class kept. Premature beats and beats much noisier than the rest are dropped as well. The median beat is
the sample-wise median of the kept beats, per lead (a robust average: Mortara DW, "Source consistency filtering",
J Electrocardiol 1992, and the median-beat practice of the AHA/ACCF/HRS 2007 recommendations, Part I).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.interpolate import CubicSpline

from dicom_ecg_node.analysis.filters import FloatArray

IntArray = npt.NDArray[np.intp]

#: NCC below which a beat is not of the dominant class.
NCC_THRESHOLD = 0.90
#: A beat whose preceding RR is shorter than this fraction of the median RR is premature.
PREMATURE_FRACTION = 0.80


@dataclass(frozen=True, slots=True)
class BeatSelection:
    """Which detected beats make the median.

    Attributes
    ----------
    fiducials : numpy.ndarray
        Aligned fiducial sample of every detected beat.
    kept : numpy.ndarray of bool
        Beats in the median.
    reasons : dict of int to str
        Why each dropped beat was dropped (``"edge"``, ``"morphology"``, ``"premature"``, ``"noise"``).
    ncc : numpy.ndarray
        NCC of each beat with the dominant template over the QRS window.
    """

    fiducials: IntArray
    kept: npt.NDArray[np.bool_]
    reasons: dict[int, str]
    ncc: FloatArray


def median0(a: FloatArray) -> FloatArray:
    """Median along axis 0 (a full sort is several times faster than ``np.median``'s partition on this axis)."""
    s = np.sort(a, axis=0)
    k = s.shape[0]
    return s[k // 2] if k % 2 else 0.5 * (s[k // 2 - 1] + s[k // 2])


def _windows(x: FloatArray, centres: IntArray, before: int, after: int) -> FloatArray:
    """Stack of ``x[c - before : c + after]`` for each centre, shape (n_beats, before + after, n_leads)."""
    idx = centres[:, None] + np.arange(-before, after)[None, :]
    return x[idx]


def _normalise(w: FloatArray) -> FloatArray:
    """Remove each lead's mean in each window and scale each window (all leads together) to unit norm."""
    w = w - w.mean(axis=1, keepdims=True)
    flat = w.reshape(w.shape[0], -1)
    norm = np.linalg.norm(flat, axis=1, keepdims=True)
    return flat / np.where(norm > 0, norm, 1.0)


def select_beats(xc: FloatArray, peaks: IntArray, fs: float, before: int, after: int) -> BeatSelection:
    """Align, classify and select beats.

    Parameters
    ----------
    xc : numpy.ndarray
        Band-passed signals (n_samples, n_leads) used for shape comparison (no baseline wander).
    peaks : numpy.ndarray
        Detected QRS positions.
    fs : float
        Sampling frequency, Hz.
    before, after : int
        Median-beat window around the fiducial, samples; beats whose window leaves the record are dropped.

    Returns
    -------
    BeatSelection
    """
    n = xc.shape[0]
    half = round(0.080 * fs)  # QRS window: +-80 ms, covers a 160 ms complex centred on the energy peak
    lag = round(0.020 * fs)
    fid = peaks.astype(np.intp).copy()
    inside = (fid - half - lag >= 0) & (fid + half + lag < n)
    reasons: dict[int, str] = {}
    ncc = np.zeros(fid.size)
    if inside.sum() == 0:
        return BeatSelection(fid, np.zeros(fid.size, dtype=bool), dict.fromkeys(range(fid.size), "edge"), ncc)
    ids = np.flatnonzero(inside)

    # Provisional template: the median of the beats as detected; then each beat's best lag.
    wide = _windows(xc, fid[ids], half + lag, half + lag)
    template = median0(wide[:, lag:lag + 2 * half])
    tn = _normalise(template[None])[0]
    best = np.full(ids.size, -2.0)
    shift = np.zeros(ids.size, dtype=np.intp)
    for s in range(-lag, lag + 1):
        c = _normalise(wide[:, lag + s:lag + s + 2 * half]) @ tn
        better = c > best
        best[better] = c[better]
        shift[better] = s
    fid[ids] += shift

    # Dominant class: the beat with most look-alikes seeds it; the class template is their median.
    qrs = _windows(xc, fid[ids], half, half)
    z = _normalise(qrs)
    corr = z @ z.T
    seed = int(np.argmax((corr >= NCC_THRESHOLD).sum(axis=1) + 1e-3 * corr.mean(axis=1)))
    members = corr[seed] >= NCC_THRESHOLD
    dominant = _normalise(median0(qrs[members])[None])[0]
    ncc[ids] = z @ dominant
    kept = np.zeros(fid.size, dtype=bool)
    kept[ids] = ncc[ids] >= NCC_THRESHOLD
    for i in range(fid.size):
        if not inside[i]:
            reasons[i] = "edge"
        elif not kept[i]:
            reasons[i] = "morphology"

    # Premature beats (ectopic even with a normal QRS: their P and ST-T overlap the previous beat).
    if fid.size >= 3:
        rr = np.diff(fid)
        median_rr = float(np.median(rr))
        for i in range(1, fid.size):
            if kept[i] and rr[i - 1] < PREMATURE_FRACTION * median_rr:
                kept[i] = False
                reasons[i] = "premature"

    # Whole-window fit: drop the beats that disagree with the rest far more than typical (noise bursts).
    fit = np.flatnonzero(kept & (fid - before >= 0) & (fid + after <= n))
    fit_set = set(fit.tolist())
    for i in np.flatnonzero(kept):
        if int(i) not in fit_set:
            kept[i] = False
            reasons[int(i)] = "edge"
    if fit.size >= 4:
        w = _windows(xc, fid[fit], before, after)
        # compare each beat only up to 90 % of the way to the next beat (which may be an ectopic one)
        nxt = np.append(np.diff(fid), n)[fit]
        span = np.arange(-before, after)[None, :]
        own = (span >= -round(0.2 * fs)) & (span < np.minimum(after, 0.9 * nxt)[:, None])
        err = np.mean((w - median0(w)) ** 2, axis=2)
        resid = np.sqrt((err * own).sum(axis=1) / np.maximum(own.sum(axis=1), 1))
        typical = float(np.median(resid))
        for i, r in zip(fit, resid, strict=True):
            if r > 2.5 * typical and r > 15.0:
                kept[i] = False
                reasons[int(i)] = "noise"
    return BeatSelection(fid, kept, reasons, ncc)


def spline_baseline(x: FloatArray, knots: IntArray, fs: float) -> FloatArray:
    """Baseline through the PQ-segment level of each beat, by cubic spline.

    Meyer CR, Keiser HN. Electrocardiogram baseline noise estimation and removal using cubic splines and
    state-space computation techniques. Comput Biomed Res 1977;10:459-470.

    Parameters
    ----------
    x : numpy.ndarray
        Signals (n_samples, n_leads).
    knots : numpy.ndarray
        Sample index of each beat's PQ junction (increasing).
    fs : float
        Sampling frequency, Hz.

    Returns
    -------
    numpy.ndarray
        The baseline, same shape as ``x``; held constant outside the first and last knot.
    """
    n = x.shape[0]
    half = max(1, round(0.010 * fs))
    knots = knots[(knots - half >= 0) & (knots + half < n)]
    if knots.size == 0:
        return np.zeros_like(x)
    level = np.stack([x[k - half:k + half + 1].mean(axis=0) for k in knots])
    if knots.size == 1:
        return np.broadcast_to(level[0], x.shape).copy()
    t = np.clip(np.arange(n), knots[0], knots[-1])
    if knots.size == 2:
        return np.stack([np.interp(t, knots, level[:, c]) for c in range(x.shape[1])], axis=1)
    return CubicSpline(knots, level, axis=0, bc_type="natural")(t)


def median_beat(x: FloatArray, fiducials: IntArray, before: int, after: int) -> FloatArray:
    """Sample-wise median of the windows ``x[f - before : f + after]`` over the given fiducials, per lead."""
    return median0(_windows(x, fiducials, before, after))
