"""Derived work after the C-STORE response: one background dispatcher thread per node process.

Why
    A C-STORE Success means *stored*: the file is durable and the catalog row committed (PS3.4 B.2.3, see
    :mod:`.ingest`). Work derived from a stored object (the device-clock observation, the reconciliation
    assessment) must not delay that response, and must not be lost either. :class:`StoreDispatcher` is an
    :attr:`~dicom_ecg_node.services.ingest.IngestService.listeners` callback that only queues the
    :class:`~dicom_ecg_node.services.ingest.StoreOutcome` (microseconds); one daemon thread runs the slow
    listeners afterwards, in order.

The catalog is the journal
    The queue is in memory: a crash, a full queue or a stop with work still queued loses queue entries, never work.
    What is still to do is derived from the catalog by the ``pending`` callable (for the node: network-received
    instances without a clock observation, see :func:`dicom_ecg_node.services.clocks.unobserved_instances`), and
    a *catch-up pass* runs it through the same listeners:

    * when the dispatcher starts (what a previous run left undone, in the background);
    * when the queue is full: the store is not blocked; the dispatcher stops queueing (*overflow*) until a
      catch-up pass has picked up everything committed meanwhile, so the work done stays a prefix of the stores
      (which is what lets the catalog query bound its look-back);
    * after :meth:`StoreDispatcher.stop`, stores are no longer queued; the next start catches them up.

    A pass reads the pending list in pages (keyset on a monotonic key), skips what is queued in this process and
    re-checks each item (``is_pending``) just before running it. With several processes (``SO_REUSEPORT``
    workers) passes are serialised by an exclusive lock file, and only instances older than ``settle_s`` are
    taken, so another process's own queue has had time to run them.

Yielding to stores
    One process runs its Python threads one at a time (the GIL): derived work running during a burst of stores
    would slow each store by about as much as it did on the store thread. A queued entry therefore waits until
    no store has been queued for :data:`QUIET_S`, at most :data:`MAX_DELAY_S` or until the queue is half full.

Waiting for a lull (the parent of worker processes)
    A process that finds other processes' stores in the catalog (``poll_s``) gets no queue to yield on; it reads
    ``activity`` (the newest stored instance) at each poll instead, and while that keeps changing it waits, up to
    ``lull_max_s``, before a pass. Running beside a burst of stores it slowed them, although in an interpreter of
    its own (the catalog's writer lock, the disk, the cores): measured here, DCMTK ``storescu`` over 4 associations
    into 2 workers gained 10-18% with the pass held back to the end of the burst. Under load that lasts longer than
    ``lull_max_s`` a pass runs anyway, and the deferral starts again after it: the work is batched, never dropped.

Stop
    :meth:`StoreDispatcher.stop` lets the thread drain the queue for up to ``grace_s`` seconds; whatever is left is
    caught up at the next start.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from dicom_ecg_node.errors import ArchiveError

if TYPE_CHECKING:
    from dicom_ecg_node.services.ingest import StoreOutcome

log = logging.getLogger("dicom_ecg_node.dispatch")

Listener = Callable[["StoreOutcome"], None]
#: ``pending(after_key, received_before, limit)``: up to ``limit`` ``(key, outcome)`` pairs whose derived work is
#: missing, with ``key > after_key`` ascending, received before ``received_before`` (aware UTC).
Pending = Callable[[int, datetime, int], Sequence[tuple[int, "StoreOutcome"]]]

#: Queue capacity: a full queue switches to catch-up (the store never waits).
QUEUE_SIZE = 1024
#: Rows read per catch-up page.
PAGE = 200
#: Seconds an idle worker waits for the queue before checking its flags again.
_POLL_S = 0.5
#: The worker yields to stores: it starts an entry once no store has been queued for this long...
QUIET_S = 0.02
#: ...or once the entry has waited this long, or the queue is half full (so work is delayed, never starved).
MAX_DELAY_S = 2.0
#: A polling process waits at most this long for a lull in the stores before a pass (see the module notes).
LULL_MAX_S = 30.0


class StoreDispatcher:
    """Run slow store listeners in one background thread, with catch-up from the catalog.

    Parameters
    ----------
    listeners : sequence of callable
        Called in this order with each stored :class:`StoreOutcome` (a listener's error is logged; the next one
        still runs). Put the one whose row marks the work as done (see ``pending``) last.
    pending : callable, optional
        Derives undone work from the catalog (see :data:`Pending`); without it nothing is caught up.
    is_pending : callable, optional
        Re-checks one outcome just before a catch-up runs it (another process may have done it meanwhile).
    queue_size : int
        Capacity of the in-memory queue.
    settle_s : float
        Catch-up takes only instances received at least this long ago (0 in a single process; with several
        worker processes, the time another process's queue needs to run its own stores).
    lock_path : Path, optional
        Lock file serialising catch-up passes between processes.
    poll_s : float, optional
        Also run a catch-up pass every ``poll_s`` seconds: the mode of a process that stores nothing itself and
        finds the stores of other processes in the catalog (see :mod:`.derived`).
    probe : callable, optional
        With ``poll_s``: a cheap catalog reading that changes whenever there may be new work; a poll that reads
        the value the last completed pass started from is skipped.
    activity : callable, optional
        With ``poll_s``: a cheap catalog reading that changes whenever an instance is stored; while it changes from
        one poll to the next, passes wait (see "Waiting for a lull" in the module notes).
    lull_max_s : float
        Longest wait for a lull, seconds, counted from the first poll that found stores arriving.
    name : str
        Thread name.
    """

    def __init__(self, listeners: Sequence[Listener], *, pending: Pending | None = None,
                 is_pending: Callable[[StoreOutcome], bool] | None = None, queue_size: int = QUEUE_SIZE,
                 settle_s: float = 0.0, lock_path: Path | None = None, poll_s: float | None = None,
                 probe: Callable[[], object] | None = None, activity: Callable[[], object] | None = None,
                 lull_max_s: float = LULL_MAX_S, name: str = "ecg-node-dispatch") -> None:
        self.listeners = list(listeners)
        self.poll_s = poll_s
        self.probe = probe
        self._probed: object = None  # the probe's value when the last complete pass started
        self.activity = activity
        self.lull_max_s = lull_max_s
        self._activity_seen: object = None  # activity's value at the last poll
        self._waiting_since: float | None = None  # monotonic time of the first poll that found stores arriving
        self.pending = pending
        self.is_pending = is_pending
        self.settle_s = settle_s
        self.lock_path = lock_path
        self.name = name
        self._queue: queue.Queue[tuple[float, StoreOutcome] | None] = queue.Queue(maxsize=queue_size)
        self._last_put = 0.0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._queued: dict[str, int] = {}  # SOP Instance UID -> entries queued or running (skipped by catch-up)
        self._busy = 0  # queue entries not yet finished + catch-up passes wanted or running
        self._overflow = False  # queueing suspended until a catch-up pass has run
        self._catch_up = threading.Event()
        self._next_pass_at: float | None = None  # a follow-up pass (settle_s > 0), monotonic time
        self._followup = False
        self._accepting = True
        self._stop = threading.Event()
        self._deadline = 0.0
        self._thread: threading.Thread | None = None
        #: Counters for tests and logs.
        self.processed = 0
        self.caught_up = 0
        self.overflows = 0

    # -- the store listener ------------------------------------------------------------------------------------

    def listener(self, outcome: StoreOutcome) -> None:
        """Store listener: queue ``outcome``; never blocks, never raises.

        Duplicates are not queued (nothing new was stored). When the queue is full, or the dispatcher is
        stopped, the outcome is left to the catalog catch-up.
        """
        if outcome.status == "duplicate":
            return
        with self._lock:
            if not self._accepting or self._overflow:
                self._want_catch_up_locked()
                return
            try:
                self._last_put = time.monotonic()
                self._queue.put_nowait((self._last_put, outcome))
            except queue.Full:
                self._overflow = True
                self.overflows += 1
                self._want_catch_up_locked()
                log.warning("derived-work queue full (%d); catching up from the catalog instead",
                            self._queue.maxsize)
                return
            self._queued[outcome.sop_instance_uid] = self._queued.get(outcome.sop_instance_uid, 0) + 1
            self._busy += 1

    def _want_catch_up_locked(self) -> None:
        if self.pending is not None and not self._catch_up.is_set():
            self._catch_up.set()
            self._busy += 1

    # -- life cycle --------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread; it first catches up what a previous run left undone (in the background)."""
        if self._thread is not None:
            return
        with self._lock:
            self._accepting = True
            self._stop.clear()
            self._want_catch_up_locked()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop queueing, run what is queued for up to ``grace_s`` seconds, then stop the thread.

        Whatever is left (queued beyond the grace period, or stored after this call) is caught up from the
        catalog at the next start.
        """
        with self._lock:
            self._accepting = False
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._deadline = time.monotonic() + grace_s
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)  # wakes the thread at once
        thread.join(grace_s + 5.0)
        if thread.is_alive():
            log.warning("derived-work dispatcher still busy after %.0f s; left behind (a daemon thread); the "
                        "next start catches its work up from the catalog", grace_s)
        left = self._queue.qsize()
        if left:
            log.info("%d stored objects left for the next start's catch-up", left)

    @property
    def running(self) -> bool:
        """The thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until the queue is empty and no catch-up pass is wanted or running; ``False`` on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy > 0 or self._next_pass_at is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, _POLL_S))
        return True

    # -- the thread --------------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            if self._stop.is_set():
                self._drain()
                return
            if self._next_pass_at is not None and time.monotonic() >= self._next_pass_at:
                with self._lock:
                    self._next_pass_at = None
                    self._followup = True
                    self._want_catch_up_locked()
                    self._idle.notify_all()
            if self._catch_up.is_set() and self._queue.empty():
                self._run_catch_up()
                continue
            try:
                item = self._queue.get(timeout=_POLL_S if self.poll_s is None else self.poll_s)
            except queue.Empty:
                if self.poll_s is not None and self._lull():
                    with self._lock:
                        self._want_catch_up_locked()
                continue
            if item is not None:
                self._yield_to_stores(item[0])
                self._run_queued(item[1])

    def _lull(self) -> bool:
        """A poll: whether a pass may run now (no store since the last poll, or waited ``lull_max_s`` already)."""
        if self.activity is None:
            return True
        try:
            seen = self.activity()
        except Exception:
            log.exception("derived work: reading the catalog's activity failed; not waiting for a lull")
            return True
        now = time.monotonic()
        arriving, self._activity_seen = seen != self._activity_seen, seen
        if not arriving:
            self._waiting_since = None
            return True
        if self._waiting_since is None:
            self._waiting_since = now
        if now - self._waiting_since >= self.lull_max_s:
            self._waiting_since = None  # a pass now; the next burst waits afresh
            return True
        return False

    def _yield_to_stores(self, queued_at: float) -> None:
        """Wait while stores keep arriving (bounded by :data:`MAX_DELAY_S` and a half-full queue).

        One process runs its Python threads one at a time (the GIL), so derived work running during a burst of
        stores would slow each store down by as much as it ran on the store thread before.
        """
        pause = threading.Event()
        while (not self._stop.is_set() and time.monotonic() - self._last_put < QUIET_S
               and time.monotonic() - queued_at < MAX_DELAY_S and self._queue.qsize() < self._queue.maxsize // 2):
            pause.wait(QUIET_S)

    def _drain(self) -> None:
        """After stop: run what is queued until the grace deadline."""
        while time.monotonic() < self._deadline:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self._run_queued(item[1])

    def _run_queued(self, outcome: StoreOutcome) -> None:
        try:
            self._run_listeners(outcome)
            self.processed += 1
        finally:
            with self._lock:
                uid = outcome.sop_instance_uid
                left = self._queued.get(uid, 1) - 1
                if left > 0:
                    self._queued[uid] = left
                else:
                    self._queued.pop(uid, None)
                self._busy -= 1
                self._idle.notify_all()

    def _run_listeners(self, outcome: StoreOutcome) -> None:
        for listener in self.listeners:
            try:
                listener(outcome)
            except ArchiveError as exc:  # the file is gone or unreadable: one line, `ecg-node verify` has the rest
                log.warning("derived work %s skipped for sop_instance=%s: %s",
                            getattr(listener, "__qualname__", listener), outcome.sop_instance_uid, exc)
            except Exception:
                log.exception("derived work %r failed for sop_instance=%s", listener, outcome.sop_instance_uid)

    def _run_catch_up(self) -> None:
        """One catch-up pass over the catalog (see the module notes)."""
        with self._lock:
            # Before reading the catalog: a store committed after this point is queued again (or sets overflow
            # and another pass); one committed before it is found by this pass.
            self._catch_up.clear()
            self._overflow = False
            followup, self._followup = self._followup, False
        try:
            token = None if self.probe is None else self.probe()
            if token is not None and token == self._probed:
                return  # (finally below) nothing stored or observed since the last complete pass
            with self._process_lock() as locked:
                if locked:
                    self._pass()
                    self._probed = token
        except Exception:
            self._probed = None
            log.exception("derived-work catch-up failed; retried at the next overflow, poll or start")
        finally:
            with self._lock:
                self._busy -= 1
                if self.settle_s > 0 and not followup and not self._stop.is_set() and self._next_pass_at is None:
                    # Instances younger than settle_s were left to their own process's queue; look once more
                    # when they have settled, in case that process died or overflowed.
                    self._next_pass_at = time.monotonic() + self.settle_s
                self._idle.notify_all()

    def _pass(self) -> None:
        pending = self.pending
        if pending is None:  # a dispatcher without a catalog source has nothing to catch up
            return
        cutoff = datetime.now(UTC) - timedelta(seconds=self.settle_s)
        after, done = 0, 0
        while not self._stop.is_set():
            page = pending(after, cutoff, PAGE)
            if not page:
                break
            for key, outcome in page:
                after = max(after, key)
                if self._stop.is_set():
                    return
                with self._lock:
                    if outcome.sop_instance_uid in self._queued:
                        continue
                if self.is_pending is not None and not self.is_pending(outcome):
                    continue
                self._run_listeners(outcome)
                done += 1
            if len(page) < PAGE:
                break
        self.caught_up += done
        if done:
            log.info("caught up derived work of %d stored objects from the catalog", done)

    @contextlib.contextmanager
    def _process_lock(self) -> Iterator[bool]:
        """The exclusive lock file between processes (``True`` when held, ``False`` when stopping meanwhile)."""
        if self.lock_path is None:
            yield True
            return
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if self._stop.wait(0.2):
                        yield False
                        return
            yield True
        finally:
            os.close(fd)  # releases the lock


__all__ = ["LULL_MAX_S", "PAGE", "QUEUE_SIZE", "Listener", "Pending", "StoreDispatcher"]
