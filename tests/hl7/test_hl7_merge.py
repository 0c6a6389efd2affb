"""ADT A40 merges over MLLP: C-FIND (PATIENT and STUDY levels) and the CLI answer under the surviving ID; undo."""

from __future__ import annotations

import json

from click.testing import CliRunner
from hl7support import Hl7Running, MllpClient, err, message, msa
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind as PRFIND  # noqa: N814

from dicom_ecg_node.cli import main
from dicom_ecg_node.waveform.synth import ecg_to_bytes, synthesize_ecg


def store(node: Hl7Running, patient_id: str, study_uid: str) -> None:
    data = ecg_to_bytes(synthesize_ecg(seed=1, patient_id=patient_id, patient_name=f"Name^{patient_id}",
                                       study_instance_uid=study_uid))
    node.running.ingest.store(data, sender_ae="CART", sender_address="local")


def cfind(node: Hl7Running, level: str, **keys: str) -> list[Dataset]:
    ae = AE(ae_title="FINDSCU")
    ae.add_requested_context(PRFIND)
    r = node.running
    assoc = ae.associate(r.host, r.port, ae_title=r.aet)
    assert assoc.is_established
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for k, v in keys.items():
        setattr(ds, k, v)
    try:
        return [i for st, i in assoc.send_c_find(ds, PRFIND) if st.Status in (0xFF00, 0xFF01)]
    finally:
        assoc.release()


def cli(node: Hl7Running, *args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--data-dir", str(node.running.config.data_dir)])
    assert result.exit_code == 0, result.output
    return result.output


def test_merge_moves_studies_in_cfind_and_cli_and_can_be_undone(hl7_node: Hl7Running, mllp: MllpClient) -> None:
    store(hl7_node, "OLD1", "1.2.826.0.1.3680043.10.1.1")
    store(hl7_node, "OLD1", "1.2.826.0.1.3680043.10.1.2")
    store(hl7_node, "NEW1", "1.2.826.0.1.3680043.10.1.3")
    ack = mllp.send(message("ADT^A40", "M1", "EVN|A40|20260301",
                            "PID|1||NEW1^^^^MR||Surviving^Sam||19600101|M", "MRG|OLD1"))
    assert msa(ack)[1:3] == ["AA", "M1"]

    # PATIENT level: the prior ID answers nothing; the surviving one has all three studies.
    assert cfind(hl7_node, "PATIENT", PatientID="OLD1") == []
    [p] = cfind(hl7_node, "PATIENT", PatientID="NEW1", PatientName="", NumberOfPatientRelatedStudies="")
    assert str(p.PatientName) == "Surviving^Sam" and int(p.NumberOfPatientRelatedStudies) == 3
    # STUDY level (patient root, hierarchical): every study under the surviving ID.
    studies = cfind(hl7_node, "STUDY", PatientID="NEW1", StudyInstanceUID="")
    assert sorted(s.StudyInstanceUID for s in studies) == [f"1.2.826.0.1.3680043.10.1.{i}" for i in (1, 2, 3)]
    assert cfind(hl7_node, "STUDY", PatientID="OLD1", StudyInstanceUID="") == []

    patients = {p["patient_id"]: p for p in json.loads(cli(hl7_node, "patients", "--json"))}
    assert "OLD1" not in patients and patients["NEW1"]["studies"] == 3
    assert len(json.loads(cli(hl7_node, "studies", "--patient", "NEW1", "--json"))) == 3

    # Circular: NEW1 into OLD1 while OLD1 → NEW1 is in force.
    ack = mllp.send(message("ADT^A40", "M2", "PID|1||OLD1^^^^MR||Old^One", "MRG|NEW1"))
    assert msa(ack)[1:3] == ["AE", "M2"] and "circular" in err(ack)[8]
    # Into itself.
    ack = mllp.send(message("ADT^A40", "M3", "PID|1||NEW1^^^^MR||Surviving^Sam", "MRG|NEW1"))
    assert msa(ack)[1:3] == ["AE", "M3"]
    assert int(cfind(hl7_node, "PATIENT", PatientID="NEW1", NumberOfPatientRelatedStudies="")[0]
               .NumberOfPatientRelatedStudies) == 3

    [record] = json.loads(cli(hl7_node, "merges", "--json"))
    assert record["prior_patient_id"] == "OLD1" and len(record["moved_studies"]) == 2
    assert "undone" in cli(hl7_node, "merges", "--undo", str(record["id"]))
    old = cfind(hl7_node, "STUDY", PatientID="OLD1", StudyInstanceUID="", PatientName="")
    assert len(old) == 2 and str(old[0].PatientName) == "Name^OLD1"
    assert len(cfind(hl7_node, "STUDY", PatientID="NEW1", StudyInstanceUID="")) == 1
    assert json.loads(cli(hl7_node, "merges", "--json"))[0]["undone_at"] is not None


def test_merge_audited(hl7_node: Hl7Running, mllp: MllpClient) -> None:
    store(hl7_node, "OLD2", "1.2.826.0.1.3680043.10.2.1")
    assert msa(mllp.send(message("ADT^A40", "M9", "PID|1||NEW2^^^^MR||New^Two", "MRG|OLD2")))[1] == "AA"
    hl7_node.running.node.audit.flush()
    audit_dir = hl7_node.running.config.data_dir / "audit"
    events = [json.loads(line) for f in audit_dir.glob("*.jsonl") for line in f.read_text().splitlines()]
    merge = [e for e in events if e["event"] == "patient-merge"]
    assert merge and set(merge[0]["patient_ids"]) == {"OLD2", "NEW2"}
    assert any(e["event"] == "hl7" and e["detail"]["control_id"] == "M9" for e in events)
