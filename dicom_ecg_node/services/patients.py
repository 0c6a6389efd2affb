"""Patient administration from the hospital system: create/update (ADT A01/A04/A08) and merge (ADT A40).

Updates write the catalog's Patient rows, which the C-FIND engine reads, so a corrected name or birth date is what
the next query returns. Worklist entries of the patient get the same values.

Merges (HL7 v2.5.1 3.3.40, "merge patient - patient identifier list")
    Every study of the prior identifier is **moved** to the surviving patient row (``Study.patient``), the prior
    row is deleted and the prior identifier's worklist entries are re-pointed. Moving rows (rather than resolving
    aliases in every query) keeps the query engine and its SQL untouched and makes PATIENT, STUDY, SERIES and
    IMAGE level answers, ``ecg-node patients`` and ``ecg-node studies`` agree by construction. The merge record
    (:class:`MergeRecord`, table ``patient_merge``) keeps the prior row's values and the moved study UIDs and order
    keys, so :meth:`PatientService.undo_merge` restores exactly what the merge changed. Stored DICOM files are
    never rewritten: a retrieved object still carries the Patient ID its cart sent.
Circular merges
    Merging A into B when B was itself merged into A (directly or through a chain of merges that are still in
    force) is refused with :class:`MergeError`; so is merging an identifier into itself.
Known limit
    An ECG that arrives after a merge still carrying the prior identifier creates the prior patient again (ingest
    stores what the cart sent); reconciliation on ingest is where it is re-linked.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import peewee as pw

from dicom_ecg_node.catalog import Catalog, normalize_person_name
from dicom_ecg_node.errors import CatalogError, MergeError, NotFoundError

#: Marks a value the sender explicitly cleared (HL7 ``""``, v2.5.1 2.5.3), as opposed to a value not sent.
CLEARED = '""'


@dataclass(frozen=True, slots=True)
class PatientUpdate:
    """Patient values from a PID segment (``None``: not sent, keep; :data:`CLEARED`: remove).

    Attributes
    ----------
    patient_id, issuer : str
        Patient ID and Issuer of Patient ID (``""`` when the identifier has no assigning authority).
    name : str or None
        DICOM PN (``family^given^middle^prefix^suffix``).
    birth_date : str or None
        DICOM DA (``YYYYMMDD``).
    sex : str or None
        DICOM CS (``M``, ``F``, ``O``).
    other_ids : tuple of (str, str)
        Further identifiers of the same patient (id, issuer): Other Patient IDs Sequence.
    """

    patient_id: str
    issuer: str = ""
    name: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    other_ids: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class MergeRecord:
    """One merge, as ``ecg-node merges`` lists it."""

    id: int
    prior_patient_id: str
    prior_issuer: str
    surviving_patient_id: str
    surviving_issuer: str
    moved_studies: tuple[str, ...]
    moved_orders: tuple[str, ...]
    control_id: str | None
    merged_at: datetime | None
    undone_at: datetime | None


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _aware(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@contextlib.contextmanager
def write_transaction(catalog: Catalog) -> Iterator[None]:
    """A catalog write transaction, or a savepoint when this thread is already inside one.

    The HL7 intake runs a message's changes and its log entry in one transaction; the services' own methods open
    one when called alone (CLI, other engineers' code). Reentrant, so both work.

    Raises
    ------
    CatalogError
        The database failed.
    """
    if catalog.db.in_transaction():
        try:
            with catalog.db.atomic():
                yield
        except pw.PeeweeException as exc:
            raise CatalogError(f"catalog database: {exc}") from exc
        return
    with catalog._write():  # the catalog's serialised writer (SQLite lock + BEGIN IMMEDIATE)
        yield


def _value(new: str | None, old: Any) -> Any:
    """An update's value for one column: keep when not sent, clear on ``""``."""
    if new is None:
        return old
    return None if new == CLEARED else new


class PatientService:
    """Create, update and merge patients in the catalog.

    Parameters
    ----------
    catalog : Catalog
        An open catalog (schema version 6 or later).
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.m = catalog.models

    # -- create / update ---------------------------------------------------------------------------------------

    def upsert(self, update: PatientUpdate) -> bool:
        """Create the patient or update the values sent; returns whether a row was created.

        Worklist entries of the patient take the new values too.
        """
        P, W = self.m.Patient, self.m.WorklistEntry  # noqa: N806
        with write_transaction(self.catalog):
            row = P.get_or_none((P.patient_id == update.patient_id) & (P.issuer == update.issuer))
            name = _value(update.name, row.patient_name if row else None)
            birth = _value(update.birth_date, row.birth_date if row else None)
            sex = _value(update.sex, row.sex if row else None)
            values = {"patient_name": name, "patient_name_norm": normalize_person_name(name),
                      "birth_date": birth, "sex": sex}
            created = row is None
            if created:
                P.insert(patient_id=update.patient_id, issuer=update.issuer, generated_id=False, created_at=_now(),
                         **values).execute()
            else:
                P.update(**values).where(P.id == row.id).execute()
            wl = dict(values)
            if update.other_ids:
                wl["other_patient_ids"] = "\\".join(f"{i}^{a}" for i, a in update.other_ids)
            W.update(**wl, updated_at=_now()).where(
                (W.patient_id == update.patient_id) & (W.issuer == update.issuer)).execute()
        return created

    # -- merge -------------------------------------------------------------------------------------------------

    def _active(self) -> Any:
        M = self.m.PatientMerge  # noqa: N806
        return M.select().where(M.undone_at.is_null())

    def _check_not_circular(self, prior: tuple[str, str], surviving: tuple[str, str]) -> None:
        if prior == surviving:
            raise MergeError(f"patient {prior[0]!r} cannot be merged into itself")
        M = self.m.PatientMerge  # noqa: N806
        seen = {surviving}
        current = surviving
        # Follow the merges in force from the surviving identifier: reaching the prior one closes a circle.
        while True:
            nxt = (self._active().where((M.prior_patient_id == current[0]) & (M.prior_issuer == current[1]))
                   .order_by(M.id.desc()).first())
            if nxt is None:
                return
            current = (nxt.surviving_patient_id, nxt.surviving_issuer)
            if current == prior:
                raise MergeError(f"circular merge refused: {surviving[0]!r} was merged into {prior[0]!r} "
                                 f"(merge {nxt.id}); undo that merge first")
            if current in seen:
                return
            seen.add(current)

    def merge(self, prior_id: str, prior_issuer: str, surviving: PatientUpdate, *,
              control_id: str | None = None) -> MergeRecord:
        """Merge the prior identifier into ``surviving`` (ADT A40): studies move, a merge record is written.

        Parameters
        ----------
        prior_id, prior_issuer : str
            MRG-1: the identifier that ceases to exist.
        surviving : PatientUpdate
            The surviving patient (PID), created or updated as by :meth:`upsert`.
        control_id : str, optional
            MSH-10 of the message, kept in the record.

        Returns
        -------
        MergeRecord

        Raises
        ------
        MergeError
            Circular merge, or an identifier merged into itself.
        CatalogError
            The database failed (nothing changed).
        """
        P, S, W, M = self.m.Patient, self.m.Study, self.m.WorklistEntry, self.m.PatientMerge  # noqa: N806
        D = self.m.DemographicConflict  # noqa: N806
        prior_key = (prior_id, prior_issuer)
        with write_transaction(self.catalog):
            self._check_not_circular(prior_key, (surviving.patient_id, surviving.issuer))
            self.upsert(surviving)
            target = P.get((P.patient_id == surviving.patient_id) & (P.issuer == surviving.issuer))
            prior = P.get_or_none((P.patient_id == prior_id) & (P.issuer == prior_issuer))
            if prior is None and prior_issuer == "":
                # MRG-1 without assigning authority: the one patient with that ID, whatever its issuer.
                candidates = list(P.select().where(P.patient_id == prior_id).limit(2))
                prior = candidates[0] if len(candidates) == 1 else None
            moved: list[str] = []
            row: dict[str, Any] = {}
            if prior is not None:
                prior_key = (prior.patient_id, prior.issuer)
                moved = [s for (s,) in S.select(S.study_instance_uid).where(S.patient == prior.id)
                         .order_by(S.study_instance_uid).tuples()]
                conflict_ids = [c for (c,) in D.select(D.id).where(D.patient == prior.id).tuples()]
                row = {"patient_id": prior.patient_id, "issuer": prior.issuer, "patient_name": prior.patient_name,
                       "birth_date": prior.birth_date, "sex": prior.sex, "generated_id": bool(prior.generated_id),
                       "created_at": str(prior.created_at), "conflicts": conflict_ids}
                S.update(patient=target.id).where(S.patient == prior.id).execute()
                D.update(patient=target.id).where(D.patient == prior.id).execute()
                P.delete().where(P.id == prior.id).execute()
            orders = [k for (k,) in W.select(W.order_key).where(
                (W.patient_id == prior_key[0]) & (W.issuer == prior_key[1])).tuples()]
            if orders:
                W.update(patient_id=target.patient_id, issuer=target.issuer, patient_name=target.patient_name,
                         patient_name_norm=target.patient_name_norm, birth_date=target.birth_date, sex=target.sex,
                         updated_at=_now()).where(W.order_key.in_(orders)).execute()
            merge_id = M.insert(prior_patient_id=prior_key[0], prior_issuer=prior_key[1],
                                surviving_patient_id=target.patient_id, surviving_issuer=target.issuer,
                                prior_row=json.dumps(row), moved_studies="\n".join(moved),
                                moved_orders="\n".join(orders), control_id=control_id, merged_at=_now()).execute()
            return self._record(M.get_by_id(merge_id))

    def undo_merge(self, merge_id: int) -> MergeRecord:
        """Undo a merge: re-create the prior patient, move its studies and orders back.

        Raises
        ------
        NotFoundError
            No such merge.
        MergeError
            Already undone, or the surviving patient was merged again later (undo that merge first).
        """
        P, S, W, M = self.m.Patient, self.m.Study, self.m.WorklistEntry, self.m.PatientMerge  # noqa: N806
        D = self.m.DemographicConflict  # noqa: N806
        with write_transaction(self.catalog):
            rec = M.get_or_none(M.id == merge_id)
            if rec is None:
                raise NotFoundError(f"merge {merge_id} does not exist")
            if rec.undone_at is not None:
                raise MergeError(f"merge {merge_id} was already undone")
            later = self._active().where((M.id > rec.id) & (M.prior_patient_id == rec.surviving_patient_id)
                                         & (M.prior_issuer == rec.surviving_issuer)).first()
            if later is not None:
                raise MergeError(f"patient {rec.surviving_patient_id!r} was merged again (merge {later.id}); "
                                 "undo that merge first")
            row = json.loads(rec.prior_row or "{}")
            prior = P.get_or_none((P.patient_id == rec.prior_patient_id) & (P.issuer == rec.prior_issuer))
            if prior is None:
                name = row.get("patient_name")
                prior_pk = P.insert(patient_id=rec.prior_patient_id, issuer=rec.prior_issuer, patient_name=name,
                                    patient_name_norm=normalize_person_name(name), birth_date=row.get("birth_date"),
                                    sex=row.get("sex"), generated_id=bool(row.get("generated_id", False)),
                                    created_at=_now()).execute()
                prior = P.get_by_id(prior_pk)
            studies = [s for s in rec.moved_studies.split("\n") if s]
            if studies:
                S.update(patient=prior.id).where(S.study_instance_uid.in_(studies)).execute()
            if row.get("conflicts"):
                D.update(patient=prior.id).where(D.id.in_(row["conflicts"])).execute()
            orders = [k for k in rec.moved_orders.split("\n") if k]
            if orders:
                W.update(patient_id=prior.patient_id, issuer=prior.issuer, patient_name=prior.patient_name,
                         patient_name_norm=prior.patient_name_norm, birth_date=prior.birth_date, sex=prior.sex,
                         updated_at=_now()).where(W.order_key.in_(orders)).execute()
            M.update(undone_at=_now()).where(M.id == rec.id).execute()
            return self._record(M.get_by_id(rec.id))

    def list_merges(self) -> list[MergeRecord]:
        """Every merge, newest first."""
        M = self.m.PatientMerge  # noqa: N806
        with self.catalog._connection():
            return [self._record(r) for r in M.select().order_by(M.id.desc())]

    @staticmethod
    def _record(r: Any) -> MergeRecord:
        return MergeRecord(int(r.id), r.prior_patient_id, r.prior_issuer, r.surviving_patient_id, r.surviving_issuer,
                           tuple(s for s in (r.moved_studies or "").split("\n") if s),
                           tuple(s for s in (r.moved_orders or "").split("\n") if s), r.control_id,
                           _aware(r.merged_at), _aware(r.undone_at))


__all__ = ["CLEARED", "MergeError", "MergeRecord", "PatientService", "PatientUpdate", "write_transaction"]
