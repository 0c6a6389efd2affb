"""The single error hierarchy of dicom-ecg-node.

Every failure the node can explain is one of these. Lower-layer exceptions (pydicom, peewee, OSError) are
caught where they happen and re-raised as one of these with ``raise ... from exc``. The network edge
(``dicom_ecg_node.net.status``) maps them to DIMSE statuses in one table; the CLI maps them to a message and an
exit code.

::

    EcgNodeError
    ├── ConfigError                 invalid setting, file or flag
    ├── WaveformError               waveform object cannot be decoded faithfully
    ├── DatasetError                identifying attributes missing or invalid (not a waveform-specific problem)
    │   ├── UnreadableDatasetError  the bytes are not a parseable DICOM dataset
    │   ├── UnsupportedSOPClassError
    │   └── CommitmentRequestError  an N-ACTION Request Storage Commitment refused (reason: N-ACTION status)
    ├── ArchiveError                file placement, write, read or checksum failure
    │   └── StorageFullError        no space left (DIMSE 0xA700)
    ├── CatalogError                database failure
    │   ├── InstanceConflictError   same SOP Instance UID, different content
    │   └── DuplicateAEError        the AE title is already registered
    ├── QueryError                  invalid C-FIND / C-MOVE / C-GET identifier
    ├── NotFoundError               a requested UID, patient or AE is unknown
    │   └── UnknownAEError          the AE title is not registered (C-MOVE destination: 0xA801)
    ├── AccessDeniedError           the caller may not do this (0x0124)
    ├── LimitExceededError          a configured limit (object size, associations) is exceeded
    ├── AnalysisError               a recording cannot be measured (too short, no beats, leads missing...)
    ├── RenderError                 a printout cannot be laid out as asked
    ├── MppsError                   an MPPS N-CREATE / N-SET cannot be honoured
    │   ├── MppsDuplicateError, MppsFinalError
    │   ├── MppsNotFoundError       (also a NotFoundError)
    │   └── MppsAttributeError      (also a DatasetError)
    ├── MergeError                  an HL7 A40 merge cannot be done or undone
    ├── OrderError                  an HL7 order cannot be applied
    └── ReconcileError              a review item cannot be accepted or re-linked
"""

from __future__ import annotations


class EcgNodeError(Exception):
    """Base of every error dicom-ecg-node raises on purpose."""


class ConfigError(EcgNodeError):
    """A configuration value, file or flag is invalid."""


class WaveformError(EcgNodeError):
    """A waveform object cannot be decoded faithfully.

    Parameters
    ----------
    message : str
        What is wrong.
    attribute : str, optional
        The DICOM keyword of the offending attribute.
    group : int, optional
        Zero-based index of the multiplex group (Waveform Sequence item) concerned.
    """

    def __init__(self, message: str, *, attribute: str | None = None, group: int | None = None) -> None:
        self.attribute = attribute
        self.group = group
        where = []
        if group is not None:
            where.append(f"Waveform Sequence item {group}")
        if attribute:
            where.append(attribute)
        super().__init__(f"{': '.join(where)}: {message}" if where else message)


class DatasetError(EcgNodeError):
    """A dataset lacks a required identifying attribute or carries an invalid one."""


class UnreadableDatasetError(DatasetError):
    """The bytes received are not a DICOM dataset that can be parsed."""


class UnsupportedSOPClassError(DatasetError):
    """The SOP class is not one the node stores."""


class ArchiveError(EcgNodeError):
    """A file could not be placed, written, read or verified."""


class StorageFullError(ArchiveError):
    """The archive's file system has no space left."""


class CatalogError(EcgNodeError):
    """The catalog database failed."""


class CommitNotDurableError(CatalogError):
    """A transaction committed, but its log could not be made durable (the ``fdatasync`` after the commit failed).

    Its rows are visible and may not survive a power loss: whatever they name (an archived file) must be kept.
    """


class InstanceConflictError(CatalogError):
    """A SOP Instance UID already stored arrives again with different content."""


class DuplicateAEError(CatalogError):
    """The AE title is already in the registry."""


class QueryError(EcgNodeError):
    """A query or retrieve identifier is invalid."""


class NotFoundError(EcgNodeError):
    """A requested UID, patient or application entity is unknown."""


class UnknownAEError(NotFoundError):
    """The AE title is not in the registry (a C-MOVE to it is answered 0xA801)."""


class AnalysisError(EcgNodeError):
    """A recording cannot be measured, or an analysis argument is invalid.

    Parameters
    ----------
    message : str
        What is wrong, in words a user can act on.
    reason : str, optional
        A short machine-readable cause (``"too-short"``, ``"no-beats"``, ``"no-leads"``, ``"bad-threshold"``...).
    """

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        self.reason = reason
        super().__init__(message)


class RenderError(EcgNodeError):
    """A printout cannot be laid out as asked (invalid speed, gain, layout or paper, nothing to draw...)."""


class AccessDeniedError(EcgNodeError):
    """The calling AE, address, certificate or user may not connect, or may not do what it asks.

    Parameters
    ----------
    message : str
        What was refused and why (no patient data: it goes to the ordinary log).
    reason : str
        A short machine-readable cause: ``"unknown-ae"``, ``"address"``, ``"certificate"``, ``"user-identity"``,
        ``"permission"``, ``"destination"``. The network edge maps it to an A-ASSOCIATE-RJ diagnostic
        (PS3.8 9.3.4) or to DIMSE status 0x0124 Refused: Not authorized (PS3.7 C.5.x).
    """

    def __init__(self, message: str, *, reason: str = "permission") -> None:
        self.reason = reason
        super().__init__(message)


class LimitExceededError(EcgNodeError):
    """A limit against abuse was exceeded (object size, associations per peer).

    Parameters
    ----------
    message : str
        Which limit and by how much.
    limit : str
        The setting concerned (``"max_object_size"``, ``"max_associations_per_peer"``).
    """

    def __init__(self, message: str, *, limit: str) -> None:
        self.limit = limit
        super().__init__(message)


class CommitmentRequestError(DatasetError):
    """An N-ACTION Request Storage Commitment the node refuses.

    Parameters
    ----------
    message : str
        What is wrong (becomes the Error Comment).
    reason : {"no-such-argument", "invalid-argument", "duplicate-transaction"}
        Machine-readable cause; the network edge maps it to an N-ACTION status (PS3.7 10.1.4.1.10).
    """

    def __init__(self, message: str, *, reason: str) -> None:
        self.reason = reason
        super().__init__(message)


class MppsError(EcgNodeError):
    """An MPPS request that cannot be honoured (base of the MPPS errors)."""


class MppsDuplicateError(MppsError):
    """N-CREATE of a SOP Instance UID that already exists (PS3.7 C.4.4: 0111H)."""


class MppsFinalError(MppsError):
    """N-SET of an instance already COMPLETED or DISCONTINUED (PS3.4 F.7.2.2.2: 0110H, Error ID A710H)."""


class MppsNotFoundError(MppsError, NotFoundError):
    """N-SET of an unknown SOP Instance UID (PS3.7 C.4.6: 0112H)."""


class MppsAttributeError(MppsError, DatasetError):
    """An attribute value the SOP class does not allow (PS3.7 C.4.2: 0106H)."""


class MergeError(EcgNodeError):
    """A merge cannot be done or undone as asked (circular, into itself, already undone...)."""


class OrderError(EcgNodeError):
    """An order message cannot be applied (unknown order, duplicate new order, unknown order control...)."""


class ReconcileError(EcgNodeError):
    """A review item cannot be accepted or re-linked as asked."""
