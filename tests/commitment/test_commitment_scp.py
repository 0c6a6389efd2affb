"""Storage Commitment Push Model SCP over real associations, pynetdicom as the requesting cart (PS3.4 J.3)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from commitsupport import (
    ECG12,
    GENERAL_ECG,
    SC_CLASS,
    connect,
    failures_of,
    poll,
    refs_of,
    store_ecgs,
)
from pydicom.uid import generate_uid
from pynetdicom import AE

from dicom_ecg_node.services.commitment import RetryPolicy


def summary(node, transaction_uid: str):
    rows = [s for s in node.node.commitment.list() if s.transaction_uid == transaction_uid]
    return rows[0] if rows else None


def reported(node, transaction_uid: str):
    return poll(lambda: (s := summary(node, transaction_uid)) is not None and s.state == "reported" and s,
                what=f"transaction {transaction_uid} reported")


def test_report_on_the_requesting_association(commit_node_factory):
    node = commit_node_factory()
    refs = store_ecgs(node, 3)
    cart = connect(node)
    try:
        tx = generate_uid()
        assert cart.request(tx, refs).Status == 0x0000
        event_type, info = cart.wait_report()
        assert cart.assoc.is_established
    finally:
        cart.release()
    assert event_type == 1
    assert info.TransactionUID == tx
    assert refs_of(info) == refs
    assert "FailedSOPSequence" not in info
    assert info.RetrieveAETitle == node.aet
    s = reported(node, tx)
    assert (s.requester_ae, s.committed, s.failed, s.reported_via, s.attempts) == ("CART1", 3, 0, "association", 1)


def test_report_on_a_new_association_with_role_selection(commit_node_factory, report_scp):
    node = commit_node_factory()
    scp = report_scp("CART1")
    node.node.retrieve.registry.add("CART1", "127.0.0.1", scp.port, permissions=("echo", "store", "commit"))
    refs = store_ecgs(node, 2)
    cart = connect(node, listen=False)
    tx = generate_uid()
    assert cart.request(tx, refs).Status == 0x0000
    cart.release()  # right after the N-ACTION response: the report must come on a new association
    assert scp.arrived.wait(20)
    [(event_type, info, roles)] = scp.reports
    assert event_type == 1 and info.TransactionUID == tx and refs_of(info) == refs
    # Acceptor's view of the negotiated roles: it is the SCU, the node (requestor) the SCP (PS3.7 D.3.3.4).
    assert roles == (True, False)
    assert reported(node, tx).reported_via == "new-association"


def test_missing_corrupted_and_mismatched_instances_fail_with_their_reasons(commit_node_factory):
    node = commit_node_factory()
    good, corrupt, other_class = store_ecgs(node, 3)
    path = node.ingest.archive.resolve(node.ingest.catalog.find_instance_file(corrupt[1]).path)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # one flipped byte in the Waveform Data: same size, other SHA-256
    path.write_bytes(bytes(data))
    missing = (ECG12, generate_uid())
    refs = [good, corrupt, (GENERAL_ECG, other_class[1]), missing]
    cart = connect(node)
    try:
        tx = generate_uid()
        assert cart.request(tx, refs).Status == 0x0000
        event_type, info = cart.wait_report()
    finally:
        cart.release()
    assert event_type == 2
    assert refs_of(info) == [good]
    assert failures_of(info) == {corrupt[1]: 0x0110, other_class[1]: 0x0119, missing[1]: 0x0112}
    assert refs_of(info, "FailedSOPSequence") == [corrupt, (GENERAL_ECG, other_class[1]), missing]
    s = reported(node, tx)
    assert (s.committed, s.failed) == (1, 3)


def test_all_failed_report_has_no_referenced_sop_sequence(commit_node_factory):
    node = commit_node_factory()
    cart = connect(node)
    try:
        cart.request(generate_uid(), [(ECG12, generate_uid())])
        event_type, info = cart.wait_report()
    finally:
        cart.release()
    assert event_type == 2 and "ReferencedSOPSequence" not in info and len(info.FailedSOPSequence) == 1


def test_duplicate_transaction_uid_is_answered_with_the_stored_result(commit_node_factory):
    node = commit_node_factory()
    refs = store_ecgs(node, 2)
    tx = generate_uid()
    cart = connect(node)
    try:
        assert cart.request(tx, refs).Status == 0x0000
        first = cart.wait_report(1)
        # The instance is damaged after the first report: a re-verification would now fail it; the stored
        # answer does not change (PS3.4 J.3.3: a reported Transaction UID is not reused, so this is a retry).
        node.ingest.archive.resolve(node.ingest.catalog.find_instance_file(refs[0][1]).path).write_bytes(b"x")
        assert cart.request(tx, list(reversed(refs))).Status == 0x0000  # same references, any order
        second = cart.wait_report(2)
        other = cart.request(tx, refs[:1])  # same UID, other references: refused
    finally:
        cart.release()
    assert first[0] == second[0] == 1
    assert refs_of(first[1]) == refs_of(second[1]) == refs
    assert other.Status == 0x0115
    assert "other references" in other.ErrorComment
    assert len([s for s in node.node.commitment.list() if s.transaction_uid == tx]) == 1


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_invalid_requests_are_refused(commit_node_factory):
    node = commit_node_factory()
    cart = connect(node)
    try:
        assert cart.request(generate_uid(), [(ECG12, generate_uid())], action_type=2).Status == 0x0123
        assert cart.request(generate_uid(), [(ECG12, generate_uid())], instance="1.2.3").Status == 0x0112
        assert cart.request(generate_uid(), []).Status == 0x0114
        assert cart.request("1.02.3", [(ECG12, generate_uid())]).Status == 0x0115
        assert cart.assoc.is_established
    finally:
        cart.release()
    assert node.node.commitment.list() == []


def test_restart_with_a_report_pending(commit_node_factory, report_scp):
    first = commit_node_factory()
    scp = report_scp("CART1", start=False)  # the requester's SCP is down
    first.node.retrieve.registry.add("CART1", "127.0.0.1", scp.port, permissions=("echo", "store", "commit"))
    refs = store_ecgs(first, 2)
    cart = connect(first, listen=False)
    tx = generate_uid()
    assert cart.request(tx, refs).Status == 0x0000
    cart.release()
    poll(lambda: (s := summary(first, tx)) is not None and s.attempts >= 1, what="a failed attempt")
    first.node.stop(grace_s=5)
    s = summary(first, tx)
    first.ingest.close()
    assert s is not None and s.state == "pending" and s.committed == 2

    second = commit_node_factory()  # same data directory: resumes the pending report on start
    scp.start()
    assert scp.arrived.wait(20)
    [(event_type, info, _)] = scp.reports
    assert event_type == 1 and refs_of(info) == refs
    s = reported(second, tx)
    assert s.reported_via == "new-association" and s.attempts >= 2


def test_unregistered_requester_stays_pending_and_is_retried(commit_node_factory, report_scp):
    node = commit_node_factory()
    refs = store_ecgs(node, 1)
    cart = connect(node, aet="NOBODY", listen=False)
    tx = generate_uid()
    cart.request(tx, refs)
    cart.release()
    s = poll(lambda: (s := summary(node, tx)) is not None and s.attempts >= 2 and s, what="retries")
    assert s.state == "pending" and "not registered" in s.last_error
    scp = report_scp("NOBODY")
    node.node.retrieve.registry.add("NOBODY", "127.0.0.1", scp.port, permissions=("echo", "store", "commit"))
    assert scp.arrived.wait(20)
    assert reported(node, tx).reported_via == "new-association"


def test_gives_up_after_max_attempts(commit_node_factory):
    node = commit_node_factory(retry=RetryPolicy(base_s=0.05, max_delay_s=0.05, max_attempts=3))
    cart = connect(node, aet="GHOST", listen=False)
    tx = generate_uid()
    cart.request(tx, [(ECG12, generate_uid())])
    cart.release()
    s = poll(lambda: (s := summary(node, tx)) is not None and s.state == "failed-to-report" and s, what="failed state")
    assert s.attempts == 3 and s.next_attempt_at is None


def test_many_reports_on_one_association_while_another_stores(commit_node_factory, tmp_path: Path):
    """The sender pauses the requesting association's reactor from its own thread: repeat it many times, with
    C-STOREs running on another association, and check nothing is lost, mixed up or blocked."""
    from dicom_ecg_node.waveform.synth import ecg_to_bytes, synthesize_ecg

    node = commit_node_factory()
    refs = store_ecgs(node, 2)
    files = []
    for i in range(15):
        f = tmp_path / f"s{i}.dcm"
        f.write_bytes(ecg_to_bytes(synthesize_ecg(seed=100 + i, sop_instance_uid=generate_uid())))
        files.append(f)
    statuses: list[int] = []

    def store_all() -> None:
        ae = AE(ae_title="CART2")
        ae.add_requested_context(ECG12)
        assoc = ae.associate(node.host, node.port, ae_title=node.aet)
        for f in files:
            statuses.append(int(assoc.send_c_store(f).Status))
        assoc.release()

    storer = threading.Thread(target=store_all)
    storer.start()
    cart = connect(node)
    try:
        txs = [generate_uid() for _ in range(12)]
        for n, tx in enumerate(txs, start=1):
            assert cart.request(tx, refs).Status == 0x0000
            event_type, info = cart.wait_report(n)
            assert (event_type, info.TransactionUID) == (1, tx)
        assert cart.assoc.is_established
    finally:
        cart.release()
        storer.join(60)
    assert statuses == [0] * len(files)
    assert all(s.reported_via == "association" for s in node.node.commitment.list() if s.transaction_uid in txs)
    assert SC_CLASS  # the class the cart proposed with default roles
