"""Thin C-FIND handlers: event → :class:`~dicom_ecg_node.services.query.QueryService` → statuses.

``handle_find`` is a generator, as pynetdicom expects for ``EVT_C_FIND``: one ``(0xFF00 | 0xFF01, answer)``
per match, then pynetdicom sends the final Success. A C-CANCEL is checked between answers (PS3.4 C.4.1.2.3:
status 0xFE00, no more answers). Errors map through the one status table (:mod:`dicom_ecg_node.net.status`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset

from dicom_ecg_node.errors import EcgNodeError, QueryError
from dicom_ecg_node.net.eventloop import EventDrivenAssociation
from dicom_ecg_node.net.status import failure_status

if TYPE_CHECKING:
    from pynetdicom.events import Event

    from dicom_ecg_node.net.security import AssociationGuard
    from dicom_ecg_node.services.query import QueryService

log = logging.getLogger("dicom_ecg_node.net")

#: PS3.4 C.4.1.1.4 Matching terminated due to Cancel request.
CANCEL = 0xFE00
#: The C-FIND SOP classes answered here (Patient Root, Study Root).
FIND_MODELS = ("1.2.840.10008.5.1.4.1.2.1.1", "1.2.840.10008.5.1.4.1.2.2.1")


def relational_negotiated(event: Event, sop_class: str) -> bool:
    """Whether the requestor asked for relational queries for ``sop_class`` (PS3.4 C.5.1.1, byte 1 = 1).

    The node always accepts them (see :func:`handle_sop_extended`), so the request is the agreement.
    """
    info = (event.assoc.requestor.sop_class_extended or {}).get(sop_class)
    return bool(info) and info[0] == 1


def handle_sop_extended(event: Event) -> dict[str, bytes]:
    """SOP Class Extended Negotiation for C-FIND (PS3.4 C.5.1.1).

    Accepts relational queries, combined date-time matching and timezone query adjustment when asked; declines
    fuzzy semantic person-name matching.
    """
    accepted: dict[str, bytes] = {}
    for uid, info in (event.app_info or {}).items():
        if str(uid) in FIND_MODELS and info:
            asked = list(info[:4]) + [0] * (4 - len(info[:4]))
            accepted[uid] = bytes([1 if asked[0] == 1 else 0, 1 if asked[1] == 1 else 0, 0,
                                   1 if asked[3] == 1 else 0])[:max(1, len(info))]
    return accepted


#: Answers between two pauses that let pynetdicom read what the peer sent (a C-CANCEL).
_DRAIN_EVERY = 32


def _drain_outgoing(event: Event, limit_s: float = 0.05) -> None:
    """Wait (briefly) until pynetdicom's DUL has sent the queued answers.

    pynetdicom's DUL reactor sends a queued PDU in preference to reading the socket, so while answers keep coming
    it never reads an incoming C-CANCEL and :attr:`Event.is_cancelled` stays false to the end. Letting its send
    queue empty now and then gives it the pass in which it reads, at the cost of a short pause every
    :data:`_DRAIN_EVERY` answers.
    """
    queue = getattr(getattr(event.assoc, "dul", None), "to_provider_queue", None)
    if queue is None:
        return
    deadline = time.monotonic() + limit_s
    while not queue.empty() and time.monotonic() < deadline:
        time.sleep(0.0005)
    time.sleep(0.002)  # one DUL pass (its idle delay is 1 ms) to read and decode what arrived


#: Answers (two P-DATA primitives each: command, identifier) an event-driven association may have queued unsent.
_AHEAD = 8


def _keep_pace(event: Event, limit_s: float = 1.0) -> None:
    """Let the answers queued for the peer drop below :data:`_AHEAD` before producing the next one.

    The event-driven DUL (net/eventloop.py) reads between sends, but while this thread holds the GIL encoding
    answers it rarely runs: without a bound the whole answer set is queued before a C-CANCEL is read (and held in
    memory). Short sleeps hand the GIL over until the socket has caught up.
    """
    queue = event.assoc.dul.to_provider_queue
    deadline = time.monotonic() + limit_s
    while queue.qsize() > 2 * _AHEAD and time.monotonic() < deadline:
        time.sleep(0.0002)


def handle_find(event: Event, query: QueryService,
                guard: AssociationGuard | None = None) -> Iterator[tuple[int | Dataset, Dataset | None]]:
    """C-FIND (PS3.4 C.4.1): answers of the query service, honouring C-CANCEL between answers.

    With a ``guard``, the caller's ``find`` permission is checked first (0x0124) and the query is audited.

    Parameters
    ----------
    event : pynetdicom.events.Event
        The ``EVT_C_FIND`` event.
    query : QueryService
        The query use case.
    guard : AssociationGuard, optional
        Access policy and audit trail.

    Yields
    ------
    (status, identifier)
        Pending statuses with answers; a failure status dataset (with Error Comment) or 0xFE00 without.
    """
    sop_class = str(event.request.AffectedSOPClassUID)
    try:
        if guard is not None:
            guard.authorize(event, "find")
        try:
            identifier = event.identifier
        except Exception as exc:  # an identifier pydicom cannot decode
            raise QueryError(f"identifier cannot be decoded: {exc}") from exc
        answers: Any = query.find(identifier, sop_class, relational=relational_negotiated(event, sop_class))
        if guard is not None:
            answers = guard.audited_answers(event, identifier, answers)
    except EcgNodeError as exc:
        status = failure_status(exc)
        log.warning("C-FIND refused: status 0x%04X: %s", status.Status, exc)
        yield status, None
        return
    # The node's own associations read incoming PDUs between the answers they send (net/eventloop.py) and only
    # need pacing; others (pynetdicom's polling reactor) need the pause.
    paced = isinstance(event.assoc, EventDrivenAssociation)
    for n, (status_code, answer) in enumerate(answers, 1):
        if paced:
            _keep_pace(event)
        elif n % _DRAIN_EVERY == 0:
            _drain_outgoing(event)
        if event.is_cancelled:
            log.info("C-FIND cancelled by the requestor")
            yield CANCEL, None
            return
        yield status_code, answer
    if event.is_cancelled:
        yield CANCEL, None
