"""The decoder's channel cache: channel definitions read once per distinct byte string, same Recording always.

A cart sends the same Channel Definition Sequence with every ECG, so the fast reader keeps it as bytes
(``LazyItems``) and :class:`ChannelCache` maps those bytes (with everything else the channels depend on) to the
decoded channels. The code sequences of annotation items repeat the same way and are kept as bytes too; the cache
maps them to their coded concept. These tests pin that the cache never changes a result: against the uncached
decoder and pydicom on every sample file and transfer syntax, across character sets, group positions and warnings.
"""

from __future__ import annotations

import io
import struct

import pydicom
import pytest
from helpers import all_samples
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from test_decode_built import VALUES, channel, code, recording, ss_group, to_file_bytes
from test_fast_reader import _pydicom_only, assert_same

from dicom_ecg_node.waveform import ChannelCache, decode, read_object
from dicom_ecg_node.waveform._fastread import FastItem, LazyItems
from dicom_ecg_node.waveform.synth import ecg_to_bytes, synthesize_ecg

CHANNEL_DEFINITION_SEQUENCE = 0x003A0200
WAVEFORM_ANNOTATION_SEQUENCE = 0x0040B020
CODE_SEQUENCES = (0x0040A043, 0x0040A168, 0x004008EA)  # concept name, concept, measurement units


def _definitions(obj, group: int = 0) -> LazyItems:
    value = obj.elements[0x54000100][1][group].elements[CHANNEL_DEFINITION_SEQUENCE][1]
    assert isinstance(value, LazyItems)
    return value


@pytest.mark.parametrize("path", all_samples(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sample_files_decode_the_same_with_a_warm_cache(path) -> None:
    data = path.read_bytes()
    cache = ChannelCache()
    try:
        cold = decode(data, channel_cache=cache)
    except Exception as exc:  # a file the decoder refuses is refused the same way with the cache
        with pytest.raises(type(exc)):
            decode(data)
        return
    warm = decode(read_object(data) or data, channel_cache=cache)
    plain = decode(data)
    assert_same(cold, plain)
    assert_same(warm, plain)


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian])
def test_second_ecg_of_a_cart_reads_no_channel_item(syntax: str) -> None:
    first, second = (to_file_bytes(pydicom.dcmread(io.BytesIO(ecg_to_bytes(synthesize_ecg(seed=seed,
                                                                                      include_median=True)))),
                                   syntax) for seed in (1, 2))
    cache = ChannelCache()
    a = read_object(first)
    rec_a = decode(a, channel_cache=cache)
    assert _definitions(a).read  # a miss reads the items
    assert len(cache) == len(rec_a.groups) == 2  # rhythm and median beat: two distinct definitions
    b = read_object(second)
    assert _definitions(b).raw == _definitions(a).raw
    rec_b = decode(b, channel_cache=cache)
    assert not _definitions(b).read and not _definitions(b, 1).read  # both groups came from the cache
    assert_same(rec_b, _pydicom_only(second))
    assert [c.label for c in rec_b.groups[0].channels][:3] == ["I", "II", "III"]
    assert rec_b.groups[0].channels[0].units == "uV"
    assert rec_b.groups[0].samples.shape == (5000, 12)


def test_same_bytes_in_another_character_set_are_decoded_again() -> None:
    """The key holds the encoding: identical label bytes read as Latin-1 in one object, Cyrillic in another."""
    objects = []
    for charset in ("ISO_IR 100", "ISO_IR 144"):
        ds = recording(ss_group(VALUES, channels=[channel("A"), channel("B"), channel("C")]))
        ds.SpecificCharacterSet = charset
        data = bytearray(to_file_bytes(ds, ExplicitVRLittleEndian))
        at = data.index(b"B ")  # the second label, padded to even length: make it one byte above ASCII
        data[at] = 0xE9
        objects.append(bytes(data))
    cache = ChannelCache()
    latin = decode(objects[0], channel_cache=cache)
    cyrillic = decode(objects[1], channel_cache=cache)
    assert latin.groups[0].channels[1].label == "é"
    assert cyrillic.groups[0].channels[1].label == "щ"  # 0xE9 in ISO 8859-5
    assert len(cache) == 2
    assert_same(cyrillic, _pydicom_only(objects[1]))


