"""Decoding of the real sample files, pinned to values worked out independently with numpy.

The expected values come from the raw bytes of Waveform Data (np.frombuffer with an explicit dtype, reshaped
to samples x channels) and the formula of PS3.3 C.10.9.1.4 applied by hand, never from the decoder.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta

import numpy as np
import pydicom
import pytest
from helpers import all_samples, dcmfx, sample

from dicom_ecg_node.waveform import decode


def _raw16(path, group: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
    item = ds.WaveformSequence[group]
    n_channels = len(item.ChannelDefinitionSequence)
    return np.frombuffer(item.WaveformData, dtype="<i2").reshape(int(item.NumberOfWaveformSamples), n_channels)


def test_every_sample_file_decodes():
    paths = all_samples()
    assert len(paths) == 6
    for path in paths:
        rec = decode(path)
        assert rec.groups, path


def test_pydicom_mortara_values():
    path = sample("pydicom/waveform_ecg.dcm")
    rec = decode(path)
    rhythm, median = rec.groups
    assert (rhythm.label, median.label) == ("RHYTHM", "MEDIAN BEAT")
    assert (rhythm.sampling_frequency, rhythm.n_samples, rhythm.n_channels) == (1000.0, 10000, 12)
    assert (median.n_samples, median.n_channels) == (1200, 12)
    raw = _raw16(path, 0)
    # sensitivity 1.25 uV, correction 1, baseline 0 on every channel
    assert rhythm.samples[0, 0] == 80 * 1.25 == 100.0
    assert rhythm.samples[0, 1] == 112.5
    assert rhythm.samples[-1, 2] == 90 * 1.25
    assert rhythm.samples[5000, 1] == 55 * 1.25
    np.testing.assert_array_equal(rhythm.raw, raw)
    np.testing.assert_array_equal(rhythm.samples, raw * 1.25)
    assert median.samples[600, 0] == 20 * 1.25
    assert [c.label for c in rhythm.channels][:3] == ["Lead I (Einthoven)", "Lead II", "Lead III"]
    assert rhythm.channels[11].label == "Lead V6"
    assert rhythm.channels[0].units == "uV"
    assert rhythm.channels[0].source.value == "5.6.3-9-1"
    assert (rhythm.channels[0].filter_low_hz, rhythm.channels[0].filter_high_hz, rhythm.channels[0].notch_hz) == (
        0.05, 300.0, 0.0)
    assert rec.acquisition_datetime == datetime(2013, 1, 25, 10, 59, 19, tzinfo=UTC)
    assert rec.zone_source == "default"
    assert rec.time_source_attribute == "AcquisitionDateTime"
    assert rhythm.start == rec.acquisition_datetime
    assert rec.patient_id == "642341"
    assert rec.manufacturer == "Mortara Instrument, Inc."


def test_pydicom_mortara_annotations():
    rec = decode(sample("pydicom/waveform_ecg.dcm"))
    assert rec.statements == ["RITMO SINUSALE", "ECG NORMALE"]
    by_meaning = {m.concept.meaning: m for m in rec.measurements}
    assert len(rec.measurements) == 9
    assert by_meaning["RR Interval"].value == 982
    assert by_meaning["PR Interval"].value == 161
    assert by_meaning["QRS Duration"].value == 75
    assert by_meaning["QT Interval"].value == 368
    assert by_meaning["QTc Interval"].value == 370
    assert by_meaning["QRS Axis"].value == 52
    assert by_meaning["QRS Axis"].units == "deg"
    assert by_meaning["PR Interval"].units == "ms"
    assert by_meaning["PR Interval"].concept.value == "5.13.5-7"
    assert by_meaning["PR Interval"].concept.scheme == "SCPECG"
    assert by_meaning["PR Interval"].referenced_channels == ((1, 0),)
    # 77 items = 2 statements + 9 measurements + 66 fiducial points
    assert len(rec.fiducials) == 66
    first = rec.fiducials[0]
    assert first.concept.meaning == "P Onset"
    assert first.sample_positions == (299,)
    assert first.temporal_range_type == "POINT"
    assert first.annotation_group_number == 2
    assert rec.fiducials[-1].concept.meaning == "T Offset"
    assert rec.fiducials[-1].sample_positions == (9697,)
    assert not any("empty" in w for w in rec.warnings)


def test_pixelmed_hemodynamic_millivolts_and_warnings():
    path = sample("pixelmed/39da47b7.dcm")
    rec = decode(path)
    (g,) = rec.groups
    assert (g.sampling_frequency, g.n_samples, g.n_channels) == (240.0, 2400, 12)
    assert g.channels[0].units == "mV"
    assert g.padding_value == -32768  # 0x8000 as SS
    raw = _raw16(path, 0)
    assert raw[0, 0] == 186
    assert g.samples[0, 0] == pytest.approx(186 * 0.00122, rel=1e-12)
    assert g.samples[-1, 11] == pytest.approx(-16 * 0.00122, rel=1e-12)
    assert g.samples[1000, 5] == pytest.approx(-5 * 0.00122, rel=1e-12)
    assert not np.isnan(g.samples).any()  # no sample equals the padding value
    assert (g.channels[0].filter_low_hz, g.channels[0].filter_high_hz) == (0.05, 100.0)
    assert rec.acquisition_datetime == datetime(1999, 12, 23, 10, 7, 9, tzinfo=UTC)
    assert any("Modality 'ECG'" in w and "Hemodynamic" in w for w in rec.warnings)
    assert any("12 channels" in w and "at most 8" in w for w in rec.warnings)
    (hr,) = rec.measurements
    assert (hr.concept.value, hr.concept.scheme, hr.value, hr.units) == ("8867-4", "LN", 69.0, "{H.B.}/min")
    assert hr.referenced_channels == ((1, 1),)
    assert rec.synchronization is not None
    assert rec.synchronization.synchronization_trigger == "NO TRIGGER"
    assert rec.synchronization.acquisition_time_synchronized == "N"
    assert rec.synchronization.frame_of_reference_uid == "1.3.6.1.4.1.6018.6.999"


def test_pixelmed_scp_conversion_channel_count_mismatch():
    path = sample("pixelmed/1074466202.fixed.dcm")
    rec = decode(path)
    (g,) = rec.groups
    assert g.n_channels == 12 and g.n_samples == 5000
    assert [c.label for c in g.channels] == ["Lead I", "Lead II", "Lead V1", "Lead V2", "Lead V3", "Lead V4",
                                             "Lead V5", "Lead V6", "Lead III", "Lead aVR", "Lead aVL", "Lead aVF"]
    raw = _raw16(path, 0)
    np.testing.assert_array_equal(g.raw, raw)
    assert g.samples[0, 1] == -1250.0  # sensitivity 1 uV
    assert g.samples[-1, 11] == 70.0
    assert g.samples[2500, 8] == 495.0
    assert g.padding_value == 8000
    assert any("NumberOfWaveformChannels is 1" in w and "12 channel definitions" in w for w in rec.warnings)
    assert "StudyInstanceUID absent" in rec.warnings
    assert "SeriesInstanceUID absent" in rec.warnings
    # no AcquisitionDateTime: Content Date/Time used, and said
    assert rec.time_source_attribute == "ContentDate+ContentTime"
    assert rec.acquisition_datetime == datetime(2004, 1, 19, 0, 50, 3, tzinfo=UTC)
    assert any("ContentDate" in w for w in rec.warnings)
    assert rec.sop_instance_uid == "0.0.0.0"


def test_ecgtoolkit_quirks():
    path = sample("ecgtoolkit/Example.dcm")
    rec = decode(path)
    rhythm, median = rec.groups
    assert (rhythm.n_samples, median.n_samples) == (5000, 600)
    raw = _raw16(path, 0)
    assert (raw == 0).sum() == 1269
    # padding 0 collides with genuine zero crossings: padding is not applied, and a warning says why
    assert rhythm.padding_value == 0
    assert not np.isnan(rhythm.samples).any()
    assert rhythm.samples[4, 4] == 0.0
    assert rhythm.samples[0, 0] == -2 * 2.5
    assert rhythm.samples[-1, 11] == -15 * 2.5
    assert any("WaveformPaddingValue 0 lies inside" in w for w in rec.warnings)
    # the MEDIAN BEAT group carries -32768 without a declared padding value: a legal SS value, decoded as such
    # (no warning: a conformant object clipping at full scale would earn the same one)
    assert median.samples[599, 0] == -32768 * 2.5 == -81920.0
    assert median.padding_value is None
    assert "WaveformAnnotationSequence: 96 empty item(s) ignored" in rec.warnings
    assert any("SOPInstanceUID" in w and ".." in w for w in rec.warnings)
    by_meaning = {m.concept.meaning: m.value for m in rec.measurements}
    assert by_meaning == {"PR Interval": 148, "QRS Duration": 120, "QT Interval": 420, "QTc Interval": 443,
                          "P Axis": 44, "QRS Axis": -61, "T Axis": 86}
    assert len(rec.fiducials) == 5
    assert rec.patient_name == "Clark" and rec.patient_id == "SBJ-123"


def test_cabolabs_files():
    rec = decode(sample("cabolabs-dicom-waveform/Example.dcm"))
    assert [g.n_samples for g in rec.groups] == [4999, 599]
    assert rec.groups[0].samples[0, 0] == -5.0
    assert rec.groups[0].samples[-1, 11] == -37.5
    one = decode(sample("cabolabs-dicom-waveform/out2_attrs.dcm"))
    (g,) = one.groups
    assert (g.n_channels, g.n_samples, g.sampling_frequency) == (1, 250, 200.0)
    assert g.samples[0, 0] == pytest.approx(66 * 0.7324219)
    assert g.samples[100, 0] == pytest.approx(873 * 0.7324219)
    assert g.duration_s == 1.25
    assert g.times(0)[-1] == pytest.approx(249 / 200)


def test_dcmfx_multi_group_every_interpretation():
    path = dcmfx("waveform_ecg_synthetic_multi_group.dcm")
    rec = decode(path)
    assert [g.interpretation for g in rec.groups] == ["SB", "UB", "MB", "SL", "SV", "UV"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
    data = [bytes(item.WaveformData) for item in ds.WaveformSequence]
    sb = np.frombuffer(data[0][:251], dtype="i1")
    np.testing.assert_array_equal(rec.groups[0].raw[:, 0], sb)
    assert rec.groups[0].raw[0, 0] == -100  # 0x9c
    ub = np.frombuffer(data[1], dtype="u1").reshape(40, 2)
    assert rec.groups[1].padding_value == 255
    assert np.isnan(rec.groups[1].samples).sum() == int((ub == 255).sum()) == 10
    assert rec.groups[1].samples[0, 1] == 100.0
    # mu-law code 0x0d -> 16-bit linear -18812 (G.711; audioop.ulaw2lin convention)
    assert rec.groups[2].raw[0, 0] == -18812
    sl = np.frombuffer(data[3], dtype="<i4").reshape(25, 2)
    assert rec.groups[3].raw[0, 0] == sl[0, 0] == -1073741820
    assert rec.groups[3].samples[0, 0] == pytest.approx(-1073741820 * 1e-3)
    sv = np.frombuffer(data[4], dtype="<i8")
    assert rec.groups[4].raw[0, 0] == sv[0] == np.iinfo(np.int64).min
    uv = np.frombuffer(data[5], dtype="<u8")
    assert rec.groups[5].raw.dtype == np.uint64
    assert rec.groups[5].raw[2, 0] == uv[2] == 2**63 - 1


def test_dcmfx_anonymised_mortara_same_samples():
    anon = decode(dcmfx("ecg_12_lead_anon.dcm"))
    orig = decode(sample("pydicom/waveform_ecg.dcm"))
    np.testing.assert_array_equal(anon.groups[0].raw, orig.groups[0].raw)
    assert anon.patient_id is None
    assert anon.statements == ["RITMO SINUSALE", "ECG NORMALE"]


def test_dcmfx_12_lead_mdc_codes():
    rec = decode(dcmfx("waveform_ecg_synthetic_12_lead.dcm"))
    assert rec.groups[0].channels[0].source.scheme == "MDC"
    assert rec.groups[0].channels[0].label == "Lead I"
    assert rec.groups[0].n_samples == 2000


def test_default_zone_applies_to_real_file():
    rec = decode(sample("pydicom/waveform_ecg.dcm"), default_zone="Europe/Rome")
    assert rec.acquisition_datetime.utcoffset() == timedelta(hours=1)
    assert rec.acquisition_utc == datetime(2013, 1, 25, 9, 59, 19, tzinfo=UTC)
