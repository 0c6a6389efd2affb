"""Storage Commitment Push Model, SCP side (PS3.4 Annex J; SOP Class 1.2.840.10008.1.20.1): the use case.

A cart sends an N-ACTION *Request Storage Commitment* (Action Type ID 1, PS3.4 J.3.2) naming a Transaction UID and
the instances it stored (Referenced SOP Sequence). The node records the transaction and answers the N-ACTION at
once; later it verifies every referenced instance and reports the outcome with an N-EVENT-REPORT (PS3.4 J.3.3):
Event Type ID 1 when all are committed, 2 when failures exist. The network side
(:mod:`dicom_ecg_node.net.commitment`) sends the report; this module owns the rules and the persistent queue.

Verification (what "committed" means here)
    An instance is committed when the catalog knows it, its SOP Class UID is the one the requester names, its
    archived file is present and its size and SHA-256 are those recorded at ingest. Failure Reasons (PS3.3 C.14.1.1,
    as PS3.4 J.3.3.1 uses them): not in the catalog → ``0x0112`` *No such object instance*; SOP class
    differs → ``0x0119`` *Class / Instance conflict*; file missing, unreadable or not the stored bytes → ``0x0110``
    *Processing failure* (the node knows the object but failed to keep it: re-sending the same bytes would be taken
    as a duplicate, so "no such object" would mislead).
Persistent queue
    Transactions and their items live in the catalog (schema version 3). A row is ``pending`` until the requester
    answers the N-EVENT-REPORT with Success (``reported``) or :attr:`RetryPolicy.max_attempts` attempts failed
    (``failed-to-report``). Failed attempts back off exponentially (``next_attempt_at``). A node restart
    loses nothing: on start :meth:`CommitmentService.resume` makes every pending row due at once.
Several processes
    With worker processes each has its own sender; a short *lease* (``lease_owner``/``lease_until``) taken with a
    conditional UPDATE lets one process at a time work on a row. The process that received the N-ACTION holds the
    lease from the start, so it (the one holding the requesting association) sends the report.
Duplicate Transaction UIDs
    PS3.4 J.3.3 retires a Transaction UID once reported, so a second N-ACTION with the same UID from the same AE is
    taken as a retry of the same request: with the same references (in any order) it is accepted and answered with
    the *stored* result again (never re-verified, so the answer cannot change); with other references it is refused
    (:class:`CommitmentRequestError`, reason ``duplicate-transaction``). Transactions are keyed by (requester AE
    title, Transaction UID): the same UID from another AE is another transaction.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import peewee as pw
from pydicom.dataset import Dataset

from dicom_ecg_node.catalog.registry import AERegistry, RegisteredAE, normalize_ae_title
from dicom_ecg_node.errors import (
    ArchiveError,
    CatalogError,
    CommitmentRequestError,
    ConfigError,
    DatasetError,
    NotFoundError,
)
from dicom_ecg_node.services.ingest import validate_uid

if TYPE_CHECKING:
    from dicom_ecg_node.archive import Archive
    from dicom_ecg_node.catalog import Catalog

log = logging.getLogger("dicom_ecg_node.commitment")

#: Storage Commitment Push Model SOP Class (PS3.4 J.3.1) and its well-known SOP Instance (PS3.6 Annex A).
STORAGE_COMMITMENT_PUSH_MODEL = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
#: Action Type ID of Request Storage Commitment (PS3.4 J.3.2.1, Table J.3-1).
REQUEST_STORAGE_COMMITMENT = 1
#: Event Type IDs of the report (PS3.4 J.3.3.1, Table J.3-2).
EVENT_SUCCESS = 1
EVENT_FAILURES_EXIST = 2
#: Failure Reasons (PS3.3 C.14.1.1).
PROCESSING_FAILURE = 0x0110
NO_SUCH_OBJECT_INSTANCE = 0x0112
CLASS_INSTANCE_CONFLICT = 0x0119

State = Literal["pending", "reported", "failed-to-report"]
Via = Literal["association", "new-association"]

_IN_CHUNK = 500  # UIDs per IN (...) list: far below SQLite's bound-parameter limit
_ERROR_MAX = 500





@dataclass(frozen=True, slots=True)
class Reference:
    """One Referenced SOP Sequence item: (Referenced SOP Class UID, Referenced SOP Instance UID)."""

    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True, slots=True)
class CommitmentRequest:
    """The Action Information of a Request Storage Commitment (PS3.4 J.3.2.1.1, Table J.3-1).

    Attributes
    ----------
    transaction_uid : str
        Transaction UID (0008,1195).
    references : tuple of Reference
        Referenced SOP Sequence (0008,1199), in the order sent.
    """

    transaction_uid: str
    references: tuple[Reference, ...]


def parse_action_information(ds: Dataset | None) -> CommitmentRequest:
    """Read the Transaction UID and the Referenced SOP Sequence of an N-ACTION request.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset or None
        The decoded Action Information.

    Returns
    -------
    CommitmentRequest

    Raises
    ------
    CommitmentRequestError
        Reason ``no-such-argument`` when the Transaction UID or the sequence is absent or empty,
        ``invalid-argument`` when a UID is invalid or the dataset cannot be decoded.
    """
    if ds is None:
        raise CommitmentRequestError("no Action Information", reason="no-such-argument")
    try:
        if not str(ds.get("TransactionUID", "") or "").strip("\0 "):
            raise CommitmentRequestError("TransactionUID (0008,1195) is required", reason="no-such-argument")
        transaction_uid = _uid(ds.TransactionUID, "TransactionUID")
        items = ds.get("ReferencedSOPSequence")
        if not items:
            raise CommitmentRequestError("ReferencedSOPSequence (0008,1199) is required and must not be empty",
                                         reason="no-such-argument")
        refs = tuple(Reference(_uid(item.get("ReferencedSOPClassUID"), "ReferencedSOPClassUID"),
                               _uid(item.get("ReferencedSOPInstanceUID"), "ReferencedSOPInstanceUID"))
                     for item in items)
    except CommitmentRequestError:
        raise
    except Exception as exc:  # pydicom decodes lazily: a malformed element raises on first access
        raise CommitmentRequestError(f"Action Information cannot be decoded: {exc}",
                                     reason="invalid-argument") from exc
    return CommitmentRequest(transaction_uid, refs)


def _uid(value: Any, keyword: str) -> str:
    try:
        return validate_uid(value, keyword)
    except DatasetError as exc:
        raise CommitmentRequestError(str(exc), reason="invalid-argument") from exc


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a report is retried: ``base_s × factor^(n-1)`` seconds after the n-th failed attempt, capped.

    Attributes
    ----------
    base_s : float
        Delay after the first failed attempt.
    factor : float
        Growth per attempt (exponential back-off).
    max_delay_s : float
        Upper bound of one delay.
    max_attempts : int
        After this many failed attempts the transaction is ``failed-to-report``.
    """

    base_s: float = 5.0
    factor: float = 2.0
    max_delay_s: float = 3600.0
    max_attempts: int = 20

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.factor < 1 or self.max_delay_s < self.base_s or self.max_attempts < 1:
            raise ConfigError("retry policy: base_s > 0, factor >= 1, max_delay_s >= base_s, max_attempts >= 1")

    def delay(self, attempts: int) -> float:
        """Seconds to wait after ``attempts`` failed attempts (``attempts >= 1``)."""
        return min(self.max_delay_s, self.base_s * self.factor ** max(0, attempts - 1))


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """What :meth:`CommitmentService.request` did.

    Attributes
    ----------
    transaction_id : int
        Row id of the transaction (the key the sender tracks the requesting association by).
    duplicate : bool
        The Transaction UID was already known from this AE with the same references.
    """

    transaction_id: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One referenced instance and its outcome (``failure_reason`` ``None``: committed)."""

    sop_class_uid: str
    sop_instance_uid: str
    failure_reason: int | None = None


@dataclass(frozen=True, slots=True)
class CommitmentReport:
    """The content of one N-EVENT-REPORT (PS3.4 J.3.3.1).

    Attributes
    ----------
    transaction_id : int
    transaction_uid : str
    requester_ae : str
    event_type : int
        1 (all committed) or 2 (failures exist).
    committed : tuple of ItemResult
        Referenced SOP Sequence of the report.
    failed : tuple of ItemResult
        Failed SOP Sequence, each with its Failure Reason.
    """

    transaction_id: int
    transaction_uid: str
    requester_ae: str
    event_type: int
    committed: tuple[ItemResult, ...]
    failed: tuple[ItemResult, ...]


@dataclass(frozen=True, slots=True)
class CommitmentSummary:
    """One transaction as ``ecg-node commitments`` lists it (times are aware UTC)."""

    requester_ae: str
    requester_address: str
    transaction_uid: str
    state: State
    references: int
    committed: int | None
    failed: int | None
    attempts: int
    received_at: datetime | None
    verified_at: datetime | None
    reported_at: datetime | None
    next_attempt_at: datetime | None
    reported_via: str | None
    last_error: str


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _aware(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):  # SQLite may hand back the stored text
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _chunks(values: list[str], size: int = _IN_CHUNK) -> Iterable[list[str]]:
    for i in range(0, len(values), size):
        yield values[i:i + size]


class CommitmentService:
    """Record commitment requests, verify their instances and keep the queue of reports to send.

    Parameters
    ----------
    catalog : Catalog
        An open catalog at schema version 3 or later.
    archive : Archive
        The archive the catalog's paths are relative to.
    retry : RetryPolicy, optional
        Back-off of failed reports.
    lease_s : float
        How long a process keeps a transaction to itself while it verifies and reports it.

    Notes
    -----
    Every method is safe to call from any thread (each checks a pooled connection out for its own work).
    """

    def __init__(self, catalog: Catalog, archive: Archive, *, retry: RetryPolicy | None = None,
                 lease_s: float = 120.0) -> None:
        self.catalog = catalog
        self.archive = archive
        self.retry = retry or RetryPolicy()
        self.lease_s = lease_s
        self.registry = AERegistry(catalog)
        # Identifies this process's (this service's) leases; unique per start, so a restarted node never
        # mistakes a dead process's lease for its own.
        self.owner = f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(4)}"

    # -- the N-ACTION ---------------------------------------------------------------------------------------------

    def request(self, req: CommitmentRequest, *, requester_ae: str, requester_address: str = "") -> RequestOutcome:
        """Record a Request Storage Commitment; verification and the report happen later (PS3.4 J.3.3).

        Parameters
        ----------
        req : CommitmentRequest
            Transaction UID and references.
        requester_ae : str
            Calling AE title of the requesting association (the report's destination is looked up by it).
        requester_address : str
            ``host:port`` the request came from (informational: the registry's address is used to report).

        Returns
        -------
        RequestOutcome

        Raises
        ------
        CommitmentRequestError
            The Transaction UID is known from this AE with other references (``duplicate-transaction``).
        CatalogError
            The catalog failed.
        """
        ae = requester_ae.strip(" ")
        last: CatalogError | None = None
        for _ in range(3):  # a concurrent first request of the same UID loses on the unique index: read it back
            try:
                return self._request(req, ae, requester_address)
            except CatalogError as exc:
                if not isinstance(exc.__cause__, pw.IntegrityError):
                    raise
                last = exc
        raise CatalogError(f"transaction {req.transaction_uid}: could not be recorded") from last

    def _request(self, req: CommitmentRequest, ae: str, address: str) -> RequestOutcome:
        m = self.catalog.models
        C, Item = m.StorageCommitment, m.StorageCommitmentItem  # noqa: N806
        now = _now()
        lease = now + timedelta(seconds=self.lease_s)
        with self.catalog._write():
            row = C.get_or_none((C.requester_ae == ae) & (C.transaction_uid == req.transaction_uid))
            if row is not None:
                stored = Counter(Reference(c, i) for c, i in Item.select(Item.sop_class_uid, Item.sop_instance_uid)
                                 .where(Item.commitment == row.id).tuples())
                if stored != Counter(req.references):
                    raise CommitmentRequestError(
                        f"Transaction UID already used with other references: {req.transaction_uid}",
                        reason="duplicate-transaction")
                # The same request again: report the stored result again (not re-verified), as soon as possible.
                C.update(state="pending", attempts=0, next_attempt_at=now, last_error="", lease_owner=self.owner,
                         lease_until=lease).where(C.id == row.id).execute()
                return RequestOutcome(int(row.id), True)
            tid = C.insert(transaction_uid=req.transaction_uid, requester_ae=ae, requester_address=address[:255],
                           state="pending", references=len(req.references), attempts=0, next_attempt_at=now,
                           received_at=now, last_error="", lease_owner=self.owner, lease_until=lease).execute()
            rows = [{"commitment": tid, "position": n, "sop_class_uid": r.sop_class_uid,
                     "sop_instance_uid": r.sop_instance_uid} for n, r in enumerate(req.references)]
            for i in range(0, len(rows), _IN_CHUNK):
                Item.insert_many(rows[i:i + _IN_CHUNK]).execute()
        return RequestOutcome(int(tid), False)

    # -- the queue ------------------------------------------------------------------------------------------------

    def _claimable(self, now: datetime) -> Any:
        C = self.catalog.models.StorageCommitment  # noqa: N806
        free = C.lease_until.is_null() | (C.lease_until < now) | (C.lease_owner == self.owner)
        return (C.state == "pending") & free

    def resume(self) -> int:
        """Make every pending transaction not held by another live process due now (called when a node starts).

        Returns
        -------
        int
            Number of pending transactions resumed.
        """
        C = self.catalog.models.StorageCommitment  # noqa: N806
        now = _now()
        with self.catalog._write():
            return int(C.update(next_attempt_at=now).where(self._claimable(now)).execute())

    def claim_due(self, limit: int = 16) -> list[int]:
        """Lease up to ``limit`` pending transactions that are due; returns their ids (oldest due first)."""
        C = self.catalog.models.StorageCommitment  # noqa: N806
        now = _now()
        with self.catalog._connection():
            candidates = [r[0] for r in C.select(C.id).where(self._claimable(now) & (C.next_attempt_at <= now))
                          .order_by(C.next_attempt_at, C.id).limit(limit).tuples()]
        claimed = []
        for tid in candidates:
            with self.catalog._write():  # conditional UPDATE: exactly one process wins a row
                won = C.update(lease_owner=self.owner, lease_until=now + timedelta(seconds=self.lease_s)).where(
                    (C.id == tid) & self._claimable(now)).execute()
            if won:
                claimed.append(tid)
        return claimed

    def seconds_to_next_due(self) -> float | None:
        """Seconds until the earliest pending transaction this process could claim is due (``None``: none)."""
        C = self.catalog.models.StorageCommitment  # noqa: N806
        now = _now()
        with self.catalog._connection():
            first = C.select(pw.fn.MIN(C.next_attempt_at)).where(self._claimable(now)).scalar()
        when = _aware(first)
        if when is None:
            return None
        return max(0.0, (when - now.replace(tzinfo=UTC)).total_seconds())

    def release_all(self) -> int:
        """Give up this process's leases (when the node stops), so that a restarted node takes over at once."""
        C = self.catalog.models.StorageCommitment  # noqa: N806
        with self.catalog._write():
            return int(C.update(lease_owner=None, lease_until=None).where(C.lease_owner == self.owner).execute())

    # -- verification ---------------------------------------------------------------------------------------------

    def verify(self, transaction_id: int) -> None:
        """Verify the instances of a transaction once (a verified transaction keeps its result).

        Raises
        ------
        NotFoundError
            No such transaction.
        CatalogError
            The catalog failed (nothing recorded: the next attempt verifies again).
        """
        m = self.catalog.models
        C, Item, I = m.StorageCommitment, m.StorageCommitmentItem, m.Instance  # noqa: N806, E741
        with self.catalog._connection():
            row = C.get_or_none(C.id == transaction_id)
            if row is None:
                raise NotFoundError(f"commitment transaction {transaction_id} is unknown")
            if row.verified_at is not None:
                return
            items = list(Item.select(Item.id, Item.sop_class_uid, Item.sop_instance_uid)
                         .where(Item.commitment == transaction_id).order_by(Item.position).tuples())
            known: dict[str, tuple[str, str, int, str]] = {}
            for chunk in _chunks(sorted({uid for _, _, uid in items})):
                for uid, cls, path, size, sha in (I.select(I.sop_instance_uid, I.sop_class_uid, I.path, I.size,
                                                           I.sha256).where(I.sop_instance_uid.in_(chunk)).tuples()):
                    known[uid] = (cls, path, int(size), sha)
        # Hash outside any transaction: files can be large, the catalog must stay free for C-STORE.
        file_ok: dict[str, bool] = {}
        reasons: dict[int, int] = {}
        for item_id, cls, uid in items:
            reason = self._check(cls, uid, known.get(uid), file_ok)
            if reason is not None:
                reasons[item_id] = reason
        with self.catalog._write():
            for reason in sorted(set(reasons.values())):
                ids = [i for i, r in reasons.items() if r == reason]
                for chunk in range(0, len(ids), _IN_CHUNK):
                    Item.update(failure_reason=reason).where(Item.id.in_(ids[chunk:chunk + _IN_CHUNK])).execute()
            C.update(verified_at=_now(), committed=len(items) - len(reasons), failed_count=len(reasons)).where(
                C.id == transaction_id).execute()
        log.info("commitment %s from %r: %d committed, %d failed", row.transaction_uid, row.requester_ae,
                 len(items) - len(reasons), len(reasons))

    def _check(self, sop_class_uid: str, uid: str, entry: tuple[str, str, int, str] | None,
               file_ok: dict[str, bool]) -> int | None:
        """The Failure Reason of one reference, or ``None`` when it is committed (see the module notes)."""
        if entry is None:
            return NO_SUCH_OBJECT_INSTANCE
        stored_class, path, size, sha = entry
        if stored_class != sop_class_uid:
            return CLASS_INSTANCE_CONFLICT
        if uid not in file_ok:
            try:
                file_ok[uid] = self.archive.checksum(path) == (size, sha)
            except ArchiveError as exc:
                log.warning("commitment: %s: %s", uid, exc)
                file_ok[uid] = False
            if not file_ok[uid]:
                log.warning("commitment: %s: archived file missing or not the stored bytes", uid)
        return None if file_ok[uid] else PROCESSING_FAILURE

    def report(self, transaction_id: int) -> CommitmentReport:
        """The N-EVENT-REPORT content of a verified transaction, in the order of the request.

        Raises
        ------
        NotFoundError
            No such transaction, or not verified yet.
        """
        m = self.catalog.models
        C, Item = m.StorageCommitment, m.StorageCommitmentItem  # noqa: N806
        with self.catalog._connection():
            row = C.get_or_none(C.id == transaction_id)
            if row is None or row.verified_at is None:
                raise NotFoundError(f"commitment transaction {transaction_id} is unknown or not verified")
            items = [ItemResult(c, u, r) for c, u, r in Item.select(
                Item.sop_class_uid, Item.sop_instance_uid, Item.failure_reason).where(
                Item.commitment == transaction_id).order_by(Item.position).tuples()]
        failed = tuple(i for i in items if i.failure_reason is not None)
        return CommitmentReport(int(row.id), row.transaction_uid, row.requester_ae,
                                EVENT_FAILURES_EXIST if failed else EVENT_SUCCESS,
                                tuple(i for i in items if i.failure_reason is None), failed)

    # -- outcomes of a delivery attempt ---------------------------------------------------------------------------

    def destination(self, requester_ae: str) -> RegisteredAE:
        """The registered address of the requester (where a report goes on a new association).

        Raises
        ------
        UnknownAEError
            The requester's AE title is not in the registry.
        """
        return self.registry.get(normalize_ae_title(requester_ae))

    def mark_reported(self, transaction_id: int, via: Via) -> None:
        """The requester answered the N-EVENT-REPORT with Success."""
        C = self.catalog.models.StorageCommitment  # noqa: N806
        with self.catalog._write():
            C.update(state="reported", reported_at=_now(), reported_via=via, attempts=C.attempts + 1,
                     last_error="", lease_owner=None, lease_until=None).where(C.id == transaction_id).execute()

    def mark_attempt_failed(self, transaction_id: int, error: str) -> State:
        """Count a failed delivery attempt and schedule the next one (or give up); returns the new state."""
        C = self.catalog.models.StorageCommitment  # noqa: N806
        with self.catalog._write():
            row = C.get_or_none(C.id == transaction_id)
            if row is None:
                return "failed-to-report"
            attempts = int(row.attempts) + 1
            state: State = "failed-to-report" if attempts >= self.retry.max_attempts else "pending"
            C.update(state=state, attempts=attempts, last_error=error[:_ERROR_MAX],
                     next_attempt_at=_now() + timedelta(seconds=self.retry.delay(attempts)),
                     lease_owner=None, lease_until=None).where(C.id == transaction_id).execute()
        return state

    # -- listing --------------------------------------------------------------------------------------------------

    def list(self, requester_ae: str | None = None) -> list[CommitmentSummary]:
        """Transactions (optionally of one requester AE), by requester then newest first (one query)."""
        C = self.catalog.models.StorageCommitment  # noqa: N806
        query = C.select().order_by(C.requester_ae, C.received_at.desc(), C.id.desc())
        if requester_ae is not None:
            query = query.where(C.requester_ae == requester_ae.strip(" "))
        with self.catalog._connection():
            rows = list(query.dicts())
        return [CommitmentSummary(
            r["requester_ae"], r["requester_address"], r["transaction_uid"], r["state"], int(r["references"]),
            r["committed"], r["failed_count"], int(r["attempts"]), _aware(r["received_at"]),
            _aware(r["verified_at"]), _aware(r["reported_at"]),
            _aware(r["next_attempt_at"]) if r["state"] == "pending" else None, r["reported_via"],
            r["last_error"] or "") for r in rows]


__all__ = [
    "CLASS_INSTANCE_CONFLICT",
    "EVENT_FAILURES_EXIST",
    "EVENT_SUCCESS",
    "NO_SUCH_OBJECT_INSTANCE",
    "PROCESSING_FAILURE",
    "REQUEST_STORAGE_COMMITMENT",
    "STORAGE_COMMITMENT_INSTANCE",
    "STORAGE_COMMITMENT_PUSH_MODEL",
    "CommitmentReport",
    "CommitmentRequest",
    "CommitmentRequestError",
    "CommitmentService",
    "CommitmentSummary",
    "ItemResult",
    "Reference",
    "RequestOutcome",
    "RetryPolicy",
    "parse_action_information",
]
