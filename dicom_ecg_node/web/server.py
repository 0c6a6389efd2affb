"""Run the web viewer with the node: uvicorn in a background thread, started and stopped with the DICOM listener.

The listening socket is bound in :meth:`WebServer.start` (so a busy port fails the node's start at once, and port
0 gives a real port to print), then handed to ``uvicorn.Server.run`` in a thread; :meth:`WebServer.stop` sets
``should_exit`` and ends the event streams. With several receiving worker processes only the parent process serves
HTTP: it stores nothing itself and finds new ECGs by polling the catalog.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from dicom_ecg_node.catalog import Catalog
from dicom_ecg_node.config import NodeConfig
from dicom_ecg_node.errors import ConfigError
from dicom_ecg_node.services.events import EventHub
from dicom_ecg_node.web.auth import UserVerifier

log = logging.getLogger("dicom_ecg_node.web")


def node_user_verifier(catalog: Catalog) -> UserVerifier | None:
    """The node's password check for web logins (the users of ``ecg-node user``), or ``None`` without one.

    Uses :meth:`dicom_ecg_node.services.security.UserService.verify` (salted scrypt hashes in the catalog).
    """
    try:
        from dicom_ecg_node.services.security import UserService
    except ImportError:
        return None
    return UserService(catalog).verify


class WebServer:
    """The web viewer's HTTP(S) server running in a background thread.

    Parameters
    ----------
    config : NodeConfig
        ``http_host``, ``http_port``, ``http_open``, and ``tls_cert`` / ``tls_key`` for HTTPS.
    catalog : Catalog
        An open catalog (the ingest service's in a single-process node).
    hub : EventHub, optional
        In-process store notifications.
    verify_user : callable, optional
        Defaults to :func:`node_user_verifier`.
    analysis : object, optional
        An :class:`~dicom_ecg_node.services.viewer.AnalysisSource`.
    """

    def __init__(self, config: NodeConfig, catalog: Catalog, *, hub: EventHub | None = None,
                 verify_user: UserVerifier | None = None, analysis: Any | None = None) -> None:
        from dicom_ecg_node.services.viewer import ViewerService, default_analysis
        from dicom_ecg_node.web.app import create_app

        self.config = config
        self.stopping = threading.Event()
        self.viewer = ViewerService(config, catalog, analysis if analysis is not None else default_analysis(catalog))
        self.https = getattr(config, "tls_cert", None) is not None and getattr(config, "tls_key", None) is not None
        self.app = create_app(config, self.viewer, hub=hub,
                              verify_user=verify_user if verify_user is not None else node_user_verifier(catalog),
                              https=self.https, stopping=self.stopping)
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``."""
        if self._socket is None:
            raise RuntimeError("web server not started")
        host, port = self._socket.getsockname()[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """The base URL to open (``127.0.0.1`` when listening on every address)."""
        host, port = self.address
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else (f"[{host}]" if ":" in host else host)
        return f"{'https' if self.https else 'http'}://{shown}:{port}/"

    def start(self) -> None:
        """Bind the port and serve in a background thread.

        Raises
        ------
        ConfigError
            The address cannot be bound.
        """
        import uvicorn

        host = getattr(self.config, "http_host", "127.0.0.1")
        port = int(getattr(self.config, "http_port", 0) or 0)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"http_port: cannot listen on {host}:{port}: {exc.strerror}") from exc
        sock.listen(128)
        sock.setblocking(False)
        self._socket = sock
        ssl: dict[str, Any] = {}
        if self.https:
            ssl = {"ssl_certfile": str(self.config.tls_cert), "ssl_keyfile": str(self.config.tls_key)}
        uv_config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="off",
                                   timeout_graceful_shutdown=3, proxy_headers=False, server_header=False, **ssl)
        self._server = uvicorn.Server(uv_config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="ecg-node-web", daemon=True)
        self._thread.start()
        log.info("web viewer at %s", self.url)
        if getattr(self.config, "http_open", False):
            log.warning("WEB VIEWER OPEN ACCESS (--http-open): no login, anyone reaching %s sees patient data",
                        self.url)

    def wait_started(self, timeout: float = 10.0) -> bool:
        """Wait until uvicorn accepts connections; ``False`` on timeout or when it failed to start."""
        deadline = threading.Event()
        for _ in range(int(timeout / 0.02)):
            if self._server is not None and self._server.started:
                return True
            if self._thread is not None and not self._thread.is_alive():
                return False
            deadline.wait(0.02)
        return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving: end the event streams, ask uvicorn to exit and wait for its thread."""
        self.stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("web server thread did not stop within %.0f s", timeout)
        if self._socket is not None:
            self._socket.close()
        self._thread = None
        self._server = None


def start_web(config: NodeConfig, catalog: Catalog, *, hub: EventHub | None = None) -> WebServer | None:
    """Start the web viewer when ``config.http_port`` is set; ``None`` otherwise."""
    if getattr(config, "http_port", None) is None:
        return None
    server = WebServer(config, catalog, hub=hub)
    server.start()
    if not server.wait_started():
        server.stop()
        raise ConfigError("web viewer: the HTTP server did not start (see the log)")
    return server


__all__ = ["WebServer", "node_user_verifier", "start_web"]
