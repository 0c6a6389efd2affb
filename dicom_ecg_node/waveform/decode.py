"""Faithful decoding of DICOM waveform objects into a :class:`~dicom_ecg_node.waveform.model.Recording`.

The decoder does no I/O beyond opening the path it is given, and imports neither a database nor a network
library. It refuses (:class:`~dicom_ecg_node.errors.WaveformError`, naming the attribute and the group) an object
whose meaning is in doubt, and decodes, with a warning in ``Recording.warnings``, one that breaks a rule without
leaving its meaning in doubt.

Decisions worth knowing
-----------------------
Byte order (PS3.5 7.3, 8.3)
    Waveform Data is OW (16-bit words, byte-swapped per word in Explicit VR Big Endian) or, for 8-bit samples in
    explicit VR only, OB (never swapped). pydicom keeps OB/OW values as the bytes of the file, so in a big endian
    object we undo the per-word swap ourselves. 32- and 64-bit samples only entered the standard (SL/UL, SV/UV)
    after Big Endian was retired (2016), so no conformant writer ever produced them in big endian; we follow the
    letter of PS3.5 (an OW value is a string of 16-bit words, each swapped), which is also what a transfer-syntax
    converter such as DCMTK's does, and add a warning because a naive writer may have swapped whole samples.
    Waveform Padding Value, Channel Minimum/Maximum Value share Waveform Data's VR and are read the same way.
G.711 (MB, AB)
    Codes are expanded to 16-bit linear values (see :mod:`dicom_ecg_node.waveform._g711`); ``raw`` holds the
    expanded values, padding is compared with the codes.
Padding (PS3.3 C.10.9.1.6)
    Samples equal to Waveform Padding Value become NaN in ``samples`` (``raw`` keeps them). Exception: when the
    padding value lies strictly inside the range of the group's other samples (e.g. ECG Toolkit writes padding 0
    into a signal that crosses zero 1269 times), treating it as "missing" would punch holes in genuine data, so
    padding is not applied to that group and a warning says so.
Time (PS3.3 C.12.1.1.8 Timezone Offset From UTC, PS3.5 6.2 DT)
    The zone is the UTC offset carried by Acquisition DateTime, else Timezone Offset From UTC (0008,0201), else
    ``default_zone`` (a tzinfo or an IANA name; ``None`` means UTC). Without Acquisition DateTime we fall back to
    Acquisition Date + Time, Content Date + Time, then Study Date + Time, with a warning.
Channel cache
    A cart sends the same Channel Definition Sequence, byte for byte, with every ECG. Given a
    :class:`ChannelCache`, a group whose definitions were read as bytes (:class:`~._fastread.LazyItems`) takes its
    channels and their warnings from an earlier object with the same bytes, character set, group position,
    sampling frequency and bits allocated (everything :func:`_channel` reads), without reading the items again.
    The code sequences of annotation items (concept name, concept, measurement units) repeat the same way: the
    same cache maps their bytes and character set to the coded concept read from them (see
    :func:`~._annotations.parse_annotations`), so that only an item's own values (numbers, text) are read.
Reading (speed without a second meaning)
    Bytes and paths are read by :mod:`dicom_ecg_node.waveform._fastread`, which keeps only the elements decoded
    here; a Dataset's sequences still held as raw bytes are read by it too. Whatever it does not reproduce
    exactly goes to pydicom, and both feed the same value readers, so the Recording does not depend on the reader.
"""

from __future__ import annotations

import io
import os
import re
import struct
import zlib
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRBigEndian

from dicom_ecg_node.errors import WaveformError
from dicom_ecg_node.waveform._access import _CONVERT, number, person_name_text, sequence, text
from dicom_ecg_node.waveform._annotations import coded, first_item, parse_annotations
from dicom_ecg_node.waveform._datetime import localize, parse_da_tm, parse_dt, parse_offset, resolve_zone
from dicom_ecg_node.waveform._fastread import (
    KEEP_VALUES,
    FastItem,
    LazyItems,
    Unsupported,
    read_file,
    read_sequence_value,
)
from dicom_ecg_node.waveform._g711 import ALAW_TO_LINEAR16, MULAW_TO_LINEAR16
from dicom_ecg_node.waveform.model import Channel, CodedConcept, MultiplexGroup, Recording, Synchronization
from dicom_ecg_node.waveform.sopclass import iod_violations

#: Waveform Sample Interpretation -> (bits allocated, little-endian numpy dtype of the stored code),
#: PS3.3 C.10.9.1.5.
INTERPRETATIONS: dict[str, tuple[int, str]] = {
    "SB": (8, "i1"), "UB": (8, "u1"), "MB": (8, "u1"), "AB": (8, "u1"),
    "SS": (16, "<i2"), "US": (16, "<u2"),
    "SL": (32, "<i4"), "UL": (32, "<u4"),
    "SV": (64, "<i8"), "UV": (64, "<u8"),
}

# PS3.5 6.2 UI: components of digits separated by single periods, no leading zero, at most 64 characters.
_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")

Source = Dataset | FastItem | str | os.PathLike[str] | bytes | bytearray | memoryview

