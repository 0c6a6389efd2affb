"""Catalog side of the serial analysis (issue 6): the node's measurements and change flags per ECG (schema v5).

The "to analyse" state is derived, not written on the store path: an ECG instance whose ``ecg_analysis`` row is
missing, describes another file (``sha256`` differs: the instance was replaced), or is stuck ``running`` past a
lease, is pending. So a crash at any point leaves nothing to repair, the C-STORE transaction is untouched, and
``reindex`` (which recreates instance rows) makes everything pending again.

Concurrency
    Work is claimed with a row in state ``running`` and a per-process token (``claimed_by``); only the holder
    of the claim may write measurements (a compare-and-set on the token), so two worker processes never both
    report the same ECG. Comparison results may be rewritten by whoever measures a neighbour (late arrivals),
    always in one transaction that replaces all flags of the row.

Every function takes an open :class:`~dicom_ecg_node.catalog.Catalog` and returns plain dataclasses.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import peewee as pw

from dicom_ecg_node.catalog.catalog import Catalog, utc_naive

#: Measurement columns of ``ecg_analysis`` (names of :class:`~dicom_ecg_node.analysis.EcgMeasurements` fields).
MEASUREMENT_FIELDS: tuple[str, ...] = (
    "heart_rate_bpm", "rr_ms", "pr_ms", "qrs_ms", "qt_ms", "qtc_ms", "qtc_formula", "qtc_bazett_ms",
    "qtc_fridericia_ms", "axis_deg", "source", "beats_used", "beats_rejected", "patient_sex", "patient_age_years",
)
#: States whose measurements are usable.
MEASURED = ("measured", "done")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _aware(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class AnalysisTarget:
    """What the analysis needs to know of one stored ECG instance."""

    instance_id: int
    sop_instance_uid: str
    sop_class_uid: str
    sha256: str
    path: str
    patient_pk: int
    patient_id: str
    study_instance_uid: str
    series_instance_uid: str
    acquisition_utc: datetime | None


@dataclass(frozen=True, slots=True)
class FlagRow:
    """One stored change flag."""

    rule: str
    leads: tuple[str, ...]
    values: dict[str, list[float | None]]
    threshold: dict[str, float]
    source: str
    detail: str
    prior_sop_instance_uid: str


@dataclass(frozen=True, slots=True)
class FlagData:
    """A change flag to store (mirrors :class:`~dicom_ecg_node.analysis.ChangeFlag`)."""

    rule: str
    leads: tuple[str, ...]
    values: dict[str, Any]
    threshold: dict[str, float]
    source: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AnalysisRow:
    """The node's analysis of one ECG instance.

    Attributes
    ----------
    sop_instance_uid, study_instance_uid, series_instance_uid, sop_class_uid, patient_id : str
    acquisition_utc : datetime or None
    status : {"running", "measured", "done", "failed"}
    error : str
    measurements : dict
        :data:`MEASUREMENT_FIELDS` → value.
    leads : dict of str to dict
        Lead → per-lead values (``st_j_uv``...).
    notes : tuple of str
    prior_sop_instance_uid : str or None
    sr_sop_instance_uid : str or None
    analysed_at, compared_at : datetime or None
    not_evaluated : dict of str to str
    flags : tuple of FlagRow
    """

    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    sop_class_uid: str
    patient_id: str
    acquisition_utc: datetime | None
    status: str
    error: str
    measurements: dict[str, Any]
    leads: dict[str, dict[str, float | None]]
    notes: tuple[str, ...]
    prior_sop_instance_uid: str | None
    sr_sop_instance_uid: str | None
    analysed_at: datetime | None
    compared_at: datetime | None
    not_evaluated: dict[str, str] = field(default_factory=dict)
    flags: tuple[FlagRow, ...] = ()
    sha256: str = ""


def _target_query(catalog: Catalog) -> Any:
    m = catalog.models
    P, S, Se, I = m.Patient, m.Study, m.Series, m.Instance  # noqa: N806, E741
    return (I.select(I.id, I.sop_instance_uid, I.sop_class_uid, I.sha256, I.path, P.id.alias("patient_pk"),
                     P.patient_id, S.study_instance_uid, Se.series_instance_uid, I.acquisition_utc)
            .join(Se, on=(I.series == Se.id)).join(S, on=(Se.study == S.id)).join(P, on=(S.patient == P.id)))


def _target(r: dict[str, Any]) -> AnalysisTarget:
    return AnalysisTarget(int(r["id"]), r["sop_instance_uid"], r["sop_class_uid"], r["sha256"], r["path"],
                          int(r["patient_pk"]), r["patient_id"], r["study_instance_uid"], r["series_instance_uid"],
                          _aware(r["acquisition_utc"]))


def analysis_target(catalog: Catalog, sop_instance_uid: str) -> AnalysisTarget | None:
    """The instance ``sop_instance_uid`` as an :class:`AnalysisTarget`, or ``None`` when not catalogued."""
    with catalog._connection():
        r = _target_query(catalog).where(catalog.models.Instance.sop_instance_uid == sop_instance_uid).dicts().first()
    return None if r is None else _target(r)


def pending_instances(catalog: Catalog, classes: Sequence[str], *, stale_before: datetime,
                      limit: int = 500) -> list[str]:
    """ECG instances to analyse, oldest acquisition first (undated last), in one query.

    Parameters
    ----------
    catalog : Catalog
        An open catalog.
    classes : sequence of str
        SOP Class UIDs that are analysed.
    stale_before : datetime
        A ``running`` claim older than this is abandoned (its process died) and pending again.
    limit : int
        At most this many UIDs.
    """
    m = catalog.models
    I, A = m.Instance, m.EcgAnalysis  # noqa: N806, E741
    query = (I.select(I.sop_instance_uid)
             .join(A, pw.JOIN.LEFT_OUTER, on=(A.instance == I.id))
             .where(I.sop_class_uid.in_(list(classes))
                    & (A.id.is_null() | (A.sha256 != I.sha256)
                       | ((A.status == "running") & (A.claimed_at < utc_naive(stale_before)))))
             .order_by(I.acquisition_utc.is_null(), I.acquisition_utc, I.sop_instance_uid).limit(limit))
    with catalog._connection():
        return [uid for (uid,) in query.tuples()]


def all_instances(catalog: Catalog, classes: Sequence[str]) -> list[str]:
    """Every analysable instance, oldest acquisition first (for ``ecg-node analyse --all``)."""
    I = catalog.models.Instance  # noqa: N806, E741
    query = (I.select(I.sop_instance_uid).where(I.sop_class_uid.in_(list(classes)))
             .order_by(I.acquisition_utc.is_null(), I.acquisition_utc, I.sop_instance_uid))
    with catalog._connection():
        return [uid for (uid,) in query.tuples()]


def claim(catalog: Catalog, target: AnalysisTarget, token: str, *, stale_before: datetime,
          force: bool = False) -> bool:
    """Claim ``target`` for analysis by ``token``; ``False`` when it is done (unless ``force``) or held by another.

    Parameters
    ----------
    catalog : Catalog
        An open catalog.
    target : AnalysisTarget
        The instance.
    token : str
        Identifies the claiming process (and service).
    stale_before : datetime
        Another holder's claim older than this is taken over.
    force : bool
        Re-analyse even when the row is current (``ecg-node analyse``).
    """
    A = catalog.models.EcgAnalysis  # noqa: N806
    now = _now()
    with catalog._write():
        row = A.select(A.id, A.sha256, A.status, A.claimed_by, A.claimed_at).where(
            A.instance == target.instance_id).dicts().first()
        if row is None:
            A.insert(instance=target.instance_id, sha256=target.sha256, status="running", claimed_by=token,
                     claimed_at=now).execute()
            return True
        current = row["sha256"] == target.sha256
        if row["status"] == "running" and row["claimed_by"] != token:
            held_since = row["claimed_at"]
            if isinstance(held_since, str):
                held_since = datetime.fromisoformat(held_since)
            if held_since is not None and held_since >= utc_naive(stale_before):
                return False
        elif current and row["status"] != "running" and not force:
            return False
        A.update(status="running", claimed_by=token, claimed_at=now, sha256=target.sha256).where(
            A.id == row["id"]).execute()
        return True


def save_measurements(catalog: Catalog, target: AnalysisTarget, token: str, values: dict[str, Any],
                      leads: dict[str, dict[str, float | None]], notes: Iterable[str], algorithm: str) -> bool:
    """Store the measurements of a claimed instance (state ``measured``); ``False`` if the claim was lost."""
    A = catalog.models.EcgAnalysis  # noqa: N806
    update = {name: values.get(name) for name in MEASUREMENT_FIELDS}
    update.update(status="measured", error="", analysed_at=_now(), algorithm=algorithm,
                  leads=json.dumps(leads, sort_keys=True), notes=json.dumps(list(notes)), claimed_by=None)
    with catalog._write():
        n = A.update(**update).where((A.instance == target.instance_id) & (A.claimed_by == token)).execute()
    return bool(n)


def save_failure(catalog: Catalog, target: AnalysisTarget, token: str, error: str, algorithm: str) -> bool:
    """Record that a claimed instance cannot be measured (state ``failed``) and drop its old flags."""
    A, F = catalog.models.EcgAnalysis, catalog.models.EcgChangeFlag  # noqa: N806
    update: dict[str, Any] = dict.fromkeys(MEASUREMENT_FIELDS)
    update.update(status="failed", error=error, analysed_at=_now(), algorithm=algorithm, leads="{}", notes="[]",
                  claimed_by=None, prior_sop_instance_uid=None, n_flags=0, compared_at=None, not_evaluated="{}")
    with catalog._write():
        row = A.get_or_none((A.instance == target.instance_id) & (A.claimed_by == token))
        if row is None:
            return False
        F.delete().where(F.analysis == row.id).execute()
        A.update(**update).where(A.id == row.id).execute()
    return True


def _measured_neighbour(catalog: Catalog, target: AnalysisTarget, classes: Sequence[str],
                        before: bool) -> AnalysisTarget | None:
    if target.acquisition_utc is None:
        return None
    m = catalog.models
    I, A = m.Instance, m.EcgAnalysis  # noqa: N806, E741
    t = utc_naive(target.acquisition_utc)
    if before:
        when = (I.acquisition_utc < t) | ((I.acquisition_utc == t) & (I.sop_instance_uid < target.sop_instance_uid))
        order = (I.acquisition_utc.desc(), I.sop_instance_uid.desc())
    else:
        when = (I.acquisition_utc > t) | ((I.acquisition_utc == t) & (I.sop_instance_uid > target.sop_instance_uid))
        order = (I.acquisition_utc, I.sop_instance_uid)
    query = (_target_query(catalog).join_from(I, A, on=(A.instance == I.id))
             .where((m.Patient.id == target.patient_pk) & I.sop_class_uid.in_(list(classes))
                    & A.status.in_(list(MEASURED)) & (A.sha256 == I.sha256) & I.acquisition_utc.is_null(False)
                    & when)
             .order_by(*order).limit(1))
    r = query.dicts().first()
    return None if r is None else _target(r)


def measured_neighbours(catalog: Catalog, target: AnalysisTarget,
                        classes: Sequence[str]) -> tuple[AnalysisTarget | None, AnalysisTarget | None]:
    """The patient's measured ECGs just before and just after ``target`` in true UTC order (two queries).

    An undated ECG has no place in the series: neither a prior nor a successor.
    """
    with catalog._connection():
        return (_measured_neighbour(catalog, target, classes, True),
                _measured_neighbour(catalog, target, classes, False))


def save_comparison(catalog: Catalog, target: AnalysisTarget, prior_uid: str | None, flags: Sequence[FlagData],
                    not_evaluated: dict[str, str], *, expected_prior: str | bool | None = False) -> bool:
    """Replace the comparison of a measured instance in one transaction (state ``done``).

    Parameters
    ----------
    catalog : Catalog
        An open catalog.
    target : AnalysisTarget
        A measured instance.
    prior_uid : str or None
        Its prior ECG (``None``: none exists; the comparison is then empty).
    flags : sequence of FlagData
        The flags against ``prior_uid``.
    not_evaluated : dict of str to str
        Rules that could not be evaluated, and why.
    expected_prior : str, None or False
        When not ``False``, write only if the stored prior is still this value (a concurrent re-comparison wins).

    Returns
    -------
    bool
        Whether the row was written (``False``: not measured any more, or the prior changed meanwhile).
    """
    A, F = catalog.models.EcgAnalysis, catalog.models.EcgChangeFlag  # noqa: N806
    with catalog._write():
        row = A.get_or_none((A.instance == target.instance_id) & A.status.in_(list(MEASURED))
                            & (A.sha256 == target.sha256))
        if row is None or (expected_prior is not False and row.prior_sop_instance_uid != expected_prior):
            return False
        F.delete().where(F.analysis == row.id).execute()
        if flags and prior_uid is not None:
            F.insert_many([
                {"analysis": row.id, "rule": f.rule, "leads": ",".join(f.leads),
                 "values": json.dumps({k: list(v) for k, v in f.values.items()}, sort_keys=True),
                 "threshold": json.dumps(f.threshold, sort_keys=True), "source": f.source, "detail": f.detail,
                 "prior_sop_instance_uid": prior_uid} for f in flags]).execute()
        A.update(status="done", prior_sop_instance_uid=prior_uid, compared_at=_now(),
                 n_flags=len(flags) if prior_uid is not None else 0,
                 not_evaluated=json.dumps(not_evaluated, sort_keys=True)).where(A.id == row.id).execute()
    return True


def set_report(catalog: Catalog, target: AnalysisTarget, sr_sop_instance_uid: str | None) -> None:
    """Remember the SR the node wrote for ``target``'s current comparison."""
    A = catalog.models.EcgAnalysis  # noqa: N806
    with catalog._write():
        A.update(sr_sop_instance_uid=sr_sop_instance_uid).where(A.instance == target.instance_id).execute()


