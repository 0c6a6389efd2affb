"""Thin EVT_C_MOVE / EVT_C_GET handlers: event → :class:`~dicom_ecg_node.services.retrieve.RetrieveService` → yields.

pynetdicom drives the sub-operations from the handler's yields (``pynetdicom.service_class`` ``_move_scp`` /
``_get_scp``): for C-MOVE first the destination ``(host, port, kwargs)`` (``(None, None)`` for an unknown one,
answered 0xA801), then the number of sub-operations, then one ``(0xFF00, dataset)`` per C-STORE sub-operation;
for C-GET the same without the destination. pynetdicom sends the Pending responses with the remaining / completed /
failed / warning counts (PS3.4 C.4.2.1.5, C.4.3.1.4), keeps going when one sub-operation fails, and ends with
Success, Warning 0xB000 with the Failed SOP Instance UID List (some failed) or Failure 0xA702 with that list (all
failed; PS3.4 Table C.4-2 "Unable to perform sub-operations"). A C-CANCEL is honoured between two
sub-operations by yielding 0xFE00: pynetdicom answers Cancel with the counts and the failed UIDs so far.

C-MOVE sub-operations run on pynetdicom's sub-association from the C-MOVE handler's thread while that
association's reactor thread runs too; pynetdicom's reactor pause has a gap in which the reactor can take a
C-STORE-RSP meant for ``send_c_store`` (seen under CPU load: "Received unexpected C-STORE service message", a 60 s
DIMSE timeout, the sub-association aborted, 0xB000). The sub-association therefore gets a
:class:`~dicom_ecg_node.net.reactorgate.ReactorGate` from ``EVT_CONN_OPEN``. C-GET sends on the requesting
association from that association's own reactor thread (the handler runs there), so no reactor competes.

Errors before any sub-operation (invalid identifier, catalog down) are raised inside the generator: pynetdicom
answers a 0xCxxx "Unable to process" failure without contacting the destination (its handler protocol has no
way to send 0xA900 with an Error Comment before the sub-operations start); the reason goes to the node log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from dicom_ecg_node.errors import AccessDeniedError, EcgNodeError, NotFoundError
from dicom_ecg_node.net.handlers import requestor_handlers
from dicom_ecg_node.net.status import failure_status
from dicom_ecg_node.services.retrieve import RetrievePlan, candidate_syntaxes

if TYPE_CHECKING:
    from pynetdicom.events import Event

    from dicom_ecg_node.net.security import AssociationGuard
    from dicom_ecg_node.services.retrieve import RetrieveItem, RetrieveService, Root

log = logging.getLogger("dicom_ecg_node.net")

#: Information model of each retrieve SOP class (PS3.4 C.6.1.2, C.6.2.2).
RETRIEVE_ROOTS: dict[str, Root] = {
    PatientRootQueryRetrieveInformationModelMove: "PATIENT",
    PatientRootQueryRetrieveInformationModelGet: "PATIENT",
    StudyRootQueryRetrieveInformationModelMove: "STUDY",
    StudyRootQueryRetrieveInformationModelGet: "STUDY",
}
PENDING = 0xFF00
CANCEL = 0xFE00
#: PS3.8 9.3.2.2: at most 128 presentation contexts in one A-ASSOCIATE-RQ.
MAX_CONTEXTS = 128


def move_contexts(plan: RetrievePlan) -> list[PresentationContext]:
    """Presentation contexts for a C-MOVE sub-association: per SOP class, the stored syntax first, then the others.

    Each (SOP class, syntax) gets a context of its own, the stored syntaxes' first: an acceptor picks *one* syntax
    per context by its own preference (PS3.8 9.3.2.2), so separate contexts are the only way to make sure the
    stored syntax is used whenever the destination supports it, and a lossless conversion
    (``candidate_syntaxes``) only when it does not. Beyond 128 contexts (PS3.8 9.3.2.2), one context per SOP
    class proposes every syntax instead.
    """
    candidates = [(sop_class, candidate_syntaxes(stored)) for sop_class, stored in plan.presentations]
    # Stored syntaxes first, then the conversions, without repeating a (class, syntax) pair.
    unique = list(dict.fromkeys([(c, ts[0]) for c, ts in candidates] + [(c, t) for c, ts in candidates
                                                                          for t in ts[1:]]))
    groups: list[tuple[str, list[str]]]
    if len(unique) <= MAX_CONTEXTS:
        groups = [(sop_class, [ts]) for sop_class, ts in unique]
    else:
        merged: dict[str, list[str]] = {}
        for sop_class, ts in unique:
            merged.setdefault(sop_class, []).append(ts)
        groups = list(merged.items())[:MAX_CONTEXTS]
    contexts = []
    for sop_class, syntaxes in groups:
        cx = PresentationContext()
        cx.abstract_syntax = sop_class
        cx.transfer_syntax = syntaxes
        contexts.append(cx)
    return contexts


def _unsendable(item: RetrieveItem) -> Dataset:
    """A stand-in for an object that cannot be read: the C-STORE sub-operation fails and its UID is listed.

    It has SOP Class / Instance UIDs but no file meta, so pynetdicom's ``send_c_store`` refuses it before
    anything goes on the wire, counts a failed sub-operation and adds the UID to the Failed SOP Instance UID List
    (PS3.4 C.4.2.3.1); yielding anything but a dataset would list an empty UID instead.
    """
    ds = Dataset()
    ds.SOPClassUID = item.sop_class_uid
    ds.SOPInstanceUID = item.sop_instance_uid
    return ds


def _sub_operations(event: Event, retrieve: RetrieveService, plan: RetrievePlan,
                    op: str) -> Iterator[tuple[int, Dataset | None]]:
    """``(Pending, dataset)`` per match, one file at a time; ``(Cancel, None)`` once a C-CANCEL arrived."""
    for item in plan:
        if event.is_cancelled:  # PS3.4 C.4.2.2.3 / C.4.3.2.3: stop, answer Cancel with the counts
            log.info("%s cancelled by the SCU", op)
            yield CANCEL, None
            return
        try:
            ds = retrieve.load(item)
        except EcgNodeError as exc:
            log.error("%s: %s is not sent: %s", op, item.sop_instance_uid, exc)
            ds = _unsendable(item)
        yield PENDING, ds


def _plan(event: Event, retrieve: RetrieveService, op: str) -> RetrievePlan:
    root = RETRIEVE_ROOTS[str(event.context.abstract_syntax)]
    try:
        plan = retrieve.plan_identifier(event.identifier, root)
    except EcgNodeError as exc:
        log.warning("%s refused: %s", op, exc)
        raise
    log.info("%s: %d instance(s) at %s level", op, plan.count, plan.keys.level)
    return plan


def handle_move(event: Event, retrieve: RetrieveService, guard: AssociationGuard | None = None) -> Iterator[Any]:
    """EVT_C_MOVE (PS3.4 C.4.2): destination from the AE registry, then one C-STORE per match.

    With a ``guard``, the destination must be one the caller may use (``move`` permission, registered, on its
    list of move destinations if it has one); otherwise 0xA801 (see :mod:`dicom_ecg_node.net.security`). The
    retrieve is audited.

    Parameters
    ----------
    event : pynetdicom.events.Event
        The ``EVT_C_MOVE`` event.
    retrieve : RetrieveService
        Resolves the destination and the identifier, reads the files.
    guard : AssociationGuard, optional
        Access policy and audit trail.

    Yields
    ------
    tuple or int
        pynetdicom's C-MOVE handler protocol (see the module notes).
    """
    title = (event.move_destination or "").strip()
    try:
        dest = retrieve.destination(title) if guard is None else guard.move_destination(event, title)
    except (NotFoundError, AccessDeniedError) as exc:
        log.warning("C-MOVE from %r refused: %s", event.assoc.requestor.ae_title, exc)
        yield None, None  # PS3.4 C.4.2.1.5: 0xA801 Move destination unknown
        return
    plan = _plan(event, retrieve, f"C-MOVE to {title!r}")
    kwargs = {
        "contexts": move_contexts(plan) if plan.count else None,
        "max_pdu": event.assoc.ae.maximum_pdu_size,
        # The sub-association sends many small DIMSE messages: without TCP_NODELAY each waits on Nagle.
        # Its reactor must really be parked while pynetdicom's send_c_store waits for each C-STORE-RSP, or it
        # may take the response and drop it (see dicom_ecg_node.net.reactorgate).
        "evt_handlers": requestor_handlers(),
    }
    yield dest.host, dest.port, kwargs
    yield plan.count
    sub_operations = _sub_operations(event, retrieve, plan, f"C-MOVE to {title!r}")
    yield from sub_operations if guard is None else guard.audited_retrieve(event, "move", title, sub_operations)


def handle_get(event: Event, retrieve: RetrieveService, guard: AssociationGuard | None = None) -> Iterator[Any]:
    """EVT_C_GET (PS3.4 C.4.3): one C-STORE per match on the requesting association (SCP/SCU role selection).

    The SCU must have proposed the storage SOP classes with the SCP role (PS3.7 D.3.3.4); an object whose class
    and syntax it did not accept counts as a failed sub-operation. With a ``guard``, a caller without ``get``
    permission is answered 0x0124 Not authorized (pynetdicom counts it as one failed sub-operation, its protocol
    needs a count first), and the retrieve is audited.

    Yields
    ------
    int or tuple
        pynetdicom's C-GET handler protocol: the number of sub-operations, then ``(status, dataset)`` pairs.
    """
    if guard is not None:
        try:
            guard.authorize(event, "get")
        except AccessDeniedError as exc:
            yield 1
            yield failure_status(exc), None
            return
    plan = _plan(event, retrieve, "C-GET")
    yield plan.count
    sub_operations = _sub_operations(event, retrieve, plan, "C-GET")
    yield from sub_operations if guard is None else guard.audited_retrieve(event, "get", None, sub_operations)


def bind_retrieve(retrieve: RetrieveService, guard: AssociationGuard | None = None) -> list[tuple[Any, ...]]:
    """The C-MOVE and C-GET handlers bound to ``retrieve`` (and to the access ``guard`` when given)."""
    return [
        (evt.EVT_C_MOVE, handle_move, [retrieve, guard]),
        (evt.EVT_C_GET, handle_get, [retrieve, guard]),
    ]
