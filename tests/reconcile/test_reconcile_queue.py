"""Reconciliation on ingest: carts store ECGs with and without orders; mismatches are queued, scored, re-linked."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, datetime

import pydicom
import pytest
from click.testing import CliRunner
from pynetdicom import AE

from dicom_ecg_node.cli import main
from dicom_ecg_node.services.reconcile import ReconcileService, score_instance
from dicom_ecg_node.services.worklist import OrderData, WorklistService
from dicom_ecg_node.waveform.synth import ecg_to_bytes, synthesize_ecg

TWELVE_LEAD = "1.2.840.10008.5.1.4.1.1.9.1.1"


def store(node, tmp_path, **kwargs):
    ds = synthesize_ecg(acquisition_datetime=datetime.now(UTC), duration_s=2.0, annotations=False, **kwargs)
    path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
    path.write_bytes(ecg_to_bytes(ds))
    ae = AE(ae_title="CART1")
    ae.add_requested_context(TWELVE_LEAD)
    assoc = ae.associate(node.host, node.port, ae_title=node.aet)
    assert assoc.is_established
    try:
        assert assoc.send_c_store(path).Status == 0x0000
    finally:
        assoc.release()
    # The assessment runs after the C-STORE response, in the node's background dispatcher: wait for it (bounded).
    assert node.node.dispatcher.wait_idle(30.0)
    return ds


def order(node, key, patient_id, name, birth, sex, accession):
    today = datetime.now(UTC).strftime("%Y%m%d")
    WorklistService(node.ingest.catalog).apply_order(OrderData(
        control="NW", placer_order=key, patient_id=patient_id, patient_name=name, birth_date=birth, sex=sex,
        accession_number=accession, requested_procedure_id="RP-" + key, sps_id="SPS-" + key, modality="ECG",
        start_date=today, start_time=datetime.now(UTC).strftime("%H%M")))


def cli(node, *args):
    result = CliRunner().invoke(main, [*args, "--data-dir", str(node.config.data_dir)])
    assert result.exit_code == 0, result.output
    return result.output


def queue(node):
    return {i["sop_instance_uid"]: i for i in json.loads(cli(node, "reconcile", "list", "--json"))}


def test_ecgs_with_and_without_orders(node, tmp_path):
    order(node, "O1", "PAT1", "DOE^JANE", "19700101", "F", "ACC1")
    order(node, "O2", "PAT2", "ROE^RICHARD", "19600505", "M", "ACC2")
    right = store(node, tmp_path, patient_id="PAT1", patient_name="DOE^JANE", birth_date="19700101", sex="F",
                  accession_number="ACC1")
    typo = store(node, tmp_path, patient_id="PAT1", patient_name="DOE^JOHN", birth_date="19710101", sex="M",
                 accession_number="ACC1")
    wrong_id = store(node, tmp_path, patient_id="PAT1", patient_name="ROE^RICHARD", birth_date="19600505", sex="M",
                     accession_number="ACC2")
    unknown = store(node, tmp_path, patient_id="NOBODY", patient_name="ROE^RICHARD", birth_date="19600505",
                    sex="M", accession_number="")
    items = queue(node)
    assert right.SOPInstanceUID not in items  # ID, name, birth date, sex and order all agree: not queued
    t = items[typo.SOPInstanceUID]
    assert set(t["reasons"]) == {"name-mismatch", "birth-date-mismatch", "sex-mismatch"}
    assert t["score"] == 30 + 20  # ID and order only
    w = items[wrong_id.SOPInstanceUID]
    assert "order-patient-mismatch" in w["reasons"] and w["candidate_patient_id"] == "PAT2"
    assert w["candidate_accession"] == "ACC2"
    u = items[unknown.SOPInstanceUID]
    assert set(u["reasons"]) == {"unknown-patient-id", "no-order"}
    assert u["score"] == 0
    assert [i["score"] for i in json.loads(cli(node, "reconcile", "list", "--json"))] == sorted(
        i["score"] for i in items.values())
    assert "unknown-patient-id" in cli(node, "reconcile", "list")


def test_accept_and_relink_keep_the_original(node, tmp_path):
    order(node, "O3", "PAT3", "POE^ANNA", "19800202", "F", "ACC3")
    ecg = store(node, tmp_path, patient_id="PAT3X", patient_name="POE^ANNA", birth_date="19800202", sex="F",
                accession_number="")
    other = store(node, tmp_path, patient_id="PAT9", patient_name="X^Y", birth_date="19990101", sex="O",
                  accession_number="")
    items = queue(node)
    item, item2 = items[ecg.SOPInstanceUID], items[other.SOPInstanceUID]

    out = cli(node, "reconcile", "accept", str(item2["id"]), "--actor", "dr.who", "--note", "new patient")
    assert "accepted" in out
    assert other.SOPInstanceUID not in queue(node)

    before = node.ingest.archive.read(node.ingest.catalog.find_instance_file(ecg.SOPInstanceUID).path)
    out = cli(node, "reconcile", "relink", str(item["id"]), "--patient-id", "PAT3", "--accession", "ACC3",
              "--actor", "dr.who")
    corrected_uid = out.strip().split()[4]
    catalog = node.ingest.catalog
    original = catalog.get_instance(ecg.SOPInstanceUID)
    corrected = catalog.get_instance(corrected_uid)
    assert original is not None and original.summary.patient_id == "PAT3X"  # still reachable, unchanged
    assert corrected.summary.patient_id == "PAT3" and corrected.summary.sender_ae == node.aet
    # The stored original file is byte for byte what it was.
    assert node.ingest.archive.read(original.summary.path) == before
    assert hashlib.sha256(before).hexdigest() == original.summary.sha256
    ds = pydicom.dcmread(io.BytesIO(node.ingest.archive.read(corrected.summary.path)))
    assert ds.PatientID == "PAT3" and ds.AccessionNumber == "ACC3"
    assert ds.StudyInstanceUID == WorklistService(catalog).get("O3")["study_instance_uid"]
    modified = ds.OriginalAttributesSequence[0]
    assert modified.ReasonForTheAttributeModification == "CORRECT"
    assert modified.ModifiedAttributesSequence[0].PatientID == "PAT3X"
    service = ReconcileService(catalog, node.config)
    assert service.superseded_by(ecg.SOPInstanceUID) == corrected_uid
    [link] = service.links(ecg.SOPInstanceUID)
    assert link["changes"]["PatientID"] == ["PAT3X", "PAT3"] and link["actor"] == "dr.who"
    resolved = {i["sop_instance_uid"]: i for i in json.loads(cli(node, "reconcile", "list", "--all", "--json"))}
    assert resolved[ecg.SOPInstanceUID]["status"] == "relinked"
    assert resolved[ecg.SOPInstanceUID]["corrected_sop_instance_uid"] == corrected_uid
    assert corrected_uid not in resolved  # the node's own corrected instance is not queued again
    audit = "".join(p.read_text() for p in (node.config.data_dir / "audit").glob("*.jsonl"))
    events = [json.loads(line) for line in audit.splitlines() if '"reconcile"' in line]
    assert {e["detail"]["action"] for e in events} == {"accept", "relink"}
    # A resolved entry cannot be resolved again.
    result = CliRunner().invoke(main, ["reconcile", "accept", str(item["id"]), "--data-dir",
                                       str(node.config.data_dir)])
    assert result.exit_code == 2 and "already relinked" in result.output


@pytest.mark.parametrize(("known", "reference", "how", "expected"), [
    (True, None, None, 30),  # known ID, nothing to compare, no orders on this node
    (False, None, None, 0),
])
def test_score_without_reference(known, reference, how, expected):
    a = score_instance(patient_id="P", name="A^B", birth_date="20000101", sex="F", patient_known=known,
                       reference=reference, order_match=how, orders_in_use=False)
    assert a.score == expected
    assert ("unknown-patient-id" in a.reasons) is (not known)
