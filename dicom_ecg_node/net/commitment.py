"""Storage Commitment Push Model on the wire: the thin N-ACTION handler and the N-EVENT-REPORT sender.

The rules and the persistent queue are in :mod:`dicom_ecg_node.services.commitment`; this module only speaks DIMSE.

Where the report goes (PS3.4 J.3.3)
    On the association that carried the N-ACTION while it is still established; otherwise (or when sending there
    fails) on a new association to the requester's address in the AE registry, proposing the Storage Commitment
    Push Model with an SCP/SCU Role Selection item in which the node (the association requestor) takes the SCP
    role and not the SCU role (PS3.7 D.3.3.4). The report is sent once the requester answers it with Success;
    otherwise the attempt is counted and retried with back-off from the catalog's queue.
Threads
    The N-ACTION handler runs on the association's reactor thread: it only records the transaction and returns
    Success, so the N-ACTION is answered at once. One :class:`CommitmentSender` thread per node process verifies
    and reports; it never runs on a reactor thread, so C-STORE handling is never blocked by it (it shares only
    the GIL and the catalog's short write transactions).
Sending on the requesting association from another thread
    pynetdicom lets an acceptor call ``Association.send_n_event_report`` from any thread while the association is
    established: the call pauses the association's reactor (``_reactor_checkpoint``/``_is_paused``), sends, waits
    for the response and resumes the reactor. A reactor busy in a handler is not paused until it returns, so the
    report can never overtake the N-ACTION response. pynetdicom's pause has one narrow gap (the reactor may be
    between leaving its checkpoint and clearing ``_is_paused`` when the sender looks), so :func:`_park_reactor`
    first waits until the reactor is seen to park, and always releases it. The node's own (event-driven)
    associations also carry a :class:`~dicom_ecg_node.net.reactorgate.ReactorGate` that closes the gap and wakes
    the reactor to park at once (net/eventloop.py). Known limitation of pynetdicom: while
    the report waits for its response, any other message the requester sends on that association is taken as
    the response (and the association aborted); requesters normally wait for the report, and a report that
    fails there is retried on a new association.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_role, evt
from pynetdicom.pdu_primitives import A_RELEASE

from dicom_ecg_node.errors import AccessDeniedError, EcgNodeError
from dicom_ecg_node.net.handlers import requestor_handlers
from dicom_ecg_node.net.status import PROCESSING_FAILURE, SUCCESS, error_comment, status_code
from dicom_ecg_node.services.commitment import (
    REQUEST_STORAGE_COMMITMENT,
    STORAGE_COMMITMENT_INSTANCE,
    STORAGE_COMMITMENT_PUSH_MODEL,
    CommitmentReport,
    CommitmentRequestError,
    CommitmentService,
    parse_action_information,
)

if TYPE_CHECKING:
    from pynetdicom.association import Association
    from pynetdicom.events import Event

    from dicom_ecg_node.net.security import AssociationGuard
    from dicom_ecg_node.services.audit import AuditLog

log = logging.getLogger("dicom_ecg_node.net")

#: N-ACTION statuses of a refused request (PS3.7 10.1.4.1.10 and Annex C).
NO_SUCH_SOP_INSTANCE = 0x0112
NO_SUCH_ACTION = 0x0123
_REFUSALS: dict[str, int] = {
    "no-such-argument": 0x0114,  # PS3.7 C.4.x No such argument
    "invalid-argument": 0x0115,  # Invalid argument value
    "duplicate-transaction": 0x0115,  # the Transaction UID is known with other references: its value is invalid
}
#: Transfer syntaxes proposed for the report's own association.
REPORT_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


def _refuse(status: int, comment: str) -> tuple[Dataset, None]:
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = error_comment(EcgNodeError(comment))
    return ds, None


def handle_n_action(event: Event, commitment: CommitmentService, sender: CommitmentSender,
                    guard: AssociationGuard | None = None) -> tuple[int | Dataset, Dataset | None]:
    """EVT_N_ACTION: Request Storage Commitment (PS3.4 J.3.2) → record → Success at once; the report comes later.

    Parameters
    ----------
    event : pynetdicom.events.Event
        The ``EVT_N_ACTION`` event.
    commitment : CommitmentService
        Records the transaction.
    sender : CommitmentSender
        Told which association the request came on, and woken.
    guard : AssociationGuard, optional
        Checks the caller's ``commit`` permission (refusal: 0x0124) and audits the request.

    Returns
    -------
    tuple
        ``(status, None)``: 0x0000, or a failure status dataset with an Error Comment.
    """
    requestor = event.assoc.requestor
    ae, addr = requestor.ae_title.strip(), f"{requestor.address}:{requestor.port}"
    request = event.request
    if str(event.context.abstract_syntax) != STORAGE_COMMITMENT_PUSH_MODEL:
        return _refuse(0x0118, "N-ACTION is supported for Storage Commitment only")  # No such SOP Class
    if event.action_type != REQUEST_STORAGE_COMMITMENT:
        return _refuse(NO_SUCH_ACTION, f"Action Type ID {event.action_type}: only 1 (PS3.4 J.3.2.1)")
    if str(request.RequestedSOPInstanceUID) != STORAGE_COMMITMENT_INSTANCE:
        return _refuse(NO_SUCH_SOP_INSTANCE, f"use the well-known instance {STORAGE_COMMITMENT_INSTANCE}")
    if guard is not None:
        try:
            guard.authorize(event, "commit")  # refusals are audited there
        except AccessDeniedError as exc:
            return _refuse(status_code(exc), str(exc))  # 0x0124 Not authorized, from the one status table
    try:
        outcome = commitment.request(parse_action_information(event.action_information), requester_ae=ae,
                                     requester_address=addr)
    except CommitmentRequestError as exc:
        log.warning("storage commitment request from %r refused: %s", ae, exc)
        return _refuse(_REFUSALS.get(exc.reason, PROCESSING_FAILURE), str(exc))
    except EcgNodeError as exc:
        log.error("storage commitment request from %r failed: %s", ae, exc)
        return _refuse(PROCESSING_FAILURE, str(exc))
    except Exception as exc:  # a bug must not be acknowledged as a recorded request
        log.exception("storage commitment request from %r failed unexpectedly", ae)
        ds = Dataset()
        ds.Status = PROCESSING_FAILURE
        ds.ErrorComment = error_comment(exc)
        return ds, None
    log.info("storage commitment request from %r (%s): transaction id %d%s", ae, addr, outcome.transaction_id,
             " (repeated Transaction UID: the stored result is reported again)" if outcome.duplicate else "")
    if guard is not None:
        guard.audit.record("commitment", outcome="requested", ae=ae, address=addr,
                           detail={"transaction_id": outcome.transaction_id, "duplicate": outcome.duplicate})
    sender.track(outcome.transaction_id, event.assoc)
    sender.wake()
    return SUCCESS, None


def event_information(report: CommitmentReport, retrieve_aet: str | None = None) -> Dataset:
    """The Event Information of the N-EVENT-REPORT (PS3.4 J.3.3.1, Table J.3-2).

    Transaction UID; Retrieve AE Title (where the committed instances can be retrieved: this node); Referenced SOP
    Sequence of the committed instances (absent when none, Event Type 2); Failed SOP Sequence with each Failure
    Reason (Event Type 2 only).
    """
    ds = Dataset()
    ds.TransactionUID = report.transaction_uid
    if retrieve_aet and report.committed:
        ds.RetrieveAETitle = retrieve_aet
    if report.committed:
        ds.ReferencedSOPSequence = [_item(r.sop_class_uid, r.sop_instance_uid) for r in report.committed]
    if report.failed:
        items = []
        for r in report.failed:
            item = _item(r.sop_class_uid, r.sop_instance_uid)
            item.FailureReason = r.failure_reason
            items.append(item)
        ds.FailedSOPSequence = items
    return ds


def _item(sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class_uid
    item.ReferencedSOPInstanceUID = sop_instance_uid
    return item


def _park_reactor(assoc: Association, timeout: float = 60.0, settle_s: float = 0.05) -> bool:
    """Pause the acceptor reactor of ``assoc`` and wait until it is parked (see the module notes).

    The reactor loop sleeps with ``_is_paused`` false and holds it true only from just before its checkpoint
    until just after it. So once the checkpoint is cleared, seeing it false and then true means it is blocked on
    the checkpoint; seeing it true throughout ``settle_s`` means it had reached the checkpoint before the
    clear (the other possibility, stalled for ``settle_s`` between leaving the checkpoint and clearing the flag,
    is what pynetdicom's own check would miss). The caller sets the checkpoint again in every case (``finally``).

    Returns
    -------
    bool
        ``False`` when the association ended (or the reactor was busy past ``timeout``).
    """
    checkpoint = getattr(assoc, "_reactor_checkpoint", None)
    if checkpoint is None or not hasattr(assoc, "_is_paused"):  # another pynetdicom: rely on its own pause
        return bool(assoc.is_established)
    checkpoint.clear()
    start = time.monotonic()
    seen_running = False
    while assoc.is_established:
        elapsed = time.monotonic() - start
        if not assoc._is_paused:
            seen_running = True
        elif seen_running or elapsed >= settle_s:
            # Parked. A requester that already asked to release would not answer the report (it waits for
            # the A-RELEASE-RP, which the parked reactor cannot send): report on a new association instead.
            return not _release_requested(assoc)
        if elapsed >= timeout:  # a handler still running on that association: report on a new one instead
            return False
        time.sleep(0.0005)
    return False


def _release_requested(assoc: Association) -> bool:
    """Whether an A-RELEASE-RQ from the peer waits for the reactor.

    Peeked, not consumed: the reactor must still answer it (``ACSE.is_release_requested`` would dequeue it).
    """
    try:
        primitive = assoc.dul.peek_next_pdu()
    except Exception:  # internals of another pynetdicom version: assume not
        return False
    return isinstance(primitive, A_RELEASE) and primitive.result is None


class CommitmentSender:
    """The node's background report sender: verifies pending transactions and delivers their reports.

    Parameters
    ----------
    service : CommitmentService
        The queue and the rules.
    ae_title : str
        The node's AE title (calling AE of report associations; Retrieve AE Title of the reports).
    max_pdu : int
        Maximum PDU the node receives on report associations.
    acse_timeout, dimse_timeout, network_timeout : float
        Timeouts of report associations (seconds).
    poll_s : float
        Longest sleep between two looks at the queue (rows other processes scheduled are seen within it).
    """

    def __init__(self, service: CommitmentService, *, ae_title: str, max_pdu: int = 0, acse_timeout: float = 30.0,
                 dimse_timeout: float = 60.0, network_timeout: float = 60.0, poll_s: float = 5.0) -> None:
        self.service = service
        self.ae_title = ae_title
        self.max_pdu = max_pdu
        self.acse_timeout = acse_timeout
        self.dimse_timeout = dimse_timeout
        self.network_timeout = network_timeout
        self.poll_s = poll_s
        #: Where commitment results are audited (PS3.15 A.5 spirit); set by the node when it has an audit log.
        self.audit: AuditLog | None = None
        self._live: dict[int, Association] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._msg_ids = itertools.count(1)

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Resume the pending transactions of the catalog and start the sender thread."""
        if self._thread is not None:
            return
        try:
            resumed = self.service.resume()
        except EcgNodeError as exc:  # the loop retries; a catalog hiccup must not stop the node from starting
            log.error("storage commitment: pending reports not resumed yet: %s", exc)
        else:
            if resumed:
                log.info("storage commitment: %d pending report(s) resumed", resumed)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ecg-node-commitment", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread (after the report in progress) and give up this process's leases."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        self._wake.set()
        thread.join(timeout)
        if thread.is_alive():
            log.warning("storage commitment sender still busy after %.0f s; leaving it", timeout)
            return
        with contextlib.suppress(EcgNodeError):
            self.service.release_all()
        with self._lock:
            self._live.clear()

    def track(self, transaction_id: int, assoc: Association) -> None:
        """Remember the association a request came on (its report goes there while it is established)."""
        with self._lock:
            self._live[transaction_id] = assoc

    def wake(self) -> None:
        """Look at the queue now."""
        self._wake.set()

    # -- the loop --------------------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
                wait = self.service.seconds_to_next_due()
            except EcgNodeError as exc:
                log.error("storage commitment sender: %s", exc)
                wait = self.poll_s
            except Exception:  # a bug must not kill the thread and silently stop every report
                log.exception("storage commitment sender failed unexpectedly")
                wait = self.poll_s
            self._wake.wait(self.poll_s if wait is None else min(max(wait, 0.01), self.poll_s))
            self._wake.clear()

    def run_once(self) -> int:
        """Verify and report every due transaction this process can claim; returns how many were handled."""
        handled = 0
        while not self._stop.is_set():
            claimed = self.service.claim_due()
            if not claimed:
                return handled
            for tid in claimed:
                if self._stop.is_set():
                    break
                self._process(tid)
                handled += 1
        return handled

    def _audit_report(self, report: CommitmentReport, how: str) -> None:
        """Audit a delivered report: which instances the node took responsibility for, and which it did not."""
        if self.audit is None:
            return
        self.audit.record(
            "commitment", outcome="reported" if report.event_type == 1 else "reported-with-failures",
            ae=report.requester_ae, sop_instance_uids=[i.sop_instance_uid for i in report.committed],
            detail={"transaction_uid": report.transaction_uid, "delivered_on": how,
                    "failed": {i.sop_instance_uid: i.failure_reason for i in report.failed}})

    def _process(self, tid: int) -> None:
        try:
            self.service.verify(tid)
            report = self.service.report(tid)
        except EcgNodeError as exc:
            log.error("storage commitment transaction %d not verified: %s", tid, exc)
            self.service.mark_attempt_failed(tid, f"verification: {exc}")
            return
        with self._lock:
            assoc = self._live.pop(tid, None)
        errors = []
        if assoc is not None and assoc.is_established:
            ok, error = self._send_on(assoc, report)
            if ok:
                self.service.mark_reported(tid, "association")
                self._audit_report(report, "association")
                return
            errors.append(f"requesting association: {error}")
        ok, error = self._send_new(report)
        if ok:
            self.service.mark_reported(tid, "new-association")
            self._audit_report(report, "new-association")
            return
        errors.append(error)
        state = self.service.mark_attempt_failed(tid, "; ".join(errors))
        next_step = "giving up" if state == "failed-to-report" else "will retry"
        log.warning("storage commitment report %s to %r not delivered (%s); %s", report.transaction_uid,
                    report.requester_ae, "; ".join(errors), next_step)

    # -- sending ---------------------------------------------------------------------------------------------------

    def _msg_id(self) -> int:
        return next(self._msg_ids) % 65535 + 1

    def _send(self, assoc: Association, report: CommitmentReport) -> tuple[bool, str]:
        status, _ = assoc.send_n_event_report(event_information(report, self.ae_title), report.event_type,
                                              STORAGE_COMMITMENT_PUSH_MODEL, STORAGE_COMMITMENT_INSTANCE,
                                              msg_id=self._msg_id())
        if "Status" not in status:
            return False, "no N-EVENT-REPORT response (timeout or abort)"
        if int(status.Status) != SUCCESS:
            return False, f"N-EVENT-REPORT answered 0x{int(status.Status):04X}"
        log.info("storage commitment report %s (event type %d: %d committed, %d failed) delivered to %r",
                 report.transaction_uid, report.event_type, len(report.committed), len(report.failed),
                 report.requester_ae)
        return True, ""

    def _send_on(self, assoc: Association, report: CommitmentReport) -> tuple[bool, str]:
        """Send on the requesting association (pynetdicom's acceptor-side send, reactor parked first)."""
        try:
            if not _park_reactor(assoc):
                return False, "released before the report was ready"
            return self._send(assoc, report)
        except (RuntimeError, ValueError) as exc:  # released meanwhile / no usable context
            return False, str(exc)
        finally:
            checkpoint = getattr(assoc, "_reactor_checkpoint", None)
            if checkpoint is not None:
                checkpoint.set()  # never leave the reactor paused, whatever happened

    def _send_new(self, report: CommitmentReport) -> tuple[bool, str]:
        """Open an association to the requester's registered address, taking the SCP role (PS3.7 D.3.3.4)."""
        try:
            dest = self.service.destination(report.requester_ae)
        except EcgNodeError as exc:
            return False, str(exc)
        ae = AE(ae_title=self.ae_title)
        ae.acse_timeout = self.acse_timeout
        ae.dimse_timeout = self.dimse_timeout
        ae.network_timeout = self.network_timeout
        ae.maximum_pdu_size = self.max_pdu
        ae.add_requested_context(STORAGE_COMMITMENT_PUSH_MODEL, REPORT_SYNTAXES)
        # PS3.4 J.3.3 / PS3.7 D.3.3.4: the node requests the association but keeps its role as Storage
        # Commitment SCP (SCU-role 0, SCP-role 1).
        role = build_role(STORAGE_COMMITMENT_PUSH_MODEL, scu_role=False, scp_role=True)
        assoc = ae.associate(dest.host, dest.port, ae_title=report.requester_ae, ext_neg=[role],
                             evt_handlers=requestor_handlers())
        if not assoc.is_established:
            return False, f"association with {report.requester_ae}@{dest.host}:{dest.port} failed"
        try:
            cx = next((c for c in assoc.accepted_contexts if c.abstract_syntax == STORAGE_COMMITMENT_PUSH_MODEL),
                      None)
            if cx is None:
                return False, f"{report.requester_ae} did not accept the Storage Commitment Push Model"
            if not cx.as_scp:
                # The requester kept the default roles; it still asked for the report, so send it anyway.
                log.warning("%s did not accept the node as Storage Commitment SCP (role selection); reporting "
                            "anyway", report.requester_ae)
            return self._send(assoc, report)
        except (RuntimeError, ValueError) as exc:
            return False, str(exc)
        finally:
            if assoc.is_established:
                assoc.release()


def bind_commitment(commitment: CommitmentService, sender: CommitmentSender,
                    guard: AssociationGuard | None = None) -> list[tuple[Any, ...]]:
    """The EVT_N_ACTION handler bound to ``commitment``, ``sender`` and (optionally) the access ``guard``."""
    return [(evt.EVT_N_ACTION, handle_n_action, [commitment, sender, guard])]
