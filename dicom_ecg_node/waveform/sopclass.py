"""Waveform storage SOP classes the node stores, with the constraints PS3.3 A.34 puts on each IOD.

The table is the one place that lists them: the network layer builds its presentation contexts from it and the
decoder uses it to check group and channel limits.
"""

from __future__ import annotations

from dataclasses import dataclass

_PREFIX = "1.2.840.10008.5.1.4.1.1."


@dataclass(frozen=True, slots=True)
class WaveformSOPClass:
    """A waveform storage SOP class and the limits its IOD sets (PS3.3 A.34.x, "Waveform IOD Content Constraints").

    Attributes
    ----------
    uid, name, modality : str
        SOP Class UID, name, and the Modality the IOD requires.
    max_groups : int or None
        Maximum number of multiplex groups (``None``: no limit).
    max_channels : int or None
        Maximum channels per group.
    interpretations : frozenset of str
        Waveform Sample Interpretations the IOD allows.
    min_frequency, max_frequency : float or None
        Inclusive limits on Sampling Frequency (Hz) of every group.
    max_total_channels : int or None
        Limit on the channels of all groups together.
    max_samples : int or None
        Limit on Number of Waveform Samples per group.
    verified : bool
        Whether these values were checked against the text of PS3.3 A.34 (see the table below); unverified
        rows keep the values of the original table and are used for warnings only.
    """

    uid: str
    name: str
    modality: str
    max_groups: int | None
    max_channels: int | None
    interpretations: frozenset[str]
    min_frequency: float | None = None
    max_frequency: float | None = None
    max_total_channels: int | None = None
    max_samples: int | None = None
    verified: bool = False


_SS = frozenset({"SS"})
_SS_SL = frozenset({"SS", "SL"})
_SS_US = frozenset({"SS", "US"})

# Values checked against PS3.3 A.34 (2013-2024 editions):
#   A.34.2.4  Basic Voice Audio: Modality AU; 1 item; 1 or 2 channels; 8000 Hz; UB, MB or AB (not SS/SB).
#   A.34.3.4  12-lead ECG: Modality ECG; 1-5 items; 1-13 channels per item and at most 13 in total;
#             200-1000 Hz; SS; at most 16384 samples per channel.
#   A.34.4.4  General ECG: Modality ECG; 1-4 items; 1-24 channels; 200-1000 Hz; SS.
#   A.34.6.4  Hemodynamic: Modality HD; 1-4 items; 1-8 channels; <= 400 Hz; SS.
#   A.34.7.4  Basic Cardiac EP: Modality EPS; 1-4 items; channels not limited; <= 20000 Hz; SS.
#   A.34.9.4  Respiratory: Modality RESP; 1 item; 1 channel; <= 100 Hz.
#   A.34.11.4 General Audio: 44.1, 48 or 96 kHz (a set, not a range: not encoded here).
# Rows marked verified=False were not confirmed against the standard's text in this revision.
#: Every waveform storage SOP class, keyed by UID (PS3.4 B.5, PS3.3 A.34).
WAVEFORM_SOP_CLASSES: dict[str, WaveformSOPClass] = {
    c.uid: c
    for c in (
        WaveformSOPClass(_PREFIX + "9.1.1", "12-lead ECG Waveform Storage", "ECG", 5, 13, _SS,
                         min_frequency=200, max_frequency=1000, max_total_channels=13, max_samples=16384,
                         verified=True),
        WaveformSOPClass(_PREFIX + "9.1.2", "General ECG Waveform Storage", "ECG", 4, 24, _SS,
                         min_frequency=200, max_frequency=1000, verified=True),
        WaveformSOPClass(_PREFIX + "9.1.3", "Ambulatory ECG Waveform Storage", "ECG", 1, 12,
                         frozenset({"SB", "SS"}), min_frequency=50, max_frequency=1000),
        WaveformSOPClass(_PREFIX + "9.1.4", "General 32-bit ECG Waveform Storage", "ECG", 4, 24, _SS_SL),
        WaveformSOPClass(_PREFIX + "9.2.1", "Hemodynamic Waveform Storage", "HD", 4, 8, _SS,
                         max_frequency=400, verified=True),
        WaveformSOPClass(_PREFIX + "9.3.1", "Cardiac Electrophysiology Waveform Storage", "EPS", 4, None, _SS,
                         max_frequency=20000, verified=True),
        WaveformSOPClass(_PREFIX + "9.4.1", "Basic Voice Audio Waveform Storage", "AU", 1, 2,
                         frozenset({"UB", "MB", "AB"}), min_frequency=8000, max_frequency=8000, verified=True),
        WaveformSOPClass(_PREFIX + "9.4.2", "General Audio Waveform Storage", "AU", 4, 2,
                         frozenset({"SB", "SS", "MB", "AB", "UB", "US"})),
        WaveformSOPClass(_PREFIX + "9.5.1", "Arterial Pulse Waveform Storage", "HD", 1, 1,
                         frozenset({"SB", "UB", "SS", "US"}), max_frequency=600),
        WaveformSOPClass(_PREFIX + "9.6.1", "Respiratory Waveform Storage", "RESP", 1, 1,
                         frozenset({"SB", "UB", "SS", "US"}), max_frequency=100),
        WaveformSOPClass(_PREFIX + "9.6.2", "Multi-channel Respiratory Waveform Storage", "RESP", None, None,
                         frozenset({"SS", "US", "SL", "UL"})),
        WaveformSOPClass(_PREFIX + "9.7.1", "Routine Scalp Electroencephalogram Waveform Storage", "EEG", None,
                         None, _SS_SL),
        WaveformSOPClass(_PREFIX + "9.7.2", "Electromyogram Waveform Storage", "EMG", None, None, _SS_SL),
        WaveformSOPClass(_PREFIX + "9.7.3", "Electrooculogram Waveform Storage", "EOG", None, None, _SS_SL),
        WaveformSOPClass(_PREFIX + "9.7.4", "Sleep Electroencephalogram Waveform Storage", "EEG", None, None,
                         _SS_SL),
        WaveformSOPClass(_PREFIX + "9.8.1", "Body Position Waveform Storage", "POS", 1, None,
                         frozenset({"SS", "US", "SB", "UB"})),
    )
}


