"""The one table that maps the project's errors to DIMSE statuses, at the network edge.

C-STORE statuses are those of PS3.4 B.2.3 (Table B.2-1) and the general statuses of PS3.7 Annex C. The Error
Comment (0000,0902) is LO, so at most 64 characters (PS3.5 6.2); the full message goes to the log and, for refused
objects, to the quarantine record.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from dicom_ecg_node.errors import (
    AccessDeniedError,
    ArchiveError,
    CatalogError,
    DatasetError,
    EcgNodeError,
    InstanceConflictError,
    LimitExceededError,
    NotFoundError,
    QueryError,
    StorageFullError,
    UnreadableDatasetError,
    UnsupportedSOPClassError,
    WaveformError,
)

SUCCESS = 0x0000
#: PS3.7 C.4.2 Processing failure: the general failure when nothing more specific applies.
PROCESSING_FAILURE = 0x0110

#: Most specific class first: the first match wins.
STATUS_TABLE: tuple[tuple[type[EcgNodeError], int], ...] = (
    (StorageFullError, 0xA700),  # PS3.4 B.2.3 Refused: Out of Resources
    # PS3.7 C.5.x general status Refused: Not authorized. (A C-MOVE refusal is 0xA801: see net/security.py.)
    (AccessDeniedError, 0x0124),
    (LimitExceededError, 0xA700),  # PS3.4 B.2.3 Refused: Out of Resources (object above max_object_size)
    (UnsupportedSOPClassError, 0x0122),  # PS3.7 C.5.x Refused: SOP Class not supported
    (UnreadableDatasetError, 0xC000),  # PS3.4 B.2.3 Error: Cannot understand
    (WaveformError, 0xA900),  # PS3.4 B.2.3 Error: Data Set does not match SOP Class
    (DatasetError, 0xA900),
    (InstanceConflictError, 0x0111),  # PS3.7 C.4.3 Duplicate SOP Instance (different content: refused)
    (QueryError, 0xA900),  # PS3.4 C.4.1.1.4 Identifier does not match SOP Class
    (NotFoundError, 0xA801),  # PS3.4 C.4.2.1.5 Move destination unknown (the only retrieve "not found")
    (ArchiveError, PROCESSING_FAILURE),
    (CatalogError, PROCESSING_FAILURE),
    (EcgNodeError, PROCESSING_FAILURE),
)

ERROR_COMMENT_MAX = 64


def status_code(exc: BaseException) -> int:
    """The DIMSE status for ``exc`` (Processing failure for anything unexpected)."""
    for cls, code in STATUS_TABLE:
        if isinstance(exc, cls):
            return code
    return PROCESSING_FAILURE


def error_comment(exc: BaseException) -> str:
    """A printable Error Comment of at most 64 characters (LO) describing ``exc``."""
    text = str(exc) if isinstance(exc, EcgNodeError) else "internal error, see the node log"
    # LO excludes backslash and control characters (PS3.5 6.2).
    text = "".join(ch if ch.isprintable() and ch != "\\" else " " for ch in text).strip() or type(exc).__name__
    if len(text) > ERROR_COMMENT_MAX:
        text = text[: ERROR_COMMENT_MAX - 3] + "..."
    return text


def failure_status(exc: BaseException) -> Dataset:
    """A status dataset (Status + Error Comment) for a request refused because of ``exc``."""
    ds = Dataset()
    ds.Status = status_code(exc)
    ds.ErrorComment = error_comment(exc)
    return ds
