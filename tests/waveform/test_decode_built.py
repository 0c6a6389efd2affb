"""Decoding of datasets built here with pydicom and numpy (neither the decoder nor the synth writer)."""

from __future__ import annotations

import dataclasses
import io
import warnings
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicom_ecg_node.waveform import MultiplexGroup, decode

GENERAL_ECG = "1.2.840.10008.5.1.4.1.1.9.1.2"


def code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def channel(label: str, *, sensitivity: str | None = "1", correction: str | None = None,
            baseline: str | None = None, bits_stored: int = 16, units: str = "uV",
            sample_skew: str | None = None, time_skew: str | None = None) -> Dataset:
    item = Dataset()
    item.ChannelLabel = label
    if sensitivity is not None:
        item.ChannelSensitivity = sensitivity
        item.ChannelSensitivityUnitsSequence = Sequence([code(units, "UCUM", units)])
    if correction is not None:
        item.ChannelSensitivityCorrectionFactor = correction
    if baseline is not None:
        item.ChannelBaseline = baseline
    if sample_skew is not None:
        item.ChannelSampleSkew = sample_skew
    if time_skew is not None:
        item.ChannelTimeSkew = time_skew
    item.WaveformBitsStored = bits_stored
    return item


def group(data: bytes, n_samples: int, channels: list[Dataset], *, interpretation: str = "SS", bits: int = 16,
          fs: str = "500", padding: bytes | None = None, offset_ms: str | None = None, vr: str = "OW",
          label: str = "RHYTHM") -> Dataset:
    item = Dataset()
    item.MultiplexGroupLabel = label
    item.NumberOfWaveformChannels = len(channels)
    item.NumberOfWaveformSamples = n_samples
    item.SamplingFrequency = fs
    item.ChannelDefinitionSequence = Sequence(channels)
    item.WaveformBitsAllocated = bits
    item.WaveformSampleInterpretation = interpretation
    if offset_ms is not None:
        item.MultiplexGroupTimeOffset = offset_ms
    if padding is not None:
        item.add_new(0x5400100A, vr, padding)
    item.add_new(0x54001010, vr, data)
    return item


def recording(*groups: Dataset, dt: str | None = "20240310013000", tz: str | None = None) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = GENERAL_ECG
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = "1.2.3.4.6"
    ds.Modality = "ECG"
    ds.PatientID = "P1"
    ds.PatientName = "Doe^Jane"
    if dt is not None:
        ds.AcquisitionDateTime = dt
    if tz is not None:
        ds.TimezoneOffsetFromUTC = tz
    ds.WaveformSequence = Sequence(list(groups))
    return ds


def to_file_bytes(ds: Dataset, transfer_syntax: str) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    buf = io.BytesIO()
    little = transfer_syntax != ExplicitVRBigEndian
    implicit = transfer_syntax == ImplicitVRLittleEndian
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns that Big Endian is retired
        pydicom.dcmwrite(buf, ds, implicit_vr=implicit, little_endian=little, enforce_file_format=True)
    return buf.getvalue()


def ss_group(values: np.ndarray, **kwargs) -> Dataset:
    n_samples, n_channels = values.shape
    chans = kwargs.pop("channels", None) or [channel(f"C{i + 1}") for i in range(n_channels)]
    return group(values.astype("<i2").tobytes(), n_samples, chans, **kwargs)


VALUES = np.array([[0, 1, -1], [100, -100, 32767], [-32768, 5, 7], [12, 13, 14]], dtype=np.int16)


