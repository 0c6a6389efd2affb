"""``ecg-node synth`` writes the files it says, for the patients it says, in time order per patient."""

from __future__ import annotations

from collections import defaultdict

import pydicom
from click.testing import CliRunner
from pydicom.valuerep import DT

from dicom_ecg_node.cli import main


def test_synth_writes_count_files_for_patients(tmp_path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["synth", str(out), "--count", "6", "--patients", "2", "--seed", "7"])
    assert result.exit_code == 0, result.output
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"ecg_{i:06d}.dcm" for i in range(1, 7)]
    assert "wrote 6 ECG files for 2 patients" in result.stdout

    datasets = [pydicom.dcmread(f) for f in files]
    assert len({d.PatientID for d in datasets}) == 2
    assert len({d.SOPInstanceUID for d in datasets}) == 6
    assert len({d.StudyInstanceUID for d in datasets}) == 6  # one study per ECG
    assert all("^" in str(d.PatientName) for d in datasets)

    by_patient: dict[str, list] = defaultdict(list)
    for d in datasets:  # in file-counter order
        by_patient[d.PatientID].append(DT(d.AcquisitionDateTime))
    assert sorted(len(v) for v in by_patient.values()) == [3, 3]
    for times in by_patient.values():
        assert all(t.tzinfo is not None for t in times)
        assert times == sorted(times) and len(set(times)) == len(times)  # ordered by true (UTC) instant


def test_synth_options_and_determinism(tmp_path) -> None:
    args = ["--count", "3", "--patients", "1", "--seed", "11", "--transfer-syntax", "big", "--zone",
            "America/New_York", "--zone-style", "timezone-offset", "--no-median"]
    runner = CliRunner()
    assert runner.invoke(main, ["synth", str(tmp_path / "a"), *args]).exit_code == 0
    assert runner.invoke(main, ["synth", str(tmp_path / "b"), *args]).exit_code == 0
    a = [pydicom.dcmread(f) for f in sorted((tmp_path / "a").iterdir())]
    b = [pydicom.dcmread(f) for f in sorted((tmp_path / "b").iterdir())]
    for x, y in zip(a, b, strict=True):
        assert x.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRBigEndian
        assert x.TimezoneOffsetFromUTC in ("-0500", "-0400")
        assert len(x.WaveformSequence) == 1
        assert x.SOPClassUID == "1.2.840.10008.5.1.4.1.1.9.1.1"
        assert (x.PatientID, x.AcquisitionDateTime) == (y.PatientID, y.AcquisitionDateTime)
        assert x.WaveformSequence[0].WaveformData == y.WaveformSequence[0].WaveformData
        assert x.SOPInstanceUID != y.SOPInstanceUID  # UIDs are always fresh


def test_synth_refuses_more_patients_than_files(tmp_path) -> None:
    result = CliRunner().invoke(main, ["synth", str(tmp_path), "--count", "2", "--patients", "3"])
    assert result.exit_code == 2
    assert "--patients" in result.output
