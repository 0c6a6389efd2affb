"""Reconciliation on ingest: is the ECG on the right patient and the right order? If in doubt, queue it for review.

Typing the patient ID at the cart is where ECGs get attached to the wrong patient (IHE Resting ECG Workflow puts the
order and patient on the cart through the worklist precisely to avoid it). Every stored ECG is compared with what
the node knows, and mismatches go to a review queue; a reviewer accepts them or re-links them to the right patient
and order. Nothing is ever changed silently.

Matching
    *Order*: the worklist entry (HL7 orders, :mod:`dicom_ecg_node.services.worklist`) whose Accession Number,
    Requested Procedure ID or Study Instance UID equals the instance's (its own attributes or its Request Attributes
    Sequence, PS3.3 C.7.3.1 / C.4.10 Request Attributes Macro), else an open order of the same patient whose
    scheduled start is within :data:`ORDER_WINDOW_H` hours of the acquisition (time evidence only).
    *Patient*: the catalog's patient row of the instance's Patient ID, when it existed before this instance
    (from ADT or an earlier ECG); an ID some order names is known too; otherwise the ID is *unknown*.

Reasons (any one queues the instance)
    ``unknown-patient-id``, ``name-mismatch``, ``birth-date-mismatch``, ``sex-mismatch`` (against the order's
    patient when an order matched, else the known patient), ``order-patient-mismatch`` (the matched order belongs
    to another Patient ID), ``no-order`` (no order matched, on a node whose worklist holds orders; a node without
    orders does not flag this).

Score (0-100, the evidence that the ECG is on the right patient and order; low scores first in the queue)
    ============  ======  =========================================================================
    evidence      points  rule
    ============  ======  =========================================================================
    Patient ID    30      known, and equal to the matched order's (0 when unknown or different)
    name          25      equal after PN normalisation (12 when either side is empty, 0 different)
    birth date    20      equal (10 when either side is empty, 0 different)
    sex           5       equal (2 when either side is empty, 0 different)
    order         20      matched by an identifier (10 by time window only, 0 none)
    ============  ======  =========================================================================

    With no reference at all (unknown ID, no order) name, birth date and sex earn nothing: there is nothing to
    confirm them. Encounters (ADT visits) are not modelled yet, so the time window uses orders only.

Re-linking (IOCM-style, IHE Imaging Object Change Management)
    The stored file is never edited. :meth:`ReconcileService.relink` writes a *corrected instance*: a copy with a
    new SOP Instance UID and Series Instance UID, the target patient's attributes (and order's Accession Number and
    Study Instance UID, else a new study, since a study belongs to one patient), and the replaced values in the
    Original Attributes Sequence (0400,0561) (PS3.3 C.12.1.1.9, reason ``CORRECT``). It is stored through
    :meth:`IngestService.store` under the node's own AE title. The original keeps its file and row; an
    ``instance_link`` row records that it is superseded by the corrected instance; an audit event is written.
"""

from __future__ import annotations

import copy
import io
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import peewee as pw
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

from dicom_ecg_node.catalog.models import normalize_person_name
from dicom_ecg_node.config import NodeConfig
from dicom_ecg_node.errors import CatalogError, DatasetError, NotFoundError, ReconcileError
from dicom_ecg_node.services.clocks import Attributes, HeaderReader

if TYPE_CHECKING:
    from dicom_ecg_node.catalog import Catalog
    from dicom_ecg_node.services.ingest import IngestService, StoreOutcome

log = logging.getLogger("dicom_ecg_node.reconcile")

#: Hours either side of an order's scheduled start within which an ECG of the same patient counts as "on time".
ORDER_WINDOW_H = 12.0
#: Worklist step statuses of orders that are over.
CLOSED_ORDER_STATUSES = ("COMPLETED", "DISCONTINUED", "CANCELLED")
#: Points of each kind of evidence (see the module notes).
WEIGHTS = {"patient_id": 30, "name": 25, "birth_date": 20, "sex": 5, "order": 20}





