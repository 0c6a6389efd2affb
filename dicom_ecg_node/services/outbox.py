"""The results outbox: a persistent queue of ORU^R01 messages to MLLP receivers, with retries and back-off.

When an ECG is stored, :func:`results_listener` (an :class:`~dicom_ecg_node.services.ingest.IngestService`
listener) puts one row per configured receiver in the catalog table ``outbox_message``, in whichever process
stored it. A single delivery loop (:class:`dicom_ecg_node.hl7.runtime.ResultsSender`, in one process only) takes
due rows, builds the message on the first attempt and stores it, so every retry sends the same bytes with the same
MSH-10 (the receiver can then recognise a re-delivery). Because the queue is a table, it survives restarts: a row
that was due while the node was down is sent at the next start.

Back-off
    After a failed attempt *n* (connection refused, timeout, no ACK, AE) the next one is due after
    ``min(base * 2**(n-1), cap)`` seconds (:func:`backoff_seconds`; 5 s, 10 s, 20 s... up to 10 minutes). An AR
    (the receiver rejects the message itself) is final: status ``rejected``, shown by ``ecg-node outbox``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import peewee as pw

from dicom_ecg_node.catalog import Catalog
from dicom_ecg_node.services.patients import write_transaction
from dicom_ecg_node.waveform.sopclass import is_waveform_class

#: Statuses of an outbox row.
PENDING, DELIVERED, REJECTED = "pending", "delivered", "rejected"
BACKOFF_BASE_S = 5.0
BACKOFF_CAP_S = 600.0


def backoff_seconds(attempts: int, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S) -> float:
    """Delay before the next attempt after ``attempts`` failed ones (exponential, capped)."""
    return min(base * 2 ** max(0, attempts - 1), cap)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _aware(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One queued result.

    Attributes
    ----------
    id : int
    sop_instance_uid : str
    receiver : str
        ``host:port``.
    status : {"pending", "delivered", "rejected"}
    attempts : int
    next_attempt_at, created_at, delivered_at : datetime or None
        Aware UTC.
    last_error : str
    control_id : str or None
        MSH-10 of the message, once built.
    message : str or None
        The message text, once built (``None`` in listings).
    """

    id: int
    sop_instance_uid: str
    receiver: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime | None
    delivered_at: datetime | None
    last_error: str
    control_id: str | None
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly fields (without the message text)."""
        return {"id": self.id, "sop_instance_uid": self.sop_instance_uid, "receiver": self.receiver,
                "status": self.status, "attempts": self.attempts,
                "next_attempt_at": self.next_attempt_at.isoformat() if self.next_attempt_at else None,
                "created_at": self.created_at.isoformat() if self.created_at else None,
                "delivered_at": self.delivered_at.isoformat() if self.delivered_at else None,
                "last_error": self.last_error, "control_id": self.control_id}


class Outbox:
    """The ``outbox_message`` table.

    Parameters
    ----------
    catalog : Catalog
        An open catalog (schema version 6 or later).
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.model = catalog.models.OutboxMessage

    def enqueue(self, sop_instance_uid: str, receivers: Sequence[str]) -> None:
        """Queue ``sop_instance_uid`` for each receiver (once: a second call for the same pair is ignored)."""
        Ob = self.model  # noqa: N806
        now = _now()
        rows = [{"sop_instance_uid": sop_instance_uid, "receiver": r, "status": PENDING, "next_attempt_at": now,
                 "created_at": now} for r in receivers]
        if not rows:
            return
        with write_transaction(self.catalog):
            Ob.insert_many(rows).on_conflict_ignore().execute()

    def due(self, limit: int = 20, now: datetime | None = None) -> list[OutboxItem]:
        """Pending rows whose next attempt is due, oldest first."""
        Ob = self.model  # noqa: N806
        at = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
        with self.catalog._connection():
            rows = list(Ob.select().where((Ob.status == PENDING) & (Ob.next_attempt_at <= at))
                        .order_by(Ob.next_attempt_at, Ob.id).limit(limit))
        return [self._item(r, with_message=True) for r in rows]

    def next_due(self) -> datetime | None:
        """When the earliest pending row is due (aware UTC), or ``None`` when nothing is pending."""
        Ob = self.model  # noqa: N806
        with self.catalog._connection():
            value = Ob.select(pw.fn.MIN(Ob.next_attempt_at)).where(Ob.status == PENDING).scalar()
        return _aware(value)

    def set_message(self, item_id: int, control_id: str, message: str) -> None:
        """Store the built message so that retries send it unchanged."""
        Ob = self.model  # noqa: N806
        with write_transaction(self.catalog):
            Ob.update(control_id=control_id, message=message).where(Ob.id == item_id).execute()

    def delivered(self, item_id: int) -> None:
        """The receiver acknowledged with AA (or CA)."""
        Ob = self.model  # noqa: N806
        with write_transaction(self.catalog):
            Ob.update(status=DELIVERED, delivered_at=_now(), attempts=Ob.attempts + 1, last_error="").where(
                Ob.id == item_id).execute()

    def failed(self, item_id: int, error: str, *, final: bool = False) -> None:
        """An attempt failed: retry after :func:`backoff_seconds`, or give up when ``final`` (an AR)."""
        Ob = self.model  # noqa: N806
        with write_transaction(self.catalog):
            row = Ob.get_or_none(Ob.id == item_id)
            if row is None:
                return
            attempts = int(row.attempts) + 1
            Ob.update(attempts=attempts, last_error=error[:2000], status=REJECTED if final else PENDING,
                     next_attempt_at=_now() + timedelta(seconds=backoff_seconds(attempts))).where(
                Ob.id == item_id).execute()

    def retry(self, item_id: int | None = None) -> int:
        """Make rejected or waiting rows due now (one, or all not delivered); returns how many."""
        Ob = self.model  # noqa: N806
        cond = Ob.status != DELIVERED
        if item_id is not None:
            cond = cond & (Ob.id == item_id)
        with write_transaction(self.catalog):
            return int(Ob.update(status=PENDING, next_attempt_at=_now()).where(cond).execute())

    def list(self, status: str | None = None) -> list[OutboxItem]:
        """Every row (optionally of one status), newest first, without message texts."""
        Ob = self.model  # noqa: N806
        query = Ob.select(*[f for f in Ob._meta.sorted_fields if f.name != "message"]).order_by(Ob.id.desc())
        if status is not None:
            query = query.where(Ob.status == status)
        with self.catalog._connection():
            return [self._item(r, with_message=False) for r in query]

    @staticmethod
    def _item(r: Any, *, with_message: bool) -> OutboxItem:
        return OutboxItem(int(r.id), r.sop_instance_uid, r.receiver, r.status, int(r.attempts),
                          _aware(r.next_attempt_at), _aware(r.created_at), _aware(r.delivered_at),
                          r.last_error or "", r.control_id, r.message if with_message else None)


def results_listener(outbox: Outbox, receivers: Sequence[str],
                     wake: Callable[[], None] | None = None) -> Callable[[Any], None]:
    """An ingest listener that queues an ORU^R01 for each newly stored waveform (not for duplicates or PDFs).

    Parameters
    ----------
    outbox : Outbox
        The queue (in the storing process's catalog).
    receivers : sequence of str
        ``host:port`` of each receiver.
    wake : callable, optional
        Called after queueing, so an in-process sender does not wait for its next poll.
    """
    targets = tuple(receivers)

    def on_stored(outcome: Any) -> None:
        if outcome.status not in ("stored", "replaced") or not is_waveform_class(outcome.sop_class_uid):
            return
        outbox.enqueue(outcome.sop_instance_uid, targets)
        if wake is not None:
            wake()

    return on_stored


__all__ = ["BACKOFF_BASE_S", "BACKOFF_CAP_S", "DELIVERED", "PENDING", "REJECTED", "Outbox", "OutboxItem",
           "backoff_seconds", "results_listener"]
