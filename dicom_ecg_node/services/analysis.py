"""The serial-analysis use case: measure every stored ECG, compare it with the patient's prior ECG, report it.

:class:`AnalysisService` runs one bounded background worker thread per node process. The C-STORE path only
drops a hint (the SOP Instance UID) into a bounded queue after the catalog commit (an
:attr:`~dicom_ecg_node.services.ingest.IngestService.listeners` callback), so the C-STORE response never waits
for, and never fails because of, the analysis.

The catalog is the queue
    What is still to analyse is derived from the catalog (:func:`dicom_ecg_node.catalog.analysis.pending_instances`):
    ECG instances without a current analysis row. A hint lost to a full queue, a crash or a restart therefore loses
    nothing: the worker scans the catalog when it starts, whenever a hint was dropped, and every few idle minutes.
    Work is claimed in the catalog, so several worker processes never report the same ECG twice.
The prior
    ``analysis_prior = "most-recent"``: the patient's (Patient ID + Issuer) previous *measurable* ECG in true UTC
    order (``acquisition_utc``; undated ECGs have no place in a series and are measured only). An ECG that cannot
    be measured is skipped over rather than blocking the series.
Late arrivals
    When an ECG is measured, the patient's next measured ECG (in UTC order) is re-compared if its prior was
    another one: an older ECG arriving late slots into the series, and the one after it is compared with it
    instead (new flags, and a new SR when flags changed, with the earlier report in Predecessor Documents). Any
    order of arrival converges to the same comparisons.
Reports
    ``analysis_sr``: ``"changes"`` (default) writes a Comprehensive SR (PS3.16 TID 3700, :mod:`.sr`) when a rule
    flagged a change, or when it replaces an earlier report of the same ECG; ``"compared"`` whenever there is a
    prior; ``"off"`` never. The SR is stored through :meth:`IngestService.store` (archive + catalog, sender AE =
    the node's AE), in the ECG's study.
Priority
    The worker thread asks Linux for a lower scheduling priority (nice +10 for the thread only), so that it uses
    the CPU that the association threads leave.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite

from dicom_ecg_node import __version__
from dicom_ecg_node.analysis import EcgMeasurements, LeadMeasurements, evaluate, measure
from dicom_ecg_node.catalog.analysis import (
    MEASUREMENT_FIELDS,
    AnalysisRow,
    AnalysisTarget,
    FlagData,
    all_instances,
    analysis_target,
    claim,
    get_analysis,
    measured_neighbours,
    pending_instances,
    save_comparison,
    save_failure,
    save_measurements,
    set_report,
)
from dicom_ecg_node.config import NodeConfig, parse_analysis_thresholds
from dicom_ecg_node.errors import EcgNodeError
from dicom_ecg_node.services.ingest import IngestService, StoreOutcome
from dicom_ecg_node.services.sr import ReportFlag, ReportReference, build_ecg_report
from dicom_ecg_node.waveform import decode

log = logging.getLogger("dicom_ecg_node.analysis")

_PREFIX = "1.2.840.10008.5.1.4.1.1."
#: Resting ECG classes that are measured: 12-lead, General and General 32-bit ECG. Ambulatory ECGs (hours long,
#: 9.1.3) are not resting ECGs; the rules of issue 6 do not apply to them.
ANALYSED_CLASSES: tuple[str, ...] = (_PREFIX + "9.1.1", _PREFIX + "9.1.2", _PREFIX + "9.1.4")
#: Recorded with every analysis row.
ALGORITHM = f"dicom-ecg-node {__version__}"
#: A claim older than this belongs to a process that died.
STALE_CLAIM = timedelta(minutes=10)
#: Idle seconds between two catalog scans for missed work.
RESCAN_IDLE_S = 300.0


@dataclass(frozen=True, slots=True)
class AnalysisOutcome:
    """What :meth:`AnalysisService.analyse` did with one instance.

    Attributes
    ----------
    sop_instance_uid : str
    status : {"done", "failed", "skipped"}
        ``skipped``: not an analysed class, unknown, already current, or claimed by another process.
    detail : str
        The error for ``failed``, the reason for ``skipped``.
    prior_sop_instance_uid : str or None
    flags : tuple of str
        Rules that flagged.
    sr_sop_instance_uid : str or None
        The report written, if any.
    recompared : tuple of str
        Later ECGs of the patient compared again because this one slotted in before them.
    """

    sop_instance_uid: str
    status: str
    detail: str = ""
    prior_sop_instance_uid: str | None = None
    flags: tuple[str, ...] = ()
    sr_sop_instance_uid: str | None = None
    recompared: tuple[str, ...] = ()


def measurements_from_row(row: AnalysisRow) -> EcgMeasurements:
    """Rebuild :class:`EcgMeasurements` (without the median beat) from a stored analysis row."""
    m = row.measurements
    return EcgMeasurements(
        heart_rate_bpm=m["heart_rate_bpm"], rr_ms=m["rr_ms"], pr_ms=m["pr_ms"], qrs_ms=m["qrs_ms"],
        qt_ms=m["qt_ms"], qtc_ms=m["qtc_ms"], qtc_formula=m["qtc_formula"] or "bazett",
        qtc_bazett_ms=m["qtc_bazett_ms"], qtc_fridericia_ms=m["qtc_fridericia_ms"], axis_deg=m["axis_deg"],
        source=m["source"] or "", beats_used=int(m["beats_used"] or 0), beats_rejected=int(m["beats_rejected"] or 0),
        leads={name: LeadMeasurements(**values) for name, values in row.leads.items()}, notes=row.notes,
        patient_sex=m["patient_sex"], patient_age_years=m["patient_age_years"])


def _lower_thread_priority() -> None:
    """Nice +10 for the calling thread only (Linux: a thread is a task with its own nice value)."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


