"""Wiring of the derived work of stored instances (reconciliation, then the device-clock observation).

One process runs it for a node: the serving process itself (``workers = 1``: store listener + catalog catch-up,
:class:`~dicom_ecg_node.services.dispatch.StoreDispatcher`), or, with worker processes, the parent, which polls the
catalog and waits for a lull in the stores (at most :data:`~dicom_ecg_node.services.dispatch.LULL_MAX_S`). Why the
parent: a worker's Python threads share one GIL, so derived work run beside the stores of the same worker delayed
each C-STORE response by about as much as it ran (measured here: ~1.2 ms of GIL per stored ECG). The parent is
otherwise idle and has its own interpreter; the catalog is the journal either way
(:func:`~dicom_ecg_node.services.clocks.unobserved_instances`), so nothing depends on which process stored.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dicom_ecg_node.errors import CatalogError
from dicom_ecg_node.services.clocks import ClockService, HeaderReader, is_observed, unobserved_instances
from dicom_ecg_node.services.dispatch import StoreDispatcher
from dicom_ecg_node.services.reconcile import ReconcileService

if TYPE_CHECKING:
    from dicom_ecg_node.archive import Archive
    from dicom_ecg_node.catalog import Catalog
    from dicom_ecg_node.config import NodeConfig
    from dicom_ecg_node.services.ingest import StoreOutcome

log = logging.getLogger("dicom_ecg_node.derived")

#: Seconds between the parent's looks at the catalog for instances the workers stored.
POLL_S = 0.25
#: Stored instances between two looks at the catalog's planner statistics (:meth:`Catalog.refresh_statistics`).
STATISTICS_EVERY = 1000


class StatisticsRefresher:
    """Store listener: every :data:`STATISTICS_EVERY` instances, refresh the catalog's planner statistics if stale.

    The look is two small queries; ``ANALYZE`` itself runs only when the catalog has doubled since the last one.
    Connections already open keep the statistics they loaded until the pool recycles them (within the hour).

    Parameters
    ----------
    catalog : Catalog
    every : int
    """

    def __init__(self, catalog: Catalog, every: int = STATISTICS_EVERY) -> None:
        self.catalog = catalog
        self.every = every
        self._seen = 0

    def __call__(self, outcome: StoreOutcome) -> None:
        """Count ``outcome``; on every ``every``-th, refresh (a failure is logged, the next look retries)."""
        self._seen += 1
        if self._seen % self.every == 0:
            refresh_statistics(self.catalog)


def refresh_statistics(catalog: Catalog) -> bool:
    """:meth:`Catalog.refresh_statistics`, logged; a catalog error is logged and answered ``False``."""
    start = time.perf_counter()
    try:
        ran = catalog.refresh_statistics()
    except CatalogError as exc:
        log.warning("catalog statistics not refreshed: %s", exc)
        return False
    if ran:
        log.info("catalog planner statistics refreshed (ANALYZE) in %.2f s", time.perf_counter() - start)
    return ran


@dataclass
class DerivedWork:
    """The services of the derived work and the dispatcher that runs them.

    Attributes
    ----------
    clocks : ClockService
    reconcile : ReconcileService
    dispatcher : StoreDispatcher
    """

    clocks: ClockService
    reconcile: ReconcileService
    dispatcher: StoreDispatcher


def derived_work(catalog: Catalog, archive: Archive, config: NodeConfig, *, poll: bool = False) -> DerivedWork:
    """Build the derived work of a node.

    Parameters
    ----------
    catalog : Catalog
        The node's open catalog.
    archive : Archive
        Where the stored files are (the clock observation reads their headers).
    config : NodeConfig
        Node settings (zones, clock thresholds, reconciliation).
    poll : bool
        ``False``: the serving process queues its own stores (add ``dispatcher.listener`` to the ingest
        listeners) and catches up at start. ``True``: the parent of worker processes, which finds every store in
        the catalog, every :data:`POLL_S` seconds.

    Returns
    -------
    DerivedWork
        Not started.
    """
    from dicom_ecg_node.services.ingest import StoreOutcome

    headers = HeaderReader()  # reconciliation and the clock observation read each stored file's header once
    clocks = ClockService(catalog, config, headers)
    reconcile = ReconcileService(catalog, config, headers)

    def pending(after: int, before: Any, limit: int) -> list[tuple[int, StoreOutcome]]:
        return [(r.id, StoreOutcome("stored", r.sop_class_uid, r.sop_instance_uid, r.study_instance_uid,
                                    archive.resolve(r.path), r.size, r.sha256, (), 0.0))
                for r in unobserved_instances(catalog, after_id=after, received_before=before, limit=limit)]

    def is_pending(outcome: StoreOutcome) -> bool:
        return not is_observed(catalog, outcome.sop_instance_uid)

    dispatcher = StoreDispatcher(
        # Reconciliation first; the clock observation's row marks the work done (see unobserved_instances).
        [reconcile.on_store, clocks.observe, StatisticsRefresher(catalog)], pending=pending, is_pending=is_pending,
        poll_s=POLL_S if poll else None, probe=(lambda: _catalog_version(catalog)) if poll else None,
        activity=(lambda: _newest_instance(catalog)) if poll else None,
        lock_path=Path(config.data_dir) / ".derived-work.lock")
    return DerivedWork(clocks, reconcile, dispatcher)


def _newest_instance(catalog: Catalog) -> Any:
    """The highest instance id: the dispatcher waits while it keeps changing (stores arriving)."""
    import peewee as pw

    m = catalog.models
    with catalog._connection():
        return m.Instance.select(pw.fn.MAX(m.Instance.id)).scalar()


def _catalog_version(catalog: Catalog) -> tuple[Any, ...]:
    """Changes whenever an instance is stored or observed: a poll that sees the same value has nothing to do."""
    import peewee as pw

    m = catalog.models
    with catalog._connection():
        return _newest_instance(catalog), m.ClockObservation.select(pw.fn.MAX(m.ClockObservation.id)).scalar()


__all__ = ["POLL_S", "STATISTICS_EVERY", "DerivedWork", "StatisticsRefresher", "derived_work", "refresh_statistics"]
