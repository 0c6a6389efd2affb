"""verify / reindex / stats / listings against a real archive and catalog."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from dicom_ecg_node.config import NodeConfig
from dicom_ecg_node.services.ingest import IngestService
from dicom_ecg_node.services.maintenance import list_conflicts, list_quarantine, reindex, stats, verify
from dicom_ecg_node.waveform.synth import ecg_to_bytes, synthesize_ecg


def synth(**kw: object) -> bytes:
    return ecg_to_bytes(synthesize_ecg(duration_s=2.0, include_median=False, annotations=False, **kw))


def test_verify_and_reindex(tmp_path: Path, catalog_url: str) -> None:
    config = NodeConfig(data_dir=tmp_path / "data", db_url=catalog_url, prepare_archive=False)
    with IngestService.open(config) as svc:
        outs = [svc.store(synth(patient_id="V1", seed=i, sop_instance_uid=generate_uid()), sender_ae="CART",
                          sender_address="x") for i in range(4)]
        orphan_data = synth(patient_id="V2", seed=9, sop_instance_uid=generate_uid())
        orphan_rel = svc.archive.placement(pydicom.dcmread(io.BytesIO(orphan_data)).SOPInstanceUID)
        svc.archive.write(orphan_rel, orphan_data)  # a file whose row never got committed (crash)
    assert verify(config).ok is False
    # corrupt one (flip a byte near the end: waveform data), delete another
    corrupt = bytearray(outs[0].path.read_bytes())
    corrupt[-10] ^= 0xFF
    outs[0].path.write_bytes(bytes(corrupt))
    outs[1].path.unlink()
    report = verify(config)
    assert report.checked == 4 and report.intact == 2
    assert [p.sop_instance_uid for p in report.of_kind("corrupt")] == [outs[0].sop_instance_uid]
    assert [p.sop_instance_uid for p in report.of_kind("missing")] == [outs[1].sop_instance_uid]
    assert [p.path for p in report.of_kind("orphan")] == [orphan_rel]

    result = reindex(config)
    assert result.indexed == [orphan_rel]
    assert result.unchanged == 2
    assert len(result.removed_rows) == 1 and len(result.quarantined) == 1
    after = verify(config)
    assert after.ok, after.problems
    assert after.checked == 3
    assert any(e.reason.get("error") == "ChecksumMismatch" for e in list_quarantine(config))
    s = stats(config)
    assert s.catalog.instances == 3 and s.quarantined == 1
    assert {x.sender_ae for x in s.catalog.senders} == {"CART", "REINDEX"}


def test_full_reindex_rebuilds_a_lost_catalog(tmp_path: Path, catalog_url: str) -> None:
    config = NodeConfig(data_dir=tmp_path / "data", db_url=catalog_url, prepare_archive=False)
    with IngestService.open(config) as svc:
        for i in range(3):
            svc.store(synth(patient_id="F", seed=i, sop_instance_uid=generate_uid()), sender_ae="C",
                      sender_address="x")
        svc.store(synth(patient_id="F", patient_name="Other^Name", seed=7, sop_instance_uid=generate_uid()),
                  sender_ae="C", sender_address="x")
        before = {i.sop_instance_uid: i.sha256 for i in svc.catalog.list_instances()}
    assert len(list_conflicts(config)) == 1
    result = reindex(config, full=True)
    assert len(result.indexed) == 4
    with IngestService.open(config) as svc:
        assert {i.sop_instance_uid: i.sha256 for i in svc.catalog.list_instances()} == before
    assert verify(config).ok
