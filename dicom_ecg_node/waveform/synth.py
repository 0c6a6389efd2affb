"""Synthetic 12-lead ECG Waveform Storage objects for tests, demos and benchmarks.

The signal comes from a small dipole (heart-vector) model: each wave of the beat (P, septal Q, R, terminal S, T)
is a Gaussian in time pointing in its own 3-D direction; a lead is the projection of the heart vector on the lead's
direction. Leads I and II are projected; III, aVR, aVL and aVF are derived from them with Einthoven's and
Goldberger's relations, so those hold exactly before quantisation. V1-V6 are projections on horizontal-plane
directions, which gives the usual rS → qR progression with the transition around V3-V4.

The object follows the 12-lead ECG IOD (PS3.3 A.34.3): Patient, General Study, General Series, General Equipment,
Waveform Identification, Waveform (C.10.9), Acquisition Context, Waveform Annotation, SOP Common and, on request,
Synchronization. Everything is computed in memory; only :func:`write_ecg` touches the file system.

Public API: :func:`synthesize_ecg`, :func:`synthesize_ecg_with_truth` (also returns the physical values before
quantisation as :class:`EcgTruth`), :func:`ecg_to_bytes`, :func:`write_ecg`, and the tables :data:`LEADS`,
:data:`TRANSFER_SYNTAXES`, :data:`ZONE_STYLES`.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

from dicom_ecg_node import __version__

_PREFIX = "1.2.840.10008.5.1.4.1.1."
#: 12-lead ECG Waveform Storage (PS3.4 B.5).
TWELVE_LEAD_ECG = _PREFIX + "9.1.1"
#: General ECG Waveform Storage.
GENERAL_ECG = _PREFIX + "9.1.2"
#: General 32-bit ECG Waveform Storage.
GENERAL_32BIT_ECG = _PREFIX + "9.1.4"

#: Well-known Synchronization Frame of Reference UID for UTC (PS3.3 C.7.4.2.1.1).
UTC_SYNCHRONIZATION_UID = "1.2.840.10008.15.1.1"

#: Transfer syntaxes the writer produces, by short name.
TRANSFER_SYNTAXES: dict[str, str] = {
    "implicit": ImplicitVRLittleEndian,
    "explicit": ExplicitVRLittleEndian,
    "big": ExplicitVRBigEndian,
    "deflated": DeflatedExplicitVRLittleEndian,
}

#: How the acquisition time's UTC offset is recorded.
ZONE_STYLES = ("offset-in-dt", "timezone-offset", "none")

#: The twelve leads in channel order: (label, SCPECG code value, code meaning). PS3.16 CID 3001 "ECG Leads".
LEADS: tuple[tuple[str, str, str], ...] = (
    ("I", "5.6.3-9-1", "Lead I"),
    ("II", "5.6.3-9-2", "Lead II"),
    ("III", "5.6.3-9-61", "Lead III"),
    ("aVR", "5.6.3-9-62", "Lead aVR"),
    ("aVL", "5.6.3-9-63", "Lead aVL"),
    ("aVF", "5.6.3-9-64", "Lead aVF"),
    ("V1", "5.6.3-9-3", "Lead V1"),
    ("V2", "5.6.3-9-4", "Lead V2"),
    ("V3", "5.6.3-9-5", "Lead V3"),
    ("V4", "5.6.3-9-6", "Lead V4"),
    ("V5", "5.6.3-9-7", "Lead V5"),
    ("V6", "5.6.3-9-8", "Lead V6"),
)
_N_LEADS = len(LEADS)

# Waveform Sample Interpretation → (bits allocated, signed, numpy kind). PS3.3 C.10.9.1.5. MB/AB (G.711) are not
# produced: their stored codes are companded, so "one quantisation step" has no single meaning.
_INTERPRETATIONS: dict[str, tuple[int, bool, str]] = {
    "SB": (8, True, "i1"),
    "UB": (8, False, "u1"),
    "SS": (16, True, "i2"),
    "US": (16, False, "u2"),
    "SL": (32, True, "i4"),
    "UL": (32, False, "u4"),
    "SV": (64, True, "i8"),
    "UV": (64, False, "u8"),
}

# Beat model: (name, centre relative to R peak in s, width sigma in s, amplitude in uV, frontal-plane angle in
# degrees (0 = lead I, +90 = aVF), anterior component z of the unit direction).
_WAVES: tuple[tuple[str, float, float, float, float, float], ...] = (
    ("P", -0.160, 0.022, 140.0, 55.0, 0.15),
    ("Q", -0.028, 0.008, 180.0, -160.0, 0.70),  # septal depolarisation: rightward, anterior → r in V1, q in V6
    ("R", 0.000, 0.010, 1300.0, 55.0, -0.10),
    ("S", 0.028, 0.010, 420.0, -110.0, -0.55),  # terminal forces: superior, posterior
    ("T", 0.240, 0.045, 320.0, 45.0, 0.35),
)
_T_INDEX = 4
# Horizontal-plane angles of V1-V6 from the patient's left towards anterior, and their relative gains (electrodes
# nearer the heart record more).
_PRECORDIAL_ANGLES = np.deg2rad(np.array([115.0, 90.0, 70.0, 50.0, 30.0, 10.0]))
_PRECORDIAL_GAINS = np.array([1.0, 1.5, 1.9, 2.0, 1.6, 1.1])

# SCPECG global measurement codes as vendors send them (e.g. Mortara ELI), UCUM units. (code, scheme, meaning, unit,
# unit meaning)
_MEASUREMENT_CODES: dict[str, tuple[str, str, str, str, str]] = {
    "HR": ("8867-4", "LN", "Heart rate", "/min", "per minute"),
    "RR": ("5.10.2.1-3", "SCPECG", "RR Interval", "ms", "millisecond"),
    "PR": ("5.13.5-7", "SCPECG", "PR Interval", "ms", "millisecond"),
    "QRS": ("5.13.5-9", "SCPECG", "QRS Duration", "ms", "millisecond"),
    "QT": ("5.13.5-11", "SCPECG", "QT Interval", "ms", "millisecond"),
    "QTc": ("5.10.2.5-5", "SCPECG", "QTc Interval", "ms", "millisecond"),
    "P_AXIS": ("5.10.3-11", "SCPECG", "P Axis", "deg", "degree"),
    "QRS_AXIS": ("5.10.3-13", "SCPECG", "QRS Axis", "deg", "degree"),
    "T_AXIS": ("5.10.3-15", "SCPECG", "T Axis", "deg", "degree"),
}

_DEFAULT_DATETIME = datetime(2026, 1, 15, 9, 30, 0, tzinfo=timezone(timedelta(hours=1)))


@dataclass(frozen=True, slots=True)
class GroupTruth:
    """Ground truth of one multiplex group.

    Attributes
    ----------
    label : str
        Multiplex Group Label (``"RHYTHM"`` or ``"MEDIAN BEAT"``).
    sampling_frequency : float
        Hz, as written.
    physical : numpy.ndarray
        float64 uV before quantisation, shape ``(n_samples, 12)``, channel order :data:`LEADS`.
    stored : numpy.ndarray
        int64 values written, same shape.
    sensitivity, correction_factor, baseline : numpy.ndarray
        Per-channel calibration exactly as written (parsed back from their DS strings), shape ``(12,)``.
    clipped : int
        Number of samples clipped to the interpretation's range.
    time_offset_s : float
        Multiplex Group Time Offset in seconds.
    start : datetime
        Acquisition datetime plus the group time offset (timezone-aware).
    """

    label: str
    sampling_frequency: float
    physical: npt.NDArray[np.float64]
    stored: npt.NDArray[np.int64]
    sensitivity: npt.NDArray[np.float64]
    correction_factor: npt.NDArray[np.float64]
    baseline: npt.NDArray[np.float64]
    clipped: int
    time_offset_s: float
    start: datetime

    @property
    def step(self) -> npt.NDArray[np.float64]:
        """One quantisation step per channel (sensitivity × correction factor), uV."""
        return self.sensitivity * self.correction_factor


@dataclass(frozen=True, slots=True)
class EcgTruth:
    """What the synthetic writer put in an object, before quantisation.

    Attributes
    ----------
    leads : tuple of str
        Channel labels in order.
    groups : list of GroupTruth
        Rhythm group first, then the median beat when present.
    heart_rate_bpm : float
    r_peaks_s : numpy.ndarray
        Times of the R peaks in the rhythm group, seconds from its start.
    measurements : dict of str to float
        The global measurements written as annotations (keys of the SCPECG table: ``HR``, ``RR``, ``PR``, ``QRS``,
        ``QT``, ``QTc`` in ms or /min, ``P_AXIS``, ``QRS_AXIS``, ``T_AXIS`` in degrees), true to the model.
    statements : tuple of str
    acquisition_datetime : datetime
        Timezone-aware acquisition time.
    interpretation : str
    transfer_syntax_uid : str
    """

    leads: tuple[str, ...]
    groups: list[GroupTruth]
    heart_rate_bpm: float
    r_peaks_s: npt.NDArray[np.float64]
    measurements: dict[str, float]
    statements: tuple[str, ...]
    acquisition_datetime: datetime
    interpretation: str
    transfer_syntax_uid: str


# --------------------------------------------------------------------------------------------------------------
# Signal model


def _unit(angle_deg: float, z: float) -> npt.NDArray[np.float64]:
    """Unit 3-D vector (x: patient's left, y: inferior, z: anterior) at a frontal angle with anterior part z."""
    c = math.sqrt(max(0.0, 1.0 - z * z))
    a = math.radians(angle_deg)
    return np.array([c * math.cos(a), c * math.sin(a), z])


@dataclass(frozen=True, slots=True)
class _Beat:
    centres: npt.NDArray[np.float64]  # (n_waves,)
    sigmas: npt.NDArray[np.float64]
    vectors: npt.NDArray[np.float64]  # (n_waves, 3): amplitude × direction

    def heart_vector(self, d: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Heart vector (n, 3) at times ``d`` (s) relative to one R peak."""
        g = np.exp(-0.5 * np.square((d[:, None] - self.centres) / self.sigmas))
        return g @ self.vectors


def _make_beat(rr_s: float, rng: np.random.Generator, vary: bool) -> _Beat:
    centres, sigmas, vectors = [], [], []
    for i, (_name, c, s, amp, angle, z) in enumerate(_WAVES):
        if i == _T_INDEX:
            c = c * math.sqrt(rr_s)  # repolarisation shortens with rate (QT ∝ √RR, Bazett)
        if vary:
            amp *= rng.uniform(0.85, 1.15)
            angle += rng.uniform(-12.0, 12.0)
            z = float(np.clip(z + rng.uniform(-0.08, 0.08), -0.95, 0.95))
        centres.append(c)
        sigmas.append(s)
        vectors.append(amp * _unit(angle, z))
    return _Beat(np.array(centres), np.array(sigmas), np.array(vectors))


_LEAD_I = np.array([1.0, 0.0, 0.0])
_LEAD_II = np.array([0.5, math.sqrt(3.0) / 2.0, 0.0])
_PRECORDIAL = (np.stack([np.cos(_PRECORDIAL_ANGLES), np.zeros(6), np.sin(_PRECORDIAL_ANGLES)], axis=1)
               * _PRECORDIAL_GAINS[:, None])  # (6, 3)


def _twelve_leads(h: npt.NDArray[np.float64], noise: npt.NDArray[np.float64] | None) -> npt.NDArray[np.float64]:
    """Twelve leads (n, 12) from heart vectors (n, 3); ``noise`` (n, 8) is added to I, II and V1-V6."""
    lead_i = h @ _LEAD_I
    lead_ii = h @ _LEAD_II
    v = h @ _PRECORDIAL.T
    if noise is not None:
        lead_i = lead_i + noise[:, 0]
        lead_ii = lead_ii + noise[:, 1]
        v = v + noise[:, 2:]
    out = np.empty((h.shape[0], _N_LEADS))
    out[:, 0] = lead_i
    out[:, 1] = lead_ii
    out[:, 2] = lead_ii - lead_i  # Einthoven: III = II − I
    out[:, 3] = -(lead_i + lead_ii) / 2.0  # Goldberger: aVR = −(I + II)/2
    out[:, 4] = lead_i - lead_ii / 2.0  # aVL = I − II/2
    out[:, 5] = lead_ii - lead_i / 2.0  # aVF = II − I/2
    out[:, 6:] = v
    return out


def _measurements(beat: _Beat, rr_s: float) -> dict[str, float]:
    """Global measurements true to the model: onsets/offsets at ±2 σ (T end at +2.5 σ), axes from wave areas."""
    c, s = beat.centres, beat.sigmas
    p_on = c[0] - 2 * s[0]
    qrs_on = c[1] - 2 * s[1]
    qrs_off = c[3] + 2 * s[3]
    t_end = c[4] + 2.5 * s[4]
    qt = t_end - qrs_on

    def axis(rows: slice) -> float:
        # Area of a Gaussian is amp·σ·√(2π); the frontal axis is atan2(aVF-ish y, I-ish x) of the summed vector.
        vec = (beat.vectors[rows] * s[rows, None]).sum(axis=0)
        return round(math.degrees(math.atan2(vec[1], vec[0])))

    return {
        "HR": round(60.0 / rr_s),
        "RR": round(rr_s * 1000.0),
        "PR": round((qrs_on - p_on) * 1000.0),
        "QRS": round((qrs_off - qrs_on) * 1000.0),
        "QT": round(qt * 1000.0),
        "QTc": round(qt / math.sqrt(rr_s) * 1000.0),  # Bazett
        "P_AXIS": axis(slice(0, 1)),
        "QRS_AXIS": axis(slice(1, 4)),
        "T_AXIS": axis(slice(4, 5)),
    }


# --------------------------------------------------------------------------------------------------------------
# DICOM helpers


def _ds_str(value: float) -> str:
    """A DS string of at most 16 characters (PS3.5 6.2)."""
    text = format_number_as_ds(float(value))
    return text if text is not None else "0"


def _per_channel(name: str, value: float | Sequence[float]) -> list[str]:
    """Per-channel DS strings for a scalar or a 12-value sequence."""
    values = [value] * _N_LEADS if isinstance(value, int | float) else list(value)
    if len(values) != _N_LEADS:
        raise ValueError(f"{name}: expected one value or {_N_LEADS} values, got {len(values)}")
    out = []
    for v in values:
        if not math.isfinite(float(v)):
            raise ValueError(f"{name}: {v!r} is not finite")
        out.append(_ds_str(float(v)))
    return out


def _code(value: str, scheme: str, meaning: str, version: str | None = None) -> Dataset:
    """A Code Sequence item (PS3.3 Table 8.8-1)."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    if version:
        item.CodingSchemeVersion = version
    item.CodeMeaning = meaning
    return item


def _offset_str(offset: timedelta) -> str:
    """``&ZZXX`` form of a UTC offset (PS3.5 6.2 DT)."""
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}{minutes % 60:02d}"


def _dt_local(dt: datetime) -> str:
    text = dt.strftime("%Y%m%d%H%M%S")
    return f"{text}.{dt.microsecond:06d}" if dt.microsecond else text


def _tm_local(dt: datetime) -> str:
    text = dt.strftime("%H%M%S")
    return f"{text}.{dt.microsecond:06d}" if dt.microsecond else text


def _choose_sop_class(sop_class_uid: str | None, interpretation: str, n_groups: int) -> str:
    if sop_class_uid is None:
        if interpretation == "SS":
            # PS3.3 A.34.3.4: at most 13 channels across all groups, so rhythm + median goes to General ECG
            return TWELVE_LEAD_ECG if n_groups == 1 else GENERAL_ECG
        if interpretation == "SL":
            return GENERAL_32BIT_ECG
        raise ValueError(f"sample_interpretation: {interpretation!r} is outside every ECG IOD; pass "
                         f"sop_class_uid={GENERAL_ECG!r} (General ECG) to write it deliberately non-conformant")
    if sop_class_uid == TWELVE_LEAD_ECG:
        if interpretation != "SS":
            raise ValueError(f"sample_interpretation: the 12-lead ECG IOD allows only SS (PS3.3 A.34.3.4), "
                             f"not {interpretation!r}")
        if n_groups > 1:
            raise ValueError("include_median: the 12-lead ECG IOD allows 13 channels in all groups together "
                             "(PS3.3 A.34.3.4); rhythm and median beat need General ECG Waveform Storage")
    elif sop_class_uid == GENERAL_32BIT_ECG:
        if interpretation not in ("SS", "SL"):
            raise ValueError(f"sample_interpretation: the General 32-bit ECG IOD allows SS or SL, "
                             f"not {interpretation!r}")
    elif sop_class_uid != GENERAL_ECG:
        raise ValueError(f"sop_class_uid: {sop_class_uid!r} is not 12-lead, General or General 32-bit ECG Storage")
    return sop_class_uid


# --------------------------------------------------------------------------------------------------------------
# Public API


def synthesize_ecg_with_truth(
    *,
    patient_id: str = "SYN000001",
    patient_name: str = "DOE^JANE",
    birth_date: str | None = "19700101",
    sex: str | None = "F",
    acquisition_datetime: datetime | None = None,
    zone_style: str = "offset-in-dt",
    study_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
    accession_number: str = "",
    study_id: str = "1",
    series_number: int = 1,
    instance_number: int = 1,
    heart_rate_bpm: float = 72.0,
    duration_s: float = 10.0,
    sampling_frequency: float = 500.0,
    sensitivity: float | Sequence[float] | None = None,
    correction_factor: float | Sequence[float] = 1.0,
    baseline: float | Sequence[float] | None = None,
    sample_interpretation: str = "SS",
    bits_stored: int | None = None,
    sop_class_uid: str | None = None,
    transfer_syntax: str = "explicit",
    group_time_offset_ms: float = 0.0,
    include_median: bool = False,
    median_duration_s: float = 1.2,
    annotations: bool = True,
    statements: Sequence[str] | None = None,
    seed: int | None = None,
    noise_uv: float = 0.0,
    baseline_wander_uv: float = 0.0,
    vary_morphology: bool = True,
    filter_low_hz: float | None = 0.05,
    filter_high_hz: float | None = 150.0,
    notch_hz: float | None = 50.0,
    manufacturer: str = "dicom-ecg-node",
    model_name: str = "SYNTH-12",
    device_serial_number: str = "SN0001",
    software_versions: str | None = None,
    station_name: str = "ECG-CART-1",
    institution_name: str = "Synthetic General Hospital",
    acquisition_time_synchronized: bool | None = None,
    time_source: str | None = None,
) -> tuple[FileDataset, EcgTruth]:
    """Build a synthetic 12-lead ECG object and return it with its ground truth.

    Parameters
    ----------
    patient_id, patient_name, birth_date, sex : str
        Patient module (PS3.3 C.7.1.1); the name in PN form (``FAMILY^GIVEN``), birth date ``YYYYMMDD``, sex
        ``M``/``F``/``O``. ``None`` writes an empty (type 2) value.
    acquisition_datetime : datetime, optional
        Timezone-aware acquisition start (default 2026-01-15 09:30 +01:00). Study and Content Date/Time are the
        same local wall-clock time.
    zone_style : {"offset-in-dt", "timezone-offset", "none"}
        Where the UTC offset goes: appended to Acquisition DateTime (``&ZZXX``, PS3.5 6.2), in Timezone Offset From
        UTC (0008,0201) (PS3.3 C.12.1.1.8), or nowhere (local time of unknown zone, as many carts send).
    study_instance_uid, series_instance_uid, sop_instance_uid : str, optional
        Generated with :func:`pydicom.uid.generate_uid` when not given (random even with a fixed ``seed``). Pass
        ``study_instance_uid`` to put several ECGs in one study.
    accession_number, study_id, series_number, instance_number
        General Study / Series / Waveform Identification values.
    heart_rate_bpm : float
        Regular sinus rhythm rate, 30-250.
    duration_s, sampling_frequency : float
        Rhythm group length (s) and rate (Hz). The 12-lead and General ECG IODs require 200-1000 Hz, and the
        12-lead IOD at most 16384 samples (PS3.3 A.34.3.4).
    sensitivity : float or sequence of 12 floats, optional
        Channel Sensitivity in uV per count. Default 1.25 uV for 14 bits or more, else about 10 mV / 2**bits.
    correction_factor : float or sequence of 12 floats
        Channel Sensitivity Correction Factor.
    baseline : float or sequence of 12 floats, optional
        Channel Baseline in uV. Default 0 for signed interpretations; for unsigned ones minus half of the range
        (at most 2**15 counts) so that zero volts sits mid-scale.
    sample_interpretation : str
        ``"SS"`` (default) or ``"SL"``, conformant; ``"SB"``, ``"UB"``, ``"US"``, ``"UL"``, ``"SV"``, ``"UV"`` only
        with ``sop_class_uid=GENERAL_ECG``, which makes a deliberately non-conformant object to exercise decoders
        (the General ECG IOD allows only SS). MB/AB (G.711) are refused.
    bits_stored : int, optional
        Waveform Bits Stored, 2 up to the bits allocated (default: all of them); samples are clipped to its range.
    sop_class_uid : str, optional
        :data:`TWELVE_LEAD_ECG` (default for SS without median beat), :data:`GENERAL_ECG` (default for SS with a
        median beat: the 12-lead IOD allows 13 channels in all groups together, PS3.3 A.34.3.4) or
        :data:`GENERAL_32BIT_ECG` (default for SL).
    transfer_syntax : str
        ``"implicit"``, ``"explicit"`` (default), ``"big"``, ``"deflated"`` or one of their UIDs. Waveform Data is
        written in that syntax's byte order: in big endian each 16-bit OW word is byte-swapped (PS3.5 7.3),
        so 32/64-bit samples keep their words in little-endian order; 8-bit OB data is never swapped.
    group_time_offset_ms : float
        Multiplex Group Time Offset of the rhythm group (PS3.3 C.10.9.1.1).
    include_median : bool
        Add a second group, ``"MEDIAN BEAT"``, with one noise-free beat (R peak at 40 % of it). With SS this makes
        the object General ECG Waveform Storage (24 channels in all do not fit the 12-lead IOD).
    median_duration_s : float
        Length of the median beat group.
    annotations : bool
        Write the global measurements (HR, RR, PR, QRS, QT, QTc, P/QRS/T axes; SCPECG or LOINC codes, UCUM units)
        and the statements in Waveform Annotation Sequence (PS3.3 C.10.10).
    statements : sequence of str, optional
        Unformatted text statements; default from the rate (e.g. ``"Sinus rhythm"``, ``"Normal ECG"``).
    seed : int, optional
        Seed of :func:`numpy.random.default_rng` for morphology, phase, noise and wander.
    noise_uv, baseline_wander_uv : float
        Standard deviation of white noise and amplitude of a 0.15-0.35 Hz wander, uV (added to the independent
        leads I, II, V1-V6 so that the limb-lead relations still hold).
    vary_morphology : bool
        Jitter amplitudes and axes a little (from ``seed``) so that patients differ.
    filter_low_hz, filter_high_hz, notch_hz : float, optional
        Filter Low/High Frequency and Notch Filter Frequency written per channel (``None`` leaves them out).
    manufacturer, model_name, device_serial_number, software_versions, station_name, institution_name : str
        General Equipment module (PS3.3 C.7.5.1).
    acquisition_time_synchronized : bool, optional
        When given (or when ``time_source`` is), the Synchronization module (PS3.3 C.7.4.2) is written with the UTC
        Synchronization Frame of Reference UID, ``NO TRIGGER`` and Acquisition Time Synchronized ``Y``/``N``.
    time_source : str, optional
        Time Source (0018,1801), e.g. ``"NTP"``.

    Returns
    -------
    dataset : pydicom.dataset.FileDataset
        With file meta and preamble, ready for ``save_as(..., enforce_file_format=True)``.
    truth : EcgTruth

    Raises
    ------
    ValueError
        An argument is invalid or not supported; the message names it.
    """
    # ---- validation (highdicom style: name the argument)
    if acquisition_datetime is None:
        acquisition_datetime = _DEFAULT_DATETIME
    offset = acquisition_datetime.utcoffset()
    if offset is None:
        raise ValueError("acquisition_datetime: must be timezone-aware")
    if offset.total_seconds() % 60:
        raise ValueError("acquisition_datetime: UTC offset must be whole minutes (PS3.5 DT &ZZXX)")
    if zone_style not in ZONE_STYLES:
        raise ValueError(f"zone_style: must be one of {', '.join(ZONE_STYLES)}, not {zone_style!r}")
    ts_uid = TRANSFER_SYNTAXES.get(transfer_syntax, transfer_syntax)
    if ts_uid not in TRANSFER_SYNTAXES.values():
        raise ValueError(f"transfer_syntax: must be one of {', '.join(TRANSFER_SYNTAXES)} or their UIDs, "
                         f"not {transfer_syntax!r}")
    interp = sample_interpretation
    if interp in ("MB", "AB"):
        raise ValueError("sample_interpretation: G.711 mu-law/A-law (MB/AB) is not produced by this writer")
    if interp not in _INTERPRETATIONS:
        raise ValueError(f"sample_interpretation: unknown {interp!r} (PS3.3 C.10.9.1.5)")
    sop_class = _choose_sop_class(sop_class_uid, interp, 2 if include_median else 1)
    bits_allocated, signed, kind = _INTERPRETATIONS[interp]
    if bits_stored is None:
        bits_stored = bits_allocated
    if not 2 <= bits_stored <= bits_allocated:
        raise ValueError(f"bits_stored: must be 2-{bits_allocated} for {interp}, not {bits_stored}")
    if not 30.0 <= heart_rate_bpm <= 250.0:
        raise ValueError(f"heart_rate_bpm: {heart_rate_bpm} is outside 30-250")
    if not (duration_s > 0 and math.isfinite(duration_s)):
        raise ValueError(f"duration_s: {duration_s} must be positive")
    if not (median_duration_s > 0.5 and math.isfinite(median_duration_s)):
        raise ValueError(f"median_duration_s: {median_duration_s} must exceed 0.5 s")
    if noise_uv < 0 or baseline_wander_uv < 0:
        raise ValueError("noise_uv / baseline_wander_uv: must not be negative")
    fs_str = _ds_str(sampling_frequency)
    fs = float(fs_str)
    if fs <= 0:
        raise ValueError(f"sampling_frequency: {sampling_frequency} must be positive")
    if sop_class in (TWELVE_LEAD_ECG, GENERAL_ECG) and not 200.0 <= fs <= 1000.0:
        raise ValueError(f"sampling_frequency: {fs} Hz is outside 200-1000 Hz required by the ECG IOD "
                         "(PS3.3 A.34.3.4 / A.34.4.4)")
    n_rhythm = round(duration_s * fs)
    n_median = round(median_duration_s * fs)
    if n_rhythm < 2:
        raise ValueError("duration_s: fewer than 2 samples")
    if sop_class == TWELVE_LEAD_ECG and max(n_rhythm, n_median) > 16384:
        raise ValueError(f"duration_s: {n_rhythm} samples exceed the 12-lead ECG IOD limit of 16384 "
                         "(PS3.3 A.34.3.4); use sop_class_uid=GENERAL_ECG")
    if sensitivity is None:
        sensitivity = 1.25 if bits_stored >= 14 else float(_ds_str(10000.0 / 2**bits_stored))
    sens_str = _per_channel("sensitivity", sensitivity)
    cf_str = _per_channel("correction_factor", correction_factor)
    sens = np.array([float(s) for s in sens_str])
    cf = np.array([float(s) for s in cf_str])
    if np.any(sens == 0) or np.any(cf == 0):
        raise ValueError("sensitivity / correction_factor: must not be zero")
    step = sens * cf
    if baseline is None:
        mid = 0 if signed else 2 ** (min(bits_stored, 16) - 1)
        base_str = [_ds_str(-mid * s) for s in step]
    else:
        base_str = _per_channel("baseline", baseline)
    base = np.array([float(s) for s in base_str])
    if signed:
        lo, hi = -(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1
    else:
        lo, hi = 0, 2**bits_stored - 1

    rng = np.random.default_rng(seed)

    # ---- signal: one beat model evaluated on the phase of every sample (the template, tiled without drift)
    rr = 60.0 / heart_rate_bpm
    beat = _make_beat(rr, rng, vary_morphology)
    first_r = float(rng.uniform(0.15, 0.15 + rr))
    t = np.arange(n_rhythm) / fs
    rel = t - first_r
    k = np.floor(rel / rr + 0.5)
    d = rel - k * rr  # time from the nearest R peak, in [-RR/2, RR/2)
    # neighbouring beats' tails (T of the previous beat, P of the next one) overlap at fast rates
    h = beat.heart_vector(d) + beat.heart_vector(d + rr) + beat.heart_vector(d - rr)
    extra_noise = None
    if noise_uv > 0 or baseline_wander_uv > 0:
        extra_noise = np.zeros((n_rhythm, 8))
        if noise_uv > 0:
            extra_noise += rng.normal(0.0, noise_uv, size=(n_rhythm, 8))
        if baseline_wander_uv > 0:
            freq = rng.uniform(0.15, 0.35)
            phase = rng.uniform(0, 2 * np.pi, size=8)
            amp = baseline_wander_uv * rng.uniform(0.5, 1.0, size=8)
            extra_noise += amp * np.sin(2 * np.pi * freq * t[:, None] + phase)
    rhythm = _twelve_leads(h, extra_noise)
    r_peaks = first_r + rr * np.arange(-1, math.ceil(n_rhythm / fs / rr) + 1)
    r_peaks = r_peaks[(r_peaks >= 0) & (r_peaks < n_rhythm / fs)]

    physical_groups: list[tuple[str, npt.NDArray[np.float64], float]] = [
        ("RHYTHM", rhythm, group_time_offset_ms / 1000.0)]
    if include_median:
        tm = np.arange(n_median) / fs - 0.4 * median_duration_s
        physical_groups.append(("MEDIAN BEAT", _twelve_leads(beat.heart_vector(tm), None), 0.0))

    measures = _measurements(beat, rr)
    if statements is None:
        rhythm_text = ("Sinus bradycardia" if heart_rate_bpm < 60 else
                       "Sinus tachycardia" if heart_rate_bpm > 100 else "Sinus rhythm")
        statements = (rhythm_text, "Normal ECG" if 60 <= heart_rate_bpm <= 100 else "Otherwise normal ECG")

    # ---- dataset
    local = acquisition_datetime
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    sop_uid = sop_instance_uid or generate_uid()
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ts_uid
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"ECGNODE_{__version__}"[:16]
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\x00" * 128)

    texts = [patient_name, patient_id, institution_name, station_name, manufacturer, *statements]
    if not all(s.isascii() for s in texts if s):
        ds.SpecificCharacterSet = "ISO_IR 192"  # PS3.3 C.12.1.1.2: UTF-8 when text is not ASCII
    # SOP Common (C.12.1)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = local.strftime("%Y%m%d")
    ds.InstanceCreationTime = _tm_local(local)
    if zone_style == "timezone-offset":
        # PS3.3 C.12.1.1.8: applies to every DA/TM/DT of the instance that carries no offset of its own
        ds.TimezoneOffsetFromUTC = _offset_str(offset)
    # General Study (C.7.2.1)
    ds.StudyInstanceUID = study_instance_uid or generate_uid()
    ds.StudyDate = local.strftime("%Y%m%d")
    ds.StudyTime = _tm_local(local)
    ds.ReferringPhysicianName = ""
    ds.StudyID = study_id
    ds.AccessionNumber = accession_number
    ds.StudyDescription = "Resting 12-lead ECG"
    # Patient (C.7.1.1)
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = birth_date or ""
    ds.PatientSex = sex or ""
    # General Series (C.7.3.1)
    ds.Modality = "ECG"
    ds.SeriesInstanceUID = series_instance_uid or generate_uid()
    ds.SeriesNumber = series_number
    # General Equipment (C.7.5.1)
    ds.Manufacturer = manufacturer
    ds.InstitutionName = institution_name
    ds.StationName = station_name
    ds.ManufacturerModelName = model_name
    ds.DeviceSerialNumber = device_serial_number
    ds.SoftwareVersions = software_versions or __version__
    # Waveform Identification (C.10.8)
    ds.InstanceNumber = instance_number
    ds.ContentDate = local.strftime("%Y%m%d")
    ds.ContentTime = _tm_local(local)
    acq = _dt_local(local)
    ds.AcquisitionDateTime = acq + _offset_str(offset) if zone_style == "offset-in-dt" else acq
    # Synchronization (C.7.4.2), optional in the 12-lead IOD
    if acquisition_time_synchronized is not None or time_source is not None:
        ds.SynchronizationFrameOfReferenceUID = UTC_SYNCHRONIZATION_UID
        ds.SynchronizationTrigger = "NO TRIGGER"
        ds.AcquisitionTimeSynchronized = "Y" if acquisition_time_synchronized else "N"
        if time_source:
            ds.TimeSource = time_source
    # Acquisition Context (C.7.6.14): electrode placement, as carts send it
    ctx = Dataset()
    ctx.ValueType = "CODE"
    ctx.ConceptNameCodeSequence = DicomSequence([_code("5.4.5-33-1", "SCPECG", "Electrode Placement", "1.3")])
    ctx.ConceptCodeSequence = DicomSequence([_code(
        "5.4.5-33-1-1", "SCPECG", "Standard 12-lead positions: limb leads placed at extremities", "1.3")])
    ds.AcquisitionContextSequence = DicomSequence([ctx])

    # Waveform (C.10.9)
    # PS3.5 7.3, 8.3: OW is a string of 16-bit words, each byte-swapped in Explicit VR Big Endian; OB (8-bit) never
    # is. So a 32/64-bit sample keeps its words in little-endian order with the bytes of each word swapped.
    swap_words = ts_uid == ExplicitVRBigEndian and bits_allocated > 8
    dtype = np.dtype("<" + kind)
    groups_truth: list[GroupTruth] = []
    items = []
    filters = [(Tag(0x003A, 0x0220), filter_low_hz), (Tag(0x003A, 0x0221), filter_high_hz),
               (Tag(0x003A, 0x0222), notch_hz)]
    for label, phys, offset_s in physical_groups:
        # PS3.3 C.10.9.1.4: value = stored × sensitivity × correction factor + baseline, inverted here
        scaled = np.rint((phys - base) / step)
        stored = np.clip(scaled, lo, hi)
        clipped = int(np.count_nonzero(stored != scaled))
        stored_i = stored.astype(np.int64)
        item = Dataset()
        item.MultiplexGroupTimeOffset = _ds_str(offset_s * 1000.0)
        item.TriggerTimeOffset = "0"
        item.WaveformOriginality = "ORIGINAL" if label == "RHYTHM" else "DERIVED"
        item.NumberOfWaveformChannels = _N_LEADS
        item.NumberOfWaveformSamples = phys.shape[0]
        item.SamplingFrequency = fs_str
        item.MultiplexGroupLabel = label
        channels = []
        for c, (lead, code, meaning) in enumerate(LEADS):
            ch = Dataset()
            ch.ChannelLabel = lead
            ch.ChannelSourceSequence = DicomSequence([_code(code, "SCPECG", meaning, "1.3")])
            ch.ChannelSensitivity = sens_str[c]
            ch.ChannelSensitivityUnitsSequence = DicomSequence([_code("uV", "UCUM", "microvolt", "1.4")])
            ch.ChannelSensitivityCorrectionFactor = cf_str[c]
            ch.ChannelBaseline = base_str[c]
            ch.ChannelSampleSkew = "0"
            ch.WaveformBitsStored = bits_stored
            for tag, value in filters:
                if value is not None:
                    ch.add_new(tag, "DS", _ds_str(value))
            channels.append(ch)
        item.ChannelDefinitionSequence = DicomSequence(channels)
        item.WaveformBitsAllocated = bits_allocated
        item.WaveformSampleInterpretation = interp
        # Interleaved by sample (C.10.9.1.7): C-order (n_samples, n_channels); OB for 8-bit, else OW (PS3.5 8.3)
        data = stored_i.astype(dtype).tobytes()
        if swap_words:
            data = np.frombuffer(data, dtype="<u2").byteswap().tobytes()
        if len(data) % 2:
            data += b"\x00"  # PS3.5 7.1.1: even value length
        item.add_new(Tag(0x5400, 0x1010), "OB" if bits_allocated == 8 else "OW", data)
        items.append(item)
        groups_truth.append(GroupTruth(
            label=label, sampling_frequency=fs, physical=phys, stored=stored_i, sensitivity=sens,
            correction_factor=cf, baseline=base, clipped=clipped, time_offset_s=offset_s,
            start=acquisition_datetime + timedelta(seconds=offset_s)))
    ds.WaveformSequence = DicomSequence(items)

    # Waveform Annotation (C.10.10)
    if annotations:
        ann = []
        for text in statements:
            a = Dataset()
            a.UnformattedTextValue = text
            a.AnnotationGroupNumber = 0
            ann.append(a)
        for key, value in measures.items():
            code, scheme, meaning, unit, unit_meaning = _MEASUREMENT_CODES[key]
            a = Dataset()
            a.ConceptNameCodeSequence = DicomSequence([_code(code, scheme, meaning)])
            a.NumericValue = _ds_str(value)
            a.MeasurementUnitsCodeSequence = DicomSequence([_code(unit, "UCUM", unit_meaning, "1.4")])
            # (group 1, channel 0): applies to every channel of the rhythm group (C.10.10.1.1)
            a.ReferencedWaveformChannels = [1, 0]
            a.AnnotationGroupNumber = 1
            ann.append(a)
        ds.WaveformAnnotationSequence = DicomSequence(ann)

    truth = EcgTruth(
        leads=tuple(lead for lead, _, _ in LEADS),
        groups=groups_truth,
        heart_rate_bpm=float(heart_rate_bpm),
        r_peaks_s=r_peaks,
        measurements={k_: float(v) for k_, v in measures.items()},
        statements=tuple(statements),
        acquisition_datetime=acquisition_datetime,
        interpretation=interp,
        transfer_syntax_uid=str(ts_uid),
    )
    return ds, truth


def synthesize_ecg(**kwargs: Any) -> FileDataset:
    """Build a synthetic 12-lead ECG object.

    Takes the same keyword-only arguments as :func:`synthesize_ecg_with_truth` and returns only the dataset.

    Returns
    -------
    pydicom.dataset.FileDataset
    """
    ds, _ = synthesize_ecg_with_truth(**kwargs)
    return ds


def ecg_to_bytes(ds: FileDataset) -> bytes:
    """Encode ``ds`` as a DICOM Part 10 file in its file meta's transfer syntax (deflated when that says so).

    Parameters
    ----------
    ds : pydicom.dataset.FileDataset
        A dataset from :func:`synthesize_ecg`. Its Waveform Data is already in the byte order of that transfer
        syntax; changing ``file_meta.TransferSyntaxUID`` afterwards would not swap it.

    Returns
    -------
    bytes
    """
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def write_ecg(path: str | os.PathLike[str], ds: FileDataset) -> None:
    """Write ``ds`` as a Part 10 file at ``path`` (overwriting it).

    Parameters
    ----------
    path : path-like
        Destination file.
    ds : pydicom.dataset.FileDataset
        A dataset from :func:`synthesize_ecg`.
    """
    with open(path, "wb") as fh:
        fh.write(ecg_to_bytes(ds))


__all__ = [
    "GENERAL_32BIT_ECG",
    "GENERAL_ECG",
    "LEADS",
    "TRANSFER_SYNTAXES",
    "TWELVE_LEAD_ECG",
    "UTC_SYNCHRONIZATION_UID",
    "ZONE_STYLES",
    "EcgTruth",
    "GroupTruth",
    "ecg_to_bytes",
    "synthesize_ecg",
    "synthesize_ecg_with_truth",
    "write_ecg",
]
