"""``ecg-node show`` / ``export`` with the SOP Instance UID of an instance the node holds."""

from __future__ import annotations

import csv

import pydicom
from click.testing import CliRunner
from helpers import renumbered_copy, sample

from dicom_ecg_node.cli import main


def test_show_and_export_by_catalog_uid(tmp_path):
    src = renumbered_copy(sample("pydicom/waveform_ecg.dcm"), tmp_path / "ecg.dcm")
    uid = pydicom.dcmread(src).SOPInstanceUID
    data = str(tmp_path / "data")
    runner = CliRunner()
    assert runner.invoke(main, ["import", str(src), "--data-dir", data]).exit_code == 0

    shown = runner.invoke(main, ["show", uid, "--json", "--data-dir", data])
    assert shown.exit_code == 0, shown.output
    assert uid in shown.output
    assert "\"sampling_frequency_hz\": 1000.0" in shown.output

    out = tmp_path / "csv"
    exported = runner.invoke(main, ["export", uid, "--csv", str(out), "--data-dir", data])
    assert exported.exit_code == 0, exported.output
    with (out / "group0_rhythm.csv").open() as fh:
        rows = list(csv.reader(fh))
    # First rhythm sample of lead I: stored 80 x 1.25 uV (value read from the bytes in the decoder tests).
    assert rows[0][:2] == ["time_s", "Lead I (Einthoven) [uV]"]
    assert float(rows[1][1]) == 100.0


def test_unknown_uid_is_a_clean_error(tmp_path):
    result = CliRunner().invoke(main, ["show", "1.2.3.4.5", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 2
    assert "not in the catalog" in result.output
