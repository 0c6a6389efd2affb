"""The node's Application Entity: build it from the configuration, start it, and stop it gracefully."""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
import time
from typing import TYPE_CHECKING, Any

from pynetdicom import AE
from pynetdicom.transport import ThreadedAssociationServer

from dicom_ecg_node.net.contexts import supported_contexts
from dicom_ecg_node.net.handlers import bind

if TYPE_CHECKING:
    from dicom_ecg_node.config import NodeConfig
    from dicom_ecg_node.services.ingest import IngestService

log = logging.getLogger("dicom_ecg_node.net")


class NodeAssociationServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with optional ``SO_REUSEPORT`` and a shutdown that spares running associations.

    Parameters
    ----------
    *args, **kwargs
        As :class:`pynetdicom.transport.ThreadedAssociationServer`.
    reuse_port : bool
        Set ``SO_REUSEPORT`` before binding, so several worker processes can share the port.
    """

    def __init__(self, *args: Any, reuse_port: bool = False, **kwargs: Any) -> None:
        self._reuse_port = reuse_port
        super().__init__(*args, **kwargs)

    def server_bind(self) -> None:
        """Bind, with ``SO_REUSEPORT`` when asked (it must be set before ``bind``)."""
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
    """

    def __init__(self, config: NodeConfig, ingest: IngestService, *, reuse_port: bool = False) -> None:
        self.config = config
        self.ingest = ingest
        from dicom_ecg_node.services.retrieve import RetrieveService

        # C-MOVE / C-GET read the same catalog and archive the ingest service writes.
        self.retrieve = RetrieveService(ingest.catalog, ingest.archive)
        from dicom_ecg_node.services.query import QueryService

        # C-FIND reads the same catalog.
        self.query = QueryService(ingest.catalog, config.aet)
        self.reuse_port = reuse_port
        self.ae = build_ae(config)
        self._server: NodeAssociationServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``; the port is the real one when 0 was configured."""
        if self._server is None:
            raise RuntimeError("node not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Bind the port and serve associations in background threads."""
        server = self.ae.make_server(
            (self.config.host, self.config.port),
            evt_handlers=bind(self.ingest, self.retrieve, self.query),
            server_class=NodeAssociationServer,
            reuse_port=self.reuse_port,
        )
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="ecg-node-acceptor", daemon=True)
        self._thread.start()
        host, port = self.address
        log.info("listening as AE %r on %s:%d", self.config.aet, host, port)

    def stop(self, grace_s: float = 30.0) -> None:
        """Stop accepting, let associations in flight finish (up to ``grace_s``), then abort the rest."""
        server, self._server = self._server, None
        if server is None:
            return
        active = server.active_associations
        server.shutdown()  # stops accepting and closes the listening socket; running associations continue
        if self._thread is not None:
            self._thread.join()
        deadline = time.monotonic() + grace_s
        for assoc in active:
            assoc.join(max(0.0, deadline - time.monotonic()))
        for assoc in server.active_associations + [a for a in active if a.is_alive()]:
            log.warning("aborting association with %r still running after %.0f s", assoc.requestor.ae_title,
                        grace_s)
            assoc.abort()
        log.info("stopped")

    def serve_until(self, stop: threading.Event) -> None:
        """Start, wait until ``stop`` is set, then stop gracefully."""
        self.start()
        try:
            stop.wait()
        finally:
            self.stop()
