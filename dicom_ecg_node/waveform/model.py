"""The decoded waveform model: :class:`Recording` → :class:`MultiplexGroup` → :class:`Channel`.

These are plain values produced by :func:`dicom_ecg_node.waveform.decode`; they do no I/O. Physical values follow
PS3.3 C.10.9.1.4: value = stored × Channel Sensitivity × Channel Sensitivity Correction Factor + Channel Baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class CodedConcept:
    """A coded entry (PS3.3 Table 8.8-1): Code Value, Coding Scheme Designator, Code Meaning."""

    value: str
    scheme: str
    meaning: str

    def __str__(self) -> str:
        return f"({self.value}, {self.scheme}, {self.meaning!r})"


@dataclass(frozen=True, slots=True)
class Channel:
    """One channel of a multiplex group (Channel Definition Sequence item, PS3.3 C.10.9.1.4).

    Attributes
    ----------
    label : str
        Channel Label when sent, else the Channel Source code's meaning, else ``"Channel N"``.
    source : CodedConcept or None
        Channel Source Sequence (lead identity, e.g. ``(5.6.3-9-1, SCPECG, Lead I)`` or an MDC code).
    units : str or None
        Code Value of Channel Sensitivity Units Sequence (UCUM as sent, e.g. ``"uV"``, ``"mV"``); ``None`` when the
        channel is not calibrated (samples are then raw codes, scaled by 1).
    sensitivity : float
        Channel Sensitivity (1.0 when absent).
    correction_factor : float
        Channel Sensitivity Correction Factor (1.0 when absent).
    baseline : float
        Channel Baseline in the channel's units (0.0 when absent).
    skew_s : float
        Offset of this channel's first sample from the group start, seconds (Channel Sample Skew / frequency or
        Channel Time Skew).
    bits_stored : int
        Waveform Bits Stored.
    filter_low_hz, filter_high_hz, notch_hz : float or None
        Filter Low Frequency, Filter High Frequency, Notch Filter Frequency (Hz).
    """

    label: str
    source: CodedConcept | None
    units: str | None
    sensitivity: float
    correction_factor: float
    baseline: float
    skew_s: float
    bits_stored: int
    filter_low_hz: float | None = None
    filter_high_hz: float | None = None
    notch_hz: float | None = None


def calibrate(raw: npt.NDArray[np.integer], channels: list[Channel],
              padding: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.float64]:
    """Physical values of stored samples (PS3.3 C.10.9.1.4.1-2): stored × sensitivity × correction + baseline.

    Parameters
    ----------
    raw : numpy.ndarray
        Stored values, shape ``(n_samples, len(channels))``.
    channels : list of Channel
        One per column of ``raw``: sensitivity, correction factor and baseline.
    padding : numpy.ndarray of bool, optional
        Where the Waveform Padding Value stands (the shape of ``raw``): NaN there.

    Returns
    -------
    numpy.ndarray
        float64, the shape of ``raw``.
    """
    scale = np.array([c.sensitivity * c.correction_factor for c in channels], dtype=np.float64)
    baseline = np.array([c.baseline for c in channels], dtype=np.float64)
    samples = raw.astype(np.float64)
    if not (scale == 1.0).all():
        samples *= scale
    if baseline.any():
        samples += baseline
    if padding is not None:
        samples[padding] = np.nan
    return samples


@dataclass(slots=True, eq=False)
class MultiplexGroup:
    """One Waveform Sequence item: channels sampled together at one rate (PS3.3 C.10.9.1).

    Attributes
    ----------
    index : int
        Zero-based position in the Waveform Sequence.
    label : str
        Multiplex Group Label (``"RHYTHM"``, ``"MEDIAN BEAT"``...), ``""`` when absent.
    sampling_frequency : float
        Hz.
    n_samples : int
        Samples per channel.
    channels : list of Channel
    raw : numpy.ndarray
        Integers as stored (after G.711 expansion for MB/AB and sign extension below bits allocated),
        shape ``(n_samples, n_channels)``.
    samples : numpy.ndarray
        float64 physical values, same shape; NaN where the Waveform Padding Value stands. The decoder's groups
        compute them on first use (:meth:`calibrated_on_use`).
    start : datetime or None
        Acquisition datetime plus Multiplex Group Time Offset; timezone-aware whenever a zone is known.
    time_offset_s : float
        Multiplex Group Time Offset, seconds.
    interpretation : str
        Waveform Sample Interpretation (SS, US, SB, UB, MB, AB, SL, UL, SV, UV).
    bits_allocated : int
        Waveform Bits Allocated.
    padding_value : int or None
        Waveform Padding Value as an integer in the stored interpretation.
    """

    index: int
    label: str
    sampling_frequency: float
    n_samples: int
    channels: list[Channel]
    raw: npt.NDArray[np.integer]
    samples: npt.NDArray[np.float64]
    start: datetime | None
    time_offset_s: float = 0.0
    interpretation: str = "SS"
    bits_allocated: int = 16
    padding_value: int | None = None

    @classmethod
    def calibrated_on_use(cls, index: int, label: str, sampling_frequency: float, n_samples: int,
                          channels: list[Channel], raw: npt.NDArray[np.integer], start: datetime | None,
                          time_offset_s: float, interpretation: str, bits_allocated: int, padding_value: int | None,
                          padding: npt.NDArray[np.bool_] | None) -> MultiplexGroup:
        r"""A group whose ``samples`` are :func:`calibrate`\ d from ``raw`` when first read, then kept.

        Storing an ECG only checks and summarises it: converting every sample was ~3% of the node's work per ECG.
        ``padding`` marks where ``raw`` holds the Waveform Padding Value (NaN in ``samples``). The group behaves
        as one made with the samples (``dataclasses.replace`` included).
        """
        return _CalibratedOnUse(index, label, sampling_frequency, n_samples, channels, raw, None, start,
                                time_offset_s, interpretation, bits_allocated, padding_value, padding=padding)

    @property
    def duration_s(self) -> float:
        """Length of the group in seconds (``n_samples / sampling_frequency``)."""
        return self.n_samples / self.sampling_frequency

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return len(self.channels)

    def times(self, channel: int | None = None) -> npt.NDArray[np.float64]:
        """Seconds of each sample from the group start.

        Parameters
        ----------
        channel : int, optional
            Channel index; when given, that channel's skew (Channel Sample Skew / Channel Time Skew) is added.

        Returns
        -------
        numpy.ndarray
            float64 seconds, shape ``(n_samples,)``.
        """
        t = np.arange(self.n_samples, dtype=np.float64) / self.sampling_frequency
        if channel is not None:
            t = t + self.channels[channel].skew_s
        return t

    def datetimes(self, channel: int | None = None) -> npt.NDArray[np.datetime64]:
        """Absolute UTC time of each sample as ``datetime64[ns]``.

        Raises
        ------
        ValueError
            When the group's start is unknown or carries no time zone (no absolute time can be given).
        """
        if self.start is None or self.start.tzinfo is None:
            raise ValueError(f"group {self.index} has no timezone-aware start time")
        start_utc = self.start.astimezone(UTC).replace(tzinfo=None)
        base = np.datetime64(start_utc, "ns")
        return base + np.round(self.times(channel) * 1e9).astype("timedelta64[ns]")

    def channel_by_label(self, label: str) -> int:
        """Index of the first channel whose label equals ``label`` (case-insensitive).

        Raises
        ------
        KeyError
            No such channel.
        """
        wanted = label.casefold()
        for i, ch in enumerate(self.channels):
            if ch.label.casefold() == wanted:
                return i
        raise KeyError(label)


class _CalibratedOnUse(MultiplexGroup):
    """:meth:`MultiplexGroup.calibrated_on_use`: ``samples`` is a property over the dataclass's slot."""

    __slots__ = ("_calibrated", "_padding")

    def __init__(self, *args: Any, padding: npt.NDArray[np.bool_] | None = None, **kwargs: Any) -> None:
        self._padding = padding
        super().__init__(*args, **kwargs)  # its ``self.samples = ...`` goes through the setter below

    @property  # type: ignore[override]
    def samples(self) -> npt.NDArray[np.float64]:
        if self._calibrated is None:
            self._calibrated = calibrate(self.raw, self.channels, self._padding)
            self._padding = None  # in the samples now (NaN): not kept twice
        return self._calibrated

    @samples.setter
    def samples(self, value: npt.NDArray[np.float64] | None) -> None:
        self._calibrated = value

    def __repr__(self) -> str:
        # The dataclass's repr names the class it is called on: show the public one, as the group behaves as one.
        return "MultiplexGroup" + MultiplexGroup.__repr__(self)[len(type(self).__qualname__):]


