"""The synthetic 12-lead writer, checked by reading its bytes independently of the project's decoder."""

from __future__ import annotations

import io
import zlib
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pydicom
import pytest
from pydicom.uid import UID, ExplicitVRBigEndian

from dicom_ecg_node.waveform import synthesize_ecg
from dicom_ecg_node.waveform.synth import (
    GENERAL_32BIT_ECG,
    GENERAL_ECG,
    LEADS,
    TRANSFER_SYNTAXES,
    TWELVE_LEAD_ECG,
    UTC_SYNCHRONIZATION_UID,
    ecg_to_bytes,
    synthesize_ecg_with_truth,
    write_ecg,
)

_KINDS = {"SB": "i1", "UB": "u1", "SS": "i2", "US": "u2", "SL": "i4", "UL": "u4", "SV": "i8", "UV": "u8"}


def _reread(ds: pydicom.Dataset) -> pydicom.FileDataset:
    return pydicom.dcmread(io.BytesIO(ecg_to_bytes(ds)))


def _raw(ds: pydicom.Dataset, group: int = 0) -> np.ndarray:
    """Stored samples (n_samples, n_channels), decoded here with numpy only (not with the project's decoder)."""
    item = ds.WaveformSequence[group]
    kind = _KINDS[item.WaveformSampleInterpretation]
    data = bytes(item.WaveformData)
    big = ds.file_meta.TransferSyntaxUID == ExplicitVRBigEndian
    if big and kind[1] != "1":
        # OW: every 16-bit word is byte-swapped in big endian (PS3.5 7.3); words stay in little-endian order
        data = np.frombuffer(data, dtype=">u2").astype("<u2").tobytes()
    n, c = int(item.NumberOfWaveformSamples), int(item.NumberOfWaveformChannels)
    return np.frombuffer(data, dtype="<" + kind)[: n * c].reshape(n, c).astype(np.int64)


def _calibration(ds: pydicom.Dataset, group: int = 0) -> tuple[np.ndarray, np.ndarray]:
    chans = ds.WaveformSequence[group].ChannelDefinitionSequence
    step = np.array([float(ch.ChannelSensitivity) * float(ch.ChannelSensitivityCorrectionFactor) for ch in chans])
    base = np.array([float(ch.ChannelBaseline) for ch in chans])
    return step, base


def _physical(ds: pydicom.Dataset, group: int = 0) -> tuple[np.ndarray, np.ndarray]:
    step, base = _calibration(ds, group)
    return _raw(ds, group) * step + base, step


def test_default_is_a_single_group_12_lead_ecg() -> None:
    ds = _reread(synthesize_ecg(seed=1))
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID == TWELVE_LEAD_ECG
    assert len(ds.WaveformSequence) == 1
    assert ds.WaveformSequence[0].NumberOfWaveformChannels == 12


def test_file_meta_sop_class_and_structure() -> None:
    ds = _reread(synthesize_ecg(seed=1, include_median=True))
    assert ds.preamble == b"\x00" * 128
    # rhythm + median = 24 channels: beyond the 12-lead IOD's 13 in total (PS3.3 A.34.3.4), so General ECG
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID == GENERAL_ECG
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.TransferSyntaxUID == TRANSFER_SYNTAXES["explicit"]
    assert ds.Modality == "ECG"
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                    "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "SeriesInstanceUID",
                    "SeriesNumber", "Manufacturer", "InstanceNumber", "ContentDate", "ContentTime",
                    "AcquisitionDateTime", "AcquisitionContextSequence", "WaveformAnnotationSequence"):
        assert keyword in ds, keyword
    assert [g.MultiplexGroupLabel for g in ds.WaveformSequence] == ["RHYTHM", "MEDIAN BEAT"]
    assert [g.WaveformOriginality for g in ds.WaveformSequence] == ["ORIGINAL", "DERIVED"]
    rhythm, median = ds.WaveformSequence
    assert rhythm.NumberOfWaveformSamples == 5000 and float(rhythm.SamplingFrequency) == 500
    assert median.NumberOfWaveformSamples == 600
    assert rhythm.WaveformBitsAllocated == 16 and rhythm.WaveformSampleInterpretation == "SS"
    assert rhythm["WaveformData"].VR == "OW"
    assert len(rhythm.WaveformData) == 5000 * 12 * 2
    for ch, (label, code, meaning) in zip(rhythm.ChannelDefinitionSequence, LEADS, strict=True):
        assert ch.ChannelLabel == label
        src = ch.ChannelSourceSequence[0]
        assert (src.CodeValue, src.CodingSchemeDesignator, src.CodeMeaning) == (code, "SCPECG", meaning)
        unit = ch.ChannelSensitivityUnitsSequence[0]
        assert (unit.CodeValue, unit.CodingSchemeDesignator) == ("uV", "UCUM")
        assert ch.WaveformBitsStored == 16
        assert float(ch.FilterLowFrequency) == 0.05 and float(ch.NotchFilterFrequency) == 50


