r"""The Modality Worklist: orders from the hospital system become Scheduled Procedure Steps that carts query.

Orders (HL7 v2.5.1 chapter 4, ORM^O01 and OMG^O19) arrive as :class:`OrderData` with their order control code
(ORC-1, table 0119): ``NW`` creates an entry, ``XO`` changes it, ``CA`` (and ``DC``, ``OC``) cancel it, ``SC``
changes its status (ORC-5, table 0038). One order is one Requested Procedure with one Scheduled Procedure Step, so
one catalog row (``worklist_entry``) is one step.

Query (PS3.4 K.6, Modality Worklist Information Model - FIND)
    The identifier is matched with the **same engine** as Query/Retrieve: each key value becomes a constraint of
    :mod:`dicom_ecg_node.catalog.query` (:func:`~dicom_ecg_node.catalog.query.parse_constraint`: single value,
    wildcard, range, universal, empty, PN case-insensitive on the normalised form) and the constraints become SQL
    through :meth:`~dicom_ecg_node.catalog.sql.SqlFormatter.constraint_sql`, with bound parameters. The Scheduled
    Procedure Step Sequence is matched by sequence matching (PS3.4 C.2.2.2.6): its one item's keys must all hold
    for the entry's step. Scheduled Procedure Step Start Date and Time given together are one combined date-time
    range (PS3.4 C.2.2.2.5.1). :func:`entry_matches` is the in-memory oracle of the same conditions.
Which steps are listed
    Only steps whose status is in :data:`ACTIVE_STATUSES`: a cancelled, completed or discontinued step leaves
    the worklist. The MPPS SCP reports progress through :func:`set_step_status`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import peewee as pw
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicom_ecg_node.catalog import Catalog, normalize_person_name
from dicom_ecg_node.catalog.query import (
    Condition,
    Key,
    Kind,
    Level,
    Range,
    SequenceMatch,
    SingleValue,
    Universal,
    combine_date_time,
    match_scalar,  # the oracle's one scalar rule set
    parse_constraint,
)
from dicom_ecg_node.catalog.sql import SqlFormatter, reading
from dicom_ecg_node.errors import NotFoundError, OrderError, QueryError
from dicom_ecg_node.services.patients import write_transaction

log = logging.getLogger("dicom_ecg_node.worklist")

#: The C-FIND SOP Class of the Modality Worklist Information Model (PS3.4 K.6.1.2).
MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
#: Step statuses that keep an entry on the worklist.
ACTIVE_STATUSES = ("SCHEDULED", "ARRIVED", "READY", "STARTED", "IN PROGRESS")
#: Statuses :func:`set_step_status` accepts (PS3.4 K.6.1 Scheduled Procedure Step Status, PS3.3 C.4.14 MPPS
#: Performed Procedure Step Status, and CANCELLED for orders the hospital withdrew).
STEP_STATUSES = (*ACTIVE_STATUSES, "COMPLETED", "DISCONTINUED", "CANCELLED")
#: ORC-5 order status (HL7 table 0038) → step status, for SC messages.
ORDER_STATUS = {"SC": "SCHEDULED", "IP": "IN PROGRESS", "CM": "COMPLETED", "DC": "DISCONTINUED",
                "CA": "CANCELLED", "HD": "SCHEDULED"}





@dataclass(frozen=True, slots=True)
class OrderData:
    """One order as the HL7 mapping hands it in (``None``: not sent).

    Attributes
    ----------
    control : str
        ORC-1 order control (NW, XO, CA, DC, OC, SC).
    placer_order, filler_order : str or None
        ORC-2 / ORC-3 (entity identifier, with its namespace after ``^`` when sent).
    order_status : str or None
        ORC-5 (SC messages).
    patient_id, issuer, patient_name, birth_date, sex : str or None
        From PID (DICOM forms).
    other_ids : tuple of (str, str)
        Other identifiers of the patient (PID-3 repetitions after the first).
    admission_id : str or None
        PV1-19 visit number.
    location : str or None
        PV1-3 point of care → Scheduled Procedure Step Location.
    accession_number, requested_procedure_id, sps_id : str or None
        OBR-18, OBR-19, OBR-20.
    modality : str or None
        OBR-24.
    protocol_code, protocol_scheme, protocol_meaning : str or None
        OBR-4 universal service identifier → Scheduled Protocol Code Sequence and Requested Procedure Description.
    start_date, start_time : str or None
        DICOM DA/TM of ORC-7.4 or TQ1-7.
    station_ae : str or None
        ORC-18 → Scheduled Station AE Title.
    priority : str or None
        DICOM Requested Procedure Priority (STAT, HIGH, ROUTINE, MEDIUM, LOW).
    referring_physician : str or None
        OBR-16 / PV1-8 as DICOM PN.
    """

    control: str
    placer_order: str | None = None
    filler_order: str | None = None
    order_status: str | None = None
    patient_id: str | None = None
    issuer: str = ""
    patient_name: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    other_ids: tuple[tuple[str, str], ...] = ()
    admission_id: str | None = None
    location: str | None = None
    accession_number: str | None = None
    requested_procedure_id: str | None = None
    sps_id: str | None = None
    modality: str | None = None
    protocol_code: str | None = None
    protocol_scheme: str | None = None
    protocol_meaning: str | None = None
    start_date: str | None = None
    start_time: str | None = None
    station_ae: str | None = None
    priority: str | None = None
    referring_physician: str | None = None

    @property
    def key(self) -> str:
        """The order's identity: the placer order number, else the filler order number."""
        return self.placer_order or self.filler_order or ""


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