@dataclass(frozen=True, slots=True)
class Measurement:
    """A numeric annotation (Waveform Annotation Sequence item with Numeric Value, PS3.3 C.10.10.1.1).

    Attributes
    ----------
    concept : CodedConcept
        Concept Name Code Sequence (e.g. ``(8867-4, LN, Heart rate)`` or SCPECG / MDC codes).
    value : float
        Numeric Value (the first one when several are sent).
    units : str or None
        Code Value of Measurement Units Code Sequence (UCUM).
    referenced_channels : tuple of (int, int)
        (multiplex group number, channel number) pairs from Referenced Waveform Channels, 1-based as sent;
        channel 0 means every channel of that group (PS3.3 C.10.10.1.1).
    annotation_group_number : int or None
        Annotation Group Number (0040,A180), when sent.
    """

    concept: CodedConcept
    value: float
    units: str | None = None
    referenced_channels: tuple[tuple[int, int], ...] = ()
    annotation_group_number: int | None = None


@dataclass(frozen=True, slots=True)
class Fiducial:
    """A coded or textual annotation anchored in time (PS3.3 C.10.10.1.2, C.10.10.1.3): e.g. a P onset.

    Attributes
    ----------
    concept : CodedConcept or None
        Concept Name Code Sequence (e.g. ``(5.10.3-1, SCPECG, P Onset)``).
    text : str or None
        Unformatted Text Value, when sent.
    temporal_range_type : str or None
        POINT, MULTIPOINT, SEGMENT, MULTISEGMENT, BEGIN or END.
    sample_positions : tuple of int
        Referenced Sample Positions (1-based sample numbers within the referenced group, as sent).
    time_offsets : tuple of float
        Referenced Time Offsets, as sent.
    referenced_channels : tuple of (int, int)
        (multiplex group number, channel number) pairs, 1-based as sent; channel 0 means every channel of the group.
    annotation_group_number : int or None
        Annotation Group Number (0040,A180), grouping related annotations (e.g. the fiducials of one beat).
    """

    concept: CodedConcept | None
    text: str | None = None
    temporal_range_type: str | None = None
    sample_positions: tuple[int, ...] = ()
    time_offsets: tuple[float, ...] = ()
    referenced_channels: tuple[tuple[int, int], ...] = ()
    annotation_group_number: int | None = None


