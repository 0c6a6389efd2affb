"""Derived work after the C-STORE response (services/dispatch.py): never on the store path, never lost.

The clock observation and the reconciliation assessment run in the node's background dispatcher. A C-STORE is
answered while they are blocked; what a crash, a stopped dispatcher or a full queue left undone is caught up from
the catalog when a node starts on the same data directory. Waits are bounded polls, never blind sleeps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from helpers import make_config
from pynetdicom import AE

from dicom_ecg_node.net.server import DicomNode
from dicom_ecg_node.services.clocks import is_observed, unobserved_instances
from dicom_ecg_node.services.dispatch import StoreDispatcher
from dicom_ecg_node.services.ingest import IngestService, StoreOutcome
from dicom_ecg_node.waveform.synth import ecg_to_bytes, synthesize_ecg

TWELVE_LEAD = "1.2.840.10008.5.1.4.1.1.9.1.1"


def poll(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Re-check ``predicate`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not true after {timeout:.0f} s"
        pause.wait(0.02)


def ecg(patient_id: str) -> bytes:
    ds = synthesize_ecg(acquisition_datetime=datetime.now(UTC), duration_s=2.0, annotations=False,
                        patient_id=patient_id, device_serial_number="SN-D")
    ds.InstanceCreationDate = datetime.now(UTC).strftime("%Y%m%d")
    ds.InstanceCreationTime = datetime.now(UTC).strftime("%H%M%S.%f")
    return ecg_to_bytes(ds)


def store_all(ingest: IngestService, count: int, prefix: str = "DISP") -> list[str]:
    """Store ``count`` ECGs of unknown patients (each is queued for review: a visible assessment)."""
    return [ingest.store(ecg(f"{prefix}{i}"), sender_ae="CARTD", sender_address="127.0.0.1").sop_instance_uid
            for i in range(count)]


def derived_done(ingest: IngestService, uids: list[str]) -> bool:
    """Every instance has its clock observation and its review-queue entry."""
    m = ingest.catalog.models
    with ingest.catalog._connection():
        observed = m.ClockObservation.select().where(m.ClockObservation.sop_instance_uid.in_(uids)).count()
        assessed = m.ReconcileItem.select().where(m.ReconcileItem.sop_instance_uid.in_(uids)).count()
    return observed == len(uids) and assessed == len(uids)


def device_total(ingest: IngestService) -> int:
    D = ingest.catalog.models.DeviceClock  # noqa: N806
    with ingest.catalog._connection():
        return int(D.select(D.total).where(D.ae_title == "CARTD").scalar() or 0)


def test_c_store_is_answered_while_the_derived_work_is_blocked(node, tmp_path: Path) -> None:
    gate, entered = threading.Event(), threading.Event()

    def blocked(outcome: StoreOutcome) -> None:
        entered.set()
        assert gate.wait(30.0)

    dispatcher = node.node.dispatcher
    dispatcher.listeners.insert(0, blocked)
    try:
        path = tmp_path / "one.dcm"
        path.write_bytes(ecg("GATED1"))
        ae = AE(ae_title="CARTD")
        ae.add_requested_context(TWELVE_LEAD)
        assoc = ae.associate(node.host, node.port, ae_title=node.aet)
        assert assoc.is_established
        try:
            status = assoc.send_c_store(path)
        finally:
            assoc.release()
        assert status.Status == 0x0000  # answered: stored, although the derived work has not run
        poll(entered.is_set, what="derived work started")
        uid = _only_uid(node.ingest)
        assert not is_observed(node.ingest.catalog, uid)
        assert not derived_done(node.ingest, [uid])
    finally:
        gate.set()
    poll(lambda: derived_done(node.ingest, [uid]), what="clock observation and assessment")
    assert dispatcher.wait_idle(30.0)


def _only_uid(ingest: IngestService) -> str:
    I = ingest.catalog.models.Instance  # noqa: N806, E741
    with ingest.catalog._connection():
        [uid] = [u for (u,) in I.select(I.sop_instance_uid).tuples()]
    return uid


def test_in_process_store_returns_while_a_listener_is_blocked(node) -> None:
    gate = threading.Event()
    node.node.dispatcher.listeners.insert(0, lambda outcome: gate.wait(30.0))
    try:
        start = time.perf_counter()
        uids = store_all(node.ingest, 3)
        assert time.perf_counter() - start < 20.0  # not held by the 30 s gate
        assert not any(is_observed(node.ingest.catalog, u) for u in uids)
    finally:
        gate.set()
    poll(lambda: derived_done(node.ingest, uids), what="derived work after the gate opened")


def test_work_left_by_a_crash_is_caught_up_at_the_next_start(tmp_path: Path, node_factory) -> None:
    """Stores whose dispatcher never ran (a crash after the response): the next node on the data dir does them."""
    config = make_config(tmp_path)
    ingest = IngestService.open(config)
    crashed = DicomNode(config, ingest)  # wired, never started: its queue dies with it, like a crash
    uids = store_all(ingest, 6, prefix="CRASH")
    assert not derived_done(ingest, uids)
    assert len(unobserved_instances(ingest.catalog)) == 6
    del crashed
    ingest.close()

    node = node_factory()  # same tmp_path, same data directory
    poll(lambda: derived_done(node.ingest, uids), what="catch-up of the crashed run's stores")
    assert node.node.dispatcher.caught_up == 6
    assert device_total(node.ingest) == 6  # each observed exactly once
    assert unobserved_instances(node.ingest.catalog) == []


def test_stores_after_the_dispatcher_stopped_are_caught_up_at_start(node_factory) -> None:
    first = node_factory()
    first.node.dispatcher.stop(grace_s=5.0)
    uids = store_all(first.ingest, 4, prefix="STOPPED")
    assert not derived_done(first.ingest, uids)
    first.node.stop(grace_s=5)

    second = node_factory()
    poll(lambda: derived_done(second.ingest, uids), what="catch-up after a stopped dispatcher")
    assert device_total(second.ingest) == 4


def test_a_full_queue_falls_back_to_catch_up_without_blocking(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    ingest = IngestService.open(config)
    node = DicomNode(config, ingest)
    gate = threading.Event()
    # A one-entry queue whose first entry is held: every later store overflows.
    wired = node.dispatcher
    dispatcher = StoreDispatcher([lambda outcome: gate.wait(30.0), *wired.listeners], pending=wired.pending,
                                 is_pending=wired.is_pending, queue_size=1)
    ingest.listeners[ingest.listeners.index(wired.listener)] = dispatcher.listener
    dispatcher.start()
    try:
        assert dispatcher.wait_idle(30.0)  # the start-up catch-up (nothing to do)
        start = time.perf_counter()
        uids = store_all(ingest, 6, prefix="FULL")
        assert time.perf_counter() - start < 20.0
        assert dispatcher.overflows >= 1
        gate.set()
        poll(lambda: derived_done(ingest, uids), what="queued and overflowed work")
        assert dispatcher.wait_idle(30.0)
        assert device_total(ingest) == 6  # nothing run twice
        assert dispatcher.processed + dispatcher.caught_up == 6
    finally:
        gate.set()
        dispatcher.stop(grace_s=5.0)
        ingest.close()


def test_stop_drains_the_queue_within_the_grace_period() -> None:
    done: list[str] = []
    gate = threading.Event()

    def slow(outcome: Any) -> None:
        gate.wait(5.0)
        done.append(outcome.sop_instance_uid)

    dispatcher = StoreDispatcher([slow])
    dispatcher.start()
    outcomes = [StoreOutcome("stored", TWELVE_LEAD, f"1.2.3.{i}", "1.2.3", Path("/x"), 1, "0" * 64, (), 0.0)
                for i in range(5)]
    for outcome in outcomes:
        dispatcher.listener(outcome)
    dispatcher.listener(StoreOutcome("duplicate", TWELVE_LEAD, "1.2.3.9", "1.2.3", Path("/x"), 1, "0" * 64, (),
                                     0.0))
    gate.set()
    dispatcher.stop(grace_s=10.0)
    assert done == [o.sop_instance_uid for o in outcomes]  # in order, duplicates never queued
    dispatcher.listener(outcomes[0])  # after stop: not queued (the catalog catch-up owns it)
    assert dispatcher._queue.qsize() == 0


def test_a_failing_listener_does_not_stop_the_next_one() -> None:
    seen: list[str] = []

    def broken(outcome: Any) -> None:
        raise RuntimeError("boom")

    dispatcher = StoreDispatcher([broken, lambda o: seen.append(o.sop_instance_uid)])
    dispatcher.start()
    try:
        dispatcher.listener(StoreOutcome("stored", TWELVE_LEAD, "1.2.4", "1.2", Path("/x"), 1, "0" * 64, (), 0.0))
        assert dispatcher.wait_idle(10.0)
        assert seen == ["1.2.4"]
    finally:
        dispatcher.stop(grace_s=5.0)


def test_a_missing_archive_file_costs_one_warning_line(tmp_path: Path, caplog) -> None:
    """A file gone from the archive (``ecg-node verify`` reports it): the real listeners log one line, no traceback."""
    import logging

    from dicom_ecg_node.services.clocks import ClockService

    config = make_config(tmp_path)
    ingest = IngestService.open(config)
    dispatcher = StoreDispatcher([ClockService(ingest.catalog, config).observe])
    try:
        outcome = ingest.store(ecg("PMISS"), sender_ae="CART", sender_address="127.0.0.1")
        outcome.path.unlink()
        dispatcher.start()
        with caplog.at_level(logging.WARNING, logger="dicom_ecg_node.dispatch"):
            dispatcher.listener(outcome)
            assert dispatcher.wait_idle(10.0)
    finally:
        dispatcher.stop(grace_s=5.0)
        ingest.close()
    records = [r for r in caplog.records if r.name == "dicom_ecg_node.dispatch"]
    assert len(records) == 1 and records[0].levelno == logging.WARNING and records[0].exc_info is None
    message = records[0].getMessage()
    assert outcome.sop_instance_uid in message and "header cannot be read" in message
    assert not is_observed(ingest.catalog, outcome.sop_instance_uid)  # still to do, should the file come back


class _Catalog:
    """What a polling dispatcher reads, kept in memory: stored outcomes and the newest stored id."""

    def __init__(self) -> None:
        self.stored: list[tuple[int, StoreOutcome]] = []
        self.arriving = True  # every reading of the activity differs from the last: stores keep coming
        self.readings = 0

    def store(self, count: int) -> None:
        start = len(self.stored)
        self.stored += [(k, StoreOutcome("stored", TWELVE_LEAD, f"1.2.5.{k}", "1.2.5", Path("/x"), 1, "0" * 64,
                                         (), 0.0)) for k in range(start + 1, start + count + 1)]

    def activity(self) -> int:
        self.readings += 1
        return self.readings if self.arriving else 0

    def pending(self, after: int, before: Any, limit: int) -> list[tuple[int, StoreOutcome]]:
        return [(k, o) for k, o in self.stored if k > after][:limit]


def test_a_polling_dispatcher_waits_for_a_lull_in_the_stores() -> None:
    """The parent of worker processes holds its passes back while stores arrive, and runs them at the lull."""
    source, done = _Catalog(), []
    dispatcher = StoreDispatcher([lambda o: done.append(o.sop_instance_uid)], pending=source.pending,
                                 is_pending=lambda o: o.sop_instance_uid not in done, poll_s=0.02,
                                 activity=source.activity, lull_max_s=60.0)
    dispatcher.start()
    try:
        assert dispatcher.wait_idle(10.0)  # the start-up pass (nothing stored yet)
        source.store(5)
        poll(lambda: source.readings >= 25, what="25 polls")
        assert done == []  # 25 polls, each saw new stores: nothing ran beside them
        source.arriving = False
        poll(lambda: len(done) == 5, what="the pass at the lull")
        assert done == [f"1.2.5.{k}" for k in range(1, 6)]
    finally:
        dispatcher.stop(grace_s=5.0)


def test_under_lasting_load_a_polling_dispatcher_runs_after_lull_max_s() -> None:
    source, done = _Catalog(), []
    ran_at: list[float] = []

    def listener(outcome: StoreOutcome) -> None:
        ran_at.append(time.monotonic())
        done.append(outcome.sop_instance_uid)

    dispatcher = StoreDispatcher([listener], pending=source.pending,
                                 is_pending=lambda o: o.sop_instance_uid not in done, poll_s=0.02,
                                 activity=source.activity, lull_max_s=0.5)
    started = time.monotonic()
    dispatcher.start()
    try:
        assert dispatcher.wait_idle(10.0)
        source.store(3)
        poll(lambda: len(done) == 3, what="the pass after lull_max_s")  # although stores never paused
        assert ran_at[0] - started >= 0.5  # not before the longest wait, counted from the first busy poll
        source.store(2)  # the next burst waits afresh, and is not lost
        poll(lambda: len(done) == 5, what="the second burst's pass")
        assert source.arriving and done == [f"1.2.5.{k}" for k in range(1, 6)]
    finally:
        dispatcher.stop(grace_s=5.0)
