"""Display filters: zero-phase (forward-backward) filtering of a copy of the samples, for the printout only.

Zero phase matters for ECG display: a causal high-pass distorts the ST segment (AHA/ACC recommendation, Kligfield
et al., Circulation 2007;115:1306, which asks for 0.05 Hz low cut-off or a zero-phase equivalent), so every filter
here runs through :func:`scipy.signal.sosfiltfilt`. The stored data are never touched: callers pass an array and
get a new one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dicom_ecg_node.render.model import RenderError


@dataclass(frozen=True, slots=True)
class DisplayFilter:
    """A zero-phase display filter.

    Attributes
    ----------
    name : str
        ``"none"``, ``"diagnostic"``, ``"monitor"`` or ``"custom"``.
    low_hz, high_hz : float or None
        Pass band edges (Butterworth, order 2 each way, so order 4 in effect after the forward-backward pass).
    notch_hz : float or None
        Mains notch (Q = 30).
    """

    name: str = "none"
    low_hz: float | None = None
    high_hz: float | None = None
    notch_hz: float | None = None

    @property
    def is_identity(self) -> bool:
        """``True`` when the filter changes nothing."""
        return self.low_hz is None and self.high_hz is None and self.notch_hz is None

    def describe(self) -> str:
        """Footer text: ``"none"`` or e.g. ``"zero-phase 0.05-150 Hz, notch 50 Hz"``."""
        if self.is_identity:
            return "none"
        parts = []
        if self.low_hz is not None or self.high_hz is not None:
            low = "DC" if self.low_hz is None else f"{self.low_hz:g}"
            high = "" if self.high_hz is None else f"{self.high_hz:g}"
            parts.append(f"{low}-{high} Hz" if high else f"high-pass {low} Hz")
        if self.notch_hz is not None:
            parts.append(f"notch {self.notch_hz:g} Hz")
        return "zero-phase " + ", ".join(parts)


#: Named presets: the 0.05-150 Hz diagnostic band (AHA) and the 0.5-40 Hz monitoring band.
PRESETS: dict[str, tuple[float | None, float | None]] = {
    "none": (None, None),
    "diagnostic": (0.05, 150.0),
    "monitor": (0.5, 40.0),
}


def display_filter(name: str = "none", notch_hz: float | None = None) -> DisplayFilter:
    """Build a preset display filter.

    Parameters
    ----------
    name : {"none", "diagnostic", "monitor"}
        Preset: no filter, 0.05-150 Hz, or 0.5-40 Hz.
    notch_hz : float, optional
        Add a mains notch (50 or 60 Hz).

    Raises
    ------
    RenderError
        Unknown preset or a non-positive notch frequency.
    """
    if name not in PRESETS:
        raise RenderError(f"display filter {name!r} is not one of {', '.join(PRESETS)}")
    if notch_hz is not None and notch_hz <= 0:
        raise RenderError(f"notch frequency must be positive, not {notch_hz!r}")
    low, high = PRESETS[name]
    return DisplayFilter(name, low, high, notch_hz)


def apply_filter(samples: npt.NDArray[np.float64], fs: float, flt: DisplayFilter) -> npt.NDArray[np.float64]:
    """Filter each column of ``samples`` with zero phase and return a new array.

    NaN gaps (padding) are bridged by linear interpolation for the filter and put back afterwards. Band edges the
    sampling rate cannot carry are dropped (a 150 Hz low-pass at 240 Hz sampling is meaningless), as is a notch
    above Nyquist.

    Parameters
    ----------
    samples : numpy.ndarray
        ``(n_samples, n_channels)`` or ``(n_samples,)`` physical values.
    fs : float
        Sampling frequency, Hz.
    flt : DisplayFilter
        The filter to apply.

    Returns
    -------
    numpy.ndarray
        A new float64 array of the same shape.
    """
    out = np.array(samples, dtype=np.float64, copy=True)
    if flt.is_identity or out.shape[0] < 16:
        return out
    from scipy import signal  # scipy only when a filter is asked for

    nyquist = fs / 2.0
    sections: list[npt.NDArray[np.float64]] = []
    low = flt.low_hz if flt.low_hz is not None and flt.low_hz < nyquist * 0.9 else None
    high = flt.high_hz if flt.high_hz is not None and flt.high_hz < nyquist * 0.9 else None
    if low is not None and high is not None:
        sections.append(signal.butter(2, [low, high], btype="bandpass", fs=fs, output="sos"))
    elif low is not None:
        sections.append(signal.butter(2, low, btype="highpass", fs=fs, output="sos"))
    elif high is not None:
        sections.append(signal.butter(2, high, btype="lowpass", fs=fs, output="sos"))
    if flt.notch_hz is not None and flt.notch_hz < nyquist * 0.95:
        b, a = signal.iirnotch(flt.notch_hz, 30.0, fs=fs)
        sections.append(signal.tf2sos(b, a))
    if not sections:
        return out
    sos = np.vstack(sections)

    # scipy's default edge padding is 3 * (2 * sections + 1) samples; short groups need less.
    padlen = min(3 * (2 * sos.shape[0] + 1), out.shape[0] - 1)
    view = out.reshape(out.shape[0], -1)
    idx = np.arange(view.shape[0])
    for c in range(view.shape[1]):
        col = view[:, c]
        bad = ~np.isfinite(col)
        if bad.all():
            continue
        work = np.interp(idx, idx[~bad], col[~bad]) if bad.any() else col
        filtered = signal.sosfiltfilt(sos, work, padlen=padlen)
        filtered[bad] = np.nan
        view[:, c] = filtered
    return out


__all__ = ["PRESETS", "DisplayFilter", "apply_filter", "display_filter"]