def _rows(catalog: Catalog, where: Any, order: Sequence[Any] = (), limit: int | None = None) -> list[AnalysisRow]:
    """Analysis rows with their instance identity (one query) and their flags (one more)."""
    m = catalog.models
    A, F, I = m.EcgAnalysis, m.EcgChangeFlag, m.Instance  # noqa: N806, E741
    query = (_target_query(catalog).select_extend(
        A.id.alias("analysis_id"), A.status, A.error, A.leads, A.notes, A.prior_sop_instance_uid,
        A.sr_sop_instance_uid, A.analysed_at, A.compared_at, A.not_evaluated, A.sha256.alias("analysed_sha256"),
        *(getattr(A, name) for name in MEASUREMENT_FIELDS))
        .join_from(I, A, on=(A.instance == I.id)).where(where).order_by(*order))
    if limit is not None:
        query = query.limit(limit)
    with catalog._connection():
        rows = list(query.dicts())
        flags: dict[int, list[FlagRow]] = defaultdict(list)
        ids = [r["analysis_id"] for r in rows]
        for start in range(0, len(ids), 500):  # bounded IN lists
            for f in (F.select().where(F.analysis.in_(ids[start:start + 500])).order_by(F.analysis, F.id)):
                flags[f.analysis_id].append(FlagRow(
                    f.rule, tuple(x for x in f.leads.split(",") if x), json.loads(f.values or "{}"),
                    json.loads(f.threshold or "{}"), f.source, f.detail, f.prior_sop_instance_uid))
    return [AnalysisRow(
        r["sop_instance_uid"], r["study_instance_uid"], r["series_instance_uid"], r["sop_class_uid"],
        r["patient_id"], _aware(r["acquisition_utc"]), r["status"], r["error"] or "",
        {name: r[name] for name in MEASUREMENT_FIELDS}, json.loads(r["leads"] or "{}"),
        tuple(json.loads(r["notes"] or "[]")), r["prior_sop_instance_uid"], r["sr_sop_instance_uid"],
        _aware(r["analysed_at"]), _aware(r["compared_at"]), json.loads(r["not_evaluated"] or "{}"),
        tuple(flags.get(r["analysis_id"], ())), r["analysed_sha256"]) for r in rows]