def test_baseline_and_correction_factor():
    chans = [channel("I", sensitivity="2.5", correction="0.98", baseline="-10"),
             channel("II", sensitivity="0.5", units="mV"), channel("III", sensitivity="1", baseline="3.25")]
    rec = decode(recording(ss_group(VALUES, channels=chans)))
    g = rec.groups[0]
    # value = stored x sensitivity x correction + baseline (PS3.3 C.10.9.1.4)
    assert g.samples[1, 0] == pytest.approx(100 * 2.5 * 0.98 - 10)
    assert g.samples[2, 0] == pytest.approx(-32768 * 2.5 * 0.98 - 10)
    assert g.samples[1, 1] == -50.0
    assert g.samples[0, 2] == -1 + 3.25
    assert [c.units for c in g.channels] == ["uV", "mV", "uV"]
    assert g.channels[0].baseline == -10.0 and g.channels[0].correction_factor == 0.98
    np.testing.assert_array_equal(g.raw, VALUES)


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian])
def test_little_endian_transfer_syntaxes(ts, tmp_path):
    data = to_file_bytes(recording(ss_group(VALUES)), ts)
    path = tmp_path / "x.dcm"
    path.write_bytes(data)
    for source in (data, path, str(path), pydicom.dcmread(path)):
        rec = decode(source)
        np.testing.assert_array_equal(rec.groups[0].raw, VALUES)
        assert rec.groups[0].samples[1, 2] == 32767.0
    assert decode(data).transfer_syntax_uid == ts


def test_deflated_bytes_are_really_deflated():
    data = to_file_bytes(recording(ss_group(np.zeros((5000, 12), dtype=np.int16))), DeflatedExplicitVRLittleEndian)
    assert len(data) < 5000 * 12 * 2 // 4
    assert decode(data).groups[0].raw.shape == (5000, 12)


def test_bytes_without_preamble():
    ds = recording(ss_group(VALUES))
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, implicit_vr=True, little_endian=True)  # no preamble, no file meta
    rec = decode(buf.getvalue())
    np.testing.assert_array_equal(rec.groups[0].raw, VALUES)


def test_explicit_big_endian_file(tmp_path):
    # Big endian OW: each 16-bit word is written most significant byte first (PS3.5 7.3).
    be = recording(group(VALUES.astype(">i2").tobytes(), 4, [channel(f"C{i}") for i in range(3)],
                         padding=np.array([-32768], ">i2").tobytes()))
    path = tmp_path / "be.dcm"
    path.write_bytes(to_file_bytes(be, ExplicitVRBigEndian))
    raw_file = path.read_bytes()
    assert VALUES.astype(">i2").tobytes() in raw_file  # the file really holds big endian words
    rec = decode(path)
    g = rec.groups[0]
    np.testing.assert_array_equal(g.raw, VALUES)
    assert g.padding_value == -32768
    assert np.isnan(g.samples[2, 0]) and g.samples[2, 1] == 5.0
    assert rec.transfer_syntax_uid == ExplicitVRBigEndian


def test_big_endian_32_bit_words_swapped_per_word(tmp_path):
    values = np.array([[70000, -2], [-1_000_000, 123456789]], dtype=np.int32)
    le = values.astype("<i4").tobytes()
    # PS3.5 7.3: OW is a string of 16-bit words, each byte-swapped: little-endian bytes, swapped in pairs
    words_swapped = np.frombuffer(le, "<u2").astype(">u2").tobytes()
    chans = [channel("A", bits_stored=32), channel("B", bits_stored=32)]
    be = recording(group(words_swapped, 2, chans, interpretation="SL", bits=32))
    path = tmp_path / "be32.dcm"
    path.write_bytes(to_file_bytes(be, ExplicitVRBigEndian))
    rec = decode(path)
    np.testing.assert_array_equal(rec.groups[0].raw, values)
    assert any("big endian" in w for w in rec.warnings)


def test_big_endian_ob_8_bit(tmp_path):
    values = np.array([[-5, 7, 127]], dtype=np.int8)
    be = recording(group(values.tobytes() + b"\x00", 1, [channel(c, bits_stored=8) for c in "ABC"],
                         interpretation="SB", bits=8, vr="OB"))
    path = tmp_path / "be8.dcm"
    path.write_bytes(to_file_bytes(be, ExplicitVRBigEndian))
    np.testing.assert_array_equal(decode(path).groups[0].raw, values)


# G.711 reference values (ITU-T G.711 Tables 2a/2b, 16-bit left-justified as audioop.ulaw2lin/alaw2lin width 2)
MULAW = {0x00: -32124, 0x80: 32124, 0xFF: 0, 0x7F: 0, 0x0F: -16764, 0x8F: 16764, 0xF0: 120, 0x70: -120}
ALAW = {0xD5: 8, 0x55: -8, 0xAA: 32256, 0x2A: -32256, 0x80: 5504, 0x00: -5504}


