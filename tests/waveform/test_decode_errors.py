"""Every refusal of the decoder: a WaveformError whose message names the attribute and the group."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian
from test_decode_built import VALUES, channel, group, recording, ss_group, to_file_bytes

from dicom_ecg_node.errors import EcgNodeError
from dicom_ecg_node.waveform import WaveformError, decode


def refuse(ds, attribute: str | None, group_index: int | None = 0, **kwargs) -> WaveformError:
    with pytest.raises(WaveformError) as info:
        decode(ds, **kwargs)
    err = info.value
    assert isinstance(err, EcgNodeError)
    assert err.attribute == attribute
    assert err.group == group_index
    if attribute:
        assert attribute in str(err)
    if group_index is not None:
        assert f"Waveform Sequence item {group_index}" in str(err)
    return err


def second_group_broken(**changes) -> Dataset:
    bad = ss_group(VALUES)
    for keyword, value in changes.items():
        if value is None:
            delattr(bad, keyword)
        else:
            setattr(bad, keyword, value)
    return recording(ss_group(VALUES), bad)


def test_missing_waveform_sequence():
    ds = recording(ss_group(VALUES))
    del ds.WaveformSequence
    refuse(ds, "WaveformSequence", None)


def test_empty_waveform_sequence():
    ds = recording(ss_group(VALUES))
    ds.WaveformSequence = Sequence([])
    refuse(ds, "WaveformSequence", None)


@pytest.mark.parametrize(("keyword", "value", "words"), [
    ("WaveformSampleInterpretation", None, "absent"),
    ("WaveformSampleInterpretation", "XX", "unknown interpretation"),
    ("WaveformBitsAllocated", None, "absent"),
    ("WaveformBitsAllocated", 12, "not 8, 16, 32 or 64"),
    ("WaveformBitsAllocated", 32, "needs 16"),
    ("SamplingFrequency", None, "absent"),
    ("SamplingFrequency", "0", "not a positive frequency"),
    ("SamplingFrequency", "-500", "not a positive frequency"),
    ("NumberOfWaveformSamples", None, "absent"),
    ("NumberOfWaveformSamples", 5, "were expected"),
    ("ChannelDefinitionSequence", None, "absent or empty"),
    ("WaveformData", None, "absent"),
    ("WaveformData", b"", "empty"),
])
def test_group_attribute_refused(keyword, value, words):
    ds = second_group_broken(**{keyword: value})
    attribute = "WaveformData" if keyword == "NumberOfWaveformSamples" and value == 5 else keyword
    err = refuse(ds, attribute, 1)
    assert words in str(err)


def test_data_length_mismatch_names_counts():
    ds = recording(group(VALUES.astype("<i2").tobytes()[:-2], 4, [channel(c) for c in "ABC"]))
    err = refuse(ds, "WaveformData", 0)
    assert "22 bytes" in str(err) and "3 channels x 4 samples x 2 bytes = 24" in str(err)


def test_channel_count_mismatch_without_matching_data():
    # data and NumberOfWaveformChannels say 3 channels, only 2 are defined: which 2? refuse
    ds = recording(ss_group(VALUES))
    ds.WaveformSequence[0].ChannelDefinitionSequence = Sequence([channel("A"), channel("B")])
    err = refuse(ds, "ChannelDefinitionSequence", 0)
    assert "2 channel definitions but NumberOfWaveformChannels is 3" in str(err)


def test_padding_value_too_short():
    ds = recording(group(VALUES.astype("<i4").tobytes(), 4, [channel(c, bits_stored=32) for c in "ABC"],
                         interpretation="SL", bits=32, padding=b"\x00\x80"))
    refuse(ds, "WaveformPaddingValue", 0)


def test_big_endian_ob_with_16_bit_samples(tmp_path):
    ds = recording(group(VALUES.astype(">i2").tobytes(), 4, [channel(c) for c in "ABC"], vr="OB"))
    path = tmp_path / "bad.dcm"
    path.write_bytes(to_file_bytes(ds, ExplicitVRBigEndian))
    err = refuse(path, "WaveformData", 0)
    assert "byte order unknown" in str(err)


def test_unknown_default_zone():
    refuse(recording(ss_group(VALUES)), "default_zone", None, default_zone="Mars/Olympus")


def test_not_dicom_bytes_and_missing_path(tmp_path):
    with pytest.raises(WaveformError, match="cannot read a DICOM dataset"):
        decode(b"this is not DICOM at all")
    with pytest.raises(WaveformError, match="cannot read a DICOM dataset"):
        decode(tmp_path / "absent.dcm")
    with pytest.raises(WaveformError, match="unsupported source type"):
        decode(42)  # type: ignore[arg-type]
