"""ecg-node find and timeline through click's CliRunner, on a catalog filled with synthetic ECGs."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from click.testing import CliRunner
from helpers import make_config

from dicom_ecg_node.cli import main
from dicom_ecg_node.services.ingest import IngestService
from dicom_ecg_node.waveform.synth import ecg_to_bytes, synthesize_ecg

NY = ZoneInfo("America/New_York")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def _fill(tmp_path: Path) -> list[str]:
    config = make_config(tmp_path)
    with IngestService.open(config) as ingest:
        for i, when in enumerate([datetime(2026, 3, 8, 3, 10, tzinfo=NY), datetime(2026, 3, 8, 1, 50, tzinfo=NY),
                                  datetime(2026, 3, 9, 12, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))]):
            ds = synthesize_ecg(patient_id="P1", patient_name="Doe^Jane", acquisition_datetime=when, seed=i,
                                heart_rate_bpm=60.0 + 10 * i)
            ingest.store(ecg_to_bytes(ds), sender_ae="T", sender_address="local")
        ingest.store(ecg_to_bytes(synthesize_ecg(patient_id="P2", patient_name="Roe^Rick", seed=9)),
                     sender_ae="T", sender_address="local")
    return ["--data-dir", str(tmp_path / "data")]


def test_find_and_timeline(tmp_path: Path) -> None:
    data = _fill(tmp_path)
    code, out = run("find", "--name", "doe*", "--json", *data)
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 3 and {r["PatientID"] for r in rows} == {"P1"}
    code, out = run("find", "--date-range", "20260308", "--level", "IMAGE", *data)
    assert code == 0 and out.count("1.2.840.10008.5.1.4.1.1.9.1.1") == 2
    code, out = run("find", "--level", "PATIENT", "--json", *data)
    assert {r["PatientID"] for r in json.loads(out)} == {"P1", "P2"}
    code, out = run("find", "--date-range", "2026-03-08", *data)
    assert code == 2 and "DA range" in out

    code, out = run("timeline", "P1", "--json", *data)
    assert code == 0
    rows = json.loads(out)
    assert [r["acquisition_utc"][:16] for r in rows] == ["2026-03-08T06:50", "2026-03-08T07:10",
                                                        "2026-03-09T06:30"]
    assert rows[0]["acquisition_local"].startswith("2026-03-08T01:50:00-05:00")
    assert rows[1]["acquisition_local"].startswith("2026-03-08T03:10:00-04:00")
    assert rows[0]["interval_s"] is None and rows[1]["interval_s"] == 20 * 60
    assert rows[0]["hr"] is not None and rows[0]["qtc"] is not None and rows[0]["device"]
    code, out = run("timeline", "P1", *data)
    assert code == 0 and "00:20" in out and "INTERVAL" in out