def test_save_as_with_enforce_file_format_and_write_ecg(tmp_path) -> None:
    ds = synthesize_ecg(seed=2)
    ds.save_as(tmp_path / "a.dcm", enforce_file_format=True)
    write_ecg(tmp_path / "b.dcm", ds)
    assert (tmp_path / "a.dcm").read_bytes() == (tmp_path / "b.dcm").read_bytes() == ecg_to_bytes(ds)
    assert (tmp_path / "b.dcm").read_bytes()[128:132] == b"DICM"


@pytest.mark.parametrize("group", [0, 1])
def test_einthoven_and_goldberger_hold_after_calibration(group: int) -> None:
    ds, truth = synthesize_ecg_with_truth(seed=3, noise_uv=15.0, baseline_wander_uv=80.0, sensitivity=2.5,
                                          correction_factor=0.98, baseline=-12.0, include_median=True)
    ds = _reread(ds)
    x, step = _physical(ds, group)
    q = step[0]
    i, ii, iii, avr, avl, avf = (x[:, k] for k in range(6))
    # each stored value is within half a step of the truth, so a relation of k terms holds within the sum of
    # their half steps (weights 1/2 count half)
    assert np.max(np.abs(iii - (ii - i))) <= 1.5 * q + 1e-9
    assert np.max(np.abs(avr + (i + ii) / 2)) <= 1.0 * q + 1e-9
    assert np.max(np.abs(avl - (i - ii / 2))) <= 1.25 * q + 1e-9
    assert np.max(np.abs(avf - (ii - i / 2))) <= 1.25 * q + 1e-9
    assert np.mean(np.abs(iii - (ii - i))) < 0.75 * q
    # and the truth itself satisfies the relations exactly
    t = truth.groups[group].physical
    np.testing.assert_allclose(t[:, 2], t[:, 1] - t[:, 0], atol=1e-9)
    np.testing.assert_allclose(t[:, 3], -(t[:, 0] + t[:, 1]) / 2, atol=1e-9)
    np.testing.assert_allclose(t[:, 4], t[:, 0] - t[:, 1] / 2, atol=1e-9)
    np.testing.assert_allclose(t[:, 5], t[:, 1] - t[:, 0] / 2, atol=1e-9)
    assert np.max(np.abs(x - t)) <= 0.5 * q + 1e-9


def _r_peaks(signal: np.ndarray, fs: float) -> np.ndarray:
    thr = 0.6 * signal.max()
    mid = signal[1:-1]
    idx = np.flatnonzero((mid > signal[:-2]) & (mid >= signal[2:]) & (mid > thr)) + 1
    keep = [idx[0]]
    for k in idx[1:]:
        if k - keep[-1] > 0.2 * fs:
            keep.append(k)
    return np.array(keep) / fs