@pytest.mark.parametrize(("interpretation", "table"), [("MB", MULAW), ("AB", ALAW)])
def test_g711(interpretation, table):
    codes = bytes(table)
    chans = [channel("audio", bits_stored=8)]
    rec = decode(recording(group(codes, len(codes), chans, interpretation=interpretation, bits=8, fs="8000")))
    g = rec.groups[0]
    assert g.raw[:, 0].tolist() == list(table.values())
    assert g.samples[:, 0].tolist() == [float(v) for v in table.values()]


def test_g711_matches_audioop_when_available():
    audioop = pytest.importorskip("audioop")
    codes = bytes(range(256))
    expected_u = np.frombuffer(audioop.ulaw2lin(codes, 2), "<i2")
    expected_a = np.frombuffer(audioop.alaw2lin(codes, 2), "<i2")
    for interpretation, expected in (("MB", expected_u), ("AB", expected_a)):
        rec = decode(recording(group(codes, 256, [channel("a", bits_stored=8)], interpretation=interpretation,
                                     bits=8, fs="8000")))
        np.testing.assert_array_equal(rec.groups[0].raw[:, 0], expected)


def test_padding_becomes_nan():
    values = np.array([[1, -32768], [-32768, 3], [4, 5]], dtype=np.int16)
    rec = decode(recording(ss_group(values, padding=np.array([-32768], "<i2").tobytes())))
    g = rec.groups[0]
    assert g.padding_value == -32768
    assert np.isnan(g.samples[0, 1]) and np.isnan(g.samples[1, 0])
    assert g.samples[2, 1] == 5.0
    assert g.raw[0, 1] == -32768  # raw keeps the code


def test_samples_are_calibrated_when_first_read_and_kept():
    """Storing an ECG never reads its samples, so the decoder leaves their conversion to the first reader."""
    values = np.array([[1, -32768], [-32768, 3], [4, 5]], dtype=np.int16)
    chans = [channel("I", sensitivity="2.5", baseline="10"), channel("II", sensitivity="0.5", correction="2")]
    rec = decode(recording(group(values.astype("<i2").tobytes(), 3, chans,
                                 padding=np.array([-32768], "<i2").tobytes())))
    g = rec.groups[0]
    assert g._calibrated is None  # type: ignore[attr-defined]  # nothing converted yet
    first = g.samples
    assert g.samples is first  # converted once
    np.testing.assert_array_equal(first, [[12.5, np.nan], [np.nan, 3.0], [20.0, 5.0]])
    copy = dataclasses.replace(g, label="RHYTHM")  # what a copy is given is what the group holds
    assert copy.label == "RHYTHM" and copy.samples is first
    first[2, 0] = -1.0  # an edit is kept as it would be on a group made with its samples
    assert g.samples[2, 0] == -1.0
    # Its repr is a group made with those samples: the public class name, the same fields and values.
    made = MultiplexGroup(**{f.name: getattr(g, f.name) for f in dataclasses.fields(g) if f.init})
    assert type(g) is not MultiplexGroup and repr(g).startswith("MultiplexGroup(index=0, ") and repr(g) == repr(made)


def test_bits_stored_sign_extension_and_mask():
    # 12 bits stored in 16: a writer that did not extend the sign wrote 0x0FFF for -1 and 0x0800 for -2048
    stored = np.array([[0x0FFF, 0x0FFF], [0x0800, 0x0800], [0x07FF, 0x07FF]], dtype=np.uint16)
    chans = [channel("signed", bits_stored=12), channel("unsigned", bits_stored=12)]
    rec = decode(recording(group(stored.astype("<u2").tobytes(), 3, chans)))
    assert rec.groups[0].raw[:, 0].tolist() == [-1, -2048, 2047]
    us = decode(recording(group((stored | 0xF000).astype("<u2").tobytes(), 3, chans, interpretation="US")))
    assert us.groups[0].raw[:, 1].tolist() == [0x0FFF, 0x0800, 0x07FF]


