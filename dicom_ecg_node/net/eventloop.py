"""Event-driven reactors for the associations the node accepts, in place of pynetdicom's 1 ms polling loops.

pynetdicom 3.0 runs two threads per association that poll: the DUL thread (``DULServiceProvider.run_reactor``)
sleeps ``_run_loop_delay`` (1 ms) whenever a pass found nothing to do, and the association's reactor
(``Association._run_reactor``) sleeps 1 ms before every pass. A C-STORE therefore waits for up to three such sleeps
(the DUL noticing the P-DATA, the reactor noticing the decoded message, the DUL noticing the response to send), and
every idle association wakes its two threads 2,000 times a second, which costs CPU and the GIL that the busy
associations need. Measured here with DCMTK ``storescu`` and a receiver that only writes the bytes, the sleeps were
most of the 3.3 ms a bare pynetdicom receiver spends per 120 KB ECG.

:func:`adopt` gives one acceptor association, before it starts, reactors that block until there is work:

* the DUL thread waits in ``select`` on its socket and on a wake-up socket pair that every producer of DUL work
  pokes (primitives to send, state machine events put from other threads, a kill);
* the association reactor waits on an :class:`threading.Event` set when the DIMSE provider queues a decoded message,
  when the DUL queues a primitive for the user (release, abort) or when the DUL thread ends.

Both waits are capped (:data:`IDLE_WAKE_S`), so a wake-up source this module does not know about (another pynetdicom
version) costs latency, never correctness; the per-pass checks are those of pynetdicom's loops in the same order.
Only the adopted association instance changes; pynetdicom's classes and every other association are untouched.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from typing import Any

from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ

from dicom_ecg_node.net.faststore import FastCStore, PDataAssembler, pdu_too_long, recv_exact, user_handlers
from dicom_ecg_node.net.reactorgate import ReactorGate

log = logging.getLogger("dicom_ecg_node.net")

_PDU_HEADER = struct.Struct(">BBI")
#: PS3.8 9.3.1: the PDU types of the upper layer protocol.
_PDU_TYPES = frozenset(range(0x01, 0x08))
#: Longest time a reactor sleeps without a wake-up (timers, unknown wake-up sources): 20 passes a second when idle.
IDLE_WAKE_S = 0.05


class _WakingQueue(queue.Queue):  # type: ignore[type-arg]
    """A :class:`queue.Queue` that calls ``wake`` after every ``put``."""

    def __init__(self, wake: Callable[[], None]) -> None:
        super().__init__()
        self._wake = wake

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._wake()


class EventDrivenDUL(DULServiceProvider):
    """pynetdicom's DUL provider whose thread sleeps in ``select`` until the socket or a producer has work.

    Parameters
    ----------
    assoc : pynetdicom.association.Association
        The parent association.
    wake_user : callable
        Called whenever a primitive is queued for the service user (wakes the association reactor).
    """

    def __init__(self, assoc: Association, wake_user: Callable[[], None]) -> None:
        super().__init__(assoc)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._poked = False
        self.event_queue = _WakingQueue(self._poke)
        self.to_provider_queue = _WakingQueue(self._poke)
        self.to_user_queue = _WakingQueue(wake_user)
        #: Set by :func:`adopt`: plain C-STORE requests assembled here (net/faststore.py), the rest to pynetdicom.
        self.assembler: PDataAssembler | None = None

    def _poke(self) -> None:
        """Wake the DUL thread, one byte in flight at most.

        Not for what the DUL thread queues itself: it handles its own events before it next waits.
        """
        if self._poked or threading.current_thread() is self:
            return
        self._poked = True
        with contextlib.suppress(OSError):  # full (already woken) or closed (thread gone)
            self._wake_w.send(b"\0")

    def kill_dul(self) -> None:
        """Stop the reactor thread, now rather than at its next timed pass."""
        self._kill_thread = True
        self._poke()

    def stop_dul(self) -> bool:
        """Stop as pynetdicom does (only in Sta1, waiting for the thread), waking the thread to notice at once."""
        if self.state_machine.current_state == "Sta1":
            self._kill_thread = True
            self._poke()
        return bool(super().stop_dul())

    def _read_pdu_data(self) -> None:
        """Read one PDU as pynetdicom's ``_read_pdu_data`` does, with fewer copies (P-DATA-TF in Sta6: assembler).

        pynetdicom reads a PDU 4 KB per ``recv`` into a growing ``bytearray``, copies it to ``bytes``, decodes every
        presentation data value into objects and runs the state machine (Sta6 + Evt10 -> DT-2: hand the P-DATA to
        the DIMSE provider, stay in Sta6). Here the PDU is read into one buffer of its announced length, and a
        P-DATA-TF received in Sta6 goes straight to the :class:`~dicom_ecg_node.net.faststore.PDataAssembler`
        (DT-2's only effect). Every other PDU, state or a malformed P-DATA-TF takes pynetdicom's path with the
        same events and log lines.
        """
        from pynetdicom import evt

        sock = getattr(self.socket, "socket", None)
        if sock is None or self.assembler is None:
            super()._read_pdu_data()
            return
        try:
            header = recv_exact(sock, 6)
            if header is None:
                self.event_queue.put("Evt17")  # closed before a whole PDU header: transport connection closed
                return
            pdu_type, _, length = _PDU_HEADER.unpack(header)
            if pdu_type not in _PDU_TYPES:
                log.error("Unknown PDU type received '0x%02X'", pdu_type)
                self.event_queue.put("Evt19")
                return
            if pdu_too_long(pdu_type, length, self.assoc.ae.maximum_pdu_size):
                log.error("PDU type 0x%02X of %d bytes is longer than the node accepts; aborting", pdu_type, length)
                self.event_queue.put("Evt19")  # unrecognised or invalid PDU: A-ABORT (PS3.8 9.2.3, AA-8)
                return
            body = recv_exact(sock, length)
        except OSError as exc:  # TimeoutError included
            log.error("Connection closed before the entire PDU was received: %s", exc)
            self.event_queue.put("Evt17")
            return
        if body is None:
            log.error("The received PDU is shorter than expected")
            self.event_queue.put("Evt17")
            return
        if pdu_type == 0x04:
            if (self.state_machine.current_state == "Sta6" and not user_handlers(self.assoc, evt.EVT_DATA_RECV)
                    and not user_handlers(self.assoc, evt.EVT_PDU_RECV) and self.assembler.receive(body)):
                return
            self.assembler.flush()  # whatever it held goes to pynetdicom before this PDU
        try:
            pdu, event = self._decode_pdu(header + body)
        except Exception as exc:
            log.error("Unable to decode the received PDU data: %s", exc)
            self.event_queue.put("Evt19")
            return
        self.event_queue.put(event)
        self._recv_pdu.put(pdu)

    def _wait_for_work(self) -> None:
        """Block until the socket is readable, a producer poked, or :data:`IDLE_WAKE_S` passed."""
        watched: list[Any] = [self._wake_r]
        sock = getattr(self.socket, "socket", None)
        if sock is not None and getattr(self.socket, "_is_connected", False):
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                return  # decrypted bytes already buffered: select would not report them
            watched.append(sock)
        try:
            readable, _, _ = select.select(watched, [], [], IDLE_WAKE_S)
        except (OSError, ValueError):
            return  # the socket closed under us: the pass below reports it (Evt17) through socket.ready
        if self._wake_r in readable:
            with contextlib.suppress(OSError):
                self._wake_r.recv(64)
        # Reset after draining: a poke from here on writes a fresh byte; one before was drained but its work is
        # already queued and the pass below sees it.
        self._poked = False

    def run_reactor(self) -> None:
        """The DUL thread: pynetdicom's reactor pass, with a blocking wait where it slept 1 ms."""
        self._idle_timer.start()
        idle = False
        read_first = True
        try:
            while True:
                if not self.assoc._dul_ready.is_set():
                    self.assoc._dul_ready.set()
                if idle:
                    self._wait_for_work()
                if self._kill_thread:
                    break
                # The ARTIM timer's event goes ahead of anything else this pass (as in pynetdicom).
                if self.artim_timer.expired:
                    self.event_queue.put("Evt18")
                try:
                    # One primitive to encode and send OR one PDU to receive per pass. pynetdicom always tries
                    # the send first, so while a handler keeps queueing answers (a long C-FIND) nothing incoming is
                    # read and a C-CANCEL waits until the answers run out; here every other pass reads first.
                    read_first = not read_first
                    if read_first:
                        if self._is_transport_event():
                            self._idle_timer.restart()
                        else:
                            self._process_recv_primitive()
                    elif not self._process_recv_primitive() and self._is_transport_event():
                        self._idle_timer.restart()
                except Exception as exc:  # as pynetdicom: abort outside the state machine, stop both reactors
                    log.error("DUL reactor failed, aborting the association: %s", exc)
                    log.debug("DUL reactor failure", exc_info=True)
                    self._abort_hard()
                    return
                try:
                    event = self.event_queue.get(block=False)
                except queue.Empty:
                    idle = True
                    continue
                try:
                    self.state_machine.do_action(event)
                except Exception as exc:
                    # pynetdicom lets this end its reactor thread with the exception, leaving the association to
                    # notice later: e.g. an A-ABORT whose source is not a PS3.8 9.3.8 value cannot be made into a
                    # primitive, or an event the peer's PDUs made invalid for the state (found by fuzzing).
                    log.error("DUL state machine failed on %s, aborting the association: %s", event, exc)
                    log.debug("DUL state machine failure", exc_info=True)
                    self._abort_hard()
                    return
                idle = False
        finally:
            self._close_wake()

    def _abort_hard(self) -> None:
        """Send an A-ABORT (source: service provider) bypassing the state machine, and stop both reactors."""
        pdu = A_ABORT_RQ()
        pdu.source = 0x02
        pdu.reason_diagnostic = 0x00
        with contextlib.suppress(Exception):
            self.socket.send(pdu.encode())  # type: ignore[union-attr]
        self.assoc.is_aborted = True
        self.assoc.is_established = False
        self.assoc._kill = True
        self._kill_thread = True

    def _close_wake(self) -> None:
        wake_assoc = getattr(self.assoc, "_ecg_wake", None)
        if wake_assoc is not None:
            wake_assoc.set()  # the association reactor checks dul.is_alive() on its next pass
        for s in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                s.close()


def _run_reactor(self: Association) -> None:
    """The association reactor: pynetdicom's checks, run when woken instead of every millisecond.

    Order and effect of each check are pynetdicom 3.0's ``Association._run_reactor``: pause checkpoint, one DIMSE
    message, release requested, aborted, DUL thread gone, network (idle) timeout; one change: the idle time starts
    again once a request has been served (see below).
    """
    wake: threading.Event = self._ecg_wake  # type: ignore[attr-defined]
    self._is_paused = False
    busy = False
    while not self._kill:
        if not busy:
            wake.wait(IDLE_WAKE_S)
            wake.clear()  # after the wait, before the checks: a put after this line sets it again
        busy = False
        # Parked here while another thread sends DIMSE on this association (C-GET, same-association reports).
        self._is_paused = True
        self._reactor_checkpoint.wait()
        self._is_paused = False

        context_id, msg = self.dimse.get_msg(block=False)
        if msg:
            self._serve_request(msg, int(context_id))  # type: ignore[arg-type]
            # The network timeout measures the peer's silence. A C-MOVE to a slow destination can keep the node
            # busy, and the peer quietly waiting for its answers, longer than the timeout; pynetdicom then aborts
            # the association the moment the final answer is out. The wait starts when the answer is sent.
            self.dul._idle_timer.restart()
            busy = True  # another message may be queued already: look again before waiting

        if self.is_established and self.acse.is_release_requested():
            _finish_release(self)
            return
        if self.acse.is_aborted():
            _finish_abort(self)
            return
        if not self.dul.is_alive():
            self.kill()
            return
        if self.dul.idle_timer_expired():
            _finish_idle(self)
            return


def _finish_release(assoc: Association) -> None:
    from pynetdicom import evt

    assoc.acse.send_release(is_response=True)
    log.debug("association released by the peer")
    assoc.is_released = True
    assoc.is_established = False
    evt.trigger(assoc, evt.EVT_RELEASED, {})
    assoc.kill()


def _finish_abort(assoc: Association) -> None:
    from pynetdicom import evt

    log.debug("association aborted%s", " (A-P-ABORT)" if assoc.acse.is_aborted("a-p-abort") else "")
    assoc.dul.receive_pdu(wait=False)  # so EVT_ACSE_RECV fires for its subscribers, as pynetdicom does
    assoc.is_aborted = True
    assoc.is_established = False
    evt.trigger(assoc, evt.EVT_ABORTED, {})
    assoc.kill()


def _finish_idle(assoc: Association) -> None:
    log.error("network timeout reached on the association with %r", assoc.requestor.ae_title)
    if assoc.network_timeout_response == "A-RELEASE":
        assoc._is_paused = True
        assoc._reactor_checkpoint.wait()
        assoc.release()
        assoc._is_paused = False
    else:
        assoc.abort()
    assoc.kill()


class EventDrivenAssociation(Association):
    """An acceptor :class:`~pynetdicom.association.Association` whose two reactors block until there is work.

    C-FIND requests of the Query/Retrieve and worklist models are served by
    :class:`~dicom_ecg_node.net.fastfind.FastFindServiceClass` (answers encoded without pydicom); everything else
    by pynetdicom. Not instantiated directly: :func:`adopt` converts an association pynetdicom's request handler
    built.
    """

    _run_reactor = _run_reactor  # type: ignore[assignment]

    def _serve_request(self, msg: Any, context_id: int) -> None:
        from pynetdicom.dimse_primitives import C_FIND

        from dicom_ecg_node.net.fastfind import FIND_SOP_CLASSES, FastFindServiceClass

        context = self._accepted_cx.get(context_id)
        if isinstance(msg, FastCStore):
            from dicom_ecg_node.net import faststore

            if self._sent_release:
                log.warning("C-STORE message received during association release, ignoring")
            elif context is None:  # the assembler checked; as pynetdicom for a context that went away
                log.info("Received DIMSE message with invalid or rejected context ID: %s", context_id)
                self.abort()
            else:
                faststore.serve(self, msg, context)
            return
        if (isinstance(msg, C_FIND) and msg.is_valid_request and not self._sent_release and context is not None
                and str(context.abstract_syntax) in FIND_SOP_CLASSES):
            FastFindServiceClass.serve(self, msg, context)
            return
        super()._serve_request(msg, context_id)


def adopt(assoc: Association) -> Association:
    """Give an acceptor association that has not started yet the event-driven reactors.

    Parameters
    ----------
    assoc : pynetdicom.association.Association
        Built by pynetdicom's request handler, socket set, not yet started.

    Returns
    -------
    pynetdicom.association.Association
        The same object, now an :class:`EventDrivenAssociation`; unchanged when its internals are not the expected
        ones (another pynetdicom version) or it already started.
    """
    old = getattr(assoc, "dul", None)
    dimse = getattr(assoc, "dimse", None)
    if (type(assoc) is not Association or not isinstance(old, DULServiceProvider) or old.is_alive()
            or assoc._started_dul or not isinstance(getattr(dimse, "msg_queue", None), queue.Queue)):
        log.debug("association left with pynetdicom's polling reactors")
        return assoc
    wake = threading.Event()
    assoc._ecg_wake = wake  # type: ignore[attr-defined]
    dul = EventDrivenDUL(assoc, wake.set)
    dul.socket = old.socket
    dul._idle_timer.timeout = old._idle_timer.timeout
    dul.artim_timer.timeout = old.artim_timer.timeout
    # Whatever is already queued moves over: the acceptor's socket queued Evt5 (connection open) when it was set.
    for name in ("event_queue", "to_provider_queue", "to_user_queue", "_recv_pdu"):
        source, target = getattr(old, name), getattr(dul, name)
        while True:
            try:
                target.put(source.get(block=False))
            except queue.Empty:
                break
    assoc.dul = dul
    msg_queue = _WakingQueue(wake.set)
    dimse.msg_queue = msg_queue  # type: ignore[union-attr]
    dul.assembler = PDataAssembler(assoc, lambda context_id, request: msg_queue.put((context_id, request)))
    # Another thread sending on this association (a Storage Commitment report) pauses the reactor through its
    # checkpoint: the gate keeps pynetdicom's pause race-free and wakes the reactor so it parks at once.
    assoc._reactor_checkpoint = ReactorGate(assoc, on_clear=wake.set)
    assoc.__class__ = EventDrivenAssociation
    return assoc
