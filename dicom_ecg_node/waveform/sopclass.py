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
    """

    uid: str
    name: str
    modality: str
    max_groups: int | None
    max_channels: int | None
    interpretations: frozenset[str]


_SS = frozenset({"SS"})
_SS_SL = frozenset({"SS", "SL"})
_AUDIO = frozenset({"SB", "SS", "MB", "AB"})
_SS_US = frozenset({"SS", "US"})

#: Every waveform storage SOP class, keyed by UID (PS3.4 B.5, PS3.3 A.34).
WAVEFORM_SOP_CLASSES: dict[str, WaveformSOPClass] = {
    c.uid: c
    for c in (
        WaveformSOPClass(_PREFIX + "9.1.1", "12-lead ECG Waveform Storage", "ECG", 5, 13, _SS),
        WaveformSOPClass(_PREFIX + "9.1.2", "General ECG Waveform Storage", "ECG", 4, 24, _SS),
        WaveformSOPClass(_PREFIX + "9.1.3", "Ambulatory ECG Waveform Storage", "ECG", 1, 12,
                         frozenset({"SB", "SS"})),
        WaveformSOPClass(_PREFIX + "9.1.4", "General 32-bit ECG Waveform Storage", "ECG", 4, 24, _SS_SL),
        WaveformSOPClass(_PREFIX + "9.2.1", "Hemodynamic Waveform Storage", "HD", 4, 8, _SS),
        WaveformSOPClass(_PREFIX + "9.3.1", "Cardiac Electrophysiology Waveform Storage", "EPS", 4, None, _SS),
        WaveformSOPClass(_PREFIX + "9.4.1", "Basic Voice Audio Waveform Storage", "AU", 1, 2, _AUDIO),
        WaveformSOPClass(_PREFIX + "9.4.2", "General Audio Waveform Storage", "AU", 4, 2,
                         frozenset({"SB", "SS", "MB", "AB", "UB", "US"})),
        WaveformSOPClass(_PREFIX + "9.5.1", "Arterial Pulse Waveform Storage", "HD", 1, 1,
                         frozenset({"SB", "UB", "SS", "US"})),
        WaveformSOPClass(_PREFIX + "9.6.1", "Respiratory Waveform Storage", "RESP", 1, 1,
                         frozenset({"SB", "UB", "SS", "US"})),
        WaveformSOPClass(_PREFIX + "9.6.2", "Multi-channel Respiratory Waveform Storage", "RESP", None, None,
                         frozenset({"SS", "US", "SL", "UL"})),
        WaveformSOPClass(_PREFIX + "9.7.1", "Routine Scalp Electroencephalogram Waveform Storage", "EEG", None,
                         None, _SS),
        WaveformSOPClass(_PREFIX + "9.7.2", "Electromyogram Waveform Storage", "EMG", None, None, _SS),
        WaveformSOPClass(_PREFIX + "9.7.3", "Electrooculogram Waveform Storage", "EOG", None, None, _SS),
        WaveformSOPClass(_PREFIX + "9.7.4", "Sleep Electroencephalogram Waveform Storage", "EEG", None, None,
                         _SS),
        WaveformSOPClass(_PREFIX + "9.8.1", "Body Position Waveform Storage", "POS", 1, None,
                         frozenset({"SS", "US", "SB", "UB"})),
    )
}

#: Encapsulated PDF Storage (PS3.3 A.45.1): carts send their printed report beside the waveform.
ENCAPSULATED_PDF = _PREFIX + "104.1"

#: Every SOP class the node accepts for storage.
STORAGE_SOP_CLASSES: tuple[str, ...] = (*WAVEFORM_SOP_CLASSES, ENCAPSULATED_PDF)


def is_waveform_class(uid: str | None) -> bool:
    """Whether ``uid`` is a waveform storage SOP class."""
    return uid in WAVEFORM_SOP_CLASSES
