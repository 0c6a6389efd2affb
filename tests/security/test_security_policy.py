"""The access policy over real associations: who may connect (A-ASSOCIATE-RJ reasons) and what they may do."""

from __future__ import annotations

import io
import logging
import threading
from typing import Any

import pytest
from pydicom.dataset import Dataset
from securitysupport import associate, audit_events, rejection

from dicom_ecg_node.catalog.registry import AERegistry
from dicom_ecg_node.services.security import UserService
from dicom_ecg_node.waveform.synth import ecg_to_bytes, synthesize_ecg

STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
TWELVE_LEAD = "1.2.840.10008.5.1.4.1.1.9.1.1"


def register(node: Any, title: str, **kwargs: Any) -> None:
    AERegistry(node.ingest.catalog).add(title, kwargs.pop("host", "127.0.0.1"), kwargs.pop("port", 104), **kwargs)


def ecg(patient_id: str = "PAT-SECRET-42", name: str = "Secretson^Sally") -> Dataset:
    import pydicom

    return pydicom.dcmread(io.BytesIO(ecg_to_bytes(synthesize_ecg(patient_id=patient_id, patient_name=name,
                                                                  seed=3))))


def study_identifier(level: str = "STUDY", **keys: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for k, v in keys.items():
        setattr(ds, k, v)
    return ds


def test_registered_ae_is_accepted_and_audited(secure_node):
    node = secure_node()
    register(node, "CART1", permissions="echo,store")
    assoc = associate(node, "CART1")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    accepted = [e for e in audit_events(node) if e["event"] == "association" and e["outcome"] == "accepted"]
    assert accepted and accepted[0]["ae"] == "CART1"
    assert accepted[0]["detail"]["permissions"] == ["echo", "store"]


def test_unknown_ae_is_rejected_calling_ae_not_recognised_and_audited(secure_node):
    node = secure_node()
    assoc = associate(node, "STRANGER")
    assert assoc.is_rejected
    assert rejection(assoc) == (1, 1, 3)  # PS3.8 9.3.4: rejected-permanent, service-user, calling AE unknown
    refused = [e for e in audit_events(node) if e["event"] == "association" and e["outcome"] == "refused"]
    assert refused[0]["ae"] == "STRANGER" and refused[0]["reason"] == "unknown-ae"
    assert refused[0]["detail"]["rejection"] == [1, 1, 3]


def test_accept_unknown_admits_with_every_permission(secure_node, caplog):
    caplog.set_level(logging.WARNING, logger="dicom_ecg_node")
    node = secure_node(accept_unknown=True)
    assoc = associate(node, "STRANGER", contexts=[STUDY_FIND])
    assert assoc.is_established
    answers = list(assoc.send_c_find(study_identifier(StudyInstanceUID=""), STUDY_FIND))
    assert answers[-1][0].Status == 0x0000
    assoc.release()
    assert any("ACCEPTING UNKNOWN" in r.getMessage() for r in caplog.records)
    assert any("accept_unknown is on" in r.getMessage() for r in caplog.records)


def test_wrong_called_ae_title_is_rejected_reason_7(secure_node):
    node = secure_node()
    register(node, "CART1")
    assoc = associate(node, "CART1", called="NOTME")
    assert assoc.is_rejected and rejection(assoc) == (1, 1, 7)
    def called_ae(e):
        return e["event"] == "association" and e.get("reason") == "called-ae"

    assert any(called_ae(e) for e in audit_events(node, expect=called_ae))


def test_address_outside_the_registered_networks_is_refused(secure_node):
    node = secure_node()
    register(node, "FARCART", permissions="all", networks=["10.0.0.0/8"])
    register(node, "NEARCART", permissions="all", networks=["10.0.0.0/8", "127.0.0.0/8"])
    far = associate(node, "FARCART")
    assert far.is_rejected and rejection(far) == (1, 1, 3)
    near = associate(node, "NEARCART")
    assert near.is_established
    near.release()
    refused = [e for e in audit_events(node) if e.get("reason") == "address"]
    assert refused and refused[0]["ae"] == "FARCART"


def test_store_only_ae_is_refused_echo_find_get_and_move(secure_node):
    node = secure_node()
    register(node, "STOREONLY", permissions="store")
    register(node, "VIEWER", port=4242)
    assoc = associate(node, "STOREONLY", contexts=[VERIFICATION_UID, STUDY_FIND, STUDY_MOVE, STUDY_GET, TWELVE_LEAD])
    assert assoc.is_established
    try:
        assert assoc.send_c_store(ecg()).Status == 0x0000
        assert assoc.send_c_echo().Status == 0x0124  # PS3.7 C: Refused: Not authorized
        find = list(assoc.send_c_find(study_identifier(StudyInstanceUID=""), STUDY_FIND))
        assert [s.Status for s, _ in find] == [0x0124]
        get = list(assoc.send_c_get(study_identifier(StudyInstanceUID="1.2.3"), STUDY_GET))
        assert get[-1][0].Status == 0x0124
        move = list(assoc.send_c_move(study_identifier(StudyInstanceUID="1.2.3"), "VIEWER", STUDY_MOVE))
        assert move[-1][0].Status == 0xA801  # the C-MOVE refusal (see net/security.py)
    finally:
        assoc.release()
    refusals = {e["detail"]["operation"] for e in audit_events(node)
                if e["outcome"] == "refused" and e.get("reason") == "permission"}
    assert refusals == {"echo", "find", "get", "move"}


VERIFICATION_UID = "1.2.840.10008.1.1"


class _StoreSCP:
    """A pynetdicom storage SCP standing in for a viewer."""

    def __init__(self, aet: str) -> None:
        from pynetdicom import AE, StoragePresentationContexts, evt

        self.received: list[str] = []
        ae = AE(ae_title=aet)
        ae.supported_contexts = StoragePresentationContexts
        self.server = ae.start_server(("127.0.0.1", 0), block=False,
                                      evt_handlers=[(evt.EVT_C_STORE, self.handle)])
        self.port = self.server.server_address[1]

    def handle(self, event: Any) -> int:
        self.received.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000


@pytest.fixture
def viewer():
    scp = _StoreSCP("VIEWER")
    yield scp
    scp.server.shutdown()


def test_move_only_to_allowed_registered_destinations(secure_node, viewer):
    node = secure_node()
    study = "1.2.826.0.1.3680043.8.498.777"
    node.ingest.store(ecg_to_bytes(synthesize_ecg(patient_id="P-MOVE", study_instance_uid=study, seed=2)),
                      sender_ae="CART", sender_address="127.0.0.1")
    register(node, "VIEWER", port=viewer.port)
    register(node, "ELSEWHERE", port=viewer.port)
    register(node, "REVIEWER", permissions="move", move_destinations=["VIEWER"])
    assoc = associate(node, "REVIEWER", contexts=[STUDY_MOVE])
    assert assoc.is_established
    try:
        refused = list(assoc.send_c_move(study_identifier(StudyInstanceUID=study), "ELSEWHERE", STUDY_MOVE))
        assert refused[-1][0].Status == 0xA801
        unknown = list(assoc.send_c_move(study_identifier(StudyInstanceUID=study), "NOBODY", STUDY_MOVE))
        assert unknown[-1][0].Status == 0xA801
        moved = list(assoc.send_c_move(study_identifier(StudyInstanceUID=study), "VIEWER", STUDY_MOVE))
        assert moved[-1][0].Status == 0x0000
    finally:
        assoc.release()
    assert len(viewer.received) == 1
    events = audit_events(node)
    assert any(e["event"] == "retrieve" and e.get("reason") == "destination" for e in events)
    done = [e for e in events if e["event"] == "retrieve" and e["outcome"] == "success"]
    assert done[0]["ae"] == "REVIEWER" and done[0]["detail"]["destination"] == "VIEWER"
    assert done[0]["patient_ids"] == ["P-MOVE"] and done[0]["study_uids"] == [study]


def test_user_identity_good_bad_and_missing(secure_node):
    node = secure_node()
    UserService(node.ingest.catalog).add("alice", "correct horse")
    register(node, "ALICECART", permissions="echo", username="alice")
    good = associate(node, "ALICECART", user=("alice", "correct horse"))
    assert good.is_established
    good.release()
    bad = associate(node, "ALICECART", user=("alice", "wrong"))
    assert bad.is_rejected and rejection(bad) == (1, 2, 1)  # PS3.7 D.3.3.7: authorization failure
    missing = associate(node, "ALICECART")
    assert missing.is_rejected and rejection(missing) == (1, 2, 1)
    # A wrong identity is refused even where none is required.
    register(node, "OPENCART")
    wrong = associate(node, "OPENCART", user=("alice", "wrong"))
    assert wrong.is_rejected
    events = [e for e in audit_events(node) if e["event"] == "association"]
    # One audited refusal per request the node saw (the test client repeats one that pynetdicom misreported).
    refusals = bad.request_attempts + missing.request_attempts + wrong.request_attempts
    assert [e["outcome"] for e in events] == ["accepted"] + ["refused"] * refusals
    assert [e["ae"] for e in events[1:]] == ["ALICECART"] * (refusals - wrong.request_attempts) + \
        ["OPENCART"] * wrong.request_attempts
    assert events[0]["user"] == "alice"
    assert all("wrong" not in str(e) and "correct horse" not in str(e) for e in events)


def test_per_peer_association_limit(secure_node):
    node = secure_node(max_associations_per_peer=1)
    register(node, "CART1")
    first = associate(node, "CART1")
    assert first.is_established
    try:
        second = associate(node, "CART1")
        assert second.is_rejected and rejection(second) == (2, 3, 2)  # transient, local limit exceeded
    finally:
        first.release()
    assert any(e.get("reason") == "per-peer-limit" for e in audit_events(node))


def test_object_larger_than_the_limit_is_refused_and_logged(secure_node, caplog):
    caplog.set_level(logging.WARNING, logger="dicom_ecg_node")
    node = secure_node(max_object_size=4096)
    register(node, "CART1", permissions="store")
    assoc = associate(node, "CART1", contexts=[TWELVE_LEAD])
    status = assoc.send_c_store(ecg())
    assoc.release()
    assert status.Status == 0xA700 and "max_object_size" in status.ErrorComment
    assert any("max_object_size" in r.getMessage() for r in caplog.records)
    assert any(e.get("reason") == "limit" and e["event"] == "store" for e in audit_events(node))
    assert node.ingest.catalog.stats().instances == 0


def test_patient_data_is_in_the_audit_trail_never_in_the_info_log(secure_node, caplog):
    caplog.set_level(logging.DEBUG)
    node = secure_node()
    register(node, "CART1", permissions="store,find")
    assoc = associate(node, "CART1", contexts=[TWELVE_LEAD, STUDY_FIND])
    assert assoc.send_c_store(ecg()).Status == 0x0000
    ident = study_identifier(PatientID="PAT-SECRET-42", PatientName="", StudyInstanceUID="")
    answers = list(assoc.send_c_find(ident, STUDY_FIND))
    assoc.release()
    assert len(answers) == 2
    # The node's log as `ecg-node serve` configures it: its own loggers from INFO, pynetdicom's from WARNING
    # (pynetdicom's INFO lines print identifiers; this process also hosts the test's SCU).
    info = "\n".join(r.getMessage() for r in caplog.records
                     if (r.name.startswith("dicom_ecg_node") and r.levelno >= logging.INFO)
                     or r.levelno >= logging.WARNING)
    assert "PAT-SECRET-42" not in info and "Secretson" not in info
    events = audit_events(node)
    store = next(e for e in events if e["event"] == "store")
    assert store["patient_ids"] == ["PAT-SECRET-42"] and store["patient_names"] == ["Secretson^Sally"]
    query = next(e for e in events if e["event"] == "query")
    assert query["detail"]["answers"] == 1 and query["detail"]["keys"]["PatientID"] == "PAT-SECRET-42"
    assert query["patient_ids"] == ["PAT-SECRET-42"]


def test_grants_do_not_leak_between_concurrent_associations(secure_node):
    node = secure_node()
    register(node, "A1", permissions="echo")
    register(node, "A2", permissions="store")
    results: dict[str, int] = {}

    def run(title: str) -> None:
        assoc = associate(node, title)
        results[title] = assoc.send_c_echo().Status
        assoc.release()

    threads = [threading.Thread(target=run, args=(t,)) for t in ("A1", "A2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {"A1": 0x0000, "A2": 0x0124}