@dataclass(frozen=True, slots=True)
class Synchronization:
    """Synchronization module values (PS3.3 C.7.4.2), when present."""

    frame_of_reference_uid: str | None = None
    synchronization_trigger: str | None = None
    trigger_source_or_type: str | None = None
    acquisition_time_synchronized: str | None = None
    time_source: str | None = None
    time_distribution_protocol: str | None = None


@dataclass(slots=True, eq=False)
class Recording:
    """One decoded waveform object.

    Attributes
    ----------
    sop_class_uid, sop_instance_uid, study_instance_uid, series_instance_uid : str or None
        Identifying UIDs as sent (``None`` when absent).
    patient_id, patient_name : str or None
        Patient ID and Patient's Name (name as its DICOM string, components separated by ``^``).
    acquisition_datetime : datetime or None
        Acquisition DateTime (or Content / Study date and time when absent, see ``time_source_attribute``),
        timezone-aware whenever a zone is known (its own UTC offset, else Timezone Offset From UTC, else the
        decoder's ``default_zone``).
    groups : list of MultiplexGroup
    measurements : list of Measurement
    statements : list of str
        Coded statement meanings and free-text annotations, in order.
    synchronization : Synchronization or None
    warnings : list of str
        Rules the file breaks that did not leave its meaning in doubt.
    acquisition_datetime_raw : str or None
        The date/time string exactly as sent.
    zone_source : str or None
        Where the zone came from: ``"datetime"`` (its own offset), ``"TimezoneOffsetFromUTC"``, ``"default"``
        or ``None`` (time unknown).
    patient_birth_date, patient_sex, modality, manufacturer, model_name, device_serial_number : str or None
        As sent.
    time_source_attribute : str or None
        The attribute(s) the acquisition time was read from: ``"AcquisitionDateTime"``, or a fallback
        ``"AcquisitionDate+AcquisitionTime"``, ``"ContentDate+ContentTime"``, ``"StudyDate+StudyTime"``.
    fiducials : list of Fiducial
        Annotations anchored at sample positions or times (fiducial points, segments).
    transfer_syntax_uid : str or None
        Transfer syntax the object was read with, when known.
    """

    sop_class_uid: str | None
    sop_instance_uid: str | None
    study_instance_uid: str | None
    series_instance_uid: str | None
    patient_id: str | None
    patient_name: str | None
    acquisition_datetime: datetime | None
    groups: list[MultiplexGroup] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)
    synchronization: Synchronization | None = None
    warnings: list[str] = field(default_factory=list)
    acquisition_datetime_raw: str | None = None
    zone_source: str | None = None
    patient_birth_date: str | None = None
    patient_sex: str | None = None
    modality: str | None = None
    manufacturer: str | None = None
    model_name: str | None = None
    device_serial_number: str | None = None
    time_source_attribute: str | None = None
    fiducials: list[Fiducial] = field(default_factory=list)
    transfer_syntax_uid: str | None = None

    @property
    def acquisition_utc(self) -> datetime | None:
        """Acquisition time in UTC, or ``None`` when unknown or without a zone."""
        if self.acquisition_datetime is None or self.acquisition_datetime.tzinfo is None:
            return None
        return self.acquisition_datetime.astimezone(UTC)

    @property
    def utc_offset(self) -> timedelta | None:
        """The acquisition time's UTC offset, when known."""
        if self.acquisition_datetime is None:
            return None
        return self.acquisition_datetime.utcoffset()

    def group(self, label: str) -> MultiplexGroup:
        """The first group whose label equals ``label`` (case-insensitive).

        Raises
        ------
        KeyError
            No such group.
        """
        wanted = label.casefold()
        for g in self.groups:
            if g.label.casefold() == wanted:
                return g
        raise KeyError(label)