# --------------------------------------------------------------------------------------------------------------
# Keys (PS3.4 K.6.1.2.2, Table K.6-1) → logical fields of the worklist row

#: Fields of a worklist row and how they compare (the kinds of the Query/Retrieve engine).
WL_FIELDS: dict[str, Kind] = {
    "patient_id": Kind.TEXT, "issuer": Kind.TEXT, "patient_name": Kind.PN, "birth_date": Kind.DA,
    "sex": Kind.TEXT, "accession_number": Kind.TEXT, "requested_procedure_id": Kind.TEXT,
    "requested_procedure_description": Kind.TEXT, "study_instance_uid": Kind.TEXT, "admission_id": Kind.TEXT,
    "referring_physician": Kind.PN, "priority": Kind.TEXT,
    # Scheduled Procedure Step Sequence items (one step per row)
    "modality": Kind.TEXT, "station_ae": Kind.TEXT, "start_date": Kind.DA, "start_time": Kind.TM,
    "start_datetime": Kind.TM, "location": Kind.TEXT, "sps_id": Kind.TEXT, "sps_description": Kind.TEXT,
    "sps_status": Kind.TEXT,
}

_K = Level.PATIENT  # the worklist has no levels; Key needs one
#: Top-level keys: keyword → Key (the field is a :data:`WL_FIELDS` name, or None for return-only keys).
WL_KEYS: dict[str, Key] = {k.keyword: k for k in (
    Key("PatientName", _K, "PN", "patient_name", "R"),
    Key("PatientID", _K, "LO", "patient_id", "R"),
    Key("IssuerOfPatientID", _K, "LO", "issuer", "O"),
    Key("PatientBirthDate", _K, "DA", "birth_date", "R"),
    Key("PatientSex", _K, "CS", "sex", "R"),
    Key("AccessionNumber", _K, "SH", "accession_number", "R"),
    Key("RequestedProcedureID", _K, "SH", "requested_procedure_id", "R"),
    Key("RequestedProcedureDescription", _K, "LO", "requested_procedure_description", "O"),
    Key("StudyInstanceUID", _K, "UI", "study_instance_uid", "O"),
    Key("AdmissionID", _K, "LO", "admission_id", "O"),
    Key("ReferringPhysicianName", _K, "PN", "referring_physician", "O"),
    Key("RequestedProcedurePriority", _K, "SH", "priority", "O"),
    Key("OtherPatientIDsSequence", _K, "SQ", None, "O", False),
    Key("RequestedProcedureCodeSequence", _K, "SQ", None, "O", False),
    Key("ReferencedStudySequence", _K, "SQ", None, "O", False),
    Key("ReferencedPatientSequence", _K, "SQ", None, "O", False),
    Key("ScheduledProcedureStepSequence", _K, "SQ", None, "R", False),
)}
#: Scheduled Procedure Step Sequence item keys.
SPS_KEYS: dict[str, Key] = {k.keyword: k for k in (
    Key("Modality", _K, "CS", "modality", "R"),
    Key("ScheduledStationAETitle", _K, "AE", "station_ae", "R"),
    Key("ScheduledProcedureStepStartDate", _K, "DA", "start_date", "R"),
    Key("ScheduledProcedureStepStartTime", _K, "TM", "start_time", "R"),
    Key("ScheduledProcedureStepLocation", _K, "SH", "location", "O"),
    Key("ScheduledProcedureStepID", _K, "SH", "sps_id", "O"),
    Key("ScheduledProcedureStepDescription", _K, "LO", "sps_description", "O"),
    Key("ScheduledProcedureStepStatus", _K, "CS", "sps_status", "O"),
    Key("ScheduledPerformingPhysicianName", _K, "PN", None, "R", False),
    Key("ScheduledStationName", _K, "SH", None, "O", False),
    Key("ScheduledProtocolCodeSequence", _K, "SQ", None, "O", False),
)}
_ENGINE_KEYS = frozenset({"SpecificCharacterSet", "QueryRetrieveLevel"})


