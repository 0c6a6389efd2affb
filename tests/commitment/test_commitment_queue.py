"""The commitment queue in the catalog (schema version 3), on SQLite and PostgreSQL: record, verify, lease, back-off."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from commitsupport import ECG12, GENERAL_ECG, store_ecgs
from helpers import make_config
from pydicom.uid import generate_uid

from dicom_ecg_node.services.commitment import (
    CommitmentRequest,
    CommitmentRequestError,
    CommitmentService,
    Reference,
    RetryPolicy,
)


class _Store:
    def __init__(self, ingest):
        self.ingest = ingest


@pytest.fixture
def ingest(tmp_path: Path, catalog_url: str) -> Iterator:
    from dicom_ecg_node.services.ingest import IngestService

    service = IngestService.open(make_config(tmp_path, db_url=catalog_url))
    yield service
    service.close()


def req(refs) -> CommitmentRequest:
    return CommitmentRequest(generate_uid(), tuple(Reference(c, u) for c, u in refs))


def test_request_verify_report_and_states(ingest) -> None:
    svc = CommitmentService(ingest.catalog, ingest.archive, retry=RetryPolicy(base_s=1, max_attempts=2))
    good, wrong = store_ecgs(_Store(ingest), 2)
    missing = (ECG12, generate_uid())
    out = svc.request(req([good, (GENERAL_ECG, wrong[1]), missing]), requester_ae="CART1 ",
                      requester_address="10.0.0.1:104")
    assert not out.duplicate
    assert svc.claim_due() == [out.transaction_id]
    svc.verify(out.transaction_id)
    report = svc.report(out.transaction_id)
    assert report.event_type == 2
    assert [r.sop_instance_uid for r in report.committed] == [good[1]]
    assert [(r.sop_instance_uid, r.failure_reason) for r in report.failed] == [(wrong[1], 0x0119),
                                                                               (missing[1], 0x0112)]
    assert svc.mark_attempt_failed(out.transaction_id, "refused") == "pending"
    [s] = svc.list("CART1")
    assert (s.requester_ae, s.state, s.references, s.committed, s.failed, s.attempts) == ("CART1", "pending", 3, 1,
                                                                                         2, 1)
    assert s.next_attempt_at is not None and s.last_error == "refused"
    assert svc.claim_due() == []  # backing off
    assert svc.mark_attempt_failed(out.transaction_id, "refused again") == "failed-to-report"
    assert svc.list()[0].state == "failed-to-report"


def test_duplicates_leases_and_resume(ingest) -> None:
    a = CommitmentService(ingest.catalog, ingest.archive)
    b = CommitmentService(ingest.catalog, ingest.archive)  # another worker process on the same catalog
    refs = store_ecgs(_Store(ingest), 2)
    request = req(refs)
    first = a.request(request, requester_ae="CART1")
    assert b.claim_due() == []  # a holds the lease of the request it received
    again = b.request(CommitmentRequest(request.transaction_uid, tuple(reversed(request.references))),
                      requester_ae="CART1")
    assert again.duplicate and again.transaction_id == first.transaction_id
    with pytest.raises(CommitmentRequestError) as info:
        a.request(CommitmentRequest(request.transaction_uid, request.references[:1]), requester_ae="CART1")
    assert info.value.reason == "duplicate-transaction"
    # The same Transaction UID from another AE is another transaction.
    assert a.request(request, requester_ae="CART2").transaction_id != first.transaction_id
    assert b.claim_due() == [first.transaction_id]
    b.release_all()
    assert a.resume() == 2
    a.verify(first.transaction_id)
    a.mark_reported(first.transaction_id, "association")
    rows = {s.requester_ae: s for s in a.list()}
    assert rows["CART1"].state == "reported" and rows["CART1"].reported_via == "association"
    assert rows["CART2"].state == "pending" and rows["CART2"].committed is None


def test_verification_is_not_repeated(ingest) -> None:
    svc = CommitmentService(ingest.catalog, ingest.archive)
    [ref] = store_ecgs(_Store(ingest), 1)
    out = svc.request(req([ref]), requester_ae="CART1")
    svc.verify(out.transaction_id)
    ingest.archive.resolve(ingest.catalog.find_instance_file(ref[1]).path).unlink()
    svc.verify(out.transaction_id)
    assert svc.report(out.transaction_id).event_type == 1
    fresh = svc.request(req([ref]), requester_ae="CART1")
    svc.verify(fresh.transaction_id)
    assert [r.failure_reason for r in svc.report(fresh.transaction_id).failed] == [0x0110]


def test_retry_policy_backs_off_exponentially() -> None:
    policy = RetryPolicy(base_s=5, factor=2, max_delay_s=60)
    assert [policy.delay(n) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


def test_cli_lists_transactions_per_device(ingest, tmp_path: Path, catalog_url: str) -> None:
    from dicom_ecg_node.cli import main

    svc = CommitmentService(ingest.catalog, ingest.archive)
    refs = store_ecgs(_Store(ingest), 1)
    r1 = svc.request(req(refs), requester_ae="CART1")
    svc.request(req(refs), requester_ae="CART2")
    svc.verify(r1.transaction_id)
    svc.mark_reported(r1.transaction_id, "new-association")
    runner = CliRunner()
    args = ["--data-dir", str(tmp_path / "data"), "--db-url", catalog_url]
    result = runner.invoke(main, ["commitments", "--json", *args])
    assert result.exit_code == 0, result.output
    import json

    rows = json.loads(result.output)
    assert [(r["requester_ae"], r["state"], r["committed"]) for r in rows] == [("CART1", "reported", 1),
                                                                               ("CART2", "pending", None)]
    result = runner.invoke(main, ["commitments", "--ae", "CART2", *args])
    assert result.exit_code == 0 and "CART2" in result.output and "CART1" not in result.output
    assert "REQUESTER_AE" in result.output
