"""Run the node in one process, or in several receiving processes behind one port.

pynetdicom runs every association in a Python thread, so one process uses one core at most for decoding, hashing
and DIMSE parsing. With ``workers > 1`` the parent binds the port once and every worker process accepts from that
shared socket, taking a connection when it runs no more associations than the others
(:class:`~dicom_ecg_node.net.server.AcceptBalancer`); each worker has its own catalog connection (SQLite in WAL
mode serialises only the short commit, see the catalog).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import multiprocessing
import os
import signal
import threading
import time
from types import FrameType
from typing import Any

from dicom_ecg_node.config import NodeConfig
from dicom_ecg_node.errors import ConfigError

log = logging.getLogger("dicom_ecg_node.net")


def worker_count(workers: int) -> int:
    """The receiving processes ``workers`` asks for: itself, or for ``0`` two per CPU core.

    Two per core: a worker waits on the disk (``fsync`` of the file, its folder and the catalog's log) for part of
    every store, and the associations it serves share its interpreter lock; the other worker on the core runs
    meanwhile. Measured here (2 cores, 4 associations of ``storescu``): 4 workers stored a median 12% more ECGs per
    second than 2, and as many over one association.
    """
    return workers or 2 * (os.cpu_count() or 1)


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this worker if the parent dies (even by SIGKILL)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def serve_in_process(config: NodeConfig, stop: threading.Event, *, reuse_port: bool = False,
                     ready: threading.Event | None = None, listeners: dict[int, tuple[Any, Any]] | None = None) -> None:
    """Serve in this process until ``stop`` is set.

    Parameters
    ----------
    config : NodeConfig
        Node settings.
    stop : threading.Event
        Set it to stop gracefully.
    reuse_port : bool
        Bind with ``SO_REUSEPORT`` (worker mode).
    ready : threading.Event, optional
        Set once the port is bound.
    listeners : dict, optional
        Worker mode: port -> (listening socket shared by the parent, :class:`~.server.AcceptBalancer`).
    """
    from dicom_ecg_node.net.server import DicomNode
    from dicom_ecg_node.services.ingest import IngestService

    ingest = IngestService.open(config)
    try:
        if not reuse_port:  # with workers, their parent did it before starting them
            from dicom_ecg_node.services.derived import refresh_statistics

            refresh_statistics(ingest.catalog)
        # Worker processes (reuse_port) leave the derived work to their parent (run_node).
        node = DicomNode(config, ingest, reuse_port=reuse_port, listeners=listeners, run_derived_work=not reuse_port)
        node.start()
        # HL7 (MLLP listener, results sender) runs in one process only: here, unless this is a worker process
        # (then the parent runs it, see run_node).
        hl7 = None if reuse_port else _start_hl7(config, ingest.catalog, node.audit)
        # The web viewer too runs in one process only (the parent with workers, polling the catalog).
        web = None if reuse_port else _start_web(config, ingest.catalog, ingest)
        _freeze_heap()
        if ready is not None:
            ready.set()
        try:
            stop.wait()
        finally:
            if web is not None:
                web.stop()
            if hl7 is not None:
                hl7.stop()
            node.stop()
    finally:
        ingest.close()


def _freeze_heap() -> None:
    """Leave what the started node holds for good out of the cyclic garbage collector's passes.

    Modules, the catalog's statements, the AE and its contexts live as long as the process; a full collection
    walked all of them again (measured here: one every few hundred stores under load, each pausing every thread
    of the process for ~20 ms). Garbage made while starting is collected first, then the survivors are frozen
    (``gc.freeze``); objects made later are collected as before.
    """
    gc.collect()
    gc.freeze()


def _start_hl7(config: NodeConfig, catalog: Any, audit: Any) -> Any:
    """Start the HL7 side (:class:`~dicom_ecg_node.hl7.runtime.Hl7Node`) when configured, else ``None``."""
    if config.hl7_port is None and not config.hl7_results_to:
        return None
    from dicom_ecg_node.hl7.runtime import Hl7Node

    hl7 = Hl7Node(config, catalog, audit=audit)
    hl7.start()
    return hl7


def _start_web(config: NodeConfig, catalog: Any, ingest: Any = None) -> Any:
    """Start the web viewer (:class:`~dicom_ecg_node.web.server.WebServer`) when ``http_port`` is set, else ``None``.

    With ``ingest`` (this process stores), its stores wake the viewer's event streams at once; without, the
    streams find new ECGs by polling the catalog.
    """
    if config.http_port is None:
        return None
    from dicom_ecg_node.services.events import EventHub
    from dicom_ecg_node.web.server import start_web

    hub = None
    if ingest is not None:
        hub = EventHub()
        ingest.listeners.append(hub.store_listener)
    return start_web(config, catalog, hub=hub)


def quiet_pynetdicom() -> None:
    """Switch off pynetdicom's per-message logging in this (node) process.

    pynetdicom formats every C-FIND answer's and request's identifier (``pretty_dataset``) and every DIMSE message
    for its debug log even when that level is hidden: a cost on every answer and store, and patient data in a log
    that must not carry it. The node logs what it needs itself (associations, stored objects, refusals, audit).
    Called at the start of a serving process, never at import.
    """
    from pynetdicom import _config

    _config.LOG_HANDLER_LEVEL = "none"
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False


def _worker_main(config: NodeConfig, index: int, shared: dict[int, tuple[Any, Any]] | None = None) -> None:
    _die_with_parent()
    quiet_pynetdicom()
    logging.basicConfig(level=getattr(logging, config.log_level.upper(), logging.INFO),
                        format=f"%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s[w{index}]: %(message)s",
                        datefmt="%Y-%m-%dT%H:%M:%S")
    logging.Formatter.converter = time.gmtime
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards SIGINT as SIGTERM
    listeners = None
    if shared:
        from dicom_ecg_node.net.server import AcceptBalancer

        listeners = {port: (sock, AcceptBalancer(loads, index)) for port, (sock, loads) in shared.items()}
    serve_in_process(config, stop, reuse_port=True, listeners=listeners)


def run_node(config: NodeConfig, stop: threading.Event) -> None:
    """Run the node until ``stop`` is set: in this process, or in ``config.workers`` worker processes.

    Raises
    ------
    ConfigError
        Several workers asked for with port 0 (each would bind a different port).
    """
    quiet_pynetdicom()
    from dicom_ecg_node.services.ingest import IngestService
    from dicom_ecg_node.services.maintenance import node_session

    workers = worker_count(config.workers)
    if workers > 1 and config.port == 0:
        raise ConfigError("workers: several worker processes need a fixed port, not 0")
    with node_session(config):
        if workers == 1:
            serve_in_process(config, stop)
            return
        # Create or migrate the catalog once, before workers race to do it; planner statistics too, so that the
        # workers' connections load them.
        ingest = IngestService.open(config)
        from dicom_ecg_node.services.derived import refresh_statistics

        refresh_statistics(ingest.catalog)
        from dicom_ecg_node.services.audit import AuditLog

        audit = AuditLog.for_config(config)
        hl7 = _start_hl7(config, ingest.catalog, audit)  # the parent runs HL7 for all workers
        web = _start_web(config, ingest.catalog)  # and the web viewer, which polls the catalog for new ECGs
        from dicom_ecg_node.services.derived import derived_work

        # And the derived work of every worker's stores, in its own interpreter (services/derived.py).
        dispatcher = derived_work(ingest.catalog, ingest.archive, config, poll=True).dispatcher
        dispatcher.start()
        try:
            _run_workers(config, stop, workers)
        finally:
            dispatcher.stop(grace_s=30.0)
            if web is not None:
                web.stop()
            if hl7 is not None:
                hl7.stop()
            audit.close()
            ingest.close()


def _run_workers(config: NodeConfig, stop: threading.Event, workers: int) -> None:
    """Start ``workers`` processes on the shared port; restart any that dies; stop them all when asked."""
    from dicom_ecg_node.net.server import AcceptBalancer, listening_socket

    ctx = multiprocessing.get_context("spawn")
    # The parent binds each port once and the workers accept from the same socket, each taking a connection when
    # it runs no more associations than the others (net.server.AcceptBalancer).
    ports = ([config.port] if config.plaintext else []) + ([config.tls_port] if config.tls else [])
    shared = {port: (listening_socket(config.host, port),
                     ctx.Array("i", [AcceptBalancer.NOT_ACCEPTING] * workers, lock=False)) for port in ports}
    procs: list[Any] = []
    for i in range(workers):
        p = ctx.Process(target=_worker_main, args=(config, i, shared), name=f"ecg-node-worker-{i}", daemon=False)
        p.start()
        procs.append(p)
    log.info("started %d worker processes on port %d", workers, config.port)
    accepting = False
    try:
        # Polled often until every worker accepts (announced once: scripts wait for it), then once a second.
        while not stop.wait(1.0 if accepting else 0.05):
            if not accepting and all(all(n != AcceptBalancer.NOT_ACCEPTING for n in loads)
                                     for _sock, loads in shared.values()):
                accepting = True
                log.info("all %d workers accepting on port %s", workers,
                         ", ".join(str(port) for port in shared))
            for i, p in enumerate(procs):
                if not p.is_alive():
                    log.error("worker %d exited with %s; restarting it", i, p.exitcode)
                    for _sock, loads in shared.values():
                        loads[i] = AcceptBalancer.NOT_ACCEPTING  # until the new process listens
                    accepting = False
                    procs[i] = ctx.Process(target=_worker_main, args=(config, i, shared), name=p.name,
                                           daemon=False)
                    procs[i].start()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()  # SIGTERM: the worker finishes its associations in flight
        for p in procs:
            p.join()
        for sock, _loads in shared.values():
            sock.close()
        log.info("all workers stopped")