@dataclass(frozen=True, slots=True)
class WorklistQuery:
    """A validated worklist identifier.

    Attributes
    ----------
    conditions : tuple of Condition
        Top-level conditions and, as ``Condition("sps", SequenceMatch(...))``, the step's item conditions.
    return_keys, sps_keys : tuple of str
        Keywords to answer at the top level and in the step item.
    charset : list of str
        The identifier's Specific Character Set.
    unsupported : tuple of int
        Tags of keys the node does not know (answered empty; pending status 0xFF01).
    """

    conditions: tuple[Condition, ...]
    return_keys: tuple[str, ...]
    sps_keys: tuple[str, ...] = ()
    charset: list[str] = field(default_factory=list)
    unsupported: tuple[int, ...] = ()


def _text(elem: Any) -> str:
    value = elem.value
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join("" if v is None else str(v) for v in value)
    return str(value)


def _date_time_conditions(constraints: dict[str, Any]) -> list[Condition]:
    """Start date and time as one combined range when both are ranges (PS3.4 C.2.2.2.5.1), else separately."""
    date, tm = constraints.pop("start_date", None), constraints.pop("start_time", None)
    if isinstance(date, Range) and isinstance(tm, Range):
        return [Condition("start_date", date), Condition("start_datetime", combine_date_time(date, tm))]
    return [Condition(f, c) for f, c in (("start_date", date), ("start_time", tm))
            if c is not None and not isinstance(c, Universal)]


def parse_worklist_identifier(identifier: Dataset) -> WorklistQuery:
    """Validate a Modality Worklist C-FIND identifier (PS3.4 K.6.1.2) and build its conditions.

    Raises
    ------
    QueryError
        A value its VR does not allow, or a Scheduled Procedure Step Sequence with more than one item.
    """
    top: dict[str, Any] = {}
    returns: list[str] = []
    sps_keys: list[str] = []
    sps: dict[str, Any] = {}
    unsupported: list[int] = []
    charset: list[str] = []
    try:
        elements = list(identifier)
    except Exception as exc:  # a value pydicom cannot convert
        raise QueryError(f"identifier cannot be read: {exc}") from exc
    for elem in elements:
        if elem.tag.is_private or elem.tag.element == 0:
            continue
        kw = elem.keyword
        if kw == "SpecificCharacterSet":
            charset = [v for v in _text(elem).split("\\") if v]
            continue
        if kw in _ENGINE_KEYS:
            continue
        key = WL_KEYS.get(kw)
        if key is None:
            unsupported.append(int(elem.tag))
            continue
        returns.append(kw)
        if kw == "ScheduledProcedureStepSequence":
            items = list(elem.value or [])
            if len(items) > 1:
                raise QueryError(f"{kw}: sequence matching takes at most one item (PS3.4 C.2.2.2.6)")
            for sub in items[0] if items else []:
                if sub.tag.is_private or sub.tag.element == 0:
                    continue
                skey = SPS_KEYS.get(sub.keyword)
                if skey is None:
                    unsupported.append(int(sub.tag))
                    continue
                sps_keys.append(sub.keyword)
                if skey.matchable and skey.field:
                    sps[skey.field] = parse_constraint(skey, "" if sub.VR == "SQ" else _text(sub), unique=False)
            continue
        if key.matchable and key.field:
            top[key.field] = parse_constraint(key, _text(elem), unique=False)
    conditions = [Condition(f, c) for f, c in top.items() if not isinstance(c, Universal)]
    items = _date_time_conditions(sps) + [Condition(f, c) for f, c in sps.items() if not isinstance(c, Universal)]
    if items:
        conditions.append(Condition("sps", SequenceMatch(tuple(items))))  # PS3.4 C.2.2.2.6 sequence matching
    return WorklistQuery(tuple(conditions), tuple(returns), tuple(sps_keys), charset, tuple(unsupported))


