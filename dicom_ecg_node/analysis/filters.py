"""Zero-phase filters used for analysis only (the recording's own arrays are never touched).

Forward-backward (zero-phase) IIR filtering keeps wave timing and does not create the ST-segment distortion that a
causal high-pass filter does (Kligfield et al. 2007, AHA/ACCF/HRS Recommendations for the Standardization and
Interpretation of the ECG, Part I, Circulation 115:1306, section "Low-frequency filtering").
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import signal

FloatArray = npt.NDArray[np.float64]


def _padlen(n: int, want: int) -> int:
    return max(0, min(want, n - 1))


def bandpass(x: FloatArray, fs: float, low_hz: float | None, high_hz: float | None, order: int = 2) -> FloatArray:
    """Zero-phase Butterworth band-pass (or low-/high-pass when one edge is ``None``) along axis 0.

    Edges at or above 0.45 fs are dropped (nothing to remove there).
    """
    nyq = fs / 2.0
    hi = high_hz if high_hz is not None and high_hz < 0.9 * nyq else None
    if low_hz is None and hi is None:
        return np.array(x, dtype=np.float64, copy=True)
    if low_hz is not None and hi is not None:
        sos = signal.butter(order, [low_hz, hi], btype="bandpass", fs=fs, output="sos")
    elif low_hz is not None:
        sos = signal.butter(order, low_hz, btype="highpass", fs=fs, output="sos")
    else:
        sos = signal.butter(order, hi, btype="lowpass", fs=fs, output="sos")
    return signal.sosfiltfilt(sos, x, axis=0, padlen=_padlen(x.shape[0], int(fs)))


def notch_mains(x: FloatArray, fs: float, mains_hz: tuple[float, ...] = (50.0, 60.0), q: float = 30.0) -> FloatArray:
    """Remove 50 and 60 Hz mains interference with narrow zero-phase notches (both: the zone is unknown)."""
    y = np.array(x, dtype=np.float64, copy=True)
    for f0 in mains_hz:
        if f0 < 0.45 * fs:
            b, a = signal.iirnotch(f0, q, fs=fs)
            y = signal.filtfilt(b, a, y, axis=0, padlen=_padlen(y.shape[0], int(fs)))
    return y


def fill_gaps(x: FloatArray) -> tuple[FloatArray, int]:
    """Linear interpolation over NaN samples (padding), per column; returns the copy and the count filled."""
    y = np.array(x, dtype=np.float64, copy=True)
    bad = ~np.isfinite(y)
    n_bad = int(bad.sum())
    if n_bad:
        idx = np.arange(y.shape[0])
        for c in range(y.shape[1]):
            m = bad[:, c]
            if m.all():
                y[:, c] = 0.0
            elif m.any():
                y[m, c] = np.interp(idx[m], idx[~m], y[~m, c])
    return y, n_bad