# Tags of the keywords read for every channel and group, looked up once (tag_for_keyword per call adds up).
_TAGS: dict[str, int] = {
    "ChannelBaseline": 0x003A0213, "ChannelDefinitionSequence": 0x003A0200, "ChannelLabel": 0x003A0203,
    "ChannelSampleSkew": 0x003A0215, "ChannelSensitivity": 0x003A0210, "ChannelSensitivityCorrectionFactor": 0x003A0212,
    "ChannelTimeSkew": 0x003A0214, "FilterHighFrequency": 0x003A0221, "FilterLowFrequency": 0x003A0220,
    "NotchFilterFrequency": 0x003A0222, "WaveformBitsStored": 0x003A021A, "MultiplexGroupLabel": 0x003A0020,
    "MultiplexGroupTimeOffset": 0x00181068, "NumberOfWaveformChannels": 0x003A0005,
    "NumberOfWaveformSamples": 0x003A0010, "SamplingFrequency": 0x003A001A, "WaveformBitsAllocated": 0x54001004,
    "WaveformSampleInterpretation": 0x54001006, "WaveformPaddingValue": 0x5400100A, "WaveformData": 0x54001010,
}

# What pydicom raises when it meets malformed bytes while converting lazily (struct.error, zlib.error: truncated
# or corrupt encodings; OSError: "No tag to read"; ValueError: a DS/IS that is not a number...).
_LAZY_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, TypeError, IndexError, OverflowError, struct.error,
                     zlib.error, NotImplementedError)


def read_dataset(source: Source) -> Dataset:
    """Turn a decoder source into a pydicom Dataset.

    Parameters
    ----------
    source : Dataset, str, os.PathLike, bytes, bytearray or memoryview
        A dataset, a path to a DICOM file, or the bytes of a DICOM Part 10 file (bytes without preamble or
        file meta are accepted when pydicom can read them).

    Raises
    ------
    WaveformError
        The file cannot be opened or is not DICOM.
    """
    if isinstance(source, Dataset):
        return source
    return _parse(_source_bytes(source), isinstance(source, str | os.PathLike))


def _source_bytes(source: Source) -> bytes:
    """The bytes of a path or bytes-like source."""
    if isinstance(source, bytes):
        return source
    if isinstance(source, bytearray | memoryview):
        return bytes(source)
    if isinstance(source, str | os.PathLike):
        try:
            # One read into memory, then parse: cheaper than many small reads from a file.
            with open(os.fspath(source), "rb") as fh:
                return fh.read()
        except OSError as exc:
            raise WaveformError(f"cannot read a DICOM dataset: {exc}") from exc
    raise WaveformError(f"unsupported source type {type(source).__name__}")


def _parse(data: bytes, from_path: bool) -> Dataset:
    """The bytes of a DICOM file as a pydicom Dataset.

    Bytes handed over (not read from a path) may lack preamble and file meta when pydicom can still read them.
    """
    try:
        if from_path:
            return pydicom.dcmread(io.BytesIO(data))
        try:
            return pydicom.dcmread(io.BytesIO(data))
        except InvalidDicomError:
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            # force=True reads anything; only accept what looks like a composite object.
            if "SOPClassUID" not in ds and "WaveformSequence" not in ds:
                raise InvalidDicomError("no preamble, no file meta and no SOP Class UID") from None
            return ds
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise WaveformError(f"cannot read a DICOM dataset: {exc}") from exc


def _is_big_endian(ds: Dataset | FastItem) -> bool:
    if type(ds) is FastItem:
        return not ds.little
    # The bytes of OB/OW values are as read from the file, so the encoding used to read it decides.
    encoding = getattr(ds, "original_encoding", (None, None))
    if encoding and encoding[1] is not None:
        return not encoding[1]
    meta = getattr(ds, "file_meta", None)
    return bool(meta is not None and meta.get("TransferSyntaxUID") == ExplicitVRBigEndian)


class ChannelCache:
    """Decoded channels and annotation codes by the bytes they were read from (see "Channel cache" above).

    Channels of a group are keyed by the bytes of its Channel Definition Sequence, coded concepts of annotation items
    by the bytes of their code sequences (each key starts with those bytes). Bounded: each table is emptied when
    full (a node hears from a bounded set of cart configurations and code lists, so it refills with the ones in
    use), and longer byte strings than ``max_key_bytes`` (channels) or ``max_concept_bytes`` (codes) are not kept,
    only decoded, so that unusual objects cannot make it hold more than
    ``max_entries * max_key_bytes + max_concepts * max_concept_bytes`` of keys (8 MB by default). Safe to share
    between threads: one dictionary look-up or store at a time.

    Parameters
    ----------
    max_entries : int
        Channel definitions kept.
    max_concepts : int
        Coded concepts kept.
    max_key_bytes : int
        Longest Channel Definition Sequence kept (a 12-lead cart's takes 2-4 KB).
    max_concept_bytes : int
        Longest code sequence kept (one code item takes about 100 bytes).
    """

    def __init__(self, max_entries: int = 256, max_concepts: int = 4096, max_key_bytes: int = 16384,
                 max_concept_bytes: int = 1024) -> None:
        self.max_entries = max_entries
        self.max_concepts = max_concepts
        self.max_key_bytes = max_key_bytes
        self.max_concept_bytes = max_concept_bytes
        self._entries: dict[tuple[Any, ...], tuple[tuple[Channel, ...], tuple[str, ...]]] = {}
        self._concepts: dict[tuple[Any, ...], CodedConcept | None] = {}

    def __len__(self) -> int:
        """Number of channel definitions held."""
        return len(self._entries)

    @property
    def concepts(self) -> int:
        """Number of coded concepts held."""
        return len(self._concepts)

    def concept(self, key: tuple[Any, ...]) -> CodedConcept | Literal[False] | None:
        """The concept stored under ``key`` (``None``: an empty code sequence), or ``False`` when not held."""
        return self._concepts.get(key, False)

    def put_concept(self, key: tuple[Any, ...], concept: CodedConcept | None) -> None:
        """Store the concept read for ``key`` (unless its bytes are longer than ``max_concept_bytes``)."""
        if len(key[0]) > self.max_concept_bytes:
            return
        if len(self._concepts) >= self.max_concepts:
            self._concepts.clear()
        self._concepts[key] = concept

    def get(self, key: tuple[Any, ...]) -> tuple[tuple[Channel, ...], tuple[str, ...]] | None:
        """Channels and warnings stored under ``key``, or ``None``."""
        return self._entries.get(key)

    def put(self, key: tuple[Any, ...], channels: tuple[Channel, ...], warnings: tuple[str, ...]) -> None:
        """Store the channels read for ``key`` and their warnings (unless its bytes exceed ``max_key_bytes``)."""
        if len(key[0]) > self.max_key_bytes:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (channels, warnings)