@pytest.mark.parametrize("rate", [45.0, 72.0, 130.0])
def test_heart_rate_from_r_peak_spacing_in_lead_ii(rate: float) -> None:
    ds, truth = synthesize_ecg_with_truth(seed=4, heart_rate_bpm=rate, noise_uv=10.0)
    ds = _reread(ds)
    x, _ = _physical(ds)
    fs = float(ds.WaveformSequence[0].SamplingFrequency)
    peaks = _r_peaks(x[:, 1], fs)
    assert 60.0 / np.mean(np.diff(peaks)) == pytest.approx(rate, abs=1.0)
    assert len(peaks) == len(truth.r_peaks_s)
    np.testing.assert_allclose(peaks, truth.r_peaks_s, atol=2.5 / fs)
    hr = [a for a in ds.WaveformAnnotationSequence
          if "ConceptNameCodeSequence" in a and a.ConceptNameCodeSequence[0].CodeValue == "8867-4"]
    assert float(hr[0].NumericValue) == round(rate)
    assert hr[0].MeasurementUnitsCodeSequence[0].CodeValue == "/min"


def test_precordial_progression_is_plausible() -> None:
    _, truth = synthesize_ecg_with_truth(seed=5, vary_morphology=False, include_median=True)
    median = truth.groups[1].physical
    r = median[:, 6:].max(axis=0)
    s = -median[:, 6:].min(axis=0)
    assert s[0] > 2 * r[0]  # V1: rS
    assert r[5] > 2 * s[5]  # V6: qR
    assert r[3] > r[1] > r[0]  # R grows from V1 to V4
    assert median[:, 1].max() > 800  # lead II R wave about 1 mV


def test_measurement_and_statement_annotations() -> None:
    ds, truth = synthesize_ecg_with_truth(seed=6, heart_rate_bpm=60.0)
    numeric = {a.ConceptNameCodeSequence[0].CodeMeaning: (float(a.NumericValue),
                                                          a.MeasurementUnitsCodeSequence[0].CodeValue)
               for a in ds.WaveformAnnotationSequence if "NumericValue" in a}
    assert numeric["Heart rate"] == (60.0, "/min")
    assert numeric["QRS Duration"][1] == "ms" and 60 <= numeric["QRS Duration"][0] <= 120
    assert 120 <= numeric["PR Interval"][0] <= 220
    assert 340 <= numeric["QTc Interval"][0] <= 460
    assert numeric["QRS Axis"][1] == "deg" and -30 <= numeric["QRS Axis"][0] <= 90
    assert {k for k in numeric} >= {"RR Interval", "QT Interval", "P Axis", "T Axis"}
    texts = [a.UnformattedTextValue for a in ds.WaveformAnnotationSequence if "UnformattedTextValue" in a]
    assert texts == list(truth.statements) == ["Sinus rhythm", "Normal ECG"]
    assert truth.measurements["HR"] == 60


@pytest.mark.parametrize(
    ("zone", "style", "dt_suffix", "tz_attr"),
    [
        ("Europe/Paris", "offset-in-dt", "+0200", None),
        ("Europe/Paris", "timezone-offset", "", "+0200"),
        ("America/New_York", "offset-in-dt", "-0400", None),
        ("Asia/Kolkata", "timezone-offset", "", "+0530"),
        ("Europe/Paris", "none", "", None),
    ],
)
def test_zone_styles(zone: str, style: str, dt_suffix: str, tz_attr: str | None) -> None:
    when = datetime(2026, 7, 1, 10, 15, 30, 250000, tzinfo=ZoneInfo(zone))
    ds = _reread(synthesize_ecg(seed=7, acquisition_datetime=when, zone_style=style))
    assert ds.AcquisitionDateTime == "20260701101530.250000" + dt_suffix
    assert ds.get("TimezoneOffsetFromUTC") == tz_attr
    assert ds.ContentDate == ds.StudyDate == "20260701"
    assert ds.ContentTime == "101530.250000"


def test_dst_change_shows_in_offset() -> None:
    paris = ZoneInfo("Europe/Paris")
    winter = synthesize_ecg(acquisition_datetime=datetime(2026, 3, 28, 9, 0, tzinfo=paris))
    summer = synthesize_ecg(acquisition_datetime=datetime(2026, 3, 30, 9, 0, tzinfo=paris))
    assert winter.AcquisitionDateTime.endswith("+0100") and summer.AcquisitionDateTime.endswith("+0200")


