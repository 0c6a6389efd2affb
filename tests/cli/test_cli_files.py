"""``ecg-node show`` and ``ecg-node export`` through click's CliRunner, on the real sample files."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner
from helpers import sample

from dicom_ecg_node.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about ".." UIDs


def run(*args: str):
    result = CliRunner().invoke(main, list(args))
    return result


def test_show_text_summary():
    result = run("show", str(sample("pydicom/waveform_ecg.dcm")), "--zone", "Europe/Rome")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "12-lead ECG Waveform Storage" in out
    assert "Anonymous" in out and "642341" in out
    assert "2013-01-25 10:59:19+01:00" in out and "2013-01-25 09:59:19 UTC" in out
    assert "Group 0 RHYTHM: 12 channels x 10000 samples @ 1000 Hz (10.000 s)" in out
    assert "Group 1 MEDIAN BEAT: 12 channels x 1200 samples @ 1000 Hz" in out
    assert "Lead I (Einthoven), Lead II, Lead III" in out
    assert "units:   uV" in out
    assert "filters: 0.05 Hz - 300 Hz, notch 0 Hz" in out
    assert "PR Interval: 161 ms" in out and "QRS Axis: 52 deg" in out
    assert "RITMO SINUSALE" in out and "ECG NORMALE" in out
    assert "Warnings (1):" in out


def test_show_warnings_of_quirky_file():
    result = run("show", str(sample("pixelmed/1074466202.fixed.dcm")))
    assert result.exit_code == 0, result.output
    assert "NumberOfWaveformChannels is 1 but there are 12 channel definitions" in result.output
    assert "from ContentDate+ContentTime" in result.output


def test_show_json():
    result = run("show", "--json", str(sample("pixelmed/39da47b7.dcm")))
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["sop_class_name"] == "Hemodynamic Waveform Storage"
    assert data["patient"]["id"] == "123-654"
    assert data["acquisition"]["utc"] == "1999-12-23T10:07:09+00:00"
    (g,) = data["groups"]
    assert (g["sampling_frequency_hz"], g["n_samples"], len(g["channels"])) == (240.0, 2400, 12)
    assert g["channels"][0]["units"] == "mV" and g["channels"][0]["sensitivity"] == 0.00122
    assert data["measurements"] == [{"name": "Heart rate", "code": "8867-4", "scheme": "LN", "value": 69.0,
                                     "units": "{H.B.}/min", "referenced_channels": [[1, 1]]}]
    assert any("Hemodynamic" in w for w in data["warnings"])


def test_show_missing_file_is_a_clean_error(tmp_path):
    result = run("show", str(tmp_path / "absent.dcm"))
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_show_non_dicom_is_a_clean_error(tmp_path):
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"definitely not a DICOM file")
    result = run("show", str(junk))
    assert result.exit_code == 2
    assert "cannot read a DICOM dataset" in result.output


def test_export_csv(tmp_path):
    out = tmp_path / "csv"
    result = run("export", str(sample("pydicom/waveform_ecg.dcm")), "--csv", str(out))
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in out.iterdir())
    assert files == ["group0_rhythm.csv", "group1_median_beat.csv"]
    with (out / "group0_rhythm.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:3] == ["time_s", "Lead I (Einthoven) [uV]", "Lead II [uV]"]
    assert rows[0][-1] == "Lead V6 [uV]"
    assert len(rows) == 1 + 10000
    # raw sample 80 x 1.25 uV; second row is 1 ms later
    assert rows[1][:3] == ["0.0", "100.0", "112.5"]
    assert float(rows[2][0]) == 0.001
    assert float(rows[-1][0]) == pytest.approx(9.999)
    assert float(rows[-1][3]) == 90 * 1.25


def test_export_padding_cells_are_empty(tmp_path):
    # ecgtoolkit: padding 0 is not applied (collides with data), so no cell is empty and zeros stay zeros
    out = tmp_path / "csv"
    result = run("export", str(sample("ecgtoolkit/Example.dcm")), "--csv", str(out))
    assert result.exit_code == 0, result.output
    with (out / "group0_rhythm.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][1] == "Lead I [uV]"
    assert rows[5][5] == "0.0"  # sample 4 of channel 5 (Lead aVL) is a genuine zero
    assert all(cell != "" for row in rows[1:] for cell in row)


def test_export_padded_samples_are_empty_cells(tmp_path):
    from helpers import dcmfx

    out = tmp_path / "csv"
    result = run("export", str(dcmfx("waveform_ecg_synthetic_multi_group.dcm")), "--csv", str(out))
    assert result.exit_code == 0, result.output
    with (out / "group1_ub_padded.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["time_s", "Ramp [raw]", "Padded tail [raw]"]
    assert sum(cell == "" for row in rows[1:] for cell in row) == 10
    assert float(rows[2][0]) == 0.01  # 100 Hz
