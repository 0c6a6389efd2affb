"""The threads that serve accepted connections: kept waiting between associations instead of one new thread each.

Why
    ``socketserver.ThreadingMixIn`` starts a thread per connection, and ``Thread.start`` waits in the accepting
    thread until the new thread runs. A viewer's C-FIND or a C-ECHO is one short association per process
    (``findscu``, ``echoscu``), so that start is paid on every query. Measured here: starting a thread takes
    96 µs, handing a job to a thread already waiting on a queue 24 µs, and the node's CPU time per C-ECHO
    association is what a whole ``echoscu`` run waits for on a two-core machine.
How
    A connection goes to an idle thread when there is one, else to a new thread, so there is never a wait for
    a busy one and no limit beyond the node's association limit. A thread that has had nothing to do for
    ``idle_s`` seconds ends, so a burst of carts leaves no threads behind.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("dicom_ecg_node.net")

#: Seconds an idle connection thread waits for the next connection before it ends.
IDLE_S = 30.0

_Job = tuple[Callable[..., Any], tuple[Any, ...]]


class _Idle:
    """An idle thread's slot: the job handed to it, and the event it waits on."""

    __slots__ = ("job", "ready")

    def __init__(self) -> None:
        self.job: _Job | None = None
        self.ready = threading.Event()


class ConnectionThreads:
    """Run each job on an idle thread of the pool, or on a new one when none is idle.

    Each idle thread waits on its own event (the most recently idle one is handed the next job): a shared
    ``queue.SimpleQueue`` with timeouts was tried and, with several threads waiting, CPython 3.11 can let a
    ``get(timeout)`` wait past its timeout until the next ``put``.

    Parameters
    ----------
    name : str
        Thread name prefix.
    idle_s : float
        Seconds an idle thread waits for a job before it ends.
    """

    def __init__(self, name: str = "ecg-node-conn", idle_s: float = IDLE_S) -> None:
        self.name = name
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._idle: list[_Idle] = []
        self._threads = 0
        self.started = 0  # threads started since creation (tests, logs)
        self._closed = False

    @property
    def threads(self) -> int:
        """Threads alive (running a job or idle)."""
        with self._lock:
            return self._threads

    @property
    def idle(self) -> int:
        """Threads waiting for a job."""
        with self._lock:
            return len(self._idle)

    @property
    def busy(self) -> int:
        """Threads running a job (connections being served)."""
        with self._lock:
            return self._threads - len(self._idle)

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on a pool thread; its exceptions are logged, never raised here.

        Raises
        ------
        RuntimeError
            The pool is closed.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("connection threads closed")
            if self._idle:
                slot = self._idle.pop()
                slot.job = (fn, args)
                slot.ready.set()
                return
            self._threads += 1
            self.started += 1
            number = self.started
        thread = threading.Thread(target=self._worker, args=((fn, args),), name=f"{self.name}-{number}", daemon=True)
        try:
            thread.start()
        except BaseException:
            with self._lock:
                self._threads -= 1
            raise

    def _worker(self, job: _Job | None) -> None:
        slot = _Idle()
        try:
            while job is not None:
                fn, args = job
                try:
                    fn(*args)
                except Exception:  # the server's own handlers log theirs; this is the last resort
                    log.exception("connection handler failed")
                job = fn = args = None  # drop the connection's references while idle
                with self._lock:
                    if self._closed:
                        return
                    slot.job = None
                    slot.ready.clear()
                    self._idle.append(slot)
                slot.ready.wait(self.idle_s)
                with self._lock:
                    # A job handed over after the wait timed out is still this thread's to run.
                    job, slot.job = slot.job, None
                    if job is None and slot in self._idle:
                        self._idle.remove(slot)
        finally:
            with self._lock:
                self._threads -= 1

    def close(self) -> None:
        """Refuse new jobs and let idle threads end; running jobs finish on their own."""
        with self._lock:
            self._closed = True
            for slot in self._idle:
                slot.ready.set()
            self._idle.clear()


__all__ = ["IDLE_S", "ConnectionThreads"]