@pytest.mark.parametrize("name", list(TRANSFER_SYNTAXES))
@pytest.mark.parametrize("interp", ["SS", "SL"])
def test_transfer_syntaxes_round_trip_with_their_byte_order(name: str, interp: str) -> None:
    ds, truth = synthesize_ecg_with_truth(seed=8, transfer_syntax=name, sample_interpretation=interp,
                                          include_median=True)
    raw = ecg_to_bytes(ds)
    back = pydicom.dcmread(io.BytesIO(raw))
    assert back.file_meta.TransferSyntaxUID == TRANSFER_SYNTAXES[name]
    assert back.SOPClassUID == (GENERAL_ECG if interp == "SS" else GENERAL_32BIT_ECG)
    assert len(truth.groups) == 2
    for g, gt in enumerate(truth.groups):
        np.testing.assert_array_equal(_raw(back, g), gt.stored)
    if name in ("explicit", "deflated"):
        assert back.WaveformSequence[0]["WaveformData"].VR == "OW"
    # the first sample of lead I, as bytes in the file
    v = int(truth.groups[0].stored[0, 0])
    first = bytes(back.WaveformSequence[0].WaveformData)
    if interp == "SS":
        expected = v.to_bytes(2, "big" if name == "big" else "little", signed=True)
    else:
        le = v.to_bytes(4, "little", signed=True)
        expected = le[1::-1] + le[3:1:-1] if name == "big" else le  # each OW word swapped, words in order
    assert first[: len(expected)] == expected


def test_big_endian_bytes_of_a_known_sample() -> None:
    # baseline 0, step 1 uV: a stored value of 1000 must be the bytes 0x03 0xE8 in big endian
    ds, truth = synthesize_ecg_with_truth(seed=9, transfer_syntax="big", sensitivity=1.0, baseline=0.0)
    stored = truth.groups[0].stored
    n, c = np.unravel_index(int(np.argmax(np.abs(stored))), stored.shape)
    value = int(stored[n, c])
    offset = (int(n) * 12 + int(c)) * 2
    data = bytes(pydicom.dcmread(io.BytesIO(ecg_to_bytes(ds))).WaveformSequence[0].WaveformData)
    assert data[offset:offset + 2] == value.to_bytes(2, "big", signed=True)
    assert abs(value) > 255  # both bytes matter


def test_deflated_file_is_really_deflated() -> None:
    ds = synthesize_ecg(seed=10, transfer_syntax="deflated")
    raw = ecg_to_bytes(ds)
    plain = ecg_to_bytes(synthesize_ecg(seed=10, transfer_syntax="explicit"))
    assert raw[128:132] == b"DICM"
    # File Meta Information Group Length (0002,0000) UL: the dataset starts right after the meta group
    assert raw[132:138] == b"\x02\x00\x00\x00UL"
    meta_len = int.from_bytes(raw[140:144], "little")
    body = raw[144 + meta_len:]
    inflated = zlib.decompress(body, -15)  # raw deflate, no zlib header (PS3.5 A.5)
    assert len(inflated) > 3 * len(body)
    assert len(raw) < len(plain) / 3
    assert inflated[:2] == b"\x08\x00"  # the first element is of group 0008, little endian


def test_general_ecg_allows_other_interpretations_deliberately() -> None:
    ds, truth = synthesize_ecg_with_truth(seed=11, sample_interpretation="UB", sop_class_uid=GENERAL_ECG)
    back = _reread(ds)
    item = back.WaveformSequence[0]
    assert back.SOPClassUID == GENERAL_ECG
    assert item.WaveformBitsAllocated == 8 and item["WaveformData"].VR == "OB"
    raw = _raw(back)
    assert raw.min() >= 0 and raw.max() <= 255
    x, step = _physical(back)
    mask = (truth.groups[0].stored > 0) & (truth.groups[0].stored < 255)
    assert mask.mean() > 0.99
    assert np.max(np.abs(x - truth.groups[0].physical)[mask]) <= 0.5 * step[0] + 1e-9


def test_bits_stored_clips_and_is_written() -> None:
    ds, truth = synthesize_ecg_with_truth(seed=12, bits_stored=10, sensitivity=1.0)
    assert truth.groups[0].clipped > 0
    raw = _raw(ds)
    assert raw.min() >= -512 and raw.max() <= 511
    assert {ch.WaveformBitsStored for ch in ds.WaveformSequence[0].ChannelDefinitionSequence} == {10}


