"""services/clocks.HeaderReader: one parse per stored file for the derived work, a changed file read again."""

from __future__ import annotations

import os

import pytest

from dicom_ecg_node.errors import ArchiveError
from dicom_ecg_node.services.clocks import HeaderReader
from dicom_ecg_node.waveform.synth import synthesize_ecg, write_ecg


def test_header_read_once_per_file_and_again_when_it_changes(tmp_path) -> None:
    a, b = tmp_path / "a.dcm", tmp_path / "b.dcm"
    write_ecg(a, synthesize_ecg(patient_id="PA"))
    write_ecg(b, synthesize_ecg(patient_id="PB"))
    reader = HeaderReader()
    first = reader.read(a)
    assert first.get("PatientID") == "PA" and "WaveformSequence" not in first  # stops before the samples
    assert reader.read(a) is first  # the reconciliation's parse serves the clock observation
    assert reader.read(b).get("PatientID") == "PB"
    assert reader.read(a) is not first and reader.read(a).get("PatientID") == "PA"  # only the last file is kept
    kept = reader.read(a)
    write_ecg(a, synthesize_ecg(patient_id="PC"))  # a different file at the same path (another size or time)
    st = a.stat()
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert reader.read(a) is not kept and reader.read(a).get("PatientID") == "PC"
    with pytest.raises(ArchiveError, match="header cannot be read"):
        reader.read(tmp_path / "missing.dcm")
