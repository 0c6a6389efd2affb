"""The viewing use case behind the web viewer: worklist, ECG detail, calibrated samples, layout, PDF, timeline.

Everything the web layer shows comes from here; it reads the catalog through :mod:`dicom_ecg_node.catalog` and
the archive through :class:`~dicom_ecg_node.archive.Archive`, decodes with :func:`dicom_ecg_node.waveform.decode`
and lays out with :mod:`dicom_ecg_node.render`, and never changes a stored object.

Node analysis
    The node's own measurements and serial-comparison flags come from an optional *analysis source* (see
    :class:`AnalysisSource`); without one only the cart's measurements are shown and no ECG is flagged.
Decoded recordings
    A small per-service LRU cache keeps the last few decoded recordings, since one ECG view asks for the
    metadata, the layout and the samples of the same object within a second.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from dicom_ecg_node.archive import Archive
from dicom_ecg_node.catalog import Catalog, InstanceDetail
from dicom_ecg_node.catalog import viewing as wl
from dicom_ecg_node.catalog.sql import TimelineEntry, fetch_timeline
from dicom_ecg_node.config import NodeConfig
from dicom_ecg_node.errors import NotFoundError
from dicom_ecg_node.waveform import CodedConcept, Measurement, Recording, decode

#: UCUM voltage units → factor to µV.
TO_MICROVOLT: dict[str, float] = {"nV": 1e-3, "uV": 1.0, "µV": 1.0, "mV": 1e3, "V": 1e6}


class AnalysisSource(Protocol):
    """Where the viewer reads the node's analysis of instances.

    ``results(uids)`` maps each analysed UID to an object with ``measurements`` (a mapping or an object with
    ``heart_rate_bpm``, ``pr_ms``, ``qrs_ms``, ``qt_ms``, ``qtc_ms``, ``axis_deg``; any may be ``None``) and
    ``flags`` (objects with ``rule`` and ``leads``, optionally ``detail``). :class:`CatalogAnalysis` reads the
    rows the analysis service writes.
    """

    def results(self, sop_instance_uids: Sequence[str]) -> Mapping[str, Any]:
        """The node's analyses of ``sop_instance_uids`` (absent keys: not analysed)."""


class CatalogAnalysis:
    """:class:`AnalysisSource` over the analysis rows in the catalog (``catalog.analysis``), two queries per call.

    Only measured analyses count; a failed or running one shows as "not analysed".
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def results(self, sop_instance_uids: Sequence[str]) -> Mapping[str, Any]:
        """See :class:`AnalysisSource`."""
        from dicom_ecg_node.catalog.analysis import analyses_for

        rows = analyses_for(self.catalog, list(sop_instance_uids)) if sop_instance_uids else {}
        return {uid: SimpleNamespace(measurements=SimpleNamespace(**{k: row.measurements.get(k) for k in _NODE_KEYS}),
                                     flags=row.flags)
                for uid, row in rows.items() if row.status in ("measured", "done")}


def default_analysis(catalog: Catalog) -> AnalysisSource | None:
    """:class:`CatalogAnalysis` when this installation has the analysis tables, else ``None``."""
    try:
        import dicom_ecg_node.catalog.analysis  # noqa: F401
    except ImportError:
        return None
    return CatalogAnalysis(catalog)


_NODE_KEYS = ("heart_rate_bpm", "pr_ms", "qrs_ms", "qt_ms", "qtc_ms", "axis_deg")


@dataclass(frozen=True, slots=True)
class EcgEntry:
    """A worklist entry: the catalog row plus the cart's and the node's measurements, flags and reviews.

    Attributes
    ----------
    row : WorklistRow
    cart : dict of str to float
        Global measurements the cart sent (``heart_rate_bpm``, ``pr_ms``, ``qrs_ms``, ``qt_ms``, ``qtc_ms``,
        ``p_axis_deg``, ``axis_deg``, ``t_axis_deg``), only those known.
    node : dict of str to float or None
        The node's measurements, ``None`` when the node has not analysed the ECG.
    flags : list of dict
        Serial-comparison flags (``rule``, ``leads``, ``description``).
    reviewed_by : list of (str, datetime or None)
    """

    row: wl.WorklistRow
    cart: dict[str, float]
    node: dict[str, float] | None
    flags: list[dict[str, Any]]
    reviewed_by: list[tuple[str, datetime | None]]


@dataclass(frozen=True, slots=True)
class GroupSamples:
    """One multiplex group's samples as the web API sends them.

    Attributes
    ----------
    data : numpy.ndarray
        float32, shape ``(n_channels, n_samples)`` (channel-major); µV for voltage channels, the channel's own
        units otherwise; NaN where a sample is missing (Waveform Padding Value).
    sampling_frequency : float
    units : list of str or None
        Per channel: ``"uV"`` when converted, else the unit as sent (``None``: uncalibrated).
    """

    data: npt.NDArray[np.float32]
    sampling_frequency: float
    units: list[str | None]


def _measurement_fields(measurements: Sequence[tuple[str, str, str, float, str | None]]) -> dict[str, float]:
    """Cart measurements (catalog tuples) → the printout's named global measurements."""
    from dicom_ecg_node.render.header import cart_measurements

    fake = SimpleNamespace(measurements=[Measurement(CodedConcept(code, scheme, meaning), value, units)
                                         for code, scheme, meaning, value, units in measurements])
    found = cart_measurements(fake)  # type: ignore[arg-type]
    return {k: v for k, v in ((f, getattr(found, f)) for f in found.__dataclass_fields__) if v is not None}


