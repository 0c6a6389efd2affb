"""Header and footer content: patient, time, device, the cart's and the node's measurements, filters.

The cart's global measurements are found by code (PS3.16 CID 3687 / 3689 and LOINC), never by meaning: the
ECG Toolkit files send ``5.10.3-15`` (T axis) with the meaning "QRS Axis". The meaning is used only for codes this
table does not know.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Protocol

from dicom_ecg_node.waveform.model import Channel, Measurement, Recording


class NodeMeasurements(Protocol):
    """What the printout reads from the node's own measurements (``analysis.EcgMeasurements`` fits)."""

    heart_rate_bpm: float | None
    pr_ms: float | None
    qrs_ms: float | None
    qt_ms: float | None
    qtc_ms: float | None
    axis_deg: float | None


class ComparisonFlag(Protocol):
    """A serial-comparison result to print: the rule that fired and the leads it fired in."""

    rule: str
    leads: Sequence[str]


@dataclass(frozen=True, slots=True)
class GlobalMeasurements:
    """Global ECG measurements as printed; ``None`` where unknown.

    Attributes
    ----------
    heart_rate_bpm, pr_ms, qrs_ms, qt_ms, qtc_ms : float or None
    p_axis_deg, axis_deg, t_axis_deg : float or None
        Frontal-plane axes; ``axis_deg`` is the QRS axis.
    """

    heart_rate_bpm: float | None = None
    pr_ms: float | None = None
    qrs_ms: float | None = None
    qt_ms: float | None = None
    qtc_ms: float | None = None
    p_axis_deg: float | None = None
    axis_deg: float | None = None
    t_axis_deg: float | None = None

    @property
    def empty(self) -> bool:
        """``True`` when nothing is known."""
        return all(getattr(self, f.name) is None for f in fields(self))


# (scheme, code) -> field. SCPECG codes: PS3.16 CID 3687 "Electrophysiology Waveform Durations", CID 3229
# (axes, "5.10.3-11/13/15"), the Mortara/ECG Toolkit QTc "5.10.2.5-5" and RR "5.10.2.1-3". MDC: CID 3689
# "ECG Global Waveform Duration" (2:15872 PR, 2:16156 QRS, 2:16160 QT, 2:16000 RR) and MDC_ECG_HEART_RATE
# (2:16770). LOINC: 8867-4 heart rate, 8625-6 PR, 8633-0 QRS, 8634-8 QT, 8636-3 QTc, 8626-4 / 8632-2 / 8638-1 axes.
_CODES: dict[tuple[str, str], str] = {
    ("SCPECG", "5.13.5-7"): "pr_ms",
    ("SCPECG", "5.13.5-9"): "qrs_ms",
    ("SCPECG", "5.13.5-11"): "qt_ms",
    ("SCPECG", "5.10.2.5-5"): "qtc_ms",
    ("SCPECG", "5.10.2.1-3"): "rr_ms",
    ("SCPECG", "5.10.3-11"): "p_axis_deg",
    ("SCPECG", "5.10.3-13"): "axis_deg",
    ("SCPECG", "5.10.3-15"): "t_axis_deg",
    ("MDC", "2:15872"): "pr_ms",
    ("MDC", "2:16156"): "qrs_ms",
    ("MDC", "2:16160"): "qt_ms",
    ("MDC", "2:16000"): "rr_ms",
    ("MDC", "2:16770"): "heart_rate_bpm",
    ("LN", "8867-4"): "heart_rate_bpm",
    ("LN", "76282-3"): "heart_rate_bpm",
    ("LN", "8625-6"): "pr_ms",
    ("LN", "8633-0"): "qrs_ms",
    ("LN", "8634-8"): "qt_ms",
    ("LN", "8636-3"): "qtc_ms",
    ("LN", "8626-4"): "p_axis_deg",
    ("LN", "8632-2"): "axis_deg",
    ("LN", "8638-1"): "t_axis_deg",
}
# Fallback for unknown codes, by folded meaning.
_MEANINGS: dict[str, str] = {
    "heart rate": "heart_rate_bpm", "ventricular rate": "heart_rate_bpm", "pr interval": "pr_ms",
    "qrs duration": "qrs_ms", "qt interval": "qt_ms", "qtc interval": "qtc_ms", "rr interval": "rr_ms",
    "p axis": "p_axis_deg", "qrs axis": "axis_deg", "t axis": "t_axis_deg",
}


def _to_field_units(name: str, m: Measurement) -> float | None:
    value = float(m.value)
    if not math.isfinite(value):
        return None
    if name.endswith("_ms"):
        if value <= 0:  # Mortara sends PP interval 0 for "not measured"; a zero interval is never real
            return None
        return value * 1000.0 if (m.units or "").strip() == "s" else value
    return value


def cart_measurements(recording: Recording) -> GlobalMeasurements:
    """The cart's global measurements found in ``recording.measurements`` (the first of each kind wins).

    Heart rate falls back to 60000 / RR interval when only RR is sent.
    """
    found: dict[str, float] = {}
    for m in recording.measurements:
        key = (m.concept.scheme.strip().upper(), m.concept.value.strip())
        name = _CODES.get(key) or _MEANINGS.get(m.concept.meaning.strip().casefold())
        if name is None or name in found:
            continue
        value = _to_field_units(name, m)
        if value is not None:
            found[name] = value
    rr = found.pop("rr_ms", None)
    if "heart_rate_bpm" not in found and rr:
        found["heart_rate_bpm"] = 60000.0 / rr
    return GlobalMeasurements(**found)


