"""Pure decoding of DICOM waveform objects: no I/O beyond reading a path it is given, no database, no network.

Public API: :func:`decode` → :class:`Recording` of :class:`MultiplexGroup` of :class:`Channel`, plus
:class:`Measurement`, :class:`Synchronization`, :class:`CodedConcept`, the error :class:`WaveformError`, and the
synthetic 12-lead writer :func:`synthesize_ecg` for tests, demos and benchmarks. :func:`read_object` and
:func:`attribute` read a file's bytes once for both the decoder and the caller's own attributes (the ingest
service), :class:`Unsupported` saying when pydicom must read it instead.
"""

from dicom_ecg_node.errors import WaveformError
from dicom_ecg_node.waveform._fastread import FastItem, Unsupported
from dicom_ecg_node.waveform.decode import (
    ChannelCache,
    attribute,
    attribute_text,
    attribute_uid,
    decode,
    read_header_object,
    read_object,
)
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
    "ChannelCache",
    "CodedConcept",
    "FastItem",
    "Measurement",
    "MultiplexGroup",
    "Recording",
    "Synchronization",
    "Unsupported",
    "WaveformError",
    "attribute",
    "attribute_text",
    "attribute_uid",
    "decode",
    "is_waveform_class",
    "read_header_object",
    "read_object",
    "synthesize_ecg",
]
