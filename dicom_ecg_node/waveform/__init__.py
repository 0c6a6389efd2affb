"""Pure decoding of DICOM waveform objects: no I/O beyond reading a path it is given, no database, no network.

Public API: :func:`decode` → :class:`Recording` of :class:`MultiplexGroup` of :class:`Channel`, plus
:class:`Measurement`, :class:`Synchronization`, :class:`CodedConcept`, the error :class:`WaveformError`, and the
synthetic 12-lead writer :func:`synthesize_ecg` for tests, demos and benchmarks.
"""

from dicom_ecg_node.errors import WaveformError
from dicom_ecg_node.waveform.decode import decode
from dicom_ecg_node.waveform.model import (
    Channel,
    CodedConcept,
    Measurement,
    MultiplexGroup,
    Recording,
    Synchronization,
)
from dicom_ecg_node.waveform.sopclass import WAVEFORM_SOP_CLASSES, is_waveform_class
from dicom_ecg_node.waveform.synth import synthesize_ecg

__all__ = [
    "WAVEFORM_SOP_CLASSES",
    "Channel",
    "CodedConcept",
    "Measurement",
    "MultiplexGroup",
    "Recording",
    "Synchronization",
    "WaveformError",
    "decode",
    "is_waveform_class",
    "synthesize_ecg",
]