def test_same_seed_same_signal_different_uids() -> None:
    kw = {"noise_uv": 20.0, "baseline_wander_uv": 50.0, "include_median": True}
    a, ta = synthesize_ecg_with_truth(seed=13, **kw)
    b, tb = synthesize_ecg_with_truth(seed=13, **kw)
    c, _ = synthesize_ecg_with_truth(seed=14, **kw)
    assert a.WaveformSequence[0].WaveformData == b.WaveformSequence[0].WaveformData
    assert a.WaveformSequence[1].WaveformData == b.WaveformSequence[1].WaveformData
    np.testing.assert_array_equal(ta.groups[0].physical, tb.groups[0].physical)
    assert a.WaveformSequence[0].WaveformData != c.WaveformSequence[0].WaveformData
    assert a.SOPInstanceUID != b.SOPInstanceUID


def test_uids_are_valid_distinct_and_study_can_be_shared() -> None:
    study = pydicom.uid.generate_uid()
    dss = [synthesize_ecg(seed=i, study_instance_uid=study if i < 3 else None) for i in range(10)]
    sops = [d.SOPInstanceUID for d in dss]
    series = [d.SeriesInstanceUID for d in dss]
    assert len(set(sops)) == 10 and len(set(series)) == 10
    assert {d.StudyInstanceUID for d in dss[:3]} == {study}
    assert len({d.StudyInstanceUID for d in dss[3:]}) == 7
    for uid in sops + series:
        assert UID(uid).is_valid


def test_given_uids_are_used() -> None:
    ds = synthesize_ecg(study_instance_uid="1.2.3", series_instance_uid="1.2.3.4", sop_instance_uid="1.2.3.4.5")
    assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID) == ("1.2.3", "1.2.3.4", "1.2.3.4.5")
    assert ds.file_meta.MediaStorageSOPInstanceUID == "1.2.3.4.5"


def test_synchronization_module_on_request() -> None:
    ds = synthesize_ecg(acquisition_time_synchronized=True, time_source="NTP")
    assert ds.AcquisitionTimeSynchronized == "Y" and ds.TimeSource == "NTP"
    assert ds.SynchronizationFrameOfReferenceUID == UTC_SYNCHRONIZATION_UID
    assert ds.SynchronizationTrigger == "NO TRIGGER"
    assert "AcquisitionTimeSynchronized" not in synthesize_ecg()


def test_group_time_offset_and_truth_start() -> None:
    when = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)
    ds, truth = synthesize_ecg_with_truth(acquisition_datetime=when, group_time_offset_ms=250.0)
    assert float(ds.WaveformSequence[0].MultiplexGroupTimeOffset) == 250.0
    assert (truth.groups[0].start - when).total_seconds() == 0.25


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"sample_interpretation": "US"}, "sample_interpretation"),
        ({"sample_interpretation": "MB", "sop_class_uid": GENERAL_ECG}, "sample_interpretation"),
        ({"sample_interpretation": "SL", "sop_class_uid": TWELVE_LEAD_ECG}, "sample_interpretation"),
        ({"include_median": True, "sop_class_uid": TWELVE_LEAD_ECG}, "include_median"),
        ({"sample_interpretation": "XX"}, "sample_interpretation"),
        ({"transfer_syntax": "jpeg"}, "transfer_syntax"),
        ({"acquisition_datetime": datetime(2026, 1, 1, 9, 0)}, "acquisition_datetime"),
        ({"zone_style": "local"}, "zone_style"),
        ({"sampling_frequency": 2000.0}, "sampling_frequency"),
        ({"duration_s": 40.0}, "duration_s"),
        ({"bits_stored": 17}, "bits_stored"),
        ({"heart_rate_bpm": 10.0}, "heart_rate_bpm"),
        ({"sensitivity": [1.0, 2.0]}, "sensitivity"),
        ({"correction_factor": 0.0}, "correction_factor"),
        ({"sop_class_uid": "1.2.840.10008.5.1.4.1.1.9.2.1"}, "sop_class_uid"),
    ],
)
def test_invalid_arguments_are_named(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        synthesize_ecg(**kwargs)