def from_node(measurements: Any) -> GlobalMeasurements:
    """Read the node's measurements from any object with the :class:`NodeMeasurements` attribute names."""

    def get(name: str) -> float | None:
        value = getattr(measurements, name, None)
        return None if value is None or not math.isfinite(float(value)) else float(value)

    return GlobalMeasurements(
        heart_rate_bpm=get("heart_rate_bpm"), pr_ms=get("pr_ms"), qrs_ms=get("qrs_ms"), qt_ms=get("qt_ms"),
        qtc_ms=get("qtc_ms"), p_axis_deg=get("p_axis_deg"), axis_deg=get("axis_deg"),
        t_axis_deg=get("t_axis_deg"))


def _n(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.0f}{unit}"


def format_measurements(m: GlobalMeasurements) -> str:
    """One header line: ``HR 61 bpm  PR 161 ms  QRS 75 ms  QT/QTc 368/370 ms  P/QRS/T axis 74/52/57°``."""
    parts = [f"HR {_n(m.heart_rate_bpm)} bpm", f"PR {_n(m.pr_ms)} ms", f"QRS {_n(m.qrs_ms)} ms",
             f"QT/QTc {_n(m.qt_ms)}/{_n(m.qtc_ms)} ms"]
    if m.p_axis_deg is not None or m.t_axis_deg is not None:
        parts.append(f"P/QRS/T axis {_n(m.p_axis_deg)}/{_n(m.axis_deg)}/{_n(m.t_axis_deg)}°")
    else:
        parts.append(f"QRS axis {_n(m.axis_deg, '°')}")
    return "   ".join(parts)


def format_name(name: str | None) -> str:
    """A DICOM PN (``FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX``) as ``FAMILY, GIVEN MIDDLE``; ``"(no name)"`` when empty."""
    if not name:
        return "(no name)"
    alphabetic = name.split("=")[0]
    comps = [c.strip() for c in alphabetic.split("^")]
    family = comps[0] if comps else ""
    rest = " ".join(c for c in comps[1:3] if c)
    text = f"{family}, {rest}" if family and rest else (family or rest)
    return text or "(no name)"


def format_date(da: str | None) -> str:
    """A DICOM DA ``YYYYMMDD`` as ``YYYY-MM-DD`` (as sent when it is not one)."""
    if not da:
        return "-"
    da = da.strip()
    if len(da) == 8 and da.isdigit():
        return f"{da[:4]}-{da[4:6]}-{da[6:]}"
    return da


def format_times(recording: Recording) -> str:
    """Acquisition time as local wall clock with its offset, and UTC (or why UTC is unknown)."""
    when: datetime | None = recording.acquisition_datetime
    if when is None:
        return "Acquired: unknown"
    if when.tzinfo is None:
        return f"Acquired: {when:%Y-%m-%d %H:%M:%S} local (time zone unknown, no UTC time)"
    offset = when.strftime("%z")
    offset = f"{offset[:3]}:{offset[3:]}" if offset else ""
    assumed = " (zone assumed)" if recording.zone_source == "default" else ""
    utc = when.astimezone(UTC)
    return f"Acquired: {when:%Y-%m-%d %H:%M:%S} {offset}{assumed}   UTC {utc:%Y-%m-%d %H:%M:%S}"


def format_device(recording: Recording) -> str:
    """``Device: manufacturer model (SN serial)``."""
    parts = [p for p in (recording.manufacturer, recording.model_name) if p]
    if recording.device_serial_number:
        parts.append(f"SN {recording.device_serial_number}")
    return "Device: " + (" ".join(parts) if parts else "unknown")


def format_device_filters(channels: Sequence[Channel]) -> str:
    """The acquisition filter band from the channels' Filter Low/High/Notch Frequency (PS3.3 C.10.9.1.4.1)."""
    bands = {(c.filter_low_hz, c.filter_high_hz, c.notch_hz) for c in channels}
    if not bands:
        return "not stated"
    if len(bands) > 1:
        return "differ per lead"
    low, high, notch = bands.pop()
    if low is None and high is None and notch is None:
        return "not stated"
    band = f"{'-' if low is None else f'{low:g}'}-{'-' if high is None else f'{high:g}'} Hz"
    # Notch Filter Frequency 0 means "no notch" in practice (Mortara sends 0).
    notch_text = "notch off" if not notch else f"notch {notch:g} Hz"
    return f"{band}, {notch_text}"


def format_flags(flags: Sequence[Any]) -> list[str]:
    """One line per comparison flag: ``rule (leads)``."""
    lines = []
    for flag in flags:
        leads = ", ".join(getattr(flag, "leads", ()) or ())
        rule = str(getattr(flag, "rule", flag))
        lines.append(f"{rule} ({leads})" if leads else rule)
    return lines


__all__ = [
    "ComparisonFlag",
    "GlobalMeasurements",
    "NodeMeasurements",
    "cart_measurements",
    "format_date",
    "format_device",
    "format_device_filters",
    "format_flags",
    "format_measurements",
    "format_name",
    "format_times",
    "from_node",
]
