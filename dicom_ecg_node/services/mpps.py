"""Modality Performed Procedure Step SCP use case (PS3.4 F.7): carts report a step in progress, completed or not.

Life cycle (PS3.4 F.7.2, PS3.3 C.4.14)
    * N-CREATE makes the instance, with Performed Procedure Step Status (0040,0252) = ``IN PROGRESS`` only
      (F.7.2.1.2). A known SOP Instance UID is a duplicate (PS3.7 10.1.5.1.6: 0111H). When the request carries no
      Affected SOP Instance UID the SCP assigns one (PS3.7 10.1.5.1.4) and returns it.
    * N-SET updates it while ``IN PROGRESS``; status ``COMPLETED`` or ``DISCONTINUED`` is final. Once final, the
      instance "may no longer be updated": further N-SETs are refused (F.7.2.2.2; status 0110H with Error ID A710H,
      Table F.7.2-2 - not the UPS status C310H, which belongs to Unified Procedure Step, PS3.4 CC).
    * An N-SET replaces the attributes it names (a sequence as a whole, PS3.7 10.1.3); the rest are kept.
Storage
    Each instance keeps its complete attribute set (DICOM JSON, PS3.18 F.2) plus searchable columns, one row per
    Scheduled Step Attributes Sequence item (Study Instance UID, Accession Number, Requested Procedure ID,
    Scheduled Procedure Step ID) and one per Performed Series Sequence item (C.4.15).
Worklist
    When a step becomes final, each scheduled step it names is reported to the worklist
    (``services.worklist.set_step_status``), after the MPPS transaction has committed, so completed and
    discontinued steps leave the Modality Worklist (PS3.4 K).
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import peewee as pw
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicom_ecg_node.errors import (
    CatalogError,
    MppsAttributeError,
    MppsDuplicateError,
    MppsError,
    MppsFinalError,
    MppsNotFoundError,
)

if TYPE_CHECKING:
    from dicom_ecg_node.catalog import Catalog

log = logging.getLogger("dicom_ecg_node.mpps")

IN_PROGRESS, COMPLETED, DISCONTINUED = "IN PROGRESS", "COMPLETED", "DISCONTINUED"
#: PS3.3 C.4.14: the defined terms of Performed Procedure Step Status (0040,0252).
STATUSES = (IN_PROGRESS, COMPLETED, DISCONTINUED)
FINAL_STATUSES = (COMPLETED, DISCONTINUED)

#: ``(status, step) -> number of worklist steps changed``: what the worklist is told when a step starts or ends.
StepStatusCallback = Callable[[str, "MppsStepRef"], int]

















@dataclass(frozen=True, slots=True)
class MppsStepRef:
    """One Scheduled Step Attributes Sequence item."""

    study_instance_uid: str | None
    accession_number: str | None
    requested_procedure_id: str | None
    scheduled_procedure_step_id: str | None


@dataclass(frozen=True, slots=True)
class MppsSeriesRef:
    """One Performed Series Sequence item."""

    series_instance_uid: str
    sop_instance_uids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MppsRecord:
    """A stored MPPS instance."""

    sop_instance_uid: str
    status: str
    calling_ae: str | None
    patient_id: str | None
    patient_name: str | None
    performed_procedure_step_id: str | None
    modality: str | None
    start: str | None
    end: str | None
    steps: tuple[MppsStepRef, ...]
    series: tuple[MppsSeriesRef, ...]
    created_at: datetime
    updated_at: datetime


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = "" if value is None else str(value).strip()
    return text or None


def _steps(ds: Dataset) -> list[MppsStepRef]:
    return [MppsStepRef(_text(item, "StudyInstanceUID"), _text(item, "AccessionNumber"),
                        _text(item, "RequestedProcedureID"), _text(item, "ScheduledProcedureStepID"))
            for item in ds.get("ScheduledStepAttributesSequence") or []]


def _series(ds: Dataset) -> list[MppsSeriesRef]:
    out = []
    for item in ds.get("PerformedSeriesSequence") or []:
        uid = _text(item, "SeriesInstanceUID")
        if uid is None:
            continue
        refs = [_text(r, "ReferencedSOPInstanceUID")
                for kw in ("ReferencedImageSequence", "ReferencedNonImageCompositeSOPInstanceSequence")
                for r in (item.get(kw) or [])]
        out.append(MppsSeriesRef(uid, tuple(r for r in refs if r)))
    return out


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def worklist_step_status(catalog: Catalog) -> StepStatusCallback | None:
    """A :data:`StepStatusCallback` on ``services.worklist.set_step_status``, or ``None`` without a worklist.

    Steps are selected by the Accession Number, Scheduled Procedure Step ID and Study Instance UID the MPPS
    names; when nothing matches all three, again without the Study Instance UID (a cart may create its own study
    rather than take the worklist's, PS3.17 "Modality Worklist" notes).
    """
    try:
        module = importlib.import_module("dicom_ecg_node.services.worklist")
    except ImportError:
        return None
    set_step_status = getattr(module, "set_step_status", None)
    if set_step_status is None:
        return None

    def callback(status: str, step: MppsStepRef) -> int:
        keys = {"accession_number": step.accession_number, "sps_id": step.scheduled_procedure_step_id}
        keys = {k: v for k, v in keys.items() if v}
        changed = 0
        if step.study_instance_uid:
            changed = int(set_step_status(catalog, status, study_instance_uid=step.study_instance_uid, **keys))
        if not changed and keys:
            changed = int(set_step_status(catalog, status, **keys))
        return changed

    return callback


class MppsService:
    """Create, update and read MPPS instances.

    Parameters
    ----------
    catalog : Catalog
        An open catalog at schema version 7 or later.
    step_status : callable, optional
        Told when steps start and end (see :data:`StepStatusCallback`); by default
        :func:`worklist_step_status` (``services.worklist.set_step_status``) when that module exists.
    """

    def __init__(self, catalog: Catalog, step_status: StepStatusCallback | None = None) -> None:
        self.catalog = catalog
        self._step_status = step_status

    # -- N-CREATE --------------------------------------------------------------------------------------------

    def create(self, sop_instance_uid: str | None, attributes: Dataset, *, calling_ae: str | None = None) -> str:
        """Create an MPPS instance (N-CREATE, PS3.4 F.7.2.1).

        Parameters
        ----------
        sop_instance_uid : str or None
            The requested Affected SOP Instance UID; ``None`` makes the node assign one.
        attributes : Dataset
            The N-CREATE Attribute List.
        calling_ae : str, optional
            Who created it.

        Returns
        -------
        str
            The SOP Instance UID.

        Raises
        ------
        MppsAttributeError
            Status is not ``IN PROGRESS``.
        MppsDuplicateError
            The UID exists.
        CatalogError
        """
        status = (_text(attributes, "PerformedProcedureStepStatus") or "").upper()
        if status != IN_PROGRESS:
            raise MppsAttributeError(f"PerformedProcedureStepStatus: N-CREATE requires IN PROGRESS, not {status!r}")
        uid = (sop_instance_uid or "").rstrip("\0 ") or generate_uid()
        m = self.catalog.models
        now = _now()
        try:
            with self.catalog._write():
                if m.MppsInstance.select().where(m.MppsInstance.sop_instance_uid == uid).exists():
                    raise MppsDuplicateError(f"MPPS {uid} already exists")
                row_id = m.MppsInstance.insert(sop_instance_uid=uid, calling_ae=calling_ae, created_at=now,
                                               updated_at=now, **self._columns(attributes)).execute()
                self._children(row_id, attributes)
        except pw.IntegrityError as exc:  # a concurrent N-CREATE of the same UID won
            raise MppsDuplicateError(f"MPPS {uid} already exists") from exc
        except pw.PeeweeException as exc:
            raise CatalogError(f"MPPS {uid}: {exc}") from exc
        log.info("MPPS %s created by %r: IN PROGRESS", uid, calling_ae)
        self._report(uid, IN_PROGRESS, _steps(attributes))
        return uid

    # -- N-SET -----------------------------------------------------------------------------------------------

    def set(self, sop_instance_uid: str, modifications: Dataset, *, calling_ae: str | None = None) -> Dataset:
        """Update an MPPS instance (N-SET, PS3.4 F.7.2.2).

        Parameters
        ----------
        sop_instance_uid : str
            The Requested SOP Instance UID.
        modifications : Dataset
            The N-SET Modification List.
        calling_ae : str, optional
            Who set it (logged).

        Returns
        -------
        Dataset
            The instance's attributes after the update.

        Raises
        ------
        MppsNotFoundError, MppsFinalError, MppsAttributeError, CatalogError
        """
        uid = sop_instance_uid.rstrip("\0 ")
        m = self.catalog.models
        M = m.MppsInstance  # noqa: N806
        new_status = _text(modifications, "PerformedProcedureStepStatus")
        if new_status is not None and new_status.upper() not in STATUSES:
            raise MppsAttributeError(f"PerformedProcedureStepStatus: {new_status!r} is not one of "
                                     f"{', '.join(STATUSES)}")
        try:
            with self.catalog._write():
                row = M.get_or_none(M.sop_instance_uid == uid)
                if row is None:
                    raise MppsNotFoundError(f"MPPS {uid} is not known")
                if row.status in FINAL_STATUSES:
                    raise MppsFinalError(f"MPPS {uid} is {row.status} and may no longer be updated")
                ds = Dataset.from_json(row.attributes_json)
                for elem in modifications:
                    ds[elem.tag] = elem  # PS3.7 10.1.3: a named attribute (a sequence as a whole) is replaced
                columns = self._columns(ds)
                M.update(updated_at=_now(), **columns).where(M.id == row.id).execute()
                m.MppsStep.delete().where(m.MppsStep.mpps == row.id).execute()
                m.MppsSeries.delete().where(m.MppsSeries.mpps == row.id).execute()
                self._children(row.id, ds)
        except pw.PeeweeException as exc:
            raise CatalogError(f"MPPS {uid}: {exc}") from exc
        status = columns["status"]
        log.info("MPPS %s set by %r: %s", uid, calling_ae, status)
        if new_status is not None:
            self._report(uid, status, _steps(ds))
        return ds

    def _report(self, uid: str, status: str, steps: list[MppsStepRef]) -> None:
        """Tell the worklist that the scheduled steps of ``uid`` started or ended (after the MPPS commit)."""
        callback = self._step_status or worklist_step_status(self.catalog)
        if callback is None:
            log.warning("MPPS %s is %s but no worklist is installed to update", uid, status)
            return
        for step in steps:
            try:
                changed = callback(status, step)
            except Exception:  # the MPPS is committed; a worklist failure must not undo or fail it
                log.exception("worklist update for MPPS %s step %s failed", uid, step.scheduled_procedure_step_id)
                continue
            if not changed:
                log.warning("MPPS %s (%s): no worklist step matches accession %r, step %r", uid, status,
                            step.accession_number, step.scheduled_procedure_step_id)

    # -- storage helpers -------------------------------------------------------------------------------------

    @staticmethod
    def _columns(ds: Dataset) -> dict[str, Any]:
        start = "".join(x for x in (_text(ds, "PerformedProcedureStepStartDate"),
                                    _text(ds, "PerformedProcedureStepStartTime")) if x)
        end = "".join(x for x in (_text(ds, "PerformedProcedureStepEndDate"),
                                  _text(ds, "PerformedProcedureStepEndTime")) if x)
        return {
            "status": (_text(ds, "PerformedProcedureStepStatus") or IN_PROGRESS).upper(),
            "patient_id": _text(ds, "PatientID"), "patient_name": _text(ds, "PatientName"),
            "performed_procedure_step_id": _text(ds, "PerformedProcedureStepID"),
            "performed_station_ae": _text(ds, "PerformedStationAETitle"), "modality": _text(ds, "Modality"),
            "start_date": start[:8] or None, "start_time": start[8:] or None,
            "end_date": end[:8] or None, "end_time": end[8:] or None,
            "attributes_json": json.dumps(ds.to_json_dict(), separators=(",", ":")),
        }

    def _children(self, mpps_id: int, ds: Dataset) -> None:
        m = self.catalog.models
        steps = _steps(ds)
        if steps:
            m.MppsStep.insert_many([
                {"mpps": mpps_id, "study_instance_uid": s.study_instance_uid, "accession_number": s.accession_number,
                 "requested_procedure_id": s.requested_procedure_id,
                 "scheduled_procedure_step_id": s.scheduled_procedure_step_id} for s in steps]).execute()
        series = _series(ds)
        if series:
            m.MppsSeries.insert_many([
                {"mpps": mpps_id, "series_instance_uid": s.series_instance_uid,
                 "sop_instance_uids": "\\".join(s.sop_instance_uids)} for s in series]).execute()

    # -- reads -----------------------------------------------------------------------------------------------

    def get(self, sop_instance_uid: str) -> MppsRecord | None:
        """One MPPS instance with its steps and series (three queries), or ``None``."""
        m = self.catalog.models
        with self.catalog._connection():
            row = m.MppsInstance.get_or_none(m.MppsInstance.sop_instance_uid == sop_instance_uid)
            if row is None:
                return None
            steps = tuple(MppsStepRef(s.study_instance_uid, s.accession_number, s.requested_procedure_id,
                                      s.scheduled_procedure_step_id)
                          for s in m.MppsStep.select().where(m.MppsStep.mpps == row.id).order_by(m.MppsStep.id))
            series = tuple(MppsSeriesRef(s.series_instance_uid, tuple(x for x in s.sop_instance_uids.split("\\") if x))
                           for s in m.MppsSeries.select().where(m.MppsSeries.mpps == row.id)
                           .order_by(m.MppsSeries.id))
        return MppsRecord(row.sop_instance_uid, row.status, row.calling_ae, row.patient_id, row.patient_name,
                          row.performed_procedure_step_id, row.modality,
                          "".join(x for x in (row.start_date, row.start_time) if x) or None,
                          "".join(x for x in (row.end_date, row.end_time) if x) or None, steps, series,
                          row.created_at, row.updated_at)

    def attributes(self, sop_instance_uid: str) -> Dataset | None:
        """The complete attribute set of an instance, or ``None``."""
        M = self.catalog.models.MppsInstance  # noqa: N806
        with self.catalog._connection():
            text = M.select(M.attributes_json).where(M.sop_instance_uid == sop_instance_uid).scalar()
        return None if text is None else Dataset.from_json(text)

    def open_steps_for(self, *, accession_number: str | None = None,
                       study_instance_uid: str | None = None) -> list[str]:
        """Statuses of the MPPS instances naming an accession number or study (for reconciliation evidence)."""
        m = self.catalog.models
        S, M = m.MppsStep, m.MppsInstance  # noqa: N806
        conds = []
        if accession_number:
            conds.append(S.accession_number == accession_number)
        if study_instance_uid:
            conds.append(S.study_instance_uid == study_instance_uid)
        if not conds:
            return []
        cond = conds[0] if len(conds) == 1 else (conds[0] | conds[1])
        with self.catalog._connection():
            return [r[0] for r in M.select(M.status).join(S, on=(S.mpps == M.id)).where(cond).tuples()]


__all__ = ["COMPLETED", "DISCONTINUED", "FINAL_STATUSES", "IN_PROGRESS", "STATUSES", "MppsAttributeError",
           "MppsDuplicateError", "MppsError", "MppsFinalError", "MppsNotFoundError", "MppsRecord", "MppsSeriesRef",
           "MppsService", "MppsStepRef", "worklist_step_status"]
