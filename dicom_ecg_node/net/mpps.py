"""Thin N-CREATE / N-SET handlers of the Modality Performed Procedure Step SOP Class (PS3.4 F.7).

Event → :class:`~dicom_ecg_node.services.mpps.MppsService` call → status. The MPPS statuses are those of PS3.4
F.7.2.1.2 / F.7.2.2.2 and PS3.7 Annex C; they are specific to this SOP class, so they live here rather than in
the C-STORE table of :mod:`dicom_ecg_node.net.status`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset

from dicom_ecg_node.errors import CatalogError, EcgNodeError
from dicom_ecg_node.net.status import PROCESSING_FAILURE, SUCCESS, error_comment, status_code
from dicom_ecg_node.services.mpps import (
    MppsAttributeError,
    MppsDuplicateError,
    MppsFinalError,
    MppsNotFoundError,
)

if TYPE_CHECKING:
    from pynetdicom.events import Event

    from dicom_ecg_node.net.security import AssociationGuard
    from dicom_ecg_node.services.mpps import MppsService

log = logging.getLogger("dicom_ecg_node.net")

#: Modality Performed Procedure Step SOP Class (PS3.4 F.7.1).
MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"
#: PS3.4 Table F.7.2-2: "Performed Procedure Step Object may no longer be updated" carries Error ID A710H.
ERROR_ID_NO_LONGER_UPDATABLE = 0xA710

#: Most specific first.
_STATUS: tuple[tuple[type[EcgNodeError], int], ...] = (
    (MppsFinalError, PROCESSING_FAILURE),  # PS3.4 F.7.2.2.2: 0110H, Error ID A710H
    (MppsDuplicateError, 0x0111),  # PS3.7 C.4.4 Duplicate SOP Instance
    (MppsNotFoundError, 0x0112),  # PS3.7 C.4.6 No such SOP Instance
    (MppsAttributeError, 0x0106),  # PS3.7 C.4.2 Invalid attribute value
    (CatalogError, PROCESSING_FAILURE),
)


def _failure(exc: BaseException) -> Dataset:
    ds = Dataset()
    # Anything else (access refused, ...) takes the node-wide status of net.status.
    ds.Status = next((code for cls, code in _STATUS if isinstance(exc, cls)), status_code(exc))
    ds.ErrorComment = error_comment(exc)
    if isinstance(exc, MppsFinalError):
        ds.ErrorID = ERROR_ID_NO_LONGER_UPDATABLE
    return ds


def _calling_ae(event: Event) -> str:
    return str(event.assoc.requestor.ae_title).strip()


def _authorize(event: Event, guard: AssociationGuard | None) -> None:
    """A modality reporting its work needs the trust of storing: the ``store`` permission.

    The policy is asked directly: ``AssociationGuard.authorize(event, "store")`` also measures a C-STORE data set,
    which an N-CREATE / N-SET request does not have.
    """
    if guard is not None:
        guard.policy.check(guard.grant(event), "store")


def handle_n_create(event: Event, mpps: MppsService,
                    guard: AssociationGuard | None = None) -> tuple[Dataset | int, Dataset | None]:
    """N-CREATE of an MPPS instance (PS3.4 F.7.2.1).

    Returns
    -------
    (status, Dataset or None)
        Success with the created attributes (and the assigned Affected SOP Instance UID when the request had
        none, PS3.7 10.1.5.1.4), or a failure status.
    """
    request = event.request
    try:
        _authorize(event, guard)
        attrs = event.attribute_list
        requested = request.AffectedSOPInstanceUID
        uid = mpps.create(None if requested is None else str(requested), attrs, calling_ae=_calling_ae(event))
    except EcgNodeError as exc:
        log.warning("MPPS N-CREATE refused from %r: %s", _calling_ae(event), exc)
        return _failure(exc), None
    except Exception:  # a bug must not take the association down nor be acknowledged
        log.exception("MPPS N-CREATE failed unexpectedly")
        return PROCESSING_FAILURE, None
    reply = Dataset()
    reply.update(attrs)
    if request.AffectedSOPInstanceUID is None:
        reply.AffectedSOPInstanceUID = uid  # pynetdicom moves it to the response's command set
    return SUCCESS, reply


def handle_n_set(event: Event, mpps: MppsService,
                 guard: AssociationGuard | None = None) -> tuple[Dataset | int, Dataset | None]:
    """N-SET of an MPPS instance (PS3.4 F.7.2.2): the attributes after the update, or a failure status."""
    request = event.request
    try:
        _authorize(event, guard)
        updated = mpps.set(str(request.RequestedSOPInstanceUID), event.modification_list,
                           calling_ae=_calling_ae(event))
    except EcgNodeError as exc:
        log.warning("MPPS N-SET refused from %r for %s: %s", _calling_ae(event), request.RequestedSOPInstanceUID,
                    exc)
        return _failure(exc), None
    except Exception:
        log.exception("MPPS N-SET failed unexpectedly")
        return PROCESSING_FAILURE, None
    return SUCCESS, updated


def bind_mpps(mpps: MppsService, guard: AssociationGuard | None = None) -> list[tuple[Any, ...]]:
    """The MPPS event handlers bound to ``mpps`` (requests checked by ``guard`` when given)."""
    from pynetdicom import evt

    return [(evt.EVT_N_CREATE, handle_n_create, [mpps, guard]), (evt.EVT_N_SET, handle_n_set, [mpps, guard])]
