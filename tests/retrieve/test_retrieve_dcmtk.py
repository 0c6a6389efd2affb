"""DCMTK movescu (into a DCMTK storescp) and getscu, independent third-party peers, against the running node."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from helpers import run_dcmtk
from retrievesupport import fill

pytestmark = pytest.mark.dcmtk


def archived_waveforms(node, uids):
    out = {}
    for uid in uids:
        ds = pydicom.dcmread(node.ingest.archive.resolve(node.ingest.catalog.get_instance(uid).summary.path))
        out[uid] = bytes(ds.WaveformSequence[0].WaveformData)
    return out


def received_waveforms(folder: Path):
    out = {}
    for f in folder.rglob("*"):
        if f.is_file():
            ds = pydicom.dcmread(f)
            out[str(ds.SOPInstanceUID)] = bytes(ds.WaveformSequence[0].WaveformData)
    return out


@pytest.mark.parametrize("stored", ["explicit", "implicit", "deflated"])
def test_movescu_patient_into_storescp(node, dcmtk_storescp, stored):
    node.node.retrieve.registry.add(dcmtk_storescp.aet, "127.0.0.1", dcmtk_storescp.port, "DCMTK storescp")
    uids = fill(node, 4, transfer_syntax=stored)
    fill(node, 2, patient_id="OTHER")
    result = run_dcmtk("movescu", "-v", "-P", "-aet", "VIEWSCU", "-aec", node.aet, "-aem", dcmtk_storescp.aet,
                       "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=P1", node.host, str(node.port))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Received Final Move Response (Success)" in result.stdout + result.stderr
    assert received_waveforms(dcmtk_storescp.out) == archived_waveforms(node, uids)


def test_movescu_study_root_unknown_destination(node, dcmtk_storescp):
    uids = fill(node, 1)
    study = pydicom.dcmread(node.ingest.archive.resolve(
        node.ingest.catalog.get_instance(uids[0]).summary.path)).StudyInstanceUID
    result = run_dcmtk("movescu", "-v", "-S", "-aet", "VIEWSCU", "-aec", node.aet, "-aem", "NOTREGISTERED",
                       "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}", node.host, str(node.port))
    out = result.stdout + result.stderr
    assert "0xa801" in out.lower() or "MoveDestinationUnknown" in out, out
    assert not any(dcmtk_storescp.out.iterdir())


def test_getscu_study_into_a_folder(node, tmp_path):
    uids = fill(node, 3, transfer_syntax="implicit")
    study = pydicom.dcmread(node.ingest.archive.resolve(
        node.ingest.catalog.get_instance(uids[0]).summary.path)).StudyInstanceUID
    out = tmp_path / "got"
    out.mkdir()
    result = run_dcmtk("getscu", "-v", "-S", "-aet", "VIEWSCU", "-aec", node.aet, "-od", str(out),
                       "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}", node.host, str(node.port))
    assert result.returncode == 0, result.stdout + result.stderr
    assert received_waveforms(out) == archived_waveforms(node, uids)