def entry_matches(conditions: tuple[Condition, ...], record: dict[str, Any]) -> bool:
    """In-memory oracle: whether a worklist record (field → value) satisfies ``conditions``."""
    for cond in conditions:
        c = cond.constraint
        if isinstance(c, SequenceMatch):
            if not entry_matches(c.items, record):
                return False
            continue
        value = record.get(cond.field)
        if cond.field == "start_datetime":
            date = record.get("start_date")
            value = None if not date else date + (record.get("start_time") or "")
        if not match_scalar(WL_FIELDS[cond.field], c, value):
            return False
    return True


#: Step status as the worklist answers it (PS3.4 K.6.1: SCHEDULED, ARRIVED, READY, STARTED, DEPARTED).
_SPS_STATUS = {"IN PROGRESS": "STARTED"}


def _record(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the oracle's and the answer builder's record."""
    return {**row, "referring_physician": row.get("referring_physician_name"),
            "sps_description": row.get("protocol_meaning"),
            "sps_status": _SPS_STATUS.get(row.get("status") or "", row.get("status"))}


class WorklistService:
    """Apply orders and answer Modality Worklist queries from the catalog.

    Parameters
    ----------
    catalog : Catalog
        An open catalog (schema version 6 or later).
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.m = catalog.models

    # -- orders ------------------------------------------------------------------------------------------------

    def apply_order(self, order: OrderData) -> str:
        """Apply one order control (HL7 v2.5.1 4.5.1, table 0119); returns the step status afterwards.

        Raises
        ------
        OrderError
            No order number; NW for an order that exists; XO/CA/SC for an unknown order; an unknown control code.
        """
        W = self.m.WorklistEntry  # noqa: N806
        key = order.key
        if not key:
            raise OrderError("ORC-2 placer order number (or ORC-3 filler order number) is required")
        control = order.control.upper()
        with write_transaction(self.catalog):
            row = W.get_or_none(W.order_key == key)
            if control == "NW":
                if row is not None:
                    raise OrderError(f"order {key!r} already exists (use XO to change it)")
                if not order.patient_id:
                    raise OrderError("PID-3 patient identifier is required for a new order")
                W.insert(order_key=key, status="SCHEDULED", created_at=_now(), updated_at=_now(),
                         study_instance_uid=generate_uid(entropy_srcs=["ecg-node-order", key]),
                         **self._values(order, None)).execute()
                return "SCHEDULED"
            if row is None:
                raise OrderError(f"order {key!r} is unknown (ORC-1 {control} needs an existing order)")
            if control == "XO":
                W.update(updated_at=_now(), **self._values(order, row)).where(W.id == row.id).execute()
                return str(row.status)
            if control in ("CA", "DC", "OC"):
                status = "CANCELLED" if control != "DC" else "DISCONTINUED"
                W.update(status=status, updated_at=_now()).where(W.id == row.id).execute()
                return status
            if control == "SC":
                status = ORDER_STATUS.get((order.order_status or "").upper())
                if status is None:
                    raise OrderError(f"ORC-5 order status {order.order_status!r} is not one of "
                                     f"{', '.join(ORDER_STATUS)}")
                W.update(status=status, updated_at=_now()).where(W.id == row.id).execute()
                return status
        raise OrderError(f"ORC-1 order control {control!r} is not supported (NW, XO, CA, DC, OC, SC)")

    @staticmethod
    def _values(order: OrderData, row: Any) -> dict[str, Any]:
        """Columns an order sets: everything sent; on XO what was not sent keeps its value."""
        sent = {
            "placer_order": order.placer_order, "filler_order": order.filler_order,
            "patient_id": order.patient_id, "issuer": order.issuer if order.patient_id else None,
            "patient_name": order.patient_name, "birth_date": order.birth_date, "sex": order.sex,
            "admission_id": order.admission_id, "location": order.location,
            "accession_number": order.accession_number, "requested_procedure_id": order.requested_procedure_id,
            "sps_id": order.sps_id, "modality": order.modality, "protocol_code": order.protocol_code,
            "protocol_scheme": order.protocol_scheme, "protocol_meaning": order.protocol_meaning,
            "requested_procedure_description": order.protocol_meaning, "start_date": order.start_date,
            "start_time": order.start_time, "station_ae": order.station_ae, "priority": order.priority,
            "referring_physician_name": order.referring_physician,
        }
        if order.other_ids:
            sent["other_patient_ids"] = "\\".join(f"{i}^{a}" for i, a in order.other_ids)
        values = {k: v for k, v in sent.items() if v is not None}
        if row is None:
            values.setdefault("issuer", "")
        if "patient_name" in values:
            values["patient_name_norm"] = normalize_person_name(values["patient_name"])
        if "referring_physician_name" in values:
            values["referring_physician_norm"] = normalize_person_name(values["referring_physician_name"])
        return values

    def set_step_status(self, status: str, *, accession_number: str | None = None, sps_id: str | None = None,
                        study_instance_uid: str | None = None, order_key: str | None = None) -> int:
        """Set the status of the steps matching every identifier given; returns how many changed.

        See :func:`set_step_status`.
        """
        W = self.m.WorklistEntry  # noqa: N806
        status = status.strip().upper()
        if status not in STEP_STATUSES:
            raise OrderError(f"step status {status!r} is not one of {', '.join(STEP_STATUSES)}")
        where = [W.accession_number == accession_number if accession_number is not None else None,
                 W.sps_id == sps_id if sps_id is not None else None,
                 W.study_instance_uid == study_instance_uid if study_instance_uid is not None else None,
                 W.order_key == order_key if order_key is not None else None]
        parts = [w for w in where if w is not None]
        if not parts:
            raise OrderError("set_step_status needs at least one identifier of the step")
        cond = parts[0]
        for p in parts[1:]:
            cond = cond & p
        with write_transaction(self.catalog):
            return int(W.update(status=status, updated_at=_now()).where(cond).execute())

    def get(self, order_key: str) -> dict[str, Any]:
        """One entry (any status) as a dict of its columns.

        Raises
        ------
        NotFoundError
            Unknown order.
        """
        W = self.m.WorklistEntry  # noqa: N806
        with self.catalog._connection():
            row = W.select().where(W.order_key == order_key).dicts().first()
        if row is None:
            raise NotFoundError(f"order {order_key!r} is not on the worklist")
        return dict(row)

    # -- query -------------------------------------------------------------------------------------------------

    def _column(self, name: str) -> Any:
        W = self.m.WorklistEntry  # noqa: N806
        if name == "start_datetime":
            return W.start_date.concat(pw.fn.COALESCE(W.start_time, ""))
        cols = {"patient_name": W.patient_name_norm, "referring_physician": W.referring_physician_norm,
                "sps_description": W.protocol_meaning, "sps_status": W.status}
        return cols.get(name) or getattr(W, name)

    def run(self, query: WorklistQuery) -> list[dict[str, Any]]:
        """The active entries matching ``query`` (one statement), by start date and time then order."""
        W = self.m.WorklistEntry  # noqa: N806
        fmt = SqlFormatter(self.m, self.catalog.sqlite)
        where = W.status.in_(list(ACTIVE_STATUSES))
        flat: list[Condition] = []
        for cond in query.conditions:
            flat.extend(cond.constraint.items if isinstance(cond.constraint, SequenceMatch) else (cond,))
        for cond in flat:
            c = cond.constraint
            if cond.field == "sps_status":  # the stored status is the MPPS one; answer in worklist terms
                c = self._status_constraint(c)
            expr = self._column(cond.field)
            part = fmt.constraint_sql(expr, WL_FIELDS[cond.field], c)
            if cond.field == "start_datetime" and part is not None:
                part = part & W.start_date.is_null(False)
            if part is not None:
                where = where & part
        with reading(self.catalog):
            rows = list(W.select().where(where).order_by(W.start_date, W.start_time, W.order_key).dicts())
        return [_record(r) for r in rows]

    @staticmethod
    def _status_constraint(c: Any) -> Any:
        if isinstance(c, SingleValue) and c.value == "STARTED":
            return SingleValue("IN PROGRESS")
        return c

    def find(self, identifier: Dataset) -> Iterator[tuple[int, Dataset]]:
        """Validate and run a worklist C-FIND; return ``(pending status, answer)`` pairs (PS3.4 K.4.1.2).

        Raises
        ------
        QueryError
            Invalid identifier.
        CatalogError
            The database failed.
        """
        query = parse_worklist_identifier(identifier)
        rows = self.run(query)
        log.info("C-FIND Modality Worklist: %d answers", len(rows))
        status = 0xFF01 if query.unsupported else 0xFF00
        return ((status, self.answer(query, r, identifier)) for r in rows)

    def answer(self, query: WorklistQuery, rec: dict[str, Any], identifier: Dataset) -> Dataset:
        """The response identifier of one entry (PS3.4 K.6.1.2.2): the requested keys, filled in."""
        ds = Dataset()
        for kw in query.return_keys:
            if kw == "ScheduledProcedureStepSequence":
                ds.ScheduledProcedureStepSequence = [self._sps_item(query.sps_keys, rec)]
            elif kw == "OtherPatientIDsSequence":
                items = []
                for pair in (rec.get("other_patient_ids") or "").split("\\"):
                    if pair:
                        item = Dataset()
                        item.PatientID, _, issuer = pair.partition("^")
                        item.IssuerOfPatientID = issuer or None
                        item.TypeOfPatientID = "TEXT"
                        items.append(item)
                ds.OtherPatientIDsSequence = items
            elif kw == "RequestedProcedureCodeSequence":
                ds.RequestedProcedureCodeSequence = self._code_items(rec)
            elif kw in ("ReferencedStudySequence", "ReferencedPatientSequence"):
                setattr(ds, kw, [])
            else:
                fld = WL_KEYS[kw].field
                value = rec.get(fld) if fld else None
                setattr(ds, kw, None if value in (None, "") else value)
        for tag in query.unsupported:
            if tag in identifier and tag not in ds:
                elem = identifier[tag]
                ds.add_new(elem.tag, elem.VR, [] if elem.VR == "SQ" else None)
        _answer_charset(ds, query.charset)
        return ds

    @staticmethod
    def _code_items(rec: dict[str, Any]) -> list[Dataset]:
        if not rec.get("protocol_code"):
            return []
        item = Dataset()
        item.CodeValue = rec["protocol_code"]
        item.CodingSchemeDesignator = rec.get("protocol_scheme") or "L"
        item.CodeMeaning = rec.get("protocol_meaning") or rec["protocol_code"]
        return [item]

    def _sps_item(self, keys: tuple[str, ...], rec: dict[str, Any]) -> Dataset:
        item = Dataset()
        for kw in keys:
            if kw == "ScheduledProtocolCodeSequence":
                item.ScheduledProtocolCodeSequence = self._code_items(rec)
                continue
            fld = SPS_KEYS[kw].field
            value = rec.get(fld) if fld else None
            setattr(item, kw, None if value in (None, "") else value)
        return item


def _answer_charset(ds: Dataset, charset: list[str]) -> None:
    """Specific Character Set of an answer: as the query when every text is ASCII, else UTF-8 (ISO_IR 192)."""
    texts = [str(e.value) for e in ds.iterall() if e.VR in ("PN", "LO", "SH", "LT", "ST", "UT", "UC")
             and e.value is not None]
    if all(t.isascii() for t in texts):
        if charset:
            ds.SpecificCharacterSet = charset if len(charset) > 1 else charset[0]
        return
    ds.SpecificCharacterSet = "ISO_IR 192"


def set_step_status(catalog: Catalog, status: str, *, accession_number: str | None = None,
                    sps_id: str | None = None, study_instance_uid: str | None = None,
                    order_key: str | None = None) -> int:
    """Set the status of worklist steps; the interface for the MPPS SCP (PS3.4 F.7, K.6).

    ``COMPLETED``, ``DISCONTINUED`` and ``CANCELLED`` take the step off the worklist; ``IN PROGRESS`` keeps it
    (answered as Scheduled Procedure Step Status ``STARTED``). Steps are selected by every identifier given
    (at least one): for an MPPS, the Scheduled Step Attributes Sequence's Accession Number, Scheduled Procedure
    Step ID and Study Instance UID.

    Parameters
    ----------
    catalog : Catalog
        The node's catalog.
    status : str
        One of :data:`STEP_STATUSES`.
    accession_number, sps_id, study_instance_uid, order_key : str, optional
        Identifiers of the step.

    Returns
    -------
    int
        Number of steps changed (0: no such step).

    Raises
    ------
    OrderError
        Unknown status, or no identifier given.
    CatalogError
        The database failed.
    """
    return WorklistService(catalog).set_step_status(status, accession_number=accession_number, sps_id=sps_id,
                                                    study_instance_uid=study_instance_uid, order_key=order_key)


__all__ = ["ACTIVE_STATUSES", "MODALITY_WORKLIST_FIND", "STEP_STATUSES", "OrderData", "OrderError",
           "WorklistQuery", "WorklistService", "entry_matches", "parse_worklist_identifier",
           "set_step_status"]