class AnalysisService:
    """Measure, compare and report stored ECGs, in a background thread or on demand.

    Parameters
    ----------
    config : NodeConfig
        ``analysis_*`` settings and the node's AE title.
    ingest : IngestService
        Its catalog and archive are read; SR reports are stored through it.
    queue_size : int
        Capacity of the hint queue; a hint that does not fit triggers a catalog scan instead.
    """

    def __init__(self, config: NodeConfig, ingest: IngestService, *, queue_size: int = 256) -> None:
        self.config = config
        self.ingest = ingest
        self.catalog = ingest.catalog
        self.archive = ingest.archive
        self.thresholds: Mapping[str, float] = parse_analysis_thresholds(config.analysis_thresholds)
        self.token = f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._hints: queue.Queue[str | None] = queue.Queue(maxsize=queue_size)
        self._rescan = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one analysis at a time per service

    # -- background worker -------------------------------------------------------------------------------------

    def listener(self, outcome: StoreOutcome) -> None:
        """Store listener: hint the worker about a newly stored ECG; never blocks, never raises."""
        if outcome.status == "duplicate" or outcome.sop_class_uid not in ANALYSED_CLASSES:
            return
        try:
            self._hints.put_nowait(outcome.sop_instance_uid)
        except queue.Full:
            self._rescan.set()  # the catalog still says it is pending

    def start(self) -> None:
        """Start the worker; it first scans the catalog for ECGs left unanalysed (e.g. by a restart)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._rescan.set()
        self._thread = threading.Thread(target=self._run, name="ecg-node-analysis", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the ECG in progress; what is still queued stays pending in the catalog."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._hints.put_nowait(None)
        thread.join(timeout)
        if thread.is_alive():
            log.warning("analysis worker still busy after %.0f s; left behind (it is a daemon thread)", timeout)

    def _run(self) -> None:
        _lower_thread_priority()
        idle_since = time.monotonic()
        while not self._stop.is_set():
            uids: list[str] = []
            try:
                if self._rescan.is_set() or time.monotonic() - idle_since > RESCAN_IDLE_S:
                    self._rescan.clear()
                    uids = pending_instances(self.catalog, ANALYSED_CLASSES,
                                             stale_before=datetime.now(UTC) - STALE_CLAIM)
                    if len(uids) >= 500:
                        self._rescan.set()  # more than one batch
                else:
                    try:
                        first = self._hints.get(timeout=0.5)
                    except queue.Empty:
                        continue
                    if first is not None:
                        uids.append(first)
                    while len(uids) < 200:  # drain what arrived meanwhile
                        try:
                            more = self._hints.get_nowait()
                        except queue.Empty:
                            break
                        if more is not None:
                            uids.append(more)
            except EcgNodeError as exc:
                log.error("analysis worker: catalog unavailable: %s", exc)
                self._stop.wait(5.0)
                self._rescan.set()
                continue
            for uid in dict.fromkeys(uids):
                if self._stop.is_set():
                    return
                try:
                    self.analyse(uid)
                except Exception:  # a bug must not end the worker; the instance stays pending
                    log.exception("analysis of %s failed unexpectedly", uid)
            idle_since = time.monotonic()

    # -- one instance ------------------------------------------------------------------------------------------

    def analyse(self, sop_instance_uid: str, *, force: bool = False) -> AnalysisOutcome:
        """Measure one ECG, compare it with its prior, report it, and re-compare the next ECG if needed.

        Parameters
        ----------
        sop_instance_uid : str
            A catalogued instance.
        force : bool
            Re-measure even when a current analysis exists (``ecg-node analyse``).

        Returns
        -------
        AnalysisOutcome

        Raises
        ------
        CatalogError
            The catalog failed (the instance stays pending).
        """
        with self._lock:
            return self._analyse(sop_instance_uid, force)

    def _analyse(self, uid: str, force: bool) -> AnalysisOutcome:
        target = analysis_target(self.catalog, uid)
        if target is None:
            return AnalysisOutcome(uid, "skipped", "not in the catalog")
        if target.sop_class_uid not in ANALYSED_CLASSES:
            return AnalysisOutcome(uid, "skipped", "not a resting ECG class")
        if not claim(self.catalog, target, self.token, stale_before=datetime.now(UTC) - STALE_CLAIM, force=force):
            return AnalysisOutcome(uid, "skipped", "already analysed or being analysed")
        try:
            ds = pydicom.dcmread(io.BytesIO(self.archive.read(target.path)))
            measured = measure(decode(ds, default_zone=self.config.zone),
                               qtc_formula=self.config.analysis_qtc_formula)
        except (EcgNodeError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
            save_failure(self.catalog, target, self.token, f"{type(exc).__name__}: {exc}", ALGORITHM)
            log.info("analysis of %s: not measurable: %s", uid, exc)
            return AnalysisOutcome(uid, "failed", str(exc))
        values = {name: getattr(measured, name) for name in MEASUREMENT_FIELDS}
        leads = {name: dataclasses.asdict(lm) for name, lm in measured.leads.items()}
        if not save_measurements(self.catalog, target, self.token, values, leads, measured.notes, ALGORITHM):
            return AnalysisOutcome(uid, "skipped", "claim taken over by another process")
        prior, successor = measured_neighbours(self.catalog, target, ANALYSED_CLASSES)
        result = self._compare(target, measured, values, leads, prior, ds)
        recompared: list[str] = []
        if successor is not None:
            row = get_analysis(self.catalog, successor.sop_instance_uid)
            if row is not None and row.prior_sop_instance_uid != uid:
                self._compare(successor, measurements_from_row(row), row.measurements, row.leads, target, None,
                              expected_prior=row.prior_sop_instance_uid)
                recompared.append(successor.sop_instance_uid)
        log.info("analysed %s: prior %s, flags %s%s", uid, result.prior_sop_instance_uid or "none",
                 ",".join(result.flags) or "none", f", re-compared {recompared[0]}" if recompared else "")
        return dataclasses.replace(result, recompared=tuple(recompared))

    def _compare(self, target: AnalysisTarget, current: EcgMeasurements, values: Mapping[str, Any],
                 leads: Mapping[str, Mapping[str, float | None]], prior: AnalysisTarget | None,
                 source: Dataset | None, *, expected_prior: str | bool | None = False) -> AnalysisOutcome:
        """Compare ``target`` with ``prior`` (``None``: no prior), store the flags and write the report."""
        uid = target.sop_instance_uid
        if prior is None:
            save_comparison(self.catalog, target, None, [], {}, expected_prior=expected_prior)
            return AnalysisOutcome(uid, "done")
        prior_row = get_analysis(self.catalog, prior.sop_instance_uid)
        if prior_row is None:
            return AnalysisOutcome(uid, "done", "prior vanished")
        comparison = evaluate(current, measurements_from_row(prior_row), thresholds=self.thresholds)
        flags = [FlagData(f.rule, f.leads, dict(f.values), dict(f.threshold), f.source, f.detail)
                 for f in comparison.flags]
        before = get_analysis(self.catalog, uid)
        if not save_comparison(self.catalog, target, prior.sop_instance_uid, flags, comparison.not_evaluated,
                               expected_prior=expected_prior):
            return AnalysisOutcome(uid, "skipped", "re-compared concurrently")
        sr_uid = self._report(target, values, leads, prior, flags, before, source)
        return AnalysisOutcome(uid, "done", "", prior.sop_instance_uid, tuple(f.rule for f in flags), sr_uid)

    def _report(self, target: AnalysisTarget, values: Mapping[str, Any],
                leads: Mapping[str, Mapping[str, float | None]], prior: AnalysisTarget, flags: list[FlagData],
                before: AnalysisRow | None, source: Dataset | None) -> str | None:
        """Write the SR when the configuration asks for it; returns its SOP Instance UID."""
        mode = self.config.analysis_sr
        previous = before.sr_sop_instance_uid if before is not None else None
        if mode == "off" or (mode == "changes" and not flags and previous is None):
            return None
        if before is not None and previous is not None and before.prior_sop_instance_uid == prior.sop_instance_uid \
                and [f.rule for f in before.flags] == [f.rule for f in flags]:
            return previous  # the same comparison already has its report (a re-measure with the same outcome)
        try:
            if source is None:
                source = pydicom.dcmread(io.BytesIO(self.archive.read(target.path)), stop_before_pixels=True)
            pred = analysis_target(self.catalog, previous) if previous else None
            report = build_ecg_report(
                source, current=_reference(target), measurements=values, leads=leads, prior=_reference(prior),
                flags=[ReportFlag(f.rule, f.leads, f.values, f.threshold, f.source, f.detail) for f in flags],
                observer_aet=self.config.aet, predecessor=None if pred is None else _reference(pred))
            buf = io.BytesIO()
            dcmwrite(buf, report, enforce_file_format=True)
            stored = self.ingest.store(buf.getvalue(), sender_ae=self.config.aet, sender_address="local")
        except EcgNodeError as exc:
            log.error("SR report for %s not stored: %s", target.sop_instance_uid, exc)
            return None
        set_report(self.catalog, target, stored.sop_instance_uid)
        return stored.sop_instance_uid

    # -- bulk --------------------------------------------------------------------------------------------------

    def analyse_all(self, *, force: bool = True,
                    progress: Callable[[AnalysisOutcome], None] | None = None) -> list[AnalysisOutcome]:
        """Re-measure every resting ECG in true UTC order (after an algorithm change).

        Parameters
        ----------
        force : bool
            Re-measure current analyses too (``False``: only pending ones).
        progress : callable, optional
            Called after each instance.
        """
        uids = all_instances(self.catalog, ANALYSED_CLASSES) if force else pending_instances(
            self.catalog, ANALYSED_CLASSES, stale_before=datetime.now(UTC) - STALE_CLAIM, limit=10**9)
        out = []
        for uid in uids:
            outcome = self.analyse(uid, force=force)
            out.append(outcome)
            if progress is not None:
                progress(outcome)
        return out

    def pending(self) -> list[str]:
        """ECGs still to analyse (from the catalog)."""
        return pending_instances(self.catalog, ANALYSED_CLASSES, stale_before=datetime.now(UTC) - STALE_CLAIM,
                                 limit=10**9)


def _reference(t: AnalysisTarget) -> ReportReference:
    return ReportReference(t.sop_class_uid, t.sop_instance_uid, t.series_instance_uid, t.study_instance_uid,
                           t.acquisition_utc)


__all__ = ["ANALYSED_CLASSES", "AnalysisOutcome", "AnalysisService", "measurements_from_row"]
