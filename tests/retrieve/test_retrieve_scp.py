"""C-MOVE and C-GET against the running node with a pynetdicom SCU: statuses, counts, failures, cancel, syntaxes."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)
from retrievesupport import T0, ecg_bytes, fill

from dicom_ecg_node.waveform.sopclass import STORAGE_SOP_CLASSES

ECG12 = "1.2.840.10008.5.1.4.1.1.9.1.1"


def ident(level: str, **keys: Any) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for k, v in keys.items():
        setattr(ds, k, v)
    return ds


def scu(node: Any, model: str, **kwargs: Any) -> Any:
    ae = AE(ae_title="VIEWSCU")
    ae.add_requested_context(model)
    assoc = ae.associate(node.host, node.port, ae_title=node.aet, **kwargs)
    assert assoc.is_established
    return assoc


def move(node: Any, identifier: Dataset, dest: str,
         model: str = PatientRootQueryRetrieveInformationModelMove) -> list[tuple[Dataset, Dataset | None]]:
    assoc = scu(node, model)
    try:
        return list(assoc.send_c_move(identifier, dest, model))
    finally:
        assoc.release()


def failed_list(identifier: Dataset) -> list[str]:
    value = identifier.FailedSOPInstanceUIDList
    return [value] if isinstance(value, str) else list(value)


def waveform(ds: Dataset) -> bytes:
    return bytes(ds.WaveformSequence[0].WaveformData)


def archived(node: Any, uid: str) -> Dataset:
    inst = node.ingest.catalog.get_instance(uid)
    return pydicom.dcmread(node.ingest.archive.resolve(inst.summary.path))


def test_move_patient_pending_counts_success_and_serial_order(node, storage_scp):
    dest = storage_scp("VIEWER")
    node.node.retrieve.registry.add("VIEWER", "127.0.0.1", dest.port)
    # Stored out of order: instance 0 is the latest, so insertion order differs from acquisition order.
    late = fill(node, 1, start=T0 + timedelta(days=30))
    early = fill(node, 3, start=T0)
    fill(node, 2, patient_id="OTHER")
    responses = move(node, ident("PATIENT", PatientID="P1"), "VIEWER")
    statuses = [(int(s.Status), s.NumberOfRemainingSuboperations if "NumberOfRemainingSuboperations" in s else None,
                 int(s.NumberOfCompletedSuboperations), int(s.NumberOfFailedSuboperations),
                 int(s.NumberOfWarningSuboperations)) for s, _ in responses]
    assert statuses == [(0xFF00, 3, 1, 0, 0), (0xFF00, 2, 2, 0, 0), (0xFF00, 1, 3, 0, 0), (0xFF00, 0, 4, 0, 0),
                        (0x0000, 0, 4, 0, 0)]
    assert [r[0] for r in dest.received] == early + late  # true chronological order, not insertion order
    for uid, ts, ds in dest.received:
        assert ts == ExplicitVRLittleEndian
        assert waveform(ds) == waveform(archived(node, uid))


def test_a_move_longer_than_the_network_timeout_does_not_end_the_association(node_factory, storage_scp):
    """The network timeout is the peer's silence, not the node's own work: the move association, quiet while the
    node sends to a slow destination for longer than the timeout, gets its final answer and releases normally."""
    node = node_factory(network_timeout=2.0)  # not shorter: a loaded test machine must not time out elsewhere
    dest = storage_scp()
    dest.delay_s = 0.5
    node.node.retrieve.registry.add("VIEWER", "127.0.0.1", dest.port)
    fill(node, 6)
    assoc = scu(node, PatientRootQueryRetrieveInformationModelMove)
    started = time.monotonic()
    final, _ = list(assoc.send_c_move(ident("PATIENT", PatientID="P1"), "VIEWER",
                                      PatientRootQueryRetrieveInformationModelMove))[-1]
    assert time.monotonic() - started > 2.5  # six stores at 0.5 s each: longer than the timeout
    assert (final.Status, final.NumberOfCompletedSuboperations) == (0x0000, 6)
    assoc.release()
    assert assoc.is_released and not assoc.is_aborted
    assert len(dest.received) == 6


def test_move_unknown_destination_is_a801(node):
    fill(node, 1)
    [(status, _)] = move(node, ident("PATIENT", PatientID="P1"), "NOBODY")
    assert status.Status == 0xA801


def test_move_no_match_is_success_with_zero_counts(node, storage_scp):
    dest = storage_scp()
    node.node.retrieve.registry.add("VIEWER", "127.0.0.1", dest.port)
    [(status, _)] = move(node, ident("PATIENT", PatientID="NOBODY"), "VIEWER")
    assert (status.Status, status.NumberOfCompletedSuboperations, status.NumberOfFailedSuboperations) == (0, 0, 0)


def test_move_refused_sub_operations_give_b000_with_failed_uid_list(node, storage_scp):
    dest = storage_scp()
    node.node.retrieve.registry.add("VIEWER", "127.0.0.1", dest.port)
    uids = fill(node, 4)
    dest.refuse = {uids[1], uids[2]}
    responses = move(node, ident("PATIENT", PatientID="P1"), "VIEWER")
    final, identifier = responses[-1]
    assert len(responses) == 5  # the failures did not end the retrieve
    assert (final.Status, final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (0xB000, 2, 2)
    assert failed_list(identifier) == [uids[1], uids[2]]
    assert [r[0] for r in dest.received] == [uids[0], uids[3]]


def test_move_all_refused_is_a_failure_with_the_list(node, storage_scp):
    dest = storage_scp()
    node.node.retrieve.registry.add("VIEWER", "127.0.0.1", dest.port)
    uids = fill(node, 2)
    dest.refuse = set(uids)
    final, identifier = move(node, ident("PATIENT", PatientID="P1"), "VIEWER")[-1]
    # PS3.4 Table C.4-2: A702 Refused: Out of resources - unable to perform sub-operations.
    assert (final.Status, final.NumberOfFailedSuboperations) == (0xA702, 2)
    assert sorted(failed_list(identifier)) == sorted(uids)


def test_move_missing_archive_file_fails_that_sub_operation_only(node, storage_scp):
    dest = storage_scp()
    node.node.retrieve.registry.add("VIEWER", "127.0.0.1", dest.port)
    uids = fill(node, 3)
    node.ingest.archive.resolve(node.ingest.catalog.get_instance(uids[1]).summary.path).write_bytes(b"corrupt")
    final, identifier = move(node, ident("PATIENT", PatientID="P1"), "VIEWER")[-1]
    assert (final.Status, final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (0xB000, 2, 1)
    assert failed_list(identifier) == [uids[1]]


def test_move_cancel_answers_fe00_with_counts(node, storage_scp):
    import threading

    dest = storage_scp()
    dest.gate = threading.Event()
    node.node.retrieve.registry.add("VIEWER", "127.0.0.1", dest.port)
    fill(node, 5)
    assoc = scu(node, PatientRootQueryRetrieveInformationModelMove)
    try:
        responses = assoc.send_c_move(ident("PATIENT", PatientID="P1"), "VIEWER",
                                      PatientRootQueryRetrieveInformationModelMove, msg_id=7)
        assert dest.first.wait(20)  # the first sub-operation is in flight, held by the destination
        cx = assoc._get_valid_context(PatientRootQueryRetrieveInformationModelMove, "", "scu")
        assoc.send_c_cancel(7, cx.context_id)
        [server_side] = [a for a in node.node._server.active_associations if a.requestor.ae_title == "VIEWSCU"]
        deadline = time.monotonic() + 20
        while 7 not in server_side.dimse.cancel_req and time.monotonic() < deadline:
            time.sleep(0.005)  # poll until the node has the C-CANCEL
        dest.gate.set()
        result = list(responses)
    finally:
        assoc.release()
    final, _ = result[-1]
    assert final.Status == 0xFE00
    assert (final.NumberOfRemainingSuboperations, final.NumberOfCompletedSuboperations,
            final.NumberOfFailedSuboperations) == (4, 1, 0)
    assert len(dest.received) == 1


def test_move_study_root_list_of_study_uids_and_image_level(node, storage_scp):
    dest = storage_scp()
    node.node.retrieve.registry.add("VIEWER", "127.0.0.1", dest.port)
    a = fill(node, 2, study_instance_uid="1.2.3.100")
    b = fill(node, 1, study_instance_uid="1.2.3.200", start=T0 - timedelta(days=5))
    fill(node, 1, study_instance_uid="1.2.3.300")
    final, _ = move(node, ident("STUDY", StudyInstanceUID=["1.2.3.100", "1.2.3.200"]), "VIEWER",
                    StudyRootQueryRetrieveInformationModelMove)[-1]
    assert (final.Status, final.NumberOfCompletedSuboperations) == (0, 3)
    assert [r[0] for r in dest.received] == b + a
    dest.received.clear()
    final, _ = move(node, ident("IMAGE", StudyInstanceUID="1.2.3.100", SeriesInstanceUID=archived(
        node, a[1]).SeriesInstanceUID, SOPInstanceUID=a[1]), "VIEWER", StudyRootQueryRetrieveInformationModelMove)[-1]
    assert (final.Status, [r[0] for r in dest.received]) == (0, [a[1]])


def test_move_invalid_identifier_is_refused_without_contacting_the_destination(node, storage_scp):
    dest = storage_scp()
    node.node.retrieve.registry.add("VIEWER", "127.0.0.1", dest.port)
    fill(node, 1)
    # A SOP Instance UID below the STUDY level is not allowed in a retrieve identifier (PS3.4 C.4.2.2.1).
    [(status, _)] = move(node, ident("STUDY", StudyInstanceUID="1.2.3", SOPInstanceUID="1.2.3.4"), "VIEWER",
                         StudyRootQueryRetrieveInformationModelMove)
    assert status.Status >> 12 == 0xC  # Failed: unable to process
    [(status, _)] = move(node, ident("PATIENT", PatientID="P1"), "VIEWER", StudyRootQueryRetrieveInformationModelMove)
    assert status.Status >> 12 == 0xC  # no PATIENT level in Study Root
    assert dest.received == []


@pytest.mark.parametrize("stored", ["deflated", "implicit"])
def test_move_converts_to_explicit_le_when_the_destination_accepts_nothing_else(node, storage_scp, stored):
    dest = storage_scp(syntaxes=[ExplicitVRLittleEndian])
    node.node.retrieve.registry.add("VIEWER", "127.0.0.1", dest.port)
    [uid] = fill(node, 1, transfer_syntax=stored)
    final, _ = move(node, ident("PATIENT", PatientID="P1"), "VIEWER")[-1]
    assert final.Status == 0
    [(got, ts, ds)] = dest.received
    src = archived(node, uid)
    assert src.file_meta.TransferSyntaxUID in (DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian)
    assert (got, ts) == (uid, ExplicitVRLittleEndian)
    assert waveform(ds) == waveform(src)
    assert ds.WaveformSequence[0]["WaveformData"].VR == "OW"


def test_move_sends_each_object_in_its_stored_syntax_when_accepted(node, storage_scp):
    dest = storage_scp()
    node.node.retrieve.registry.add("VIEWER", "127.0.0.1", dest.port)
    sent = {}
    for i, ts in enumerate(["explicit", "implicit", "deflated", "big"]):
        [uid] = fill(node, 1, transfer_syntax=ts, start=T0 + timedelta(hours=i))
        sent[uid] = archived(node, uid)
    final, _ = move(node, ident("PATIENT", PatientID="P1"), "VIEWER")[-1]
    assert final.Status == 0
    for uid, ts, ds in dest.received:
        assert ts == sent[uid].file_meta.TransferSyntaxUID
        assert waveform(ds) == waveform(sent[uid])


def test_move_big_endian_object_fails_when_destination_takes_little_endian_only(node, storage_scp):
    dest = storage_scp(syntaxes=[ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    node.node.retrieve.registry.add("VIEWER", "127.0.0.1", dest.port)
    [le] = fill(node, 1)
    [be] = fill(node, 1, transfer_syntax="big", start=T0 + timedelta(days=2))
    final, identifier = move(node, ident("PATIENT", PatientID="P1"), "VIEWER")[-1]
    assert (final.Status, failed_list(identifier)) == (0xB000, [be])
    assert [r[0] for r in dest.received] == [le]


def get_assoc(node: Any, model: str, syntaxes: list[str], on_store: Any) -> Any:
    ae = AE(ae_title="VIEWSCU")
    ae.add_requested_context(model)
    roles = []
    for uid in STORAGE_SOP_CLASSES[:120]:
        ae.add_requested_context(uid, syntaxes)
        roles.append(build_role(uid, scp_role=True))
    assoc = ae.associate(node.host, node.port, ae_title=node.aet, ext_neg=roles,
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    return assoc


def test_get_sends_on_the_same_association_with_role_selection(node):
    uids = fill(node, 3, transfer_syntax="implicit")
    received = []

    def on_store(event):
        received.append((str(event.request.AffectedSOPInstanceUID), str(event.context.transfer_syntax),
                         bytes(event.dataset.WaveformSequence[0].WaveformData)))
        return 0

    assoc = get_assoc(node, PatientRootQueryRetrieveInformationModelGet, [ExplicitVRLittleEndian], on_store)
    try:
        responses = list(assoc.send_c_get(ident("STUDY", PatientID="P1",
                                                StudyInstanceUID=archived(node, uids[0]).StudyInstanceUID),
                                          PatientRootQueryRetrieveInformationModelGet))
    finally:
        assoc.release()
    assert [(int(s.Status), int(s.NumberOfCompletedSuboperations)) for s, _ in responses] == [
        (0xFF00, 1), (0xFF00, 2), (0xFF00, 3), (0, 3)]
    assert [r[0] for r in received] == uids
    for uid, ts, data in received:
        assert ts == ExplicitVRLittleEndian  # converted from the stored implicit VR
        assert data == waveform(archived(node, uid))


def test_get_class_not_accepted_by_the_scu_fails_with_the_list(node):
    [uid] = fill(node, 1)
    assoc = get_assoc(node, StudyRootQueryRetrieveInformationModelGet, [ExplicitVRBigEndian], lambda e: 0)
    try:
        final, identifier = list(assoc.send_c_get(
            ident("STUDY", StudyInstanceUID=archived(node, uid).StudyInstanceUID),
            StudyRootQueryRetrieveInformationModelGet))[-1]
    finally:
        assoc.release()
    assert (final.Status, failed_list(identifier)) == (0xA702, [uid])


def test_storage_still_works_for_an_scu_without_role_selection(node):
    ae = AE(ae_title="CART")
    ae.add_requested_context(ECG12, ExplicitVRLittleEndian)
    assoc = ae.associate(node.host, node.port, ae_title=node.aet)
    try:
        ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(ecg_bytes(patient_id="PX")))
        assert assoc.send_c_store(ds).Status == 0
    finally:
        assoc.release()
