"""Reads (and the one small write) behind the web viewer's ECG worklist: recent ECGs by row id, and review marks.

Row ids
    The worklist pages and the live event stream use the instance row id as their cursor: ids only grow as rows
    are inserted, so "everything after id N" is what a client missed since it saw N. (A replaced instance keeps
    its row and id; SQLite may reuse the largest id after its row was deleted, which only a manual ``delete``
    does.) On PostgreSQL two concurrent transactions may commit their ids out of order; a client then learns of
    the smaller one at its next full reload, not live.
Review marks
    Schema version 8 adds ``ecg_review``: one row per (SOP Instance UID, username) saying that user has reviewed
    the ECG. It names the instance by UID rather than by foreign key, so that removing or re-indexing instances
    never has to know about it; a mark whose instance is gone is simply never listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import peewee as pw

from dicom_ecg_node.catalog.catalog import Catalog, _as_utc
from dicom_ecg_node.catalog.sql import reading

#: SOP Class UID prefix of every waveform storage class (PS3.4 B.5, ``1.2.840.10008.5.1.4.1.1.9.x.y``).
WAVEFORM_CLASS_PREFIX = "1.2.840.10008.5.1.4.1.1.9."


def build_review_model(db: pw.Database) -> Any:
    """The ``ecg_review`` model bound to ``db`` (built per catalog, like the other models).

    Returns
    -------
    type
        A peewee model with ``sop_instance_uid``, ``username`` and ``reviewed_at`` (naive UTC).
    """

    class EcgReview(pw.Model):
        sop_instance_uid = pw.CharField(max_length=64)
        username = pw.CharField(max_length=128)
        reviewed_at = pw.DateTimeField()

        class Meta:
            database = db
            table_name = "ecg_review"
            indexes = ((("sop_instance_uid", "username"), True),)

    return EcgReview


def migrate_v8(models: Any, db: pw.Database) -> None:
    """Schema version 8: the ``ecg_review`` table of per-user review marks."""
    db.create_tables([build_review_model(db)], safe=True)


@dataclass(frozen=True, slots=True)
class WorklistRow:
    """One stored ECG as the worklist shows it.

    Attributes
    ----------
    row_id : int
        Catalog row id: the cursor of the worklist and the id of its live events.
    measurements : tuple of (code value, coding scheme, code meaning, value, unit)
        The cart's measurements as sent.
    received_at, acquisition_utc : datetime or None
        Aware UTC.
    """

    row_id: int
    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    patient_id: str
    issuer: str
    patient_name: str | None
    patient_birth_date: str | None
    patient_sex: str | None
    acquisition_datetime: str | None
    acquisition_utc: datetime | None
    utc_offset_minutes: int | None
    received_at: datetime | None
    manufacturer: str | None
    model_name: str | None
    device_serial_number: str | None
    sender_ae: str | None
    measurements: tuple[tuple[str, str, str, float, str | None], ...]


def fetch_worklist(catalog: Catalog, *, after_id: int | None = None, before_id: int | None = None,
                   patient_id: str | None = None, unreviewed_by: str | None = None,
                   uids: list[str] | None = None, newest_first: bool = True,
                   limit: int = 100) -> list[WorklistRow]:
    """Stored waveform instances by row id, with their patient and cart measurements (two statements).

    Parameters
    ----------
    catalog : Catalog
        An open catalog.
    after_id, before_id : int, optional
        Only rows with ``after_id < id < before_id``.
    patient_id : str, optional
        Only this Patient ID (any issuer).
    unreviewed_by : str, optional
        Only ECGs this user has not marked as reviewed.
    uids : list of str, optional
        Only these SOP Instance UIDs.
    newest_first : bool
        Order by descending id (the worklist) or ascending (the event stream catching up).
    limit : int
        At most this many rows.

    Returns
    -------
    list of WorklistRow
    """
    m = catalog.models
    P, S, Se, I, C = m.Patient, m.Study, m.Series, m.Instance, m.CartMeasurement  # noqa: N806, E741
    cond = I.sop_class_uid.startswith(WAVEFORM_CLASS_PREFIX)
    if after_id is not None:
        cond &= I.id > after_id
    if before_id is not None:
        cond &= I.id < before_id
    if patient_id is not None:
        cond &= P.patient_id == patient_id
    if uids is not None:
        cond &= I.sop_instance_uid.in_(uids)
    if unreviewed_by is not None:
        R = build_review_model(catalog.db)  # noqa: N806
        cond &= ~pw.fn.EXISTS(R.select(R.id).where((R.sop_instance_uid == I.sop_instance_uid)
                                                   & (R.username == unreviewed_by)))
    query = (I.select(I.id, I.sop_instance_uid, I.sop_class_uid, S.study_instance_uid, P.patient_id, P.issuer,
                      I.patient_name, I.patient_birth_date, I.patient_sex, I.acquisition_datetime, I.acquisition_utc,
                      I.utc_offset_minutes, I.received_at, I.manufacturer, I.model_name, I.device_serial_number,
                      I.sender_ae)
             .join(Se, on=(I.series == Se.id)).join(S, on=(Se.study == S.id)).join(P, on=(S.patient == P.id))
             .where(cond).order_by(I.id.desc() if newest_first else I.id).limit(max(1, int(limit))))
    with reading(catalog):
        rows = list(query.tuples())
        meas: dict[int, list[tuple[str, str, str, float, str | None]]] = {}
        ids = [r[0] for r in rows]
        if ids:
            for inst, code, scheme, meaning, value, units in (
                    C.select(C.instance, C.code_value, C.coding_scheme, C.code_meaning, C.value, C.units)
                    .where(C.instance.in_(ids)).order_by(C.instance, C.id).tuples()):
                meas.setdefault(inst, []).append((code, scheme, meaning, float(value), units))
    return [WorklistRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], _as_utc(r[10]), r[11],
                        _as_utc(r[12]), r[13], r[14], r[15], r[16], tuple(meas.get(r[0], ())))
            for r in rows]


def latest_row_id(catalog: Catalog) -> int:
    """The largest waveform instance row id (0 when there is none)."""
    I = catalog.models.Instance  # noqa: N806, E741
    with reading(catalog):
        value = (I.select(pw.fn.MAX(I.id)).where(I.sop_class_uid.startswith(WAVEFORM_CLASS_PREFIX)).scalar())
    return int(value or 0)


def set_reviewed(catalog: Catalog, sop_instance_uid: str, username: str, reviewed: bool) -> None:
    """Mark (or unmark) one ECG as reviewed by ``username``; marking twice keeps the first time."""
    R = build_review_model(catalog.db)  # noqa: N806
    with catalog._write():
        if reviewed:
            (R.insert(sop_instance_uid=sop_instance_uid, username=username,
                      reviewed_at=datetime.now(UTC).replace(tzinfo=None))
             .on_conflict_ignore().execute())
        else:
            R.delete().where((R.sop_instance_uid == sop_instance_uid) & (R.username == username)).execute()


def reviews(catalog: Catalog, uids: list[str]) -> dict[str, list[tuple[str, datetime | None]]]:
    """Who reviewed which of ``uids`` and when (aware UTC), in review order."""
    if not uids:
        return {}
    R = build_review_model(catalog.db)  # noqa: N806
    out: dict[str, list[tuple[str, datetime | None]]] = {}
    with reading(catalog):
        for uid, user, at in (R.select(R.sop_instance_uid, R.username, R.reviewed_at)
                              .where(R.sop_instance_uid.in_(uids)).order_by(R.reviewed_at, R.id).tuples()):
            out.setdefault(uid, []).append((user, _as_utc(at)))
    return out


__all__ = ["WAVEFORM_CLASS_PREFIX", "WorklistRow", "build_review_model", "fetch_worklist", "latest_row_id",
           "migrate_v8", "reviews", "set_reviewed"]