def _get(ds: Dataset | FastItem, keyword: str) -> Any:
    """``Dataset.get(keyword)`` for either reader."""
    if type(ds) is FastItem:
        return ds.get(_tag(keyword))
    return ds.get(keyword)


def _tag(keyword: str) -> int:
    known = _TAGS.get(keyword)
    if known is not None:
        return known
    tag = tag_for_keyword(keyword)
    if tag is None:  # a programming error in this module, not a property of the data
        raise KeyError(keyword)
    return int(tag)


def _float(value: Any, keyword: str, group: int | None) -> float:
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise WaveformError(f"not a number: {value!r}", attribute=keyword, group=group) from exc


def _opt_float(item: Dataset | FastItem, keyword: str, group: int | None, default: float | None) -> float | None:
    if type(item) is FastItem:
        # The common case read without the general readers' layers: absent, or one DS value (same rules as
        # _access._raw_numbers, which reads everything else).
        element = item.elements.get(_tag(keyword))
        if element is None:
            return default
        if element[0] == "DS" and b"\\" not in element[1]:
            single = element[1].strip(b" \x00")
            if not single:
                return default
            try:
                return float(single)
            except ValueError:
                pass  # the general path below reports it
    try:
        value = number(item, _tag(keyword))
        return default if value is None else float(value)
    except (TypeError, ValueError) as exc:
        raise WaveformError(f"not a number: {exc}", attribute=keyword, group=group) from exc


def _opt_int(item: Dataset | FastItem, keyword: str, group: int | None) -> int | None:
    value = _opt_float(item, keyword, group, None)
    return None if value is None else int(value)


def _str(ds: Dataset | FastItem, keyword: str) -> str | None:
    return text(ds, _tag(keyword))


