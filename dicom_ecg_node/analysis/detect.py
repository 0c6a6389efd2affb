"""QRS detection: the Pan-Tompkins algorithm, multi-lead, zero-phase.

Pan J, Tompkins WJ. A real-time QRS detection algorithm. IEEE Trans Biomed Eng 1985;32(3):230-236.

Steps as published: band-pass 5-15 Hz, derivative, squaring, moving-window integration over 150 ms, then adaptive
thresholds on the integrated signal (SPKI/NPKI running estimates, THRESHOLD I1 = NPKI + 0.25 (SPKI - NPKI)), a
200 ms refractory period, T-wave discrimination within 360 ms of the previous QRS by slope, and search-back with
the half threshold I2 when no QRS has been found for 166 % of the average RR. Differences, for offline use: filters
are zero-phase Butterworth (no group delay to undo) and the squared derivatives of all leads are summed (a
spatial-velocity variant, less sensitive to one lead's noise or small QRS).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import signal

from dicom_ecg_node.analysis.filters import FloatArray, bandpass

IntArray = npt.NDArray[np.intp]


def integrated_energy(x: FloatArray, fs: float) -> tuple[FloatArray, FloatArray]:
    """Pan-Tompkins feature signal: band-pass 5-15 Hz, derivative, squaring (summed over leads), 150 ms window.

    Parameters
    ----------
    x : numpy.ndarray
        Signals (n_samples, n_leads), µV.
    fs : float
        Sampling frequency, Hz.

    Returns
    -------
    (mwi, slope) : tuple of numpy.ndarray
        The moving-window integral (n_samples,) and the spatial slope magnitude sqrt(sum of squared derivatives).
    """
    bp = bandpass(x, fs, 5.0, 15.0, order=2)
    d = np.gradient(bp, axis=0) * fs
    energy = np.einsum("ij,ij->i", d, d)
    w = max(1, round(0.150 * fs))
    # centred window: the integral's peak sits on the QRS, not 75 ms after it
    mwi = np.convolve(energy, np.ones(w) / w, mode="same")
    return mwi, np.sqrt(energy)


def detect_qrs(x: FloatArray, fs: float) -> IntArray:
    """Sample indices of the QRS complexes in ``x`` (Pan & Tompkins 1985, see module docstring).

    Parameters
    ----------
    x : numpy.ndarray
        Signals (n_samples, n_leads), µV, without NaN.
    fs : float
        Sampling frequency, Hz.

    Returns
    -------
    numpy.ndarray
        Increasing sample indices of the maxima of the integrated signal (roughly the QRS centres).
    """
    mwi, slope = integrated_energy(x, fs)
    refractory = round(0.200 * fs)  # Pan-Tompkins: 200 ms refractory period
    peaks, _ = signal.find_peaks(mwi, distance=refractory)
    if peaks.size == 0:
        return np.empty(0, dtype=np.intp)
    half_win = round(0.075 * fs)
    peak_slope = np.array([slope[max(0, p - half_win):p + half_win + 1].max() for p in peaks])

    # Learning phase over the first 2 s (the paper's initialisation).
    learn = mwi[: max(round(2.0 * fs), 1)]
    spki = float(learn.max()) / 3.0
    npki = float(learn.mean()) / 2.0
    qrs: list[int] = []
    qrs_slope: list[float] = []
    noise_since: list[int] = []  # indices into peaks seen as noise since the last QRS, for search-back
    rr_recent: list[float] = []

    def threshold1() -> float:
        return npki + 0.25 * (spki - npki)

    for k, p in enumerate(peaks):
        value = float(mwi[p])
        # Search-back: no QRS for 166 % of the average RR -> take the largest noise peak above I2.
        if qrs and rr_recent:
            rr_avg = float(np.mean(rr_recent[-8:]))
            if p - qrs[-1] > 1.66 * rr_avg and noise_since:
                best = max(noise_since, key=lambda j: mwi[peaks[j]])
                if mwi[peaks[best]] > 0.5 * threshold1() and peaks[best] - qrs[-1] > refractory:
                    pb = int(peaks[best])
                    rr_recent.append(pb - qrs[-1])
                    qrs.append(pb)
                    qrs_slope.append(float(peak_slope[best]))
                    spki = 0.25 * float(mwi[pb]) + 0.75 * spki
                    noise_since = [j for j in noise_since if peaks[j] > pb]
        if value > threshold1():
            # T-wave discrimination: within 360 ms of a QRS, a peak with less than half its slope is a T wave.
            if qrs and p - qrs[-1] < 0.360 * fs and peak_slope[k] < 0.5 * qrs_slope[-1]:
                npki = 0.125 * value + 0.875 * npki
                noise_since.append(k)
                continue
            if qrs:
                rr_recent.append(p - qrs[-1])
            qrs.append(int(p))
            qrs_slope.append(float(peak_slope[k]))
            spki = 0.125 * value + 0.875 * spki
            noise_since = []
        else:
            npki = 0.125 * value + 0.875 * npki
            noise_since.append(k)
    return np.asarray(qrs, dtype=np.intp)