def iod_violations(sop_class_uid: str | None, modality: str | None,
                   groups: list[tuple[int, float, str, int]]) -> list[str]:
    """Content constraints of the IOD (PS3.3 A.34.x.4) that an object breaks, as readable sentences.

    Parameters
    ----------
    sop_class_uid, modality : str or None
        As sent.
    groups : list of (n_channels, sampling_frequency, interpretation, n_samples)
        One tuple per multiplex group, in Waveform Sequence order.

    Returns
    -------
    list of str
        Empty when the object conforms or its SOP class is not a waveform class. These are meant as warnings:
        the node stores and decodes such objects anyway.
    """
    iod = WAVEFORM_SOP_CLASSES.get(sop_class_uid or "")
    if iod is None:
        return []
    out: list[str] = []
    name = iod.name
    if modality is not None and modality != iod.modality:
        out.append(f"Modality {modality!r} where {name} requires {iod.modality!r}")
    if iod.max_groups is not None and len(groups) > iod.max_groups:
        out.append(f"{len(groups)} multiplex groups where {name} allows at most {iod.max_groups}")
    total = sum(g[0] for g in groups)
    if iod.max_total_channels is not None and total > iod.max_total_channels:
        out.append(f"{total} channels in all groups where {name} allows at most {iod.max_total_channels} in total")
    for i, (n_channels, fs, interpretation, n_samples) in enumerate(groups):
        where = f"Waveform Sequence item {i}"
        if iod.max_channels is not None and n_channels > iod.max_channels:
            out.append(f"{where}: {n_channels} channels where {name} allows at most {iod.max_channels}")
        if interpretation not in iod.interpretations:
            allowed = ", ".join(sorted(iod.interpretations))
            out.append(f"{where}: sample interpretation {interpretation} where {name} allows {allowed}")
        if iod.min_frequency is not None and fs < iod.min_frequency:
            out.append(f"{where}: sampling frequency {fs:g} Hz below the {iod.min_frequency:g} Hz {name} requires")
        if iod.max_frequency is not None and fs > iod.max_frequency:
            out.append(f"{where}: sampling frequency {fs:g} Hz above the {iod.max_frequency:g} Hz {name} allows")
        if iod.max_samples is not None and n_samples > iod.max_samples:
            out.append(f"{where}: {n_samples} samples where {name} allows at most {iod.max_samples}")
    return out


#: Encapsulated PDF Storage (PS3.3 A.45.1): carts send their printed report beside the waveform.
ENCAPSULATED_PDF = _PREFIX + "104.1"

#: Comprehensive SR Storage (PS3.4 B.5, PS3.3 A.35.3): the node's own ECG reports (PS3.16 TID 3700), and carts'.
COMPREHENSIVE_SR = _PREFIX + "88.33"

#: Every SOP class the node accepts for storage.
STORAGE_SOP_CLASSES: tuple[str, ...] = (*WAVEFORM_SOP_CLASSES, ENCAPSULATED_PDF, COMPREHENSIVE_SR)


def is_waveform_class(uid: str | None) -> bool:
    """Whether ``uid`` is a waveform storage SOP class."""
    return uid in WAVEFORM_SOP_CLASSES