@pytest.mark.parametrize(("interpretation", "bits", "dtype", "values"), [
    ("SL", 32, "<i4", [-2**31, 2**31 - 1, -7]),
    ("UL", 32, "<u4", [0, 2**32 - 1, 7]),
    ("SV", 64, "<i8", [-2**63, 2**63 - 1, -7]),
    ("UV", 64, "<u8", [0, 2**64 - 1, 7]),
    ("SB", 8, "i1", [-128, 127, -7]),
    ("UB", 8, "u1", [0, 255, 7]),
    ("US", 16, "<u2", [0, 65535, 7]),
])
def test_integer_interpretations(interpretation, bits, dtype, values):
    data = np.array(values, dtype=dtype).tobytes()
    if len(data) % 2:
        data += b"\x00"
    chans = [channel("x", sensitivity="0.5", bits_stored=bits)]
    rec = decode(recording(group(data, 3, chans, interpretation=interpretation, bits=bits)))
    g = rec.groups[0]
    assert g.raw[:, 0].tolist() == values
    assert g.samples[2, 0] == values[2] * 0.5
    assert g.interpretation == interpretation and g.bits_allocated == bits


def test_two_groups_rates_offsets_and_skews():
    a = ss_group(np.arange(20, dtype=np.int16).reshape(10, 2), fs="500",
                 channels=[channel("I"), channel("II", sample_skew="2")])
    b = ss_group(np.arange(12, dtype=np.int16).reshape(4, 3), fs="250", offset_ms="1500", label="MEDIAN",
                 channels=[channel("V1"), channel("V2", time_skew="0.004"), channel("V3", time_skew="-0.5")])
    rec = decode(recording(a, b, dt="20240102030405.250000+0100"))
    ga, gb = rec.groups
    start = datetime(2024, 1, 2, 3, 4, 5, 250000, tzinfo=timezone(timedelta(hours=1)))
    assert ga.start == start
    assert gb.start == start + timedelta(milliseconds=1500)
    assert gb.time_offset_s == 1.5
    assert (ga.sampling_frequency, ga.n_samples, gb.sampling_frequency, gb.n_samples) == (500, 10, 250, 4)
    np.testing.assert_allclose(ga.times(), np.arange(10) / 500)
    np.testing.assert_allclose(ga.times(1), np.arange(10) / 500 + 2 / 500)  # 2 samples of skew
    np.testing.assert_allclose(gb.times(1), np.arange(4) / 250 + 0.004)
    np.testing.assert_allclose(gb.times(2), np.arange(4) / 250 - 0.5)
    assert gb.datetimes(0)[1] == np.datetime64("2024-01-02T02:04:06.754000000")
    assert rec.group("median") is gb


@pytest.mark.parametrize(("dt", "expected_utc", "offset"), [
    ("20240102030405+0530", datetime(2024, 1, 1, 21, 34, 5, tzinfo=UTC), timedelta(hours=5, minutes=30)),
    ("20240102030405-0800", datetime(2024, 1, 2, 11, 4, 5, tzinfo=UTC), timedelta(hours=-8)),
    ("20240102030405.5-0330", datetime(2024, 1, 2, 6, 34, 5, 500000, tzinfo=UTC), timedelta(hours=-3, minutes=-30)),
])
def test_zone_from_datetime_offset(dt, expected_utc, offset):
    rec = decode(recording(ss_group(VALUES), dt=dt, tz="+0900"), default_zone="Asia/Tokyo")
    assert rec.zone_source == "datetime"
    assert rec.acquisition_utc == expected_utc
    assert rec.utc_offset == offset
    assert any("differs from TimezoneOffsetFromUTC" in w for w in rec.warnings)


def test_zone_from_timezone_offset_from_utc():
    rec = decode(recording(ss_group(VALUES), dt="20240102030405", tz="-0500"), default_zone="Asia/Tokyo")
    assert rec.zone_source == "TimezoneOffsetFromUTC"
    assert rec.acquisition_utc == datetime(2024, 1, 2, 8, 4, 5, tzinfo=UTC)


