"""Waveform Annotation Sequence (PS3.3 C.10.10) -> measurements, statements and fiducials."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset

from dicom_ecg_node.waveform._access import numbers, sequence, text
from dicom_ecg_node.waveform._fastread import FastItem, LazyItems
from dicom_ecg_node.waveform.model import CodedConcept, Fiducial, Measurement

if TYPE_CHECKING:
    from dicom_ecg_node.waveform.decode import ChannelCache


def coded(item: Dataset | None) -> CodedConcept | None:
    """A :class:`CodedConcept` from a Code Sequence Macro item (PS3.3 Table 8.8-1), ``None`` when absent."""
    if item is None:
        return None
    # (0008,0100) Code Value, (0008,0119) Long Code Value, (0008,0120) URN Code Value
    value = text(item, 0x00080100) or text(item, 0x00080119) or text(item, 0x00080120) or ""
    # (0008,0102) Coding Scheme Designator, (0008,0104) Code Meaning
    return CodedConcept(value, text(item, 0x00080102) or "", text(item, 0x00080104) or "")


_SEQUENCES = {
    "ChannelSourceSequence": 0x003A0208,
    "ChannelSensitivityUnitsSequence": 0x003A0211,
    "ConceptNameCodeSequence": 0x0040A043,
    "ConceptCodeSequence": 0x0040A168,
    "MeasurementUnitsCodeSequence": 0x004008EA,
}


def first_item(ds: Dataset, keyword: str) -> Dataset | None:
    """First item of sequence ``keyword`` (one of the code sequences read here), ``None`` when absent or empty."""
    items = sequence(ds, _SEQUENCES[keyword])
    return items[0] if items else None


def first_concept(ds: Dataset | FastItem, keyword: str, cache: ChannelCache | None = None) -> CodedConcept | None:
    """``coded(first_item(ds, keyword))``, taken from ``cache`` when the sequence is still bytes and was read before.

    The fast reader keeps a defined-length code sequence as its bytes (:class:`~._fastread.LazyItems`). Equal bytes
    in the same encoding (byte order, VR mode, character set: PS3.5 6.1.2.5) read to the same items, so the concept
    read from the first such sequence serves every later one, and their items are never read.
    """
    if cache is not None and type(ds) is FastItem:
        element = ds.elements.get(_SEQUENCES[keyword])
        if element is not None and type(element[1]) is LazyItems:
            lazy: LazyItems = element[1]
            encoding = lazy.charset.encoding()
            key = (lazy.raw, lazy.implicit, lazy.little, encoding if isinstance(encoding, str) else tuple(encoding))
            held = cache.concept(key)
            if held is not False:
                return held
            concept = coded(first_item(ds, keyword))  # Unsupported propagates: the caller reads with pydicom
            cache.put_concept(key, concept)
            return concept
    return coded(first_item(ds, keyword))


def _pairs(values: tuple) -> tuple[tuple[int, int], ...]:
    # PS3.3 C.10.10.1.1: (M, C) pairs, multiplex group number then channel number (0 = all channels).
    seq = [int(v) for v in values]
    return tuple((seq[i], seq[i + 1]) for i in range(0, len(seq) - 1, 2))


def parse_annotations(items: Iterable[Dataset | FastItem], cache: ChannelCache | None = None
                      ) -> tuple[list[Measurement], list[str], list[Fiducial], list[str]]:
    """Sort annotation items into measurements, statements and fiducials.

    ``cache`` holds the coded concepts read from earlier objects' code sequences (:func:`first_concept`).

    Rules (PS3.3 C.10.10):

    - an item with Numeric Value is a :class:`Measurement` (first value; Measurement Units Code Sequence);
    - an item anchored in time (Referenced Sample Positions, Referenced Time Offsets or Referenced DateTime) is
      a :class:`Fiducial` (e.g. P onset at sample 299);
    - otherwise its Unformatted Text Value, Concept Code meaning or Concept Name Code meaning is a statement;
    - empty items (written by some toolkits as placeholders) are skipped and counted in one warning.

    Returns
    -------
    (measurements, statements, fiducials, warnings)
    """
    measurements: list[Measurement] = []
    statements: list[str] = []
    fiducials: list[Fiducial] = []
    warnings: list[str] = []
    empty = 0
    unknown = 0
    for item in items:
        if len(item) == 0:
            empty += 1
            continue
        concept = first_concept(item, "ConceptNameCodeSequence", cache)
        channels = _pairs(numbers(item, 0x0040A0B0))  # Referenced Waveform Channels
        group_numbers = numbers(item, 0x0040A180)  # Annotation Group Number
        group_number = int(group_numbers[0]) if group_numbers else None
        free_text = text(item, 0x00700006)  # Unformatted Text Value
        values = numbers(item, 0x0040A30A)  # Numeric Value
        if values:
            units = first_concept(item, "MeasurementUnitsCodeSequence", cache)
            measurements.append(Measurement(concept or CodedConcept("", "", free_text or ""), float(values[0]),
                                            units.value if units else None, channels, group_number))
            continue
        positions = tuple(int(v) for v in numbers(item, 0x0040A132))  # Referenced Sample Positions
        offsets = tuple(float(v) for v in numbers(item, 0x0040A138))  # Referenced Time Offsets
        if positions or offsets or text(item, 0x0040A13A):  # Referenced DateTime
            fiducials.append(Fiducial(concept, free_text, text(item, 0x0040A130),  # Temporal Range Type
                                      positions, offsets, channels, group_number))
            continue
        value_concept = first_concept(item, "ConceptCodeSequence", cache)
        if free_text:
            statements.append(free_text)
        elif value_concept is not None and value_concept.meaning:
            statements.append(value_concept.meaning)
        elif concept is not None and concept.meaning:
            statements.append(concept.meaning)
        else:
            unknown += 1
    if empty:
        warnings.append(f"WaveformAnnotationSequence: {empty} empty item(s) ignored")
    if unknown:
        warnings.append(f"WaveformAnnotationSequence: {unknown} item(s) with no text, code or value ignored")
    return measurements, statements, fiducials, warnings
