"""services/clocks.read_header: the fast reader's header answers every lookup as pydicom's read_partial does."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pydicom
import pytest
from helpers import SHARED_SAMPLE_DIR, all_samples
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.filereader import read_partial
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from dicom_ecg_node.services.clocks import HEADER_LAST_TAG, Header, read_header
from dicom_ecg_node.waveform.synth import synthesize_ecg, write_ecg


def _pydicom_header(path: Path) -> Dataset:
    with open(path, "rb") as fh:
        return read_partial(fh, stop_when=lambda tag, _vr, _length: tag > HEADER_LAST_TAG)


def _compare(fast: Any, slow: Dataset, where: str) -> int:
    """Assert every element pydicom read is answered the same; return how many values were compared."""
    compared = 0
    for elem in slow:
        keyword = keyword_for_tag(elem.tag)
        if not keyword or elem.tag.group == 0x0002:  # private and file meta elements are not looked up by keyword
            continue
        expected = slow.get(keyword)
        got = fast.get(keyword)
        if isinstance(expected, Sequence):
            assert isinstance(got, list | Sequence) and len(got) == len(expected), f"{where}/{keyword}"
            for i, (a, b) in enumerate(zip(got, expected, strict=True)):
                compared += _compare(a, b, f"{where}/{keyword}[{i}]")
        else:
            assert got == expected and type(got) is type(expected), f"{where}/{keyword}: {got!r} != {expected!r}"
            if isinstance(fast, Header):  # the text the clock observation reads, from the bytes where it can
                text = None if expected is None else (str(expected).strip() or None)
                assert fast.text(keyword) == text, f"{where}/{keyword}: text {fast.text(keyword)!r} != {text!r}"
            compared += 1
    return compared


def _shared_samples() -> list[Path]:
    return sorted(SHARED_SAMPLE_DIR.rglob("*.dcm")) if SHARED_SAMPLE_DIR.is_dir() else []


@pytest.mark.parametrize("path", all_samples() + _shared_samples(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_same_values_as_pydicom(path: Path) -> None:
    try:
        slow = _pydicom_header(path)
    except Exception as exc:  # a file pydicom cannot read has nothing to compare
        pytest.skip(f"pydicom cannot read its header: {exc}")
    fast = read_header(path)
    assert _compare(fast, slow, path.name) > 0
    assert fast.get("WaveformSequence") is None and fast.get("NoSuchKeyword", "x") == "x"


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRBigEndian])
def test_other_syntaxes_and_nested_request_attributes(tmp_path: Path, syntax: str) -> None:
    ds = synthesize_ecg(patient_id="P-1")
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Müller^Jürgen"
    ds.InstanceCreationDate, ds.InstanceCreationTime = "20261201", "101500.25"
    ds.TimezoneOffsetFromUTC = "-0500"
    request = Dataset()
    request.AccessionNumber = "ACC-9"
    request.RequestedProcedureID = "RP-1"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "11524-6", "LN", "EKG study"
    request.RequestedProcedureCodeSequence = [code]
    ds.RequestAttributesSequence = [request, Dataset()]
    path = tmp_path / "ecg.dcm"
    ds.file_meta.TransferSyntaxUID = syntax
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns that Big Endian is retired
        pydicom.dcmwrite(path, ds, implicit_vr=syntax == ImplicitVRLittleEndian,
                         little_endian=syntax != ExplicitVRBigEndian, enforce_file_format=True)
    fast = read_header(path)
    assert isinstance(fast, Header)  # read by the fast reader, not pydicom's fallback
    assert _compare(fast, _pydicom_header(path), path.name) > 20
    assert str(fast.get("PatientName")) == "Müller^Jürgen"
    items = fast.get("RequestAttributesSequence")
    assert [i.get("AccessionNumber") for i in items] == ["ACC-9", None]
    assert items[0].get("RequestedProcedureCodeSequence")[0].get("CodeMeaning") == "EKG study"


def test_long_header_is_read_whole(tmp_path: Path) -> None:
    ds = synthesize_ecg(patient_id="P-LONG")
    requests = []
    for i in range(3000):  # a header far longer than the first read (64 KiB)
        item = Dataset()
        item.AccessionNumber = f"A{i:05d}"
        requests.append(item)
    ds.RequestAttributesSequence = requests
    path = tmp_path / "long.dcm"
    write_ecg(path, ds)
    assert path.stat().st_size > 64 * 1024 + 3000 * 16
    fast = read_header(path)
    assert isinstance(fast, Header)
    items = fast.get("RequestAttributesSequence")
    assert len(items) == 3000 and items[-1].get("AccessionNumber") == "A02999"
    assert fast.get("PatientID") == "P-LONG"