@dataclass(frozen=True, slots=True)
class Reference:
    """Who the instance should belong to, according to an order or the known patient."""

    source: str  # "order" or "patient"
    patient_id: str
    issuer: str
    name: str | None
    birth_date: str | None
    sex: str | None
    accession_number: str | None = None
    study_instance_uid: str | None = None
    order_key: str | None = None


@dataclass(frozen=True, slots=True)
class Assessment:
    """The outcome of matching one instance."""

    score: int
    reasons: tuple[str, ...]
    evidence: dict[str, Any]
    candidate_patient_id: str | None = None
    candidate_accession: str | None = None


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """One entry of the review queue."""

    id: int
    sop_instance_uid: str
    study_instance_uid: str | None
    patient_id: str
    issuer: str
    accession_number: str | None
    sender_ae: str | None
    status: str
    score: int
    reasons: tuple[str, ...]
    evidence: dict[str, Any]
    candidate_patient_id: str | None
    candidate_accession: str | None
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    note: str | None
    corrected_sop_instance_uid: str | None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]
        out["reasons"] = list(self.reasons)
        return out


def _text(ds: Attributes, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = "" if value is None else str(value).strip()
    return text or None


def _aware(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _compare(a: str | None, b: str | None, points: int, *, name: bool = False) -> tuple[int, str]:
    """Points and verdict (``match``, ``missing``, ``differs``) for one demographic attribute."""
    if not a or not b:
        return points // 2 if points > 5 else 2, "missing"
    same = normalize_person_name(a) == normalize_person_name(b) if name else a.strip() == b.strip()
    return (points, "match") if same else (0, "differs")


def score_instance(*, patient_id: str, name: str | None, birth_date: str | None, sex: str | None,
                   patient_known: bool, reference: Reference | None, order_match: str | None,
                   orders_in_use: bool) -> Assessment:
    """Score one instance against its reference (pure; see the module notes for the table).

    Parameters
    ----------
    patient_id, name, birth_date, sex : str
        What the instance says.
    patient_known : bool
        The Patient ID was known before this instance.
    reference : Reference or None
        The matched order's patient, else the known patient, else ``None``.
    order_match : {"identifier", "time"} or None
        How an order matched.
    orders_in_use : bool
        The node's worklist holds orders (else ``no-order`` is not a reason).

    Returns
    -------
    Assessment
    """
    reasons: list[str] = []
    evidence: dict[str, Any] = {"patient_known": patient_known, "order_match": order_match}
    score = 0
    if not patient_known:
        reasons.append("unknown-patient-id")
    id_ok = patient_known and (reference is None or reference.patient_id == patient_id)
    if reference is not None and reference.source == "order" and reference.patient_id != patient_id:
        reasons.append("order-patient-mismatch")
    score += WEIGHTS["patient_id"] if id_ok else 0
    evidence["patient_id"] = "match" if id_ok else ("unknown" if not patient_known else "differs")
    if reference is not None:
        evidence["reference"] = reference.source
        for key, mine, theirs, is_name in (("name", name, reference.name, True),
                                           ("birth_date", birth_date, reference.birth_date, False),
                                           ("sex", sex, reference.sex, False)):
            points, verdict = _compare(mine, theirs, WEIGHTS[key], name=is_name)
            score += points
            evidence[key] = verdict
            if verdict == "differs":
                reasons.append(f"{key.replace('_', '-')}-mismatch")
    if order_match == "identifier":
        score += WEIGHTS["order"]
    elif order_match == "time":
        score += WEIGHTS["order"] // 2
    elif orders_in_use:
        reasons.append("no-order")
    candidate = reference.patient_id if reference is not None and reference.patient_id != patient_id else None
    return Assessment(min(100, score), tuple(reasons), evidence, candidate,
                      reference.accession_number if reference is not None else None)


class ReconcileService:
    """Assess stored instances, keep the review queue, accept and re-link.

    Parameters
    ----------
    catalog : Catalog
        An open catalog at schema version 7 or later.
    config : NodeConfig
        The node's AE title (re-linked instances are stored under it) and default zone.
    """

    def __init__(self, catalog: Catalog, config: NodeConfig, headers: HeaderReader | None = None) -> None:
        self.catalog = catalog
        self.config = config
        #: Reads a stored file's header (shared with the clock observation in the derived work).
        self.read_header = (headers or HeaderReader()).read
        self._worklist_model: Any | None = None  # looked up once: an opened catalog never loses its tables

    # -- on ingest -------------------------------------------------------------------------------------------

    def on_store(self, outcome: StoreOutcome) -> None:
        """Store listener: assess a newly stored instance and queue it when something does not match.

        Duplicates and the node's own corrected instances are skipped.
        """
        if outcome.status == "duplicate":
            return
        self.assess(outcome.sop_instance_uid, header=self.read_header(outcome.path))

    def assess(self, sop_instance_uid: str, *, header: Attributes | None = None) -> Assessment | None:
        """Match one stored instance to its order and patient; queue it when a reason is found.

        Returns
        -------
        Assessment or None
            ``None`` for an unknown instance or one the node stored itself (a corrected instance).
        """
        m = self.catalog.models
        P, S, Se, I = m.Patient, m.Study, m.Series, m.Instance  # noqa: N806, E741
        select = self.catalog.prepared("reconcile.instance", lambda p: (
            I.select(I.sop_instance_uid, I.patient_name, I.patient_birth_date, I.patient_sex, I.sender_ae,
                     I.received_at, I.acquisition_utc, S.study_instance_uid, S.accession_number,
                     P.patient_id, P.issuer, P.patient_name.alias("p_name"), P.birth_date, P.sex,
                     P.created_at, P.generated_id)
            .join(Se, on=(I.series == Se.id)).join(S, on=(Se.study == S.id)).join(P, on=(S.patient == P.id))
            .where(I.sop_instance_uid == p("uid")).limit(1)))
        with self.catalog._connection():
            row = select.one_dict(uid=sop_instance_uid)
            if row is None or (row["sender_ae"] or "") == self.config.aet:
                return None
            received = _aware(row["received_at"])
            known = (not row["generated_id"] and _aware(row["created_at"]) is not None
                     and received is not None and _aware(row["created_at"]) < received)  # type: ignore[operator]
            requests = self._request_keys(header)
            accession = row["accession_number"] or requests.get("accession_number")
            orders_in_use = self._orders_in_use()
            order, how = None, None
            if orders_in_use:  # without any order (no HL7 orders feed) there is nothing to match or know from
                order, how = self._find_order(row["patient_id"], accession, requests.get("requested_procedure_id"),
                                              row["study_instance_uid"], _aware(row["acquisition_utc"]))
                # An ID the hospital ordered for is known even before its first ECG or ADT message.
                known = known or self._ordered_for(row["patient_id"])
        reference: Reference | None = order
        if reference is None and known:
            reference = Reference("patient", row["patient_id"], row["issuer"], row["p_name"], row["birth_date"],
                                  row["sex"])
        assessment = score_instance(patient_id=row["patient_id"], name=row["patient_name"],
                                    birth_date=row["patient_birth_date"], sex=row["patient_sex"],
                                    patient_known=known, reference=reference, order_match=how,
                                    orders_in_use=orders_in_use)
        if not assessment.reasons:
            return assessment
        if assessment.candidate_patient_id is None and not known:
            candidate = self._same_person(row["patient_id"], row["patient_name"], row["patient_birth_date"])
            if candidate is not None:
                assessment = Assessment(assessment.score, assessment.reasons,
                                        {**assessment.evidence, "candidate": "same name and birth date"},
                                        candidate, assessment.candidate_accession)
        try:
            # Not durable: committed before the clock observation that marks this instance's derived work done
            # (the dispatcher runs reconciliation first), so a power loss that drops it drops that mark too.
            with self.catalog._write(durable=False):
                m.ReconcileItem.insert(
                    sop_instance_uid=sop_instance_uid, study_instance_uid=row["study_instance_uid"],
                    patient_id=row["patient_id"], issuer=row["issuer"], accession_number=accession,
                    sender_ae=row["sender_ae"], status="open", score=assessment.score,
                    reasons="\n".join(assessment.reasons), evidence=json.dumps(assessment.evidence),
                    candidate_patient_id=assessment.candidate_patient_id,
                    candidate_accession=assessment.candidate_accession,
                    created_at=datetime.now(UTC).replace(tzinfo=None)).on_conflict_ignore().execute()
        except pw.PeeweeException as exc:
            raise CatalogError(f"review queue insert for {sop_instance_uid}: {exc}") from exc
        log.info("reconcile: %s queued (score %d: %s)", sop_instance_uid, assessment.score,
                 ", ".join(assessment.reasons))
        return assessment

    @staticmethod
    def _request_keys(header: Attributes | None) -> dict[str, str]:
        """Accession Number and Requested Procedure ID from the Request Attributes Sequence (PS3.3 C.4.10)."""
        keys: dict[str, str] = {}
        if header is None:
            return keys
        for item in header.get("RequestAttributesSequence") or []:
            for kw, key in (("AccessionNumber", "accession_number"),
                            ("RequestedProcedureID", "requested_procedure_id")):
                value = _text(item, kw)
                if value and key not in keys:
                    keys[key] = value
        return keys

    def _worklist(self) -> Any | None:
        if self._worklist_model is None:
            W = self.catalog.models.WorklistEntry  # noqa: N806
            if W is None or not W.table_exists():
                return None
            self._worklist_model = W
        return self._worklist_model

    def _ordered_for(self, patient_id: str) -> bool:
        W = self._worklist()  # noqa: N806
        return W is not None and W.select().where(W.patient_id == patient_id).exists()

    def _orders_in_use(self) -> bool:
        W = self._worklist()  # noqa: N806
        if W is None:
            return False
        return self.catalog.prepared("reconcile.any-order", lambda p: W.select(W.id).limit(1)).one() is not None

    def _find_order(self, patient_id: str, accession: str | None, requested_procedure_id: str | None,
                    study_uid: str | None, acquired: datetime | None) -> tuple[Reference | None, str | None]:
        """The order an instance belongs to and how it matched (``identifier`` / ``time``), or ``(None, None)``."""
        W = self._worklist()  # noqa: N806
        if W is None:
            return None, None
        conds = [c for c in (W.accession_number == accession if accession else None,
                             W.requested_procedure_id == requested_procedure_id if requested_procedure_id else None,
                             W.study_instance_uid == study_uid if study_uid else None) if c is not None]
        row = None
        how = None
        if conds:
            cond = conds[0]
            for c in conds[1:]:
                cond = cond | c
            row = W.select().where(cond).order_by(W.id.desc()).first()
            how = "identifier" if row is not None else None
        if row is None and acquired is not None:
            zone = self.config.zone
            for cand in (W.select().where((W.patient_id == patient_id) & W.status.not_in(CLOSED_ORDER_STATUSES))
                         .order_by(W.id.desc())):
                start = _order_start(cand.start_date, cand.start_time, zone)
                if start is not None and abs(start - acquired) <= timedelta(hours=ORDER_WINDOW_H):
                    row, how = cand, "time"
                    break
        if row is None:
            return None, None
        return Reference("order", row.patient_id, row.issuer or "", row.patient_name, row.birth_date, row.sex,
                         row.accession_number, row.study_instance_uid, row.order_key), how

    def _same_person(self, patient_id: str, name: str | None, birth_date: str | None) -> str | None:
        """Another Patient ID with the same normalised name and birth date (the likely right patient)."""
        if not name or not birth_date:
            return None
        P = self.catalog.models.Patient  # noqa: N806
        with self.catalog._connection():
            row = (P.select(P.patient_id).where((P.patient_name_norm == normalize_person_name(name))
                                                & (P.birth_date == birth_date) & (P.patient_id != patient_id))
                   .order_by(P.id).first())
        return None if row is None else str(row.patient_id)

    # -- the queue -------------------------------------------------------------------------------------------

    def items(self, status: str | None = "open") -> list[ReviewItem]:
        """Queue entries (``None``: all), lowest score first, then oldest."""
        R = self.catalog.models.ReconcileItem  # noqa: N806
        query = R.select().order_by(R.score, R.created_at, R.id)
        if status is not None:
            query = query.where(R.status == status)
        with self.catalog._connection():
            return [self._item(r) for r in query]

    def get(self, item_id: int) -> ReviewItem:
        """One entry.

        Raises
        ------
        NotFoundError
        """
        R = self.catalog.models.ReconcileItem  # noqa: N806
        with self.catalog._connection():
            row = R.get_or_none(R.id == item_id)
        if row is None:
            raise NotFoundError(f"review item {item_id} does not exist")
        return self._item(row)

    @staticmethod
    def _item(r: Any) -> ReviewItem:
        return ReviewItem(int(r.id), r.sop_instance_uid, r.study_instance_uid, r.patient_id, r.issuer,
                          r.accession_number, r.sender_ae, r.status, int(r.score),
                          tuple(x for x in (r.reasons or "").split("\n") if x), json.loads(r.evidence or "{}"),
                          r.candidate_patient_id, r.candidate_accession, _aware(r.created_at),  # type: ignore[arg-type]
                          _aware(r.resolved_at), r.resolved_by, r.note, r.corrected_sop_instance_uid)

    def accept(self, item_id: int, *, actor: str, note: str | None = None) -> ReviewItem:
        """Accept an entry as it is (the instance stays where it is).

        Raises
        ------
        NotFoundError, ReconcileError
        """
        item = self.get(item_id)
        if item.status != "open":
            raise ReconcileError(f"review item {item_id} is already {item.status}")
        self._resolve(item_id, "accepted", actor, note, None)
        self._audit("accept", item, actor, {"note": note})
        return self.get(item_id)

    def _resolve(self, item_id: int, status: str, actor: str, note: str | None, corrected: str | None) -> None:
        R = self.catalog.models.ReconcileItem  # noqa: N806
        try:
            with self.catalog._write():
                R.update(status=status, resolved_at=datetime.now(UTC).replace(tzinfo=None), resolved_by=actor,
                         note=note, corrected_sop_instance_uid=corrected).where(R.id == item_id).execute()
        except pw.PeeweeException as exc:
            raise CatalogError(f"review item {item_id}: {exc}") from exc

    def relink(self, item_id: int, ingest: IngestService, *, patient_id: str, issuer: str | None = None,
               accession_number: str | None = None, actor: str, note: str | None = None) -> str:
        """Store a corrected instance on ``patient_id`` (and order) and supersede the original (module notes).

        Parameters
        ----------
        item_id : int
            The review entry.
        ingest : IngestService
            Stores the corrected instance (under the node's own AE title).
        patient_id, issuer : str
            The right patient. Its name, birth date and sex are taken from the catalog (or the order).
        accession_number : str, optional
            The right order; its Study Instance UID is used when the worklist knows it.
        actor : str
            Who decided (recorded and audited).
        note : str, optional
            Why.

        Returns
        -------
        str
            The corrected instance's SOP Instance UID.

        Raises
        ------
        NotFoundError, ReconcileError, DatasetError, ArchiveError, CatalogError
        """
        item = self.get(item_id)
        if item.status != "open":
            raise ReconcileError(f"review item {item_id} is already {item.status}")
        target = self._target(patient_id, issuer, accession_number)
        m = self.catalog.models
        with self.catalog._connection():
            path = (m.Instance.select(m.Instance.path).where(m.Instance.sop_instance_uid == item.sop_instance_uid)
                    .scalar())
        if path is None:
            raise NotFoundError(f"instance {item.sop_instance_uid} is no longer in the catalog")
        data = ingest.archive.read(path)
        corrected, changes = corrected_copy(data, target, self.config.aet)
        outcome = ingest.store(corrected, sender_ae=self.config.aet, sender_address="local")
        try:
            with self.catalog._write():
                m.InstanceLink.insert(original_sop_instance_uid=item.sop_instance_uid,
                                      corrected_sop_instance_uid=outcome.sop_instance_uid, reason="relink",
                                      changes=json.dumps(changes), actor=actor,
                                      created_at=datetime.now(UTC).replace(tzinfo=None)).execute()
        except pw.PeeweeException as exc:
            raise CatalogError(f"link of {item.sop_instance_uid} to {outcome.sop_instance_uid}: {exc}") from exc
        self._resolve(item_id, "relinked", actor, note, outcome.sop_instance_uid)
        self._audit("relink", item, actor, {"note": note, "corrected_sop_instance_uid": outcome.sop_instance_uid,
                                            "changes": changes}, extra_patients=(target.patient_id,))
        return outcome.sop_instance_uid

    def _target(self, patient_id: str, issuer: str | None, accession: str | None) -> Reference:
        """The reference values of the re-link target (catalog patient, then the order)."""
        m = self.catalog.models
        order = None
        with self.catalog._connection():
            W = self._worklist()  # noqa: N806
            if accession and W is not None:
                order = W.select().where(W.accession_number == accession).order_by(W.id.desc()).first()
            P = m.Patient  # noqa: N806
            cond = P.patient_id == patient_id
            if issuer is not None:
                cond &= P.issuer == issuer
            patient = P.select().where(cond).order_by(P.id).first()
        if order is not None and order.patient_id != patient_id:
            raise ReconcileError(f"order {accession} belongs to patient {order.patient_id}, not {patient_id}")
        if patient is None and order is None:
            raise ReconcileError(f"patient {patient_id} is not known to the node (no ADT, order or ECG); "
                                 "register it first")
        src = patient if patient is not None else order
        return Reference("patient" if patient is not None else "order", patient_id,
                         issuer if issuer is not None else (src.issuer or ""),
                         src.patient_name, src.birth_date, src.sex, accession,
                         order.study_instance_uid if order is not None else None,
                         order.order_key if order is not None else None)

    def links(self, sop_instance_uid: str | None = None) -> list[dict[str, Any]]:
        """Re-link records (of one original or corrected instance when given), oldest first."""
        L = self.catalog.models.InstanceLink  # noqa: N806
        query = L.select().order_by(L.created_at, L.id)
        if sop_instance_uid is not None:
            query = query.where((L.original_sop_instance_uid == sop_instance_uid)
                                | (L.corrected_sop_instance_uid == sop_instance_uid))
        with self.catalog._connection():
            return [{"original": r.original_sop_instance_uid, "corrected": r.corrected_sop_instance_uid,
                     "reason": r.reason, "changes": json.loads(r.changes or "{}"), "actor": r.actor,
                     "created_at": _aware(r.created_at)} for r in query]

    def superseded_by(self, sop_instance_uid: str) -> str | None:
        """The corrected instance that supersedes ``sop_instance_uid``, if any."""
        L = self.catalog.models.InstanceLink  # noqa: N806
        with self.catalog._connection():
            return L.select(L.corrected_sop_instance_uid).where(
                L.original_sop_instance_uid == sop_instance_uid).order_by(L.id.desc()).scalar()

    def _audit(self, action: str, item: ReviewItem, actor: str, detail: dict[str, Any],
               extra_patients: tuple[str, ...] = ()) -> None:
        """Write the audit event (``services.audit`` when installed); an audit failure fails the operation."""
        try:
            from dicom_ecg_node.services.audit import AuditLog
        except ImportError:  # pragma: no cover - the audit trail is part of the node since schema version 4
            log.warning("reconcile %s of %s by %s: no audit trail installed", action, item.sop_instance_uid, actor)
            return
        audit = AuditLog.for_config(self.config)
        try:
            audit.record("reconcile", user=actor, address="local", patient_ids=(item.patient_id, *extra_patients),
                         study_uids=(item.study_instance_uid or "",), sop_instance_uids=(item.sop_instance_uid,),
                         detail={"action": action, "item": item.id, **detail})
        finally:
            close = getattr(audit, "close", None)
            if close is not None:
                close()


def _order_start(date: str | None, time_: str | None, zone: Any) -> datetime | None:
    """An order's scheduled start (DA + TM, local in ``zone``) as aware UTC, or ``None``."""
    if not date:
        return None
    from dicom_ecg_node.waveform._datetime import localize, parse_da_tm

    try:
        naive = parse_da_tm(date, time_ or "000000")
    except ValueError:
        return None
    return localize(naive, zone)[0].astimezone(UTC)


def corrected_copy(data: bytes, target: Reference, node_aet: str) -> tuple[bytes, dict[str, list[str | None]]]:
    """A corrected copy of a Part 10 file: new SOP Instance and Series UIDs, the target's patient and order.

    The replaced values go into the Original Attributes Sequence (0400,0561) with reason ``CORRECT``
    (PS3.3 C.12.1.1.9), so the corrected instance says what it corrects.

    Parameters
    ----------
    data : bytes
        The original file, as stored.
    target : Reference
        The right patient (and order).
    node_aet : str
        Recorded as the Modifying System.

    Returns
    -------
    (bytes, dict)
        The new file (same transfer syntax) and ``{keyword: [before, after]}`` of what changed.

    Raises
    ------
    DatasetError
        The original cannot be parsed or written again.
    """
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:  # pydicom raises several types for a damaged file
        raise DatasetError(f"the stored original cannot be read: {exc}") from exc
    new_values: dict[str, str | None] = {
        "PatientID": target.patient_id, "IssuerOfPatientID": target.issuer or None,
        "PatientName": target.name, "PatientBirthDate": target.birth_date, "PatientSex": target.sex,
    }
    if target.accession_number:
        new_values["AccessionNumber"] = target.accession_number
    # A study belongs to one patient: the order's study, else a new one. The series is always new.
    new_values["StudyInstanceUID"] = target.study_instance_uid or generate_uid()
    new_values["SeriesInstanceUID"] = generate_uid()
    new_values["SOPInstanceUID"] = generate_uid()
    modified = Dataset()
    changes: dict[str, list[str | None]] = {}
    for keyword, value in new_values.items():
        before = _text(ds, keyword)
        if value is None and keyword in ("PatientName", "PatientBirthDate", "PatientSex"):
            continue  # nothing known about the target: keep what the cart sent
        if before == value:
            continue
        if keyword in ds:
            elem = ds[keyword]  # a copy: setattr below changes the element in place
            modified.add(DataElement(elem.tag, elem.VR, copy.deepcopy(elem.value)))
        changes[keyword] = [before, value]
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    item = Dataset()
    item.ModifiedAttributesSequence = DicomSequence([modified])
    item.AttributeModificationDateTime = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    item.ModifyingSystem = node_aet
    item.SourceOfPreviousValues = ""
    item.ReasonForTheAttributeModification = "CORRECT"
    ds.OriginalAttributesSequence = DicomSequence([*list(ds.get("OriginalAttributesSequence") or []), item])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buf = io.BytesIO()
    try:
        ds.save_as(buf, enforce_file_format=True)
    except Exception as exc:
        raise DatasetError(f"the corrected instance cannot be written: {exc}") from exc
    return buf.getvalue(), changes


__all__ = ["CLOSED_ORDER_STATUSES", "ORDER_WINDOW_H", "WEIGHTS", "Assessment", "ReconcileError", "ReconcileService",
           "Reference", "ReviewItem", "corrected_copy", "score_instance"]