def test_default_zone_utc_when_none():
    rec = decode(recording(ss_group(VALUES), dt="20240102030405"))
    assert rec.zone_source == "default"
    assert rec.acquisition_datetime == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_default_zone_dst_new_york():
    # 2024-03-10 01:30 is EST (-5), 03:30 the same day is EDT (-4): wall clocks 2 h apart are 1 h apart in UTC
    before = decode(recording(ss_group(VALUES), dt="20240310013000"), default_zone="America/New_York")
    after = decode(recording(ss_group(VALUES), dt="20240310033000"), default_zone=ZoneInfo("America/New_York"))
    assert before.acquisition_utc == datetime(2024, 3, 10, 6, 30, tzinfo=UTC)
    assert after.acquisition_utc == datetime(2024, 3, 10, 7, 30, tzinfo=UTC)
    assert before.groups[0].start.utcoffset() == timedelta(hours=-5)
    # 02:30 does not exist that day: decoded, with a warning
    gap = decode(recording(ss_group(VALUES), dt="20240310023000"), default_zone="America/New_York")
    assert any("does not exist" in w for w in gap.warnings)


def test_datetime_precision_variants():
    rec = decode(recording(ss_group(VALUES), dt="202401"))
    assert rec.acquisition_datetime == datetime(2024, 1, 1, tzinfo=UTC)
    assert any("precise to the month" in w for w in rec.warnings)
    rec = decode(recording(ss_group(VALUES), dt="20240102030405.123456+0000"))
    assert rec.acquisition_datetime == datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert rec.acquisition_datetime_raw == "20240102030405.123456+0000"


def test_time_fallbacks():
    ds = recording(ss_group(VALUES), dt=None)
    ds.StudyDate, ds.StudyTime = "20200101", "101010"
    rec = decode(ds)
    assert rec.time_source_attribute == "StudyDate+StudyTime"
    assert rec.acquisition_datetime == datetime(2020, 1, 1, 10, 10, 10, tzinfo=UTC)
    ds.AcquisitionDate, ds.AcquisitionTime = "20200202", "020202.5"
    rec = decode(ds)
    assert rec.time_source_attribute == "AcquisitionDate+AcquisitionTime"
    assert rec.acquisition_datetime == datetime(2020, 2, 2, 2, 2, 2, 500000, tzinfo=UTC)
    assert any("AcquisitionDateTime absent" in w for w in rec.warnings)
    bare = decode(recording(ss_group(VALUES), dt=None))
    assert bare.acquisition_datetime is None and bare.groups[0].start is None
    assert bare.zone_source is None


def test_annotations_built():
    ds = recording(ss_group(VALUES))
    hr = Dataset()
    hr.ConceptNameCodeSequence = Sequence([code("8867-4", "LN", "Heart rate")])
    hr.NumericValue = ["72", "73"]
    hr.MeasurementUnitsCodeSequence = Sequence([code("/min", "UCUM", "per minute")])
    hr.ReferencedWaveformChannels = [1, 0, 1, 2]
    coded_statement = Dataset()
    coded_statement.ConceptNameCodeSequence = Sequence([code("10:1", "X", "Rhythm")])
    coded_statement.ConceptCodeSequence = Sequence([code("sinus", "X", "Sinus rhythm")])
    text = Dataset()
    text.UnformattedTextValue = "Normal ECG"
    ds.WaveformAnnotationSequence = Sequence([hr, Dataset(), coded_statement, text])
    rec = decode(ds)
    (m,) = rec.measurements
    assert (m.value, m.units, m.referenced_channels) == (72.0, "/min", ((1, 0), (1, 2)))
    assert rec.statements == ["Sinus rhythm", "Normal ECG"]
    assert "WaveformAnnotationSequence: 1 empty item(s) ignored" in rec.warnings


def test_odd_8_bit_data_with_padding_byte():
    values = np.array([1, 2, 3], dtype=np.int8)
    rec = decode(recording(group(values.tobytes() + b"\x00", 3, [channel("x", bits_stored=8)],
                                 interpretation="SB", bits=8)))
    assert rec.groups[0].raw[:, 0].tolist() == [1, 2, 3]