def test_channel_warnings_come_back_with_cached_channels() -> None:
    chans = [channel("I", units="uV"), channel("II", bits_stored=20), channel("III")]
    data = to_file_bytes(recording(ss_group(VALUES, channels=chans)), ExplicitVRLittleEndian)
    cache = ChannelCache()
    cold = decode(data, channel_cache=cache)
    warm = decode(data, channel_cache=cache)
    assert any("WaveformBitsStored 20 outside 1..16" in w for w in cold.warnings)
    assert warm.warnings == cold.warnings == decode(data).warnings


def test_group_position_and_rate_are_part_of_the_key() -> None:
    """Identical definitions in two groups of one object keep their own group in their warnings."""
    chans = [channel("I", bits_stored=20), channel("II"), channel("III")]
    ds = recording(ss_group(VALUES, channels=chans), ss_group(VALUES, channels=chans, fs="250", label="OTHER"))
    data = to_file_bytes(ds, ExplicitVRLittleEndian)
    cache = ChannelCache()
    rec = decode(data, channel_cache=cache)
    assert len(cache) == 2
    assert any("item 0 channel 1" in w for w in rec.warnings) and any("item 1 channel 1" in w for w in rec.warnings)
    assert_same(decode(data, channel_cache=cache), _pydicom_only(data))


def test_malformed_definitions_are_left_to_pydicom_and_never_cached() -> None:
    ds = recording(ss_group(VALUES))
    data = bytearray(to_file_bytes(ds, ExplicitVRLittleEndian))
    # Give the first channel item a length past its sequence: the items cannot be read by the fast reader.
    seq = data.index(struct.pack("<HH", 0x003A, 0x0200))
    item = seq + 12
    assert struct.unpack_from("<HH", data, item) == (0xFFFE, 0xE000)
    struct.pack_into("<L", data, item + 4, 0x7FFF)
    cache = ChannelCache()
    obj = read_object(bytes(data))
    assert obj is not None  # the items are read only when decoded
    with pytest.raises(Exception) as fast:
        decode(obj, channel_cache=cache)
    with pytest.raises(type(fast.value)):
        _pydicom_only(bytes(data))
    assert len(cache) == 0


def test_a_full_cache_starts_again() -> None:
    cache = ChannelCache(max_entries=2)
    for seed, label in enumerate(("A", "B", "C")):
        ds = recording(ss_group(VALUES, channels=[channel(label), channel("Y"), channel("Z")]))
        ds.SOPInstanceUID = f"1.2.3.{seed}"
        decode(to_file_bytes(ds, ExplicitVRLittleEndian), channel_cache=cache)
    assert len(cache) == 1  # emptied when the third distinct definition arrived, then that one kept


def _code_sequences(obj: FastItem) -> list[LazyItems]:
    """The annotation items' code sequences of a fast-read object, each still bytes or read since."""
    found = []
    for item in obj.elements[WAVEFORM_ANNOTATION_SEQUENCE][1]:
        for tag in CODE_SEQUENCES:
            if tag in item.elements:
                value = item.elements[tag][1]
                assert isinstance(value, LazyItems)
                found.append(value)
    return found


