"""The retrieve use case behind C-MOVE and C-GET: identifier → instances (in serial order) → files from the archive.

Identifier (PS3.4 C.4.2.2.1 / C.4.3.2.1, hierarchical baseline C.4.2.1.4.1)
    A retrieve identifier carries the Query/Retrieve Level and only the *unique keys* at and above that level:
    PATIENT → Patient ID; STUDY → Study Instance UID; SERIES → Series Instance UID; IMAGE → SOP Instance UID.
    At the level of the retrieve the key may be a list of UIDs (STUDY, SERIES, IMAGE); keys above the level, when
    present, are single values and narrow the match. A unique key *below* the level is refused (the identifier
    does not match the model), other attributes are ignored. Study Root has no PATIENT level (PS3.4 C.6.2.1), and
    Patient ID is not one of its unique keys, so it is ignored there.
Order
    Matches go out in true chronological order: by the catalog's UTC acquisition time, then by insertion, with
    instances of unknown acquisition time last. A patient's serial ECGs thus arrive in the order they were taken,
    whatever zones or daylight-saving changes their local time strings straddle.
Memory
    :meth:`RetrievePlan.__iter__` pages through the matches with keyset pagination (batches of a few hundred small
    rows, no connection held between batches) and :meth:`RetrieveService.load` reads one file at a time, so a
    retrieve of any size holds one object in memory. The plan is a snapshot: instances stored after it was made
    (higher row ids) are not sent, so the announced number of sub-operations stays true.
Transfer syntaxes
    :func:`candidate_syntaxes` lists, for a stored syntax, the syntaxes an object may go out in: the stored one
    first, then the uncompressed little endian syntaxes it converts to without touching its values (deflated is
    inflated, implicit ↔ explicit VR). Big endian objects go out as big endian only: pydicom does not swap the
    byte order of OW values such as Waveform Data on write, and a faithful conversion (swapping every OW word and
    re-encoding every binary VR) is not implemented, so the node refuses to guess.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicom_ecg_node.catalog.registry import AERegistry, RegisteredAE
from dicom_ecg_node.errors import ArchiveError, QueryError

if TYPE_CHECKING:
    from dicom_ecg_node.archive import Archive
    from dicom_ecg_node.catalog import Catalog

log = logging.getLogger("dicom_ecg_node.retrieve")

Level = Literal["PATIENT", "STUDY", "SERIES", "IMAGE"]
Root = Literal["PATIENT", "STUDY"]

#: Levels of each information model, top down (PS3.4 C.6.1.1 Patient Root, C.6.2.1 Study Root).
LEVELS: dict[str, tuple[str, ...]] = {
    "PATIENT": ("PATIENT", "STUDY", "SERIES", "IMAGE"),
    "STUDY": ("STUDY", "SERIES", "IMAGE"),
}
#: The unique key of each level (PS3.4 C.6.1.1.2-C.6.1.1.5, C.6.2.1.2-C.6.2.1.4).
UNIQUE_KEYS: dict[str, str] = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}
#: At most this many UIDs in a list of UIDs (keeps the bound parameters of one statement well under SQLite's limit).
MAX_UIDS = 1000
#: Rows fetched per keyset page.
PAGE_SIZE = 256

_UID_RE = re.compile(r"^(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*$")  # PS3.5 9.1


def candidate_syntaxes(stored: str | None) -> tuple[str, ...]:
    """Transfer syntaxes an object stored in ``stored`` may be sent in, preferred first.

    Parameters
    ----------
    stored : str or None
        The stored transfer syntax UID (``None``: unknown, taken as a little endian one).

    Returns
    -------
    tuple of str
        The stored syntax, then the lossless little endian conversions (PS3.5 A.1-A.5: deflated → explicit VR,
        implicit ↔ explicit VR). Big endian has no alternative (see the module notes).
    """
    if stored == ExplicitVRBigEndian:
        return (ExplicitVRBigEndian,)
    if stored == ImplicitVRLittleEndian:
        return (ImplicitVRLittleEndian, ExplicitVRLittleEndian)
    if stored == DeflatedExplicitVRLittleEndian:
        return (DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian)
    if stored == ExplicitVRLittleEndian or stored is None:
        return (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
    return (stored,)  # anything else (never stored today) goes out only as it is


@dataclass(frozen=True, slots=True)
class RetrieveKeys:
    """The unique keys of a retrieve identifier (PS3.4 C.4.2.2.1).

    Attributes
    ----------
    root : {"PATIENT", "STUDY"}
        The information model (Patient Root or Study Root).
    level : {"PATIENT", "STUDY", "SERIES", "IMAGE"}
        The Query/Retrieve Level.
    patient_id : str or None
        Patient ID (at PATIENT level, or above the level in Patient Root).
    study_uids, series_uids, sop_uids : tuple of str
        UIDs; a list only at the level of the retrieve, one value above it, empty below it.
    """

    root: Root
    level: Level
    patient_id: str | None = None
    study_uids: tuple[str, ...] = ()
    series_uids: tuple[str, ...] = ()
    sop_uids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.root not in LEVELS:
            raise QueryError(f"information model {self.root!r}: must be PATIENT or STUDY root")
        if self.level not in LEVELS[self.root]:
            raise QueryError(f"Query/Retrieve Level {self.level!r} is not a level of the {self.root.title()} "
                             "Root model (PS3.4 C.6)")
        values = {"PATIENT": self.patient_id, "STUDY": self.study_uids, "SERIES": self.series_uids,
                  "IMAGE": self.sop_uids}
        if not values[self.level]:
            raise QueryError(f"{UNIQUE_KEYS[self.level]}: the unique key of the {self.level} level is required "
                             "(PS3.4 C.4.2.2.1)")
        for name in LEVELS["PATIENT"]:
            if name != self.level and name != "PATIENT" and len(values[name] or ()) > 1:  # type: ignore[arg-type]
                raise QueryError(f"{UNIQUE_KEYS[name]}: a list of UIDs is allowed only at the level of the "
                                 "retrieve (PS3.4 C.4.2.2.1)")


def _values(ds: Dataset, keyword: str) -> list[str]:
    """The non-empty values of ``keyword`` (a multi-valued UI gives a list of UIDs, PS3.4 C.2.2.2.2)."""
    value = ds.get(keyword)
    if value is None:
        return []
    items = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    return [s for s in (str(v).strip(" \0") for v in items) if s]


def _uids(ds: Dataset, keyword: str) -> tuple[str, ...]:
    uids = _values(ds, keyword)
    if len(uids) > MAX_UIDS:
        raise QueryError(f"{keyword}: {len(uids)} UIDs, at most {MAX_UIDS} per request")
    for uid in uids:
        if len(uid) > 64 or not _UID_RE.match(uid):
            raise QueryError(f"{keyword}: {uid[:40]!r} is not a valid UID (PS3.5 9.1)")
    return tuple(uids)


def parse_identifier(identifier: Dataset, root: Root) -> RetrieveKeys:
    """Read the unique keys of a C-MOVE / C-GET identifier.

    Parameters
    ----------
    identifier : pydicom.dataset.Dataset
        The request's identifier.
    root : {"PATIENT", "STUDY"}
        Information model of the presentation context the request came on.

    Returns
    -------
    RetrieveKeys

    Raises
    ------
    QueryError
        No or an invalid level, the level's unique key missing, an invalid UID, a list above the level, or a
        unique key below the level (PS3.4 C.4.2.2.1).
    """
    try:
        level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
        if not level:
            raise QueryError("QueryRetrieveLevel (0008,0052) is required")
        if root not in LEVELS or level not in LEVELS[root]:
            raise QueryError(f"Query/Retrieve Level {level[:16]!r} is not a level of the {root.title()} Root model")
        depth = LEVELS["PATIENT"].index(level)
        for below in LEVELS["PATIENT"][depth + 1:]:
            if _values(identifier, UNIQUE_KEYS[below]):
                raise QueryError(f"{UNIQUE_KEYS[below]}: a key below the {level} level is not allowed in a "
                                 "retrieve identifier (PS3.4 C.4.2.2.1)")
        patient_ids = _values(identifier, "PatientID") if root == "PATIENT" else []
        if len(patient_ids) > 1:
            raise QueryError("PatientID: a single value is required")
        keys = RetrieveKeys(
            root=root, level=level,  # type: ignore[arg-type]
            patient_id=patient_ids[0] if patient_ids else None,
            study_uids=_uids(identifier, "StudyInstanceUID") if depth >= 1 else (),
            series_uids=_uids(identifier, "SeriesInstanceUID") if depth >= 2 else (),
            sop_uids=_uids(identifier, "SOPInstanceUID") if depth >= 3 else (),
        )
    except QueryError:
        raise
    except Exception as exc:  # pydicom decodes lazily: a malformed element raises on first access
        raise QueryError(f"identifier cannot be decoded: {exc}") from exc
    return keys


@dataclass(frozen=True, slots=True)
class RetrieveItem:
    """One instance to send.

    Attributes
    ----------
    sop_instance_uid, sop_class_uid : str
    transfer_syntax_uid : str or None
        The stored syntax.
    path : str
        Catalog-relative path of the file.
    size : int
    sha256 : str
        Checksum recorded at ingest, verified before sending.
    """

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str | None
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class RetrievePlan:
    """The instances a retrieve covers: their number, their (SOP class, stored syntax) pairs, and an iterator.

    Attributes
    ----------
    keys : RetrieveKeys
    count : int
        Number of sub-operations (matching instances when the plan was made).
    presentations : tuple of (str, str or None)
        Distinct (SOP Class UID, stored Transfer Syntax UID) pairs, to build the presentation contexts of a
        C-MOVE sub-association.
    """

    keys: RetrieveKeys
    count: int
    presentations: tuple[tuple[str, str | None], ...]
    _service: RetrieveService = field(repr=False)
    _max_id: int = field(repr=False, default=0)

    def __iter__(self) -> Iterator[RetrieveItem]:
        """The matches in serial order (UTC acquisition time, then insertion; unknown times last), paged."""
        if self.count:
            yield from self._service._iter_items(self.keys, self._max_id)


class RetrieveService:
    """Resolve retrieve identifiers against the catalog and read the matching files from the archive.

    Parameters
    ----------
    catalog : Catalog
        An open catalog (schema version 2 or later, for the AE registry).
    archive : Archive
        The archive the catalog's paths are relative to.
    """

    def __init__(self, catalog: Catalog, archive: Archive) -> None:
        self.catalog = catalog
        self.archive = archive
        self.registry = AERegistry(catalog)

    # -- destinations -----------------------------------------------------------------------------------------

    def destination(self, ae_title: str) -> RegisteredAE:
        """The registered peer a C-MOVE sends to.

        Raises
        ------
        UnknownAEError
            Not registered (PS3.4 C.4.2.1.5: 0xA801 Move destination unknown).
        """
        return self.registry.get(ae_title)

    # -- matching ---------------------------------------------------------------------------------------------

    def _matches(self, keys: RetrieveKeys, *columns: Any) -> Any:
        """SELECT ``columns`` FROM the instances matching ``keys`` (joins up to the patient, bound parameters)."""
        m = self.catalog.models
        P, S, Se, I = m.Patient, m.Study, m.Series, m.Instance  # noqa: N806, E741
        query = I.select(*columns).join(Se, on=(I.series == Se.id)).join(S, on=(Se.study == S.id))
        if keys.patient_id is not None:
            query = query.join(P, on=(S.patient == P.id)).where(P.patient_id == keys.patient_id)
        # Each key is one indexed equality or IN (unique indexes on the three UIDs, (patient_id, issuer) index).
        # Patient ID matching ignores the issuer: a retrieve identifier carries no Issuer of Patient ID.
        for column, uids in ((S.study_instance_uid, keys.study_uids), (Se.series_instance_uid, keys.series_uids),
                             (I.sop_instance_uid, keys.sop_uids)):
            if len(uids) == 1:
                query = query.where(column == uids[0])
            elif uids:
                query = query.where(column.in_(list(uids)))
        return query

    def plan(self, keys: RetrieveKeys) -> RetrievePlan:
        """Count the matches of ``keys`` and list their (SOP class, stored syntax) pairs (two statements).

        Raises
        ------
        CatalogError
            The catalog failed.
        """
        import peewee as pw

        I = self.catalog.models.Instance  # noqa: N806, E741
        with self.catalog._connection():
            count, max_id = self._matches(keys, pw.fn.COUNT(I.id), pw.fn.MAX(I.id)).tuples().get()
            pairs = tuple(sorted(
                self._matches(keys, I.sop_class_uid, I.transfer_syntax_uid).distinct().tuples(),
                key=lambda p: (p[0], p[1] or "")))
        return RetrievePlan(keys, int(count or 0), pairs, self, int(max_id or 0))

    def plan_identifier(self, identifier: Dataset, root: Root) -> RetrievePlan:
        """:func:`parse_identifier` then :meth:`plan`.

        Raises
        ------
        QueryError
            Invalid identifier.
        CatalogError
            The catalog failed.
        """
        return self.plan(parse_identifier(identifier, root))

    def _iter_items(self, keys: RetrieveKeys, max_id: int) -> Iterator[RetrieveItem]:
        """Keyset pages over (acquisition_utc, id), then the rows without acquisition time by id."""
        I = self.catalog.models.Instance  # noqa: N806, E741
        cols = (I.id, I.acquisition_utc, I.sop_instance_uid, I.sop_class_uid, I.transfer_syntax_uid, I.path,
                I.size, I.sha256)
        last_t: Any = None
        last_id = 0
        while True:  # pass 1: known acquisition time, chronological
            query = self._matches(keys, *cols).where(I.id <= max_id, I.acquisition_utc.is_null(False))
            if last_t is not None:
                query = query.where((I.acquisition_utc > last_t) | ((I.acquisition_utc == last_t) & (I.id > last_id)))
            with self.catalog._connection():
                rows = list(query.order_by(I.acquisition_utc, I.id).limit(PAGE_SIZE).tuples())
            for row in rows:
                last_id, last_t = row[0], row[1]
                yield RetrieveItem(row[2], row[3], row[4], row[5], int(row[6]), row[7])
            if len(rows) < PAGE_SIZE:
                break
        last_id = 0
        while True:  # pass 2: unknown acquisition time, in the order received
            query = self._matches(keys, *cols).where(I.id <= max_id, I.acquisition_utc.is_null(True),
                                                    I.id > last_id)
            with self.catalog._connection():
                rows = list(query.order_by(I.id).limit(PAGE_SIZE).tuples())
            for row in rows:
                last_id = row[0]
                yield RetrieveItem(row[2], row[3], row[4], row[5], int(row[6]), row[7])
            if len(rows) < PAGE_SIZE:
                return

    # -- files ------------------------------------------------------------------------------------------------

    def read_bytes(self, item: RetrieveItem) -> bytes:
        """The archived file of ``item``, checked against the size and SHA-256 recorded at ingest.

        Raises
        ------
        ArchiveError
            Missing, unreadable, or not the bytes that were stored.
        """
        path = self.archive.resolve(item.path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ArchiveError(f"{item.sop_instance_uid}: archived file unreadable ({exc.strerror})") from exc
        if len(data) != item.size or hashlib.sha256(data).hexdigest() != item.sha256:
            raise ArchiveError(f"{item.sop_instance_uid}: archived file does not match its checksum")
        return data

    def load(self, item: RetrieveItem) -> Dataset:
        """The archived object of ``item`` as a dataset (with its file meta), ready for a C-STORE sub-operation.

        The dataset is not modified: sent in its stored syntax, its elements are written back byte for byte
        (pydicom keeps them raw until accessed).

        Raises
        ------
        ArchiveError
            Missing, unreadable, corrupted or unparseable file.
        """
        data = self.read_bytes(item)
        try:
            return pydicom.dcmread(io.BytesIO(data))
        except (InvalidDicomError, ValueError, EOFError) as exc:
            raise ArchiveError(f"{item.sop_instance_uid}: archived file cannot be parsed: {exc}") from exc


__all__ = [
    "LEVELS",
    "UNIQUE_KEYS",
    "RetrieveItem",
    "RetrieveKeys",
    "RetrievePlan",
    "RetrieveService",
    "candidate_syntaxes",
    "parse_identifier",
]