def get_analysis(catalog: Catalog, sop_instance_uid: str) -> AnalysisRow | None:
    """The analysis of one instance with its flags (two queries), or ``None``."""
    rows = _rows(catalog, catalog.models.Instance.sop_instance_uid == sop_instance_uid)
    return rows[0] if rows else None


def analyses_for(catalog: Catalog, sop_instance_uids: Sequence[str]) -> dict[str, AnalysisRow]:
    """Analyses of many instances at once (for the timeline: two queries per 500 UIDs, never one per ECG)."""
    out: dict[str, AnalysisRow] = {}
    uids = list(dict.fromkeys(sop_instance_uids))
    for start in range(0, len(uids), 500):
        for row in _rows(catalog, catalog.models.Instance.sop_instance_uid.in_(uids[start:start + 500])):
            out[row.sop_instance_uid] = row
    return out


def search_analyses(catalog: Catalog, *, rule: str | None = None, since: datetime | None = None,
                    qtc_over: float | None = None, patient_id: str | None = None,
                    limit: int = 10_000) -> list[AnalysisRow]:
    """ECGs whose analysis matches: a flag of ``rule``, acquired at or after ``since``, node QTc above ``qtc_over``.

    Two queries; rows in true UTC order. ``since`` compares with the acquisition time in UTC.
    """
    m = catalog.models
    A, F, I, P = m.EcgAnalysis, m.EcgChangeFlag, m.Instance, m.Patient  # noqa: N806, E741
    where = A.status.in_(list(MEASURED))
    if rule is not None:
        where &= pw.fn.EXISTS(F.select(F.id).where((F.analysis == A.id) & (F.rule == rule)))
    if since is not None:
        where &= I.acquisition_utc >= utc_naive(since)
    if qtc_over is not None:
        where &= A.qtc_ms > qtc_over
    if patient_id is not None:
        where &= P.patient_id == patient_id
    return _rows(catalog, where, (I.acquisition_utc, I.sop_instance_uid), limit)


__all__ = [
    "MEASURED",
    "MEASUREMENT_FIELDS",
    "AnalysisRow",
    "AnalysisTarget",
    "FlagData",
    "FlagRow",
    "all_instances",
    "analyses_for",
    "analysis_target",
    "claim",
    "get_analysis",
    "measured_neighbours",
    "pending_instances",
    "save_comparison",
    "save_failure",
    "save_measurements",
    "search_analyses",
    "set_report",
]