def _annotated(hr: str, statement_meaning: str = "Sinus rhythm", charset: str | None = None) -> Dataset:
    ds = recording(ss_group(VALUES))
    if charset:
        ds.SpecificCharacterSet = charset
    rate = Dataset()
    rate.ConceptNameCodeSequence = Sequence([code("8867-4", "LN", "Heart rate")])
    rate.NumericValue = hr
    rate.MeasurementUnitsCodeSequence = Sequence([code("/min", "UCUM", "per minute")])
    rate.ReferencedWaveformChannels = [1, 0]
    rhythm = Dataset()
    rhythm.ConceptNameCodeSequence = Sequence([code("10:1", "X", "Rhythm")])
    rhythm.ConceptCodeSequence = Sequence([code("sinus", "X", statement_meaning)])
    ds.WaveformAnnotationSequence = Sequence([rate, rhythm])
    return ds


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian])
def test_second_ecg_of_a_cart_reads_no_code_item(syntax: str) -> None:
    first, second = (to_file_bytes(_annotated(hr), syntax) for hr in ("72", "64"))
    cache = ChannelCache()
    a = read_object(first)
    rec_a = decode(a, channel_cache=cache)
    assert all(lazy.read for lazy in _code_sequences(a))  # misses read the items
    assert cache.concepts == 4  # heart rate, per minute, rhythm, sinus rhythm
    b = read_object(second)
    rec_b = decode(b, channel_cache=cache)
    assert len(_code_sequences(b)) == 4 and not any(lazy.read for lazy in _code_sequences(b))
    assert cache.concepts == 4
    assert_same(rec_b, _pydicom_only(second))
    (rate,) = rec_b.measurements
    assert (rate.concept.meaning, rate.value, rate.units) == ("Heart rate", 64.0, "/min")
    assert rec_b.statements == ["Sinus rhythm"]
    assert rec_a.measurements[0].value == 72.0


def test_same_code_bytes_in_another_character_set_are_read_again() -> None:
    """The key holds the encoding: one Code Meaning byte read as Latin-1 in one object, Cyrillic in the other."""
    objects = []
    for charset in ("ISO_IR 100", "ISO_IR 144"):
        data = bytearray(to_file_bytes(_annotated("72", "Sinus rhythmX", charset), ExplicitVRLittleEndian))
        at = data.index(b"rhythmX")  # make the statement's last letter one byte above ASCII
        data[at + 6] = 0xE9
        objects.append(bytes(data))
    cache = ChannelCache()
    latin = decode(objects[0], channel_cache=cache)
    cyrillic = decode(objects[1], channel_cache=cache)
    assert latin.statements == ["Sinus rhythmé"]
    assert cyrillic.statements == ["Sinus rhythmщ"]  # 0xE9 in ISO 8859-5
    assert cache.concepts == 8  # every code read again in the second character set
    assert_same(cyrillic, _pydicom_only(objects[1]))


def test_malformed_code_sequence_is_left_to_pydicom_and_never_cached() -> None:
    data = bytearray(to_file_bytes(_annotated("72"), ExplicitVRLittleEndian))
    # Give the Concept Code Sequence's item a length past its sequence: the fast reader cannot read it (pydicom
    # reads on into the bytes after it, and still finds the code).
    seq = data.index(struct.pack("<HH", 0x0040, 0xA168))
    item = seq + 12
    assert struct.unpack_from("<HH", data, item) == (0xFFFE, 0xE000)
    struct.pack_into("<L", data, item + 4, 0x7FFF)
    data = bytes(data)
    cache = ChannelCache()
    assert read_object(data) is not None  # the items are read only when decoded
    for _ in range(2):
        rec = decode(data, channel_cache=cache)
        assert_same(rec, _pydicom_only(data))
        assert rec.statements == ["Sinus rhythm"]
        # The three well-formed codes read before the fast reader gave up; never the malformed one.
        assert cache.concepts == 3


def test_a_full_concept_table_starts_again() -> None:
    cache = ChannelCache(max_concepts=3)
    decode(to_file_bytes(_annotated("72"), ExplicitVRLittleEndian), channel_cache=cache)
    assert cache.concepts == 1  # emptied at the fourth distinct concept, which was then kept
    rec = decode(to_file_bytes(_annotated("80"), ExplicitVRLittleEndian), channel_cache=cache)
    assert rec.measurements[0].units == "/min" and rec.statements == ["Sinus rhythm"]


def test_long_byte_strings_are_decoded_but_not_kept() -> None:
    """Keys are the bytes read: beyond the bounds they are decoded each time, never held (memory stays bounded)."""
    data = to_file_bytes(_annotated("72"), ExplicitVRLittleEndian)
    tight = ChannelCache(max_key_bytes=16, max_concept_bytes=16)
    rec = decode(data, channel_cache=tight)
    assert len(tight) == 0 and tight.concepts == 0
    assert_same(rec, decode(data))
    roomy = ChannelCache()
    decode(data, channel_cache=roomy)
    assert len(roomy) == 1 and roomy.concepts == 4
