"""ecg-node admin commands through click's CliRunner, on real files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner
from helpers import sample

from dicom_ecg_node.cli import main


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_import_and_listings(tmp_path: Path) -> None:
    src = tmp_path / "in"
    shutil.copytree(sample(""), src)
    data = ["--data-dir", str(tmp_path / "data")]
    code, out = run("import", str(src), "--json", *data)
    assert code == 1  # the ".." UID files and the file without Study Instance UID are refused
    summary = json.loads(out[out.index("{"):])
    assert (summary["stored"], summary["refused"], summary["duplicate"]) == (2, 4, 0)
    assert summary["skipped"] >= 5  # README / SOURCE.md files in the folders
    assert all(r["error"] == "DatasetError" for r in summary["refusals"])

    code, out = run("import", str(src / "pydicom" / "waveform_ecg.dcm"), *data)
    assert code == 0 and "duplicate 1" in out

    code, out = run("patients", "--json", *data)
    pats = {p["patient_id"]: p for p in json.loads(out)}
    assert set(pats) == {"123-654", "642341"}
    assert (pats["642341"]["studies"], pats["642341"]["instances"], pats["642341"]["patient_name"]) == (
        1, 1, "Anonymous")
    code, out = run("patients", *data)
    assert code == 0 and "PATIENT_ID" in out and "642341" in out

    code, out = run("studies", "--patient", "642341", "--json", *data)
    [study] = json.loads(out)
    assert study["study_instance_uid"] == "1.3.76.13.65829.2.20130125082826.1072139.2"
    assert study["accession_number"] == "03028041970546" and study["instances"] == 1

    code, out = run("instances", "--study", study["study_instance_uid"], "--json", *data)
    [inst] = json.loads(out)
    assert inst["sop_instance_uid"] == "1.3.6.1.4.1.20029.40.20130125105919.5407.1.1"
    assert inst["sender_ae"] == "IMPORT" and inst["size"] == (src / "pydicom" / "waveform_ecg.dcm").stat().st_size
    code, out = run("instances", *data)
    assert code == 0 and out.count("archive/") == 2

    code, out = run("stats", "--json", *data)
    st = json.loads(out)
    assert (st["patients"], st["studies"], st["instances"], st["quarantined"]) == (2, 2, 2, 4)
    sizes = sum((src / p).stat().st_size for p in ("pydicom/waveform_ecg.dcm", "pixelmed/39da47b7.dcm"))
    assert st["total_bytes"] == sizes and st["senders"] == [{"sender_ae": "IMPORT", "instances": 2, "bytes": sizes}]
    code, out = run("stats", *data)
    assert "instances 2" in out

    code, out = run("quarantine", "--json", *data)
    rows = json.loads(out)
    assert len(rows) == 4 and all(Path(r["file"]).exists() for r in rows)
    assert sum("empty component" in r["comment"] for r in rows) == 3
    code, out = run("quarantine", *data)
    assert "DatasetError" in out

    code, out = run("conflicts", *data)
    assert code == 0 and "(none)" in out

    code, out = run("verify", *data)
    assert code == 0 and "problems 0" in out
    next((tmp_path / "data" / "archive").rglob("*.dcm")).unlink()
    code, out = run("verify", *data)
    assert code == 1 and "missing" in out
    code, out = run("reindex", *data)
    assert code == 0 and "rows removed 1" in out
    code, out = run("verify", *data)
    assert code == 0


def test_every_command_has_help() -> None:
    for cmd in ("import", "patients", "studies", "instances", "verify", "reindex", "quarantine", "conflicts",
                "stats"):
        code, out = run(cmd, "--help")
        assert code == 0 and "--data-dir" in out, cmd


def test_bad_catalog_url_is_a_clean_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["patients", "--data-dir", str(tmp_path), "--db-url", "mysql://x/y"])
    assert result.exit_code == 2 and "error:" in result.output
