"""Admin actions from the CLI (import, reindex) reach the audit trail."""

from __future__ import annotations

import json

import pydicom
from click.testing import CliRunner
from helpers import renumbered_copy, sample

from dicom_ecg_node.cli import main


def test_import_and_reindex_are_audited(tmp_path):
    src = renumbered_copy(sample("pydicom/waveform_ecg.dcm"), tmp_path / "ecg.dcm")
    ds = pydicom.dcmread(src)
    data = str(tmp_path / "data")
    runner = CliRunner()
    assert runner.invoke(main, ["import", str(src), "--data-dir", data]).exit_code == 0
    assert runner.invoke(main, ["reindex", "--data-dir", data]).exit_code == 0
    result = runner.invoke(main, ["audit", "--event", "admin", "--json", "--data-dir", data])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.output.splitlines() if line.strip()]  # JSON lines
    actions = [e["detail"]["action"] for e in events]
    assert actions == ["import", "reindex"]
    imported = events[0]
    assert imported["sop_instance_uids"] == [ds.SOPInstanceUID]
    assert imported["study_uids"] == [ds.StudyInstanceUID]
    assert imported["detail"]["stored"] == 1