def _node_fields(measurements: Any) -> dict[str, float]:
    from dicom_ecg_node.render.header import from_node

    found = from_node(measurements)
    return {k: v for k, v in ((f, getattr(found, f)) for f in found.__dataclass_fields__) if v is not None}


def _flag_dict(flag: Any) -> dict[str, Any]:
    return {"rule": str(getattr(flag, "rule", flag)), "leads": [str(x) for x in getattr(flag, "leads", ()) or ()],
            "description": str(getattr(flag, "detail", "") or getattr(flag, "description", "") or "")}


class ViewerService:
    """Read-only views of the node's ECGs for the web viewer (plus per-user review marks).

    Parameters
    ----------
    config : NodeConfig
    catalog : Catalog
        An open, migrated catalog (shared with the ingest service in a single-process node).
    analysis : AnalysisSource, optional
        The node's measurements and comparison flags.
    cache_size : int
        Decoded recordings kept in memory.
    """

    def __init__(self, config: NodeConfig, catalog: Catalog, analysis: AnalysisSource | None = None,
                 cache_size: int = 8) -> None:
        self.config = config
        self.catalog = catalog
        self.analysis = analysis
        self.archive = Archive(config.data_dir)
        self._cache: OrderedDict[str, Recording] = OrderedDict()
        self._cache_size = max(1, cache_size)
        self._lock = threading.Lock()

    # -- worklist ----------------------------------------------------------------------------------------------

    def _entries(self, rows: list[wl.WorklistRow]) -> list[EcgEntry]:
        uids = [r.sop_instance_uid for r in rows]
        marks = wl.reviews(self.catalog, uids)
        results = self.analysis.results(uids) if self.analysis is not None and uids else {}
        out = []
        for r in rows:
            node: dict[str, float] | None = None
            flags: list[dict[str, Any]] = []
            result = results.get(r.sop_instance_uid)
            if result is not None:
                if getattr(result, "measurements", None) is not None:
                    node = _node_fields(result.measurements)
                flags = [_flag_dict(f) for f in getattr(result, "flags", ()) or ()]
            out.append(EcgEntry(r, _measurement_fields(r.measurements), node, flags,
                                marks.get(r.sop_instance_uid, [])))
        return out

    def worklist(self, *, patient_id: str | None = None, flagged: bool = False, unreviewed_by: str | None = None,
                 before_id: int | None = None, after_id: int | None = None, limit: int = 100) -> list[EcgEntry]:
        """Stored ECGs, newest first.

        Parameters
        ----------
        patient_id : str, optional
            Only this patient's ECGs.
        flagged : bool
            Only ECGs with at least one serial-comparison flag (none without an analysis source).
        unreviewed_by : str, optional
            Only ECGs this user has not marked as reviewed.
        before_id, after_id : int, optional
            Row-id window (``before_id`` pages back, ``after_id`` asks for what is new).
        limit : int
            At most this many entries (1-500).
        """
        limit = min(max(1, limit), 500)
        if not flagged:
            rows = wl.fetch_worklist(self.catalog, after_id=after_id, before_id=before_id, patient_id=patient_id,
                                     unreviewed_by=unreviewed_by, limit=limit)
            return self._entries(rows)
        if self.analysis is None:
            return []
        found: list[EcgEntry] = []
        cursor = before_id
        for _ in range(20):  # flags live outside the catalog: page through a bounded number of rows
            rows = wl.fetch_worklist(self.catalog, after_id=after_id, before_id=cursor, patient_id=patient_id,
                                     unreviewed_by=unreviewed_by, limit=limit)
            found.extend(e for e in self._entries(rows) if e.flags)
            if len(found) >= limit or len(rows) < limit:
                break
            cursor = rows[-1].row_id
        return found[:limit]

    def new_since(self, row_id: int, limit: int = 100) -> list[EcgEntry]:
        """ECGs stored after row ``row_id``, oldest first (what an event stream has not sent yet)."""
        return self._entries(wl.fetch_worklist(self.catalog, after_id=row_id, newest_first=False, limit=limit))

    def latest_row_id(self) -> int:
        """The newest ECG's row id (0 when none)."""
        return wl.latest_row_id(self.catalog)

    def entry(self, sop_instance_uid: str) -> EcgEntry:
        """One ECG's worklist entry.

        Raises
        ------
        NotFoundError
            No stored waveform has this UID.
        """
        rows = wl.fetch_worklist(self.catalog, uids=[sop_instance_uid], limit=1)
        if not rows:
            raise NotFoundError(f"no stored ECG has SOP Instance UID {sop_instance_uid}")
        return self._entries(rows)[0]

    def set_reviewed(self, sop_instance_uid: str, username: str, reviewed: bool = True) -> None:
        """Mark (or unmark) an ECG as reviewed by ``username``.

        Raises
        ------
        NotFoundError
            No stored waveform has this UID.
        """
        self.entry(sop_instance_uid)
        wl.set_reviewed(self.catalog, sop_instance_uid, username, reviewed)

    # -- one ECG -----------------------------------------------------------------------------------------------

    def detail(self, sop_instance_uid: str) -> InstanceDetail:
        """The catalog's detail of an instance.

        Raises
        ------
        NotFoundError
        """
        detail = self.catalog.get_instance(sop_instance_uid)
        if detail is None:
            raise NotFoundError(f"SOP Instance UID {sop_instance_uid} is not in the catalog")
        return detail

    def recording(self, sop_instance_uid: str) -> Recording:
        """The decoded recording of a stored waveform (cached).

        Raises
        ------
        NotFoundError
            Unknown UID.
        WaveformError, ArchiveError
            The archived file cannot be read or decoded.
        """
        with self._lock:
            rec = self._cache.get(sop_instance_uid)
            if rec is not None:
                self._cache.move_to_end(sop_instance_uid)
                return rec
        entry = self.catalog.find_instance_file(sop_instance_uid)
        if entry is None:
            raise NotFoundError(f"SOP Instance UID {sop_instance_uid} is not in the catalog")
        rec = decode(self.archive.read(entry.path), default_zone=self.config.zone)
        with self._lock:
            self._cache[sop_instance_uid] = rec
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return rec

    def samples(self, sop_instance_uid: str, group_index: int) -> GroupSamples:
        """Calibrated samples of one multiplex group, voltages converted to µV (see :class:`GroupSamples`).

        Raises
        ------
        NotFoundError
            Unknown UID or group index.
        """
        rec = self.recording(sop_instance_uid)
        if not 0 <= group_index < len(rec.groups):
            raise NotFoundError(f"{sop_instance_uid} has no multiplex group {group_index}")
        group = rec.groups[group_index]
        out = np.empty((group.n_channels, group.n_samples), dtype=np.float32)
        units: list[str | None] = []
        for i, ch in enumerate(group.channels):
            factor = TO_MICROVOLT.get((ch.units or "").strip())
            out[i] = group.samples[:, i] * (factor if factor is not None else 1.0)
            units.append("uV" if factor is not None else ch.units)
        return GroupSamples(out, float(group.sampling_frequency), units)

    def analysis_of(self, sop_instance_uid: str) -> Any | None:
        """The analysis source's result for an instance, or ``None``."""
        if self.analysis is None:
            return None
        return self.analysis.results([sop_instance_uid]).get(sop_instance_uid)

    def layout(self, sop_instance_uid: str, options: Any) -> Any:
        """The printout's millimetre :class:`~dicom_ecg_node.render.Page` of an ECG (see :func:`layout_ecg`)."""
        from dicom_ecg_node.render import layout_ecg

        result = self.analysis_of(sop_instance_uid)
        return layout_ecg(self.recording(sop_instance_uid), options,
                          node_measurements=getattr(result, "measurements", None),
                          flags=tuple(getattr(result, "flags", ()) or ()))

    def pdf(self, sop_instance_uid: str, options: Any, *, with_prior: bool = False) -> bytes:
        """A vector PDF of the ECG (plus the serial overlay page when asked and a prior with median beats exists)."""
        from dicom_ecg_node.render import RenderError, to_pdf

        pages = [self.layout(sop_instance_uid, options)]
        if with_prior:
            try:
                overlay = self.overlay(sop_instance_uid, options)
            except (NotFoundError, RenderError):
                overlay = None
            if overlay is not None:
                pages.append(overlay)
        return to_pdf(pages)

    def prior_uid(self, sop_instance_uid: str) -> str | None:
        """The same patient's previous ECG in true time order, or ``None``.

        Raises
        ------
        NotFoundError
        """
        detail = self.detail(sop_instance_uid)
        timeline = [e for e in fetch_timeline(self.catalog, detail.summary.patient_id)
                    if e.sop_class_uid.startswith(wl.WAVEFORM_CLASS_PREFIX)]
        uids = [e.sop_instance_uid for e in timeline]
        if sop_instance_uid not in uids:
            return None
        i = uids.index(sop_instance_uid)
        return uids[i - 1] if i > 0 else None

    def overlay(self, sop_instance_uid: str, options: Any) -> Any | None:
        """The serial overlay page (current and prior median beats), or ``None`` without a prior.

        Raises
        ------
        RenderError
            One of the two has no median beats.
        """
        from dicom_ecg_node.render import layout_overlay

        prior = self.prior_uid(sop_instance_uid)
        if prior is None:
            return None
        result = self.analysis_of(sop_instance_uid)
        flags = tuple(getattr(result, "flags", ()) or ())
        changed = sorted({str(lead) for f in flags for lead in (getattr(f, "leads", ()) or ())})
        return layout_overlay(self.recording(sop_instance_uid), self.recording(prior), options,
                              changed_leads=changed, flags=flags)

    # -- patient -----------------------------------------------------------------------------------------------

    def timeline(self, patient_id: str) -> list[tuple[TimelineEntry, EcgEntry | None]]:
        """A patient's ECGs in true (UTC) time order, each with its worklist entry (measurements, flags)."""
        entries = [e for e in fetch_timeline(self.catalog, patient_id)
                   if e.sop_class_uid.startswith(wl.WAVEFORM_CLASS_PREFIX)]
        rows = wl.fetch_worklist(self.catalog, uids=[e.sop_instance_uid for e in entries], limit=max(1, len(entries)))
        by_uid = {e.row.sop_instance_uid: e for e in self._entries(rows)}
        return [(e, by_uid.get(e.sop_instance_uid)) for e in entries]


__all__ = ["TO_MICROVOLT", "AnalysisSource", "CatalogAnalysis", "EcgEntry", "GroupSamples", "ViewerService",
           "default_analysis"]
