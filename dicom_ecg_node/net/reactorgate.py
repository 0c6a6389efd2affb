"""A reactor checkpoint without pynetdicom's pause gap, for associations on which another thread sends DIMSE.

pynetdicom 3.0 (``association.py``) pauses an association's reactor around each ``send_*`` call made from another
thread: the sender clears ``_reactor_checkpoint``, spins until ``_is_paused`` is true, sends, reads the response
with ``dimse.get_msg(block=True)`` and sets the checkpoint again. The reactor loop does::

    self._is_paused = True
    self._reactor_checkpoint.wait()
    self._is_paused = False          # <- gap
    context_id, msg = self.dimse.get_msg(block=False)

After ``set()`` wakes the reactor, ``_is_paused`` stays true until the woken thread actually runs: a sender that
clears the checkpoint and looks in that gap (the next ``send_c_store`` follows the previous one immediately, the
reactor needs the GIL and a CPU to run, which it often lacks under load) takes the stale ``True`` for "parked" and
sends. When the response arrives before the reactor's non-blocking ``get_msg``, the reactor takes the C-STORE-RSP,
logs "Received unexpected C-STORE service message" and drops it; the sender waits out the DIMSE timeout, gets no
response and aborts the association, so every remaining sub-operation fails (C-MOVE ends 0xB000).

:class:`ReactorGate` replaces the checkpoint of one association (installed by :func:`gate_reactor` from
``EVT_CONN_OPEN``, before its reactor starts). It has the ``threading.Event`` calls pynetdicom uses and keeps its
own record of whether the reactor is parked inside ``wait()``, under its lock:

* ``wait()`` marks the reactor parked (and ``_is_paused`` true) under the lock and leaves only while open;
* ``clear()`` from another thread, when the reactor is not parked inside the gate, resets ``_is_paused`` to false
  under the same lock, so the sender's own ``while not _is_paused`` loop waits until the reactor is back in
  ``wait()``, where it cannot pass the closed gate. A stale ``True`` is never observed after ``clear()``.
  A killed association (``_kill``) keeps ``_is_paused`` true, as pynetdicom's ``kill()`` leaves it.
* ``clear()`` from the reactor thread itself (pynetdicom's network-timeout release, a handler sending on its own
  association) behaves as a plain ``Event.clear()``: pynetdicom set ``_is_paused`` itself there.

Only the checkpoint object of that association instance changes: pynetdicom's code and classes are untouched.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pynetdicom.events import Event

log = logging.getLogger("dicom_ecg_node.net")

#: :func:`gate_reactor`'s linger (seconds): longer than the gap between two C-STORE sub-operations of a C-MOVE.
SUB_OPERATION_LINGER_S = 0.02


class ReactorGate:
    """Stand-in for ``Association._reactor_checkpoint`` (``set`` / ``clear`` / ``is_set`` / ``wait``).

    Parameters
    ----------
    assoc : pynetdicom.association.Association
        The association whose reactor waits on this gate (its ``_is_paused`` flag is maintained here).
    on_clear : callable, optional
        Called after every ``clear()``: wakes a reactor that blocks between passes instead of polling.
    linger_s : float
        Once the gate opens, the reactor stays parked until it has been open this long without a new ``clear()``.
        For an association on which another thread sends message after message (C-MOVE sub-operations): the next
        send finds the reactor still parked instead of waiting for it to finish a pass and park again.
    """

    def __init__(self, assoc: Any, on_clear: Callable[[], None] | None = None, linger_s: float = 0.0) -> None:
        self._linger_s = linger_s
        self._assoc = assoc
        self._cond = threading.Condition(threading.Lock())
        self._open = True
        self._parked = False
        self._reactor: threading.Thread | None = None
        self._on_clear = on_clear

    def is_set(self) -> bool:
        """Whether the gate is open (``Event.is_set``)."""
        return self._open

    def set(self) -> None:
        """Open the gate and wake the reactor (``Event.set``)."""
        with self._cond:
            self._open = True
            self._cond.notify_all()

    def clear(self) -> None:
        """Close the gate; see the module notes for ``_is_paused``."""
        with self._cond:
            self._open = False
            if not self._parked and threading.current_thread() is not self._reactor:
                # The reactor is running (or woke and has not yet cleared its flag): make the sender wait until
                # it is back in wait(), which sets the flag again under this lock and cannot pass a closed gate.
                self._assoc._is_paused = False
                if getattr(self._assoc, "_kill", False):
                    # kill() sets _kill, then _is_paused for good: never leave a sender spinning on a dead reactor.
                    self._assoc._is_paused = True
        if self._on_clear is not None:
            self._on_clear()  # an event-driven reactor waiting for work comes to the gate now (net/eventloop.py)

    def wait(self, timeout: float | None = None) -> bool:
        """Park the calling reactor until the gate is open (``Event.wait``)."""
        with self._cond:
            self._reactor = threading.current_thread()
            self._parked = True
            self._assoc._is_paused = True
            try:
                opened = self._cond.wait_for(lambda: self._open, timeout)
                while opened and self._linger_s:
                    if not self._cond.wait_for(lambda: not self._open, self._linger_s):
                        break  # open for linger_s without a new clear(): the reactor goes on
                    self._cond.wait_for(lambda: self._open)  # closed again by the next send: stay parked
                return opened
            finally:
                self._parked = False


def gate_reactor(event: Event) -> None:
    """``EVT_CONN_OPEN`` handler: give the association a :class:`ReactorGate` before its reactor starts.

    For a requestor association the connection opens during negotiation, before ``_run_reactor`` first waits on
    the checkpoint. Another pynetdicom without these internals keeps its own checkpoint.
    """
    assoc = event.assoc
    if isinstance(getattr(assoc, "_reactor_checkpoint", None), threading.Event) and hasattr(assoc, "_is_paused"):
        assoc._reactor_checkpoint = ReactorGate(assoc, linger_s=SUB_OPERATION_LINGER_S)
    else:
        log.debug("reactor checkpoint left as is (unexpected pynetdicom internals)")
