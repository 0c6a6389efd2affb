"""Modality Performed Procedure Step SCP (PS3.4 F.7) over real associations, pynetdicom as the cart."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from pynetdicom import AE

from dicom_ecg_node.services.mpps import MppsService
from dicom_ecg_node.services.worklist import OrderData, WorklistService

MPPS = "1.2.840.10008.3.1.2.3.3"


def n_create_attrs(*, accession="ACC1", sps_id="SPS1", rp_id="RP1", study_uid=None, status="IN PROGRESS"):
    ds = Dataset()
    ds.PatientName = "DOE^JANE"
    ds.PatientID = "MPPS1"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    step = Dataset()
    step.StudyInstanceUID = study_uid or generate_uid()
    step.AccessionNumber = accession
    step.RequestedProcedureID = rp_id
    step.ScheduledProcedureStepID = sps_id
    step.ReferencedStudySequence = Sequence()
    ds.ScheduledStepAttributesSequence = Sequence([step])
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedStationAETitle = "CART1"
    ds.PerformedProcedureStepStartDate = "20250301"
    ds.PerformedProcedureStepStartTime = "101500"
    ds.PerformedProcedureStepStatus = status
    ds.Modality = "ECG"
    ds.PerformedSeriesSequence = Sequence()
    return ds


def final_mods(status: str, series_uid: str, sop_uid: str) -> Dataset:
    mods = Dataset()
    mods.PerformedProcedureStepStatus = status
    mods.PerformedProcedureStepEndDate = "20250301"
    mods.PerformedProcedureStepEndTime = "102000"
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.9.1.1"
    ref.ReferencedSOPInstanceUID = sop_uid
    series = Dataset()
    series.SeriesInstanceUID = series_uid
    series.PerformingPhysicianName = ""
    series.ProtocolName = "Resting ECG"
    series.OperatorsName = ""
    series.SeriesDescription = ""
    series.RetrieveAETitle = ""
    series.ReferencedImageSequence = Sequence()
    series.ReferencedNonImageCompositeSOPInstanceSequence = Sequence([ref])
    mods.PerformedSeriesSequence = Sequence([series])
    return mods


@pytest.fixture
def cart(node):
    ae = AE(ae_title="CART1")
    ae.add_requested_context(MPPS)
    assoc = ae.associate(node.host, node.port, ae_title=node.aet)
    assert assoc.is_established
    yield assoc
    if assoc.is_established:
        assoc.release()


def test_n_create_then_completed_takes_the_step_off_the_worklist(node, cart):
    worklist = WorklistService(node.ingest.catalog)
    worklist.apply_order(OrderData(control="NW", placer_order="ORD1", patient_id="MPPS1", patient_name="DOE^JANE",
                                   accession_number="ACC1", requested_procedure_id="RP1", sps_id="SPS1",
                                   modality="ECG", start_date="20250301", start_time="1000"))
    study_uid = worklist.get("ORD1")["study_instance_uid"]
    uid = generate_uid()
    status, attrs = cart.send_n_create(n_create_attrs(study_uid=study_uid), MPPS, uid)
    assert status.Status == 0x0000
    assert worklist.get("ORD1")["status"] == "IN PROGRESS"

    mpps = MppsService(node.ingest.catalog)
    record = mpps.get(uid)
    assert record.status == "IN PROGRESS" and record.calling_ae == "CART1"
    assert record.steps[0].accession_number == "ACC1" and record.steps[0].scheduled_procedure_step_id == "SPS1"
    assert record.steps[0].requested_procedure_id == "RP1" and record.steps[0].study_instance_uid == study_uid

    series_uid, sop_uid = generate_uid(), generate_uid()
    status, attrs = cart.send_n_set(final_mods("COMPLETED", series_uid, sop_uid), MPPS, uid)
    assert status.Status == 0x0000
    assert attrs.PerformedProcedureStepStatus == "COMPLETED"
    record = mpps.get(uid)
    assert record.status == "COMPLETED" and record.end == "20250301102000"
    assert record.series[0].series_instance_uid == series_uid and record.series[0].sop_instance_uids == (sop_uid,)
    assert record.steps[0].accession_number == "ACC1"  # kept: the N-SET did not name the sequence
    assert worklist.get("ORD1")["status"] == "COMPLETED"


def test_final_state_may_no_longer_be_updated(node, cart):
    uid = generate_uid()
    assert cart.send_n_create(n_create_attrs(), MPPS, uid)[0].Status == 0x0000
    assert cart.send_n_set(final_mods("DISCONTINUED", generate_uid(), generate_uid()), MPPS, uid)[0].Status == 0
    # PS3.4 F.7.2.2.2 / Table F.7.2-2: 0110H "Performed Procedure Step Object may no longer be updated", A710H.
    status, attrs = cart.send_n_set(final_mods("COMPLETED", generate_uid(), generate_uid()), MPPS, uid)
    assert status.Status == 0x0110
    assert status.ErrorID == 0xA710
    assert attrs is None
    assert MppsService(node.ingest.catalog).get(uid).status == "DISCONTINUED"


def test_refusals(node, cart):
    uid = generate_uid()
    # N-CREATE must be IN PROGRESS (F.7.2.1.2): invalid attribute value.
    assert cart.send_n_create(n_create_attrs(status="COMPLETED"), MPPS, uid)[0].Status == 0x0106
    assert cart.send_n_create(n_create_attrs(), MPPS, uid)[0].Status == 0x0000
    assert cart.send_n_create(n_create_attrs(), MPPS, uid)[0].Status == 0x0111  # duplicate SOP instance
    bad = Dataset()
    bad.PerformedProcedureStepStatus = "FINISHED"
    assert cart.send_n_set(bad, MPPS, uid)[0].Status == 0x0106
    assert cart.send_n_set(final_mods("COMPLETED", generate_uid(), generate_uid()), MPPS,
                           generate_uid())[0].Status == 0x0112  # no such SOP instance


def test_n_create_without_uid_gets_one_assigned(node, cart):
    # PS3.7 10.1.5.1.4: the SCP assigns the UID and returns it in the response's command set (which pynetdicom's
    # SCU does not hand back), so read it from the node's table.
    status, _attrs = cart.send_n_create(n_create_attrs(), MPPS, None)
    assert status.Status == 0x0000
    M = node.ingest.catalog.models.MppsInstance  # noqa: N806
    [uid] = [r.sop_instance_uid for r in M.select()]
    assert uid.startswith("1.2.") and MppsService(node.ingest.catalog).get(uid).status == "IN PROGRESS"