def _le_bytes(data: bytes | memoryview, vr: str, big_endian: bool) -> bytes | memoryview:
    """Bytes of an OB/OW value put in little-endian order (PS3.5 7.3: OW swaps within each 16-bit word)."""
    if big_endian and vr != "OB":
        words = np.frombuffer(data[: len(data) // 2 * 2], dtype=">u2")
        return words.astype("<u2").tobytes()
    return data


def _padding(item: Dataset | FastItem, dtype: str, vr: str, big_endian: bool, group: int) -> int | None:
    elem = _get(item, "WaveformPaddingValue")
    if elem is None or elem == b"" or elem == "":
        return None
    if isinstance(elem, int):  # datasets built in memory may carry the integer itself
        return int(elem)
    raw = _le_bytes(bytes(elem), vr, big_endian)
    size = np.dtype(dtype).itemsize
    if len(raw) < size:
        raise WaveformError(f"{len(raw)} bytes, a sample needs {size}", attribute="WaveformPaddingValue",
                            group=group)
    return int(np.frombuffer(raw[:size], dtype=dtype)[0])


def _channel(item: Dataset | FastItem, index: int, group: int, fs: float, bits_allocated: int,
             warnings: list[str]) -> Channel:
    where = f"Waveform Sequence item {group} channel {index + 1}"
    source = coded(first_item(item, "ChannelSourceSequence"))
    label = _str(item, "ChannelLabel") or (source.meaning if source and source.meaning else f"Channel {index + 1}")
    units_item = coded(first_item(item, "ChannelSensitivityUnitsSequence"))
    units = units_item.value if units_item else None
    sensitivity = _opt_float(item, "ChannelSensitivity", group, None)
    if sensitivity is not None and units is None:
        warnings.append(f"{where}: ChannelSensitivity without ChannelSensitivityUnitsSequence")
    correction = _opt_float(item, "ChannelSensitivityCorrectionFactor", group, 1.0)
    baseline = _opt_float(item, "ChannelBaseline", group, 0.0)
    # PS3.3 C.10.9.1.4.3: skew in samples (Channel Sample Skew) or seconds (Channel Time Skew).
    sample_skew = _opt_float(item, "ChannelSampleSkew", group, None)
    time_skew = _opt_float(item, "ChannelTimeSkew", group, None)
    skew_s = sample_skew / fs if sample_skew is not None else (time_skew or 0.0)
    if sample_skew is not None and time_skew is not None and abs(sample_skew / fs - time_skew) > 1e-9:
        warnings.append(f"{where}: ChannelSampleSkew and ChannelTimeSkew disagree; ChannelSampleSkew used")
    bits_stored = _opt_int(item, "WaveformBitsStored", group) or bits_allocated
    if bits_stored > bits_allocated or bits_stored <= 0:
        warnings.append(f"{where}: WaveformBitsStored {bits_stored} outside 1..{bits_allocated}; "
                        f"{bits_allocated} used")
        bits_stored = bits_allocated
    return Channel(
        label=label, source=source, units=units,
        sensitivity=1.0 if sensitivity is None else sensitivity,
        correction_factor=1.0 if correction is None else correction,
        baseline=0.0 if baseline is None else baseline,
        skew_s=float(skew_s), bits_stored=bits_stored,
        filter_low_hz=_opt_float(item, "FilterLowFrequency", group, None),
        filter_high_hz=_opt_float(item, "FilterHighFrequency", group, None),
        notch_hz=_opt_float(item, "NotchFilterFrequency", group, None),
    )


def _waveform_data(item: Dataset | FastItem, tag: int) -> tuple[str, Any]:
    """(VR, value) of Waveform Data, the VR as pydicom would settle it."""
    if type(item) is FastItem:
        vr, value = item.elements[tag]
        if not item.implicit and vr not in ("OB", "OW"):
            raise Unsupported(f"Waveform Data sent as {vr}")  # pydicom re-derives the VR; let it
        return vr, value
    elem = item[tag]  # type: ignore[index]
    return elem.VR, elem.value


def _channel_key(item: Dataset | FastItem, index: int, fs: float, bits_allocated: int) -> tuple[Any, ...] | None:
    """The :class:`ChannelCache` key of a group whose channel definitions are still bytes, else ``None``."""
    if type(item) is not FastItem:
        return None
    element = item.elements.get(_tag("ChannelDefinitionSequence"))
    if element is None or type(element[1]) is not LazyItems:
        return None
    lazy: LazyItems = element[1]
    encoding = lazy.charset.encoding()  # the labels' text depends on it (PS3.5 6.1.2.5)
    return (lazy.raw, lazy.implicit, lazy.little, encoding if isinstance(encoding, str) else tuple(encoding),
            index, fs, bits_allocated)


def _decode_group(item: Dataset | FastItem, index: int, big_endian: bool, start: datetime | None,
                  warnings: list[str], cache: ChannelCache | None = None) -> MultiplexGroup:
    def fail(message: str, attribute: str) -> WaveformError:
        return WaveformError(message, attribute=attribute, group=index)

    interpretation = _str(item, "WaveformSampleInterpretation")
    if interpretation is None:
        raise fail("absent", "WaveformSampleInterpretation")
    if interpretation not in INTERPRETATIONS:
        raise fail(f"unknown interpretation {interpretation!r}", "WaveformSampleInterpretation")
    bits_value = _opt_int(item, "WaveformBitsAllocated", index)
    if bits_value is None:
        raise fail("absent", "WaveformBitsAllocated")
    bits_allocated = bits_value
    expected_bits, dtype = INTERPRETATIONS[interpretation]
    if bits_allocated not in (8, 16, 32, 64):
        raise fail(f"{bits_allocated} is not 8, 16, 32 or 64", "WaveformBitsAllocated")
    if bits_allocated != expected_bits:
        raise fail(f"{bits_allocated} bits but sample interpretation {interpretation} needs {expected_bits}",
                   "WaveformBitsAllocated")
    fs_value = _opt_float(item, "SamplingFrequency", index, None)
    if fs_value is None:
        raise fail("absent", "SamplingFrequency")
    fs = fs_value
    if not np.isfinite(fs) or fs <= 0:
        raise fail(f"{fs_value:g} is not a positive frequency", "SamplingFrequency")
    data_tag = _tag("WaveformData")
    if data_tag not in item:
        raise fail("absent", "WaveformData")
    data_vr, data = _waveform_data(item, data_tag)
    if data is None or len(data) == 0:
        raise fail("empty", "WaveformData")
    vr = data_vr if data_vr in ("OB", "OW") else "OW"
    size = bits_allocated // 8
    if big_endian and vr == "OB" and size > 1:
        raise fail(f"OB with {bits_allocated}-bit samples in a big endian object: byte order unknown",
                   "WaveformData")
    key = _channel_key(item, index, fs, bits_allocated) if cache is not None else None
    cached = cache.get(key) if cache is not None and key is not None else None
    definitions: list[Any] = []
    if cached is None:
        definitions = sequence(item, _tag("ChannelDefinitionSequence"))
        if not definitions:
            raise fail("absent or empty", "ChannelDefinitionSequence")
    n_defs = len(cached[0]) if cached is not None else len(definitions)
    n_samples_value = _opt_int(item, "NumberOfWaveformSamples", index)
    if n_samples_value is None:
        raise fail("absent", "NumberOfWaveformSamples")
    n_samples = n_samples_value
    if n_samples <= 0:
        raise fail(f"{n_samples} is not positive", "NumberOfWaveformSamples")
    declared = _opt_int(item, "NumberOfWaveformChannels", index)

    def fits(n_channels: int) -> bool:
        expected = n_channels * n_samples * size
        # PS3.5 7.1: values have even length, so 8-bit data of odd size carries one padding byte.
        return len(data) == expected or (size == 1 and expected % 2 == 1 and len(data) == expected + 1)

    if declared == n_defs:
        n_channels = n_defs
        if not fits(n_channels):
            raise fail(f"{len(data)} bytes where {n_channels} channels x {n_samples} samples x {size} bytes = "
                       f"{n_channels * n_samples * size} were expected", "WaveformData")
    elif fits(n_defs):
        # The data and the definitions agree, only the count is wrong (e.g. dicom3tools SCP-ECG conversion).
        n_channels = n_defs
        warnings.append(f"Waveform Sequence item {index}: NumberOfWaveformChannels is {declared} but there are "
                        f"{n_defs} channel definitions and data for exactly {n_defs} channels; {n_defs} decoded")
    else:
        raise WaveformError(f"{n_defs} channel definitions but NumberOfWaveformChannels is {declared} and the "
                            f"{len(data)} bytes of WaveformData fit neither",
                            attribute="ChannelDefinitionSequence", group=index)

    if cached is not None:
        channels = list(cached[0])
        warnings.extend(cached[1])
    else:
        channel_warnings: list[str] = []
        channels = [_channel(d, i, index, fs, bits_allocated, channel_warnings) for i, d in enumerate(definitions)]
        warnings.extend(channel_warnings)
        if cache is not None and key is not None:
            cache.put(key, tuple(channels), tuple(channel_warnings))
    if big_endian and size > 2 and vr == "OW":
        warnings.append(f"Waveform Sequence item {index}: {bits_allocated}-bit samples in a big endian object "
                        "(never produced by a conformant writer); read as 16-bit words swapped per PS3.5 7.3")

    le = _le_bytes(data if isinstance(data, bytes | memoryview) else bytes(data), vr, big_endian)
    codes = np.frombuffer(le, dtype=dtype, count=n_channels * n_samples).reshape(n_samples, n_channels)
    padding = _padding(item, dtype, vr, big_endian, index)

    raw: npt.NDArray[np.integer]
    if interpretation == "MB":
        raw = MULAW_TO_LINEAR16[codes]
    elif interpretation == "AB":
        raw = ALAW_TO_LINEAR16[codes]
    else:
        raw = codes
        narrow = [i for i, ch in enumerate(channels) if ch.bits_stored < bits_allocated]
        if narrow:
            raw = raw.copy()
            for i in narrow:
                shift = bits_allocated - channels[i].bits_stored
                column = raw[:, i]
                if np.issubdtype(raw.dtype, np.signedinteger):
                    # PS3.3 C.10.9.1.7: the sign bit is extended to the highest bit; redo it in case a writer
                    # did not, which leaves correctly written data unchanged.
                    raw[:, i] = (column << shift) >> shift
                else:
                    raw[:, i] = column & ((1 << channels[i].bits_stored) - 1)

    pad_mask: npt.NDArray[np.bool_] | None = None
    if padding is not None:
        pad_mask = codes == padding
        if pad_mask.any():
            others = codes[~pad_mask]
            # The range test is meaningless for G.711 codes, whose order is not that of their values.
            if interpretation not in ("MB", "AB") and others.size and others.min() < padding < others.max():
                warnings.append(f"Waveform Sequence item {index}: WaveformPaddingValue {padding} lies inside the "
                                f"range of the data ({int(pad_mask.sum())} samples equal it); treated as genuine "
                                "samples, not padding")
                pad_mask = None
        else:
            pad_mask = None

    offset_ms = _opt_float(item, "MultiplexGroupTimeOffset", index, 0.0) or 0.0
    group_start = start + timedelta(milliseconds=offset_ms) if start is not None else None
    return MultiplexGroup.calibrated_on_use(
        index=index, label=_str(item, "MultiplexGroupLabel") or "", sampling_frequency=fs, n_samples=n_samples,
        channels=channels, raw=raw, start=group_start, time_offset_s=offset_ms / 1000.0,
        interpretation=interpretation, bits_allocated=bits_allocated, padding_value=padding, padding=pad_mask,
    )


def _acquisition_time(ds: Dataset | FastItem, default_zone: tzinfo | str | None, warnings: list[str]
                      ) -> tuple[datetime | None, str | None, str | None, str | None]:
    """(aware datetime, raw string, zone source, source attribute) per the module docstring's rules."""
    naive: datetime | None = None
    zone: tzinfo | None = None
    zone_source: str | None = None
    raw: str | None = None
    attribute: str | None = None
    dt_value = _string(ds, "AcquisitionDateTime")
    if dt_value not in (None, ""):
        raw = getattr(dt_value, "original_string", None) or str(dt_value)
        try:
            naive, zone, precision = parse_dt(raw)
            attribute = "AcquisitionDateTime"
            if zone is not None:
                zone_source = "datetime"
            if precision not in ("second", "fraction"):
                warnings.append(f"AcquisitionDateTime {raw!r} is only precise to the {precision}")
        except ValueError as exc:
            warnings.append(f"AcquisitionDateTime: {exc}; ignored")
            naive = None
    if naive is None:
        for date_kw, time_kw in (("AcquisitionDate", "AcquisitionTime"), ("ContentDate", "ContentTime"),
                                 ("StudyDate", "StudyTime")):
            date, time = _get(ds, date_kw), _get(ds, time_kw)
            if date in (None, "") or time in (None, ""):
                continue
            date_s = getattr(date, "original_string", None) or str(date)
            time_s = getattr(time, "original_string", None) or str(time)
            try:
                naive = parse_da_tm(date_s, time_s)
            except ValueError as exc:
                warnings.append(f"{date_kw}/{time_kw}: {exc}; ignored")
                continue
            raw = f"{date_s}{time_s}"
            attribute = f"{date_kw}+{time_kw}"
            warnings.append(f"AcquisitionDateTime absent: acquisition time taken from {date_kw} and {time_kw}")
            break
    tz_value = _get(ds, "TimezoneOffsetFromUTC")
    tz_offset = None
    if tz_value not in (None, ""):
        try:
            tz_offset = parse_offset(str(tz_value))
        except ValueError as exc:
            warnings.append(f"TimezoneOffsetFromUTC: {exc}; ignored")
    if naive is None:
        warnings.append("no acquisition, content or study date and time: start times unknown")
        return None, raw, None, None
    if zone is not None:
        if tz_offset is not None and tz_offset.utcoffset(None) != zone.utcoffset(None):
            warnings.append(f"AcquisitionDateTime offset {zone} differs from TimezoneOffsetFromUTC {tz_value}; "
                            "the datetime's own offset used")
        return naive.replace(tzinfo=zone), raw, zone_source, attribute
    if tz_offset is not None:
        return naive.replace(tzinfo=tz_offset), raw, "TimezoneOffsetFromUTC", attribute
    try:
        default = resolve_zone(default_zone)
    except ValueError as exc:
        raise WaveformError(str(exc), attribute="default_zone") from exc
    aware, note = localize(naive, default)
    if note:
        warnings.append(note)
    return aware, raw, "default", attribute


def _string(ds: Dataset | FastItem, keyword: str) -> Any:
    """``_get(ds, keyword)`` of a DA, DT or TM attribute, read from the bytes for a single ASCII value.

    With ``datetime_conversion`` off (pydicom's default) pydicom converts these as strings (``convert_string``):
    the value with trailing spaces and NULs removed.
    """
    if type(ds) is FastItem and not pydicom.config.datetime_conversion:
        element = ds.elements.get(_tag(keyword))
        if element is None:
            return None
        vr, raw = element
        if vr in ("DA", "DT", "TM") and raw.isascii() and b"\\" not in raw:
            return raw.decode("ascii").rstrip(" \x00")
    return _get(ds, keyword)


def _patient_name(ds: Dataset | FastItem) -> str | None:
    """``str()`` of the Patient's Name value, ``None`` when absent or empty."""
    if type(ds) is FastItem:
        element = ds.elements.get(_tag("PatientName"))
        if element is None:
            return None
        if element[0] == "PN":
            name = person_name_text(element[1])
            if name is not _CONVERT:
                return name  # type: ignore[no-any-return]
    value = _get(ds, "PatientName")
    return str(value) if value not in (None, "") else None


def _check_uids(ds: Dataset | FastItem, warnings: list[str]) -> None:
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID"):
        value = _str(ds, keyword)
        if value is None:
            if keyword != "SOPClassUID" or _tag("SOPClassUID") not in ds:
                warnings.append(f"{keyword} absent")
            continue
        if len(value) > 64 or not _UID_RE.match(value):
            warnings.append(f"{keyword} {value!r} is not a valid UID (PS3.5 9.1)")


def _synchronization(ds: Dataset | FastItem) -> Synchronization | None:
    # PS3.3 C.7.4.2 Synchronization Module.
    values = {
        "frame_of_reference_uid": _str(ds, "SynchronizationFrameOfReferenceUID"),
        "synchronization_trigger": _str(ds, "SynchronizationTrigger"),
        "trigger_source_or_type": _str(ds, "TriggerSourceOrType"),
        "acquisition_time_synchronized": _str(ds, "AcquisitionTimeSynchronized"),
        "time_source": _str(ds, "TimeSource"),
        "time_distribution_protocol": _str(ds, "TimeDistributionProtocol"),
    }
    if not any(values.values()):
        return None
    return Synchronization(**values)


def read_object(data: bytes) -> FastItem | None:
    """The bytes of a Part 10 file read by the fast reader, for :func:`attribute` and :func:`decode`.

    Only the elements the decoder and the catalog read are kept (see :mod:`._fastread`); ``None`` when the file
    holds something the fast reader leaves to pydicom (the caller then reads it with pydicom: same values).
    """
    try:
        item = read_file(data)
    except Unsupported:
        return None
    item.source = data
    return item


def read_header_object(data: bytes, until: int, *, prefix: bool = False,
                       skip: frozenset[int] = frozenset()) -> FastItem | None:
    """Every attribute of a Part 10 file up to tag ``until`` (sequences with their items), by the fast reader.

    Reading stops before the first top-level element above ``until``; elements whose tag is in ``skip`` are
    passed over. ``None`` when the file holds something the fast reader leaves to pydicom, or when ``prefix``
    (``data`` is only the file's start) and the bytes ended first. Values are converted by
    :meth:`FastItem.convert` as pydicom converts them.
    """
    try:
        return read_file(data, header_until=until, prefix=prefix, skip=skip)
    except Unsupported:
        return None


def attribute(ds: Dataset | FastItem, keyword: str) -> Any:
    """``ds.get(keyword)`` for a pydicom dataset or an object from :func:`read_object` (same value).

    Raises
    ------
    Unsupported
        ``keyword`` is not kept by the fast reader's object, or its value must be read by pydicom (the caller
        reads the file with pydicom instead).
    """
    if type(ds) is FastItem:
        tag = _tag(keyword)
        if tag not in KEEP_VALUES:
            raise Unsupported(f"{keyword} is not read by the fast reader")
        return ds.get(tag)
    return ds.get(keyword)


#: VRs whose single ASCII value pydicom converts to the text with trailing spaces and NULs removed (its
#: convert_string, convert_text and convert_UI; DA, DT and TM while datetime_conversion is off).
_PLAIN_TEXT_VRS = frozenset({"AS", "CS", "DA", "DT", "LO", "SH", "TM", "UC", "UI"})
#: An IS value that is a plain integer (anything else, such as "3.0" or "1e3", goes through pydicom's IS).
_PLAIN_INTEGER = re.compile(rb" *[+-]?[0-9]+[ \x00]*")


def element_text(vr: str, raw: Any) -> Any:
    """``str(value).strip() or None`` of the value pydicom converts ``raw`` to, read from the bytes.

    :data:`CONVERT` when only pydicom's conversion gives it (several values, escapes, non-ASCII, datetime
    conversion on, a sequence...). Read here: single ASCII values of plain text VRs, plain-integer IS values
    and PN values without component groups.
    """
    if type(raw) is not bytes or pydicom.config.datetime_conversion:
        return _CONVERT
    if vr in _PLAIN_TEXT_VRS and raw.isascii() and b"\\" not in raw and b"\x1b" not in raw:
        return raw.decode("ascii").rstrip(" \x00").strip() or None
    if vr == "IS" and _PLAIN_INTEGER.fullmatch(raw):  # pydicom's IS keeps the string it was read from
        return raw.decode("ascii").rstrip(" \x00").strip() or None
    if vr == "PN":
        name = person_name_text(raw)
        if name is not _CONVERT:
            return None if name is None else name.strip() or None
    return _CONVERT


#: What :func:`element_text` answers when pydicom must convert the value.
CONVERT = _CONVERT


def attribute_text(ds: Dataset | FastItem, keyword: str) -> str | None:
    """``str(attribute(ds, keyword)).strip()``: the attribute as its DICOM string; ``None`` when absent or empty.

    For an object from :func:`read_object`, a single ASCII value of a plain text VR is read from its bytes (the
    same string pydicom's conversion gives, without building it); anything else goes through :func:`attribute`.

    Raises
    ------
    Unsupported
        As :func:`attribute`.
    """
    if type(ds) is FastItem and not pydicom.config.datetime_conversion:
        element = _kept_element(ds, keyword)
        if element is None:
            return None
        text = element_text(*element)
        if text is not _CONVERT:
            return text  # type: ignore[no-any-return]
    value = attribute(ds, keyword)
    if value is None:
        return None
    return str(value).strip() or None


def _kept_element(ds: FastItem, keyword: str) -> Any:
    """``(VR, raw value)`` of ``keyword`` in a fast reader's object, ``None`` when absent.

    Raises
    ------
    Unsupported
        The fast reader does not keep ``keyword``.
    """
    tag = _tag(keyword)
    if tag not in KEEP_VALUES:
        raise Unsupported(f"{keyword} is not read by the fast reader")
    return ds.elements.get(tag)


def attribute_uid(ds: Dataset | FastItem, keyword: str) -> str | None:
    """``str(attribute(ds, keyword))`` for a UI attribute, ``None`` when absent (``""`` when empty).

    For an object from :func:`read_object`, a single ASCII value is read from its bytes: pydicom's UI conversion
    removes trailing NULs and spaces (PS3.5 6.2) and its UID strips whitespace, so this is the same string
    without building (and validating) a UID.

    Raises
    ------
    Unsupported
        As :func:`attribute`.
    """
    if type(ds) is FastItem:
        element = _kept_element(ds, keyword)
        if element is None:
            return None
        vr, raw = element
        if vr == "UI" and raw.isascii() and b"\\" not in raw:
            return raw.decode("ascii").rstrip("\0 ").strip()  # convert_UI, then UID() strips whitespace
    value = attribute(ds, keyword)
    return None if value is None else str(value)


def decode(source: Source, *, default_zone: tzinfo | str | None = None,
           channel_cache: ChannelCache | None = None) -> Recording:
    """Decode a DICOM waveform object faithfully.

    Parameters
    ----------
    source : pydicom.Dataset, str, os.PathLike or bytes
        A dataset, the path of a DICOM file, the bytes of a DICOM Part 10 file, or what :func:`read_object`
        returned for such bytes.
    default_zone : datetime.tzinfo or str, optional
        Zone (tzinfo or IANA name such as ``"Europe/Rome"``) for an acquisition time that carries no UTC offset
        and has no Timezone Offset From UTC. ``None`` means UTC.
    channel_cache : ChannelCache, optional
        Channels decoded from earlier objects with byte-identical channel definitions (bytes and
        :func:`read_object` sources only); the Recording is the same with or without it.

    Returns
    -------
    Recording
        Every multiplex group with raw and calibrated samples, start times, measurements, statements,
        fiducials and the warnings the object earned.

    Raises
    ------
    WaveformError
        The object cannot be decoded faithfully; the message names the attribute and the group.
    """
    try:
        if isinstance(source, Dataset):
            return _decode_dataset(source, default_zone)
        if type(source) is FastItem:
            try:
                return _decode(source, default_zone, fast_sequences=False, cache=channel_cache)
            except Unsupported:
                return _decode_dataset(_parse(source.source, False), default_zone)  # same rules, same result
        data = _source_bytes(source)
        try:
            return _decode(read_file(data), default_zone, fast_sequences=False, cache=channel_cache)
        except Unsupported:
            pass  # something the fast reader leaves to pydicom (see _fastread); same rules, same result
        return _decode_dataset(_parse(data, isinstance(source, str | os.PathLike)), default_zone)
    except _LAZY_READ_ERRORS as exc:
        # pydicom reads sequence items and converts values on first access, so a malformed object can fail deep
        # inside the decoding (a truncated item, a number that is not one): still a refusal, not a crash.
        raise WaveformError(f"cannot read a DICOM dataset: {type(exc).__name__}: {exc}") from exc


def _decode_dataset(ds: Dataset, default_zone: tzinfo | str | None) -> Recording:
    try:
        return _decode(ds, default_zone, fast_sequences=True)
    except Unsupported:
        return _decode(ds, default_zone, fast_sequences=False)


def _sequence_items(ds: Dataset | FastItem, keyword: str, fast: bool) -> list[Any]:
    """Items of a sequence, read by the fast reader when ``fast`` and a Dataset still holds it as bytes.

    Turning sequence items into pydicom datasets costs most of the decoding time; a defined-length sequence
    still raw in a Dataset (as pydicom leaves it until first access) is read from its bytes instead.
    """
    tag = _tag(keyword)
    if fast and type(ds) is not FastItem:
        raw = ds._dict.get(tag)  # type: ignore[union-attr]
        if (isinstance(raw, RawDataElement) and raw.value and raw.VR in (None, "SQ")
                and raw.length != 0xFFFFFFFF):
            # The encoding pydicom's Dataset.__getitem__ hands down to the items it reads.
            encoding = ds.original_character_set or ds._character_set  # type: ignore[union-attr]
            return read_sequence_value(raw.value, raw.is_implicit_VR, raw.is_little_endian, encoding)
    return sequence(ds, tag)


def _decode(ds: Dataset | FastItem, default_zone: tzinfo | str | None, *, fast_sequences: bool,
            cache: ChannelCache | None = None) -> Recording:
    warnings: list[str] = []
    big_endian = _is_big_endian(ds)
    if _tag("WaveformSequence") not in ds:
        raise WaveformError("absent: not a waveform object", attribute="WaveformSequence")
    items = _sequence_items(ds, "WaveformSequence", fast_sequences)
    if not items:
        raise WaveformError("empty", attribute="WaveformSequence")

    start, raw_time, zone_source, time_attribute = _acquisition_time(ds, default_zone, warnings)
    groups = [_decode_group(item, i, big_endian, start, warnings, cache) for i, item in enumerate(items)]

    measurements, statements, fiducials, annotation_warnings = parse_annotations(
        _sequence_items(ds, "WaveformAnnotationSequence", fast_sequences), cache)
    warnings.extend(annotation_warnings)
    _check_uids(ds, warnings)
    warnings.extend(iod_violations(
        _str(ds, "SOPClassUID"), _str(ds, "Modality"),
        [(g.n_channels, g.sampling_frequency, g.interpretation, g.n_samples) for g in groups]))

    return Recording(
        sop_class_uid=_str(ds, "SOPClassUID"),
        sop_instance_uid=_str(ds, "SOPInstanceUID"),
        study_instance_uid=_str(ds, "StudyInstanceUID"),
        series_instance_uid=_str(ds, "SeriesInstanceUID"),
        patient_id=_str(ds, "PatientID"),
        patient_name=_patient_name(ds),
        acquisition_datetime=start,
        groups=groups,
        measurements=measurements,
        statements=statements,
        synchronization=_synchronization(ds),
        warnings=list(dict.fromkeys(warnings)),
        acquisition_datetime_raw=raw_time,
        zone_source=zone_source,
        patient_birth_date=_str(ds, "PatientBirthDate"),
        patient_sex=_str(ds, "PatientSex"),
        modality=_str(ds, "Modality"),
        manufacturer=_str(ds, "Manufacturer"),
        model_name=_str(ds, "ManufacturerModelName"),
        device_serial_number=_str(ds, "DeviceSerialNumber"),
        time_source_attribute=time_attribute,
        fiducials=fiducials,
        transfer_syntax_uid=_transfer_syntax(ds),
    )


def _transfer_syntax(ds: Dataset | FastItem) -> str | None:
    if type(ds) is FastItem:
        return ds.transfer_syntax_uid
    meta = getattr(ds, "file_meta", None)
    return str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else None
