"""The HL7 side of a running node: the MLLP listener (ADT and orders in) and the results sender (ORU^R01 out).

:class:`Hl7Node` is started and stopped with the DICOM listener by :mod:`dicom_ecg_node.net.workers`, in one
process only (the single process, or the parent of the worker processes): HL7 connections are few and long-lived,
and one sender must own the outbox so that a result is not sent twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dicom_ecg_node.catalog import Catalog
from dicom_ecg_node.errors import EcgNodeError
from dicom_ecg_node.hl7.intake import Hl7Intake, Hl7Policy, audit_hook_for
from dicom_ecg_node.hl7.messages import ack_code_of
from dicom_ecg_node.hl7.mllp import MllpError, MllpListener, send_message
from dicom_ecg_node.hl7.results import build_oru
from dicom_ecg_node.services.outbox import Outbox

if TYPE_CHECKING:
    from dicom_ecg_node.config import NodeConfig

log = logging.getLogger("dicom_ecg_node.hl7")


class ResultsSender:
    """Deliver due outbox rows in a background thread (see :mod:`dicom_ecg_node.services.outbox`).

    Parameters
    ----------
    catalog : Catalog
        The node's catalog.
    data_dir : Path
        Where the archive lives (to render PDFs).
    own_app : str
        MSH-3 of the results.
    poll_s : float
        Longest wait between two looks at the queue (rows queued by other processes are found this way).
    timeout_s : float
        Connect and acknowledgement timeout per attempt.
    build : callable, optional
        ``(sop_instance_uid, receiver) -> BuiltResult``; :func:`~dicom_ecg_node.hl7.results.build_oru` by default.
    """

    def __init__(self, catalog: Catalog, data_dir: Path, *, own_app: str = "ECGNODE", poll_s: float = 1.0,
                 timeout_s: float = 30.0, build: Callable[[str, str], Any] | None = None) -> None:
        self.outbox = Outbox(catalog)
        self.catalog = catalog
        self.data_dir = Path(data_dir)
        self.own_app = own_app
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self._build = build or (lambda uid, receiver: build_oru(catalog, self.data_dir, uid, own_app=own_app,
                                                                receiver=receiver))
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        """Look at the queue now (called after an in-process enqueue)."""
        self._wake.set()

    def start(self) -> None:
        """Start the delivery thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ecg-node-hl7-results", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the attempt in progress; undelivered rows stay queued."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due()
                nxt = self.outbox.next_due()
            except EcgNodeError as exc:
                log.error("results outbox: %s", exc)
                nxt = None
            wait = self.poll_s
            if nxt is not None:
                wait = max(0.0, min(wait, (nxt - datetime.now(UTC)).total_seconds()))
            self._wake.wait(wait)
            self._wake.clear()

    def deliver_due(self) -> int:
        """Attempt every due row once; returns how many were delivered."""
        delivered = 0
        for item in self.outbox.due():
            if self._stop.is_set():
                break
            delivered += self._attempt(item)
        return delivered

    def _attempt(self, item: Any) -> int:
        text, control_id = item.message, item.control_id
        if text is None:
            try:
                built = self._build(item.sop_instance_uid, item.receiver)
            except EcgNodeError as exc:
                self.outbox.failed(item.id, f"cannot build the message: {exc}")
                return 0
            text, control_id = built.text, built.control_id
            self.outbox.set_message(item.id, control_id, text)
        host, _, port = item.receiver.rpartition(":")
        started = time.perf_counter()
        try:
            ack = send_message(host, int(port), text.encode("utf-8"), timeout=self.timeout_s)
        except MllpError as exc:
            self.outbox.failed(item.id, str(exc))
            log.warning("ORU %s to %s not delivered (attempt %d): %s", control_id, item.receiver, item.attempts + 1,
                        exc)
            return 0
        code = ack_code_of(ack)
        if code in ("AA", "CA"):
            self.outbox.delivered(item.id)
            log.info("ORU %s for %s delivered to %s (%.0f ms)", control_id, item.sop_instance_uid, item.receiver,
                     (time.perf_counter() - started) * 1e3)
            return 1
        final = code in ("AR", "CR")
        self.outbox.failed(item.id, f"receiver answered {code or 'no MSA'}", final=final)
        log.warning("ORU %s to %s answered %s%s", control_id, item.receiver, code or "without MSA",
                    " (rejected: not retried)" if final else "")
        return 0


class Hl7Node:
    """The MLLP listener (when ``hl7_port`` is set) and the results sender (when ``hl7_results_to`` is set).

    Parameters
    ----------
    config : NodeConfig
        Node settings (``hl7_port``, ``hl7_results_to``, ``hl7_allowed_facilities``, ``hl7_allowed_addresses``).
    catalog : Catalog
        The process's catalog.
    audit : object, optional
        A :class:`dicom_ecg_node.services.audit.AuditLog`: every HL7 message and merge is audited.
    """

    def __init__(self, config: NodeConfig, catalog: Catalog, *, audit: Any | None = None) -> None:
        self.config = config
        self.intake = Hl7Intake(catalog, policy=Hl7Policy(config.hl7_allowed_facilities,
                                                          config.hl7_allowed_addresses),
                                own_app=config.aet, audit=audit_hook_for(audit) if audit is not None else None)
        self.listener = (MllpListener(config.host, config.hl7_port, self.intake.process, self.intake.on_framing_error)
                         if config.hl7_port is not None else None)
        self.sender = (ResultsSender(catalog, config.data_dir, own_app=config.aet)
                       if config.hl7_results_to else None)

    @property
    def address(self) -> tuple[str, int] | None:
        """The MLLP listener's bound address (``None`` without listener)."""
        return self.listener.address if self.listener is not None else None

    def start(self) -> None:
        """Start the listener and the sender."""
        if self.listener is not None:
            self.listener.start()
        if self.sender is not None:
            self.sender.start()

    def stop(self) -> None:
        """Stop both (queued results stay in the outbox)."""
        if self.listener is not None:
            self.listener.stop()
        if self.sender is not None:
            self.sender.stop()
