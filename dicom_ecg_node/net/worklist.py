"""Thin Modality Worklist C-FIND handler (PS3.4 K.4.1): the worklist service behind the same C-FIND machinery.

``EVT_C_FIND`` has one handler per AE, so :func:`handle_find_any` routes by the request's SOP Class: the Modality
Worklist Information Model - FIND goes to :class:`~dicom_ecg_node.services.worklist.WorklistService`, the
Query/Retrieve models to the query service. Both go through :func:`dicom_ecg_node.net.find.handle_find`, so
C-CANCEL (0xFE00), failure statuses, the ``find`` permission and the audit trail are handled once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset

from dicom_ecg_node.net.find import handle_find
from dicom_ecg_node.services.worklist import MODALITY_WORKLIST_FIND

if TYPE_CHECKING:
    from pynetdicom.events import Event

    from dicom_ecg_node.services.query import QueryService
    from dicom_ecg_node.services.worklist import WorklistService


class WorklistFind:
    """The worklist service with the ``find(identifier, model, relational=...)`` signature handle_find calls."""

    def __init__(self, worklist: WorklistService) -> None:
        self.worklist = worklist

    def find(self, identifier: Dataset, model: str, *, relational: bool = False) -> Iterator[tuple[int, Dataset]]:
        """Answers of a Modality Worklist identifier (relational queries do not apply to the worklist)."""
        return self.worklist.find(identifier)


def handle_find_any(event: Event, query: QueryService | None, worklist: WorklistFind,
                    guard: Any | None = None) -> Iterator[tuple[int | Dataset, Dataset | None]]:
    """C-FIND of any supported model: Modality Worklist to ``worklist``, Query/Retrieve to ``query``."""
    if str(event.request.AffectedSOPClassUID) == MODALITY_WORKLIST_FIND or query is None:
        yield from handle_find(event, worklist, guard)  # type: ignore[arg-type]
    else:
        yield from handle_find(event, query, guard)
