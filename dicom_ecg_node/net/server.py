"""The node's Application Entity: build it from the configuration, start it, and stop it gracefully."""

from __future__ import annotations

import logging
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pynetdicom import AE
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from dicom_ecg_node.errors import ConfigError
from dicom_ecg_node.net.connthreads import ConnectionThreads
from dicom_ecg_node.net.contexts import supported_contexts
from dicom_ecg_node.net.eventloop import adopt
from dicom_ecg_node.net.handlers import bind

if TYPE_CHECKING:
    from dicom_ecg_node.config import NodeConfig
    from dicom_ecg_node.services.dispatch import StoreDispatcher
    from dicom_ecg_node.services.ingest import IngestService

log = logging.getLogger("dicom_ecg_node.net")


class EventDrivenRequestHandler(RequestHandler):
    """pynetdicom's request handler whose associations get the event-driven reactors of :mod:`.eventloop`."""

    def _create_association(self) -> Any:
        return adopt(super()._create_association())


class _SharedUidContext(PresentationContext):
    """A presentation context whose deep copy shares its (immutable) UIDs instead of re-creating them.

    pynetdicom deep-copies every supported context for every association it accepts; for the node's 28 contexts
    that cost ~0.8 ms of each association's set-up, most of it re-validating the same UID strings.
    """

    @classmethod
    def of(cls, context: PresentationContext) -> _SharedUidContext:
        new = cls.__new__(cls)
        new.__dict__.update(context.__dict__)
        new._transfer_syntax = list(context._transfer_syntax)
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> _SharedUidContext:
        return self.of(self)


class AcceptBalancer:
    """Spread associations over worker processes that accept from one shared listening socket.

    Each worker publishes how many associations it runs in a shared array; a worker running more than the least
    loaded one lets a waiting connection go for up to ``defer_s``, so that one accepts it. (With ``SO_REUSEPORT``
    the kernel hashes each connection to a worker: four carts on two workers were split 3:1 or 4:0 more often
    than 2:2, leaving a core idle.)

    Parameters
    ----------
    loads : sequence of int
        Shared per-worker association counts (``multiprocessing.Array('i', n, lock=False)``).
    index : int
        This worker's slot.
    defer_s : float
        Longest time a busier worker holds back (the other's accept thread may have to wait for its GIL behind a
        busy association first; 20 ms was sometimes not enough).
    """

    #: The load of a worker that is not accepting (starting, stopping, restarting): never deferred to.
    NOT_ACCEPTING = 1 << 30

    def __init__(self, loads: Any, index: int, defer_s: float = 0.1) -> None:
        self._loads = loads
        self._index = index
        self._defer_s = defer_s

    def publish(self, running: int) -> None:
        """Record this worker's number of running associations."""
        self._loads[self._index] = running

    def others(self) -> int:
        """Associations the other workers run (as they last published), not counting those not accepting."""
        return sum(n for i, n in enumerate(self._loads) if i != self._index and n < self.NOT_ACCEPTING)

    def wait_turn(self, running: int) -> None:
        """Return at once when this worker is (one of) the least loaded, else after ``defer_s`` at most."""
        deadline = time.monotonic() + self._defer_s
        while True:
            others = [n for i, n in enumerate(self._loads) if i != self._index]
            if not others or running <= min(others) or time.monotonic() >= deadline:
                return
            time.sleep(0.0005)


def listening_socket(host: str, port: int, backlog: int = 128) -> socket.socket:
    """A bound, listening, non-blocking TCP socket for worker processes to share (created by the parent).

    Non-blocking, so a worker whose ``accept`` lost the race to another gets ``BlockingIOError`` instead of
    blocking its accept loop (and its shutdown).
    """
    try:
        family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        sock = socket.create_server((host, port), family=family, backlog=backlog)
    except OSError as exc:
        raise _listen_error(host, port, exc) from exc
    sock.setblocking(False)
    return sock


def _listen_error(host: str, port: int, exc: OSError) -> ConfigError:
    return ConfigError(f"cannot listen on {host or '*'}:{port}: {exc.strerror or exc}")


class NodeAssociationServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with optional ``SO_REUSEPORT`` and a shutdown that spares running associations.

    Parameters
    ----------
    *args, **kwargs
        As :class:`pynetdicom.transport.ThreadedAssociationServer`.
    reuse_port : bool
        Set ``SO_REUSEPORT`` before binding, so several worker processes can share the port.
    on_tls_refused : callable, optional
        Called with ``(client_address, exception)`` when a TLS handshake fails (audit trail).
    handshake_timeout : float
        Seconds a TLS client has to complete its handshake.
    listen_socket : socket.socket, optional
        A listening socket shared with other worker processes (see :func:`listening_socket`), used instead of
        binding one.
    balancer : AcceptBalancer, optional
        With ``listen_socket``: how this worker takes its share of the connections.
    """

    #: ``server_close`` does not join the connection threads: a light association (net/lightassoc.py) runs on its
    #: connection's thread until it ends, and :meth:`DicomNode.stop` gives those their grace period itself.
    block_on_close = False

    def __init__(self, *args: Any, reuse_port: bool = False,
                 on_tls_refused: Callable[[tuple[str, int], BaseException], None] | None = None,
                 handshake_timeout: float = 30.0, listen_socket: socket.socket | None = None,
                 balancer: AcceptBalancer | None = None, **kwargs: Any) -> None:
        self._reuse_port = reuse_port
        self._on_tls_refused = on_tls_refused
        self._handshake_timeout = handshake_timeout
        self._listen_socket = listen_socket
        self._balancer = balancer if listen_socket is not None else None
        # Connections accepted whose association thread is not running yet (not in active_associations).
        self._starting = 0
        self._starting_lock = threading.Lock()
        # Set once the socket is closed: a connection that ends later must not publish over NOT_ACCEPTING.
        self._stopped_accepting = False
        if self._balancer is not None:
            self._balancer.publish(0)  # listening: the others may leave connections to this worker from now on
        kwargs.setdefault("request_handler", EventDrivenRequestHandler)
        #: The threads connections are served on (net/connthreads.py), instead of one new thread each.
        self.connection_threads = ConnectionThreads()
        super().__init__(*args, **kwargs)
        self.contexts = [_SharedUidContext.of(cx) for cx in self.contexts]
        from dicom_ecg_node.net.lightassoc import LightRegistry

        #: Verification and query associations served on their connection's thread (net/lightassoc.py); plain
        #: TCP only: a TLS connection goes to pynetdicom.
        self.light: LightRegistry | None = None if self.ssl_context else LightRegistry(self.ae, self.serving)

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        """Accept; with TLS, wrap without handshaking: the handshake runs in the connection's own thread.

        pynetdicom handshakes in ``accept``'s thread, so one client that never finishes its handshake would stop
        the node accepting anyone else.
        """
        if self._balancer is not None:
            self._balancer.wait_turn(self._running())
        client, address = self.socket.accept()  # BlockingIOError (shared socket, another worker won): ignored
        if self._balancer is not None:
            client.setblocking(True)
            with self._starting_lock:
                self._starting += 1
            self._publish()
        if self.ssl_context:
            client = self.ssl_context.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
        return client, address

    def serving(self) -> int:
        """Associations the node serves now on this port: this process's and the other workers'.

        This process's are pynetdicom's (their own threads) and those on connection threads (light); the other
        worker processes' are what they published (see :class:`AcceptBalancer`; each publishes as a connection
        is accepted and as it ends).
        """
        others = self._balancer.others() if self._balancer is not None else 0
        return len(self.active_associations) + self.connection_threads.busy + others

    def _running(self) -> int:
        """Associations running or about to (accepted, thread not started yet; light ones count as starting)."""
        return len(self.active_associations) + self._starting

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection on a waiting pool thread (a new one when none waits), not a new thread each."""
        self.connection_threads.submit(self.process_request_thread, request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve the connection; once its association thread runs, it counts in ``active_associations``."""
        try:
            self._serve_connection(request, client_address)
        finally:
            if self._balancer is not None:
                with self._starting_lock:
                    self._starting -= 1
                self._publish()  # at once: the other workers' serving() counts this worker's associations

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        """Complete the TLS handshake (bounded by ``handshake_timeout``), then serve the association."""
        if isinstance(request, ssl.SSLSocket):
            try:
                request.settimeout(self._handshake_timeout)
                request.do_handshake()
                request.settimeout(None)
            except (OSError, ValueError) as exc:  # ssl.SSLError and timeouts are OSErrors
                if self._on_tls_refused is not None:
                    self._on_tls_refused(client_address, exc)
                self.shutdown_request(request)
                return
        elif self.light is not None and self.light.try_serve(request, client_address, self.contexts, self._handlers):
            self.shutdown_request(request)
            return
        super().process_request_thread(request, client_address)

    def service_actions(self) -> None:
        """Between accepts (at least every poll interval): publish this worker's load as associations end.

        pynetdicom's own ``service_actions`` (not called) runs a full ``gc.collect()`` every 60th call, i.e. every
        60 associations under load: with the node's heap that stopped every thread for ~25 ms (the 99th percentile
        of a C-ECHO association here, against a 1 ms median). The interpreter's generational collector reclaims
        the reference cycles of ended associations by itself.
        """
        self._publish()

    def _publish(self) -> None:
        """Publish this worker's load (under the lock: two threads' counts are never written out of order)."""
        if self._balancer is not None:
            with self._starting_lock:
                if not self._stopped_accepting:
                    self._balancer.publish(self._running())

    def server_activate(self) -> None:
        """Listen, unless the socket is a shared one that already listens."""
        if self._listen_socket is None:
            super().server_activate()

    def server_close(self) -> None:
        """Close; a shared socket is only closed here, never shut down (the other workers still accept on it)."""
        self.connection_threads.close()
        if self._listen_socket is not None:
            if self._balancer is not None:
                with self._starting_lock:
                    self._stopped_accepting = True
                    self._balancer.publish(AcceptBalancer.NOT_ACCEPTING)
            self.socket.close()
            return
        super().server_close()

    def server_bind(self) -> None:
        """Bind, with ``SO_REUSEPORT`` when asked (it must be set before ``bind``), or adopt the shared socket."""
        if self._listen_socket is not None:
            self.socket.close()  # the unbound one TCPServer made
            self.socket = self._listen_socket
            self.server_address = self.socket.getsockname()
            return
        if self._reuse_port:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def shutdown(self) -> None:
        """Stop the accept loop and close the listening socket; associations in flight carry on."""
        socketserver.BaseServer.shutdown(self)
        self.server_close()


def build_ae(config: NodeConfig) -> AE:
    """An AE with the node's title, limits, timeouts and presentation contexts.

    Parameters
    ----------
    config : NodeConfig
        Supplies the AE title, maximum PDU, association limit and the network / ACSE / DIMSE timeouts.

    Returns
    -------
    pynetdicom.AE
    """
    ae = AE(ae_title=config.aet)
    ae.maximum_pdu_size = config.max_pdu
    ae.maximum_associations = config.max_associations
    ae.network_timeout = config.network_timeout
    ae.acse_timeout = config.acse_timeout
    ae.dimse_timeout = config.dimse_timeout
    # The called AE title must be ours (PS3.8 7.1.1.4); a wrong one is rejected with reason 7.
    ae.require_called_aet = True
    # add_supported_context, not the ``supported_contexts`` setter: the setter drops the SCP/SCU roles that
    # C-GET needs on the storage contexts (see contexts.accept_storage_roles).
    for cx in supported_contexts():
        ae.add_supported_context(cx.abstract_syntax, cx.transfer_syntax, scu_role=cx.scu_role, scp_role=cx.scp_role)
    return ae


class DicomNode:
    """The running DICOM listener of one node (one process).

    Parameters
    ----------
    config : NodeConfig
        Node settings.
    ingest : IngestService
        The storage use case the C-STORE handler calls.
    reuse_port : bool
        Bind with ``SO_REUSEPORT`` when no shared listening socket is given.
    listeners : dict, optional
        Worker mode: port -> (listening socket shared by the parent, balancer).
    run_derived_work : bool
        Run the clock and reconciliation work of this process's stores (``False`` in worker processes: their
        parent runs it for all of them, see :mod:`dicom_ecg_node.services.derived`).
    """

    def __init__(self, config: NodeConfig, ingest: IngestService, *, reuse_port: bool = False,
                 listeners: dict[int, tuple[socket.socket, AcceptBalancer]] | None = None,
                 run_derived_work: bool = True) -> None:
        self.config = config
        # Worker mode with sockets shared by the parent: port -> (listening socket, balancer).
        self._listeners = listeners or {}
        self.ingest = ingest
        from dicom_ecg_node.services.retrieve import RetrieveService

        # C-MOVE / C-GET read the same catalog and archive the ingest service writes.
        self.retrieve = RetrieveService(ingest.catalog, ingest.archive)
        from dicom_ecg_node.services.query import QueryService

        # C-FIND reads the same catalog.
        self.query = QueryService(ingest.catalog, config.aet)
        from dicom_ecg_node.services.outbox import Outbox, results_listener
        from dicom_ecg_node.services.worklist import WorklistService

        # Modality Worklist C-FIND (PS3.4 K) from the orders HL7 brought in; ORU^R01 results queued per stored ECG
        # (sent by the one results sender of hl7.runtime.Hl7Node, whichever process stored it).
        self.worklist = WorklistService(ingest.catalog)
        if config.hl7_results_to:
            ingest.listeners.append(results_listener(Outbox(ingest.catalog), config.hl7_results_to))
        # Serial analysis (issue 6): a store listener hints a bounded background worker after the commit, so the
        # C-STORE response never waits for the measurement. Imported only when on: it brings scipy (~60 MB).
        self.analysis = None
        if config.analysis == "background":
            from dicom_ecg_node.services.analysis import AnalysisService

            self.analysis = AnalysisService(config, ingest)
            ingest.listeners.append(self.analysis.listener)
        from dicom_ecg_node.services.derived import derived_work
        from dicom_ecg_node.services.mpps import MppsService

        # Device clocks (IHE Consistent Time) and reconciliation look at every stored instance after its commit,
        # in the background: the C-STORE response waits only for "stored" (file durable + row committed); what a
        # crash, a full queue or a stop left undone is caught up from the catalog (services/dispatch.py). Worker
        # processes leave it to their parent (run_derived_work=False), which finds their stores in the catalog.
        # MPPS N-CREATE / N-SET (PS3.4 F.7) report the carts' work to the worklist.
        work = derived_work(ingest.catalog, ingest.archive, config)
        self.clocks, self.reconcile = work.clocks, work.reconcile
        self.dispatcher: StoreDispatcher | None = work.dispatcher if run_derived_work else None
        if self.dispatcher is not None:
            ingest.listeners.append(self.dispatcher.listener)
        self.mpps = MppsService(ingest.catalog)
        from dicom_ecg_node.net.commitment import CommitmentSender
        from dicom_ecg_node.services.commitment import CommitmentService

        # Storage Commitment (PS3.4 J.3): N-ACTIONs are recorded by the handler; one background sender per
        # process verifies and reports, started and stopped with the listener.
        self.commitment = CommitmentService(ingest.catalog, ingest.archive)
        self.commitment_sender = CommitmentSender(
            self.commitment, ae_title=config.aet, max_pdu=config.max_pdu, acse_timeout=config.acse_timeout,
            dimse_timeout=config.dimse_timeout, network_timeout=config.network_timeout)
        from dicom_ecg_node.net.security import AssociationGuard
        from dicom_ecg_node.services.audit import AuditLog
        from dicom_ecg_node.services.security import AccessPolicy

        # Who may connect and do what (the AE registry), limits, and the audit trail (DATA_DIR/audit).
        self.audit = AuditLog.for_config(config)
        self.commitment_sender.audit = self.audit  # commitment results go to the audit trail
        self.guard = AssociationGuard(
            AccessPolicy(ingest.catalog, accept_unknown=config.accept_unknown), self.audit, ingest.catalog,
            max_associations_per_peer=config.max_associations_per_peer, max_object_size=config.max_object_size)
        self.reuse_port = reuse_port
        self.ae = build_ae(config)
        self._tls_server: NodeAssociationServer | None = None  # the TLS listener when plaintext is on too
        self._server: NodeAssociationServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``; the port is the real one when 0 was configured."""
        if self._server is None:
            raise RuntimeError("node not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def tls_address(self) -> tuple[str, int] | None:
        """The bound ``(host, port)`` of the TLS listener, ``None`` without TLS."""
        server = self._tls_server or (self._server if not self.config.plaintext else None)
        if server is None:
            return None
        host, port = server.server_address[:2]
        return str(host), int(port)

    def _make_server(self, port: int, handlers: list[Any], tls: bool) -> NodeAssociationServer:
        from dicom_ecg_node.net.security import tls_context

        cfg = self.config
        shared, balancer = self._listeners.get(port, (None, None))
        # PS3.15 B.1 / B.9: mutual certificate authentication on the TLS port.
        ssl_context = tls_context(cfg.tls_cert, cfg.tls_key, cfg.tls_ca) if tls else None  # type: ignore[arg-type]
        try:
            return self.ae.make_server(
                (cfg.host, port),
                evt_handlers=handlers,
                server_class=NodeAssociationServer,
                reuse_port=self.reuse_port and shared is None,
                listen_socket=shared,
                balancer=balancer,
                ssl_context=ssl_context,
                on_tls_refused=self.guard.on_tls_refused,
                handshake_timeout=cfg.acse_timeout,
            )
        except OSError as exc:  # the port is taken, or the address is not this host's
            raise _listen_error(cfg.host, port, exc) from exc

    def start(self) -> None:
        """Bind the port(s) and serve associations in background threads."""
        handlers = bind(self.ingest, self.retrieve, self.query, mpps=self.mpps,
                        commitment=(self.commitment, self.commitment_sender),
                        guard=self.guard, worklist=self.worklist)
        if self.config.accept_unknown:
            log.warning("ACCESS CONTROL RELAXED: accept_unknown is on, any calling AE title is accepted with every "
                        "permission; register the peers (ecg-node ae add) and switch it off")
        if self.config.plaintext:
            server = self._make_server(self.config.port, handlers, tls=False)
            if self.config.tls:
                self._tls_server = self._make_server(self.config.tls_port, handlers, tls=True)
                threading.Thread(target=self._tls_server.serve_forever, name="ecg-node-tls-acceptor",
                                 daemon=True).start()
        else:
            server = self._make_server(self.config.tls_port, handlers, tls=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="ecg-node-acceptor", daemon=True)
        self._thread.start()
        if self.tls_address is not None:
            log.info("DICOM TLS (mutual authentication) on %s:%d", *self.tls_address)
        self.commitment_sender.start()  # resumes the reports left pending by a previous run
        if self.dispatcher is not None:
            self.dispatcher.start()  # first catches up the derived work a previous run left undone
        if self.analysis is not None:
            self.analysis.start()  # first analyses what a previous run left unanalysed
        host, port = self.address
        log.info("listening as AE %r on %s:%d", self.config.aet, host, port)

    def stop(self, grace_s: float = 30.0) -> None:
        """Stop accepting, let associations in flight finish (up to ``grace_s``), then abort the rest."""
        server, self._server = self._server, None
        if server is None:
            return
        active = server.active_associations
        tls_server, self._tls_server = self._tls_server, None
        if tls_server is not None:
            active += tls_server.active_associations
            tls_server.shutdown()
        server.shutdown()  # stops accepting and closes the listening socket; running associations continue
        if self._thread is not None:
            self._thread.join()
        deadline = time.monotonic() + grace_s
        for light in (server.light, tls_server.light if tls_server is not None else None):
            if light is not None:  # associations served on their connection's thread (net/lightassoc.py)
                light.stop(max(0.0, deadline - time.monotonic()))
        for assoc in active:
            assoc.join(max(0.0, deadline - time.monotonic()))
        for assoc in server.active_associations + [a for a in active if a.is_alive()]:
            log.warning("aborting association with %r still running after %.0f s", assoc.requestor.ae_title,
                        grace_s)
            assoc.abort()
        # After the associations: a requester still waiting for its report on one got it during the grace time.
        self.commitment_sender.stop()
        # The stores are over: run the queued derived work within the grace period; the rest is caught up at start.
        if self.dispatcher is not None:
            self.dispatcher.stop(grace_s=grace_s)
        if self.analysis is not None:
            self.analysis.stop()  # the ECG in progress finishes; the rest stays pending in the catalog
        self.audit.close()
        log.info("stopped")

    def serve_until(self, stop: threading.Event) -> None:
        """Start, wait until ``stop`` is set, then stop gracefully."""
        self.start()
        try:
            stop.wait()
        finally:
            self.stop()
